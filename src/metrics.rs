//! The process's counters and histograms, rendered in Prometheus text format by `/metrics`.
//! Hand-rolled (a few atomics) rather than a metrics stack: the set is small and fixed.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// Pay outcomes, by the class of the answer.
pub const PAY_CLASSES: [&str; 7] = [
    "accepted",
    "never_pay_again",
    "refused",
    "unauthorized",
    "payment_error",
    "outcome_unknown",
    "not_sent",
];

/// What became of webhook deliveries (rules W3, W6): `woken` (a paying/ticketing order made
/// due), `marked` (a ticketed order reported changed, awaiting its query), `recorded` (an
/// event only), `duplicate` (a replay: nothing), `capped` (past the order's deliveries for
/// the hour: nothing), `busy` (the order's row was locked: not waited for), `unknown_order`,
/// `no_order` (airline.status and the like), `unauthorized`, `bad_body`, `database_error`.
pub const WEBHOOK_OUTCOMES: [&str; 11] = [
    "woken",
    "marked",
    "recorded",
    "duplicate",
    "capped",
    "busy",
    "unknown_order",
    "no_order",
    "unauthorized",
    "bad_body",
    "database_error",
];

/// What became of console logins (docs/design.md, L1-L5): `ok`, `wrong_password` (or an
/// unknown name), `locked` (the account is locked after wrong passwords), `limited` (the
/// client was over its limits: nothing checked), `disabled` (a disabled account's right
/// password), `forged` (no login token: a post from another site), `bad_request`,
/// `unavailable` (the database did not answer).
pub const LOGIN_RESULTS: [&str; 8] = [
    "ok",
    "wrong_password",
    "locked",
    "limited",
    "disabled",
    "forged",
    "bad_request",
    "unavailable",
];

/// A histogram with fixed buckets (seconds).
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    total: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            total: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            if secs <= *bound {
                count.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {}",
                count.load(Ordering::Relaxed)
            );
        }
        let total = self.total.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

const LATENCY_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const TICKETED_BOUNDS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 86400.0,
];

/// Everything this process counts.
pub struct Metrics {
    pay_outcomes: [AtomicU64; 7],
    pub lease_losses: AtomicU64,
    /// This process's wall clock minus the database's, at the last claim (ms).
    pub clock_skew_ms: AtomicI64,
    /// The skew was logged once already.
    pub skew_warned: AtomicBool,
    pub pay_latency: Histogram,
    pub query_latency: Histogram,
    pub enqueue_to_ticketed: Histogram,
    /// Rows this process holds a lease on (steps in flight).
    pub in_flight: AtomicI64,
    /// Database connections asked for on the hot path, and those that waited (more than a
    /// millisecond) for a free slot in the pool, with the time waited.
    pub db_acquires: AtomicU64,
    pub db_acquire_waits: AtomicU64,
    pub db_acquire_wait_micros: AtomicU64,
    /// The pool, read at scrape time (set by the HTTP side).
    pub pool: std::sync::OnceLock<sqlx::PgPool>,
    /// ATRIP's reachability: the last time (Unix ms) a request got an HTTP answer, and the
    /// last time one could not reach it (connection refused, DNS, TLS, timeout).
    pub atrip_answered_ms: AtomicI64,
    pub atrip_unreachable_ms: AtomicI64,
    /// When ATRIP being unreachable was last logged (Unix ms): said once a minute, not per
    /// order.
    pub atrip_unreachable_logged_ms: AtomicI64,
    /// The last time (Unix ms) ATRIP refused our credentials (start probe, pay.do or query).
    pub atrip_credentials_refused_ms: AtomicI64,
    /// The durability pay intents are confirmed at (rule P1b): 0 not known yet, 1 local, 2
    /// replicated.
    pub intent_level: AtomicI64,
    /// New payments are held: intents must be replicated and no standby can confirm them.
    pub paying_held: AtomicBool,
    /// Intents given back unsent because they were not durable in time.
    pub intents_not_durable: AtomicU64,
    /// Steps that panicked (their rows went to needs_review).
    pub step_panics: AtomicU64,
    /// Evidence of payment this process holds that has not reached the table yet.
    pub evidence_unrecorded: AtomicI64,
    /// Writes and renewals that found their row locked by another session.
    pub rows_busy: AtomicU64,
    /// ATRIP refused one order only (900/902 while the credentials work for others).
    pub orders_out_of_scope: AtomicU64,
    /// New database connections closed because a property a promise needs did not hold
    /// (docs/design.md, E1): a session pin not in force, a server that takes no writes.
    pub db_connections_refused: AtomicU64,
    /// When that was last logged (Unix ms): said once a minute while it lasts.
    pub db_refused_logged_ms: AtomicI64,
    /// Whether the database takes writes, as last checked: -1 not checked, 0 no, 1 yes.
    pub db_writable: AtomicI64,
    /// Why the last new connection was refused, until one is accepted again.
    pub db_refusal: std::sync::Mutex<Option<String>>,
    /// Whether the plain-card guard was in force at the last look (rule P9a): -1 not looked
    /// at (not production), 0 no, 1 yes; and when its absence was last logged (Unix ms).
    pub card_guard_ok: AtomicI64,
    pub card_guard_logged_ms: AtomicI64,
    /// Claim rounds that failed (a database error), those since the last that succeeded, and
    /// the last one's error in one line.
    pub claim_failures: AtomicU64,
    pub claims_failed_in_a_row: AtomicU64,
    pub claim_error: std::sync::Mutex<Option<String>>,
    webhooks: [AtomicU64; 11],
    console_logins: [AtomicU64; 8],
    /// balance.do calls that gave no readable balance.
    pub balance_unread: AtomicU64,
}

