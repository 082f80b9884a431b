//! A metrics recorder for tests, installed once per process, whose values are read without
//! changing them: counters summed over matching series, a gauge's current value, every
//! observation of a histogram.
//!
//! Not `metrics_util`'s `DebuggingRecorder`: its snapshots reset counters and gauges to 0, so
//! "the gauge came back to 0" could not be told from "nothing set it since". Series are
//! matched by name and a subset of their labels, so tests sharing a process (under
//! `cargo test`) stay apart by giving their relays and groups names of their own.

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

/// The registry behind the process's recorder.
struct Readable(Registry<Key, AtomicStorage>);

impl Recorder for Readable {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.0
            .get_or_create_counter(key, |c| Counter::from_arc(Arc::clone(c)))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.0
            .get_or_create_gauge(key, |g| Gauge::from_arc(Arc::clone(g)))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.0
            .get_or_create_histogram(key, |h| Histogram::from_arc(Arc::clone(h)))
    }
}

/// Installs the recorder as the process's global one (once; later calls do nothing). Call it
/// before building what emits: handles registered earlier went to the no-op recorder.
pub fn install() {
    registry();
}

fn registry() -> &'static Registry<Key, AtomicStorage> {
    static RECORDER: OnceLock<&'static Readable> = OnceLock::new();
    let recorder = RECORDER.get_or_init(|| {
        let recorder: &'static Readable = Box::leak(Box::new(Readable(Registry::atomic())));
        metrics::set_global_recorder(recorder)
            .expect("no other global recorder is installed in a test process");
        recorder
    });
    &recorder.0
}

/// Whether `key` is `name` with (at least) `labels`.
fn matches(key: &Key, name: &str, labels: &[(&str, &str)]) -> bool {
    key.name() == name
        && labels
            .iter()
            .all(|(k, v)| key.labels().any(|l| l.key() == *k && l.value() == *v))
}

/// The sum of the counters `name` with `labels` (0 if none was registered).
pub fn counter(name: &str, labels: &[(&str, &str)]) -> u64 {
    registry()
        .get_counter_handles()
        .into_iter()
        .filter(|(key, _)| matches(key, name, labels))
        .map(|(_, c)| c.load(Ordering::SeqCst))
        .sum()
}

/// The value of a gauge `name` with `labels`; `None` if none was registered.
pub fn gauge(name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    registry()
        .get_gauge_handles()
        .into_iter()
        .find(|(key, _)| matches(key, name, labels))
        .map(|(_, g)| f64::from_bits(g.load(Ordering::SeqCst)))
}

/// Every value observed by the histograms `name` with `labels`.
pub fn histogram(name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    registry()
        .get_histogram_handles()
        .into_iter()
        .filter(|(key, _)| matches(key, name, labels))
        .flat_map(|(_, h)| h.data())
        .collect()
}
