//! Rows as the store returns them. Card data is wrapped so that no `Debug` can print it.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{PaymentMethod, State};
use crate::machine::{operator, Facts, PayOutcome};

/// The raw `card` JSON of a row. `Debug` never shows it.
#[derive(Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct CardJson(pub Value);

impl fmt::Debug for CardJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[card redacted]")
    }
}

/// The `card_sealed` bytes of a row (a sealed box). `Debug` shows only the length.
#[derive(Clone, sqlx::Type)]
#[sqlx(transparent)]
pub struct SealedCard(pub Vec<u8>);

impl fmt::Debug for SealedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[sealed card, {} bytes]", self.0.len())
    }
}

/// The right to change one claimed row: its id, the lease token of the claim, the state it is
/// in now and its pay counters as this lease last wrote them (every write checks all of them,
/// so a write retried after its commit's answer was lost cannot count an intent twice). Only a
/// claim makes one.
#[derive(Debug, Clone)]
pub struct Lease {
    pub(super) id: i64,
    pub(super) token: i64,
    pub(super) order_no: String,
    pub(super) state: State,
    pub(super) pay_attempts: i32,
    pub(super) pay_not_sent: i32,
    /// The server this lease's last write landed on (`jobs::SERVER_ID`): what the durability
    /// gate checks an intent or evidence against.
    pub(super) server: String,
}

impl Lease {
    pub fn id(&self) -> i64 {
        self.id
    }
    pub fn token(&self) -> i64 {
        self.token
    }
    pub fn order_no(&self) -> &str {
        &self.order_no
    }
    /// The state the row is in, as this lease last wrote it.
    pub fn state(&self) -> State {
        self.state
    }
    /// The server the claim, or this lease's last write, landed on.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// What a batch said of `write`: landed (the row is now as it says), fenced out (the lease
    /// is lost), or busy (another session holds the row; nothing was written).
    pub(super) fn outcome(
        &mut self,
        write: &super::Write,
        landed: Landed,
    ) -> Result<super::Applied, super::Error> {
        match landed {
            Landed::At(applied) => {
                self.landed(write);
                self.server.clone_from(&applied.server);
                Ok(applied)
            }
            Landed::Fenced => Err(super::Error::LeaseLost {
                job_id: self.id,
                order_no: self.order_no.clone(),
            }),
            Landed::Busy => Err(super::Error::RowBusy {
                job_id: self.id,
                order_no: self.order_no.clone(),
            }),
        }
    }

    /// `write` landed: the row is as it says.
    fn landed(&mut self, write: &super::Write) {
        self.state = write.to;
        self.pay_attempts += i32::from(write.intent);
        self.pay_not_sent += i32::from(write.not_sent);
    }
}

/// The claim statement's row, as the SQL returns it.
pub(super) struct ClaimRow {
    pub id: i64,
    pub order_no: String,
    pub payment_method: i16,
    pub card_text: Option<String>,
    pub card_sealed: Option<SealedCard>,
    pub client_order_no: Option<String>,
    pub pay_deadline: Option<DateTime<Utc>>,
    pub pay_deadline_infinite: bool,
    pub state: String,
    pub claimed_from: String,
    pub lease_token: i64,
    pub pay_attempts: i32,
    pub pay_not_sent: i32,
    pub pay_permits: i32,
    pub poll_attempts: i32,
    pub error_streak: i32,
    pub pay_started_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub last_pay_outcome: Option<String>,
    pub phase_started_at: Option<DateTime<Utc>>,
    pub tickets_seen: Option<Value>,
    pub passengers: Option<i16>,
    pub created_at: Option<DateTime<Utc>>,
    pub lease_expires_at: DateTime<Utc>,
    pub db_now: DateTime<Utc>,
    pub run_at: DateTime<Utc>,
    pub paused: Option<String>,
    pub traceparent: Option<String>,
    pub server: String,
}

