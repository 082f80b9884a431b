//! Leader election for relays: several relay processes may run for one outbox, and exactly
//! one of them publishes at a time.
//!
//! The port is small: a standby [campaigns](Election::campaign) now and then; the leader
//! [confirms](Election::confirm) its term after fetching each batch and before publishing it,
//! and [resigns](Election::resign) when it stops, so a standby takes over at once. What makes a
//! term end — a lock held on a connection the server drops when the process dies, a lease that
//! runs out — is the implementation's (`tramline_sql::election::SqlElection`).
//!
//! Fencing: a leader that was paused (a long GC-like stall, SIGSTOP, a lost network) finds its
//! term over at its next confirm and publishes nothing more; the only window left is a batch
//! whose confirm succeeded just before the pause, which is published again by the new leader
//! too — a duplicate, which consumers drop by message id, never a gap.

use crate::Error;
use std::future::Future;
use std::time::Duration;

/// One leadership of one election: larger than every earlier term of that election, so logs
/// and metrics tell a takeover from a renewal.
pub type Term = u64;

/// Decides which of several relays of one outbox publishes.
pub trait Election: Send + Sync + 'static {
    /// Tries once, without waiting, to become the leader: `Some(term)` when this process
    /// now leads, `None` when another does.
    fn campaign(&self) -> impl Future<Output = Result<Option<Term>, Error>> + Send;

    /// Whether this process still leads `term`, renewing its claim where that is a lease.
    /// `false` (or an error) means: stop publishing at once and stand by.
    fn confirm(&self, term: Term) -> impl Future<Output = Result<bool, Error>> + Send;

    /// Gives the term up, so that a standby takes over without waiting for it to run out.
    fn resign(&self, term: Term) -> impl Future<Output = Result<(), Error>> + Send;

    /// How often a standby campaigns, and the longest an idle leader goes without confirming.
    fn interval(&self) -> Duration;
}

/// The election of a relay that runs alone: it always leads, confirming costs nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct Alone;

impl Election for Alone {
    async fn campaign(&self) -> Result<Option<Term>, Error> {
        Ok(Some(1))
    }

    async fn confirm(&self, _term: Term) -> Result<bool, Error> {
        Ok(true)
    }

    async fn resign(&self, _term: Term) -> Result<(), Error> {
        Ok(())
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(3600)
    }
}
