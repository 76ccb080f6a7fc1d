//! The TrainingJob controller: reconciles each job towards its spec while the job's epochs run in
//! their own tasks ([`run`]). Restart-safe because everything a run needs to continue is in the
//! job's status (finished epochs, spend, history) and in the store's checkpoints.

pub mod kueue;
pub mod leader;
pub mod metrics;
pub mod probes;
pub mod report;
pub mod run;
pub mod store_secret;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::{self, Controller};
use kube::runtime::events::{EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizing, finalizer};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use siren_crds::fingerprint::MUTABLE_FIELDS;
use siren_crds::{JobPhase, StoreKind, StoreRef, TrainingJob, TrainingJobStatus, condition_type};
use siren_store::{StoreError, connect_store};
use thiserror::Error;
use tokio::sync::Mutex;

use self::kueue::{Admission, KUEUE_RECHECK};
use self::metrics::{JobLabels, Metrics, ReasonLabel};
use self::report::{JobReporter, MANAGER};
use self::run::{JobRun, RunOptions};
use self::store_secret::store_credentials;
use siren_driver::backend::{BackendError, release_functions};
use siren_driver::job_span::job_span;

/// Holds a job until its functions and store keys are gone.
pub const FINALIZER: &str = "siren.dev/cleanup";

/// How often a running job is looked at even when nothing about it changes.
const RUNNING_RECHECK: Duration = Duration::from_secs(30);

#[derive(Debug, Error)]
pub enum ControllerError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("removing the job's functions: {0}")]
    ReleaseFunctions(#[from] BackendError),
    #[error("removing the job's store keys: {0}")]
    ClearStore(#[from] StoreError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("Kueue: {0}")]
    Kueue(String),
}

impl ControllerError {
    /// The `reason` label of `siren_reconcile_failures_total`: the condition reason of the
    /// same failure in a job's run, where there is one.
    pub fn label(&self) -> &'static str {
        match self {
            ControllerError::Kube(_) => "KubernetesApi",
            ControllerError::ReleaseFunctions(error) => error.reason(),
            ControllerError::ClearStore(error) => error.reason(),
            ControllerError::Finalizer(_) => "Finalizer",
            ControllerError::Kueue(_) => "KueueUnavailable",
        }
    }
}

pub struct Context {
    client: Client,
    recorder: Recorder,
    /// Runs in this operator process, by job uid.
    runs: Mutex<HashMap<String, JobRun>>,
    metrics: Arc<Metrics>,
    options: RunOptions,
}

impl Context {
    pub fn new(client: Client, metrics: Arc<Metrics>, options: RunOptions) -> Self {
        let reporter = Reporter {
            controller: MANAGER.to_string(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            runs: Mutex::new(HashMap::new()),
            metrics,
            options,
        }
    }
}

impl Context {
    /// Stops every run of this process (their functions with them), e.g. before giving up the
    /// leadership: the next leader resumes them from their checkpoints.
    pub async fn stop_runs(&self) {
        let runs: Vec<JobRun> = self.runs.lock().await.drain().map(|(_, run)| run).collect();
        for run in runs {
            run.abort().await;
        }
    }
}

/// Watches TrainingJobs (in `namespace`, or everywhere) until a termination signal.
pub async fn run_controller(
    context: Arc<Context>,
    namespace: Option<String>,
    ready: Arc<AtomicBool>,
) {
    let jobs: Api<TrainingJob> = match &namespace {
        Some(namespace) => Api::namespaced(context.client.clone(), namespace),
        None => Api::all(context.client.clone()),
    };
    ready.store(true, Ordering::Relaxed);
    Controller::new(jobs, watcher::Config::default().any_semantic())
        .shutdown_on_signal()
        .run(reconcile, error_policy, Arc::clone(&context))
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "reconcile did not finish");
            }
        })
        .await;
    ready.store(false, Ordering::Relaxed);
    tracing::info!(
        "controller stopped; runs resume from their checkpoints when an operator starts again"
    );
}

