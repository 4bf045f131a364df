//! The operator commands: enqueue, status, list, retry, cancel. Tables for people by default,
//! JSON with `--json`.

use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context};
use serde_json::{json, Value};

use crate::cli::{CancelArgs, Command, EnqueueArgs, ListArgs, RetryArgs, StatusArgs};
use crate::config::Settings;
use crate::domain::{OrderNo, PaymentMethod, State};
use crate::jobs::Replicated;
use crate::jobs::{EventRow, JobRow, JobStore, NewJob};

pub async fn dispatch(command: Command, settings: Settings) -> anyhow::Result<()> {
    let pool = crate::app::connect(&settings).await?;
    let store = JobStore::new(pool);
    let by = format!("cli:{}", whoami());
    match command {
        Command::Enqueue(a) => enqueue(&store, a).await,
        Command::Status(a) => status(&store, a).await,
        Command::List(a) => list(&store, a).await,
        Command::Retry(a) => retry(&store, a, &by).await,
        Command::Cancel(a) => cancel(&store, a, &by).await,
        other => bail!("{other:?} is not an operator command"),
    }
}

fn whoami() -> String {
    std::env::var("USER").unwrap_or_else(|_| "operator".into())
}

/// Reads JSON from a file, or stdin for "-". Card data never comes from argv, where any user
/// of the machine could read it in the process list.
fn read_json(path: &Path, what: &str) -> anyhow::Result<Value> {
    let mut text = String::new();
    if path == Path::new("-") {
        std::io::stdin()
            .read_to_string(&mut text)
            .with_context(|| format!("reading {what} from stdin"))?;
    } else {
        text = std::fs::read_to_string(path)
            .with_context(|| format!("reading {what} from {}", path.display()))?;
    }
    // serde's message can quote the text; say only where it broke.
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{what} is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        )
    })
}

/// The keys an order JSON may have: the columns an enqueuer writes.
const ORDER_KEYS: &[&str] = &[
    "order_no",
    "payment_method",
    "card",
    "pay_deadline",
    "client_order_no",
    "priority",
    "run_at",
];

/// Reads `--json`'s order, refusing unknown keys (a typo must not be dropped silently).
fn order_from_json(v: &Value) -> anyhow::Result<NewJob> {
    let obj = v.as_object().context("order JSON: not a JSON object")?;
    if let Some(k) = obj.keys().find(|k| !ORDER_KEYS.contains(&k.as_str())) {
        bail!(
            "order JSON: unknown key {:?} (known: {})",
            crate::domain::truncate(k, 40),
            ORDER_KEYS.join(", ")
        );
    }
    let time = |key: &str| -> anyhow::Result<Option<chrono::DateTime<chrono::Utc>>> {
        match &v[key] {
            Value::Null => Ok(None),
            Value::String(s) => {
                Ok(Some(s.parse().with_context(|| {
                    format!("order JSON: {key} is not RFC 3339")
                })?))
            }
            _ => bail!("order JSON: {key} must be an RFC 3339 string"),
        }
    };
    let priority = match &v["priority"] {
        Value::Null => None,
        p => Some(
            p.as_i64()
                .and_then(|p| i16::try_from(p).ok())
                .context("order JSON: priority must be a small integer")?,
        ),
    };
    Ok(NewJob {
        order_no: v["order_no"]
            .as_str()
            .context("order JSON: order_no is missing or not a string")?
            .to_owned(),
        payment_method: v["payment_method"]
            .as_i64()
            .and_then(|m| i16::try_from(m).ok())
            .context("order JSON: payment_method is missing or not a number")?,
        card: (!v["card"].is_null()).then(|| v["card"].clone()),
        pay_deadline: time("pay_deadline")?,
        client_order_no: v["client_order_no"].as_str().map(str::to_owned),
        priority,
        run_at: time("run_at")?,
    })
}

