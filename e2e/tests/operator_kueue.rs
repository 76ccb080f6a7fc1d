//! Admission through Kueue against a real kube-apiserver: the Workload CRD as Kueue's API
//! reference describes it (e2e/kube/kueue-workload-crd.yaml), the real `siren-operator` binary,
//! worker processes for functions, and the test in Kueue's place: it admits, evicts and admits
//! again by writing the Workload's status as Kueue's controller does. What this does not prove:
//! how Kueue itself queues, sizes quota or picks flavors.

mod common;

use std::time::{Duration, Instant};

use common::kube::*;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use siren_e2e::{KubeApiServer, RedisServer};

const QUEUE: &str = "team-a";

fn install_workload_crd(apiserver: &KubeApiServer) {
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/kube/kueue-workload-crd.yaml");
    apiserver.kubectl_ok(&["apply", "-f", crd]);
    apiserver.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/workloads.kueue.x-k8s.io",
    ]);
}

/// A process-backend job submitted to the LocalQueue `team-a`.
fn queued_job(name: &str, epochs: u32, redis: &RedisServer, extra_spec: &str) -> String {
    let manifest = job_manifest(name, epochs, "{kind: process}", redis);
    let labelled = manifest.replacen(
        &format!("  name: {name}\n"),
        &format!("  name: {name}\n  labels: {{kueue.x-k8s.io/queue-name: {QUEUE}}}\n"),
        1,
    );
    format!("{labelled}{extra_spec}")
}

/// The Workloads standing for the job `name`.
fn workloads_of(apiserver: &KubeApiServer, name: &str) -> Vec<Value> {
    let text = apiserver.kubectl_ok(&[
        "get",
        "workloads.kueue.x-k8s.io",
        "-l",
        &format!("siren.dev/job={name}"),
        "-o",
        "json",
    ]);
    let list: Value = serde_json::from_str(&text).expect("kubectl prints JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

fn wait_for_workload(
    apiserver: &KubeApiServer,
    name: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        if let Some(workload) = workloads_of(apiserver, name).into_iter().find(|w| done(w)) {
            return workload;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no Workload of {name} as expected: {:?}",
            workloads_of(apiserver, name)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn condition_of(at: &str, type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": at,
    })
}

/// Writes the Workload's status as Kueue's controller does, through the status subresource (with
/// a client: kubectl 1.20 cannot patch a subresource).
fn write_workload_status(apiserver: &KubeApiServer, workload: &str, status: Value) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = client_of(apiserver).await;
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
            "kueue.x-k8s.io",
            "v1beta1",
            "Workload",
        ));
        let api: Api<DynamicObject> =
            Api::namespaced_with(client, apiserver.namespace(), &resource);
        api.patch_status(
            workload,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .expect("the Workload's status is written");
    });
}

/// An admission to the ClusterQueue `cq` with the pod set's quota reserved, at `at`.
fn admitted(at: &str, functions: u64, mut conditions: Vec<Value>) -> Value {
    conditions.push(condition_of(
        at,
        "QuotaReserved",
        "True",
        "QuotaReserved",
        "Quota reserved in ClusterQueue cq",
    ));
    conditions.push(condition_of(
        at,
        "Admitted",
        "True",
        "Admitted",
        "The workload is admitted",
    ));
    json!({
        "admission": {
            "clusterQueue": "cq",
            "podSetAssignments": [{
                "name": "functions",
                "count": functions,
                "flavors": { "cpu": "default-flavor", "memory": "default-flavor" },
                "resourceUsage": { "cpu": "2", "memory": "3538Mi" },
            }],
        },
        "conditions": conditions,
    })
}

