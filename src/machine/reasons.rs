//! Why a row is where it is, in words an operator acts on. Each reason renders the text that
//! lands in `last_error` (prefixed with the order number by the job store).

use std::fmt;

use chrono::{DateTime, Utc};

/// What showed the order paid (`paid_evidence`; the table's `paid_evidence_is_known` CHECK holds
/// the same list). Once set, no permit is left (rule P3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// `pay.do` answered 0.
    PayAccepted,
    /// `pay.do` answered 615: paid, the airline PNR is pursued by hand at ATRIP.
    PnrPending,
    /// `pay.do` answered 404: the order is already paid.
    AlreadyPaid,
    /// An order query showed `orderStatus` "1" or "2".
    QueryPaid,
}

impl Evidence {
    pub const ALL: [Evidence; 4] = [
        Evidence::PayAccepted,
        Evidence::PnrPending,
        Evidence::AlreadyPaid,
        Evidence::QueryPaid,
    ];

    pub fn parse(s: &str) -> Option<Evidence> {
        Evidence::ALL.into_iter().find(|e| e.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Evidence::PayAccepted => "pay_accepted",
            Evidence::PnrPending => "pnr_pending",
            Evidence::AlreadyPaid => "already_paid",
            Evidence::QueryPaid => "query_paid",
        }
    }
}

/// The class of the last `pay.do` answer (`last_pay_outcome`; the `last_pay_outcome_is_known`
/// CHECK holds the same list). A retry reads it: after a definitive "nothing was charged" a
/// retry may pay again, after anything unclear it may not (rule P7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PayOutcome {
    Accepted,
    NeverPayAgain,
    Refused,
    Unauthorized,
    PaymentError,
    OutcomeUnknown,
    NotSent,
}

impl PayOutcome {
    pub const ALL: [PayOutcome; 7] = [
        PayOutcome::Accepted,
        PayOutcome::NeverPayAgain,
        PayOutcome::Refused,
        PayOutcome::Unauthorized,
        PayOutcome::PaymentError,
        PayOutcome::OutcomeUnknown,
        PayOutcome::NotSent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PayOutcome::Accepted => "accepted",
            PayOutcome::NeverPayAgain => "never_pay_again",
            PayOutcome::Refused => "refused",
            PayOutcome::Unauthorized => "unauthorized",
            PayOutcome::PaymentError => "payment_error",
            PayOutcome::OutcomeUnknown => "outcome_unknown",
            PayOutcome::NotSent => "not_sent",
        }
    }

    pub fn parse(s: &str) -> Option<PayOutcome> {
        PayOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// ATRIP answered and its answer says nothing was charged (a documented refusal, or our
    /// credentials refused before anything was done): a retry may pay again.
    pub fn charged_nothing(self) -> bool {
        matches!(self, PayOutcome::Refused | PayOutcome::Unauthorized)
    }
}

/// Why a row stays `paying` or `ticketing` and is asked again.
#[derive(Clone, Debug, PartialEq)]
pub enum Waiting {
    /// `pay.do` answered something that is not a decision; the order query decides.
    PayUnclear(String),
    /// The connection to ATRIP could not be opened: the pay.do never left (its permit is back).
    PayNotSent(String),
    /// 402 or 406: never pay again; the order query decides.
    NeverPayAgain { status: i64 },
    /// 411: the order query decides; if it does not show the order paid, a person checks.
    PaymentError { status: i64 },
    /// 900/902 on pay.do: nothing was done; the order query decides.
    CredentialsRefused { status: i64 },
    /// The order shows unpaid after a `pay.do` that may have reached ATRIP: not paying again,
    /// waiting for it to show (until the settle time).
    UnpaidAfterSend { sent_at: DateTime<Utc> },
    /// An answer that says nothing about the order (transport, 5xx, 705, 429, garbled, 800).
    Unclear(String),
    /// Paid; ticketing still in process (as the last answer showed it).
    Ticketing {
        order_status: String,
        ticketed: usize,
        passengers: usize,
    },
    /// Every passenger has a ticket number, but no airline PNR yet (rule F4).
    TicketsWithoutPnr,
    /// Ticketed with a ticket number in every entry, but the answer lists fewer passengers
    /// than the order holds (rule F1b).
    PassengersLeftOut { listed: usize, passengers: usize },
    /// Unpaid with a permit left, but no intent can be made durable now (rule P1b): waiting
    /// for a standby.
    IntentsNotDurable,
    /// Unpaid with a permit left, but paying its method is paused (rule S4): waiting for the
    /// resume, permit kept. The text says who paused, since when and why.
    PayingPaused(String),
}

impl Waiting {
    /// Whether this counts towards `max_error_streak` (an answer that told us nothing).
    pub fn is_unclear(&self) -> bool {
        matches!(
            self,
            Waiting::PayUnclear(_) | Waiting::PayNotSent(_) | Waiting::Unclear(_)
        )
    }
}

