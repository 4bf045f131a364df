//! The bad-input catalogue: every kind of bad input the tracker can meet, in one place, each
//! case its own test, each ending in a clear refusal or a clear error on that one order.
//!
//! - [`refused`]: rows the database refuses at INSERT, by a named constraint (or jsonb itself);
//! - [`cards`]: rows the database takes but the worker must not pay (bad cards, a payment
//!   deadline already passed): failed before any `pay.do`, the reason naming the field;
//! - [`answers`]: what ATRIP (or a proxy) can answer that must not be believed: empty, HTML,
//!   cut, gzip broken, wrong types, another order, a ticket for someone not on the order, too
//!   many tickets, no tickets, error statuses. Served byte for byte by a [`rogue`] ATRIP.
//!
//! Every worker case enqueues a good order next to the bad one and asserts that it is
//! ticketed: bad input costs its own order, never the worker.

mod answers;
mod cards;
mod refused;
pub mod rogue;
pub mod world;
