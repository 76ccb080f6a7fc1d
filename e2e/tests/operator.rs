//! The operator against a real kube-apiserver (built by e2e/kube/build-apiserver.sh) with etcd,
//! a real redis-server and real `siren-worker` processes: the CRD installed with kubectl, the real
//! `siren-operator` binary, TrainingJobs applied with kubectl. What this does not prove: anything
//! about Knative, OpenFaaS or a kubelet (no pods run here; functions are local processes).

mod common;

use std::time::{Duration, Instant};

use common::kube::*;
use serde_json::Value;
use siren_e2e::{KubeApiServer, RedisServer};

/// The process backend: functions are local worker processes (the operator runs with
/// `--dev-process-functions`).
fn process_job(name: &str, epochs: u32, redis: &RedisServer) -> String {
    job_manifest(name, epochs, "{kind: process}", redis)
}

#[test]
fn applied_jobs_train_survive_an_operator_restart_and_clean_up_when_deleted() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);

    // A job runs to the end of its epochs.
    let applied = apiserver.apply(&process_job("short", 2, &redis));
    assert!(applied.status.success(), "{applied:?}");
    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "short",
        "Succeeded",
        Duration::from_secs(120),
    );
    let status = &done["status"];
    assert_eq!(status["epoch"], 2);
    assert_eq!(status["history"].as_array().map(Vec::len), Some(2));
    assert!(status["accuracy"].as_f64().unwrap_or(0.0) > 0.5, "{status}");
    assert_eq!(status["observedGeneration"], done["metadata"]["generation"]);
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Succeeded" && c["status"] == "True"),
        "{conditions:?}"
    );
    assert!(
        done["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "siren.dev/cleanup"))
    );
    let table = apiserver.kubectl_ok(&["get", "tj", "short"]);
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "PHASE",
        "EPOCH",
        "ACCURACY",
        "COST",
        "FUNCTIONS",
        "MEMORY",
        "AGE",
    ] {
        assert!(header.contains(column), "{table}");
    }
    assert!(table.contains("Succeeded"), "{table}");
    let reasons = event_reasons(&apiserver, "short");
    for reason in ["Started", "Scheduled", "MaxEpochsReached"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} in {reasons:?}"
        );
    }

    // A longer job: the operator is killed in the middle and started again.
    // Long enough (30 short epochs, some seconds) to be interrupted in the middle.
    let applied = apiserver.apply(&process_job("long", 30, &redis));
    assert!(applied.status.success(), "{applied:?}");
    wait_for(
        &apiserver,
        &mut operator,
        "long",
        "past epoch 2",
        Duration::from_secs(120),
        |job| job["status"]["epoch"].as_u64().unwrap_or(0) >= 2,
    );
    operator.kill();
    let interrupted = job(&apiserver, "long");
    let finished_before = interrupted["status"]["epoch"].as_u64().unwrap_or(0);
    let mut operator = Operator::start(&apiserver, dir.path(), 2);
    let done = wait_for(
        &apiserver,
        &mut operator,
        "long",
        "Succeeded after the restart",
        Duration::from_secs(180),
        |job| phase(job) == "Succeeded",
    );
    assert_every_epoch_once(&done["status"], 30);
    assert!(
        finished_before < 30,
        "the operator was killed in the middle of the job"
    );
    let reasons = event_reasons(&apiserver, "long");
    assert!(
        reasons.iter().any(|r| r == "Resumed"),
        "{reasons:?} (killed after {finished_before} epochs)\n{}",
        operator.log()
    );

    // Deleting a job removes its store keys (the finalizer holds it until then).
    assert!(!redis_keys(&redis, "long").is_empty());
    apiserver.kubectl_ok(&["delete", "tj", "long", "--timeout=60s"]);
    assert_eq!(redis_keys(&redis, "long"), Vec::<String>::new());
    assert!(
        !apiserver.kubectl(&["get", "tj", "long"]).status.success(),
        "the job is gone"
    );
}

#[test]
fn the_api_server_rejects_a_bad_manifest_and_an_unrunnable_job_fails_with_a_reason() {
    let apiserver = KubeApiServer::start();
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);

    let rejected = apiserver.apply(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: rejected
spec:
  model: {kind: perceptron}
  dataset: {builtin: fashion-mnist}
",
    );
    assert!(!rejected.status.success());
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("spec.model.kind"), "{stderr}");

    let applied = apiserver.apply(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: missing-data
spec:
  model: {kind: logistic}
  dataset:
    csv: {train: /nonexistent/train.csv, test: /nonexistent/test.csv, labelColumn: 0}
  training: {maxEpochs: 1}
",
    );
    assert!(applied.status.success(), "{applied:?}");
    let failed = wait_for_phase(
        &apiserver,
        &mut operator,
        "missing-data",
        "Failed",
        Duration::from_secs(60),
    );
    let failed_condition = condition(&failed, "Failed");
    assert_eq!(failed_condition["reason"], "DatasetUnavailable");
    assert!(
        failed_condition["message"]
            .as_str()
            .is_some_and(|m| m.contains("/nonexistent/train.csv")),
        "{failed_condition}"
    );
    let line = r#"siren_job_failures_total{reason="DatasetUnavailable"} 1"#;
    let metrics = operator.wait_for_metric(line);
    assert!(metrics.lines().any(|l| l == line), "{metrics}");
}

