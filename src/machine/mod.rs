//! The state machine: what the worker does next with a claimed row, given what ATRIP answered.
//!
//! [`transitions::next`] is the whole table, "state × what ATRIP answered → next state, next
//! action", as one pure function: no SQL, no HTTP, no clock of its own (the time it compares is
//! the database's, carried in [`Facts::now`]). Its arms cite the numbered rules of
//! `docs/design.md`, so the two can be read side by side. The job store turns a [`Next`] into
//! one fenced write (`jobs::write`), and that is the only way a step changes its row.
//! [`operator`] decides, as pure functions too, what an operator may do to a row (rules P7,
//! P7a, P8: the store, the command line and the console all ask it); [`kinds`] names the kind
//! of a stored reason for the console's groups.

pub mod claim;
mod delay;
pub mod durability;
mod facts;
pub mod kinds;
pub mod operator;
mod reasons;
pub mod transitions;

#[cfg(test)]
mod rule_tests;

pub use delay::next_poll_delay;
pub use facts::{Bounds, Facts};
pub use kinds::{kind_of, ReasonKind};
pub use reasons::{Evidence, FailReason, PayOutcome, ReviewReason, Waiting};
pub use transitions::{evidence_in, next, Event, Next, NotSentReason};
