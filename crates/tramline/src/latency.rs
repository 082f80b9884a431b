//! The commit → view latency of a run, captured from the consumer's own histogram
//! ([`CONSUMER_COMMIT_LATENCY`]): a metrics recorder that keeps that one histogram of one
//! group, every sample, in fixed buckets (0.1 ms wide up to 1 s, 1 ms wide up to 2 min), and
//! drops every other metric. `tramline demo` installs it; `tramline bench e2e` reads the
//! figures from the demo's report.

use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};
use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tramline_core::telemetry::CONSUMER_COMMIT_LATENCY;

/// Buckets of 0.1 ms below this many tenths (1 s).
const FINE: usize = 10_000;
/// Buckets of 1 ms from 1 s up to 2 min; slower samples land in the last.
const COARSE: usize = 119_000;

/// Every sample of one latency histogram, bucketed.
#[derive(Debug)]
pub struct Samples {
    buckets: Box<[AtomicU64]>,
    max_us: AtomicU64,
}

impl Default for Samples {
    fn default() -> Self {
        Samples {
            buckets: (0..FINE + COARSE).map(|_| AtomicU64::new(0)).collect(),
            max_us: AtomicU64::new(0),
        }
    }
}

/// The bucket of `ms`.
fn bucket(ms: f64) -> usize {
    let tenths = (ms.max(0.0) * 10.0) as usize;
    if tenths < FINE {
        tenths
    } else {
        (FINE + (ms as usize).saturating_sub(1000)).min(FINE + COARSE - 1)
    }
}

/// The upper bound (ms) of bucket `i`.
fn upper_ms(i: usize) -> f64 {
    if i < FINE {
        (i + 1) as f64 / 10.0
    } else {
        (i - FINE + 1001) as f64
    }
}

impl HistogramFn for Samples {
    fn record(&self, seconds: f64) {
        let ms = seconds * 1000.0;
        self.buckets[bucket(ms)].fetch_add(1, Ordering::Relaxed);
        self.max_us
            .fetch_max((ms * 1000.0) as u64, Ordering::Relaxed);
    }
}

/// Percentiles of a latency distribution, in milliseconds (each the upper bound of its
/// bucket), with its CDF for a chart.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// The slowest sample.
    pub max: f64,
    /// `[ms, fraction of samples at or below]`, ascending.
    pub cdf: Vec<[f64; 2]>,
}

/// Fractions the CDF is given at.
const CDF_AT: [f64; 22] = [
    0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99,
    0.995, 0.998, 0.999, 0.9999, 1.0,
];

impl Samples {
    /// The distribution so far.
    pub fn latency(&self) -> Latency {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = counts.iter().sum();
        let max = self.max_us.load(Ordering::Relaxed) as f64 / 1000.0;
        // The bucket bound at rank `q × count` (nearest rank), never above the maximum seen.
        let at = |q: f64| {
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count.max(1));
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return upper_ms(i).min(max);
                }
            }
            max
        };
        if count == 0 {
            return Latency::default();
        }
        Latency {
            count,
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max,
            cdf: CDF_AT.iter().map(|&q| [at(q), q]).collect(),
        }
    }
}

impl Latency {
    /// The distribution of samples `sorted` (ms, ascending), each percentile a sample
    /// (nearest rank).
    pub fn from_sorted(sorted: &[f64]) -> Latency {
        let Some(&max) = sorted.last() else {
            return Latency::default();
        };
        let at = |q: f64| {
            let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
            sorted[rank - 1]
        };
        Latency {
            count: sorted.len() as u64,
            p50: at(0.5),
            p95: at(0.95),
            p99: at(0.99),
            max,
            cdf: CDF_AT.iter().map(|&q| [at(q), q]).collect(),
        }
    }
}

/// A recorder keeping [`CONSUMER_COMMIT_LATENCY`] of one consumer group.
#[derive(Debug)]
pub struct CommitLatency {
    group: String,
    samples: Arc<Samples>,
}

impl CommitLatency {
    /// Installs the recorder for group `group` as the process's; its samples.
    pub fn install(group: &str) -> Result<Arc<Samples>, metrics::SetRecorderError<CommitLatency>> {
        let samples = Arc::new(Samples::default());
        metrics::set_global_recorder(CommitLatency {
            group: group.to_owned(),
            samples: Arc::clone(&samples),
        })?;
        Ok(samples)
    }
}

impl metrics::Recorder for CommitLatency {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
        Counter::noop()
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let ours = key.name() == CONSUMER_COMMIT_LATENCY
            && key
                .labels()
                .any(|l| l.key() == "group" && l.value() == self.group);
        match ours {
            true => Histogram::from_arc(Arc::clone(&self.samples)),
            false => Histogram::noop(),
        }
    }
}

/// The process's peak resident set (VmHWM) in MiB, if the system says.
pub fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_bounds_never_above_the_maximum() {
        let s = Samples::default();
        for ms in 1..=100 {
            s.record(ms as f64 / 1000.0);
        }
        let l = s.latency();
        assert_eq!(l.count, 100);
        assert!((l.p50 - 50.1).abs() < 1e-9, "{l:?}");
        assert!((l.p99 - 99.1).abs() < 1e-9, "{l:?}");
        assert_eq!(l.max, 100.0);
        assert_eq!(l.cdf.last().map(|p| p[0]), Some(100.0));
        assert!(l.cdf.windows(2).all(|w| w[0][0] <= w[1][0]));
    }

    #[test]
    fn sorted_samples_give_nearest_rank_percentiles() {
        let sorted: Vec<f64> = (1..=200).map(f64::from).collect();
        let l = Latency::from_sorted(&sorted);
        assert_eq!(
            (l.count, l.p50, l.p95, l.p99, l.max),
            (200, 100.0, 190.0, 198.0, 200.0)
        );
        assert_eq!(Latency::from_sorted(&[]).count, 0);
    }

    #[test]
    fn slow_samples_are_kept_in_millisecond_buckets() {
        let s = Samples::default();
        s.record(2.5);
        s.record(1_000.0);
        let l = s.latency();
        assert_eq!(l.p50, 2_501.0);
        assert_eq!(l.max, 1_000_000.0);
        assert_eq!(bucket(1e9), FINE + COARSE - 1);
        assert_eq!(Samples::default().latency().count, 0);
    }
}
