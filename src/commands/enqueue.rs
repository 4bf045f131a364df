//! `enqueue`: one order from flags or `--json`, its card sealed to the worker's key when there
//! is one (rule P9a), written as a `pending` row.

use anyhow::{bail, Context};
use serde_json::{json, Value};

use super::Sealing;
use crate::cli::EnqueueArgs;
use crate::domain::{OrderNo, PaymentMethod};
use crate::input::{read_json, MAX_CARD_JSON_BYTES, MAX_ORDER_JSON_BYTES};
use crate::jobs::{JobStore, NewJob};

/// The keys an order JSON may have: the columns an enqueuer writes.
const ORDER_KEYS: &[&str] = &[
    "order_no",
    "payment_method",
    "card",
    "pay_deadline",
    "client_order_no",
    "priority",
    "run_at",
    "passengers",
    "price",
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
    let passengers = match &v["passengers"] {
        Value::Null => None,
        p => Some(
            p.as_i64()
                .and_then(|p| i16::try_from(p).ok())
                .filter(|p| (1..=32).contains(p))
                .context("order JSON: passengers must be a whole number from 1 to 32")?,
        ),
    };
    let price = match &v["price"] {
        Value::Null => None,
        Value::Number(n) => Some(crate::cli::parse_price(&n.to_string())),
        Value::String(s) => Some(crate::cli::parse_price(s)),
        _ => Some(Err("a price is a number".to_owned())),
    }
    .transpose()
    .map_err(|e| anyhow::anyhow!("order JSON: price: {e}"))?;
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
        card_sealed: None,
        pay_deadline: time("pay_deadline")?,
        client_order_no: v["client_order_no"].as_str().map(str::to_owned),
        priority,
        run_at: time("run_at")?,
        passengers,
        price,
    })
}

/// The card sealed for `order_no` to the current key, when there is a key; an error when
/// there is none and sealing is required.
pub(super) fn seal_card(
    sealing: Sealing<'_>,
    order_no: &str,
    card: &Value,
) -> anyhow::Result<Option<Vec<u8>>> {
    if sealing.keys.is_none() && sealing.required {
        bail!("order {order_no}: no card.secret_key (APP_CARD__SECRET_KEY): the card cannot be sealed; nothing was sent (in production the database refuses plain cards, card.allow_plain = false)");
    }
    sealing
        .keys
        .map(|k| crate::sealed::seal(&k.current().public_base64(), order_no, card))
        .transpose()
        .with_context(|| format!("order {order_no}: sealing the card data failed"))
}

/// The row `enqueue` writes, checked and its card sealed, before any connection.
pub(super) fn new_job(a: &EnqueueArgs, sealing: Sealing<'_>) -> anyhow::Result<NewJob> {
    let mut job = match &a.from_json {
        Some(path) => order_from_json(&read_json(
            path,
            "--from-json",
            "the order JSON",
            MAX_ORDER_JSON_BYTES,
        )?)?,
        None => NewJob {
            order_no: a.order_no.clone().unwrap_or_default(),
            payment_method: a.method.unwrap_or_default(),
            card: match &a.card_file {
                Some(p) => Some(read_json(
                    p,
                    "--card-file",
                    "the card JSON",
                    MAX_CARD_JSON_BYTES,
                )?),
                None => None,
            },
            pay_deadline: a.pay_deadline,
            client_order_no: a.client_order_no.clone(),
            passengers: a.passengers,
            price: a.price.clone(),
            ..NewJob::default()
        },
    };
    OrderNo::parse(&job.order_no).map_err(anyhow::Error::msg)?;
    let method = PaymentMethod::from_code(i64::from(job.payment_method)).with_context(|| {
        format!(
            "payment method {} is not one of 1, 3, 4, 5",
            job.payment_method
        )
    })?;
    if method.needs_card() && job.card.is_none() {
        bail!(
            "payment method {} needs card data: --card-file FILE (or - for stdin)",
            method.code()
        );
    }
    if !method.needs_card() && job.card.is_some() {
        bail!("payment method {} takes no card", method.code());
    }
    if let Some(c) = &job.card {
        // Refuse now what the worker would refuse later, naming the field.
        crate::card::CreditCard::from_json(c, method, chrono::Utc::now())?;
        if let Some(sealed) = seal_card(sealing, &job.order_no, c)? {
            job.card_sealed = Some(sealed);
            job.card = None;
        }
    }
    Ok(job)
}

pub(super) async fn enqueue(store: &JobStore, job: &NewJob, json: bool) -> anyhow::Result<()> {
    let order_no = &job.order_no;
    let id = match store.insert(job).await {
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
    if json {
        println!(
            "{}",
            json!({"id": id, "order_no": order_no, "state": "pending"})
        );
    } else {
        println!("enqueued order {order_no} (job {id}), pending");
    }
    Ok(())
}