/// A row just claimed by this worker, with the state it was claimed from. Its [`Lease`] is the
/// only way to change it.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub id: i64,
    pub order_no: String,
    pub payment_method: i16,
    pub card: Option<CardJson>,
    pub card_sealed: Option<SealedCard>,
    pub client_order_no: Option<String>,
    pub pay_deadline: Option<DateTime<Utc>>,
    /// The state after the claim (`paying` when the claim recorded a pay intent).
    pub state: State,
    /// The state before the claim: `pending` means this claim recorded a new pay intent.
    pub claimed_from: State,
    pub lease_token: i64,
    pub pay_attempts: i32,
    pub pay_not_sent: i32,
    pub pay_permits: i32,
    pub poll_attempts: i32,
    pub error_streak: i32,
    pub pay_started_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub last_pay_outcome: Option<PayOutcome>,
    /// When the current phase began; rows written by a release before this column existed
    /// fall back to the intent, payment or creation time.
    pub phase_started_at: DateTime<Utc>,
    pub tickets_seen: Option<Value>,
    /// How many passengers the order holds: enqueued, or learnt from the first answer that
    /// listed them (rule F1b).
    pub passengers: Option<i16>,
    pub created_at: DateTime<Utc>,
    /// The lease's end, in the database's time.
    pub lease_expires_at: DateTime<Utc>,
    /// The database's time when the claim ran (`ticketing_now()`).
    pub db_now: DateTime<Utc>,
    /// When the row became due (for a row claimed from `pending`: since when it waited).
    pub run_at: DateTime<Utc>,
    /// Set when a `pending` row was claimed while paying its method is paused (rule S4: only
    /// a row whose deadline has passed is): who paused, since when and why. Such a row is never
    /// sent.
    pub paused: Option<String>,
    /// The enqueuer's W3C `traceparent`, if it wrote one: the step's spans join that trace.
    pub traceparent: Option<String>,
    /// The server the claim committed on (`jobs::SERVER_ID`).
    pub server: String,
    /// What an enqueuer wrote that cannot be read (card data that is not readable JSON, a
    /// time that is infinite): the pay step fails this order alone, naming it (rule P1a).
    pub defect: Option<String>,
}

impl ClaimedJob {
    /// `write` landed at `at` (the database's time): the columns this claim carries are now as
    /// the write's UPDATE (`jobs::apply`) left them, so that a step that goes on after its
    /// write (a query whose unpaid answer recorded a new intent, then its pay.do: rule P5)
    /// reads the row as it is, not as it was claimed.
    pub fn landed(&mut self, write: &super::Write, at: DateTime<Utc>) {
        let given_back = write.kind == crate::domain::EventKind::Released;
        self.state = write.to;
        if write.intent {
            self.pay_attempts += 1;
            self.pay_started_at = Some(at);
            self.last_pay_outcome = None;
        } else if write.pay_outcome.is_some() {
            self.last_pay_outcome = write.pay_outcome;
        }
        self.pay_not_sent += i32::from(write.not_sent);
        if write.new_phase {
            self.phase_started_at = at;
        }
        if write.evidence.is_some() {
            self.paid_at = self.paid_at.or(Some(at));
            // Rule P3: evidence of payment leaves no permit.
            self.pay_permits = self.pay_permits.min(self.pay_attempts - self.pay_not_sent);
        }
        self.poll_attempts += write.polls;
        self.error_streak = if write.unclear {
            self.error_streak + 1
        } else if given_back {
            self.error_streak
        } else {
            0
        };
        if !given_back {
            self.tickets_seen.clone_from(&write.tickets_seen);
        }
        self.passengers = self.passengers.or(write.passengers);
        if write.erase_card {
            self.card = None;
            self.card_sealed = None;
        }
    }

