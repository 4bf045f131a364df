//! What an operator may do to a row, decided without SQL (rules P7, P7a and P8), in one place:
//! the job store asks here before it writes (and fences its statement on the row it read), the
//! console asks here which buttons to show and why the others are missing, the command line
//! goes through the store, and the model check (`tests/model`) runs the same decisions.

use super::reasons::PayOutcome;
use crate::domain::State;

/// ATRIP's `orderStatus` for an order it cancelled.
pub const ATRIP_CANCELLED: &str = "-3";

/// The row as a retry or a cancel reads it.
#[derive(Debug, Clone, Copy)]
pub struct RowView<'a> {
    pub state: State,
    /// The payment method's code (`payment_method`).
    pub method: i16,
    /// The payment method takes a card.
    pub needs_card: bool,
    /// A card (plain or sealed) is still on the row.
    pub has_card: bool,
    /// When an answer showed the order paid, and what it was, in words.
    pub paid: Option<&'a str>,
    pub last_pay_outcome: Option<PayOutcome>,
    /// `pay.do` requests that may have reached ATRIP (`pay_attempts - pay_not_sent`).
    pub sends: i32,
    pub permits: i32,
    /// A worker's lease is on the row (`lease_owner` set).
    pub leased: bool,
    /// ATRIP's last answer showed the order cancelled (`order_status` "-3"): it cannot be
    /// paid or ticketed any more, and a paid one is refunded by ATRIP (rule P7a).
    pub atrip_cancelled: bool,
}

/// What a retry writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPlan {
    pub to: State,
    pub permits: i32,
    /// The row may pay once the order query shows it unpaid.
    pub may_pay: bool,
}

/// Rule P7: a retry of a `failed` or `needs_review` row resumes with an order query. `Err`
/// says, in words for the operator, why it is refused.
pub fn retry(row: &RowView<'_>, repay: bool, card_given: bool) -> Result<RetryPlan, String> {
    if row.state != State::Failed && row.state != State::NeedsReview {
        return Err(format!(
            "it is {}; retry is only for failed or needs_review orders",
            row.state
        ));
    }
    if row.atrip_cancelled {
        return Err(if row.paid.is_some() {
            "ATRIP cancelled this order (orderStatus -3) and refunds its payment through its refund process; a retry would only follow a cancelled order: book it again".into()
        } else {
            "ATRIP cancelled this order (orderStatus -3); it can no longer be paid or ticketed: book it again".into()
        });
    }
    if !row.needs_card && card_given {
        return Err(format!("payment method {} takes no card", row.method));
    }
    if let Some(shown) = row.paid {
        if repay {
            return Err(format!(
                "its history shows it paid ({shown}); a second payment is refused. `retry` (without --repay) follows it again"
            ));
        }
        if card_given {
            return Err(format!(
                "its history shows it paid ({shown}); it will not be paid again, so no card data is taken"
            ));
        }
    }
    let to = if row.paid.is_some() {
        State::Ticketing
    } else {
        State::Paying
    };
    let charged_nothing = row
        .last_pay_outcome
        .is_some_and(PayOutcome::charged_nothing);
    let grant = to == State::Paying && (repay || charged_nothing || row.sends == 0);
    let permits = if grant {
        row.permits.max(row.sends + 1)
    } else {
        row.permits
    };
    let may_pay = to == State::Paying && permits > row.sends;
    if !may_pay && repay {
        return Err("it cannot be paid again".into());
    }
    if may_pay && row.needs_card && !row.has_card && !card_given {
        return Err(
            "its card data was erased when the payment resolved; give fresh card data (--card-file)".into(),
        );
    }
    if !may_pay && card_given {
        return Err(
            "a pay.do may have reached ATRIP, so a plain retry will not pay again and takes no card data; check the order in ATRIP, then `retry --repay --card-file FILE`".into(),
        );
    }
    Ok(RetryPlan {
        to,
        permits,
        may_pay,
    })
}

/// What an operator may be offered for a row (the console's buttons), each with the reason
/// when it is not: the decisions above, asked before acting, for an operator who gives no card
/// data (the console takes none; `retry --card-file` on the command line does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offers {
    /// A plain retry, and what it would do.
    pub retry: Result<RetryPlan, String>,
    /// A retry that grants one more `pay.do` (`--repay`): only where a plain retry would not
    /// allow one.
    pub repay: Result<RetryPlan, String>,
    pub cancel: Result<(), String>,
}

impl Offers {
    /// Nothing an operator can do to the row.
    pub fn none(why: &str) -> Offers {
        Offers {
            retry: Err(why.to_owned()),
            repay: Err(why.to_owned()),
            cancel: Err(why.to_owned()),
        }
    }
}

/// Rules P7, P7a and P8, as offers: exactly what [`retry`] and [`cancel`] would allow.
pub fn offers(row: &RowView<'_>) -> Offers {
    let plain = retry(row, false, false);
    let repay = match &plain {
        Ok(plan) if plan.may_pay => {
            Err("a plain retry already allows a pay.do once the order query shows it unpaid".into())
        }
        _ => retry(row, true, false),
    };
    Offers {
        retry: plain,
        repay,
        cancel: cancel(row),
    }
}