fn suspended_because(job: &Value) -> String {
    if phase(job) != "Suspended" {
        return String::new();
    }
    condition(job, "Suspended")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_queued_job_runs_only_while_kueue_admits_it_and_resumes_after_a_preemption() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    install_workload_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);
    let epochs = 40;
    let applied = apiserver.apply(&queued_job("queued", epochs, &redis, ""));
    assert!(applied.status.success(), "{applied:?}");

    // The Workload asks for the job's pool, in its queue, owned by the job.
    let workload = wait_for_workload(&apiserver, "queued", |_| true);
    let name = workload["metadata"]["name"]
        .as_str()
        .expect("a name")
        .to_string();
    assert_eq!(workload["spec"]["queueName"], QUEUE);
    let pod_set = &workload["spec"]["podSets"][0];
    assert_eq!(pod_set["name"], "functions");
    assert_eq!(pod_set["count"], 2);
    assert_eq!(
        pod_set["template"]["spec"]["containers"][0]["resources"]["requests"],
        json!({"cpu": "1000m", "memory": "1769Mi"})
    );
    let owner = &workload["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "TrainingJob");
    assert_eq!(owner["controller"], true);

    // Until Kueue admits it, the job waits, suspended, and no epoch runs.
    let waiting = wait_for(
        &apiserver,
        &mut operator,
        "queued",
        "awaiting admission",
        Duration::from_secs(30),
        |job| suspended_because(job) == "AwaitingAdmission",
    );
    assert!(
        condition(&waiting, "Suspended")["message"]
            .as_str()
            .is_some_and(|m| m.contains(QUEUE)),
        "{}",
        waiting["status"]
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(job(&apiserver, "queued")["status"]["epoch"], 0);

    // Admitted: it runs.
    write_workload_status(
        &apiserver,
        &name,
        admitted("2026-12-03T10:00:00Z", 2, Vec::new()),
    );
    wait_for(
        &apiserver,
        &mut operator,
        "queued",
        "running",
        Duration::from_secs(60),
        |job| job["status"]["epoch"].as_u64().unwrap_or(0) >= 2,
    );

    // It told Kueue its functions started (what waitForPodsReady waits for).
    wait_for_workload(&apiserver, "queued", |w| {
        w["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "PodsReady" && c["status"] == "True")
    });

    // Preempted: the job stops at the end of its epoch and gives its quota back.
    let evicted = condition_of(
        "2026-12-03T10:01:00Z",
        "Evicted",
        "True",
        "Preempted",
        "Preempted to accommodate a higher priority Workload",
    );
    write_workload_status(
        &apiserver,
        &name,
        admitted("2026-12-03T10:00:00Z", 2, vec![evicted.clone()]),
    );
    let preempted = wait_for(
        &apiserver,
        &mut operator,
        "queued",
        "preempted",
        Duration::from_secs(60),
        |job| suspended_because(job) == "Preempted",
    );
    let stopped_at = preempted["status"]["epoch"].as_u64().unwrap_or(0);
    assert!(
        stopped_at < u64::from(epochs),
        "the job ran to its end: {}",
        preempted["status"]
    );
    let released = wait_for_workload(&apiserver, "queued", |w| w["status"]["admission"].is_null());
    let quota = released["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "QuotaReserved")
        .cloned()
        .unwrap_or_default();
    assert_eq!(quota["status"], "False", "{}", released["status"]);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        job(&apiserver, "queued")["status"]["epoch"].as_u64(),
        Some(stopped_at),
        "no epoch runs while the Workload is not admitted"
    );

    // Admitted again (the old eviction left in place, as Kueue may): the job resumes from its
    // checkpoint, runs every epoch once, and its Workload is marked Finished.
    write_workload_status(
        &apiserver,
        &name,
        admitted("2026-12-03T10:02:00Z", 2, vec![evicted]),
    );
    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "queued",
        "Succeeded",
        Duration::from_secs(120),
    );
    assert_every_epoch_once(&done["status"], u64::from(epochs));
    let finished = wait_for_workload(&apiserver, "queued", |w| {
        w["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Finished" && c["status"] == "True")
    });
    let reasons: Vec<&str> = finished["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["type"] == "Finished")
        .filter_map(|c| c["reason"].as_str())
        .collect();
    assert_eq!(reasons, ["Succeeded"]);
    let reasons = event_reasons(&apiserver, "queued");
    for reason in ["AwaitingAdmission", "Preempted", "Resumed"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} not in {reasons:?}"
        );
    }
}

#[test]
fn a_job_another_controller_manages_is_left_alone() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    install_workload_crd(&apiserver);
    let mut operator = Operator::start(&apiserver, dir.path(), 1);
    let manifest = queued_job(
        "elsewhere",
        2,
        &redis,
        "  managedBy: kueue.x-k8s.io/multikueue\n",
    );
    let applied = apiserver.apply(&manifest);
    assert!(applied.status.success(), "{applied:?}");
    // A job the operator does run, applied after it, shows the operator is at work.
    let applied = apiserver.apply(&job_manifest("here", 1, "{kind: process}", &redis));
    assert!(applied.status.success(), "{applied:?}");
    wait_for_phase(
        &apiserver,
        &mut operator,
        "here",
        "Succeeded",
        Duration::from_secs(60),
    );
    let left = job(&apiserver, "elsewhere");
    assert!(left["status"].is_null(), "{}", left["status"]);
    assert!(
        left["metadata"]["finalizers"].is_null(),
        "{}",
        left["metadata"]
    );
    assert!(workloads_of(&apiserver, "elsewhere").is_empty());
}
