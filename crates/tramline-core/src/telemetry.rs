//! The metrics tramline emits, through the `metrics` facade: their names, in one place, and
//! the handles the relay and the consumer runtime keep.
//!
//! The libraries only emit; a process installs a recorder (the binary installs a Prometheus
//! one, see docs/METRICS.md). Handles are registered once, when a relay or a runtime is
//! built, so the per-message cost is an atomic add: install the recorder *before* building
//! them, or their metrics go to the no-op recorder.

use crate::Record;
use metrics::{Counter, Histogram};

/// Counter: messages a relay published (a republished message counts again). Label `outbox`.
pub const RELAY_PUBLISHED: &str = "tramline_relay_published_total";
/// Histogram: messages per non-empty publish round of a relay. Label `outbox`.
pub const RELAY_BATCH_SIZE: &str = "tramline_relay_batch_size";
/// Gauge: unpublished messages in an outbox, sampled by its relay. Label `outbox`.
pub const OUTBOX_BACKLOG: &str = "tramline_outbox_backlog";
/// Gauge: age in seconds of an outbox's oldest unpublished message (0 when none), sampled by
/// its relay. Label `outbox`.
pub const OUTBOX_OLDEST_AGE: &str = "tramline_outbox_oldest_age_seconds";
/// Gauge: 1 while this relay leads its outbox (publishes), 0 while it stands by. Label
/// `outbox`.
pub const RELAY_LEADER: &str = "tramline_relay_leader";
/// Gauge: the term of this relay's latest leadership of its outbox (grows with every
/// takeover). Label `outbox`.
pub const RELAY_TERM: &str = "tramline_relay_term";
/// Counter: records whose effect a consumer applied. Label `group`.
pub const CONSUMER_APPLIED: &str = "tramline_consumer_applied_total";
/// Counter: records a consumer skipped as duplicates of an applied message id. Label `group`.
pub const CONSUMER_DUPLICATES: &str = "tramline_consumer_duplicates_total";
/// Counter: records a consumer parked as never applicable. Label `group`.
pub const CONSUMER_PARKED: &str = "tramline_consumer_parked_total";
/// Counter: records a consumer parked behind an earlier parked message of their key, which
/// holds the key. Label `group`.
pub const CONSUMER_HELD: &str = "tramline_consumer_held_total";
/// Counter: consumer runs that stopped on an error no retry could fix. Label `group`.
pub const CONSUMER_FAILED: &str = "tramline_consumer_failed_total";
/// Histogram: seconds from a record's outbox commit to the start of its batch's apply.
/// Label `group`.
pub const CONSUMER_EVENT_AGE: &str = "tramline_consumer_event_age_seconds";
/// Histogram: seconds from a record's outbox commit to the commit of the handler
/// transaction that applied it. Label `group`.
pub const CONSUMER_COMMIT_LATENCY: &str = "tramline_consumer_commit_latency_seconds";
/// Gauge: records of a partition after the group's committed position, as the consumer
/// sees them. Labels `group`, `topic`, `partition`.
pub const CONSUMER_LAG: &str = "tramline_consumer_lag";
/// Counter: retries of transient failures. Labels `component` (`relay:<outbox>` or
/// `consumer:<group>`) and `cause` ([`RetryCause::as_str`](crate::RetryCause::as_str)).
pub const RETRIES: &str = "tramline_retries_total";
/// Counter: rows retention deleted. Labels `store`, `table`.
pub const RETENTION_DELETED: &str = "tramline_retention_deleted_total";
/// Gauge: rows a table retention sweeps holds, sampled after each sweep. Labels `store`,
/// `table`.
pub const RETENTION_ROWS: &str = "tramline_retention_rows";
/// Gauge: age in seconds of the oldest row of a table retention sweeps (0 when empty),
/// sampled after each sweep. Labels `store`, `table`.
pub const RETENTION_OLDEST_AGE: &str = "tramline_retention_oldest_age_seconds";
/// Gauge: 1 when tramline vacuums a PostgreSQL database's tables itself because the
/// server's autovacuum is off, else 0. Label `store`.
pub const VACUUM_STAND_IN: &str = "tramline_vacuum_stand_in";
/// Counter: `VACUUM (ANALYZE)` or `ANALYZE` statements the stand-in ran. Labels `store`,
/// `action` (`vacuum`, `analyze`).
pub const VACUUM_RUNS: &str = "tramline_vacuum_runs_total";

/// Seconds from `created_at_ms` to `now_ms`, never negative (clocks of different hosts).
pub fn age_seconds(now_ms: i64, created_at_ms: i64) -> f64 {
    now_ms.saturating_sub(created_at_ms).max(0) as f64 / 1000.0
}

/// The handles of one consumer group's runtime.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerMetrics {
    pub applied: Counter,
    pub duplicates: Counter,
    pub parked: Counter,
    pub held: Counter,
    pub failed: Counter,
    pub event_age: Histogram,
    pub commit_latency: Histogram,
}

impl ConsumerMetrics {
    /// Registers the handles of group `group`.
    pub fn new(group: &str) -> Self {
        let label = || [("group", group.to_owned())];
        ConsumerMetrics {
            applied: metrics::counter!(CONSUMER_APPLIED, &label()),
            duplicates: metrics::counter!(CONSUMER_DUPLICATES, &label()),
            parked: metrics::counter!(CONSUMER_PARKED, &label()),
            held: metrics::counter!(CONSUMER_HELD, &label()),
            failed: metrics::counter!(CONSUMER_FAILED, &label()),
            event_age: metrics::histogram!(CONSUMER_EVENT_AGE, &label()),
            commit_latency: metrics::histogram!(CONSUMER_COMMIT_LATENCY, &label()),
        }
    }

    /// Observes the age of each record of `batch` in `histogram`, now.
    pub fn observe_ages(histogram: &Histogram, batch: &[Record]) {
        let now = crate::envelope::now_ms();
        for r in batch {
            histogram.record(age_seconds(now, r.envelope.created_at_ms));
        }
    }
}

/// The handles of one relay.
#[derive(Debug, Clone)]
pub(crate) struct RelayMetrics {
    pub published: Counter,
    pub batch_size: Histogram,
    pub backlog: metrics::Gauge,
    pub oldest_age: metrics::Gauge,
    pub leader: metrics::Gauge,
    pub term: metrics::Gauge,
}

impl RelayMetrics {
    /// Registers the handles of outbox `outbox`.
    pub fn new(outbox: &str) -> Self {
        let label = || [("outbox", outbox.to_owned())];
        RelayMetrics {
            published: metrics::counter!(RELAY_PUBLISHED, &label()),
            batch_size: metrics::histogram!(RELAY_BATCH_SIZE, &label()),
            backlog: metrics::gauge!(OUTBOX_BACKLOG, &label()),
            oldest_age: metrics::gauge!(OUTBOX_OLDEST_AGE, &label()),
            leader: metrics::gauge!(RELAY_LEADER, &label()),
            term: metrics::gauge!(RELAY_TERM, &label()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_age_is_in_seconds_and_never_negative() {
        assert_eq!(age_seconds(10_500, 10_000), 0.5);
        assert_eq!(age_seconds(10_000, 10_500), 0.0);
    }
}