    pub(super) fn from_row(r: ClaimRow) -> ClaimedJob {
        // The CHECK state_is_known holds these to the known states; a row that slipped past
        // it is read as needing a person rather than failing the whole claim.
        let state = |s: &str| State::parse(s).unwrap_or(State::NeedsReview);
        let mut defects = Vec::new();
        let card = match r.card_text.as_deref().map(serde_json::from_str::<Value>) {
            None => None,
            Some(Ok(card)) => Some(CardJson(card)),
            Some(Err(e)) => {
                // serde_json's message names a position and a kind, never the content.
                defects.push(format!("card is not JSON this worker can read ({e})"));
                None
            }
        };
        if r.created_at.is_none() {
            defects.push("created_at is not a finite time".to_owned());
        }
        if r.pay_deadline_infinite {
            defects.push("pay_deadline is not a finite time".to_owned());
        }
        if State::parse(&r.state).is_none() || State::parse(&r.claimed_from).is_none() {
            defects.push(format!("the row's state {:?} is unknown", r.state));
        }
        let created_at = r.created_at.unwrap_or(r.db_now);
        let phase = r
            .phase_started_at
            .or(if r.paid_at.is_some() {
                r.paid_at
            } else {
                r.pay_started_at
            })
            .unwrap_or(created_at);
        ClaimedJob {
            state: state(&r.state),
            claimed_from: state(&r.claimed_from),
            last_pay_outcome: r.last_pay_outcome.as_deref().and_then(PayOutcome::parse),
            phase_started_at: phase,
            id: r.id,
            order_no: r.order_no,
            payment_method: r.payment_method,
            card,
            card_sealed: r.card_sealed,
            client_order_no: r.client_order_no,
            pay_deadline: r.pay_deadline,
            lease_token: r.lease_token,
            pay_attempts: r.pay_attempts,
            pay_not_sent: r.pay_not_sent,
            pay_permits: r.pay_permits,
            poll_attempts: r.poll_attempts,
            error_streak: r.error_streak,
            pay_started_at: r.pay_started_at,
            paid_at: r.paid_at,
            tickets_seen: r.tickets_seen,
            passengers: r.passengers,
            created_at,
            lease_expires_at: r.lease_expires_at,
            db_now: r.db_now,
            run_at: r.run_at,
            paused: r.paused,
            traceparent: r.traceparent,
            server: r.server,
            defect: (!defects.is_empty()).then(|| defects.join("; ")),
        }
    }

    /// The lease this claim holds.
    pub fn lease(&self) -> Lease {
        Lease {
            id: self.id,
            token: self.lease_token,
            order_no: self.order_no.clone(),
            state: self.state,
            pay_attempts: self.pay_attempts,
            pay_not_sent: self.pay_not_sent,
            server: self.server.clone(),
        }
    }

    /// What the state machine may look at, with the database's time `now`.
    pub fn facts(&self, now: DateTime<Utc>) -> Facts {
        Facts {
            state: self.state,
            order_no: self.order_no.clone(),
            pay_attempts: self.pay_attempts,
            pay_not_sent: self.pay_not_sent,
            pay_permits: self.pay_permits,
            paid: self.paid_at.is_some(),
            last_pay_outcome: self.last_pay_outcome,
            error_streak: self.error_streak,
            poll_attempts: self.poll_attempts,
            tickets_seen: self.tickets_seen.clone(),
            passengers: self
                .passengers
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n > 0),
            pay_started_at: self.pay_started_at.unwrap_or(self.created_at),
            pay_deadline: self.pay_deadline,
            phase_started_at: self.phase_started_at,
            now,
            intents_durable: true,
            paying_paused: None,
        }
    }
}

/// What became of one item of a batch whose statement ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Landed {
    /// Written, at this database time, on this server.
    At(super::Applied),
    /// Its fence failed: another lease, state or pay counters (the lease is lost).
    Fenced,
    /// Another session holds the row locked: nothing was written; write it again later.
    Busy,
}

/// One item of a batch: what became of it, or why the table refused it.
pub type ItemResult = Result<Landed, super::Error>;

/// `query_as!` of [`JobRow`]s: the one column list of a whole row (no card data, only
/// whether it is held), then `FROM ticketing_jobs` and the statement's own tail (a string
/// literal: `WHERE …`), then its arguments. `status`, `list`, the console and find all read
/// rows through it.
macro_rules! job_rows {
    ($tail:literal $(, $arg:expr)* $(,)?) => {
        sqlx::query_as!(
            $crate::jobs::JobRow,
            r#"SELECT id, order_no, client_order_no, payment_method, card_brand, card_last4,
                      card IS NOT NULL AS "card_plain!", card_sealed IS NOT NULL AS "card_sealed!",
                      pay_deadline, priority, state, run_at, created_at, updated_at, lease_owner,
                      lease_expires_at, lease_token, pay_attempts, pay_not_sent, pay_permits,
                      pay_attempts - pay_not_sent AS "pay_sends!", poll_attempts, error_streak,
                      pay_started_at, paid_at, paid_evidence, last_pay_outcome, phase_started_at,
                      ticketed_at, finalized_at, atrip_status, atrip_message, order_status,
                      atrip_pnr, pnr, ticket_numbers, tickets_seen, passengers, last_error
               FROM ticketing_jobs "# + $tail
            $(, $arg)*
        )
    };
}

pub(super) use job_rows;

