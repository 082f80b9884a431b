//! The outbox relay: moves committed outbox messages to the transport, at least once.
//!
//! Order of a key is kept because batches are fetched in commit order and a batch is marked
//! published only after the transport accepted all of it; a crash between publish and mark
//! republishes the batch (duplicates, never gaps). While a backlog exists the relay loops
//! without sleeping; when idle it waits for the outbox's wakeup or the poll interval, whichever
//! comes first (the interval covers writers in other processes).
//!
//! Several relays of one outbox elect one leader ([`OutboxRelay::run_elected`], the port in
//! [`crate::election`]); only the leader publishes, and it confirms its term between fetching
//! a batch and publishing it.
//!
//! Metrics (labelled `outbox` = [`RelayConfig::name`]): messages published and messages per
//! round on every round; the outbox's backlog and oldest message's age only when sampled, at
//! most once per [`RelayConfig::sample_interval`], since that costs the outbox a count.

use crate::election::{Alone, Election, Term};
use crate::ports::{Outbox, OutboxBatch, Transport};
use crate::retry::{RetryCounters, RetryPolicy};
use crate::telemetry::{age_seconds, RelayMetrics};
use crate::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Relay tuning.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The outbox's name in metrics (label `outbox`) and retry counts (`relay:<name>`).
    pub name: String,
    /// Messages per fetch/publish/mark round.
    pub batch_size: usize,
    /// Longest wait when idle before looking at the outbox again.
    pub idle_poll: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Least time between two samples of the outbox's backlog gauges (each one a count of
    /// the unpublished rows), checked once per round.
    pub sample_interval: Duration,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            name: "outbox".to_owned(),
            batch_size: 1000,
            idle_poll: Duration::from_millis(250),
            retry: RetryPolicy::default(),
            sample_interval: Duration::from_secs(5),
        }
    }
}

/// Counters a relay keeps while running.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Messages published (a republished message counts again).
    pub published: AtomicU64,
    /// Publish rounds.
    pub batches: AtomicU64,
    /// Times this relay became the leader of its outbox (1 for a relay that runs alone).
    pub terms: AtomicU64,
    /// Retries of transient failures, by cause.
    pub retries: RetryCounters,
}

/// Publishes one outbox to one transport until cancelled.
pub struct OutboxRelay<O, T> {
    outbox: Arc<O>,
    transport: Arc<T>,
    config: RelayConfig,
    stats: Arc<RelayStats>,
    metrics: RelayMetrics,
}

impl<O: Outbox, T: Transport> OutboxRelay<O, T> {
    /// A relay from `outbox` to `transport`; registers its metrics with the installed
    /// recorder.
    pub fn new(outbox: Arc<O>, transport: Arc<T>, config: RelayConfig) -> Self {
        let stats = RelayStats {
            retries: RetryCounters::for_component(&format!("relay:{}", config.name)),
            ..RelayStats::default()
        };
        OutboxRelay {
            outbox,
            transport,
            metrics: RelayMetrics::new(&config.name),
            config,
            stats: Arc::new(stats),
        }
    }

    /// The relay's counters, shared.
    pub fn stats(&self) -> Arc<RelayStats> {
        Arc::clone(&self.stats)
    }

    /// Publishes until there is no more work *and* `cancel` fired; a batch in progress is
    /// always finished (published and marked) before returning. The relay runs alone: see
    /// [`run_elected`](Self::run_elected) for several relays of one outbox.
    pub async fn run(&self, cancel: CancellationToken) -> Result<(), Error> {
        self.run_elected(&Alone, cancel).await
    }

    /// Stands by until `election` makes this relay the leader, then publishes while it
    /// leads — confirming its term after each fetch, before publishing — and stands by again
    /// when the term ends, until `cancel` fires; then it resigns, so that a standby takes over
    /// at once. Transient errors while campaigning (the database restarting) are counted and
    /// campaigned through; any other error is returned.
    pub async fn run_elected<E: Election>(
        &self,
        election: &E,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        loop {
            self.metrics.leader.set(0.0);
            let Some(term) = self.stand_by(election, &cancel).await? else {
                return Ok(());
            };
            self.metrics.leader.set(1.0);
            self.metrics.term.set(term as f64);
            self.stats.terms.fetch_add(1, Ordering::SeqCst);
            tracing::info!(outbox = %self.config.name, term, "the relay leads");
            let led = self.lead(election, term, &cancel).await;
            self.metrics.leader.set(0.0);
            match led {
                Ok(Led::Lost) => {
                    tracing::warn!(outbox = %self.config.name, term, "the relay lost the lead; standing by");
                }
                Ok(Led::Stopped) => {
                    if let Err(e) = election.resign(term).await {
                        tracing::warn!(outbox = %self.config.name, term, error = %crate::error::sentence(&e), "could not resign the lead; it runs out by itself");
                    }
                    return Ok(());
                }
                Err(e) => {
                    let _ = election.resign(term).await;
                    return Err(e);
                }
            }
        }
    }

