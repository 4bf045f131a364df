//! How fast ATRIP answers, and whether it answers queries at all: a latency added to every ATRIP
//! answer (for performance runs against a realistic round trip) and query rate-limit storms
//! (for the chaos run: ATRIP's documented 429 body, for a while, on every order query).

use std::time::{Duration, Instant};

use rand::Rng;

use super::state::{Sim, Store};

/// `mean` ± `jitter`, spread uniformly by `u` in [0, 1] (0 gives `mean - jitter`), clamped at 0.
pub(super) fn latency(mean: Duration, jitter: Duration, u: f64) -> Duration {
    if jitter.is_zero() {
        return mean;
    }
    // In whole nanoseconds, so that the bounds come out exact.
    let offset = jitter.as_nanos() as f64 * (2.0 * u.clamp(0.0, 1.0) - 1.0);
    Duration::from_nanos((mean.as_nanos() as f64 + offset).max(0.0).round() as u64)
}

impl Sim {
    /// Waits the configured latency before an ATRIP endpoint answers (not `/sim/…`). A plain
    /// tokio sleep holding no lock, cut short by shutdown, so thousands of requests can wait
    /// at once; the business logic has already run, as on a real link the answer is what
    /// travels back slowly.
    pub(super) async fn answer_latency(&self) {
        let (mean, jitter) = (self.config.latency_mean, self.config.latency_jitter);
        if mean.is_zero() && jitter.is_zero() {
            return;
        }
        let u = rand::thread_rng().gen::<f64>();
        self.pause(latency(mean, jitter, u)).await;
    }

    /// Every queryOrderDetails.do answers 429 for `length` from now (zero ends a storm).
    pub(super) fn storm(&self, length: Duration) {
        self.lock().storm_until = Some(Instant::now() + length);
    }
}

impl Store {
    /// Whether a query arriving now meets a storm; counts it when it does.
    pub(super) fn storm_answer(&mut self, now: Instant) -> bool {
        let storming = self.storm_until.is_some_and(|until| now < until);
        self.totals.storm_answers += u64::from(storming);
        storming
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_spreads_around_the_mean_and_never_goes_below_zero() {
        let ms = Duration::from_millis;
        assert_eq!(latency(ms(100), Duration::ZERO, 0.9), ms(100));
        assert_eq!(latency(ms(100), ms(20), 0.0), ms(80));
        assert_eq!(latency(ms(100), ms(20), 1.0), ms(120));
        assert_eq!(latency(ms(100), ms(20), 0.5), ms(100));
        assert_eq!(latency(ms(10), ms(50), 0.0), Duration::ZERO);
    }
}