/// A whole row, as operators (`status`, `list`, the console) and tests read it. It holds no
/// card data, only whether the row still does: the worker's claim ([`ClaimedJob`]) is the one
/// read that takes the card. `state` stays text, so that a row a newer release wrote in a state
/// this one does not know is still shown (and refused any action), not an error.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct JobRow {
    pub id: i64,
    pub order_no: String,
    pub client_order_no: Option<String>,
    pub payment_method: i16,
    pub card_brand: Option<String>,
    pub card_last4: Option<String>,
    /// Plain card data (`card`) is still in the row.
    pub card_plain: bool,
    /// Sealed card data (`card_sealed`) is still in the row.
    pub card_sealed: bool,
    pub pay_deadline: Option<DateTime<Utc>>,
    pub priority: i16,
    pub state: String,
    pub run_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub lease_token: i64,
    /// Pay intents recorded.
    pub pay_attempts: i32,
    /// Intents that provably never reached ATRIP; `pay_attempts - pay_not_sent` is the number
    /// of pay.do that may have reached it.
    pub pay_not_sent: i32,
    /// How many pay.do may ever reach ATRIP for this order.
    pub pay_permits: i32,
    /// `pay.do` requests that may have reached ATRIP (`pay_attempts - pay_not_sent`).
    pub pay_sends: i32,
    pub poll_attempts: i32,
    pub error_streak: i32,
    pub pay_started_at: Option<DateTime<Utc>>,
    /// When an answer first showed the order paid, and what it was.
    pub paid_at: Option<DateTime<Utc>>,
    pub paid_evidence: Option<String>,
    pub last_pay_outcome: Option<String>,
    pub phase_started_at: Option<DateTime<Utc>>,
    pub ticketed_at: Option<DateTime<Utc>>,
    pub finalized_at: Option<DateTime<Utc>>,
    pub atrip_status: Option<i32>,
    pub atrip_message: Option<String>,
    pub order_status: Option<String>,
    pub atrip_pnr: Option<String>,
    pub pnr: Option<String>,
    pub ticket_numbers: Option<Value>,
    pub tickets_seen: Option<Value>,
    /// How many passengers the order holds (rule F1b): enqueued, or the first answer's list.
    pub passengers: Option<i16>,
    pub last_error: Option<String>,
}

impl JobRow {
    /// Card data (plain or sealed) is still in the row: a retry that pays needs it.
    pub fn card_held(&self) -> bool {
        self.card_plain || self.card_sealed
    }

    /// Whether the payment method takes a card.
    pub fn needs_card(&self) -> bool {
        PaymentMethod::from_code(i64::from(self.payment_method))
            .is_some_and(PaymentMethod::needs_card)
    }

    /// ATRIP's last answer showed the order cancelled.
    pub fn atrip_cancelled(&self) -> bool {
        self.order_status.as_deref() == Some(operator::ATRIP_CANCELLED)
    }

    /// "EVIDENCE at TIME": what showed the order paid, for an operator's refusal.
    pub fn paid_words(&self) -> Option<String> {
        self.paid_at.map(|at| {
            format!(
                "{} at {at}",
                self.paid_evidence.as_deref().unwrap_or("an answer")
            )
        })
    }

    /// The row as the operator's decisions (`machine::operator`) read it, in `state`.
    pub fn view<'a>(&self, state: State, paid: Option<&'a str>) -> operator::RowView<'a> {
        operator::RowView {
            state,
            method: self.payment_method,
            needs_card: self.needs_card(),
            has_card: self.card_held(),
            paid,
            last_pay_outcome: self.last_pay_outcome.as_deref().and_then(PayOutcome::parse),
            sends: self.pay_sends,
            permits: self.pay_permits,
            leased: self.lease_owner.is_some(),
            atrip_cancelled: self.atrip_cancelled(),
        }
    }

    /// What `machine::operator` allows an operator who gives no card data to do to this row
    /// (rules P7, P7a, P8), and why not: the console's buttons and what `status` says. The
    /// store asks the same functions again, on the row as it is when the action comes.
    pub fn offers(&self) -> operator::Offers {
        let Some(state) = State::parse(&self.state) else {
            return operator::Offers::none("its state is not one this release knows");
        };
        let paid = self.paid_words();
        operator::offers(&self.view(state, paid.as_deref()))
    }
}

/// One line of an order's history.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub id: i64,
    pub job_id: i64,
    pub order_no: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub state: String,
    pub lease_token: Option<i64>,
    pub worker: Option<String>,
    pub detail: Value,
}
