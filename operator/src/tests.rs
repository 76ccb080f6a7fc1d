//! The reconciler against a mocked Kubernetes API (tower-test): every call the operator makes is
//! recorded and answered with the job as the API server would hold it. These prove which calls a
//! reconcile makes and what they carry; the e2e tests against a real kube-apiserver prove that
//! the API server accepts them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use siren_crds::{TrainingJob, parse_manifest};

use super::metrics::Metrics;
use super::run::RunOptions;
use super::{Context, FINALIZER, reconcile};

#[derive(Debug, Clone)]
struct Call {
    method: String,
    path: String,
    body: Value,
}

/// A mocked API server: every request is recorded; events are echoed back, everything else is
/// answered with `job`.
fn mocked_api(job: &TrainingJob) -> (kube::Client, Arc<Mutex<Vec<Call>>>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let calls: Arc<Mutex<Vec<Call>>> = Arc::default();
    let recorded = Arc::clone(&calls);
    let answer = serde_json::to_vec(job).expect("job JSON");
    tokio::spawn(async move {
        while let Some((request, respond)) = handle.next_request().await {
            let method = request.method().to_string();
            let path = request.uri().path().to_string();
            let bytes = request
                .into_body()
                .collect_bytes()
                .await
                .unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let reply = if path.contains("/events") {
                bytes.to_vec()
            } else {
                answer.clone()
            };
            if let Ok(mut calls) = recorded.lock() {
                calls.push(Call { method, path, body });
            }
            let response = Response::builder()
                .status(200)
                .body(Body::from(reply))
                .expect("a response");
            respond.send_response(response);
        }
    });
    (kube::Client::new(service, "default"), calls)
}

fn job(extra: &str, finalizer: bool) -> TrainingJob {
    let text = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: unit
  namespace: default
spec:
  model: {{kind: logistic}}
  dataset:
    synthetic: {{samples: 600, testSamples: 200, features: 8, classes: 3, noise: 0.5, seed: 1}}
    shardSize: 150
  training: {{batchSize: 32, learningRate: 0.05, maxEpochs: 2, seed: 3}}
  scheduler: {{functions: 2, memoryMb: 1769}}
{extra}"
    );
    let mut job = parse_manifest(&text, "test").expect("valid manifest");
    job.metadata.uid = Some("5f1c3a52-0000-4000-8000-000000000001".to_string());
    job.metadata.generation = Some(1);
    job.metadata.resource_version = Some("1".to_string());
    if finalizer {
        job.metadata.finalizers = Some(vec![FINALIZER.to_string()]);
    }
    job
}

fn context(client: kube::Client) -> Arc<Context> {
    Arc::new(Context::new(
        client,
        Arc::new(Metrics::default()),
        RunOptions::default(),
    ))
}

const JOB_PATH: &str = "/apis/siren.dev/v1alpha1/namespaces/default/trainingjobs/unit";

fn status_patches(calls: &[Call]) -> Vec<Value> {
    calls
        .iter()
        .filter(|c| c.method == "PATCH" && c.path == format!("{JOB_PATH}/status"))
        .map(|c| c.body["status"].clone())
        .collect()
}

fn event_reasons(calls: &[Call]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| c.method == "POST" && c.path.contains("/events"))
        .filter_map(|c| c.body["reason"].as_str().map(str::to_string))
        .collect()
}

fn condition_reason(status: &Value, type_: &str) -> String {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str())
        .unwrap_or_default()
        .to_string()
}

fn snapshot(calls: &Arc<Mutex<Vec<Call>>>) -> Vec<Call> {
    calls.lock().map(|c| c.clone()).unwrap_or_default()
}

#[tokio::test]
async fn a_new_job_gets_the_finalizer_before_anything_else() {
    let job = job("", false);
    let (client, calls) = mocked_api(&job);
    reconcile(Arc::new(job), context(client))
        .await
        .expect("reconciled");
    let calls = snapshot(&calls);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("PATCH", JOB_PATH)
    );
    let patch = calls[0].body.to_string();
    assert!(
        patch.contains("/metadata/finalizers") && patch.contains(FINALIZER),
        "{patch}"
    );
}

