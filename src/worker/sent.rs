//! The orders this process has let a `pay.do` leave for (rule P1d): a claim that takes one of
//! them from `pending` again means the database went back in time (a failover to a standby
//! that had not received the intent, a restore), and no second `pay.do` may leave from this
//! process for it, whether or not the first step still runs.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Mutex;

/// How many orders are remembered: the oldest is forgotten past this (about 32 bytes each).
pub const REMEMBERED: usize = 100_000;

/// Order numbers, oldest first, at most [`REMEMBERED`], each kept as a 64-bit hash (two
/// numbers sharing one, odds about 2^-47 at the bound, would send the unpaid one to its order
/// query and a person instead of paying it: never a second charge). Keyed by order
/// number, not row id: a row deleted and enqueued again under the same number is the same
/// order at ATRIP.
#[derive(Default)]
pub struct SentHere {
    inner: Mutex<(HashSet<u64>, VecDeque<u64>)>,
}

/// The same hash in every process run (`DefaultHasher::new` has fixed keys).
fn key(order_no: &str) -> u64 {
    BuildHasherDefault::<DefaultHasher>::default().hash_one(order_no)
}

impl SentHere {
    /// A `pay.do` for `order_no` may leave now.
    pub fn record(&self, order_no: &str) {
        let key = key(order_no);
        let mut guard = self.inner.lock().unwrap();
        let (set, order) = &mut *guard;
        if set.insert(key) {
            order.push_back(key);
            if order.len() > REMEMBERED {
                if let Some(oldest) = order.pop_front() {
                    set.remove(&oldest);
                }
            }
        }
    }

    /// Whether a `pay.do` for `order_no` may have left from this process.
    pub fn contains(&self, order_no: &str) -> bool {
        self.inner.lock().unwrap().0.contains(&key(order_no))
    }
}

#[cfg(test)]
mod tests {
    use super::{SentHere, REMEMBERED};

    #[test]
    fn p1d_an_order_this_process_sent_pay_do_for_is_remembered_and_the_oldest_forgotten_past_the_bound(
    ) {
        let sent = SentHere::default();
        assert!(!sent.contains("TESTA0000000000000"));
        for n in 0..=REMEMBERED {
            sent.record(&format!("TESTA{n:013}"));
        }
        sent.record("TESTA0000000000001");
        assert!(
            !sent.contains("TESTA0000000000000"),
            "the oldest is forgotten"
        );
        assert!(sent.contains("TESTA0000000000001"));
        assert!(sent.contains(&format!("TESTA{REMEMBERED:013}")));
    }
}
