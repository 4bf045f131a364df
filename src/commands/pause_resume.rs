//! `pause` and `resume`: paying paused fleet-wide, for every method or one (rule S4), and
//! resumed. What a pause in force is said as is in `crate::paused`.

use anyhow::Context;
use serde_json::json;

use super::warn_unless_replicated;
use crate::cli::{PauseArgs, ResumeArgs};
use crate::domain::PauseScope;
use crate::jobs::{JobStore, Pause};
use crate::paused::{for_how_long, said};

/// `--by NAME` as the pause records it (`cli:NAME`), or the default every operator command
/// records (`by`: `cli:` and the login name).
fn operator(given: Option<&str>, by: &str) -> anyhow::Result<String> {
    match given.map(str::trim) {
        None => Ok(by.to_owned()),
        Some("") => anyhow::bail!("--by is empty: name who pauses or resumes (default: your login name, as retry and cancel record it)"),
        Some(name) => Ok(format!("cli:{name}")),
    }
}

/// `pause`: refused (exit 1, nothing changed) when that scope is paused already, naming the
/// pause in force; a method that is not one of 1, 3, 4, 5 is refused before any connection.
pub async fn pause<F, Fut>(a: PauseArgs, by: &str, connect: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<JobStore>>,
{
    let scope = PauseScope::parse(a.method).map_err(anyhow::Error::msg)?;
    let by = operator(a.by.as_deref(), by)?;
    if a.reason.trim().is_empty() {
        anyhow::bail!("--reason is empty: say why paying is paused (everyone who looks sees it); nothing was paused");
    }
    let store = connect().await?;
    let pause = store.pause(scope, &a.reason, &by).await.context("pause")?;
    warn_unless_replicated(&store, "pause", "`ticketing-tracker list`").await;
    if a.json {
        println!("{}", json!({ "paused": pause }));
        return Ok(());
    }
    let (orders, resume) = match scope {
        PauseScope::Every => ("any order".to_owned(), String::new()),
        PauseScope::Method(m) => (
            format!("an order of method {}", m.code()),
            format!(" --method {}", m.code()),
        ),
    };
    println!(
        "{}. From now on no pay.do leaves for {orders}; one already on its way as this committed still arrives (normally within milliseconds). Paid orders are followed and webhooks recorded as usual; an order whose payment deadline passes meanwhile fails, nothing sent. `ticketing-tracker resume{resume}` ends it.",
        upper_first(&pause.describe()),
    );
    let others: Vec<Pause> = store
        .pauses_in_force()
        .await?
        .into_iter()
        .filter(|p| p.id != pause.id)
        .collect();
    if !others.is_empty() {
        println!("also in force: {}", said(&others));
    }
    Ok(())
}

/// `resume`: refused (exit 1, nothing changed) when that scope is not paused, naming what is.
pub async fn resume<F, Fut>(a: ResumeArgs, by: &str, connect: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<JobStore>>,
{
    let scope = PauseScope::parse(a.method).map_err(anyhow::Error::msg)?;
    let by = operator(a.by.as_deref(), by)?;
    let store = connect().await?;
    let done = store.resume(scope, &by).await.context("resume")?;
    warn_unless_replicated(&store, "resume", "`ticketing-tracker list`").await;
    let still = store.pauses_in_force().await?;
    if a.json {
        println!(
            "{}",
            json!({ "resumed": done.pause, "woken": done.woken, "in_force": still })
        );
        return Ok(());
    }
    let p = &done.pause;
    let mut line = format!(
        "paying {scope} resumed by {by} after {} (paused by {}: {}); the workers claim its waiting orders now, oldest deadline first",
        for_how_long(p.seconds),
        p.paused_by,
        p.reason
    );
    if done.woken > 0 {
        line.push_str(&format!(
            "; {} order(s) retried while paused are asked again now",
            done.woken
        ));
    }
    println!("{line}");
    if !still.is_empty() {
        println!("still in force: {}", said(&still));
    }
    Ok(())
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_uppercase().chain(chars).collect::<String>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_is_named_as_retry_names_it_unless_given() {
        assert_eq!(operator(None, "cli:root").unwrap(), "cli:root");
        assert_eq!(operator(Some("alice"), "cli:root").unwrap(), "cli:alice");
        assert!(operator(Some(" "), "cli:root").is_err());
    }
}
