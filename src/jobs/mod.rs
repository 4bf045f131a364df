//! The job store: every SQL statement on `ticketing_jobs` and `ticketing_events`, in one place.
//!
//! Two rules hold for every write after a claim: it is fenced by the claim's `lease_token`
//! (zero rows matched is [`Error::LeaseLost`], never a silent no-op), and it appends its event
//! in the same statement, so the history can never disagree with the row. Files, one
//! responsibility each: `store` (the claim and the worker's writes), `write` (a transition as
//! columns), `apply` (a batch of transitions), `unleased` (the writes that need no lease:
//! evidence, rules P3a and R3, and a panicked step's end, W5), `interventions` (operators'
//! list, retry and cancel, rules P7 and P8), `deliveries` (ATRIP's webhooks and what happens
//! after ticketing, W3 and W6), `clearance` (the balance pre-check's write, P1e),
//! `replication` (where a commit is durable, P1b), `guards` (the plain-card guard and whether
//! the server takes writes), `wake` (making an order due, `NOTIFY`), `upkeep` (pruning, the
//! backlog's age, migrations applied), `pauses` (paying paused and resumed, rule S4),
//! `reconcile_runs` (the reconciliation's reads and its runs, rules R1-R6), `console_reads`,
//! `console_users` and `find` (the operator console's reads and users), `rows` (what the
//! statements return, with the one column list of a whole row), `db` (how statements reach
//! PostgreSQL, a transaction pooler included), `pooler` (whether `database.url` leads through
//! one), `writer` (the batching writer).

mod apply;
mod clearance;
mod console_reads;
mod console_users;
mod db;
mod deliveries;
mod find;
mod guards;
mod interventions;
mod pauses;
pub mod pooler;
mod reconcile_runs;
mod replication;
mod rows;
mod store;
mod unleased;
mod upkeep;
mod wake;
mod write;
mod writer;

pub use console_reads::{AnswerCount, Cursor, Throughput, ANSWERS_COUNTED};
pub use console_users::{
    Account, AccountError, AccountRow, Failed, LoginAccount, LOCK_AFTER, LOCK_FIRST_S,
    LOCK_LONGEST_S,
};
pub use db::{Conn, Db};
pub use deliveries::{
    Change, Changed, Delivery, Finding, Recheck, Recorded, CHECKS, WEBHOOKS_PER_ORDER_PER_HOUR,
};
pub use find::{DeadlineFilter, FindQuery, ReviewFilter, ReviewSort, FAILED_DEFAULT_WINDOW_DAYS};
pub use guards::{read_only_reason, CardGuard, CardPolicy};
pub use interventions::{FreshCard, Retried};
pub use pauses::{Pause, Resumed, MAX_REASON_CHARS};
pub use reconcile_runs::{DailyClaim, ReconcileFigures, ReconcileRow, ReconcileRun, RunClaim};
pub use replication::{Flushed, Replicated, Replication, SERVER_ID};
pub use rows::{CardJson, ClaimedJob, EventRow, ItemResult, JobRow, Landed, Lease, SealedCard};
pub use store::{Applied, JobStore, NewJob, Renewed};
pub use write::{CardSummary, Effect, Said, Write};
pub use writer::Writer;

/// PostgreSQL's SQLSTATEs for a row the table refuses: check, not-null, unique, foreign key.
const REFUSED_ROW: [&str; 4] = ["23514", "23502", "23505", "23503"];

/// SQLSTATE classes of a value the database refuses, whatever the row: a data exception (22:
/// a NUL character in text, a value too long) or a program limit (54: an index row too
/// large). Retrying would fail the same way, so they are refused writes as well.
const REFUSED_DATA: [(&str, &str); 2] =
    [("22", "data exception"), ("54", "program limit exceeded")];

/// Job-store failures, by what the caller does about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another worker took the row over (or an operator changed it): stop the step at once,
    /// before any further side effect.
    #[error(
        "lease lost on job {job_id} (order {order_no}): another worker or an operator owns it now"
    )]
    LeaseLost { job_id: i64, order_no: String },
    /// The table refused a write (a CHECK, NOT NULL, ...): a bug, to be recorded on the row,
    /// never retried as if the database were down.
    #[error("order {order_no} (job {job_id}): the job table refused the write ({constraint})")]
    ConstraintViolated {
        job_id: i64,
        order_no: String,
        constraint: String,
    },
    /// Another session holds the row locked (a person's `SELECT … FOR UPDATE`, a long
    /// transaction): nothing was written, and the write is tried again; the other rows of
    /// its batch went ahead (rule W4).
    #[error("order {order_no} (job {job_id}): the row is locked by another transaction (another worker, an operator's statement, or this worker's own lease renewal); the write waits and is tried again")]
    RowBusy { job_id: i64, order_no: String },
    /// An operator command was refused because of the row's state.
    #[error("order {order_no}: {reason}")]
    Refused { order_no: String, reason: String },
    #[error("order {0} is not in the job table")]
    NotFound(String),
    /// A pause or resume of paying was refused (that scope is paused already, or is not, or
    /// the reason is empty): nothing changed; the text says why and what is in force.
    #[error("{0}")]
    PauseRefused(String),
    /// The database is unreachable or failed: retry later.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
    /// PostgreSQL's refusal of a character in a value sent to it (a NUL in text: 22021; in
    /// JSON: 22P05): the request's fault, never the database's.
    pub fn is_refused_character(&self) -> bool {
        matches!(self, Error::Database(sqlx::Error::Database(db))
            if matches!(db.code().as_deref(), Some("22021" | "22P05")))
    }

    /// A failed write of `lease`: a refused row is `ConstraintViolated`, anything else is the
    /// database's trouble.
    fn from_write(e: sqlx::Error, lease: &Lease) -> Error {
        let refused = match &e {
            sqlx::Error::Database(db) => db.code().and_then(|code| {
                if REFUSED_ROW.contains(&code.as_ref()) {
                    return Some(db.constraint().unwrap_or("unnamed").to_owned());
                }
                // Named by class and code only: PostgreSQL's message may quote the value.
                REFUSED_DATA
                    .iter()
                    .find(|(class, _)| code.starts_with(class))
                    .map(|(_, what)| format!("{what}, SQLSTATE {code}"))
            }),
            _ => None,
        };
        match refused {
            Some(constraint) => Error::ConstraintViolated {
                job_id: lease.id(),
                order_no: lease.order_no().to_owned(),
                constraint,
            },
            None => Error::Database(e),
        }
    }
}
