//! Why a row waits for a person, as a short kind the console groups and filters by. The kind
//! is derived from what the row stores: ATRIP's `orderStatus` and the reason text the worker
//! wrote (`last_error`, the [`ReviewReason`](super::ReviewReason) or
//! [`FailReason`](super::FailReason) rendered after "order NO: "). The tests below render every
//! reason and check its kind, so a reworded reason that would fall out of its group fails them.

use super::operator::ATRIP_CANCELLED;

/// A reason's kind. `as_str` is the console's filter value (`?reason=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReasonKind {
    /// A `pay.do` may have reached ATRIP and the order does not show paid (P5d, deadline near).
    PayUnknown,
    /// 411 on a deposit order: the ATRIP deposit balance (rule P6).
    BalanceTooLow,
    /// 411 on a card order: the card gateway (rule P6).
    CardPaymentError,
    /// ATRIP refused the card payment with a documented status (nothing charged).
    CardRefused,
    /// ATRIP refused a payment that takes no card (nothing charged).
    PaymentRefused,
    /// ATRIP already tried to charge the card (`paymentAttempted`), yet shows unpaid.
    ChargeAttempted,
    /// Our credentials refused on `pay.do` (900/902).
    CredentialsRefused,
    /// 900/902 for this order only.
    OutOfScope,
    /// Unclear answers past the bounds.
    UnclearAnswers,
    /// The payment deadline passed, or would have before an answer, before anything was sent.
    DeadlinePassed,
    /// Paid, not ticketed within the ticketing deadline (rule F5).
    TicketingLate,
    /// ATRIP cancelled the order (`orderStatus` -3), unpaid.
    AtripCancelled,
    /// ATRIP cancelled a paid order: the payment is refunded by ATRIP.
    AtripCancelledRefunded,
    /// Every intent's `pay.do` never left this machine.
    NeverLeft,
    /// Sealed card data this worker cannot open.
    CardUnreadable,
    /// The order's own data cannot be paid; nothing was sent (rule P1a).
    NotSent,
    /// A bug reported on the row: a refused write, a missing transition, a panic.
    Bug,
    /// Anything else (a reason this release does not know).
    Other,
}

