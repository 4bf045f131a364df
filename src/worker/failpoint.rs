//! Test-only hooks of the real binary, read from the environment by `run` and inert when unset:
//! - `TICKETING_FAILPOINTS` is a comma-separated list of failpoints, each `NAME[@POINT][:P]`
//!   with a probability P (1 when left out), rolled at every point of a step where it can
//!   strike, or only at `POINT` (`after-claim`, `before-gate`, `before-pay`, `after-answer`,
//!   `before-write`):
//!   - `stop-before-pay`: the process stops itself (SIGSTOP, all threads) right before a
//!     `pay.do` leaves: a worker frozen between its last lease check and the send, the window
//!     no local check can close (docs/design.md, rule P2);
//!   - `panic`: the step panics (rule W5);
//!   - `error`: the step fails as if the database had (its row waits for its lease to end);
//!   - `pause`: the step sleeps `TICKETING_FAILPOINT_PAUSE_MS` (default 20000), past a
//!     lease in the chaos run's settings, as a process that froze mid-step.
//!
//!   The points ([`Point`]) are the awaits of a step: after its claim, before the durability
//!   gate, before `pay.do`, with an answer in hand, and before each write.
//! - `TICKETING_CLOCK_SKEW_MS=N` moves this process's wall clock by N ms, to show that no
//!   decision depends on it (rule T1).
//!
//! All are refused in production (`APP_ENVIRONMENT=production`): a stray variable must not
//! freeze, crash or skew a real worker.

use std::time::Duration;

use rand::Rng;
use tracing::{error, warn};

use super::StepError;

pub const FAILPOINTS_VAR: &str = "TICKETING_FAILPOINTS";
pub const CLOCK_SKEW_VAR: &str = "TICKETING_CLOCK_SKEW_MS";
pub const PAUSE_MS_VAR: &str = "TICKETING_FAILPOINT_PAUSE_MS";

/// Where in a step a failpoint may strike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// The step has its claim and has done nothing yet.
    AfterClaim,
    /// The intent is committed; the durability gate comes next.
    BeforeGate,
    /// The last moment before `pay.do` leaves.
    BeforePay,
    /// An answer (pay.do's or a query's) is in hand, nothing written of it.
    AfterAnswer,
    /// A write is about to be made (each attempt).
    BeforeWrite,
}

impl Point {
    pub const ALL: [Point; 5] = [
        Point::AfterClaim,
        Point::BeforeGate,
        Point::BeforePay,
        Point::AfterAnswer,
        Point::BeforeWrite,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Point::AfterClaim => "after-claim",
            Point::BeforeGate => "before-gate",
            Point::BeforePay => "before-pay",
            Point::AfterAnswer => "after-answer",
            Point::BeforeWrite => "before-write",
        }
    }
}

/// A failpoint's probability, everywhere or at one point.
#[derive(Debug, Clone, Copy, Default)]
pub struct Chance {
    pub p: f64,
    pub only_at: Option<Point>,
}

impl Chance {
    fn roll(self, point: Point) -> bool {
        self.only_at.is_none_or(|only| only == point) && roll(Some(self.p))
    }
}

/// The hooks this process runs with.
#[derive(Debug, Clone, Copy, Default)]
pub struct TestHooks {
    /// Probability of stopping before a `pay.do`.
    pub stop_before_pay: Option<f64>,
    /// Chances, at each point (or one), of a panic, an error and a pause.
    pub panic: Option<Chance>,
    pub error: Option<Chance>,
    pub pause: Option<Chance>,
    pub pause_for: Duration,
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
        let mut hooks = TestHooks::parse(failpoints.as_deref().unwrap_or(""));
        hooks.pause_for = Duration::from_millis(
            std::env::var(PAUSE_MS_VAR)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(20_000),
        );
        hooks.clock_skew_ms = skew.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        warn!(?hooks, "test hooks are on");
        hooks
    }

    /// Reads a `TICKETING_FAILPOINTS` value.
    pub fn parse(spec: &str) -> TestHooks {
        let mut hooks = TestHooks::default();
        for item in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, p) = match item.split_once(':') {
                Some((name, p)) => (name, p.trim().parse().ok()),
                None => (item, Some(1.0)),
            };
            let (name, only_at) = match name.split_once('@') {
                Some((name, at)) => match Point::ALL.into_iter().find(|p| p.as_str() == at) {
                    Some(point) => (name, Some(point)),
                    None => {
                        warn!(item, "unknown failpoint point; failpoint ignored");
                        continue;
                    }
                },
                None => (name, None),
            };
            let chance = p.map(|p| Chance { p, only_at });
            match name {
                "stop-before-pay" => hooks.stop_before_pay = p,
                "panic" => hooks.panic = chance,
                "error" => hooks.error = chance,
                "pause" => hooks.pause = chance,
                _ => warn!(item, "unknown failpoint ignored"),
            }
        }
        hooks
    }

    /// Right before a `pay.do` leaves.
    pub fn before_pay(&self, order_no: &str) {
        if roll(self.stop_before_pay) {
            warn!(order_no, "failpoint stop-before-pay: stopping this process");
            // SAFETY: raise() only sends a signal to this process; SIGSTOP cannot be caught,
            // and the process resumes where it stopped on SIGCONT.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
        }
    }

    /// A point of a step: may panic, fail or pause here.
    pub async fn at(&self, point: Point) -> Result<(), StepError> {
        if self.pause.is_some_and(|c| c.roll(point)) {
            warn!(
                ?point,
                pause_ms = self.pause_for.as_millis() as u64,
                "failpoint pause"
            );
            tokio::time::sleep(self.pause_for).await;
        }
        if self.error.is_some_and(|c| c.roll(point)) {
            warn!(?point, "failpoint error");
            return Err(StepError::Failpoint(point));
        }
        if self.panic.is_some_and(|c| c.roll(point)) {
            panic!("failpoint panic at {point:?}");
        }
        Ok(())
    }
}

fn roll(p: Option<f64>) -> bool {
    p.is_some_and(|p| p > 0.0 && rand::thread_rng().gen_bool(p.clamp(0.0, 1.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failpoints_parse_with_and_without_a_probability_and_a_point() {
        let h = TestHooks::parse(
            "stop-before-pay, panic:0.25,error@before-write:0,pause:1,bogus,error@nowhere",
        );
        assert_eq!(h.stop_before_pay, Some(1.0));
        assert_eq!(h.panic.map(|c| (c.p, c.only_at)), Some((0.25, None)));
        let error = h.error.unwrap();
        assert_eq!((error.p, error.only_at), (0.0, Some(Point::BeforeWrite)));
        assert!(!error.roll(Point::BeforeWrite));
        let pause = h.pause.unwrap();
        assert!(pause.roll(Point::AfterClaim) && pause.roll(Point::BeforeWrite));
        let only = TestHooks::parse("panic@after-answer").panic.unwrap();
        assert!(only.roll(Point::AfterAnswer) && !only.roll(Point::BeforePay));
        assert!(!roll(None) && roll(Some(1.0)));
    }
}