#[tokio::test]
async fn an_invalid_spec_ends_failed_with_a_reason_and_an_event() {
    // Passes the schema (a 1.20 API server checks nothing more) but not validation.
    let mut job = job("", true);
    job.spec.backend.kind = siren_crds::BackendKind::Knative;
    let (client, calls) = mocked_api(&job);
    reconcile(Arc::new(job), context(client))
        .await
        .expect("reconciled");
    let calls = snapshot(&calls);
    let patches = status_patches(&calls);
    assert_eq!(patches.len(), 1, "{calls:?}");
    assert_eq!(patches[0]["phase"], "Failed");
    assert_eq!(condition_reason(&patches[0], "Failed"), "InvalidSpec");
    assert!(
        patches[0]
            .to_string()
            .contains("spec.backend.knative.image"),
        "{}",
        patches[0]
    );
    assert_eq!(patches[0]["observedGeneration"], 1);
    assert_eq!(event_reasons(&calls), vec!["InvalidSpec".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_suspended_job_waits_and_once_resumed_patches_its_status_every_epoch() {
    let suspended = job("  suspend: true\n", true);
    let (client, calls) = mocked_api(&suspended);
    let context = context(client);
    reconcile(Arc::new(suspended.clone()), Arc::clone(&context))
        .await
        .expect("reconciled");
    let patches = status_patches(&snapshot(&calls));
    assert_eq!(patches.len(), 1);
    assert_eq!(patches[0]["phase"], "Suspended");
    assert_eq!(condition_reason(&patches[0], "Suspended"), "Suspended");

    let mut resumed = job("", true);
    resumed.status = serde_json::from_value(patches[0].clone()).expect("a status");
    resumed.metadata.generation = Some(2);
    reconcile(Arc::new(resumed), Arc::clone(&context))
        .await
        .expect("reconciled");
    let started = Instant::now();
    let patches = loop {
        let patches = status_patches(&snapshot(&calls));
        if patches.last().is_some_and(|s| s["phase"] == "Succeeded") {
            break patches;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Succeeded status: {patches:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let epochs: Vec<u64> = patches.iter().filter_map(|s| s["epoch"].as_u64()).collect();
    assert!(epochs.windows(2).all(|w| w[0] <= w[1]), "{epochs:?}");
    for epoch in 1..=2 {
        assert!(
            patches.iter().any(|s| s["epoch"] == epoch
                && s["history"].as_array().map(Vec::len) == Some(epoch as usize)),
            "epoch {epoch} recorded with its history: {patches:?}"
        );
    }
    let last = patches.last().cloned().unwrap_or_default();
    assert_eq!(last["observedGeneration"], 2);
    assert_eq!(
        last["specFingerprint"].as_object().map(|f| f.len()),
        Some(6)
    );
    let reasons = event_reasons(&snapshot(&calls));
    for reason in ["Suspended", "Started", "Scheduled", "MaxEpochsReached"] {
        assert!(
            reasons.contains(&reason.to_string()),
            "{reason} in {reasons:?}"
        );
    }
}

#[tokio::test]
async fn a_deleted_job_is_cleaned_up_and_its_finalizer_removed() {
    let mut deleted = job("", true);
    deleted.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    );
    let (client, calls) = mocked_api(&deleted);
    reconcile(Arc::new(deleted), context(client))
        .await
        .expect("reconciled");
    let calls = snapshot(&calls);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("PATCH", JOB_PATH)
    );
    let patch = calls[0].body.to_string();
    assert!(
        patch.contains("\"remove\"") && patch.contains("/metadata/finalizers/0"),
        "{patch}"
    );
}

#[tokio::test]
async fn a_finished_job_is_left_alone() {
    let mut finished = job("", true);
    finished.status = serde_json::from_value(json!({"phase": "Succeeded", "epoch": 2})).ok();
    let (client, calls) = mocked_api(&finished);
    reconcile(Arc::new(finished), context(client))
        .await
        .expect("reconciled");
    assert!(
        snapshot(&calls).is_empty(),
        "no call for a finished job without a TTL"
    );
}
