//! Time for the worker: its wall clock (for the skew report only), the poll delay, and the
//! outgoing rate limit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use std::sync::Mutex;
use tokio::time::Instant;

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

/// How long this worker's `pay.do` may take to be answered, from the answers that came back:
/// the smoothed round trip plus four times its smoothed deviation, as TCP bounds its
/// retransmission timer (RFC 6298: gains 1/8 and 1/4), so that an answer slower than the mean
/// is still inside the bound. Zero until one answer came. A payment whose deadline falls within
/// it is not sent (rule S3).
#[derive(Debug, Default)]
pub struct RoundTrip {
    /// (smoothed round trip, smoothed deviation), in microseconds; `None` before the first.
    micros: Mutex<Option<(f64, f64)>>,
}

impl RoundTrip {
    pub fn observe(&self, took: Duration) {
        let r = took.as_secs_f64() * 1e6;
        let mut m = self.micros.lock().unwrap_or_else(|e| e.into_inner());
        *m = Some(match *m {
            None => (r, r / 2.0),
            Some((srtt, var)) => (
                srtt + (r - srtt) / 8.0,
                var + ((srtt - r).abs() - var) / 4.0,
            ),
        });
    }

    pub fn estimate(&self) -> chrono::Duration {
        let m = *self.micros.lock().unwrap_or_else(|e| e.into_inner());
        let micros = m.map_or(0.0, |(srtt, var)| srtt + 4.0 * var);
        chrono::Duration::microseconds(micros.min(i64::MAX as f64) as i64)
    }
}

#[cfg(test)]
mod round_trip_tests {
    use super::*;

    #[test]
    fn s3_the_bound_covers_answers_slower_than_the_mean() {
        let rt = RoundTrip::default();
        assert_eq!(rt.estimate(), chrono::Duration::zero());
        // Answers of 2.5 to 3.5 s: the bound ends above the slowest of them.
        for i in 0..200 {
            rt.observe(Duration::from_millis(2500 + (i * 37 % 1000)));
        }
        let bound = rt.estimate().num_milliseconds();
        assert!((3500..6000).contains(&bound), "{bound} ms");
        // Steady answers bring it down to about the answer.
        for _ in 0..200 {
            rt.observe(Duration::from_millis(300));
        }
        let bound = rt.estimate().num_milliseconds();
        assert!((300..320).contains(&bound), "{bound} ms");
    }
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
