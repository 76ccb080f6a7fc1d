//! One job's run inside the operator: the driver in its own task, so that a reconcile never waits
//! for an epoch, and a publisher that carries the driver's progress to the API server.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::ResourceExt;
use kube::runtime::events::EventType;
use siren_crds::{EpochRecord, JobPhase, TrainingJob, TrainingJobStatus, condition_type};
use siren_scheduler::Action;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use siren_driver::backend::{BackendOptions, release_functions};
use siren_driver::driver::{DriverObserver, RunControl};
use siren_driver::job_span::job_span;
use siren_driver::{JobDriver, ResolveError, ResolveOptions, resolve};

use crate::metrics::{JobLabels, Metrics, ReasonLabel};
use crate::report::JobReporter;
use crate::store_secret::store_credentials;

/// How the operator runs jobs' functions.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Every job's functions run as local `siren-worker` processes, whatever its backend: the
    /// whole operator then works against a bare API server on a laptop.
    pub dev_process_functions: bool,
}

impl RunOptions {
    /// How this operator reaches jobs' functions: through its own client.
    pub fn backend(&self, client: kube::Client) -> BackendOptions {
        BackendOptions {
            process_functions: self.dev_process_functions,
            kube: Some(client),
        }
    }
}

/// A status the run's task shares with the reconciler.
type SharedStatus = Arc<Mutex<Option<TrainingJobStatus>>>;

pub struct JobRun {
    control: watch::Sender<RunControl>,
    generation: Arc<AtomicI64>,
    /// The status the run ended with, once written (or attempted).
    ended: SharedStatus,
    /// The newest status the run wrote: fresher than a watch cache's copy.
    written: SharedStatus,
    task: JoinHandle<()>,
}

enum Progress {
    Status(Box<TrainingJobStatus>),
    Decision {
        epoch: u32,
        action: Action,
    },
    /// A finished epoch, and when the driver reported it.
    Finished(EpochRecord, Instant),
    EpochFailed(String),
}

impl JobRun {
    /// Starts (or, when `status` records finished epochs, resumes) the job.
    pub fn start(
        job: &TrainingJob,
        status: TrainingJobStatus,
        reporter: JobReporter,
        options: &RunOptions,
        metrics: Arc<Metrics>,
        client: kube::Client,
    ) -> Self {
        let (control, control_rx) = watch::channel(RunControl::from_spec(&job.spec));
        let generation = Arc::new(AtomicI64::new(job.metadata.generation.unwrap_or(0)));
        let ended = Arc::new(Mutex::new(None));
        let written = Arc::new(Mutex::new(None));
        let task = tokio::spawn(
            run(
                job.clone(),
                status,
                control_rx,
                Arc::clone(&generation),
                (Arc::clone(&ended), Arc::clone(&written)),
                reporter,
                options.clone(),
                metrics,
                client,
            )
            .instrument(job_span(job)),
        );
        Self {
            control,
            generation,
            ended,
            written,
            task,
        }
    }

    /// Budget, epoch limit and suspension reach the driver before its next epoch. `held`: Kueue
    /// no longer admits the job, which then stops as a suspended one does.
    pub fn update(&self, job: &TrainingJob, held: bool) {
        self.generation
            .store(job.metadata.generation.unwrap_or(0), Ordering::Relaxed);
        let mut control = RunControl::from_spec(&job.spec);
        control.suspend |= held;
        self.control.send_if_modified(|current| {
            let changed = *current != control;
            *current = control;
            changed
        });
    }

    /// The phase the run ended in, once its last status has been written. A run whose task
    /// ended without one (it panicked) counts as Failed, so the job is not left Running.
    pub fn ended(&self) -> Option<JobPhase> {
        let recorded = self.final_status().map(|status| status.phase);
        match recorded {
            None if self.task.is_finished() => Some(JobPhase::Failed),
            recorded => recorded,
        }
    }

    /// Whether the run ended without recording how (its task panicked).
    pub fn crashed(&self) -> bool {
        self.task.is_finished() && self.final_status().is_none()
    }

