//! The consumer runtime: per-key lanes, batched transactional apply, offsets committed after.
//!
//! A fetcher polls the subscription and routes each record to a lane by hashing its key, so
//! the events of one key are applied in delivery order by one worker while different keys run
//! in parallel. Each worker drains what is queued (up to a batch) and hands it to the
//! [`Handler`], which commits effect and dedupe records in one transaction. Only then does the
//! [`OffsetTracker`] let the fetcher commit the partition's low watermark — so a crash at any
//! point means redelivery, which the handler absorbs, and never a skipped record.
//!
//! Queues are bounded: when lanes fall behind, the fetcher waits instead of buffering.
//!
//! When a transport announces a [`Revocation`] (a rebalance moves partitions to another group
//! member), the fetcher stops fetching, waits until the lanes finished every record of those
//! partitions, and hands their positions back for the transport to commit before the
//! partitions move: the next owner neither redoes nor skips this member's work.
//!
//! Metrics (labelled `group` = [`ConsumerConfig::name`]) are emitted beside the matching
//! [`ConsumerStats`] counters, once each; the two latency histograms take one observation per
//! record of a batch: its age when the batch starts, and again when its transaction committed.

use crate::offsets::OffsetTracker;
use crate::ports::{Applied, Handler, Revocation, Subscription};
use crate::retry::{RetryCounters, RetryPolicy};
use crate::telemetry::ConsumerMetrics;
use crate::{Error, Record};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// What decides a record's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LaneBy {
    /// The message key: one key's records are applied in order by one lane. The default.
    #[default]
    Key,
    /// The topic: one lane per topic, as the seed's one consumer thread per topic. Records of
    /// one key on different topics then race each other; only for the baseline.
    Topic,
}

/// Consumer tuning.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// The group's name in metrics (label `group`) and retry counts (`consumer:<name>`).
    pub name: String,
    /// Lanes applying in parallel (the seed ran three consumers).
    pub workers: usize,
    /// What decides a record's lane.
    pub lane_by: LaneBy,
    /// Most records one handler transaction applies.
    pub batch_max: usize,
    /// Records queued per lane before the fetcher waits.
    pub queue_capacity: usize,
    /// Most records fetched per poll.
    pub poll_max: usize,
    /// Longest wait of one poll.
    pub poll_wait: Duration,
    /// Least time between offset commits while running (the last one is made on stop). A
    /// crash redelivers at most this much work, which the handler's dedupe absorbs.
    pub commit_interval: Duration,
    /// Longest wait, when partitions are revoked, for the lanes to finish their records; past
    /// it the partitions are given up at the last finished offset (the rest is redelivered
    /// to the next owner).
    pub drain_timeout: Duration,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            name: "consumer".to_owned(),
            workers: 3,
            lane_by: LaneBy::Key,
            batch_max: 500,
            queue_capacity: 2000,
            poll_max: 2000,
            poll_wait: Duration::from_millis(100),
            commit_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
        }
    }
}

