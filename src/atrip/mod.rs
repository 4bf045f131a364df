//! The ATRIP API: its codes and states, its answers, and the HTTP client the worker uses.

pub mod answer;
pub mod balance;
pub mod ca;
pub mod client;
pub mod codes;

pub use answer::order_list::{ListError, ListPage, ListedOrder, MAX_LIST_ROWS};
pub use answer::{OrderView, PayAnswer, QueryAnswer};
pub use client::{Answered, Client, CreatedOrder, Error, ListRequest, PayRequest, PROBE_ORDER_NO};