    pub fn final_status(&self) -> Option<TrainingJobStatus> {
        self.ended.lock().ok().and_then(|status| status.clone())
    }

    /// Stops the run at once (its functions stop with it) and returns the newest status it wrote,
    /// so that a verdict on the job starts from every epoch it recorded.
    pub async fn abort(self) -> Option<TrainingJobStatus> {
        self.task.abort();
        let _ = self.task.await;
        self.written.lock().ok().and_then(|status| status.clone())
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    job: TrainingJob,
    status: TrainingJobStatus,
    control: watch::Receiver<RunControl>,
    generation: Arc<AtomicI64>,
    (ended, written): (SharedStatus, SharedStatus),
    reporter: JobReporter,
    options: RunOptions,
    metrics: Arc<Metrics>,
    client: kube::Client,
) {
    let labels = JobLabels {
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
    };
    let (progress, progress_rx) = mpsc::unbounded_channel();
    let (recorded, recorded_rx) = watch::channel(status.epoch);
    let backend_options = options.backend(client.clone());
    let driving = async {
        let mut observer = Publisher { progress };
        let mut status = status;
        status.enter_phase(JobPhase::Initializing, "LoadingData", "loading the dataset");
        observer.status_changed(&status);
        let resolved = match store_credentials(&client, &job).await {
            Ok(store_credentials) => {
                let resolve_options = ResolveOptions {
                    backend: backend_options.clone(),
                    store_credentials,
                    ..ResolveOptions::default()
                };
                resolve(&job, resolve_options).await
            }
            Err(error) => Err(ResolveError::Store(error)),
        };
        let last_status = match resolved {
            Ok(resolved) => {
                let mut driver = JobDriver::new(resolved)
                    .resuming(status)
                    .controlled_by(control)
                    .waiting_for_records(recorded_rx);
                if let Err(error) = driver.run(&mut observer).await {
                    tracing::warn!(%error, "the job failed");
                }
                // A finished or suspended job's pods would idle at a price until the job is
                // deleted; a resumed job creates its functions again.
                if let Err(error) = driver.release_functions().await {
                    tracing::warn!(%error, "cannot remove the job's functions");
                }
                driver.status().clone()
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start the job");
                // Functions of an earlier run may still be there.
                if let Err(error) = release_functions(&job, &backend_options).await {
                    tracing::warn!(%error, "cannot remove the job's functions");
                }
                status.enter_phase(JobPhase::Failed, error.reason(), &error.to_string());
                status
            }
        };
        // Closes the channel: the publisher writes what is queued and ends.
        drop(observer);
        last_status
    };
    // In this task rather than a spawned one: aborting the run (deadline, deletion) stops its
    // status writes with it, so none can land after the operator's own.
    let publishing = publish(
        progress_rx,
        recorded,
        reporter.clone(),
        Arc::clone(&generation),
        Arc::clone(&metrics),
        labels.clone(),
        written,
    );
    let (mut last_status, ()) = tokio::join!(driving, publishing);

    last_status.observed_generation = Some(generation.load(Ordering::Relaxed));
    write_status(&reporter, &last_status).await;
    let condition = match last_status.phase {
        JobPhase::Succeeded => condition_type::SUCCEEDED,
        JobPhase::Failed => condition_type::FAILED,
        JobPhase::Suspended => condition_type::SUSPENDED,
        _ => condition_type::RUNNING,
    };
    let (reason, message) = last_status
        .condition(condition)
        .map(|c| (c.reason.clone(), c.message.clone()))
        .unwrap_or_default();
    let type_ = if last_status.phase == JobPhase::Failed {
        metrics
            .job_failures
            .get_or_create(&ReasonLabel::of(&reason))
            .inc();
        EventType::Warning
    } else {
        EventType::Normal
    };
    reporter
        .event(type_, &reason, phase_action(last_status.phase), message)
        .await;
    metrics.functions.get_or_create(&labels).set(0);
    if let Ok(mut ended) = ended.lock() {
        *ended = Some(last_status);
    }
}

fn phase_action(phase: JobPhase) -> &'static str {
    match phase {
        JobPhase::Succeeded => "Succeed",
        JobPhase::Failed => "Fail",
        JobPhase::Suspended => "Suspend",
        _ => "Run",
    }
}