impl fmt::Display for Waiting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waiting::PayUnclear(why) => write!(
                f,
                "outcome of pay.do unknown ({why}); the order query decides, pay.do is not sent again"
            ),
            Waiting::PayNotSent(why) => write!(
                f,
                "{why}; pay.do never left, the order query comes first"
            ),
            Waiting::NeverPayAgain { status } => write!(
                f,
                "pay.do answered {status} (paid, not payable or a payment running); never paying again, the order query decides"
            ),
            Waiting::PaymentError { status } => write!(
                f,
                "pay.do answered {status} (payment error: balance or card gateway); the order query decides"
            ),
            Waiting::CredentialsRefused { status } => write!(
                f,
                "ATRIP refused our credentials on pay.do (status {status}); the order is not at fault, the order query decides"
            ),
            Waiting::UnpaidAfterSend { sent_at } => write!(
                f,
                "a pay.do may have reached ATRIP (its intent was recorded at {sent_at}) and ATRIP still shows the order unpaid; not paying again, checking until it shows"
            ),
            Waiting::Unclear(why) => write!(f, "order query failed: {why}"),
            Waiting::Ticketing {
                order_status,
                ticketed,
                passengers,
            } => write!(
                f,
                "ticketing in process: last orderStatus {order_status}, {ticketed} of {passengers} passengers with a ticket number"
            ),
            Waiting::IntentsNotDurable => f.write_str(
                "unpaid and may be paid, but no standby can confirm a pay intent now (see the worker's log); paying once one can",
            ),
            Waiting::PayingPaused(paused) => write!(
                f,
                "unpaid and may be paid, but {paused}; no pay.do is sent until it is resumed (`ticketing-tracker resume`), the permit is kept"
            ),
            Waiting::PassengersLeftOut { listed, passengers } => write!(
                f,
                "ATRIP shows the order ticketed but lists {listed} of its {passengers} passengers; following until every passenger has a ticket"
            ),
            Waiting::TicketsWithoutPnr => f.write_str(
                "every passenger has a ticket number but ATRIP shows no airline PNR yet (its pnrCode is its own booking reference, not the airline's); following until one shows",
            ),
        }
    }
}

/// Why an order failed for good (a retry is possible once the cause is fixed).
#[derive(Clone, Debug, PartialEq)]
pub enum FailReason {
    /// Nothing was sent: the row's own data cannot be paid (rule P1a).
    NotSent(String),
    /// A documented refusal of `pay.do`: nothing was charged (rule P4d).
    PayRefused { status: i64, msg: Option<String> },
    /// ATRIP cancelled the order (`orderStatus` "-3").
    Cancelled {
        error_code: Option<String>,
        error_message: Option<String>,
        paid: bool,
    },
    /// Still unpaid past the payment deadline, with no `pay.do` of ours that could land.
    UnpaidPastDeadline { deadline: DateTime<Utc> },
}

impl fmt::Display for FailReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailReason::NotSent(why) => write!(f, "{why}; pay.do was not sent"),
            FailReason::PayRefused { status, msg } => write!(
                f,
                "ATRIP refused the payment with status {status} ({}); nothing was charged",
                msg.as_deref().unwrap_or("no message")
            ),
            FailReason::Cancelled {
                error_code,
                error_message,
                paid,
            } => write!(
                f,
                "{} (errorCode {}: {})",
                if *paid {
                    "ticketing failed, ATRIP cancelled the order; the payment is refunded by ATRIP's refund process (for VCC, back to the card)"
                } else {
                    "ATRIP cancelled the order"
                },
                error_code.as_deref().unwrap_or("none"),
                error_message.as_deref().unwrap_or("no message")
            ),
            FailReason::UnpaidPastDeadline { deadline } => write!(
                f,
                "still unpaid and its payment deadline {deadline} has passed; the order must be booked again"
            ),
        }
    }
}

/// Why the worker hands a row to a person, with what to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ReviewReason {
    /// A `pay.do` may have reached ATRIP and the order still shows unpaid (rule P5d).
    UnpaidAfterSend {
        sent_at: DateTime<Utc>,
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    },
    /// 411 and the order does not show paid (rule P6). `balance`: what `balance.do` said
    /// when the review was written (filled in by the worker; `None` when not asked).
    PaymentError {
        deadline: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        balance: Option<String>,
    },
    /// 900/902 on pay.do, and the order shows unpaid (rule P4f).
    CredentialsRefused,
    /// VCC: ATRIP already tried to charge the card (`paymentAttempted`), yet shows unpaid.
    PaymentAttempted,
    /// The payment deadline is near (within the review margin) and the outcome is still
    /// unclear: a person must look while there is time.
    DeadlineNear {
        deadline: DateTime<Utc>,
        now: DateTime<Utc>,
        last: String,
    },
    /// Nothing but unclear answers past the bounds.
    Unclear {
        answers: i32,
        since: DateTime<Utc>,
        last: String,
    },
    /// Paid but not ticketed within the ticketing deadline (rule F5).
    TicketingDeadline {
        deadline: DateTime<Utc>,
        last: String,
    },
    /// Still unpaid after every automatic attempt (each one never left this machine).
    TooManyAttempts { attempts: i32 },
    /// Sealed card data this worker cannot open (no key, or another key).
    CardUnreadable(String),
    /// A write the table's CHECKs refused: a bug, reported on the row (rule W2).
    ConstraintViolated { constraint: String },
    /// A state and an answer that should never meet (a bug, reported on the row).
    NoSuchTransition { state: String, event: &'static str },
    /// ATRIP refused this order with 900/902 while it takes our credentials for others: the
    /// request "targets data outside your scope" (rule P4f).
    OutOfScope { status: i64, on_pay: bool },
}

