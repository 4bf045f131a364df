//! The job store: every SQL statement on `ticketing_jobs` and `ticketing_events`, in one place.
//!
//! Two rules hold for every write after a claim: it is fenced by the claim's `lease_token`
//! (zero rows matched is [`Error::LeaseLost`], never a silent no-op), and it appends its event
//! in the same statement, so the history can never disagree with the row. Files: `store` (the
//! claim and the worker's writes), `write` (a transition as columns), `ops` (operators,
//! webhooks, pruning, metrics), `console` (the operator console's reads), `rows` (what the
//! statements return).

mod apply;
mod console;
mod durability;
mod evidence;
mod ops;
mod rows;
mod store;
mod write;
mod writer;

pub use apply::{ItemResult, Landed};
pub use console::{AnswerCount, ConsoleOrder, Cursor, Throughput, ANSWERS_COUNTED};
pub use durability::{Flushed, Replicated, Replication, SERVER_ID};
pub use ops::Retried;
pub use rows::{CardJson, ClaimedJob, EventRow, JobRow, Lease, SealedCard};
pub use store::{Applied, JobStore, NewJob, Renewed};
pub use write::{CardSummary, Said, Write};
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
    #[error("order {order_no} (job {job_id}): the row is locked by another session; the write waits and is tried again")]
    RowBusy { job_id: i64, order_no: String },
    /// An operator command was refused because of the row's state.
    #[error("order {order_no}: {reason}")]
    Refused { order_no: String, reason: String },
    #[error("order {0} is not in the job table")]
    NotFound(String),
    /// The database is unreachable or failed: retry later.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Error {
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