struct Publisher {
    progress: mpsc::UnboundedSender<Progress>,
}

impl DriverObserver for Publisher {
    fn epoch_started(
        &mut self,
        epoch: u32,
        action: Action,
        _samples: u64,
        _progress: Arc<std::sync::atomic::AtomicU64>,
    ) {
        let _ = self.progress.send(Progress::Decision { epoch, action });
    }

    fn epoch_finished(&mut self, record: &EpochRecord, status: &TrainingJobStatus) {
        let _ = self
            .progress
            .send(Progress::Finished(record.clone(), Instant::now()));
        let _ = self
            .progress
            .send(Progress::Status(Box::new(status.clone())));
    }

    fn status_changed(&mut self, status: &TrainingJobStatus) {
        let _ = self
            .progress
            .send(Progress::Status(Box::new(status.clone())));
    }

    fn epoch_failed(&mut self, _epoch: u32, message: &str) {
        let _ = self
            .progress
            .send(Progress::EpochFailed(message.to_string()));
    }
}

/// Patches the newest status (older ones queued behind it are skipped) and records decisions.
async fn publish(
    mut progress: mpsc::UnboundedReceiver<Progress>,
    recorded: watch::Sender<u32>,
    reporter: JobReporter,
    generation: Arc<AtomicI64>,
    metrics: Arc<Metrics>,
    labels: JobLabels,
    written: SharedStatus,
) {
    // Finished epochs no written status has recorded yet, with when they ended.
    let mut unwritten: Vec<(u32, Instant)> = Vec::new();
    while let Some(first) = progress.recv().await {
        let mut batch = vec![first];
        while let Ok(next) = progress.try_recv() {
            batch.push(next);
        }
        let mut newest = None;
        for item in batch {
            match item {
                Progress::Status(status) => newest = Some(*status),
                Progress::Decision { epoch, action } => {
                    metrics
                        .functions
                        .get_or_create(&labels)
                        .set(i64::from(action.functions));
                    reporter
                        .event(
                            EventType::Normal,
                            "Scheduled",
                            "Schedule",
                            format!(
                                "epoch {}: {} functions of {} MB",
                                epoch + 1,
                                action.functions,
                                action.memory_mb
                            ),
                        )
                        .await;
                }
                Progress::EpochFailed(message) => {
                    reporter
                        .event(EventType::Warning, "EpochFailed", "RunEpoch", message)
                        .await;
                }
                Progress::Finished(record, ended) => {
                    unwritten.push((record.epoch, ended));
                    metrics.epoch_seconds.observe(record.seconds);
                    metrics.epochs.get_or_create(&labels).inc();
                    metrics
                        .cost_usd
                        .get_or_create(&labels)
                        .set(record.cumulative_cost_usd);
                }
            }
        }
        if let Some(mut status) = newest {
            status.observed_generation = Some(generation.load(Ordering::Relaxed));
            if write_status(&reporter, &status).await {
                let now = Instant::now();
                unwritten.retain(|&(epoch, ended)| {
                    let covered = epoch <= status.epoch;
                    if covered {
                        metrics
                            .status_write_delay
                            .observe(now.duration_since(ended).as_secs_f64());
                    }
                    !covered
                });
                recorded.send_replace(status.epoch);
                if let Ok(mut written) = written.lock() {
                    *written = Some(status);
                }
            }
        }
    }
}

/// A status write is retried for a while: the API server may be briefly unavailable. A job that
/// was deleted meanwhile has no status to write. Whether the status was written.
async fn write_status(reporter: &JobReporter, status: &TrainingJobStatus) -> bool {
    let mut delay = Duration::from_millis(200);
    for attempt in 1..=8 {
        match reporter.status(status).await {
            Ok(()) => return true,
            Err(kube::Error::Api(response)) if response.code == 404 => return false,
            Err(error) => {
                tracing::warn!(attempt, %error, "cannot write the job's status");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
    false
}
