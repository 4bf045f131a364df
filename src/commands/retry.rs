//! `retry`: a `failed` or `needs_review` order back to work (rule P7), `--repay` to allow one
//! more `pay.do`, `--card-file` for fresh card data.

use anyhow::Context;
use serde_json::{json, Value};

use super::enqueue::seal_card;
use super::{warn_unless_replicated, Sealing};
use crate::cli::RetryArgs;
use crate::domain::{PaymentMethod, State};
use crate::input::{read_json, MAX_CARD_JSON_BYTES};
use crate::jobs::{FreshCard, JobStore};

/// `retry --card-file`'s card, and the same sealed, before any connection.
pub(super) fn fresh_card(
    a: &RetryArgs,
    sealing: Sealing<'_>,
) -> anyhow::Result<Option<(Value, Option<Vec<u8>>)>> {
    let Some(p) = &a.card_file else {
        return Ok(None);
    };
    let card = read_json(p, "--card-file", "the card JSON", MAX_CARD_JSON_BYTES)?;
    let sealed = seal_card(sealing, &a.order_no, &card)?;
    Ok(Some((card, sealed)))
}

pub(super) async fn retry(
    store: &JobStore,
    a: RetryArgs,
    by: &str,
    card: Option<(Value, Option<Vec<u8>>)>,
) -> anyhow::Result<()> {
    let (card, sealed) = card.unzip();
    let sealed = sealed.flatten();
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
    let fresh = match (&card, &sealed) {
        (_, Some(sealed)) => Some(FreshCard::Sealed(sealed)),
        (Some(card), None) => Some(FreshCard::Plain(card)),
        (None, None) => None,
    };
    let done = store.retry(&a.order_no, fresh, a.repay, by).await?;
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
    if done.may_pay {
        // Rule S4: the retry is taken while paying is paused, and waits for the resume.
        if let Some(row) = store.job(&a.order_no).await? {
            if let Some(paused) = store.paused_for(row.payment_method).await? {
                println!("while {paused}, it waits: no pay.do until `ticketing-tracker resume`");
            }
        }
    }
    Ok(())
}
