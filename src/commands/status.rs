//! `status`: one order's row and history, in words an operator acts on (or JSON).

use anyhow::Context;
use serde_json::json;

use crate::cli::StatusArgs;
use crate::domain::State;
use crate::jobs::{EventRow, JobRow, JobStore};

pub(super) async fn status(store: &JobStore, a: StatusArgs) -> anyhow::Result<()> {
    let row = store
        .job(&a.order_no)
        .await?
        .with_context(|| format!("order {} is not in the job table", a.order_no))?;
    let events = store.events(&a.order_no).await?;
    let pauses = store.pauses_in_force().await?;
    if a.json {
        println!(
            "{}",
            json!({"job": row, "events": events, "paying_paused": pauses})
        );
        return Ok(());
    }
    print!("{}", crate::paused::banner(&pauses));
    if let Some(p) = crate::paused::holds(&pauses, row.payment_method) {
        if row.state == State::Pending.as_str() || row.state == State::Paying.as_str() {
            println!(
                "order {} waits: paying {} is paused; it is paid once that is resumed",
                row.order_no,
                p.scope()
            );
        }
    }
    print!("{}", render_status(&row, &events));
    Ok(())
}

/// One order as an operator reads it: where it is, why, and what happened.
pub fn render_status(row: &JobRow, events: &[EventRow]) -> String {
    let mut out = String::new();
    let t = |v: &Option<chrono::DateTime<chrono::Utc>>| {
        v.map_or("-".to_owned(), |d| {
            d.format("%Y-%m-%d %H:%M:%S%.3fZ").to_string()
        })
    };
    let o = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let lines = [
        ("order", row.order_no.clone()),
        ("state", row.state.clone()),
        ("payment method", row.payment_method.to_string()),
        (
            "card",
            match (&row.card_brand, &row.card_last4, row.card_plain) {
                (_, _, true) => "present (erased once the payment resolves)".into(),
                (Some(b), Some(l), false) => format!("{b} ending {l} (erased)"),
                _ => "-".into(),
            },
        ),
        ("pay intents", row.pay_attempts.to_string()),
        (
            "pay.do sent",
            format!(
                "{} (may have reached ATRIP; {} permitted)",
                row.pay_sends, row.pay_permits
            ),
        ),
        (
            "last pay answer",
            row.last_pay_outcome.clone().unwrap_or_else(|| "-".into()),
        ),
        ("polls", row.poll_attempts.to_string()),
        (
            "last ATRIP status",
            row.atrip_status.map_or("-".into(), |s| s.to_string()),
        ),
        ("ATRIP message", o(&row.atrip_message)),
        ("order status", o(&row.order_status)),
        ("ATRIP PNR", o(&row.atrip_pnr)),
        ("airline PNR", o(&row.pnr)),
        (
            "passengers",
            row.passengers.map_or("-".into(), |n| n.to_string()),
        ),
        (
            "tickets",
            row.ticket_numbers
                .as_ref()
                .map_or("-".into(), |t| t.to_string()),
        ),
        ("last error", o(&row.last_error)),
        ("created", t(&Some(row.created_at))),
        ("pay started", t(&row.pay_started_at)),
        (
            "paid",
            match (&row.paid_at, &row.paid_evidence) {
                (Some(_), Some(e)) => format!("{} ({e}; never paid again)", t(&row.paid_at)),
                _ => t(&row.paid_at),
            },
        ),
        ("ticketed", t(&row.ticketed_at)),
        if row.state == State::NeedsReview.as_str() {
            ("waiting since", t(&row.finalized_at))
        } else {
            ("finished", t(&row.finalized_at))
        },
        (
            "next due",
            if State::parse(&row.state).is_some_and(State::is_finished) {
                "-".into()
            } else {
                t(&Some(row.run_at))
            },
        ),
        (
            "lease",
            match (&row.lease_owner, &row.lease_expires_at) {
                (Some(w), Some(e)) => format!("{w} until {}", t(&Some(*e))),
                _ => "-".into(),
            },
        ),
    ];
    for (k, v) in lines {
        out.push_str(&format!("{k:>18}  {v}\n"));
    }
    if matches!(row.state.as_str(), "failed" | "needs_review" | "pending") {
        // The same decisions the store makes and the console offers (machine::operator).
        let offers = row.offers();
        let plan = |r: &Result<crate::machine::operator::RetryPlan, String>| match r {
            Ok(p) if p.may_pay => format!(
                "yes: back to {}, pays once the order query shows it unpaid",
                p.to
            ),
            Ok(p) => format!("yes: back to {}, no pay.do", p.to),
            Err(why) => format!("no: {why}"),
        };
        out.push_str("\noperator (without card data):\n");
        out.push_str(&format!("{:>18}  {}\n", "retry", plan(&offers.retry)));
        out.push_str(&format!(
            "{:>18}  {}\n",
            "retry --repay",
            plan(&offers.repay)
        ));
        out.push_str(&format!(
            "{:>18}  {}\n",
            "cancel",
            match &offers.cancel {
                Ok(()) => "yes".to_owned(),
                Err(why) => format!("no: {why}"),
            }
        ));
    }
    out.push_str("\nhistory:\n");
    for e in events {
        out.push_str(&format!(
            "  {}  {:<17} -> {:<12} {}\n",
            e.at.format("%H:%M:%S%.3f"),
            e.kind,
            e.state,
            e.detail
        ));
    }
    out
}