/// Rule P8: cancel only an order no `pay.do` may have reached ATRIP for, that no worker
/// holds: a `pending` row, or a `needs_review` row whose every intent provably never left.
/// The cancel statement's WHERE is this, fenced on the row as read. `Err` says why not.
pub fn cancel(row: &RowView<'_>) -> Result<(), String> {
    if matches!(row.state, State::Pending | State::NeedsReview)
        && !row.leased
        && row.paid.is_none()
        && row.sends == 0
    {
        return Ok(());
    }
    Err(format!(
        "it is {} and {} pay.do may have reached ATRIP{}{}; cancel is only possible before any payment was sent, while no worker holds the order",
        row.state,
        row.sends,
        if row.paid.is_some() { " (an answer showed it paid)" } else { "" },
        if row.leased { " (a worker's lease is on it)" } else { "" }
    ))
}

/// [`cancel`] as a yes or no.
pub fn may_cancel(row: &RowView<'_>) -> bool {
    cancel(row).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(sends: i32) -> RowView<'static> {
        RowView {
            state: State::NeedsReview,
            method: 3,
            needs_card: true,
            has_card: false,
            paid: None,
            last_pay_outcome: Some(PayOutcome::OutcomeUnknown),
            sends,
            permits: sends.max(1),
            leased: false,
            atrip_cancelled: false,
        }
    }

    #[test]
    fn p7_a_retry_after_a_send_that_may_have_reached_atrip_grants_no_permit_without_repay() {
        let plan = retry(&review(1), false, false).unwrap();
        assert_eq!(plan.to, State::Paying);
        assert!(!plan.may_pay);
        assert_eq!(plan.permits, 1);
        let repay = retry(&review(1), true, true).unwrap();
        assert!(repay.may_pay);
        assert_eq!(repay.permits, 2);
        assert!(retry(&review(1), true, false)
            .unwrap_err()
            .contains("card data was erased"));
    }

    #[test]
    fn p7_an_order_shown_paid_is_followed_again_never_repaid() {
        let mut row = review(1);
        row.paid = Some("query_paid");
        assert_eq!(retry(&row, false, false).unwrap().to, State::Ticketing);
        assert!(retry(&row, true, false).unwrap_err().contains("paid"));
        let offers = offers(&row);
        assert!(offers.retry.is_ok() && offers.repay.is_err() && offers.cancel.is_err());
    }

    #[test]
    fn p7_after_a_documented_refusal_a_plain_retry_pays_again() {
        let mut row = review(1);
        row.last_pay_outcome = Some(PayOutcome::Refused);
        let plan = retry(&row, false, true).unwrap();
        assert!(plan.may_pay);
        row.has_card = true;
        assert!(offers(&row).retry.unwrap().may_pay);
        assert!(offers(&row).repay.is_err(), "a plain retry does it");
    }

    #[test]
    fn p8_cancel_only_before_any_send_and_while_no_lease_is_on_the_row() {
        assert!(may_cancel(&review(0)));
        assert!(!may_cancel(&review(1)));
        let mut leased = review(0);
        leased.leased = true;
        assert!(!may_cancel(&leased));
        let mut paying = review(0);
        paying.state = State::Paying;
        assert!(!may_cancel(&paying));
        assert!(offers(&paying).retry.is_err());
    }

    #[test]
    fn p7_no_second_pay_do_is_offered_for_a_card_order_whose_card_was_erased() {
        // A pay.do may have reached ATRIP and the card went with the review (rule P9): a plain
        // retry follows it, a retry that pays needs card data the console does not take.
        let row = review(1);
        let offered = offers(&row);
        assert!(!offered.retry.as_ref().unwrap().may_pay);
        assert!(offered.repay.unwrap_err().contains("card data was erased"));
        // After a documented refusal a plain retry would pay: without card data it is refused,
        // and says where card data goes.
        let mut refused = review(1);
        refused.state = State::Failed;
        refused.last_pay_outcome = Some(PayOutcome::Refused);
        assert!(offers(&refused).retry.unwrap_err().contains("--card-file"));
        assert!(retry(&refused, false, true).unwrap().may_pay);
        // A deposit order needs no card.
        let mut deposit = refused;
        deposit.needs_card = false;
        assert!(offers(&deposit).retry.unwrap().may_pay);
    }

    #[test]
    fn p7a_an_order_atrip_cancelled_is_never_retried_paid_or_not() {
        let mut row = review(1);
        row.state = State::Failed;
        row.atrip_cancelled = true;
        assert!(retry(&row, false, false)
            .unwrap_err()
            .contains("ATRIP cancelled"));
        assert!(retry(&row, true, true).is_err());
        row.paid = Some("query_paid");
        assert!(retry(&row, false, false).unwrap_err().contains("refunds"));
        let offered = offers(&row);
        assert!(offered.retry.is_err() && offered.repay.is_err() && offered.cancel.is_err());
    }

    #[test]
    fn p8_a_refused_cancel_says_why() {
        let why = cancel(&review(1)).unwrap_err();
        assert!(why.contains("1 pay.do may have reached ATRIP"), "{why}");
        let mut leased = review(0);
        leased.leased = true;
        assert!(cancel(&leased).unwrap_err().contains("lease"));
    }
}
