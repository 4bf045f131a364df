//! Telling a 900/902 for one order from refused credentials (docs/design.md, rule P4f).
//!
//! ATRIP answers 900 both for credentials it does not take and for "the request targets data
//! outside your scope". The first is the fleet's problem (no claims for a while, loudly); the
//! second is one order's (a person looks at that order). Pausing the fleet for one order's
//! 900 would stall every payment, again at each of its retries. So on a 900/902 the worker
//! asks ATRIP about an order number that cannot exist, as the start probe does: refused too,
//! the credentials are at fault; answered ("no such order"), the order alone is.

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::atrip::{Client, QueryAnswer};

/// A probe's verdict is reused this long: a burst of 900s costs one probe.
const FRESH: Duration = Duration::from_secs(10);

/// Whose fault a 900/902 is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The probe was refused too: our credentials.
    Credentials,
    /// The probe was answered: this order alone.
    Order,
    /// The probe got no answer: treated as the credentials (pausing is the cautious choice
    /// when nothing can be told).
    Unknown,
}

#[derive(Default)]
pub(super) struct ScopeCheck {
    last: Mutex<Option<(Instant, Scope)>>,
}

impl ScopeCheck {
    /// Whose fault a 900/902 is now: one probe at a time, reused while fresh.
    pub async fn of_refusal(&self, atrip: &Client) -> Scope {
        let mut last = self.last.lock().await;
        if let Some((at, scope)) = *last {
            if at.elapsed() < FRESH {
                return scope;
            }
        }
        let scope = match atrip.query(crate::atrip::PROBE_ORDER_NO).await {
            QueryAnswer::Unauthorized { .. } => Scope::Credentials,
            QueryAnswer::Retry { .. } | QueryAnswer::RateLimited { .. } => Scope::Unknown,
            _ => Scope::Order,
        };
        *last = Some((Instant::now(), scope));
        scope
    }
}