#[tracing::instrument(
    skip_all,
    fields(
        namespace = job.namespace().as_deref().unwrap_or("default"),
        job = %job.name_any(),
    )
)]
async fn reconcile(
    job: Arc<TrainingJob>,
    context: Arc<Context>,
) -> Result<controller::Action, ControllerError> {
    context.metrics.reconciles.inc();
    // Another controller's job (spec.managedBy): not even a finalizer of ours goes on it. One
    // that already has ours was taken on before, and stays ours to run and clean up (the field's
    // immutability is not enforced where the API server predates CEL rules).
    if !job.spec.is_managed_by_siren() && !job.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(controller::Action::await_change());
    }
    let namespace = job.namespace().unwrap_or_else(|| "default".to_string());
    let api: Api<TrainingJob> = Api::namespaced(context.client.clone(), &namespace);
    finalizer(&api, FINALIZER, job, |event| async {
        match event {
            Finalizing::Apply(job) => apply(&job, &api, &context).await,
            Finalizing::Cleanup(job) => clean_up(&job, &context).await,
        }
    })
    .await
    .map_err(|error| ControllerError::Finalizer(error.to_string()))
}

fn error_policy(
    job: Arc<TrainingJob>,
    error: &ControllerError,
    context: Arc<Context>,
) -> controller::Action {
    context
        .metrics
        .reconcile_failures
        .get_or_create(&ReasonLabel::of(error.label()))
        .inc();
    let _job = job_span(&job).entered();
    tracing::warn!(%error, "reconcile failed; retrying");
    controller::Action::requeue(Duration::from_secs(10))
}

