//! `siren scheduler train` and `siren scheduler eval`: the DRL agent trained offline in the
//! simulator, and every scheduler evaluated on held-out simulated jobs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use siren_scheduler::eval::{EvalConfig, EvalReport, evaluate};
use siren_scheduler::{Policy, TrainingConfig, train_offline};

#[cfg(feature = "plots")]
use crate::plot::plot_evaluation;
use crate::{Failure, invalid_input, write_json};

/// Where `siren scheduler train` writes by default: the shipped policy's place in a checkout,
/// relative to its root (the binary carries its own copy of the shipped policy).
pub const SHIPPED_POLICY: &str = "config/scheduler/drl-policy.json";

#[derive(clap::Args)]
pub struct TrainArgs {
    /// Seeds the simulated jobs and the network's initial weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where to write the policy.
    #[arg(long, default_value = SHIPPED_POLICY)]
    out: PathBuf,
    /// A few seconds of training instead of the full run (for trying the command out).
    #[arg(long)]
    quick: bool,
    /// Also write the training curve (per iteration) as JSON.
    #[arg(long)]
    report_json: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Held-out simulated jobs, each run at several budgets by every scheduler.
    #[arg(long, default_value_t = 1000)]
    jobs: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// The policy to evaluate; unset, the shipped one built into this binary, so that the
    /// command works from any directory.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// Write the whole report as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write a PNG: time to target against budget per scheduler, and the agent's (n, m) per epoch.
    #[arg(long)]
    plot: Option<PathBuf>,
}

pub fn train(args: &TrainArgs) -> Result<(), Failure> {
    let config = if args.quick {
        TrainingConfig::quick()
    } else {
        TrainingConfig::standard()
    };
    println!(
        "training the DRL agent: {} iterations x {} simulated jobs, seed {}",
        config.iterations, config.episodes_per_iteration, args.seed
    );
    let started = Instant::now();
    let (policy, report) = train_offline(&config, args.seed);
    let json = policy.to_json().context("cannot encode the policy")?;
    // The default is the shipped policy's place in a checkout; elsewhere it is made.
    if let Some(dir) = args.out.parent().filter(|dir| !dir.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(&args.out, json)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    if let Some(path) = &args.report_json {
        write_json(path, &report)?;
    }
    let last = report.iterations.last();
    println!(
        "trained in {:.1} s on {} jobs, {} budget violations; last iteration reached the target in {:.0}% of its jobs; policy written to {}",
        started.elapsed().as_secs_f64(),
        report.episodes,
        report.budget_violations,
        last.map_or(0.0, |s| s.reached_fraction * 100.0),
        args.out.display()
    );
    Ok(())
}

pub fn read_policy(path: &Path) -> Result<Policy, Failure> {
    let json = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the policy {}", path.display()))
        .map_err(invalid_input)?;
    Policy::from_json(&json)
        .with_context(|| format!("{} is not a Siren scheduler policy", path.display()))
        .map_err(invalid_input)
}

pub fn eval(args: &EvalArgs) -> Result<(), Failure> {
    if args.jobs == 0 {
        return Err(invalid_input(anyhow::anyhow!("--jobs must be at least 1")));
    }
    let policy = match &args.policy {
        Some(path) => read_policy(path)?,
        None => Policy::from_json(siren_driver::learned::SHIPPED_POLICY)
            .context("the shipped policy built into siren is not a policy")
            .map_err(invalid_input)?,
    };
    let started = Instant::now();
    let report = evaluate(&policy, &EvalConfig::standard(args.jobs, args.seed));
    print_report(&report);
    println!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
    if let Some(path) = &args.json {
        write_json(path, &report)?;
    }
    if let Some(path) = &args.plot {
        #[cfg(feature = "plots")]
        {
            plot_evaluation(&report, path)?;
            println!("plot written to {}", path.display());
        }
        #[cfg(not(feature = "plots"))]
        return Err(crate::invalid_input(anyhow::anyhow!(
            "--plot {}: this build of siren has no charts; build it with the default features",
            path.display()
        )));
    }
    Ok(())
}

fn print_report(report: &EvalReport) {
    println!(
        "{} held-out jobs x {} budgets (multiples of each job's cheapest static cost: {:?})",
        report.config.jobs,
        report.config.budget_factors.len(),
        report.config.budget_factors
    );
    println!(
        "{:<16} {:>6} {:>8} {:>12} {:>12} {:>10} {:>8} {:>10} {:>9}",
        "scheduler",
        "runs",
        "reached",
        "mean time s",
        "p95 time s",
        "cost $",
        "budget",
        "violations",
        "vs oracle"
    );
    // The median static configuration is a time reference with no cost of its own.
    let or_dash = |value: f64, text: String| if value.is_finite() { text } else { "-".into() };
    for row in &report.table {
        println!(
            "{:<16} {:>6} {:>8} {:>12.1} {:>12.1} {:>10} {:>8} {:>10} {:>8.3}x",
            row.scheduler,
            row.runs,
            row.reached,
            row.mean_time_to_target,
            row.p95_time_to_target,
            or_dash(row.mean_cost_usd, format!("{:.4}", row.mean_cost_usd)),
            or_dash(
                row.mean_budget_used,
                format!("{:.0}%", row.mean_budget_used * 100.0)
            ),
            row.budget_violations,
            row.mean_time_vs_oracle,
        );
    }
    let a = &report.acceptance;
    println!(
        "DRL: {} budget violations in {} runs; mean time {:.3}x the oracle's best static configuration ({:.3}x per run), {:.3}x the median static configuration, {:.3}x Bayesian optimisation after the same runs of experience; {:.1}% less time than a VM cluster at the same cost",
        a.drl_budget_violations,
        a.evaluated_runs,
        a.drl_vs_oracle_static,
        a.drl_vs_oracle_static_per_run,
        a.drl_vs_median_static,
        a.drl_vs_bo_after_learning,
        a.time_reduction_vs_vm_cluster * 100.0,
    );
    if let Some(drl) = report.by_budget.iter().find(|s| s.scheduler == "drl") {
        let per_budget: Vec<String> = drl
            .budget_factors
            .iter()
            .zip(
                drl.missed_where_oracle_reached
                    .iter()
                    .zip(&drl.oracle_reached),
            )
            .map(|(factor, (missed, of))| format!("x{factor}: {missed} of {of}"))
            .collect();
        println!(
            "DRL missed the target where the oracle's static configuration reached it: {}",
            per_budget.join(", ")
        );
    }
    let f = &report.forecast;
    let percent = |values: &[f64]| {
        values
            .iter()
            .map(|v| format!("{:.0}%", v * 100.0))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!(
        "Forecast of a job's end (status.progress) over DRL's runs, {} forecasts, in the first / second / last third of a run: median error {} of the seconds left, {} of the dollars left; the end reason right in {}",
        f.forecasts,
        percent(&f.median_seconds_error),
        percent(&f.median_cost_error),
        percent(&f.end_predicted_fraction),
    );
}
