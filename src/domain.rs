//! The vocabulary as types: states, payment methods, order numbers, ticket sets.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an order stands. The table's `state_is_known` CHECK holds the same list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Waiting to be paid. The worker moves it to `paying` by recording a pay intent; an
    /// operator may cancel it.
    Pending,
    /// A pay intent is recorded: `pay.do` may be in flight or its outcome unknown. Only an
    /// order query moves it on (never a second blind `pay.do`).
    Paying,
    /// Paid; followed with the order query until the tickets are final.
    Ticketing,
    /// Terminal: PNR and every ticket number recorded.
    Ticketed,
    /// Terminal: payment definitively refused or ticketing failed.
    Failed,
    /// The worker will not guess; a person decides (retry or cancel).
    NeedsReview,
    /// Terminal: stopped by an operator before any payment was sent.
    Cancelled,
}

impl State {
    pub const ALL: [State; 7] = [
        State::Pending,
        State::Paying,
        State::Ticketing,
        State::Ticketed,
        State::Failed,
        State::NeedsReview,
        State::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Paying => "paying",
            State::Ticketing => "ticketing",
            State::Ticketed => "ticketed",
            State::Failed => "failed",
            State::NeedsReview => "needs_review",
            State::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<State> {
        State::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The worker is done with the row (a person may still retry `failed`/`needs_review`).
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            State::Ticketed | State::Failed | State::NeedsReview | State::Cancelled
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an event row records (`ticketing_events.kind`). An enum, so that renaming a kind cannot
/// silently switch off a reader of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The claim of a `pending` row, or a new intent: a `pay.do` may leave from here on.
    PayIntent,
    /// The pay step refused to send (the row's data), or gave the row back before sending.
    PayNotSent,
    /// The answer to a `pay.do` (or its absence).
    PayAnswered,
    /// The answer to an order query.
    QueryAnswered,
    /// The row was given back without sending anything (shutdown).
    Released,
    /// The table refused a write; the row went to `needs_review` naming the constraint.
    ConstraintViolated,
    OperatorRetry,
    OperatorRepay,
    OperatorCancel,
    WebhookReceived,
    /// Evidence of payment written without a lease, after the step that saw it could not
    /// write it under its own (rule P3a).
    EvidenceRecorded,
    /// A step panicked; the row went to `needs_review` naming the internal error (rule W5).
    StepPanicked,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        EventKind::PayIntent,
        EventKind::PayNotSent,
        EventKind::PayAnswered,
        EventKind::QueryAnswered,
        EventKind::Released,
        EventKind::ConstraintViolated,
        EventKind::OperatorRetry,
        EventKind::OperatorRepay,
        EventKind::OperatorCancel,
        EventKind::WebhookReceived,
        EventKind::EvidenceRecorded,
        EventKind::StepPanicked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::PayIntent => "pay_intent",
            EventKind::PayNotSent => "pay_not_sent",
            EventKind::PayAnswered => "pay_answered",
            EventKind::QueryAnswered => "query_answered",
            EventKind::Released => "released",
            EventKind::ConstraintViolated => "constraint_violated",
            EventKind::OperatorRetry => "operator_retry",
            EventKind::OperatorRepay => "operator_repay",
            EventKind::OperatorCancel => "operator_cancel",
            EventKind::WebhookReceived => "webhook_received",
            EventKind::EvidenceRecorded => "evidence_recorded",
            EventKind::StepPanicked => "step_panicked",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// ATRIP's payment methods (there is no 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentMethod {
    /// 1: the agency's prepaid ATRIP balance.
    Deposit,
    /// 3: a virtual card passed through to the airline.
    Vcc,
    /// 4: the agency's own airline account.
    Byoa,
    /// 5: ATRIP charges the card as merchant of record.
    Mor,
}

impl PaymentMethod {
    pub fn from_code(code: i64) -> Option<Self> {
        match code {
            1 => Some(Self::Deposit),
            3 => Some(Self::Vcc),
            4 => Some(Self::Byoa),
            5 => Some(Self::Mor),
            _ => None,
        }
    }

    pub fn code(self) -> i16 {
        match self {
            Self::Deposit => 1,
            Self::Vcc => 3,
            Self::Byoa => 4,
            Self::Mor => 5,
        }
    }

    /// Methods 3 and 5 send a card; 1 and 4 must send `creditCard: null`.
    pub fn needs_card(self) -> bool {
        matches!(self, Self::Vcc | Self::Mor)
    }
}

/// An ATRIP order number: 6 to 40 uppercase letters and digits (the table's
/// `order_no_is_well_formed` CHECK holds the same rule).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrderNo(String);

impl OrderNo {
    pub fn parse(s: &str) -> Result<Self, String> {
        let ok = (6..=40).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(OrderNo(s.to_owned()))
        } else {
            Err(format!(
                "order_no {:?} is not 6 to 40 uppercase letters and digits",
                truncate(s, 60)
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for OrderNo {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        OrderNo::parse(&s)
    }
}

impl From<OrderNo> for String {
    fn from(o: OrderNo) -> String {
        o.0
    }
}

impl fmt::Display for OrderNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One passenger's ticket numbers and airline PNRs, as recorded in `ticket_numbers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassengerTickets {
    pub passenger: String,
    pub ticket_numbers: Vec<String>,
    pub airline_pnrs: Vec<String>,
}

/// The tickets of one order, one entry per passenger in ATRIP's order.
pub type TicketSet = Vec<PassengerTickets>;

/// Cuts a string for an error message, so a huge field cannot flood a log or a row.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max).collect();
        out.push('…');
        out
    }
}

/// Cuts a text for a table cell at a word boundary, marking the cut.
pub fn truncate_words(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let cut: String = s.chars().take(max.saturating_sub(1)).collect();
    let at_word = cut.rfind(' ').filter(|i| *i > max / 2).unwrap_or(cut.len());
    format!("{}…", cut[..at_word].trim_end())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_cells_are_cut_between_words() {
        assert_eq!(truncate_words("short", 10), "short");
        assert_eq!(
            truncate_words("ATRIP refused the payment with status 413", 20),
            "ATRIP refused the…"
        );
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in State::ALL {
            assert_eq!(State::parse(s.as_str()), Some(s));
        }
        assert_eq!(State::parse("done"), None);
    }

    #[test]
    fn order_numbers_are_checked_like_the_table_does() {
        assert!(OrderNo::parse("TESTA20260824171418381").is_ok());
        for bad in ["", "abc123", "TEST-1", "SHORT", &"A".repeat(41)] {
            let err = OrderNo::parse(bad).unwrap_err();
            assert!(err.contains("order_no"), "{err}");
        }
    }

    #[test]
    fn payment_methods_know_which_need_a_card() {
        assert_eq!(PaymentMethod::from_code(2), None);
        assert!(PaymentMethod::from_code(3).unwrap().needs_card());
        assert!(!PaymentMethod::from_code(4).unwrap().needs_card());
    }
}
