//! Test-only hooks of the real binary, read from the environment by `run` and inert when unset:
//! - `TICKETING_FAILPOINTS=stop-before-pay[:P]` makes the process stop itself (SIGSTOP, all
//!   threads) right before a `pay.do` leaves, with probability P (1 when left out). The chaos
//!   run and a test use it to freeze a worker between its last lease check and the send, the
//!   window no local check can close (docs/design.md, rule P2).
//! - `TICKETING_CLOCK_SKEW_MS=N` moves this process's wall clock by N ms, to show that no
//!   decision depends on it (rule T1).
//!
//! Both are refused in production (`APP_ENVIRONMENT=production`): a stray variable must not
//! freeze or skew a real worker.

use rand::Rng;
use tracing::{error, warn};

pub const FAILPOINTS_VAR: &str = "TICKETING_FAILPOINTS";
pub const CLOCK_SKEW_VAR: &str = "TICKETING_CLOCK_SKEW_MS";

/// The hooks this process runs with.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestHooks {
    /// Probability of stopping before a `pay.do`.
    pub stop_before_pay: Option<f64>,
    /// Wall-clock skew, in ms.
    pub clock_skew_ms: i64,
}

impl TestHooks {
    /// Reads the variables; in production, or when unset, every hook is off.
    pub fn from_env() -> TestHooks {
        let failpoints = std::env::var(FAILPOINTS_VAR).ok();
        let skew = std::env::var(CLOCK_SKEW_VAR).ok();
        if failpoints.is_none() && skew.is_none() {
            return TestHooks::default();
        }
        if std::env::var("APP_ENVIRONMENT").as_deref() == Ok("production") {
            error!("{FAILPOINTS_VAR} / {CLOCK_SKEW_VAR} are test-only and ignored in production");
            return TestHooks::default();
        }
        let mut hooks = TestHooks::default();
        for point in failpoints.iter().flat_map(|v| v.split(',')) {
            match point.trim().split_once(':') {
                Some(("stop-before-pay", p)) => hooks.stop_before_pay = p.parse().ok(),
                None if point.trim() == "stop-before-pay" => hooks.stop_before_pay = Some(1.0),
                _ => warn!(point, "unknown failpoint ignored"),
            }
        }
        hooks.clock_skew_ms = skew.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        warn!(?hooks, "test hooks are on");
        hooks
    }

    /// Right before a `pay.do` leaves.
    pub fn before_pay(&self, order_no: &str) {
        let Some(p) = self.stop_before_pay else {
            return;
        };
        if rand::thread_rng().gen_bool(p.clamp(0.0, 1.0)) {
            warn!(order_no, "failpoint stop-before-pay: stopping this process");
            // SAFETY: raise() only sends a signal to this process; SIGSTOP cannot be caught,
            // and the process resumes where it stopped on SIGCONT.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
    }
}
