//! The delay before an order is asked again (rule F4, P5e: "with backoff"). This is the only
//! place that uses the `backoff` crate (unmaintained per RustSec; kept because it is the user's
//! choice), behind one function, so swapping it touches nothing else. It sits below the
//! transition table, which uses it, and the worker, which schedules with it.

use std::time::Duration;

use crate::config::WorkerSettings;

/// The delay before poll number `attempt` (0-based) of an order: exponential with jitter,
/// capped.
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
}