    /// Campaigns every [`Election::interval`] until elected (`Some(term)`) or cancelled.
    async fn stand_by<E: Election>(
        &self,
        election: &E,
        cancel: &CancellationToken,
    ) -> Result<Option<Term>, Error> {
        loop {
            match election.campaign().await {
                Ok(Some(term)) => return Ok(Some(term)),
                Ok(None) => {}
                Err(e) if e.is_transient() => {
                    self.stats.retries.record(&e);
                    tracing::debug!(outbox = %self.config.name, error = %crate::error::sentence(&e), "could not campaign; trying again");
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(None),
                _ = tokio::time::sleep(election.interval()) => {}
            }
        }
    }

    /// Publishes while `term` lasts.
    async fn lead<E: Election>(
        &self,
        election: &E,
        term: Term,
        cancel: &CancellationToken,
    ) -> Result<Led, Error> {
        let mut last_sample: Option<Instant> = None;
        let mut confirmed = Instant::now();
        loop {
            if last_sample.is_none_or(|at| at.elapsed() >= self.config.sample_interval) {
                last_sample = Some(Instant::now());
                self.sample().await?;
            }
            let wakeup = self.outbox.wakeup().notified();
            tokio::pin!(wakeup);
            wakeup.as_mut().enable();
            let batch = self.fetch().await?;
            if !batch.is_empty() {
                // The fence: a leader that lost its term publishes nothing more.
                if !self.confirm(election, term).await {
                    return Ok(Led::Lost);
                }
                confirmed = Instant::now();
                self.publish(batch).await?;
                continue;
            }
            // An idle leader confirms too: a lease is renewed, a lost lock noticed.
            if confirmed.elapsed() >= election.interval() {
                if !self.confirm(election, term).await {
                    return Ok(Led::Lost);
                }
                confirmed = Instant::now();
            }
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Led::Stopped),
                _ = &mut wakeup => {}
                _ = tokio::time::sleep(self.config.idle_poll.min(election.interval())) => {}
            }
        }
    }

    /// Whether `term` still holds; an error that outlasts the retries counts as "no": a
    /// leader that cannot tell stops publishing.
    async fn confirm<E: Election>(&self, election: &E, term: Term) -> bool {
        let confirmed = self
            .config
            .retry
            .run(&self.stats.retries, || election.confirm(term))
            .await;
        match confirmed {
            Ok(holds) => holds,
            Err(e) => {
                tracing::warn!(outbox = %self.config.name, term, error = %crate::error::sentence(&e), "could not confirm the lead");
                false
            }
        }
    }

    /// Sets the backlog gauges from the outbox's [`Outbox::pending`] now (an outbox that
    /// cannot tell leaves them unset); [`run`](Self::run) calls it every `sample_interval`.
    pub async fn sample(&self) -> Result<(), Error> {
        let pending = self
            .config
            .retry
            .run(&self.stats.retries, || self.outbox.pending())
            .await?;
        if let Some(pending) = pending {
            let oldest_age = match pending.oldest_created_at_ms {
                Some(at) if pending.count > 0 => age_seconds(crate::envelope::now_ms(), at),
                _ => 0.0,
            };
            self.metrics.backlog.set(pending.count as f64);
            self.metrics.oldest_age.set(oldest_age);
        }
        Ok(())
    }

    /// One round: fetch, publish, mark. Returns how many messages were published.
    pub async fn publish_once(&self) -> Result<usize, Error> {
        let batch = self.fetch().await?;
        self.publish(batch).await
    }

    async fn fetch(&self) -> Result<OutboxBatch, Error> {
        self.config
            .retry
            .run(&self.stats.retries, || {
                self.outbox.fetch_unpublished(self.config.batch_size)
            })
            .await
    }

    /// Publishes and marks `batch`; how many messages it had.
    async fn publish(&self, batch: OutboxBatch) -> Result<usize, Error> {
        if batch.is_empty() {
            return Ok(0);
        }
        let retries = &self.stats.retries;
        self.config
            .retry
            .run(retries, || self.transport.publish(&batch.messages))
            .await?;
        // Counted before the mark: whoever sees the outbox empty sees this count too, which
        // is how a caller tells "published meanwhile" from "nothing happened".
        let n = batch.messages.len();
        self.stats.published.fetch_add(n as u64, Ordering::SeqCst);
        self.metrics.published.increment(n as u64);
        self.metrics.batch_size.record(n as f64);
        self.config
            .retry
            .run(retries, || self.outbox.mark_published(&batch))
            .await?;
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(n)
    }
}

/// How a term of leading ended.
enum Led {
    /// Asked to stop.
    Stopped,
    /// The term no longer holds.
    Lost,
}
