//! Time for the worker: its wall clock (for the skew report only), the poll delay, and the
//! outgoing rate limit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::time::Instant;

use crate::config::WorkerSettings;

/// This process's wall clock, with an offset tests use to skew it. Nothing that decides who may
/// touch a row reads it (rule T1: those times are the database's); the worker only compares it
/// with the database's time to report the skew.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    offset_ms: Arc<AtomicI64>,
}

impl Clock {
    /// A clock `offset_ms` ahead of (or, negative, behind) the real one.
    pub fn skewed(offset_ms: i64) -> Clock {
        Clock {
            offset_ms: Arc::new(AtomicI64::new(offset_ms)),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::Relaxed))
    }
}

/// The delay before poll number `attempt` (0-based) of a ticketing order: exponential with
/// jitter, capped. This is the only place that uses the `backoff` crate (unmaintained per
/// RustSec; kept because it is the user's choice), so swapping it touches nothing else.
pub fn next_poll_delay(settings: &WorkerSettings, attempt: u32) -> Duration {
    use backoff::backoff::Backoff;
    let initial = Duration::from_millis(settings.poll_initial_ms);
    let max = Duration::from_millis(settings.poll_max_ms.max(settings.poll_initial_ms));
    // The un-jittered interval for this attempt; computed directly so that the delay depends
    // on the attempt number stored in the row, not on an in-memory backoff object.
    let factor = settings.poll_multiplier.powi(attempt.min(64) as i32);
    let current = initial.mul_f64(factor.min(max.as_secs_f64() / initial.as_secs_f64().max(1e-9)));
    let mut b = backoff::ExponentialBackoff {
        current_interval: current.min(max),
        initial_interval: initial,
        randomization_factor: settings.poll_randomization,
        multiplier: settings.poll_multiplier,
        max_interval: max,
        max_elapsed_time: None,
        ..backoff::ExponentialBackoff::default()
    };
    b.next_backoff().unwrap_or(max)
}

/// Spaces outgoing ATRIP requests of this process at `1 / rate` seconds, and pauses them all
/// when ATRIP answers with its rate limit.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    pub fn new(per_second: f64) -> Self {
        RateLimiter {
            interval: Duration::from_secs_f64(1.0 / per_second.max(0.001)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        let slot = {
            let mut next = self.next.lock().unwrap();
            let now = Instant::now();
            let slot = (*next).max(now);
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    /// Whether ATRIP asked us to slow down and the pause is still running: queries would wait,
    /// so the worker claims only rows that need `pay.do` (which ATRIP does not rate-limit).
    pub fn paused(&self) -> bool {
        *self.next.lock().unwrap() > Instant::now() + self.interval * 4
    }

    /// ATRIP said "too many requests, retry after `d`": no request leaves before then.
    pub fn pause_for(&self, d: Duration) {
        let mut next = self.next.lock().unwrap();
        *next = (*next).max(Instant::now() + d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    #[test]
    fn poll_delays_grow_then_cap_and_stay_within_the_jitter() {
        let mut w = Settings::defaults().worker;
        w.poll_initial_ms = 1000;
        w.poll_multiplier = 2.0;
        w.poll_max_ms = 10_000;
        w.poll_randomization = 0.2;
        for (attempt, base) in [
            (0u32, 1000.0),
            (1, 2000.0),
            (2, 4000.0),
            (3, 8000.0),
            (4, 10_000.0),
            (40, 10_000.0),
        ] {
            for _ in 0..50 {
                let d = next_poll_delay(&w, attempt).as_millis() as f64;
                assert!(
                    d >= base * 0.8 - 1.0 && d <= base * 1.2 + 1.0,
                    "attempt {attempt}: {d}"
                );
            }
        }
    }

    #[test]
    fn without_jitter_the_delay_is_exact() {
        let mut w = Settings::defaults().worker;
        w.poll_initial_ms = 500;
        w.poll_multiplier = 3.0;
        w.poll_max_ms = 60_000;
        w.poll_randomization = 0.0;
        assert_eq!(next_poll_delay(&w, 2), Duration::from_millis(4500));
    }

    #[test]
    fn a_skewed_clock_is_off_by_its_offset() {
        let c = Clock::skewed(3_600_000);
        let skew = c.now() - Utc::now();
        assert!(skew >= chrono::Duration::seconds(3599), "{skew}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_limiter_spaces_requests_and_pauses() {
        let l = RateLimiter::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            l.acquire().await;
        }
        assert!(start.elapsed() >= Duration::from_millis(400));
        assert!(!l.paused());
        l.pause_for(Duration::from_secs(2));
        assert!(l.paused());
        l.acquire().await;
        assert!(start.elapsed() >= Duration::from_secs(2));
    }
}