/// Failed claim rounds in a row after which `/readyz` says the worker is not ready: a few, so
/// that a database restart's seconds pass unnoticed, while a refusal that lasts (a privilege
/// revoked) does not.
pub const CLAIMS_FAILED_NOT_READY: u64 = 5;

/// Whether a thing last logged at `logged` (Unix ms) may be logged again now: once a minute,
/// by one caller at a time.
fn once_a_minute(logged: &AtomicI64) -> bool {
    let now = chrono::Utc::now().timestamp_millis();
    let last = logged.load(Ordering::Relaxed);
    now - last >= 60_000
        && logged
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// What this process last saw of ATRIP (Unix ms; 0 for never).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtripSeen {
    pub answered_ms: i64,
    pub unreachable_ms: i64,
    pub credentials_refused_ms: i64,
}

impl AtripSeen {
    /// Whether the last request got an HTTP answer (`Some(true)`), could not reach ATRIP
    /// (`Some(false)`), or none was made yet (`None`).
    pub fn reached(&self) -> Option<bool> {
        match (self.answered_ms, self.unreachable_ms) {
            (0, 0) => None,
            (ok, down) => Some(ok >= down),
        }
    }
}

static METRICS: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    METRICS.get_or_init(|| Metrics {
        pay_outcomes: Default::default(),
        lease_losses: AtomicU64::new(0),
        clock_skew_ms: AtomicI64::new(0),
        skew_warned: AtomicBool::new(false),
        pay_latency: Histogram::new(LATENCY_BOUNDS),
        query_latency: Histogram::new(LATENCY_BOUNDS),
        enqueue_to_ticketed: Histogram::new(TICKETED_BOUNDS),
        in_flight: AtomicI64::new(0),
        db_acquires: AtomicU64::new(0),
        db_acquire_waits: AtomicU64::new(0),
        db_acquire_wait_micros: AtomicU64::new(0),
        pool: std::sync::OnceLock::new(),
        atrip_answered_ms: AtomicI64::new(0),
        atrip_unreachable_ms: AtomicI64::new(0),
        atrip_unreachable_logged_ms: AtomicI64::new(0),
        atrip_credentials_refused_ms: AtomicI64::new(0),
        intent_level: AtomicI64::new(0),
        paying_held: AtomicBool::new(false),
        intents_not_durable: AtomicU64::new(0),
        step_panics: AtomicU64::new(0),
        evidence_unrecorded: AtomicI64::new(0),
        rows_busy: AtomicU64::new(0),
        orders_out_of_scope: AtomicU64::new(0),
        db_connections_refused: AtomicU64::new(0),
        db_refused_logged_ms: AtomicI64::new(0),
        db_writable: AtomicI64::new(-1),
        db_refusal: std::sync::Mutex::new(None),
        card_guard_ok: AtomicI64::new(-1),
        card_guard_logged_ms: AtomicI64::new(0),
        claim_failures: AtomicU64::new(0),
        claims_failed_in_a_row: AtomicU64::new(0),
        claim_error: std::sync::Mutex::new(None),
        webhooks: Default::default(),
        console_logins: Default::default(),
        balance_unread: AtomicU64::new(0),
    })
}

