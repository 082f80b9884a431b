//! The one retry policy: jittered exponential backoff for transient store errors.
//!
//! Only errors that say [`Error::is_transient`] are retried; anything else is returned at once
//! so the caller can park or stop. Every retry is counted in one place, [`RetryCounters::record`],
//! which also emits it as `tramline_retries_total{component, cause}`.

use crate::{telemetry, Error, RetryCause};
use backon::{ExponentialBuilder, Retryable};
use metrics::Counter;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How often and how patiently transient failures are retried.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// First delay before a retry.
    pub min_delay: Duration,
    /// Upper bound of one delay.
    pub max_delay: Duration,
    /// Retries after the first attempt before the error is returned.
    pub max_retries: usize,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_secs(2),
            max_retries: 20,
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `attempt` (from 0), doubling up to `max_delay`, for
    /// loops that cannot hand their operation to [`RetryPolicy::run`].
    pub fn delay(&self, attempt: usize) -> Duration {
        let factor = 1u32 << attempt.min(16);
        self.min_delay.saturating_mul(factor).min(self.max_delay)
    }

    /// Runs `op` until it succeeds, fails with a non-transient error, or retries run out.
    /// Each retry is counted in `retries`, by cause.
    pub async fn run<T, F, Fut>(&self, retries: &RetryCounters, op: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let backoff = ExponentialBuilder::default()
            .with_min_delay(self.min_delay)
            .with_max_delay(self.max_delay)
            .with_max_times(self.max_retries)
            .with_jitter();
        op.retry(backoff)
            .sleep(tokio::time::sleep)
            .when(Error::is_transient)
            .notify(|err, delay| {
                retries.record(err);
                tracing::debug!(error = %crate::error::sentence(err), ?delay, "transient error, retrying");
            })
            .await
    }
}

/// Retries counted by cause, so a report can tell deadlocks from busy locks from lost
/// connections. Counters made [`for_component`](RetryCounters::for_component) also emit each
/// retry as a metric; [`Default`] ones only count.
#[derive(Debug)]
pub struct RetryCounters {
    by_cause: [AtomicU64; RetryCause::ALL.len()],
    /// `tramline_retries_total{component, cause}`, one handle per cause (no-op by default).
    emitted: [Counter; RetryCause::ALL.len()],
}

impl Default for RetryCounters {
    fn default() -> Self {
        RetryCounters {
            by_cause: Default::default(),
            emitted: RetryCause::ALL.map(|_| Counter::noop()),
        }
    }
}

impl RetryCounters {
    /// Counters that also emit `tramline_retries_total` with label `component` (e.g.
    /// `relay:order`, `consumer:order-status-view`).
    pub fn for_component(component: &str) -> Self {
        RetryCounters {
            by_cause: Default::default(),
            emitted: RetryCause::ALL.map(|cause| {
                metrics::counter!(
                    telemetry::RETRIES,
                    "component" => component.to_owned(),
                    "cause" => cause.as_str()
                )
            }),
        }
    }

    /// Counts one retry of `err` (under its cause; a non-transient error counts nowhere).
    pub fn record(&self, err: &Error) {
        if let Some(cause) = err.retry_cause() {
            self.by_cause[cause as usize].fetch_add(1, Ordering::Relaxed);
            self.emitted[cause as usize].increment(1);
        }
    }

    /// Retries caused by `cause`.
    pub fn get(&self, cause: RetryCause) -> u64 {
        self.by_cause[cause as usize].load(Ordering::Relaxed)
    }

    /// All retries.
    pub fn total(&self) -> u64 {
        RetryCause::ALL.iter().map(|c| self.get(*c)).sum()
    }

    /// The causes with at least one retry, by name: for reports.
    pub fn snapshot(&self) -> std::collections::BTreeMap<&'static str, u64> {
        RetryCause::ALL
            .iter()
            .map(|c| (c.as_str(), self.get(*c)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> Error {
        Error::Store {
            store: "test".into(),
            operation: "op",
            retry: Some(RetryCause::Deadlock),
            source: "deadlock".into(),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_until_success() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            max_retries: 5,
        };
        let counter = RetryCounters::default();
        let calls = AtomicU64::new(0);
        let out = policy
            .run(&counter, || async {
                if calls.fetch_add(1, Ordering::SeqCst) < 3 {
                    Err(transient())
                } else {
                    Ok(7)
                }
            })
            .await
            .unwrap();
        assert_eq!(out, 7);
        assert_eq!(counter.get(RetryCause::Deadlock), 3);
        assert_eq!(counter.total(), 3);
    }

    #[test]
    fn a_components_retries_are_emitted_by_cause() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let counters =
            metrics::with_local_recorder(&recorder, || RetryCounters::for_component("relay:order"));
        counters.record(&transient());
        counters.record(&transient());
        counters.record(&Error::Config("permanent".into()));
        let deadlocks: Vec<_> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .filter(|(key, _, _, value)| {
                let labels: Vec<_> = key.key().labels().map(|l| (l.key(), l.value())).collect();
                key.key().name() == telemetry::RETRIES
                    && labels.contains(&("component", "relay:order"))
                    && labels.contains(&("cause", "deadlock"))
                    && *value == DebugValue::Counter(2)
            })
            .collect();
        assert_eq!(deadlocks.len(), 1);
        assert_eq!(counters.get(RetryCause::Deadlock), 2);
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let policy = RetryPolicy {
            min_delay: Duration::from_millis(5),
            max_delay: Duration::from_millis(50),
            max_retries: 3,
        };
        let delays: Vec<_> = (0..6).map(|a| policy.delay(a).as_millis()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 50, 50]);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors() {
        let policy = RetryPolicy::default();
        let counter = RetryCounters::default();
        let calls = AtomicU64::new(0);
        let out: Result<(), Error> = policy
            .run(&counter, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(Error::Config("bad".into()))
            })
            .await;
        assert!(out.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(counter.total(), 0);
    }
}