impl ConsumerConfig {
    fn validate(&self) -> Result<(), Error> {
        if self.workers == 0
            || self.batch_max == 0
            || self.queue_capacity == 0
            || self.poll_max == 0
        {
            return Err(Error::Config(
                "consumer workers, batch_max, queue_capacity and poll_max must be at least 1"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Counters a consumer keeps while running.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Records received from the transport (redeliveries included).
    pub received: AtomicU64,
    /// Records whose effect was applied.
    pub applied: AtomicU64,
    /// Records skipped as duplicates of an applied message id.
    pub duplicates: AtomicU64,
    /// Records parked as not applicable.
    pub parked: AtomicU64,
    /// Records parked behind an earlier parked message of their key.
    pub held: AtomicU64,
    /// Handler transactions committed.
    pub batches: AtomicU64,
    /// Retries of transient failures, by cause.
    pub retries: RetryCounters,
    /// Offset commits made.
    pub commits: AtomicU64,
    /// Revocations handled (partitions handed over to another group member).
    pub revocations: AtomicU64,
}

/// Whether an error condemns the message rather than the system.
fn is_poison(e: &Error) -> bool {
    matches!(e, Error::Poison { .. })
}

/// Runs one handler over one subscription.
pub struct ConsumerRuntime<H> {
    handler: Arc<H>,
    config: ConsumerConfig,
    stats: Arc<ConsumerStats>,
    metrics: ConsumerMetrics,
}

impl<H: Handler> ConsumerRuntime<H> {
    /// A runtime for `handler`; registers its metrics with the installed recorder.
    pub fn new(handler: Arc<H>, config: ConsumerConfig) -> Self {
        let stats = ConsumerStats {
            retries: RetryCounters::for_component(&format!("consumer:{}", config.name)),
            ..ConsumerStats::default()
        };
        ConsumerRuntime {
            handler,
            metrics: ConsumerMetrics::new(&config.name),
            config,
            stats: Arc::new(stats),
        }
    }

    /// The runtime's counters, shared.
    pub fn stats(&self) -> Arc<ConsumerStats> {
        Arc::clone(&self.stats)
    }

    /// Consumes until `cancel` fires, then drains the lanes and commits their offsets.
    /// Returns the first error no retry could fix (after draining the other lanes).
    pub async fn run<S: Subscription>(
        &self,
        mut subscription: S,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        self.config.validate()?;
        let tracker = Arc::new(Mutex::new(OffsetTracker::default()));
        let failed = CancellationToken::new();
        let progress = Arc::new(Notify::new());
        let mut lanes = Vec::with_capacity(self.config.workers);
        let mut workers = JoinSet::new();
        for _ in 0..self.config.workers {
            let (tx, rx) = mpsc::channel(self.config.queue_capacity);
            lanes.push(tx);
            let lane = Lane {
                handler: Arc::clone(&self.handler),
                tracker: Arc::clone(&tracker),
                stats: Arc::clone(&self.stats),
                metrics: self.metrics.clone(),
                retry: self.config.retry.clone(),
                batch_max: self.config.batch_max,
                failed: failed.clone(),
                progress: Arc::clone(&progress),
            };
            workers.spawn(lane.run(rx));
        }
        let hasher = BuildHasherDefault::<DefaultHasher>::default();
        // Topic → lane, in order of first sight, so topics spread over distinct lanes.
        let mut topic_lanes = std::collections::HashMap::new();

        let mut outcome = Ok(());
        let mut last_commit = tokio::time::Instant::now();
        let mut failed_polls = 0;
        'fetch: while !cancel.is_cancelled() && !failed.is_cancelled() {
            let polled = tokio::select! {
                r = subscription.poll(self.config.poll_max, self.config.poll_wait) => r,
                _ = cancel.cancelled() => break,
                _ = failed.cancelled() => break,
            };
            let records = match polled {
                Ok(r) => {
                    failed_polls = 0;
                    r
                }
                Err(e) if e.is_transient() && failed_polls < self.config.retry.max_retries => {
                    self.stats.retries.record(&e);
                    tokio::time::sleep(self.config.retry.delay(failed_polls)).await;
                    failed_polls += 1;
                    continue;
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            self.stats
                .received
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            for record in records {
                lock(&tracker).started(&record.envelope.topic, record.partition, record.offset);
                let lane = match self.config.lane_by {
                    LaneBy::Key => hasher.hash_one(record.envelope.key.as_str()) as usize,
                    LaneBy::Topic => match topic_lanes.get(&record.envelope.topic) {
                        Some(&lane) => lane,
                        None => {
                            let lane = topic_lanes.len();
                            topic_lanes.insert(record.envelope.topic.clone(), lane);
                            lane
                        }
                    },
                } % lanes.len();
                tokio::select! {
                    sent = lanes[lane].send(record) => if sent.is_err() { break 'fetch },
                    _ = failed.cancelled() => break 'fetch,
                }
            }
            if let Some(revocation) = subscription.take_revocation() {
                self.release(revocation, &tracker, &progress, &failed).await;
            }
            if last_commit.elapsed() >= self.config.commit_interval {
                last_commit = tokio::time::Instant::now();
                if let Err(e) = self.commit(&subscription, &tracker).await {
                    outcome = Err(e);
                    break;
                }
            }
        }

        // Closing the queues lets every lane finish what it holds, then stop.
        drop(lanes);
        while let Some(joined) = workers.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if outcome.is_ok() {
                        outcome = Err(e);
                    }
                }
                Err(panic) => std::panic::resume_unwind(panic.into_panic()),
            }
        }
        let committed = self.commit(&subscription, &tracker).await;
        subscription.close().await;
        let outcome = outcome.and(committed);
        if outcome.is_err() {
            self.metrics.failed.increment(1);
        }
        outcome
    }

    /// Waits (bounded by `drain_timeout`) until no record of the revoked partitions is in a
    /// lane, then hands their positions back to the transport.
    async fn release(
        &self,
        revocation: Revocation,
        tracker: &Mutex<OffsetTracker>,
        progress: &Notify,
        failed: &CancellationToken,
    ) {
        let deadline = tokio::time::Instant::now() + self.config.drain_timeout;
        loop {
            let finished = progress.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let in_flight: usize = {
                let tracker = lock(tracker);
                revocation
                    .partitions
                    .iter()
                    .map(|(topic, part)| tracker.in_flight_of(topic, *part))
                    .sum()
            };
            if in_flight == 0 {
                break;
            }
            tokio::select! {
                _ = &mut finished => {}
                // A failed lane never finishes: hand back what is done, the rest is redelivered.
                _ = failed.cancelled() => break,
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!(in_flight, "revoked partitions not drained in time; giving them up at the last finished offset");
                    break;
                }
            }
        }
        let positions = {
            let mut tracker = lock(tracker);
            revocation
                .partitions
                .iter()
                .filter_map(|(topic, part)| tracker.release(topic, *part))
                .collect()
        };
        self.stats.revocations.fetch_add(1, Ordering::Relaxed);
        revocation.complete(positions);
    }

    async fn commit<S: Subscription>(
        &self,
        subscription: &S,
        tracker: &Mutex<OffsetTracker>,
    ) -> Result<(), Error> {
        let positions = lock(tracker).take_commits();
        if positions.is_empty() {
            return Ok(());
        }
        self.config
            .retry
            .run(&self.stats.retries, || subscription.commit(&positions))
            .await?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn lock(tracker: &Mutex<OffsetTracker>) -> std::sync::MutexGuard<'_, OffsetTracker> {
    // A panic while holding this lock leaves only counters half-updated; offsets stay safe
    // because nothing is committed past an unfinished record.
    tracker
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One worker: applies the records of the keys hashed to it, in order.
struct Lane<H> {
    handler: Arc<H>,
    tracker: Arc<Mutex<OffsetTracker>>,
    stats: Arc<ConsumerStats>,
    metrics: ConsumerMetrics,
    retry: RetryPolicy,
    batch_max: usize,
    failed: CancellationToken,
    /// Signalled after each finished batch, for a fetcher waiting to release partitions.
    progress: Arc<Notify>,
}

impl<H: Handler> Lane<H> {
    async fn run(self, mut queue: mpsc::Receiver<Record>) -> Result<(), Error> {
        let mut batch = Vec::with_capacity(self.batch_max);
        while let Some(first) = queue.recv().await {
            batch.push(first);
            while batch.len() < self.batch_max {
                match queue.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            ConsumerMetrics::observe_ages(&self.metrics.event_age, &batch);
            if let Err(e) = self.apply(&batch).await {
                tracing::error!(error = %crate::error::sentence(&e), "consumer lane stopped");
                self.failed.cancel();
                return Err(e);
            }
            {
                let mut tracker = lock(&self.tracker);
                for r in &batch {
                    tracker.finished(&r.envelope.topic, r.partition, r.offset);
                }
            }
            self.progress.notify_waiters();
            batch.clear();
        }
        Ok(())
    }

    /// Applies a batch; if it holds a poison record, applies record by record so that only
    /// the poison ones are parked. Any other error (transient ones after their retries, or a
    /// store failing for good: a missing table, a refused login, a server out of resources)
    /// stops the lane: it is the system that is broken, not the message, and parking would
    /// hide it.
    async fn apply(&self, batch: &[Record]) -> Result<(), Error> {
        match self.apply_with_retry(batch).await {
            Ok(()) => Ok(()),
            Err(e) if !is_poison(&e) => Err(e),
            Err(e) if batch.len() == 1 => self.park(&batch[0], &e).await,
            Err(_) => {
                for record in batch {
                    match self.apply_with_retry(std::slice::from_ref(record)).await {
                        Ok(()) => {}
                        Err(e) if !is_poison(&e) => return Err(e),
                        Err(e) => self.park(record, &e).await?,
                    }
                }
                Ok(())
            }
        }
    }

    async fn apply_with_retry(&self, batch: &[Record]) -> Result<(), Error> {
        let Applied {
            applied,
            duplicates,
            held,
        } = self
            .retry
            .run(&self.stats.retries, || self.handler.apply(batch))
            .await?;
        ConsumerMetrics::observe_ages(&self.metrics.commit_latency, batch);
        self.metrics.applied.increment(applied as u64);
        self.metrics.duplicates.increment(duplicates as u64);
        self.metrics.held.increment(held as u64);
        self.stats.held.fetch_add(held as u64, Ordering::Relaxed);
        self.stats
            .applied
            .fetch_add(applied as u64, Ordering::Relaxed);
        self.stats
            .duplicates
            .fetch_add(duplicates as u64, Ordering::Relaxed);
        self.stats.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn park(&self, record: &Record, reason: &Error) -> Result<(), Error> {
        tracing::warn!(
            topic = %record.envelope.topic,
            partition = record.partition,
            offset = record.offset,
            message_id = %record.envelope.id,
            error = %crate::error::sentence(reason),
            "parking a message that cannot be applied"
        );
        self.retry
            .run(&self.stats.retries, || self.handler.park(record, reason))
            .await?;
        self.stats.parked.fetch_add(1, Ordering::Relaxed);
        self.metrics.parked.increment(1);
        Ok(())
    }
}
