//! The ATRIP API: its codes and states, its answers, and the HTTP client the worker uses.

pub mod answer;
pub mod client;
pub mod codes;

pub use answer::{OrderView, PayAnswer, QueryAnswer};
pub use client::{Client, CreatedOrder, Error, PayRequest, PROBE_ORDER_NO};
