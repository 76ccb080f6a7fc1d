//! `scheduler: {policy: drl}` in a real job on the local backend: the shipped agent chooses each
//! epoch's functions and memory from its grid, stays within the budget, and learns from the job.

use siren_crds::{TrainingJob, parse_manifest};
use siren_driver::learned::SHIPPED_POLICY;
use siren_driver::{Silent, StopReason, driver_for};
use siren_scheduler::Policy;

fn drl_job(policy_file: &std::path::Path, budget: f64, online: bool) -> TrainingJob {
    with_profile(policy_file, budget, online, None)
}

fn with_profile(
    policy_file: &std::path::Path,
    budget: f64,
    online: bool,
    profile_file: Option<&std::path::Path>,
) -> TrainingJob {
    let profile = profile_file.map_or(String::new(), |p| {
        format!("    profileFile: {}\n", p.display())
    });
    let text = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: drl
spec:
  model: {{kind: mlp, hidden: [32]}}
  dataset:
    synthetic: {{samples: 4000, testSamples: 500, features: 20, classes: 4, noise: 4.0, seed: 3}}
    shardSize: 250
  training: {{batchSize: 32, learningRate: 0.02, maxEpochs: 12, targetAccuracy: 0.99, seed: 7}}
  budget: {{maxCostUsd: {budget}}}
  scheduler:
    policy: drl
    policyFile: {}
    onlineLearning: {online}
{profile}",
        policy_file.display()
    );
    parse_manifest(&text, "test").expect("valid drl manifest")
}

fn run(job: &TrainingJob) -> siren_driver::JobOutcome {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async { driver_for(job).await?.run(&mut Silent).await })
        .expect("the drl job runs")
}

#[test]
fn the_agent_picks_from_its_grid_within_budget_and_learns_from_the_job() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, SHIPPED_POLICY).expect("write policy");
    let shipped = Policy::from_json(SHIPPED_POLICY).expect("shipped policy");
    // An unreachable target (the classes overlap): the job runs to its last epoch, on what the
    // budget allows.
    let budget = 0.00001;
    let outcome = run(&drl_job(&policy_file, budget, true));

    let history = &outcome.status.history;
    assert!(!history.is_empty(), "at least one epoch ran");
    for record in history {
        assert!(
            shipped.grid.functions.contains(&record.functions)
                && shipped.grid.memory_mb.contains(&record.memory_mb),
            "epoch {}: ({}, {}) is not on the agent's grid",
            record.epoch,
            record.functions,
            record.memory_mb
        );
    }
    assert!(
        outcome.status.cost_usd <= budget,
        "spent ${} of ${budget}",
        outcome.status.cost_usd
    );

    // With a hundred times the budget, the same agent buys more compute per epoch.
    let roomy = run(&drl_job(&policy_file, budget * 100.0, false));
    let compute = |outcome: &siren_driver::JobOutcome| -> f64 {
        let history = &outcome.status.history;
        history
            .iter()
            .map(|r| f64::from(r.functions) * f64::from(r.memory_mb))
            .sum::<f64>()
            / history.len() as f64
    };
    assert!(
        compute(&roomy) > compute(&outcome),
        "mean MB in use per epoch: {} with the larger budget, {} with the smaller",
        compute(&roomy),
        compute(&outcome)
    );

    let learned = std::fs::read_to_string(&policy_file).expect("policy saved");
    assert_ne!(
        learned, SHIPPED_POLICY,
        "online learning changed the policy"
    );
    Policy::from_json(&learned).expect("the saved policy loads");
}

#[test]
fn without_online_learning_the_policy_file_is_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, SHIPPED_POLICY).expect("write policy");
    run(&drl_job(&policy_file, 0.00001, false));
    assert_eq!(
        std::fs::read_to_string(&policy_file).expect("policy"),
        SHIPPED_POLICY
    );
}

#[test]
fn a_missing_policy_file_fails_the_job_before_it_starts() {
    let job = drl_job(std::path::Path::new("/nonexistent/policy.json"), 0.01, true);
    let error = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(driver_for(&job))
        .err()
        .expect("no policy, no job");
    assert!(
        error.to_string().contains("/nonexistent/policy.json"),
        "{error}"
    );
}

#[test]
fn a_calibrated_profile_is_used_and_a_broken_one_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy_file = dir.path().join("policy.json");
    std::fs::write(&policy_file, SHIPPED_POLICY).expect("write policy");
    let profile = siren_scheduler::CalibratedProfile {
        job: siren_scheduler::JobProfile::fashion_mnist_mlp(),
        platform: siren_scheduler::PlatformProfile::local_default(),
    };
    let profile_file = dir.path().join("profile.json");
    std::fs::write(
        &profile_file,
        serde_json::to_string(&profile).expect("encode profile"),
    )
    .expect("write profile");
    // The probe measures this small model at microseconds per sample, and the job runs on the
    // budget; the profile says a quarter of a millisecond, so no epoch is affordable.
    let probed = run(&with_profile(&policy_file, 0.00001, false, None));
    assert!(!probed.status.history.is_empty());
    let profiled = run(&with_profile(
        &policy_file,
        0.00001,
        false,
        Some(&profile_file),
    ));
    assert_eq!(profiled.stop_reason, StopReason::BudgetExhausted);
    assert!(profiled.status.history.is_empty(), "the profile was used");

    let mut broken = serde_json::to_value(&profile).expect("profile as JSON");
    broken["platform"]["stragglers"]["max_factor"] = serde_json::json!(0.5);
    std::fs::write(&profile_file, broken.to_string()).expect("write broken profile");
    let error = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(driver_for(&with_profile(
            &policy_file,
            0.00001,
            false,
            Some(&profile_file),
        )))
        .err()
        .expect("a broken profile, no job");
    assert!(
        error.to_string().contains("platform.stragglers.max_factor"),
        "{error}"
    );
}