/// A 1.20 API server enforces no CEL rules, so the operator itself refuses edits to what a
/// started job computes, while budget and epoch limit may change.
#[test]
fn editing_what_a_running_job_computes_fails_it_and_names_the_fields() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);
    let manifest = process_job("edited", 1000, &redis);
    assert!(apiserver.apply(&manifest).status.success());
    let running = wait_for(
        &apiserver,
        &mut operator,
        "edited",
        "past its first epoch",
        Duration::from_secs(60),
        |job| job["status"]["epoch"].as_u64().unwrap_or(0) >= 1,
    );
    assert_eq!(
        running["status"]["specFingerprint"]
            .as_object()
            .map(|f| f.len()),
        Some(6)
    );
    let steered = manifest.replace("maxEpochs: 1000", "maxEpochs: 999");
    assert!(apiserver.apply(&steered).status.success());
    let edited = steered.replace("hidden: [32]", "hidden: [64]");
    assert!(apiserver.apply(&edited).status.success());
    let failed = wait_for_phase(
        &apiserver,
        &mut operator,
        "edited",
        "Failed",
        Duration::from_secs(60),
    );
    let condition = condition(&failed, "Failed");
    assert_eq!(condition["reason"], "SpecChanged");
    let message = condition["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("spec.model changed after the job started"),
        "only the model changed: {message}"
    );
    assert!(event_reasons(&apiserver, "edited").contains(&"SpecChanged".to_string()));
}

#[test]
fn a_job_past_its_deadline_fails_and_a_finished_job_past_its_ttl_is_deleted() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);

    let endless = process_job("endless", 1000, &redis) + "  activeDeadlineSeconds: 2\n";
    let applied = apiserver.apply(&endless);
    assert!(applied.status.success(), "{applied:?}");
    let failed = wait_for(
        &apiserver,
        &mut operator,
        "endless",
        "Failed past its deadline",
        Duration::from_secs(60),
        |job| phase(job) == "Failed",
    );
    let status = &failed["status"];
    let reason = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Failed")
        .map(|c| c["reason"].clone());
    assert_eq!(reason, Some(Value::from("DeadlineExceeded")), "{status}");
    assert!(status["epoch"].as_u64().unwrap_or(0) < 1000);
    // The stopped run writes nothing after the operator's verdict.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(phase(&job(&apiserver, "endless")), "Failed");

    let short_lived = process_job("short-lived", 1, &redis) + "  ttlSecondsAfterFinished: 1\n";
    let applied = apiserver.apply(&short_lived);
    assert!(applied.status.success(), "{applied:?}");
    let started = Instant::now();
    while apiserver
        .kubectl(&["get", "tj", "short-lived"])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "short-lived was not deleted after its TTL:\n{}",
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(redis_keys(&redis, "short-lived"), Vec::<String>::new());
}

#[test]
fn of_two_replicas_one_leads_and_the_other_takes_over_its_jobs() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let lease = ["--dev-process-functions", "--lease-seconds", "3"];
    let mut first = Operator::start_with(&apiserver, dir.path(), 1, &lease);
    let holder = || {
        let lease = apiserver.kubectl(&["get", "lease", "siren-operator", "-o", "json"]);
        serde_json::from_slice::<Value>(&lease.stdout)
            .ok()
            .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
    };
    let started = Instant::now();
    while holder().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{}",
            first.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut second = Operator::start_with(&apiserver, dir.path(), 2, &lease);

    let applied = apiserver.apply(&process_job("shared", 30, &redis));
    assert!(applied.status.success(), "{applied:?}");
    wait_for(
        &apiserver,
        &mut first,
        "shared",
        "past epoch 2",
        Duration::from_secs(120),
        |job| job["status"]["epoch"].as_u64().unwrap_or(0) >= 2,
    );
    assert!(second.log().contains("standing by"), "{}", second.log());
    assert!(!second.log().contains("shared"), "the standby ran nothing");

    first.kill();
    let done = wait_for(
        &apiserver,
        &mut second,
        "shared",
        "Succeeded under the new leader",
        Duration::from_secs(180),
        |job| phase(job) == "Succeeded",
    );
    assert_every_epoch_once(&done["status"], 30);
    let new_holder = holder().unwrap_or_default();
    assert!(
        new_holder.ends_with(&format!("-{}", second.child.id())),
        "{new_holder}"
    );

    // A graceful stop hands the lease over at once rather than after its 3 seconds.
    let stopped = Instant::now();
    signal_term(second.child.id());
    let exit = second.child.wait().expect("the operator exits");
    assert!(exit.success(), "{exit}\n{}", second.log());
    assert_eq!(holder(), None, "{}", second.log());
    assert!(stopped.elapsed() < Duration::from_secs(3));
}

fn signal_term(pid: u32) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
}

/// The acceptance run: the shipped quickstart sample (LeNet-5 on full Fashion-MNIST, in-process
/// functions and store, so it runs inside the operator) applied with kubectl reaches its target.
#[test]
#[ignore = "acceptance run: full Fashion-MNIST, about 30 s"]
fn the_quickstart_sample_applied_with_kubectl_reaches_its_accuracy() {
    let apiserver = KubeApiServer::start();
    install_crd(&apiserver);
    let mut operator = Operator::start_with(&apiserver, apiserver.dir(), 1, &[]);
    let sample = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/quickstart.yaml"
    );
    apiserver.kubectl_ok(&["apply", "-f", sample]);
    let done = wait_for(
        &apiserver,
        &mut operator,
        "quickstart",
        "finished",
        Duration::from_secs(600),
        |job| phase(job) == "Succeeded" || phase(job) == "Failed",
    );
    assert_eq!(phase(&done), "Succeeded", "{}", done["status"]);
    let accuracy = done["status"]["accuracy"].as_f64().unwrap_or(0.0);
    assert!(accuracy >= 0.89, "the sample's target accuracy: {accuracy}");
    assert_eq!(
        condition(&done, "Succeeded")["reason"],
        "TargetAccuracyReached"
    );
    assert_every_epoch_once(
        &done["status"],
        done["status"]["epoch"].as_u64().unwrap_or(0),
    );
}