impl ReasonKind {
    pub const ALL: [ReasonKind; 18] = [
        ReasonKind::PayUnknown,
        ReasonKind::BalanceTooLow,
        ReasonKind::CardPaymentError,
        ReasonKind::CardRefused,
        ReasonKind::PaymentRefused,
        ReasonKind::ChargeAttempted,
        ReasonKind::CredentialsRefused,
        ReasonKind::OutOfScope,
        ReasonKind::UnclearAnswers,
        ReasonKind::DeadlinePassed,
        ReasonKind::TicketingLate,
        ReasonKind::AtripCancelled,
        ReasonKind::AtripCancelledRefunded,
        ReasonKind::NeverLeft,
        ReasonKind::CardUnreadable,
        ReasonKind::NotSent,
        ReasonKind::Bug,
        ReasonKind::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::PayUnknown => "pay-unknown",
            ReasonKind::BalanceTooLow => "balance-411",
            ReasonKind::CardPaymentError => "card-411",
            ReasonKind::CardRefused => "card-refused",
            ReasonKind::PaymentRefused => "payment-refused",
            ReasonKind::ChargeAttempted => "charge-attempted",
            ReasonKind::CredentialsRefused => "credentials",
            ReasonKind::OutOfScope => "out-of-scope",
            ReasonKind::UnclearAnswers => "unclear",
            ReasonKind::DeadlinePassed => "deadline-passed",
            ReasonKind::TicketingLate => "ticketing-late",
            ReasonKind::AtripCancelled => "atrip-cancelled",
            ReasonKind::AtripCancelledRefunded => "atrip-cancelled-refund",
            ReasonKind::NeverLeft => "never-left",
            ReasonKind::CardUnreadable => "card-unreadable",
            ReasonKind::NotSent => "not-sent",
            ReasonKind::Bug => "bug",
            ReasonKind::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<ReasonKind> {
        ReasonKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The kind in a few words (a group's heading, a row's short reason).
    pub fn label(self) -> &'static str {
        match self {
            ReasonKind::PayUnknown => "pay.do outcome unknown",
            ReasonKind::BalanceTooLow => "balance too low (411)",
            ReasonKind::CardPaymentError => "card payment error (411)",
            ReasonKind::CardRefused => "card refused",
            ReasonKind::PaymentRefused => "payment refused",
            ReasonKind::ChargeAttempted => "card charge attempted, unpaid",
            ReasonKind::CredentialsRefused => "our credentials refused (900/902)",
            ReasonKind::OutOfScope => "outside our ATRIP scope",
            ReasonKind::UnclearAnswers => "ATRIP's answers unclear",
            ReasonKind::DeadlinePassed => "deadline passed",
            ReasonKind::TicketingLate => "paid, not ticketed in time",
            ReasonKind::AtripCancelled => "ATRIP cancelled it",
            ReasonKind::AtripCancelledRefunded => "ATRIP cancelled it, refund due",
            ReasonKind::NeverLeft => "pay.do never left (connection)",
            ReasonKind::CardUnreadable => "sealed card unreadable",
            ReasonKind::NotSent => "not payable as given, nothing sent",
            ReasonKind::Bug => "a bug, reported on the row",
            ReasonKind::Other => "other",
        }
    }
}

/// The kind of a row's reason: from ATRIP's `orderStatus` when it shows the order cancelled,
/// else from the reason text (`last_error`). `needs_card`: the order's payment method takes a
/// card (a 411 or a refusal then concerns the card).
pub fn kind_of(
    last_error: Option<&str>,
    order_status: Option<&str>,
    needs_card: bool,
) -> ReasonKind {
    let text = last_error.map_or("", |e| {
        // "order NO: " as every writer prefixes it.
        e.strip_prefix("order ")
            .and_then(|rest| rest.split_once(": "))
            .map_or(e, |(_, why)| why)
    });
    let cancelled =
        order_status == Some(ATRIP_CANCELLED) || text.contains("ATRIP cancelled the order");
    if cancelled {
        return if text.contains("refunded") {
            ReasonKind::AtripCancelledRefunded
        } else {
            ReasonKind::AtripCancelled
        };
    }
    let starts = |p: &str| text.starts_with(p);
    if starts("internal error: the worker's step panicked")
        || starts("the job table refused the worker's write")
        || starts("no transition from ")
    {
        ReasonKind::Bug
    } else if starts("a pay.do may have reached ATRIP")
        || starts("the payment outcome is still unclear")
    {
        ReasonKind::PayUnknown
    } else if starts("pay.do answered 411") {
        if needs_card {
            ReasonKind::CardPaymentError
        } else {
            ReasonKind::BalanceTooLow
        }
    } else if starts("ATRIP refused our credentials") {
        ReasonKind::CredentialsRefused
    } else if starts("ATRIP shows the order unpaid but says it already tried to charge the card") {
        ReasonKind::ChargeAttempted
    } else if text.contains(" unclear answers in a row since ") {
        ReasonKind::UnclearAnswers
    } else if starts("paid but not ticketed by ") {
        ReasonKind::TicketingLate
    } else if starts("still unpaid after ") && text.contains("whose pay.do never left") {
        ReasonKind::NeverLeft
    } else if text.contains("Give the worker the right key") || text.starts_with("sealed card data")
    {
        ReasonKind::CardUnreadable
    } else if starts("ATRIP answered ") && text.contains("for this order only") {
        ReasonKind::OutOfScope
    } else if starts("ATRIP refused the payment with status") {
        if needs_card {
            ReasonKind::CardRefused
        } else {
            ReasonKind::PaymentRefused
        }
    } else if text.contains("payment deadline")
        && (text.contains("passed") || text.contains("would pass"))
    {
        ReasonKind::DeadlinePassed
    } else if text.contains("pay.do was not sent") || text.contains("nothing was sent") {
        ReasonKind::NotSent
    } else {
        ReasonKind::Other
    }
}

/// The stored reason without a count of minutes left that an older release wrote into it
/// ("29 min left before its payment deadline D" → "its payment deadline is D"): stale the
/// moment it was stored. The page says the time left, computed when it is shown.
pub fn without_stale_minutes(text: &str) -> String {
    const MARK: &str = " min left before its payment deadline ";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(MARK) {
        let head = &rest[..at];
        let digits = head.len() - head.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        out.push_str(&head[..head.len() - digits]);
        out.push_str("its payment deadline is ");
        rest = &rest[at + MARK.len()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::machine::{FailReason, ReviewReason};

    fn kind(reason: &dyn std::fmt::Display, card: bool) -> ReasonKind {
        kind_of(Some(&format!("order ORD1: {reason}")), Some("0"), card)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn every_review_reason_the_worker_writes_has_its_own_kind() {
        let now = at("2026-12-04T10:00:00Z");
        let later = Some(at("2026-12-04T10:30:00Z"));
        let cases: Vec<(ReviewReason, bool, ReasonKind)> = vec![
            (
                ReviewReason::UnpaidAfterSend {
                    sent_at: now,
                    deadline: later,
                    now,
                },
                false,
                ReasonKind::PayUnknown,
            ),
            (
                ReviewReason::DeadlineNear {
                    deadline: now,
                    now,
                    last: "timeout".into(),
                },
                false,
                ReasonKind::PayUnknown,
            ),
            (
                ReviewReason::PaymentError {
                    deadline: later,
                    now,
                    balance: Some("1.00 USD".into()),
                },
                false,
                ReasonKind::BalanceTooLow,
            ),
            (
                ReviewReason::PaymentError {
                    deadline: None,
                    now,
                    balance: None,
                },
                true,
                ReasonKind::CardPaymentError,
            ),
            (
                ReviewReason::CredentialsRefused,
                false,
                ReasonKind::CredentialsRefused,
            ),
            (
                ReviewReason::PaymentAttempted,
                true,
                ReasonKind::ChargeAttempted,
            ),
            (
                ReviewReason::Unclear {
                    answers: 5,
                    since: now,
                    last: "payment deadline passed".into(),
                },
                false,
                ReasonKind::UnclearAnswers,
            ),
            (
                ReviewReason::TicketingDeadline {
                    deadline: now,
                    last: "x".into(),
                },
                false,
                ReasonKind::TicketingLate,
            ),
            (
                ReviewReason::TooManyAttempts { attempts: 3 },
                false,
                ReasonKind::NeverLeft,
            ),
            (
                ReviewReason::CardUnreadable("sealed card data this worker has no key for".into()),
                true,
                ReasonKind::CardUnreadable,
            ),
            (
                ReviewReason::ConstraintViolated {
                    constraint: "c".into(),
                },
                false,
                ReasonKind::Bug,
            ),
            (
                ReviewReason::NoSuchTransition {
                    state: "paying".into(),
                    event: "e",
                },
                false,
                ReasonKind::Bug,
            ),
            (
                ReviewReason::OutOfScope {
                    status: 900,
                    on_pay: true,
                },
                false,
                ReasonKind::OutOfScope,
            ),
        ];
        for (reason, card, want) in cases {
            assert_eq!(kind(&reason, card), want, "{reason}");
        }
    }

    #[test]
    fn every_fail_reason_the_worker_writes_has_its_own_kind() {
        let now = at("2026-12-04T10:00:00Z");
        let refused = FailReason::PayRefused {
            status: 413,
            msg: Some("Card not supported".into()),
        };
        assert_eq!(kind(&refused, true), ReasonKind::CardRefused);
        assert_eq!(kind(&refused, false), ReasonKind::PaymentRefused);
        assert_eq!(
            kind(&FailReason::UnpaidPastDeadline { deadline: now }, false),
            ReasonKind::DeadlinePassed
        );
        assert_eq!(
            kind(
                &FailReason::NotSent(format!("the payment deadline {now} passed before payment")),
                false
            ),
            ReasonKind::DeadlinePassed
        );
        assert_eq!(
            kind(&FailReason::NotSent("card expired".into()), true),
            ReasonKind::NotSent
        );
        let cancelled = |paid| FailReason::Cancelled {
            error_code: Some("E1".into()),
            error_message: None,
            paid,
        };
        assert_eq!(kind(&cancelled(false), false), ReasonKind::AtripCancelled);
        assert_eq!(
            kind(&cancelled(true), true),
            ReasonKind::AtripCancelledRefunded
        );
        // ATRIP's orderStatus says it whatever the text.
        assert_eq!(
            kind_of(Some("order X: whatever"), Some("-3"), false),
            ReasonKind::AtripCancelled
        );
        assert_eq!(kind_of(None, None, false), ReasonKind::Other);
        // The durability gate's own text (jobs::replication).
        assert_eq!(
            kind_of(Some("order X: its payment deadline 2026-12-04 10:00:00+00 passed while no pay intent could be made durable (no standby); pay.do was not sent"), None, false),
            ReasonKind::DeadlinePassed
        );
    }

    #[test]
    fn kinds_round_trip_through_their_filter_value_and_labels_are_short() {
        for k in ReasonKind::ALL {
            assert_eq!(ReasonKind::parse(k.as_str()), Some(k));
            assert!(k.label().len() <= 40, "{}", k.label());
        }
    }

    #[test]
    fn a_stored_count_of_minutes_left_is_taken_out() {
        assert_eq!(
            without_stale_minutes(
                "retry --repay (29 min left before its payment deadline 2026-12-04 10:00:00 UTC)"
            ),
            "retry --repay (its payment deadline is 2026-12-04 10:00:00 UTC)"
        );
        assert_eq!(
            without_stale_minutes("no deadline here"),
            "no deadline here"
        );
    }
}