async fn enqueue(store: &JobStore, a: EnqueueArgs) -> anyhow::Result<()> {
    let job = match &a.from_json {
        Some(path) => order_from_json(&read_json(path, "the order JSON")?)?,
        None => NewJob {
            order_no: a.order_no.clone().unwrap_or_default(),
            payment_method: a.method.unwrap_or_default(),
            card: match &a.card_file {
                Some(p) => Some(read_json(p, "the card JSON")?),
                None => None,
            },
            pay_deadline: a.pay_deadline,
            client_order_no: a.client_order_no.clone(),
            ..NewJob::default()
        },
    };
    let (order_no, card) = (&job.order_no, &job.card);
    OrderNo::parse(order_no).map_err(anyhow::Error::msg)?;
    let method = PaymentMethod::from_code(i64::from(job.payment_method)).with_context(|| {
        format!(
            "payment method {} is not one of 1, 3, 4, 5",
            job.payment_method
        )
    })?;
    if method.needs_card() && card.is_none() {
        bail!(
            "payment method {} needs card data: --card-file FILE (or - for stdin)",
            method.code()
        );
    }
    if !method.needs_card() && card.is_some() {
        bail!("payment method {} takes no card", method.code());
    }
    if let Some(c) = &card {
        // Refuse now what the worker would refuse later, naming the field.
        crate::card::CreditCard::from_json(c, method, chrono::Utc::now())?;
    }
    let id = match store.insert(&job).await {
        Ok(id) => id,
        Err(crate::jobs::Error::Database(sqlx::Error::Database(e)))
            if e.constraint() == Some("order_no_is_unique") =>
        {
            let state = store
                .job(order_no)
                .await?
                .map_or_else(|| "unknown".to_owned(), |r| r.state);
            bail!("order {order_no} is already in the table (state {state}); nothing was enqueued");
        }
        Err(e) => return Err(e.into()),
    };
    if a.json {
        println!(
            "{}",
            json!({"id": id, "order_no": order_no, "state": "pending"})
        );
    } else {
        println!("enqueued order {order_no} (job {id}), pending");
    }
    Ok(())
}

async fn status(store: &JobStore, a: StatusArgs) -> anyhow::Result<()> {
    let row = store
        .job(&a.order_no)
        .await?
        .with_context(|| format!("order {} is not in the job table", a.order_no))?;
    let events = store.events(&a.order_no).await?;
    if a.json {
        println!("{}", json!({"job": row, "events": events}));
        return Ok(());
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
            match (&row.card_brand, &row.card_last4, row.card.is_some()) {
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
        ("finished", t(&row.finalized_at)),
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

async fn list(store: &JobStore, a: ListArgs) -> anyhow::Result<()> {
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
        parts.push(format!("next: {next} at {}", r.run_at.format("%H:%M:%S")));
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

async fn retry(store: &JobStore, a: RetryArgs, by: &str) -> anyhow::Result<()> {
    let card = match &a.card_file {
        Some(p) => Some(read_json(p, "the card JSON")?),
        None => None,
    };
    if let Some(c) = &card {
        // Refuse now, naming the field, what the worker would refuse after the retry: the row
        // would otherwise go back to work with card data that can never be sent.
        let row = store
            .job(&a.order_no)
            .await?
            .with_context(|| format!("order {} is not in the job table", a.order_no))?;
        if let Some(method) =
            PaymentMethod::from_code(i64::from(row.payment_method)).filter(|m| m.needs_card())
        {
            crate::card::CreditCard::from_json(c, method, chrono::Utc::now())?;
        }
    }
    let done = store.retry(&a.order_no, card.as_ref(), a.repay, by).await?;
    warn_unless_replicated(store, &a.order_no, "retry").await;
    if a.json {
        println!(
            "{}",
            json!({"order_no": a.order_no, "state": done.state, "may_pay": done.may_pay})
        );
        return Ok(());
    }
    let next = match (done.state, done.may_pay) {
        (State::Ticketing, _) => {
            "an answer once showed it paid: it is followed again with a fresh ticketing deadline, never paid twice"
        }
        (_, true) => {
            "its next step is an order query; if ATRIP shows it unpaid, one pay.do is sent"
        }
        (_, false) => {
            "its next step is an order query; no pay.do will be sent (one may have reached ATRIP: after checking ATRIP, `retry --repay`)"
        }
    };
    println!("order {} is {} again; {next}", a.order_no, done.state);
    Ok(())
}

/// Says on stderr when an operator's change is committed on a primary but no standby has it
/// within a few seconds: a failover then would undo it (a cancelled order could be paid).
async fn warn_unless_replicated(store: &JobStore, order_no: &str, what: &str) {
    match store
        .operator_change_replicated(std::time::Duration::from_secs(5))
        .await
    {
        Ok(Replicated::NoStandby | Replicated::Yes) => {}
        Ok(Replicated::Hidden) => eprintln!(
            "warning: whether the {what} of order {order_no} reached a standby cannot be told: the standbys' positions are hidden from this role (GRANT pg_monitor); a failover before it does would undo it"
        ),
        Ok(Replicated::NotYet) => eprintln!(
            "warning: the {what} of order {order_no} is committed on the primary, but no standby had it within 5 s: a failover now would undo it. Check with `ticketing-tracker status {order_no}` after any failover."
        ),
        Err(e) => eprintln!(
            "warning: whether the {what} of order {order_no} reached a standby could not be read ({e}); check with `ticketing-tracker status {order_no}` after any failover"
        ),
    }
}

async fn cancel(store: &JobStore, a: CancelArgs, by: &str) -> anyhow::Result<()> {
    store.cancel(&a.order_no, by).await?;
    warn_unless_replicated(store, &a.order_no, "cancel").await;
    if a.json {
        println!("{}", json!({"order_no": a.order_no, "state": "cancelled"}));
    } else {
        println!("order {} cancelled", a.order_no);
    }
    Ok(())
}
