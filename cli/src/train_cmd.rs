//! `siren train` and `siren validate`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};
use siren_crds::{
    BackendKind, EpochRecord, JobPhase, JobProgress, TrainingJob, TrainingJobStatus, read_manifest,
};
use siren_driver::{DriverObserver, JobSummary, driver_for, job_span};
use siren_scheduler::Action;
use siren_worker::model::save_model;
use tracing::Instrument;

use crate::{BackendArg, Failure, invalid_input};

fn describe(job: &TrainingJob) -> String {
    let spec = &job.spec;
    let dataset = if let Some(builtin) = spec.dataset.builtin {
        serde_json::to_value(builtin)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default()
    } else if spec.dataset.idx.is_some() {
        "IDX files".into()
    } else if spec.dataset.csv.is_some() {
        "CSV".into()
    } else if spec.dataset.libsvm.is_some() {
        "LibSVM".into()
    } else {
        "synthetic data".into()
    };
    format!(
        "TrainingJob {}: {} on {dataset}, {} functions x {} MB ({:?} scheduler), {:?} backend, {:?} store, at most {} epochs",
        job.metadata.name.as_deref().unwrap_or("?"),
        spec.model.kind.as_str(),
        spec.scheduler.functions,
        spec.scheduler.memory_mb,
        spec.scheduler.policy,
        spec.backend.kind,
        spec.store.kind,
        spec.training.max_epochs,
    )
    .to_lowercase()
}

pub fn validate(file: &Path) -> Result<(), Failure> {
    let job = read_manifest(file).map_err(invalid_input)?;
    println!("{}: valid {}", file.display(), describe(&job));
    Ok(())
}

const HEADER: &str =
    "epoch  functions  memory_mb  train_loss  test_loss  test_acc  epoch_s  cost_usd";

fn row(record: &EpochRecord) -> String {
    format!(
        "{:>5}  {:>9}  {:>9}  {:>10.4}  {:>9.4}  {:>7.2}%  {:>7.2}  {:>8.6}",
        record.epoch,
        record.functions,
        record.memory_mb,
        record.train_loss,
        record.loss,
        record.accuracy * 100.0,
        record.seconds,
        record.cumulative_cost_usd,
    )
}

/// Draws a progress bar per epoch and prints a table row when it ends.
struct Terminal {
    bar: Option<(ProgressBar, Arc<AtomicBool>, std::thread::JoinHandle<()>)>,
    /// The job's forecast after the last epoch, shown beside the next epoch's bar.
    job_eta: Option<String>,
}

/// `job 40%: ~1m 20s and $0.0123 more to the target`, from the status' forecast.
fn job_eta(progress: &JobProgress) -> String {
    let end = match progress.ends_by.as_str() {
        "TargetAccuracyReached" => "the target",
        "BudgetExhausted" => "the budget's end",
        _ => "the epoch limit",
    };
    format!(
        "job {:.0}%: ~{} and ${:.4} more to {end}",
        progress.percent,
        HumanDuration(Duration::try_from_secs_f64(progress.eta_seconds).unwrap_or_default()),
        progress.eta_cost_usd
    )
}

impl Terminal {
    fn stop_bar(&mut self) {
        if let Some((bar, done, poller)) = self.bar.take() {
            done.store(true, Ordering::Relaxed);
            let _ = poller.join();
            bar.finish_and_clear();
        }
    }
}

impl DriverObserver for Terminal {
    fn epoch_started(
        &mut self,
        epoch: u32,
        action: Action,
        samples: u64,
        progress: Arc<AtomicU64>,
    ) {
        self.stop_bar();
        let bar = ProgressBar::new(samples);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:40}] {human_pos}/{human_len} samples, eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let mut message = format!(
            "epoch {} ({} x {} MB)",
            epoch + 1,
            action.functions,
            action.memory_mb
        );
        if let Some(eta) = &self.job_eta {
            message.push_str(&format!(" [{eta}]"));
        }
        bar.set_message(message);
        let done = Arc::new(AtomicBool::new(false));
        let poller = {
            let bar = bar.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(progress.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        self.bar = Some((bar, done, poller));
    }

    fn epoch_finished(&mut self, record: &EpochRecord, status: &TrainingJobStatus) {
        self.stop_bar();
        self.job_eta = status.progress.as_ref().map(job_eta);
        println!("{}", row(record));
        let _ = std::io::stdout().flush();
    }
}

pub fn train(
    file: &Path,
    backend: Option<BackendArg>,
    summary_json: Option<&Path>,
    model_out: Option<&Path>,
) -> Result<(), Failure> {
    let mut job = read_manifest(file).map_err(invalid_input)?;
    match backend {
        Some(BackendArg::Local) => job.spec.backend.kind = BackendKind::Local,
        Some(BackendArg::Process) => job.spec.backend.kind = BackendKind::Process,
        Some(BackendArg::Lambda) => job.spec.backend.kind = BackendKind::Lambda,
        None => {}
    }
    job.spec
        .validate()
        .map_err(|errors| invalid_input(anyhow::anyhow!("{}: {errors}", file.display())))?;
    let name = job.metadata.name.clone().unwrap_or_default();
    println!("{}", describe(&job));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let span = job_span(&job);
    let mut driver = runtime
        .block_on(driver_for(&job).instrument(span.clone()))
        .with_context(|| format!("job {name} cannot start"))?;
    let mut terminal = Terminal {
        bar: None,
        job_eta: None,
    };
    println!("{HEADER}");
    let result = runtime.block_on(driver.run(&mut terminal).instrument(span));
    terminal.stop_bar();
    // Functions in a cluster would idle at a price until deleted.
    if let Err(error) = runtime.block_on(driver.release_functions()) {
        eprintln!("warning: the job's functions could not be removed: {error}");
    }
    let outcome = result.with_context(|| format!("job {name} failed"))?;
    if outcome.status.phase == JobPhase::Failed {
        let why = outcome
            .status
            .condition("Failed")
            .map_or_else(|| "unknown reason".to_string(), |c| c.message.clone());
        return Err(anyhow::anyhow!("job {name} failed: {why}").into());
    }
    let summary = JobSummary::new(&name, &outcome);
    println!(
        "{}: {:?} after {} epoch(s) in {:.1} s: test accuracy {:.2}%, test loss {:.4}, cost ${:.6}",
        name,
        summary.stop_reason,
        summary.epochs,
        summary.seconds,
        summary.final_accuracy * 100.0,
        summary.final_loss,
        summary.cost_usd
    );
    if let Some(path) = summary_json {
        crate::write_json(path, &summary)?;
    }
    if let Some(path) = model_out {
        save_model(path, &outcome.architecture, &outcome.params)?;
        println!("model saved to {}", path.display());
    }
    // A finished job's keys would only take space in a shared store; a failed one keeps them.
    runtime
        .block_on(driver.clean_up())
        .with_context(|| format!("job {name} finished but its store keys could not be removed"))?;
    Ok(())
}
