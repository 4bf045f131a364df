//! What a transition may look at: the row as claimed ([`Facts`]) and the configured bounds
//! ([`Bounds`]). Times are the database's (docs/design.md, rule T1).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::reasons::PayOutcome;
use crate::config::WorkerSettings;
use crate::domain::State;

/// The row as the claim returned it, plus the database's time now.
#[derive(Debug, Clone)]
pub struct Facts {
    /// The state the row is in (every write is fenced on it).
    pub state: State,
    pub order_no: String,
    /// Intents recorded (`pay_attempts`).
    pub pay_attempts: i32,
    /// Intents that provably never reached ATRIP (`pay_not_sent`).
    pub pay_not_sent: i32,
    /// How many `pay.do` may ever reach ATRIP for this order (`pay_permits`).
    pub pay_permits: i32,
    /// An answer once showed the order paid (`paid_at` is set).
    pub paid: bool,
    /// The class of the last `pay.do` answer.
    pub last_pay_outcome: Option<PayOutcome>,
    /// Consecutive unclear answers before this one.
    pub error_streak: i32,
    pub poll_attempts: i32,
    /// The complete ticket set of the previous answer, waiting to be seen once more.
    pub tickets_seen: Option<Value>,
    /// How many passengers the order holds: enqueued, or learnt from the first answer that
    /// listed them (rule F1b). `None`: no answer has listed them yet.
    pub passengers: Option<usize>,
    /// When the last intent was recorded (`pay_started_at`).
    pub pay_started_at: DateTime<Utc>,
    /// The enqueuer's payment deadline.
    pub pay_deadline: Option<DateTime<Utc>>,
    /// When the current phase began (intent, payment or operator retry): deadlines count
    /// from here (rule T2).
    pub phase_started_at: DateTime<Utc>,
    /// The database's time now: the claim's `ticketing_now()` plus the monotonic time elapsed
    /// since (rule T1). Never this process's wall clock.
    pub now: DateTime<Utc>,
    /// Whether a new intent could be made durable where a failover would find it now (rule
    /// P1b; the durability gate's last view). Without it no new intent is recorded: it could
    /// only be given back.
    pub intents_durable: bool,
    /// Paying this row's method is paused (rule S4): who paused, since when and why. Looked
    /// up only where the table would record a new intent; `None` everywhere else.
    pub paying_paused: Option<String>,
}

impl Facts {
    /// `pay.do` requests that may have reached ATRIP (intents minus those provably not sent).
    pub fn sends(&self) -> i32 {
        self.pay_attempts - self.pay_not_sent
    }

    /// Whether a new intent (and so a `pay.do`) is allowed: a permit is left and no answer ever
    /// showed the order paid (rules P2, P3). The database's CHECKs hold the same rule.
    pub fn may_send(&self) -> bool {
        !self.paid && self.sends() < self.pay_permits
    }

    /// How long the current phase has lasted.
    pub fn in_phase(&self) -> Duration {
        (self.now - self.phase_started_at)
            .to_std()
            .unwrap_or_default()
    }
}

/// The configured bounds and schedule, read from the worker's settings.
#[derive(Debug, Clone, Copy)]
pub struct Bounds<'a> {
    pub settings: &'a WorkerSettings,
}

impl Bounds<'_> {
    /// The first order query after `pay.do` was accepted.
    pub fn first_poll(&self) -> Duration {
        self.settings.first_poll()
    }

    /// The order query after an unclear `pay.do` answer.
    pub fn recheck(&self) -> Duration {
        self.settings.recovery_delay()
    }

    /// Backoff for the next query after `attempt` earlier ones (the `backoff` crate, behind
    /// one function).
    pub fn backoff(&self, attempt: i32) -> Duration {
        super::delay::next_poll_delay(self.settings, attempt.max(0) as u32)
    }

    /// How long "unpaid" may keep showing after a `pay.do` that may have reached ATRIP
    /// before a person is asked (rule P5d).
    pub fn unpaid_settle(&self) -> Duration {
        Duration::from_secs(self.settings.unpaid_settle_s)
    }

    /// How long before the payment deadline a person must have the order in hand (rule P5d).
    pub fn review_margin(&self) -> Duration {
        Duration::from_secs(self.settings.review_margin_s)
    }

    /// How long claims pause after ATRIP refused our credentials.
    pub fn credentials_pause(&self) -> Duration {
        self.settings.credentials_pause()
    }

    pub fn paying_deadline(&self) -> Duration {
        self.settings.paying_deadline()
    }

    pub fn ticketing_deadline(&self) -> Duration {
        self.settings.ticketing_deadline()
    }

    pub fn max_error_streak(&self) -> i32 {
        self.settings.max_error_streak
    }

    pub fn max_pay_attempts(&self) -> i32 {
        self.settings.max_pay_attempts
    }
}
