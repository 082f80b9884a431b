//! Deliberate misbehaviour for demos and tests: a transport that publishes some messages twice
//! (what a relay killed between publish and mark does) and a subscription that hands out each
//! poll in random order (what no real transport does within a key, and what a projection must
//! survive anyway when events of one order arrive through different topics).

use crate::offsets::CommitPosition;
use crate::ports::{Revocation, Subscription, Transport};
use crate::{Envelope, Error, Record};
use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// A transport that publishes a random `fraction` of messages a second time, at the end of
/// the same batch (after newer messages of the same key).
#[derive(Debug)]
pub struct Duplicating<T> {
    inner: T,
    fraction: f64,
    injected: AtomicU64,
    rng: Mutex<SmallRng>,
}

impl<T> Duplicating<T> {
    /// Wraps `inner`; `fraction` must be within 0..=1.
    pub fn new(inner: T, fraction: f64) -> Result<Self, Error> {
        if !(0.0..=1.0).contains(&fraction) {
            return Err(Error::Config(format!(
                "duplicate fraction must be between 0 and 1, got {fraction}"
            )));
        }
        Ok(Duplicating {
            inner,
            fraction,
            injected: AtomicU64::new(0),
            rng: Mutex::new(SmallRng::from_entropy()),
        })
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Extra copies published so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }
}

impl<T: Transport> Transport for Duplicating<T> {
    type Subscription = T::Subscription;

    async fn publish(&self, batch: &[Envelope]) -> Result<(), Error> {
        if self.fraction == 0.0 {
            return self.inner.publish(batch).await;
        }
        let copies: Vec<Envelope> = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            batch
                .iter()
                .filter(|_| rng.gen::<f64>() < self.fraction)
                .cloned()
                .collect()
        };
        let mut all = Vec::with_capacity(batch.len() + copies.len());
        all.extend_from_slice(batch);
        all.extend(copies);
        self.inner.publish(&all).await?;
        self.injected
            .fetch_add((all.len() - batch.len()) as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, group: &str, topics: &[String]) -> Result<Self::Subscription, Error> {
        self.inner.subscribe(group, topics).await
    }

    async fn end_offsets(&self, topics: &[String]) -> Result<Vec<CommitPosition>, Error> {
        self.inner.end_offsets(topics).await
    }

    async fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        self.inner.create_topic(topic, partitions).await
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<i64, Error> {
        self.inner.lag(group, topics).await
    }
}

/// A subscription that shuffles every poll when enabled.
#[derive(Debug)]
pub struct Shuffled<S> {
    inner: S,
    enabled: bool,
    rng: SmallRng,
}

impl<S> Shuffled<S> {
    /// Wraps `inner`; with `enabled` false it passes polls through unchanged.
    pub fn new(inner: S, enabled: bool) -> Self {
        Shuffled {
            inner,
            enabled,
            rng: SmallRng::from_entropy(),
        }
    }
}

impl<S: Subscription> Subscription for Shuffled<S> {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Record>, Error> {
        let mut records = self.inner.poll(max, wait).await?;
        if self.enabled {
            records.shuffle(&mut self.rng);
        }
        Ok(records)
    }

    async fn commit(&self, positions: &[CommitPosition]) -> Result<(), Error> {
        self.inner.commit(positions).await
    }

    fn take_revocation(&mut self) -> Option<Revocation> {
        self.inner.take_revocation()
    }

    async fn close(self) {
        self.inner.close().await
    }
}
