//! `spec.failurePolicy` through the operator, against a real kube-apiserver: one of the job's
//! `siren-worker` processes is frozen (SIGSTOP), so that every task it gets times out, whenever
//! it gets it. With one attempt per task and one failed epoch allowed, the first timeout fails an
//! epoch, which the driver undoes and runs again; the second exhausts the allowance. (A file of
//! its own: the workers it freezes are its operator's.)

mod common;

use std::time::Duration;

use common::kube::*;
use common::{signal, workers_of};
use siren_e2e::{KubeApiServer, RedisServer};

#[test]
fn the_failure_policy_reaches_the_driver_and_a_failed_epoch_is_counted_and_reported() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);
    // A 2 s timeout, and no straggler copy before it (100 times the median task) to rescue the
    // frozen worker's task.
    let backend = "{kind: process, taskTimeoutSeconds: 2, stragglerFactor: 100}";
    let policy = "  failurePolicy: {attemptsPerTask: 1, failedEpochsAllowed: 1}\n";
    let manifest = format!("{}{policy}", job_manifest("frozen", 50, backend, &redis));
    let applied = apiserver.apply(&manifest);
    assert!(applied.status.success(), "{applied:?}");

    wait_for(
        &apiserver,
        &mut operator,
        "frozen",
        "running",
        Duration::from_secs(60),
        |job| job["status"]["epoch"].as_u64().unwrap_or(0) >= 1,
    );
    let workers = workers_of(operator.child.id());
    assert_eq!(workers.len(), 2, "two worker processes: {workers:?}");
    signal(workers[0], "STOP");

    let failed = wait_for_phase(
        &apiserver,
        &mut operator,
        "frozen",
        "Failed",
        Duration::from_secs(60),
    );
    // The operator removes a failed job's functions; one it could not stop goes here.
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &workers[0].to_string()])
        .status();
    let status = &failed["status"];
    assert_eq!(status["failedEpochs"], 1, "{status}");
    let condition = condition(&failed, "Failed");
    assert_eq!(condition["reason"], "TaskFailed", "{condition}");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("after 1 attempt(s)"),
        "one attempt, not the default three: {message}"
    );
    // The epoch that failed was run again, not recorded: the history has each epoch once, and
    // the spend is the recorded epochs' plus what the two failed runs of the next one cost.
    let finished = status["epoch"].as_u64().unwrap_or(0);
    let history = status["history"].as_array().cloned().unwrap_or_default();
    let recorded: Vec<u64> = history.iter().filter_map(|r| r["epoch"].as_u64()).collect();
    assert_eq!(recorded, (1..=finished).collect::<Vec<u64>>());
    let recorded_usd: f64 = history.iter().filter_map(|r| r["costUsd"].as_f64()).sum();
    let spent_usd = status["costUsd"].as_f64().unwrap_or(0.0);
    assert!(spent_usd > recorded_usd, "{spent_usd} <= {recorded_usd}");
    let reasons = event_reasons(&apiserver, "frozen");
    assert!(
        reasons.iter().any(|r| r == "EpochFailed"),
        "an EpochFailed event: {reasons:?}"
    );
}