async fn apply(
    job: &TrainingJob,
    api: &Api<TrainingJob>,
    context: &Context,
) -> Result<controller::Action, ControllerError> {
    let uid = job.uid().unwrap_or_default();
    let reporter = JobReporter::new(api.clone(), context.recorder.clone(), job);
    let mut status = job.status.clone().unwrap_or_default();
    // An invalid job gets no Workload (Kueue might refuse it, and the job must fail InvalidSpec).
    let admission = if status.phase.is_finished() || job.spec.validate().is_err() {
        Admission::NotQueued
    } else {
        match kueue::admission(&context.client, job).await {
            Ok(admission) => admission,
            Err(ControllerError::Kueue(message)) => {
                let run = context.runs.lock().await.remove(&uid);
                if let Some(run) = run {
                    status = newest(status, run.abort().await);
                }
                return settle(
                    job,
                    status,
                    &reporter,
                    (JobPhase::Failed, "KueueUnavailable", "Queue"),
                    &message,
                )
                .await;
            }
            Err(error) => return Err(error),
        }
    };
    // A job under Kueue is looked at often: an admission or an eviction is only seen by polling.
    let recheck_every = if admission == Admission::NotQueued {
        RUNNING_RECHECK
    } else {
        KUEUE_RECHECK
    };
    let held = matches!(admission, Admission::Waiting(_) | Admission::Evicted(_));
    let changed = job.spec.changed_since(&status.spec_fingerprint);
    if !changed.is_empty() && !status.phase.is_finished() {
        let run = context.runs.lock().await.remove(&uid);
        if let Some(run) = run {
            status = newest(status, run.abort().await);
        }
        let message = format!(
            "{} changed after the job started, and its checkpoints belong to the old values; only {MUTABLE_FIELDS} may change mid-run. Delete the job and create it again to train with the new spec",
            changed.join(", ")
        );
        return settle(
            job,
            status,
            &reporter,
            (JobPhase::Failed, "SpecChanged", "Validate"),
            &message,
        )
        .await;
    }
    {
        let mut runs = context.runs.lock().await;
        if let Some(run) = runs.get(&uid) {
            match run.ended() {
                None => match deadline_left(job, &status) {
                    Some(left) if left.is_zero() => {
                        if let Some(run) = runs.remove(&uid) {
                            status = newest(status, run.abort().await);
                        }
                        drop(runs);
                        return fail_past_deadline(job, status, &reporter).await;
                    }
                    left => {
                        run.update(job, held);
                        return Ok(controller::Action::requeue(
                            left.map_or(recheck_every, |left| left.min(recheck_every)),
                        ));
                    }
                },
                Some(_) if run.crashed() => {
                    runs.remove(&uid);
                    drop(runs);
                    let message = "the job's run stopped unexpectedly (see the operator's log)";
                    return settle(
                        job,
                        status,
                        &reporter,
                        (JobPhase::Failed, "RunCrashed", "Fail"),
                        message,
                    )
                    .await;
                }
                // The watch has not yet delivered the run's last status (or writing it failed):
                // acting on the older one would start the job again. Writing it again is
                // harmless and ends the wait if the first write was lost.
                Some(phase) if phase != status.phase => {
                    if let Some(last) = run.final_status() {
                        reporter.status(&last).await?;
                    }
                    return Ok(controller::Action::requeue(Duration::from_secs(1)));
                }
                Some(_) => {
                    runs.remove(&uid);
                }
            }
        }
    }
    if status.phase.is_finished() {
        if kueue::queue_of(job).is_some() {
            let message = status
                .condition(if status.phase == JobPhase::Succeeded {
                    "Succeeded"
                } else {
                    "Failed"
                })
                .map(|c| c.message.clone())
                .unwrap_or_default();
            // Best effort: a Workload that cannot be marked must not keep the job from expiring.
            if let Err(error) = kueue::finish(
                &context.client,
                job,
                status.phase == JobPhase::Succeeded,
                &message,
            )
            .await
            {
                tracing::warn!(%error, "cannot mark the job's Workload Finished");
            }
        }
        return expire(job, &status, api).await;
    }
    if let Err(errors) = job.spec.validate() {
        // The schema cannot express every rule (and a 1.20 API server enforces no CEL rules).
        let message = errors.to_string();
        return settle(
            job,
            status,
            &reporter,
            (JobPhase::Failed, "InvalidSpec", "Validate"),
            &message,
        )
        .await;
    }
    if job.spec.suspend {
        // A queued job suspended by its owner still answers an eviction, or Kueue waits for it.
        if let Admission::Evicted(why) = &admission {
            kueue::release_quota(&context.client, job, why).await?;
        }
        if status.phase != JobPhase::Suspended {
            let message = format!(
                "suspended after {} epoch(s); clear spec.suspend to resume",
                status.epoch
            );
            return settle(
                job,
                status,
                &reporter,
                (JobPhase::Suspended, "Suspended", "Suspend"),
                &message,
            )
            .await;
        }
        return Ok(match admission {
            Admission::NotQueued => controller::Action::await_change(),
            _ => controller::Action::requeue(KUEUE_RECHECK),
        });
    }
    if let Admission::Waiting(why) | Admission::Evicted(why) = &admission {
        let reason = if matches!(admission, Admission::Evicted(_)) {
            // Stopped at the end of its epoch; Kueue gets the quota back to queue it again.
            kueue::release_quota(&context.client, job, why).await?;
            "Preempted"
        } else if status
            .condition(condition_type::SUSPENDED)
            .is_some_and(|c| c.reason == "Preempted")
        {
            "Preempted"
        } else {
            "AwaitingAdmission"
        };
        let settled = status.phase == JobPhase::Suspended
            && status
                .condition(condition_type::SUSPENDED)
                .is_some_and(|c| c.reason == reason && c.message == *why);
        if !settled {
            settle(
                job,
                status,
                &reporter,
                (JobPhase::Suspended, reason, "Queue"),
                why,
            )
            .await?;
        }
        return Ok(controller::Action::requeue(KUEUE_RECHECK));
    }

    let (reason, note) = if status.epoch > 0 {
        (
            "Resumed",
            format!(
                "continuing after epoch {} from its checkpoint (${:.6} spent)",
                status.epoch, status.cost_usd
            ),
        )
    } else {
        ("Started", "training from the initial model".to_string())
    };
    if status.phase == JobPhase::Pending && status.conditions.is_empty() {
        status.observed_generation = job.metadata.generation;
        status.enter_phase(JobPhase::Pending, reason, &note);
    }
    if status.start_time.is_none() {
        status.start_time = Some(Time(Timestamp::now()));
    }
    if status.spec_fingerprint.is_empty() {
        status.spec_fingerprint = job.spec.fingerprint();
    }
    let deadline = deadline_left(job, &status);
    if deadline.is_some_and(|left| left.is_zero()) {
        // E.g. an operator that was down past the deadline: the job is not started again.
        return fail_past_deadline(job, status, &reporter).await;
    }
    let recheck = deadline.map_or(recheck_every, |left| left.min(recheck_every));
    if admission == Admission::Admitted {
        kueue::mark_started(&context.client, job).await?;
    }
    let run = JobRun::start(
        job,
        status,
        reporter.clone(),
        &context.options,
        Arc::clone(&context.metrics),
        context.client.clone(),
    );
    context.runs.lock().await.insert(uid, run);
    tracing::info!(job = %job.name_any(), reason, %note);
    reporter.event(EventType::Normal, reason, "Run", note).await;
    Ok(controller::Action::requeue(recheck))
}

/// The run's own newest status when it is at least as far as the watch cache's copy.
fn newest(cached: TrainingJobStatus, written: Option<TrainingJobStatus>) -> TrainingJobStatus {
    match written {
        Some(written) if written.epoch >= cached.epoch => written,
        _ => cached,
    }
}

