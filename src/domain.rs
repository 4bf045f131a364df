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
    /// Evidence of payment noted while the step's write of it waits (a locked row, a failed
    /// write); any worker's sweep writes it from the note (rule P3a).
    EvidenceSeen,
    /// A step panicked; the row went to `needs_review` naming the internal error (rule W5).
    StepPanicked,
    /// An order query after a webhook reported a ticketed order voided, cancelled or
    /// rescheduled: what it showed (rule W6).
    AfterTicketingChecked,
}

impl EventKind {
    pub const ALL: [EventKind; 14] = [
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
        EventKind::EvidenceSeen,
        EventKind::StepPanicked,
        EventKind::AfterTicketingChecked,
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
            EventKind::EvidenceSeen => "evidence_seen",
            EventKind::StepPanicked => "step_panicked",
            EventKind::AfterTicketingChecked => "after_ticketing_checked",
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

/// What a pause of paying holds (docs/design.md, rule S4): every payment method, or one. The
/// table's `ticketing_pauses.method` is 0 for every method, else the method's code (its CHECK
/// holds the same list).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PauseScope {
    Every,
    Method(PaymentMethod),
}

impl PauseScope {
    /// Every scope, in the order pages and metrics list them.
    pub const ALL: [PauseScope; 5] = [
        PauseScope::Every,
        PauseScope::Method(PaymentMethod::Deposit),
        PauseScope::Method(PaymentMethod::Vcc),
        PauseScope::Method(PaymentMethod::Byoa),
        PauseScope::Method(PaymentMethod::Mor),
    ];

    /// `--method`'s value: none is every method; anything but 1, 3, 4, 5 is refused, naming
    /// the flag.
    pub fn parse(method: Option<i64>) -> Result<PauseScope, String> {
        match method {
            None => Ok(PauseScope::Every),
            Some(code) => PaymentMethod::from_code(code).map(PauseScope::Method).ok_or_else(|| {
                format!(
                    "--method {code} is not a payment method: one of 1 (deposit), 3 (VCC), 4 (BYOA), 5 (MoR); leave --method out for every method"
                )
            }),
        }
    }

    /// The column's value: 0 for every method, else the method's code.
    pub fn code(self) -> i32 {
        match self {
            PauseScope::Every => 0,
            PauseScope::Method(m) => i32::from(m.code()),
        }
    }

    /// The scope a `ticketing_pauses.method` value stands for.
    pub fn from_code(code: i32) -> Option<PauseScope> {
        match code {
            0 => Some(PauseScope::Every),
            code => PaymentMethod::from_code(i64::from(code)).map(PauseScope::Method),
        }
    }

    /// The `method` label of the pause metrics: `all`, or the method's code.
    pub fn label(self) -> &'static str {
        match self {
            PauseScope::Every => "all",
            PauseScope::Method(PaymentMethod::Deposit) => "1",
            PauseScope::Method(PaymentMethod::Vcc) => "3",
            PauseScope::Method(PaymentMethod::Byoa) => "4",
            PauseScope::Method(PaymentMethod::Mor) => "5",
        }
    }

    /// Whether a pause of this scope holds orders of `method`.
    pub fn holds(self, method: i16) -> bool {
        match self {
            PauseScope::Every => true,
            PauseScope::Method(m) => m.code() == method,
        }
    }
}

/// `every method`, or `method 3`: what follows "paying" in a sentence.
impl fmt::Display for PauseScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseScope::Every => f.write_str("every method"),
            PauseScope::Method(m) => write!(f, "method {}", m.code()),
        }
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

/// `s` with control characters (terminal escapes, CR/LF, BEL) and the invisible marks that
/// reorder text (bidi overrides and isolates) written out as `\u{…}`: text from outside shown
/// to an operator (a terminal, a log line) says what it holds and cannot act on the display.
pub fn printable(s: &str) -> String {
    if !s.chars().any(hidden) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// A character that acts instead of showing: a control character (a terminal's escape, a
/// line break in a one-line field) or one that reorders the text around it (Unicode's
/// bidirectional marks, embeddings, overrides and isolates). [`printable`] and the console's
/// HTML escaping write these out as `\u{…}`.
pub fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
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

    #[test]
    fn printable_writes_out_what_would_act_on_a_terminal() {
        assert_eq!(printable("plain text 123"), "plain text 123");
        assert_eq!(
            printable("x\u{1b}[2J\r\nline2\u{7}\u{202e}"),
            "x\\u{1b}[2J\\u{d}\\u{a}line2\\u{7}\\u{202e}"
        );
    }

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
    fn pause_scopes_round_trip_through_the_column_and_refuse_an_unknown_method() {
        for scope in PauseScope::ALL {
            assert_eq!(PauseScope::from_code(scope.code()), Some(scope));
        }
        assert_eq!(PauseScope::parse(None), Ok(PauseScope::Every));
        assert_eq!(PauseScope::parse(Some(3)).unwrap().to_string(), "method 3");
        let err = PauseScope::parse(Some(2)).unwrap_err();
        assert!(err.contains("--method 2"), "{err}");
        assert!(PauseScope::Every.holds(5));
        assert!(!PauseScope::parse(Some(1)).unwrap().holds(3));
    }

    #[test]
    fn payment_methods_know_which_need_a_card() {
        assert_eq!(PaymentMethod::from_code(2), None);
        assert!(PaymentMethod::from_code(3).unwrap().needs_card());
        assert!(!PaymentMethod::from_code(4).unwrap().needs_card());
    }
}
