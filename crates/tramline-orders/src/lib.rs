//! The order system of the seed, built on tramline: order, payment and delivery services that
//! each write their state and their outbox in one transaction, and the Order Status View that
//! consumes their events.
//!
//! The decision to know: every event carries the full snapshot of its aggregate and the
//! aggregate's version, so a consumer can write exactly its own columns and let the newest
//! version win — reordering, duplicates and concurrency then cannot lose or stale a column.

pub mod domain;
pub mod error;
pub mod events;
pub mod http;
pub mod scenario;
pub mod services;
pub mod system;
pub mod trace;
pub mod view;

pub use error::OrderSystemError;
