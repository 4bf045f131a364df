//! What one of ATRIP's listed orders and its row say together (rule R2): a pure function, so
//! the rule is tested case by case without a database.

use serde::Serialize;

use crate::atrip::codes::OrderStatus;
use crate::atrip::ListedOrder;
use crate::jobs::ReconcileRow;

/// The kinds of mismatch, as reports and `ticketing_reconcile_mismatches{kind}` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// ATRIP shows the order paid; the table has no row for it (paid outside this worker, or
    /// its row was never inserted or was deleted).
    PaidNotInTable,
    /// ATRIP shows it paid; its row is `pending`, `failed` or `cancelled` and was never shown
    /// paid. Reported only: a person decides (a refund, the row's fate).
    PaidUnpaidInTable,
    /// ATRIP shows it paid; its row waited in `paying` or `needs_review`: evidence of payment
    /// recorded (rule R3), the worker follows it.
    PaidEvidenceRecorded,
    /// Its row is `ticketed`; ATRIP shows it cancelled (`-3`: cancelled or voided after
    /// ticketing; the documented list has no status of its own for a void).
    TicketedCancelled,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::PaidNotInTable,
        Kind::PaidUnpaidInTable,
        Kind::PaidEvidenceRecorded,
        Kind::TicketedCancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::PaidNotInTable => "paid_not_in_table",
            Kind::PaidUnpaidInTable => "paid_unpaid_in_table",
            Kind::PaidEvidenceRecorded => "paid_evidence_recorded",
            Kind::TicketedCancelled => "ticketed_cancelled",
        }
    }

    /// What a person does about it.
    pub fn advice(self) -> &'static str {
        match self {
            Kind::PaidNotInTable => "paid at ATRIP, no row here: find who paid it (another system, a person in ATRIP) and whether it should be enqueued or refunded",
            Kind::PaidUnpaidInTable => "paid at ATRIP, the row says otherwise: check the order in ATRIP; nothing was changed and nothing will be paid by this report",
            Kind::PaidEvidenceRecorded => "evidence of payment recorded; the worker follows the order",
            Kind::TicketedCancelled => "ticketed here, cancelled or voided at ATRIP: check the tickets and the refund in ATRIP",
        }
    }
}

/// The finding for one listed order and its row (`None`: no row), or `None` when they agree.
pub fn compare(listed: &ListedOrder, row: Option<&ReconcileRow>) -> Option<Kind> {
    match row {
        Some(r) if r.state == "ticketed" && listed.status == OrderStatus::Cancelled => {
            Some(Kind::TicketedCancelled)
        }
        _ if !listed.was_paid() => None,
        None => Some(Kind::PaidNotInTable),
        Some(r) if r.paid => None,
        // A `pending` row is paid at its claim without a query first: left without the
        // evidence, it would be sent a pay.do for an order ATRIP shows paid (rule R3).
        Some(r)
            if listed.shows_paid()
                && matches!(r.state.as_str(), "pending" | "paying" | "needs_review") =>
        {
            Some(Kind::PaidEvidenceRecorded)
        }
        // `failed` or `cancelled` here, or paid and then cancelled at ATRIP: a person looks
        // (the evidence is still recorded where ATRIP shows the order paid: rule R3).
        Some(_) => Some(Kind::PaidUnpaidInTable),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;

    fn listed(status: &str, paid: bool) -> ListedOrder {
        ListedOrder {
            order_no: "TESTA1".into(),
            status: OrderStatus::from_wire(status),
            created: Some(Utc::now()),
            paid: paid.then(Utc::now),
            pnr_code: None,
            error_code: None,
            error_message: None,
        }
    }

    fn row(state: &str, paid: bool) -> ReconcileRow {
        ReconcileRow {
            id: 1,
            order_no: "TESTA1".into(),
            state: state.into(),
            paid,
        }
    }

    #[test]
    fn r2_paid_at_atrip_without_a_row_or_unpaid_in_the_table_is_reported() {
        assert_eq!(
            compare(&listed("2", true), None),
            Some(Kind::PaidNotInTable)
        );
        // A paid status without a payment time is paid too (rule P5a).
        assert_eq!(
            compare(&listed("1", false), None),
            Some(Kind::PaidNotInTable)
        );
        // Paid, then cancelled (a refund): still money taken for an order we do not have.
        assert_eq!(
            compare(&listed("-3", true), None),
            Some(Kind::PaidNotInTable)
        );
        for state in ["failed", "cancelled"] {
            assert_eq!(
                compare(&listed("2", true), Some(&row(state, false))),
                Some(Kind::PaidUnpaidInTable),
                "{state}"
            );
        }
        // Paid and then cancelled at ATRIP, unpaid here: reported, never evidence.
        for state in ["pending", "paying", "needs_review"] {
            assert_eq!(
                compare(&listed("-3", true), Some(&row(state, false))),
                Some(Kind::PaidUnpaidInTable),
                "{state}"
            );
        }
    }

    #[test]
    fn r3_rows_waiting_for_a_payment_atrip_shows_get_its_evidence() {
        // A pending row too: its claim would send a pay.do without asking first.
        for state in ["pending", "paying", "needs_review"] {
            for paid_time in [true, false] {
                assert_eq!(
                    compare(&listed("1", paid_time), Some(&row(state, false))),
                    Some(Kind::PaidEvidenceRecorded),
                    "{state}"
                );
            }
        }
        // A payment time beside an unpaid status is no evidence (rule P5a).
        assert_eq!(
            compare(&listed("0", true), Some(&row("needs_review", false))),
            Some(Kind::PaidUnpaidInTable)
        );
    }

    #[test]
    fn r2_a_ticketed_row_atrip_shows_cancelled_is_reported() {
        assert_eq!(
            compare(&listed("-3", true), Some(&row("ticketed", true))),
            Some(Kind::TicketedCancelled)
        );
    }

    #[test]
    fn r2_everything_else_agrees() {
        // Unpaid or cancelled-unpaid orders we do not have: orders nobody paid.
        assert_eq!(compare(&listed("0", false), None), None);
        assert_eq!(compare(&listed("-3", false), None), None);
        // Rows already shown paid, in any state but a ticketed one ATRIP cancelled.
        for state in ["ticketing", "ticketed", "needs_review", "failed"] {
            assert_eq!(
                compare(&listed("2", true), Some(&row(state, true))),
                None,
                "{state}"
            );
        }
        // A row ATRIP shows unpaid (the worker's order query settles it), and a `ticketing`
        // row ATRIP cancelled (the worker's order query fails it, rule F3).
        assert_eq!(
            compare(&listed("0", false), Some(&row("paying", false))),
            None
        );
        assert_eq!(
            compare(&listed("-3", true), Some(&row("ticketing", true))),
            None
        );
        // An unknown status without a payment time is not taken for a payment.
        assert_eq!(
            compare(&listed("7", false), Some(&row("needs_review", false))),
            None
        );
    }
}
