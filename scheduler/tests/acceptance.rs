//! The issue's acceptance targets, checked on held-out jobs with the shipped policy
//! (config/scheduler/drl-policy.json, trained by `train_offline(&TrainingConfig::standard(), 1)`).
//! The small evaluation runs with every `cargo test`; the full one (4,000 runs) is ignored.

use siren_scheduler::eval::{EvalConfig, EvalReport, evaluate};
use siren_scheduler::{Policy, TrainingConfig, train_offline};

const SHIPPED: &str = include_str!("../../config/scheduler/drl-policy.json");

fn shipped() -> Policy {
    Policy::from_json(SHIPPED).expect("the shipped policy parses")
}

fn print(report: &EvalReport) {
    for row in &report.table {
        println!(
            "{:16} runs {:5} reached {:5} mean {:9.1} p95 {:9.1} violations {}",
            row.scheduler,
            row.runs,
            row.reached,
            row.mean_time_to_target,
            row.p95_time_to_target,
            row.budget_violations
        );
    }
    println!("{:#?}", report.acceptance);
}

#[test]
fn small_seeded_evaluation_meets_loose_targets() {
    let mut config = EvalConfig::standard(12, 7);
    config.bo_jobs = 4;
    config.dp_jobs = 2;
    let report = evaluate(&shipped(), &config);
    print(&report);
    let acceptance = &report.acceptance;
    assert_eq!(acceptance.evaluated_runs, 48);
    assert_eq!(acceptance.drl_budget_violations, 0);
    // Loose on a dozen jobs; the ignored test below holds the real thresholds on 1,000.
    assert!(acceptance.drl_vs_oracle_static < 1.25, "{acceptance:?}");
    assert!(acceptance.drl_vs_median_static < 0.75, "{acceptance:?}");
    assert!(acceptance.drl_reached_fraction > 0.7, "{acceptance:?}");
    assert!(
        report
            .drl_trace
            .as_ref()
            .is_some_and(|t| !t.functions.is_empty())
    );
    assert_eq!(report.by_budget.len(), report.table.len());
}

#[test]
#[ignore = "about a minute: 1,000 held-out jobs at 4 budgets"]
fn full_evaluation_meets_the_issue_targets() {
    let report = evaluate(&shipped(), &EvalConfig::standard(1000, 2026));
    print(&report);
    let acceptance = &report.acceptance;
    assert!(acceptance.evaluated_runs >= 1000);
    assert_eq!(acceptance.drl_budget_violations, 0);
    assert!(acceptance.drl_vs_oracle_static <= 1.10, "{acceptance:?}");
    assert!(acceptance.drl_vs_median_static <= 0.75, "{acceptance:?}");
    assert!(acceptance.drl_vs_bo_after_learning < 1.0, "{acceptance:?}");
}

#[test]
#[ignore = "about 80 s: retrains the shipped policy"]
fn shipped_policy_is_what_standard_training_produces() {
    let (policy, report) = train_offline(&TrainingConfig::standard(), 1);
    assert_eq!(report.budget_violations, 0);
    assert_eq!(policy, shipped());
}
