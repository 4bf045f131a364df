//! The balance pre-check (docs/design.md, rule P1e): with `worker.balance_precheck_s` set,
//! each worker asks `balance.do` that often and weighs the pending deposit orders with a price
//! against it: those it covers are cleared for the claim, the others wait, saying why, instead
//! of meeting a 411 that sends them to a person. While the check runs, the claim takes a priced
//! deposit order only once cleared. It only delays `pay.do`: a balance that cannot be read
//! clears every order.

use std::time::Duration;

use tracing::{info, warn};

use super::Worker;
use crate::atrip::balance::Balance;
use crate::jobs;

impl Worker {
    /// One check: reads the balance and holds back what it cannot cover, for one interval.
    /// Returns the orders held (none when the pre-check is off or the balance is unread).
    pub async fn check_balance(&self) -> Result<Vec<String>, jobs::Error> {
        let i = &self.inner;
        let every = Duration::from_secs(i.settings.balance_precheck_s.min(86_400));
        if every.is_zero() {
            return Ok(Vec::new());
        }
        let currency = &i.settings.balance_currency;
        let balance = match i.atrip.balance(currency).await {
            Balance::Read { amount, .. } => Some(amount),
            Balance::Unread { reason } => {
                info!(
                    reason,
                    "balance pre-check: balance.do unread, every deposit order is let through"
                );
                None
            }
        };
        let held = i.store.weigh_balance(balance, currency, every).await?;
        if !held.is_empty() {
            warn!(
                balance,
                currency = %currency,
                held = held.len(),
                first = %held[0],
                "deposit orders wait: the balance does not cover them (rule P1e); top the deposit up"
            );
        }
        Ok(held)
    }
}
