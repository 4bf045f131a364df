//! The job store: every SQL statement on `ticketing_jobs` and `ticketing_events`, in one place.
//!
//! Two rules hold for every write after a claim: it is fenced by the claim's `lease_token`
//! (zero rows matched is [`Error::LeaseLost`], never a silent no-op), and it appends its event
//! in the same statement, so the history can never disagree with the row.

mod ops;
mod rows;
mod store;

pub use rows::{CardJson, ClaimedJob, EventRow, JobRow, SealedCard};
pub use store::{Change, JobStore, Lease, NewJob};

/// Job-store failures, by what the caller does about them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Another worker took the row over (or an operator changed it): stop the step at once,
    /// before any further side effect.
    #[error(
        "lease lost on job {job_id} (order {order_no}): another worker or an operator owns it now"
    )]
    LeaseLost { job_id: i64, order_no: String },
    /// An operator command was refused because of the row's state.
    #[error("order {order_no}: {reason}")]
    Refused { order_no: String, reason: String },
    #[error("order {0} is not in the job table")]
    NotFound(String),
    /// The database is unreachable or failed: retry later.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}