impl Metrics {
    /// A new database connection was closed because `why` (a property a promise needs) did
    /// not hold. Logged at error level at most once a minute.
    pub fn database_refused(&self, why: &str) {
        self.db_connections_refused.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut refusal) = self.db_refusal.lock() {
            *refusal = Some(why.to_owned());
        }
        if once_a_minute(&self.db_refused_logged_ms) {
            tracing::error!(
                reason = why,
                "a new database connection was refused; the worker will not use it (said once a minute while it lasts)"
            );
        }
    }

    /// A new database connection passed every check.
    pub fn database_accepted(&self) {
        if let Ok(mut refusal) = self.db_refusal.lock() {
            *refusal = None;
        }
    }

    /// Why the last new database connection was refused, while no later one was accepted.
    pub fn database_refusal(&self) -> Option<String> {
        self.db_refusal.lock().ok().and_then(|r| r.clone())
    }

    /// What the last check of the database said: it takes writes, or not.
    pub fn database_writable(&self, writable: bool) {
        self.db_writable
            .store(i64::from(writable), Ordering::Relaxed);
    }

    /// What the last look at the plain-card guard found.
    pub fn card_guard(&self, ok: bool) {
        self.card_guard_ok.store(i64::from(ok), Ordering::Relaxed);
    }

    /// Whether the guard's absence may be logged now (once a minute while it lasts).
    pub fn card_guard_unlogged(&self) -> bool {
        once_a_minute(&self.card_guard_logged_ms)
    }

    /// A claim round failed with `why`, kept in one line that names no database, role or other
    /// object (`/readyz` shows it to anyone who reaches the port): see [`without_names`].
    pub fn claim_failed(&self, why: &dyn std::fmt::Display) {
        self.claim_failures.fetch_add(1, Ordering::Relaxed);
        self.claims_failed_in_a_row.fetch_add(1, Ordering::Relaxed);
        let line = without_names(&why.to_string().replace(['\n', '\r'], " "));
        if let Ok(mut last) = self.claim_error.lock() {
            *last = Some(line);
        }
    }

    /// A claim round reached the database and came back.
    pub fn claim_succeeded(&self) {
        self.claims_failed_in_a_row.store(0, Ordering::Relaxed);
    }

    /// The last claim error, while the last [`CLAIMS_FAILED_NOT_READY`] rounds or more failed.
    pub fn claims_failing(&self) -> Option<(u64, String)> {
        let n = self.claims_failed_in_a_row.load(Ordering::Relaxed);
        if n < CLAIMS_FAILED_NOT_READY {
            return None;
        }
        let why = self.claim_error.lock().ok()?.clone()?;
        Some((n, why))
    }

    /// ATRIP answered a request (any HTTP answer: it is reachable).
    pub fn atrip_answered(&self) {
        self.atrip_answered_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// A request could not reach ATRIP. Logged at error level at most once a minute.
    pub fn atrip_unreachable(&self, base_url: &str, reason: &str) {
        let now = chrono::Utc::now().timestamp_millis();
        self.atrip_unreachable_ms.store(now, Ordering::Relaxed);
        if once_a_minute(&self.atrip_unreachable_logged_ms) {
            tracing::error!(
                atrip = base_url,
                reason,
                "ATRIP is unreachable; orders wait (said once a minute while it lasts)"
            );
        }
    }

    /// ATRIP answered, but refused our credentials.
    pub fn atrip_refused_credentials(&self) {
        self.atrip_credentials_refused_ms
            .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
    }

    /// This process's view of ATRIP for the console: the last time a request got an HTTP
    /// answer, could not reach it, and had our credentials refused (Unix ms, 0 for never).
    pub fn atrip_seen(&self) -> AtripSeen {
        AtripSeen {
            answered_ms: self.atrip_answered_ms.load(Ordering::Relaxed),
            unreachable_ms: self.atrip_unreachable_ms.load(Ordering::Relaxed),
            credentials_refused_ms: self.atrip_credentials_refused_ms.load(Ordering::Relaxed),
        }
    }

    /// Whether ATRIP's last request got an answer (1), could not reach it (0), or none was
    /// made yet (absent).
    pub fn atrip_up(&self) -> Option<u8> {
        self.atrip_seen().reached().map(u8::from)
    }

    /// A hot-path connection was handed out after `waited`.
    pub fn db_acquired(&self, waited: Duration) {
        self.db_acquires.fetch_add(1, Ordering::Relaxed);
        if waited > Duration::from_millis(1) {
            self.db_acquire_waits.fetch_add(1, Ordering::Relaxed);
            self.db_acquire_wait_micros.fetch_add(
                waited.as_micros().min(u128::from(u64::MAX)) as u64,
                Ordering::Relaxed,
            );
        }
    }

    /// Counts one webhook delivery by what became of it ([`WEBHOOK_OUTCOMES`]).
    pub fn webhook(&self, outcome: &str) {
        if let Some(i) = WEBHOOK_OUTCOMES.iter().position(|o| *o == outcome) {
            self.webhooks[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts one console login by its result ([`LOGIN_RESULTS`]).
    pub fn console_login(&self, result: &str) {
        if let Some(i) = LOGIN_RESULTS.iter().position(|r| *r == result) {
            self.console_logins[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn pay_outcome(&self, class: &str) {
        if let Some(i) = PAY_CLASSES.iter().position(|c| *c == class) {
            self.pay_outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The process's own figures in the text exposition; `/metrics` puts the job table's,
    /// read at scrape time, before them (`http::scrape`).
    pub fn render(&self) -> String {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        header(
            &mut out,
            "ticketing_webhooks_total",
            "counter",
            "Webhook deliveries by what became of them (docs/design.md W3, W6).",
        );
        for (outcome, n) in WEBHOOK_OUTCOMES.iter().zip(&self.webhooks) {
            let _ = writeln!(
                out,
                "ticketing_webhooks_total{{outcome=\"{outcome}\"}} {}",
                load(n)
            );
        }
        header(
            &mut out,
            "ticketing_console_logins_total",
            "counter",
            "Console logins by result (docs/design.md L1-L5): ok, wrong_password, locked, limited, disabled, forged, bad_request, unavailable.",
        );
        for (result, n) in LOGIN_RESULTS.iter().zip(&self.console_logins) {
            let _ = writeln!(
                out,
                "ticketing_console_logins_total{{result=\"{result}\"}} {}",
                load(n)
            );
        }
        sample(
            &mut out,
            "ticketing_balance_unread_total",
            "counter",
            "balance.do calls that gave no readable balance (a 411 review then says only to check it).",
            load(&self.balance_unread),
        );
        // The deposit balance itself is not exported: `/metrics` is unauthenticated, and what
        // the account holds is for the 411 review's reason and the console only.
        header(
            &mut out,
            "ticketing_pay_outcomes_total",
            "counter",
            "pay.do answers by class.",
        );
        for (class, n) in PAY_CLASSES.iter().zip(&self.pay_outcomes) {
            let _ = writeln!(
                out,
                "ticketing_pay_outcomes_total{{class=\"{class}\"}} {}",
                load(n)
            );
        }
        sample(
            &mut out,
            "ticketing_lease_losses_total",
            "counter",
            "Steps stopped because another worker took their row over.",
            load(&self.lease_losses),
        );
        sample(
            &mut out,
            "ticketing_worker_clock_skew_seconds",
            "gauge",
            "This process's wall clock minus the database's (nothing depends on it: leases and deadlines use the database's time).",
            self.clock_skew_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        );
        if let Some(up) = self.atrip_up() {
            sample(
                &mut out,
                "ticketing_atrip_up",
                "gauge",
                "Whether ATRIP's last request got an HTTP answer (1) or could not reach it (0).",
                up,
            );
        }
        let answered = self.atrip_answered_ms.load(Ordering::Relaxed);
        if answered > 0 {
            sample(
                &mut out,
                "ticketing_atrip_last_answer_timestamp_seconds",
                "gauge",
                "When ATRIP last answered a request.",
                answered as f64 / 1000.0,
            );
        }
        header(
            &mut out,
            "ticketing_intent_durability",
            "gauge",
            "Where pay intents are confirmed durable before a pay.do leaves: 1 for the level in force (local: flushed on the server; replicated: flushed by standbys).",
        );
        let level = self.intent_level.load(Ordering::Relaxed);
        for (code, name) in [(1, "local"), (2, "replicated")] {
            let _ = writeln!(
                out,
                "ticketing_intent_durability{{level=\"{name}\"}} {}",
                u8::from(level == code)
            );
        }
        sample(
            &mut out,
            "ticketing_paying_held",
            "gauge",
            "1 while new payments are held because intents must be replicated and no standby can confirm them.",
            u8::from(self.paying_held.load(Ordering::Relaxed)),
        );
        sample(
            &mut out,
            "ticketing_intents_not_durable_total",
            "counter",
            "Pay intents given back unsent because no standby confirmed them in time.",
            load(&self.intents_not_durable),
        );
        sample(
            &mut out,
            "ticketing_step_panics_total",
            "counter",
            "Steps that panicked; each one's row went to needs_review.",
            load(&self.step_panics),
        );
        sample(
            &mut out,
            "ticketing_evidence_unrecorded",
            "gauge",
            "Evidence of payment this process holds that has not reached the job table yet (retried until it does).",
            self.evidence_unrecorded.load(Ordering::Relaxed),
        );
        sample(
            &mut out,
            "ticketing_database_connections_refused_total",
            "counter",
            "New database connections the worker closed because a property its promises need did not hold (a session setting not in force, a server that takes no writes); the log says which.",
            load(&self.db_connections_refused),
        );
        let writable = self.db_writable.load(Ordering::Relaxed);
        if writable >= 0 {
            sample(
                &mut out,
                "ticketing_database_writable",
                "gauge",
                "Whether the database took writes at the last check (0: a standby in recovery, or default_transaction_read_only; /readyz says which).",
                writable,
            );
        }
        let guard = self.card_guard_ok.load(Ordering::Relaxed);
        if guard >= 0 {
            sample(
                &mut out,
                "ticketing_card_guard_ok",
                "gauge",
                "Whether the plain-card guard was in force at the last look (0: its triggers are disabled or missing while the policy refuses plain cards; /readyz says what to run).",
                guard,
            );
        }
        sample(
            &mut out,
            "ticketing_claim_failures_total",
            "counter",
            "Claim rounds that failed (a database error; the log says \"claim failed\", /readyz names it after a few in a row).",
            load(&self.claim_failures),
        );
        sample(
            &mut out,
            "ticketing_rows_busy_total",
            "counter",
            "Writes and lease renewals that found their row locked by another session (written again later).",
            load(&self.rows_busy),
        );
        sample(
            &mut out,
            "ticketing_orders_out_of_scope_total",
            "counter",
            "Orders ATRIP refused with 900/902 while it took the credentials for others; each went to needs_review.",
            load(&self.orders_out_of_scope),
        );
        sample(
            &mut out,
            "ticketing_in_flight",
            "gauge",
            "Rows this process is working on (leases held).",
            self.in_flight.load(Ordering::Relaxed),
        );
        if let Some(pool) = self.pool.get() {
            header(
                &mut out,
                "ticketing_db_pool_connections",
                "gauge",
                "Connections in this process's pool, by use.",
            );
            let (size, idle) = (pool.size() as usize, pool.num_idle());
            let _ = writeln!(
                out,
                "ticketing_db_pool_connections{{use=\"busy\"}} {}",
                size.saturating_sub(idle)
            );
            let _ = writeln!(out, "ticketing_db_pool_connections{{use=\"idle\"}} {idle}");
        }
        sample(
            &mut out,
            "ticketing_db_acquires_total",
            "counter",
            "Connections taken for claims, renewals and writes.",
            load(&self.db_acquires),
        );
        sample(
            &mut out,
            "ticketing_db_acquire_waits_total",
            "counter",
            "Of those, how many waited over 1 ms for a free pool slot.",
            load(&self.db_acquire_waits),
        );
        sample(
            &mut out,
            "ticketing_db_acquire_wait_seconds_total",
            "counter",
            "Time those waits took.",
            load(&self.db_acquire_wait_micros) as f64 / 1e6,
        );
        header(
            &mut out,
            "ticketing_atrip_request_seconds",
            "histogram",
            "ATRIP request latency.",
        );
        self.pay_latency.render(
            &mut out,
            "ticketing_atrip_request_seconds",
            "endpoint=\"pay.do\"",
        );
        self.query_latency.render(
            &mut out,
            "ticketing_atrip_request_seconds",
            "endpoint=\"queryOrderDetails.do\"",
        );
        header(
            &mut out,
            "ticketing_enqueue_to_ticketed_seconds",
            "histogram",
            "Time from INSERT to ticketed.",
        );
        self.enqueue_to_ticketed
            .render(&mut out, "ticketing_enqueue_to_ticketed_seconds", "");
        out
    }
}

/// A database error's words without the names in them: PostgreSQL quotes every name it
/// says (`role "ticketing" is not permitted to log in`, `database "…" does not exist`), and
/// PgBouncer ends its refusals with one (`no such user: ticketing`); each becomes `…`. What
/// kind of failure it was stays readable (`permission denied for table ticketing_jobs` names
/// the product's own table, which every reader of the README knows).
pub fn without_names(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut quoted = false;
    for c in line.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…");
            } else {
                out.push('"');
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    for refusal in ["no such user: ", "no such database: ", "for user "] {
        if let Some(at) = out.find(refusal) {
            let name = at + refusal.len();
            let end = out[name..]
                .find(|c: char| c.is_whitespace() || c == ',' || c == ')')
                .map_or(out.len(), |e| name + e);
            out.replace_range(name..end, "…");
        }
    }
    out
}

/// A metric's `# HELP` and `# TYPE` lines.
pub(crate) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A metric of one sample, with its header.
pub(crate) fn sample(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    value: impl std::fmt::Display,
) {
    header(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_errors_lose_every_name_and_keep_their_kind() {
        for (raw, shown) in [
            (
                r#"error returned from database: role "advw" is not permitted to log in"#,
                r#"error returned from database: role "…" is not permitted to log in"#,
            ),
            (
                r#"database "tt_prod" does not exist"#,
                r#"database "…" does not exist"#,
            ),
            (
                "permission denied for table ticketing_jobs",
                "permission denied for table ticketing_jobs",
            ),
            ("ERROR: no such user: advw", "ERROR: no such user: …"),
            (
                "password authentication failed for user advw, try again",
                "password authentication failed for user …, try again",
            ),
        ] {
            assert_eq!(without_names(raw), shown);
        }
    }

    #[test]
    fn histograms_are_cumulative_and_render_as_prometheus_text() {
        let h = Histogram::new(&[0.1, 1.0]);
        h.observe(Duration::from_millis(50));
        h.observe(Duration::from_millis(500));
        h.observe(Duration::from_secs(5));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.1\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"1\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }
}