/// The payment deadline, and whether it had passed when the reason was written. No "N min
/// left": the text is stored and read later, so a count of minutes would be stale; the console
/// computes the time left from `pay_deadline` and the database's time on every page.
fn left(deadline: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match deadline {
        None => "no payment deadline known".into(),
        Some(d) if d <= now => format!("its payment deadline {d} has passed"),
        Some(d) => format!("its payment deadline is {d}"),
    }
}

impl fmt::Display for ReviewReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReviewReason::UnpaidAfterSend { sent_at, deadline, now } => write!(
                f,
                "a pay.do may have reached ATRIP (its intent was recorded at {sent_at}; the events say whether it was sent and what it answered) and ATRIP still shows the order unpaid; the worker will not pay again by itself (a payment may still be in progress, or a frozen worker may still send it). Check the order in ATRIP: if it is paid, `retry`; if it is unpaid and no worker is frozen, `retry --repay` ({})",
                left(*deadline, *now)
            ),
            ReviewReason::PaymentError {
                deadline,
                now,
                balance,
            } => write!(
                f,
                "pay.do answered 411 (payment error) and the order does not show paid: check the ATRIP deposit balance{} (or the card), then `retry --repay` ({})",
                balance
                    .as_deref()
                    .map(|b| format!(" (balance.do says {b})"))
                    .unwrap_or_default(),
                left(*deadline, *now)
            ),
            ReviewReason::CredentialsRefused => f.write_str(
                "ATRIP refused our credentials on pay.do (nothing was charged, as ATRIP documents) and the order shows unpaid: fix atrip.client_id / atrip.client_secret, then `retry` (it pays again)",
            ),
            ReviewReason::PaymentAttempted => f.write_str(
                "ATRIP shows the order unpaid but says it already tried to charge the card (paymentAttempted): never paying again; check with ATRIP",
            ),
            ReviewReason::DeadlineNear { deadline, now, last } => write!(
                f,
                "the payment outcome is still unclear ({}); last: {last}. Check the order in ATRIP: if it is paid, `retry`; if it is unpaid, `retry --repay`",
                left(Some(*deadline), *now)
            ),
            ReviewReason::Unclear { answers, since, last } => write!(
                f,
                "{answers} unclear answers in a row since {since}; last: {last}. Check the order in ATRIP, then `retry`"
            ),
            ReviewReason::TicketingDeadline { deadline, last } => write!(
                f,
                "paid but not ticketed by {deadline} (the ticketing deadline); last: {last}. Check with ATRIP, then `retry` to follow it again"
            ),
            ReviewReason::TooManyAttempts { attempts } => write!(
                f,
                "still unpaid after {attempts} pay intents whose pay.do never left this machine (max_pay_attempts); check the connection to ATRIP, then `retry`"
            ),
            ReviewReason::CardUnreadable(why) => write!(
                f,
                "{why}; pay.do was not sent. Give the worker the right key (card.secret_key), then `retry`"
            ),
            ReviewReason::ConstraintViolated { constraint } => write!(
                f,
                "the job table refused the worker's write ({constraint}); this is a bug, please report it. Of that write only what it said about the payment was kept (paid, or a pay.do that never left), and the card data was erased if a pay.do may have reached ATRIP; check the order in ATRIP before a `retry`"
            ),
            ReviewReason::NoSuchTransition { state, event } => write!(
                f,
                "no transition from {state} on {event}; this is a bug, please report it"
            ),
            ReviewReason::OutOfScope { status, on_pay } => write!(
                f,
                "ATRIP answered {status} to {} for this order only (it takes our credentials for other orders): the order may belong to another ATRIP account or be outside this account's scope. Check it in ATRIP{}, then `retry`",
                if *on_pay { "pay.do (nothing was done, as ATRIP documents)" } else { "the order query" },
                if *on_pay { " (a plain retry pays again once the order query shows it unpaid)" } else { "" }
            ),
        }
    }
}
