//! The operator's Prometheus metrics, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub namespace: String,
    pub name: String,
}

/// A failure's condition reason (`BackendFailed`, `TaskFailed`, `KubernetesApi`, ...): a small,
/// fixed set, so one series per reason.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

impl ReasonLabel {
    pub fn of(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

/// 1 ms to 60 s, six bounds a decade (1, 1.5, 2, 3, 5, 7), so that a quantile read from the
/// buckets is within 50% of the truth anywhere from milliseconds to seconds.
const STATUS_WRITE_DELAY_BUCKETS: [f64; 29] = [
    0.001, 0.0015, 0.002, 0.003, 0.005, 0.007, 0.01, 0.015, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2,
    0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub reconcile_failures: Family<ReasonLabel, Counter>,
    pub job_failures: Family<ReasonLabel, Counter>,
    pub epoch_seconds: Histogram,
    /// From an epoch's end (the driver reporting it) to the status write that recorded it.
    pub status_write_delay: Histogram,
    pub functions: Family<JobLabels, Gauge>,
    pub cost_usd: Family<JobLabels, Gauge<f64, AtomicU64>>,
    pub epochs: Family<JobLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("siren");
        let reconciles = Counter::default();
        let reconcile_failures = Family::<ReasonLabel, Counter>::default();
        let job_failures = Family::<ReasonLabel, Counter>::default();
        // 0.25 s to about 17 minutes.
        let epoch_seconds = Histogram::new(exponential_buckets(0.25, 2.0, 13));
        let status_write_delay = Histogram::new(STATUS_WRITE_DELAY_BUCKETS);
        let functions = Family::<JobLabels, Gauge>::default();
        let cost_usd = Family::<JobLabels, Gauge<f64, AtomicU64>>::default();
        let epochs = Family::<JobLabels, Counter>::default();
        registry.register(
            "reconciles",
            "TrainingJob reconciliations",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "TrainingJob reconciliations that returned an error, by reason",
            reconcile_failures.clone(),
        );
        registry.register(
            "job_failures",
            "TrainingJob runs that ended Failed, by condition reason",
            job_failures.clone(),
        );
        registry.register(
            "epoch_duration_seconds",
            "Wall time of finished epochs",
            epoch_seconds.clone(),
        );
        registry.register(
            "status_write_delay_seconds",
            "Time from an epoch's end to the status write that recorded it",
            status_write_delay.clone(),
        );
        registry.register(
            "functions_in_use",
            "Functions of each job's current epoch",
            functions.clone(),
        );
        registry.register(
            "job_cost_usd",
            "Cost spent so far per job",
            cost_usd.clone(),
        );
        registry.register(
            "epochs_finished",
            "Epochs finished per job by this operator process",
            epochs.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_failures,
            job_failures,
            epoch_seconds,
            status_write_delay,
            functions,
            cost_usd,
            epochs,
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    /// A deleted job's series go away with it.
    pub fn forget(&self, job: &JobLabels) {
        self.functions.remove(job);
        self.cost_usd.remove(job);
        self.epochs.remove(job);
    }
}
