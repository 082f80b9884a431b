//! A consumer runtime running in a test's background, to be stopped cleanly (drained,
//! committed, group left) or killed (aborted: nothing drained, nothing committed).

use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tramline_core::consumer::{ConsumerRuntime, ConsumerStats};
use tramline_core::ports::{Handler, Subscription};
use tramline_core::Error;

/// A running consumer and its counters.
#[derive(Debug)]
pub struct RunningConsumer {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), Error>>,
    /// The runtime's counters, live.
    pub stats: Arc<ConsumerStats>,
}

impl RunningConsumer {
    /// Runs `runtime` on `subscription` until stopped or killed.
    pub fn start<H: Handler, S: Subscription>(
        runtime: ConsumerRuntime<H>,
        subscription: S,
    ) -> RunningConsumer {
        let stats = runtime.stats();
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let cancel = cancel.clone();
            async move { runtime.run(subscription, cancel).await }
        });
        RunningConsumer {
            cancel,
            task,
            stats,
        }
    }

    /// Stops it as a shutdown does and fails the test unless it stopped cleanly.
    pub async fn stop(self) -> Arc<ConsumerStats> {
        self.cancel.cancel();
        self.task
            .await
            .expect("the consumer did not panic")
            .expect("the consumer stops cleanly");
        self.stats
    }

    /// Kills it, as a crash would: no drain, no final commit. Returns its counters.
    pub async fn kill(self) -> Arc<ConsumerStats> {
        self.task.abort();
        let _ = self.task.await;
        self.stats
    }
}

/// The message ids a test handler has applied: the dedupe a real handler keeps in its inbox,
/// kept in memory.
#[derive(Debug, Default)]
pub struct SeenIds(std::sync::Mutex<std::collections::HashSet<String>>);

impl SeenIds {
    /// Counts `batch` as a handler would: each id not seen before applied, the others
    /// duplicates.
    pub fn count(&self, batch: &[tramline_core::Record]) -> tramline_core::ports::Applied {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = tramline_core::ports::Applied::default();
        for r in batch {
            if seen.insert(r.envelope.id.to_string()) {
                out.applied += 1;
            } else {
                out.duplicates += 1;
            }
        }
        out
    }
}