/// Moves the job to a phase the operator decides (not its run), writes the status and records
/// the decision as an event.
async fn settle(
    job: &TrainingJob,
    mut status: TrainingJobStatus,
    reporter: &JobReporter,
    (phase, reason, action): (JobPhase, &str, &str),
    message: &str,
) -> Result<controller::Action, ControllerError> {
    status.observed_generation = job.metadata.generation;
    status.enter_phase(phase, reason, message);
    reporter.status(&status).await?;
    let type_ = if phase == JobPhase::Failed {
        EventType::Warning
    } else {
        EventType::Normal
    };
    reporter
        .event(type_, reason, action, message.to_string())
        .await;
    Ok(controller::Action::await_change())
}

/// What is left of `seconds` counted from `since` (zero once they have passed).
fn left_of(seconds: u64, since: &Time) -> Duration {
    let elapsed_ms = Timestamp::now().as_millisecond() - since.0.as_millisecond();
    let left_ms = i64::try_from(seconds.saturating_mul(1000))
        .unwrap_or(i64::MAX)
        .saturating_sub(elapsed_ms);
    Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

/// Time left before `spec.activeDeadlineSeconds`, counted from `status.startTime`.
fn deadline_left(job: &TrainingJob, status: &TrainingJobStatus) -> Option<Duration> {
    Some(left_of(
        job.spec.active_deadline_seconds?,
        status.start_time.as_ref()?,
    ))
}

async fn fail_past_deadline(
    job: &TrainingJob,
    status: TrainingJobStatus,
    reporter: &JobReporter,
) -> Result<controller::Action, ControllerError> {
    let message = format!(
        "ran past spec.activeDeadlineSeconds ({} s) and was stopped after {} finished epoch(s)",
        job.spec.active_deadline_seconds.unwrap_or(0),
        status.epoch
    );
    settle(
        job,
        status,
        reporter,
        (JobPhase::Failed, "DeadlineExceeded", "Fail"),
        &message,
    )
    .await
}

/// Deletes a finished job `spec.ttlSecondsAfterFinished` after its completion; the finalizer then
/// removes its store keys.
async fn expire(
    job: &TrainingJob,
    status: &TrainingJobStatus,
    api: &Api<TrainingJob>,
) -> Result<controller::Action, ControllerError> {
    let (Some(ttl), Some(completed)) =
        (job.spec.ttl_seconds_after_finished, &status.completion_time)
    else {
        return Ok(controller::Action::await_change());
    };
    let left = left_of(ttl, completed);
    if !left.is_zero() {
        return Ok(controller::Action::requeue(left));
    }
    tracing::info!(job = %job.name_any(), ttl, "deleting the finished job (ttlSecondsAfterFinished)");
    // Only this job: a stale cache must not delete a new job created under the same name.
    let only_this_job = DeleteParams {
        preconditions: Some(Preconditions {
            uid: job.uid(),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match api.delete(&job.name_any(), &only_this_job).await {
        Ok(_) => {}
        Err(kube::Error::Api(response)) if response.code == 404 || response.code == 409 => {}
        Err(error) => return Err(error.into()),
    }
    Ok(controller::Action::await_change())
}

/// The job is being deleted: its run stops, its functions (a Knative Service, an OpenFaaS
/// function) and its store keys go.
async fn clean_up(
    job: &TrainingJob,
    context: &Context,
) -> Result<controller::Action, ControllerError> {
    let uid = job.uid().unwrap_or_default();
    let run = context.runs.lock().await.remove(&uid);
    if let Some(run) = run {
        run.abort().await;
    }
    release_functions(job, &context.options.backend(context.client.clone())).await?;
    if job.spec.store.kind != StoreKind::Memory {
        match store_credentials(&context.client, job).await {
            Ok(credentials) => {
                let store = connect_store(
                    &StoreRef::from_spec(&job.spec.store),
                    &job.name_any(),
                    &credentials,
                )
                .await?;
                store.clear().await?;
            }
            // Its Secret went first (a namespace being deleted): no retry brings it back, and
            // holding the job's deletion hostage would not either.
            Err(error) => {
                tracing::warn!(job = %job.name_any(), %error, "cannot clear the job's store keys");
            }
        }
    }
    context.metrics.forget(&JobLabels {
        namespace: job.namespace().unwrap_or_default(),
        name: job.name_any(),
    });
    tracing::info!(job = %job.name_any(), "cleaned up");
    Ok(controller::Action::await_change())
}

#[cfg(test)]
mod tests;
