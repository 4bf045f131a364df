//! `list`: the newest rows, optionally in one state, as a table (or JSON).

use anyhow::Context;

use crate::cli::ListArgs;
use crate::domain::State;
use crate::jobs::{JobRow, JobStore};

pub(super) async fn list(store: &JobStore, a: ListArgs) -> anyhow::Result<()> {
    let state = match &a.state {
        Some(s) => Some(State::parse(s).with_context(|| {
            format!("unknown state {s:?}; one of pending, paying, ticketing, ticketed, failed, needs_review, cancelled")
        })?),
        None => None,
    };
    let rows = store.list(state, a.limit.clamp(1, 10_000)).await?;
    if a.json {
        println!("{}", serde_json::to_string(&rows)?);
        return Ok(());
    }
    print!("{}", crate::paused::banner(&store.pauses_in_force().await?));
    print!("{}", render_table(&rows));
    Ok(())
}

/// Rows as a table, one line each.
pub fn render_table(rows: &[JobRow]) -> String {
    let mut out = format!(
        "{:<24} {:<6} {:<12} {:>6} {:>5} {:<16} {}\n",
        "ORDER", "METHOD", "STATE", "PAY.DO", "POLLS", "AIRLINE PNR", "WHY / NEXT"
    );
    for r in rows {
        out.push_str(&format!(
            "{:<24} {:<6} {:<12} {:>6} {:>5} {:<16} {}\n",
            r.order_no,
            r.payment_method,
            r.state,
            r.pay_sends,
            r.poll_attempts,
            r.pnr
                .as_deref()
                .map_or("-".to_owned(), |p| p.replace(' ', ",")),
            crate::domain::truncate_words(&note(r), 100)
        ));
    }
    out
}

/// Why a row is where it is, or what comes next, in one line.
fn note(r: &JobRow) -> String {
    if let Some(error) = &r.last_error {
        // The row's own number is in the ORDER column already.
        let prefix = format!("order {}: ", r.order_no);
        return error.strip_prefix(&prefix).unwrap_or(error).to_owned();
    }
    let finished = State::parse(&r.state).is_some_and(State::is_finished);
    let mut parts = Vec::new();
    if !finished {
        let next = match r.state.as_str() {
            "pending" => "pay.do",
            _ => "order query",
        };
        // The date too when it is not today's: a run_at a year away is no "at 18:43:44".
        let at = if r.run_at.date_naive() == chrono::Utc::now().date_naive() {
            r.run_at.format("%H:%M:%S").to_string()
        } else {
            r.run_at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
        };
        parts.push(format!("next: {next} at {at}"));
        if let Some(deadline) = r.pay_deadline.filter(|_| r.state == "pending") {
            parts.push(format!(
                "pay deadline {}",
                deadline.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
    }
    if let Some(status) = r.atrip_status {
        let mut answer = format!("last ATRIP answer: status {status}");
        if let Some(msg) = r.atrip_message.as_deref().filter(|m| !m.is_empty()) {
            answer.push_str(&format!(" ({msg})"));
        }
        if let Some(order_status) = &r.order_status {
            answer.push_str(&format!(", orderStatus {order_status}"));
        }
        parts.push(answer);
    }
    parts.join("; ")
}
