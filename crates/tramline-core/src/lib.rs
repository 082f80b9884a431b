//! The ports of tramline and the machinery that needs no I/O of its own.
//!
//! Adapters (SQL stores, the embedded log, Kafka) implement the traits in [`ports`]; the
//! [`relay::OutboxRelay`] and the [`consumer::ConsumerRuntime`] are written once against those
//! traits. The one decision to know: delivery is *at least once* everywhere, and exactly-once
//! *effect* comes from the consumer committing its effect and its dedupe record in one
//! transaction, and the transport offset only after that.

pub mod changes;
pub mod consumer;
pub mod election;
pub mod envelope;
pub mod error;
pub mod eventuate;
#[cfg(feature = "fault")]
pub mod fault;
pub mod memory;
pub mod offsets;
pub mod partitioner;
pub mod ports;
pub mod readmodel;
pub mod relay;
pub mod retry;
pub mod supervisor;
pub mod telemetry;
pub mod topics;
pub mod wire;

pub use envelope::{Envelope, Record};
pub use error::{BoxError, Error, RetryCause};
