//! Which rows a claim takes and what it does to them (rules P1, T3), in words a model can run.
//! The claim statement (`JobStore::claim`) is this, in SQL; `tests/api/claim_rule.rs` runs the
//! statement over every shape of row and checks that it takes exactly the rows [`claims`]
//! says, with the effect [`on_claim`] says. Two more kinds of `pending` row the statement
//! takes are not modelled here, as the model has no deadlines or pauses: one whose payment
//! deadline has passed while its method is paused or before its `run_at` (claimed to be
//! failed unsent, rules S3 and S4), and the order among due rows (S1, S2;
//! `tests/api/scheduling.rs`).

use crate::domain::State;

/// The row as the claim's WHERE reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub state: State,
    /// `run_at <= ticketing_now()`.
    pub due: bool,
    /// `lease_expires_at > ticketing_now()`: someone's lease is still running.
    pub lease_live: bool,
}

/// What this claim asks for: `pending` rows (new payments) and/or rows already paying or
/// ticketing (order queries). While no intent can be made durable (rule P1b) or ATRIP asked us
/// to slow down, `pay` is false.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wants {
    pub pay: bool,
    pub follow: bool,
}

/// Whether the claim takes the row.
pub fn claims(row: Shape, wants: Wants) -> bool {
    let asked = match row.state {
        State::Pending => wants.pay,
        State::Paying | State::Ticketing => wants.follow,
        _ => false,
    };
    asked && row.due && !row.lease_live
}

/// What the claim writes on a row it takes, besides a new lease (token + 1): the state it
/// leaves the row in and whether it records a pay intent (`pay_attempts + 1`, rule P1).
pub fn on_claim(state: State) -> (State, bool) {
    match state {
        State::Pending => (State::Paying, true),
        other => (other, false),
    }
}
