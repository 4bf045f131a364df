//! The leases this process holds, as its own monotonic clock sees them.
//!
//! The database decides who holds a row (rule T1); this book only lets a step refuse to start a
//! call it could not finish inside its lease. Each lease's end is counted from the moment the
//! claim (or renewal) *left* this process, plus the lease length: the database set its end at
//! least that late, so our view is never longer than the real one, whatever this machine's wall
//! clock says. A frozen process wakes up with its leases already over in this view too.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::jobs::Renewed;

#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    until: Instant,
}

/// Leases by job id.
#[derive(Debug, Default)]
pub(super) struct LeaseBook {
    held: Mutex<HashMap<i64, Held>>,
}

impl LeaseBook {
    /// A claim that left at `sent` took `(id, token)` for `lease`.
    pub fn took(&self, id: i64, token: i64, sent: Instant, lease: Duration) {
        let mut held = self.held.lock().unwrap();
        held.insert(
            id,
            Held {
                token,
                until: sent + lease,
            },
        );
        crate::metrics::global()
            .in_flight
            .store(held.len() as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Forgets our own lease on `id` (not a newer one taken under another token).
    pub fn release(&self, id: i64, token: i64) {
        let mut held = self.held.lock().unwrap();
        if held.get(&id).is_some_and(|h| h.token == token) {
            held.remove(&id);
        }
        crate::metrics::global()
            .in_flight
            .store(held.len() as i64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether this process holds a lease on `id` (under any token): a step of it still runs.
    pub fn holds(&self, id: i64) -> bool {
        self.held.lock().unwrap().contains_key(&id)
    }

    /// Every `(id, token)` held, for the heartbeat.
    pub fn all(&self) -> Vec<(i64, i64)> {
        self.held
            .lock()
            .unwrap()
            .iter()
            .map(|(id, h)| (*id, h.token))
            .collect()
    }

    /// A renewal that left at `sent` kept `renewed.kept` for `lease` and skipped
    /// `renewed.busy` (their row locked by another session: our view of them stays as it
    /// was); the others were lost, and their steps must not start anything more.
    pub fn renewed(&self, asked: &[(i64, i64)], renewed: &Renewed, sent: Instant, lease: Duration) {
        let kept: HashSet<i64> = renewed.kept.iter().copied().collect();
        let busy: HashSet<i64> = renewed.busy.iter().copied().collect();
        let mut held = self.held.lock().unwrap();
        for (id, token) in asked {
            if let Some(h) = held.get_mut(id).filter(|h| h.token == *token) {
                if kept.contains(id) {
                    h.until = sent + lease;
                } else if !busy.contains(id) {
                    h.until = h.until.min(sent);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.held.lock().unwrap().len()
    }

    /// Whether our lease on `id` lasts at least `call` longer.
    pub fn covers(&self, id: i64, call: Duration) -> bool {
        self.held
            .lock()
            .unwrap()
            .get(&id)
            .is_some_and(|h| Instant::now() + call < h.until)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_lease_covers_a_call_only_while_it_lasts_and_a_lost_renewal_ends_it() {
        let book = LeaseBook::default();
        let t0 = Instant::now();
        book.took(1, 7, t0, Duration::from_secs(30));
        assert!(book.covers(1, Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(20)).await;
        assert!(!book.covers(1, Duration::from_secs(15)), "only 10 s left");
        let kept = |kept: Vec<i64>, busy: Vec<i64>| Renewed { kept, busy };
        book.renewed(
            &[(1, 7)],
            &kept(vec![1], vec![]),
            Instant::now(),
            Duration::from_secs(30),
        );
        assert!(book.covers(1, Duration::from_secs(15)));
        tokio::time::advance(Duration::from_secs(5)).await;
        book.renewed(
            &[(1, 7)],
            &kept(vec![], vec![1]),
            Instant::now(),
            Duration::from_secs(30),
        );
        assert!(
            book.covers(1, Duration::from_secs(20)) && !book.covers(1, Duration::from_secs(26)),
            "a busy row's lease is neither extended nor cut"
        );
        book.renewed(
            &[(1, 7)],
            &kept(vec![], vec![]),
            Instant::now(),
            Duration::from_secs(30),
        );
        assert!(!book.covers(1, Duration::ZERO), "the renewal lost it");
        book.release(1, 8);
        assert_eq!(book.len(), 1, "another token's release is not ours");
        book.release(1, 7);
        assert_eq!(book.len(), 0);
    }
}
