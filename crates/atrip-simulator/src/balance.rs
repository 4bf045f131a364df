//! `balance.do` (ATRIP's "Get Balance", `atlas-doc/atlas-api-docs`, `Atlas API _other
//! functions.md`): the deposit account's balance in one currency. Deposit payments draw on it:
//! a `pay.do` with method 1 for an order dearer than the balance answers 411 and charges
//! nothing (ATRIP: deposit payments "fail with 411 / 617 when the balance is low").
//!
//! ATRIP types `amount` as a string in its schema table and sends a number in its sample;
//! `SimConfig::balance_amount_as_string` picks one. `POST /sim/balance` sets the balance and
//! how `balance.do` answers (`ok`, `garbled`, `error`: status 9999, `null`: no
//! `accountBalance`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::order::CURRENCY;
use super::reply::{wants_gzip, Reply};
use super::state::{BalanceMode, Sim};

/// The balance of ATRIP's own sample answer.
pub const DOCUMENTED_BALANCE: f64 = 12_308_007.89;

/// `POST /balance.do`.
pub(super) async fn balance_do(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let gzip = wants_gzip(&sim, &headers);
    let reply = match super::reply::admit(&sim, &headers, &body) {
        Err(refusal) => refusal,
        Ok(req) => {
            let currency = req.get("currency").and_then(Value::as_str).unwrap_or("");
            let mut store = sim.lock();
            store.totals.balance_queries += 1;
            let amount = store.balance;
            match store.balance_mode {
                BalanceMode::Garbled => Reply::Garbled,
                BalanceMode::Error => Reply::Json(json!({"status": 9999, "msg": "System error"})),
                BalanceMode::Null => Reply::Json(json!({"status": 0, "accountBalance": null})),
                BalanceMode::Ok if currency.is_empty() => {
                    Reply::Json(json!({"status": 100, "msg": "currency is required"}))
                }
                // One account in the simulator, in the currency its orders are priced in.
                BalanceMode::Ok if currency != CURRENCY => {
                    Reply::Json(json!({"status": 0, "accountBalance": null}))
                }
                BalanceMode::Ok => {
                    let rounded = (amount * 100.0).round() / 100.0;
                    let amount = if sim.config.balance_amount_as_string {
                        json!(format!("{rounded:.2}"))
                    } else {
                        json!(rounded)
                    };
                    Reply::Json(json!({
                        "accountBalance": {"amount": amount, "currency": CURRENCY},
                        "status": 0,
                    }))
                }
            }
        }
    };
    sim.answer_latency().await;
    reply.render(&sim, gzip).await
}

/// `POST /sim/balance` with `{"amount": 100.0, "mode": "ok"}` (both optional).
pub(super) async fn set_balance(
    State(sim): State<Arc<Sim>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Set {
        amount: Option<f64>,
        mode: Option<BalanceMode>,
    }
    let gzip = wants_gzip(&sim, &headers);
    let reply = match serde_json::from_slice::<Set>(&body) {
        Ok(set) => {
            let mut store = sim.lock();
            if let Some(amount) = set.amount.filter(|a| a.is_finite()) {
                store.balance = amount;
            }
            if let Some(mode) = set.mode {
                store.balance_mode = mode;
            }
            Reply::Json(json!({"ok": true, "amount": store.balance}))
        }
        Err(error) => Reply::JsonStatus(
            StatusCode::BAD_REQUEST,
            json!({"ok": false, "error": format!("bad balance: {error}")}),
        ),
    };
    reply.render(&sim, gzip).await
}
