//! `ticketing-tracker console-user`: named console accounts (docs/design.md, rule L2) made,
//! disabled, reset and listed from the command line. Passwords come from stdin only, as for
//! `console-hash`; no hash is ever printed.

use anyhow::Context;

use crate::cli::{ConsoleRoleArg, ConsoleUserCommand};
use crate::console::{EchoOff, PasswordHash, MAX_PASSWORD_BYTES};
use crate::jobs::JobStore;

/// The shortest password an account takes.
const MIN_PASSWORD_CHARS: usize = 12;

pub async fn command(command: ConsoleUserCommand, store: &JobStore) -> anyhow::Result<()> {
    match command {
        ConsoleUserCommand::Add {
            name,
            role,
            iterations,
        } => {
            let role = match role {
                ConsoleRoleArg::Viewer => "viewer",
                ConsoleRoleArg::Operator => "operator",
            };
            if !crate::console::valid_name(&name) {
                anyhow::bail!("console user {name:?}: name: 1 to 40 letters, digits, dots, dashes, underscores or @");
            }
            let hash = hash_from_stdin(&name, iterations)?;
            store
                .console_user_add(&name, role, &hash.to_string())
                .await?;
            println!("console user {name:?} added ({role})");
        }
        ConsoleUserCommand::Disable { name } => {
            store.console_user_disable(&name).await?;
            println!("console user {name:?} disabled: it logs in no more");
        }
        ConsoleUserCommand::Reset { name, iterations } => {
            let hash = hash_from_stdin(&name, iterations)?;
            store.console_user_reset(&name, &hash.to_string()).await?;
            println!(
                "console user {name:?}: new password set, wrong-password count and lock cleared"
            );
        }
        ConsoleUserCommand::List { json } => {
            let rows = store
                .console_users()
                .await
                .context("reading the console accounts")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no console accounts (add one with `ticketing-tracker console-user add NAME --role operator`)");
                return Ok(());
            }
            println!(
                "{:<40} {:<8} {:<9} {:>6} {:<25} {:<25}",
                "NAME", "ROLE", "STATE", "WRONG", "LOCKED UNTIL", "LAST LOGIN"
            );
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
                t.map_or_else(
                    || "-".to_owned(),
                    |t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                )
            };
            for r in rows {
                println!(
                    "{:<40} {:<8} {:<9} {:>6} {:<25} {:<25}",
                    r.name,
                    r.role,
                    if r.disabled_at.is_some() {
                        "disabled"
                    } else {
                        "active"
                    },
                    r.failed_logins,
                    time(r.locked_until),
                    time(r.last_login_at),
                );
            }
        }
    }
    Ok(())
}

/// The account's new password from stdin (its first line; not echoed on a terminal), hashed.
fn hash_from_stdin(name: &str, iterations: u32) -> anyhow::Result<PasswordHash> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("password for console user {name:?} (not shown): ");
    }
    let password = {
        let _quiet = terminal.then(EchoOff::new);
        crate::input::read_line(
            stdin.lock(),
            MAX_PASSWORD_BYTES,
            "console-user: the password on stdin",
        )?
    };
    if terminal {
        eprintln!();
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        anyhow::bail!(
            "console user {name:?}: password: must have at least {MIN_PASSWORD_CHARS} characters"
        );
    }
    Ok(PasswordHash::create(&password, iterations))
}
