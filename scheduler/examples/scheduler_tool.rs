//! Developer tool until `siren scheduler` lands in the operator: trains the shipped policy and runs
//! the evaluation, reading and writing JSON files (the library itself does no I/O).
//!
//!   cargo run --release -p siren-scheduler --example scheduler_tool -- train SEED OUT.json
//!   cargo run --release -p siren-scheduler --example scheduler_tool -- eval POLICY.json JOBS SEED OUT.json

use std::time::Instant;

use siren_scheduler::eval::{EvalConfig, evaluate};
use siren_scheduler::{Policy, TrainingConfig, train_offline};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["train", seed, out] => {
            let started = Instant::now();
            let (policy, report) = train_offline(&TrainingConfig::standard(), seed.parse()?);
            std::fs::write(out, policy.to_json()?)?;
            let last = report.iterations.last();
            eprintln!(
                "trained in {:.1} s on {} episodes ({} budget violations); last iteration reached {:.2}",
                started.elapsed().as_secs_f64(),
                report.episodes,
                report.budget_violations,
                last.map_or(0.0, |s| s.reached_fraction)
            );
        }
        ["eval", policy, jobs, seed, out] => {
            let policy = Policy::from_json(&std::fs::read_to_string(policy)?)?;
            let started = Instant::now();
            let report = evaluate(&policy, &EvalConfig::standard(jobs.parse()?, seed.parse()?));
            std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
            eprintln!("evaluated in {:.1} s", started.elapsed().as_secs_f64());
            for row in &report.table {
                eprintln!(
                    "{:16} runs {:5} reached {:5} mean {:9.1} s p95 {:9.1} s cost ${:.4} budget used {:.2} violations {:3} vs oracle {:.3}",
                    row.scheduler,
                    row.runs,
                    row.reached,
                    row.mean_time_to_target,
                    row.p95_time_to_target,
                    row.mean_cost_usd,
                    row.mean_budget_used,
                    row.budget_violations,
                    row.mean_time_vs_oracle
                );
            }
            eprintln!("{:#?}", report.acceptance);
            eprintln!("{:#?}", report.experience);
            eprintln!("{:?}", report.dynamic_programming);
        }
        _ => {
            eprintln!(
                "usage: scheduler_tool train SEED OUT.json | eval POLICY.json JOBS SEED OUT.json"
            );
            std::process::exit(2);
        }
    }
    Ok(())
}
