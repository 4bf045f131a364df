//! The payments `pay.do` took for one order. Each settles (the money is taken: a charge) at a
//! time fixed when it was taken, so "processing" or "charged" is read from the clock, never set
//! by a timer; with ATRIP's duplicate guard on there is at most one.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// Why an order is cancelled, as the query's `errorCode`/`errorMessage`/`airlineMessage` say.
#[derive(Clone, Debug, Default)]
pub(super) struct Cancellation {
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub airline_message: Option<String>,
}

/// How ticketing will end, fixed when the payment is taken so that a scenario posted later
/// cannot change an outcome the worker may already have seen.
#[derive(Clone, Debug)]
pub(super) enum Outcome {
    /// One ticket number per passenger, revealed at their time.
    Tickets(Vec<String>),
    /// The order ends `"-3"` with this reason.
    Fails(Cancellation),
}

/// One payment taken by `pay.do`.
#[derive(Clone, Debug)]
pub(super) struct Payment {
    /// When it settles: the card or deposit is charged and the order is paid. The moment pay.do
    /// took it (under the store's lock) plus the processing time; until then the order still
    /// shows "0".
    pub settles_at: Instant,
    /// `settles_at` on the wall clock: the order's `payTime`.
    pub pay_time: DateTime<Utc>,
    pub method: i64,
    /// The "payment operation in progress" window after the charge (406 on pay.do).
    pub in_progress: Duration,
    /// From the end of the in-progress window to the final state.
    pub ticketing_delay: Duration,
    pub outcome: Outcome,
    /// The only card data kept: last four digits, also shown as `tailDigitsOfPaymentCard`.
    pub card_tail: Option<String>,
}

impl Payment {
    pub(super) fn settled(&self, now: Instant) -> bool {
        self.settles_at <= now
    }
}

/// Every payment of one order, in the order they were taken.
#[derive(Clone, Debug, Default)]
pub(super) struct Payments(Vec<Payment>);

impl Payments {
    pub(super) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(super) fn push(&mut self, payment: Payment) {
        self.0.push(payment);
    }

    pub(super) fn get(&self, index: usize) -> Option<&Payment> {
        self.0.get(index)
    }

    /// The payment that paid the order: the first to settle (ties: the first taken). Once one
    /// exists it never changes, because a payment is only taken while none has settled and it
    /// settles after it was taken.
    pub(super) fn paying(&self, now: Instant) -> Option<usize> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, p)| p.settled(now))
            .min_by_key(|(_, p)| p.settles_at)
            .map(|(i, _)| i)
    }

    /// Payments taken and not settled yet.
    pub(super) fn processing(&self, now: Instant) -> usize {
        self.0.iter().filter(|p| !p.settled(now)).count()
    }

    /// Payments settled so far: the ledger's `charges`. More than one is a double charge.
    pub(super) fn charged(&self, now: Instant) -> u64 {
        self.0.iter().filter(|p| p.settled(now)).count() as u64
    }

    /// Whether ATRIP took a pay.do with this method (processing or charged).
    pub(super) fn attempted_with(&self, method: i64) -> bool {
        self.0.iter().any(|p| p.method == method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payment(taken_at: Instant, processing_ms: u64) -> Payment {
        Payment {
            settles_at: taken_at + Duration::from_millis(processing_ms),
            pay_time: Utc::now(),
            method: 1,
            in_progress: Duration::ZERO,
            ticketing_delay: Duration::ZERO,
            outcome: Outcome::Tickets(vec![]),
            card_tail: None,
        }
    }

    #[test]
    fn the_first_payment_to_settle_pays_and_each_settled_one_is_a_charge() {
        let t0 = Instant::now();
        let mut payments = Payments::default();
        payments.push(payment(t0, 100));
        payments.push(payment(t0 + Duration::from_millis(10), 50));
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(
            (payments.paying(at(20)), payments.processing(at(20))),
            (None, 2)
        );
        assert_eq!(payments.charged(at(20)), 0);
        // The second settles first (60 ms): it is the one that paid, for good.
        assert_eq!(payments.paying(at(60)), Some(1));
        assert_eq!(payments.paying(at(200)), Some(1));
        assert_eq!(
            (payments.charged(at(200)), payments.processing(at(200))),
            (2, 0)
        );
    }
}
