//! `siren calibrate`: measure a job on this machine, write the simulator's profile, and show how
//! close the simulator's epoch times are to real ones.

use std::path::PathBuf;

use anyhow::Context;
use serde::Serialize;
use siren_crds::read_manifest;
use siren_driver::calibrate::{
    CalibrationPlan, FidelityRow, Measurements, calibrate, check_fidelity,
};
use siren_scheduler::{Action, CalibratedProfile};

use crate::{Failure, invalid_input, write_json};

#[derive(clap::Args)]
pub struct CalibrateArgs {
    /// The TrainingJob whose model and data to measure.
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// Where to write the profile (`spec.scheduler.profileFile` reads it).
    #[arg(long)]
    out: PathBuf,
    /// Functions of the measured epochs (cold starts, stragglers).
    #[arg(long, default_value_t = 4)]
    functions: u32,
    /// Seconds of training steps per compute probe.
    #[arg(long, default_value_t = 2.0)]
    probe_seconds: f64,
    /// Then run real epochs at these FUNCTIONSxMEMORY_MB settings and compare each with the
    /// fitted simulator, e.g. `1x1769,2x1769,1x3538`.
    #[arg(long, value_delimiter = ',')]
    check: Vec<String>,
    /// Epochs per checked setting (the first, cold, is not compared).
    #[arg(long, default_value_t = 3)]
    check_epochs: u32,
    /// Also write the measurements and the check as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Report<'a> {
    profile: &'a CalibratedProfile,
    measurements: &'a Measurements,
    fidelity: &'a [FidelityRow],
}

fn parse_action(text: &str) -> Result<Action, Failure> {
    let parsed = text.split_once('x').and_then(|(n, m)| {
        Some(Action {
            functions: n.trim().parse().ok()?,
            memory_mb: m.trim().parse().ok()?,
        })
    });
    match parsed {
        Some(action) if action.functions >= 1 && (128..=10_240).contains(&action.memory_mb) => {
            Ok(action)
        }
        _ => Err(invalid_input(anyhow::anyhow!(
            "--check takes FUNCTIONSxMEMORY_MB settings such as 2x1769 (memory 128-10240), not `{text}`"
        ))),
    }
}

pub fn run(args: &CalibrateArgs) -> Result<(), Failure> {
    let job = read_manifest(&args.file).map_err(invalid_input)?;
    let actions = args
        .check
        .iter()
        .map(|a| parse_action(a))
        .collect::<Result<Vec<_>, _>>()?;
    let plan = CalibrationPlan {
        probe_seconds: args.probe_seconds,
        functions: args.functions,
        ..CalibrationPlan::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    println!("measuring {} on this machine ...", args.file.display());
    let (profile, measurements) = runtime
        .block_on(calibrate(&job, &plan))
        .context("calibration failed")?;
    let json = serde_json::to_string_pretty(&profile).context("cannot encode the profile")?;
    std::fs::write(&args.out, json)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let (j, p) = (&profile.job, &profile.platform);
    println!(
        "compute {:.1} us per sample on one thread, parallel efficiency {:.2}; store latency {:.1} us, {:.2} GB/s per function, {:.2} GB/s in all; cold start median {:.1} ms (at most {:.1} ms); stragglers sigma {:.3} (at most {:.2}x)",
        j.compute_seconds_per_sample * 1e6,
        j.parallel_efficiency,
        p.store.latency_seconds * 1e6,
        p.store.function_bandwidth_bytes_per_second / 1e9,
        p.store.aggregate_bandwidth_bytes_per_second / 1e9,
        p.cold_start.median_seconds * 1e3,
        p.cold_start.max_seconds * 1e3,
        p.stragglers.sigma,
        p.stragglers.max_factor,
    );
    println!("profile written to {}", args.out.display());

    let mut fidelity = Vec::new();
    if !actions.is_empty() {
        fidelity = runtime
            .block_on(check_fidelity(&job, &profile, &actions, args.check_epochs))
            .context("the fidelity check failed")?;
        println!("functions  memory_mb  predicted_s  measured_s   error");
        for row in &fidelity {
            println!(
                "{:>9}  {:>9}  {:>11.3}  {:>10.3}  {:>+6.1}%",
                row.functions,
                row.memory_mb,
                row.predicted_seconds,
                row.measured_seconds,
                row.relative_error * 100.0
            );
        }
    }
    if let Some(path) = &args.json {
        write_json(
            path,
            &Report {
                profile: &profile,
                measurements: &measurements,
                fidelity: &fidelity,
            },
        )?;
    }
    Ok(())
}
