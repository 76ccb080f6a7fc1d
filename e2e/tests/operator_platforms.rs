//! The operator's Knative and OpenFaaS backends against a real kube-apiserver, with the real
//! `siren-operator` binary (no `--dev-process-functions`), a real redis-server and real workers:
//! processes, or containers with the functions' memory and CPU limits when
//! `SIREN_E2E_WORKER_IMAGE` names the worker image. Neither platform runs here, so the test plays
//! its part:
//! - Knative: the Service CRD is a stand-in (e2e/kube/knative-service-crd.yaml) and this test acts
//!   as Knative's controller, starting as many workers as `min-scale` asks behind one loopback
//!   address and writing the Service's status as Knative would, and as the kubelet, which restarts
//!   a container that dies.
//! - OpenFaaS: a fake gateway on loopback records every request and runs workers as the
//!   function's replicas; the credentials come from a real Secret in the API server.
//!
//! This proves the operator's side of both platforms (what it writes, reads and asks for, and that
//! training runs through it); it cannot prove that a real Knative or faas-netes accepts them.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kube::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams};
use serde_json::{Value, json};
use siren_e2e::{
    Delivery, FakeOpenFaas, FunctionLimits, Killed, KubeApiServer, PoolAddress, RedisServer,
    WORKER_IMAGE_ENV, WorkerPool, WorkerSpec,
};

const IMAGE: &str = "registry.example.com/siren-worker:0.1.0";

fn knative_services(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "serving.knative.dev",
        "v1",
        "Service",
    ));
    Api::namespaced_with(client, namespace, &resource)
}

fn create_secret(apiserver: &KubeApiServer, name: &str, data: &[(&str, &str)]) {
    let literals: Vec<String> = data
        .iter()
        .map(|(key, value)| format!("--from-literal={key}={value}"))
        .collect();
    let mut args = vec!["create", "secret", "generic", name];
    args.extend(literals.iter().map(String::as_str));
    apiserver.kubectl_ok(&args);
}

/// The kubelet's part: a container's `env`, with `secretKeyRef`s read from the API server.
async fn container_env(
    client: kube::Client,
    namespace: &str,
    container: &Value,
) -> Vec<(String, String)> {
    let secrets: Api<Secret> = Api::namespaced(client, namespace);
    let mut env = Vec::new();
    for variable in container["env"].as_array().into_iter().flatten() {
        let name = variable["name"].as_str().unwrap_or_default().to_string();
        if let Some(value) = variable["value"].as_str() {
            env.push((name, value.to_string()));
            continue;
        }
        let reference = &variable["valueFrom"]["secretKeyRef"];
        let (Some(secret), Some(key)) = (reference["name"].as_str(), reference["key"].as_str())
        else {
            continue;
        };
        let secret = secrets
            .get(secret)
            .await
            .expect("the Secret a container names");
        let value = secret
            .data
            .and_then(|data| data.get(key).cloned())
            .expect("the key a container names");
        env.push((name, String::from_utf8_lossy(&value.0).into_owned()));
    }
    env
}

/// Knative's part: every new generation of a Service gets a new revision of `min-scale` fresh
/// workers with its container's environment and limits, and a status that says it is ready at the
/// pool's address.
async fn play_knative(
    services: Api<DynamicObject>,
    pool: WorkerPool,
    url: String,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Option<Value>>>,
) {
    let mut revisions = 0;
    while !stop.load(Ordering::Relaxed) {
        let listed = services.list(&Default::default()).await;
        for service in listed.map(|l| l.items).unwrap_or_default() {
            if let Ok(mut seen) = seen.lock() {
                *seen = serde_json::to_value(&service).ok();
            }
            let generation = service.metadata.generation;
            if service.data["status"]["observedGeneration"].as_i64() == generation {
                continue;
            }
            let scale: usize = service.data["spec"]["template"]["metadata"]["annotations"]
                ["autoscaling.knative.dev/min-scale"]
                .as_str()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let namespace = service.metadata.namespace.clone().unwrap_or_default();
            let container = &service.data["spec"]["template"]["spec"]["containers"][0];
            let env = container_env(services.clone().into_client(), &namespace, container).await;
            let limits = FunctionLimits::from_kubernetes(&container["resources"]["limits"])
                .expect("the container's limits are quantities");
            let spec = WorkerSpec {
                env,
                limits,
                mounts: Vec::new(),
            };
            let resized = pool.clone();
            tokio::task::spawn_blocking(move || resized.resize(scale, &spec))
                .await
                .expect("resize runs")
                .expect("workers start");
            revisions += 1;
            let name = service.metadata.name.clone().unwrap_or_default();
            let revision = format!("{name}-{revisions:05}");
            let status = json!({ "status": {
                "observedGeneration": generation,
                "conditions": [{ "type": "Ready", "status": "True" }],
                "latestCreatedRevisionName": revision,
                "latestReadyRevisionName": revision,
                "address": { "url": url },
                "url": url,
            }});
            services
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                .await
                .expect("status written");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What the driver's `resources` gives a function of the jobs' 1,769 MB: one vCPU, as on Lambda.
const JOB_LIMITS: FunctionLimits = FunctionLimits {
    memory_mib: Some(1769),
    cpu_millis: Some(1000),
};

/// Every worker `pool` started was asked for the job's memory and CPU; in container mode, each
/// was a container and podman applied them.
fn assert_workers_had_the_jobs_limits(pool: &WorkerPool) {
    let image = std::env::var(WORKER_IMAGE_ENV).is_ok_and(|image| !image.trim().is_empty());
    assert_eq!(
        pool.is_container(),
        image,
        "containers exactly when {WORKER_IMAGE_ENV} is set"
    );
    let started = pool.started();
    assert!(!started.is_empty(), "no worker was started");
    for worker in &started {
        assert_eq!(worker.limits, JOB_LIMITS, "{worker:?}");
        assert_eq!(worker.container, pool.is_container(), "{worker:?}");
        if pool.is_container() {
            assert_eq!(
                worker.applied,
                Some(JOB_LIMITS),
                "podman's limits: {worker:?}"
            );
        } else {
            assert_eq!(worker.applied, None, "{worker:?}");
        }
    }
    let what = if pool.is_container() {
        "containers"
    } else {
        "processes"
    };
    eprintln!(
        "{} workers ran as {what} with {JOB_LIMITS:?}",
        started.len()
    );
}

fn install_knative_crd(apiserver: &KubeApiServer) {
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/kube/knative-service-crd.yaml");
    apiserver.kubectl_ok(&["apply", "-f", crd]);
    apiserver.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/services.serving.knative.dev",
    ]);
}

#[test]
fn a_knative_job_trains_on_the_service_the_operator_applies_and_deletes() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    install_knative_crd(&apiserver);
    let data_plane = PoolAddress::start();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(client_of(&apiserver));
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(None));
    let knative = runtime.spawn(play_knative(
        knative_services(client.clone(), apiserver.namespace()),
        data_plane.pool.clone(),
        data_plane.url.clone(),
        Arc::clone(&stop),
        Arc::clone(&seen),
    ));
    let mut operator = Operator::start_with(&apiserver, dir.path(), 1, &[]);
    // The pod template goes through the real API server's schema (Kubernetes' own types in it).
    let backend = format!(
        "{{kind: knative, knative: {{image: \"{IMAGE}\"}}, podTemplate: {{nodeSelector: {{pool: cpu-training}}, tolerations: [{{key: dedicated, operator: Equal, value: training, effect: NoSchedule}}], labels: {{team: vision}}, env: [{{name: RUST_BACKTRACE, value: \"1\"}}], resources: {{limits: {{ephemeral-storage: 1Gi}}}}}}}}"
    );
    let applied = apiserver.apply(&job_manifest("kn", 2, &backend, &redis));
    assert!(applied.status.success(), "{applied:?}");

    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "kn",
        "Succeeded",
        Duration::from_secs(120),
    );
    let history = done["status"]["history"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|r| r["functions"] == 2));
    assert_eq!(data_plane.pool.size(), 2, "two workers served the Service");
    assert_eq!(data_plane.pool.limits(), JOB_LIMITS);
    assert_workers_had_the_jobs_limits(&data_plane.pool);

    // The Service as the job's epochs ran on it; the finished job's pods must not idle on.
    let service = seen
        .lock()
        .ok()
        .and_then(|s| s.clone())
        .expect("a Service was applied");
    let started = Instant::now();
    while apiserver
        .kubectl(&["get", "ksvc", "siren-kn"])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the Service outlived its finished job"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let template = &service["spec"]["template"];
    for key in ["min-scale", "max-scale", "initial-scale"] {
        assert_eq!(
            template["metadata"]["annotations"][format!("autoscaling.knative.dev/{key}")],
            "2"
        );
    }
    assert_eq!(
        service["metadata"]["labels"]["networking.knative.dev/visibility"],
        "cluster-local"
    );
    assert_eq!(template["spec"]["containerConcurrency"], 1);
    let container = &template["spec"]["containers"][0];
    assert_eq!(container["image"], IMAGE);
    // The job's pod template, next to what Siren sets.
    assert_eq!(
        template["spec"]["nodeSelector"],
        json!({"pool": "cpu-training"})
    );
    assert_eq!(
        template["spec"]["tolerations"],
        json!([{"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoSchedule"}])
    );
    assert_eq!(template["metadata"]["labels"]["team"], "vision");
    assert_eq!(template["metadata"]["labels"]["siren.dev/job"], "kn");
    assert!(
        container["env"]
            .as_array()
            .is_some_and(|env| env.last() == Some(&json!({"name": "RUST_BACKTRACE", "value": "1"}))),
        "{container}"
    );
    // The finished job's forecast, as the API server stored it.
    let progress = &done["status"]["progress"];
    assert_eq!(progress["percent"], 100.0, "{progress}");
    assert_eq!(progress["remainingEpochs"], 0, "{progress}");
    assert!(progress["computedAt"].is_string(), "{progress}");
    // The run's key reached the pods through a Secret, which went with the run.
    assert_eq!(
        container["env"][0],
        json!({"name": "SIREN_TASK_KEY", "valueFrom": {"secretKeyRef": {"name": "siren-kn-task-key", "key": "task-key"}}})
    );
    assert!(
        template["metadata"]["annotations"]["siren.dev/task-key"].is_string(),
        "{template}"
    );
    assert!(
        !apiserver
            .kubectl(&["get", "secret", "siren-kn-task-key"])
            .status
            .success(),
        "the task key outlived its run"
    );
    assert_eq!(
        container["resources"]["limits"],
        json!({"cpu": "1000m", "memory": "1769Mi", "ephemeral-storage": "1Gi"})
    );
    let owner = &service["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "TrainingJob");
    assert_eq!(owner["uid"], done["metadata"]["uid"]);
    assert_eq!(owner["controller"], true);
    let managers: Vec<&str> = service["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["manager"].as_str())
        .collect();
    assert!(managers.contains(&"siren-operator"), "{managers:?}");

    apiserver.kubectl_ok(&["delete", "trainingjob", "kn", "--timeout=60s"]);
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(knative);
}

/// The task id and attempt of a forwarded request (a signed task, whose `task` is the task's JSON).
fn task_of(request: &[u8]) -> (String, u64) {
    let signed: Value = serde_json::from_slice(request).expect("a signed task");
    let task: Value =
        serde_json::from_str(signed["task"].as_str().expect("the task's JSON")).expect("a task");
    let id = task["taskId"].as_str().expect("a task id").to_string();
    (id, task["attempt"].as_u64().unwrap_or(1))
}

/// Whether `delivery` is the request `killed` was serving (each signed task has a nonce of its
/// own, and the worker served others before).
fn is_killed(delivery: &Delivery, killed: &Killed) -> bool {
    delivery.worker == killed.worker && delivery.request == killed.request
}

/// How the request a killed worker was serving ended, once the pool has answered it.
fn delivery_of(pool: &WorkerPool, killed: &Killed, limit: Duration) -> Delivery {
    let started = Instant::now();
    loop {
        if let Some(delivery) = pool.deliveries().into_iter().find(|d| is_killed(d, killed)) {
            return delivery;
        }
        assert!(
            started.elapsed() < limit,
            "the request {} was serving never ended",
            killed.worker
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A function's container dies mid-task (SIGKILL, as an out-of-memory kill or a node's failure
/// ends it) and the kubelet starts another in its place. The task in flight fails as a crash
/// makes it fail (its connection drops: the pool answers 502), the driver retries it on another
/// function, and the job still trains every epoch once to the accuracy such a job reaches.
#[test]
fn a_function_killed_mid_task_is_retried_and_the_job_still_trains() {
    const EPOCHS: u64 = 3;
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    install_knative_crd(&apiserver);
    let data_plane = PoolAddress::start();
    let pool = &data_plane.pool;
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime.block_on(client_of(&apiserver));
    let stop = Arc::new(AtomicBool::new(false));
    let knative = runtime.spawn(play_knative(
        knative_services(client.clone(), apiserver.namespace()),
        pool.clone(),
        data_plane.url.clone(),
        Arc::clone(&stop),
        Arc::default(),
    ));
    let mut operator = Operator::start_with(&apiserver, dir.path(), 1, &[]);
    // Tasks of 32,000 samples through a wider network, as in process_killed_worker.rs: a second
    // or more each, so that a kill (which takes podman a moment) lands while the task runs.
    let backend = format!("{{kind: knative, knative: {{image: \"{IMAGE}\"}}}}");
    let manifest = job_manifest("crash", EPOCHS as u32, &backend, &redis)
        .replace("samples: 3000,", "samples: 64000,")
        .replace("hidden: [32]", "hidden: [256, 256]");
    assert!(
        manifest.contains("samples: 64000,") && manifest.contains("hidden: [256, 256]"),
        "{manifest}"
    );
    let applied = apiserver.apply(&manifest);
    assert!(applied.status.success(), "{applied:?}");

    // A kill can miss: the task may have answered between the pool's choice and the signal.
    // Then no task failed, and the next one is tried.
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut missed: Vec<(String, u16)> = Vec::new();
    let (killed, failed) = loop {
        assert!(
            Instant::now() < deadline,
            "no task was caught in flight (missed: {missed:?})\n{}",
            operator.log()
        );
        if pool.busy() == 0 {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        // Into its task, not on its way in.
        std::thread::sleep(Duration::from_millis(200));
        let Some(killed) = pool.kill_busy_worker().expect("the kill") else {
            continue;
        };
        let delivery = delivery_of(pool, &killed, Duration::from_secs(60));
        if delivery.status == 502 {
            break (killed, delivery);
        }
        missed.push((killed.worker, delivery.status));
        assert_ne!(
            phase(&job(&apiserver, "crash")),
            "Succeeded",
            "the job ended before a task was caught in flight (missed: {missed:?})"
        );
    };
    let (task_id, attempt) = task_of(&failed.request);
    eprintln!(
        "killed {} in attempt {attempt} of task {task_id}; {} replaces it",
        killed.worker, killed.replacement
    );

    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "crash",
        "Succeeded",
        Duration::from_secs(300),
    );
    let status = &done["status"];
    assert_every_epoch_once(status, EPOCHS);
    assert_eq!(
        status["failedEpochs"].as_u64().unwrap_or(0),
        0,
        "the retry saved the epoch: {status}"
    );
    let accuracy = status["accuracy"].as_f64().unwrap_or(0.0);
    assert!(accuracy > 0.6, "it learned: accuracy {accuracy}");

    // The driver retried the task, and the retry was answered by another worker.
    let deliveries = pool.deliveries();
    let retries: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| task_of(&d.request) == (task_id.clone(), attempt + 1))
        .collect();
    assert!(
        retries
            .iter()
            .any(|d| d.status == 200 && d.worker != killed.worker),
        "attempt {} of {task_id} answered: {retries:?}",
        attempt + 1
    );
    let log = operator.log();
    assert!(
        log.lines()
            .any(|line| line.contains("retrying task on another function")
                && line.contains(&format!("\"{task_id}\""))
                && line.contains("502")),
        "the operator logged the retry of {task_id}:\n{log}"
    );
    // The dead worker got nothing more (deliveries are listed as they end, and a worker serves
    // one at a time); the kubelet's replacement kept the revision's size.
    let after_the_kill: Vec<&Delivery> = deliveries
        .iter()
        .skip_while(|d| !is_killed(d, &killed))
        .skip(1)
        .collect();
    assert!(
        after_the_kill.iter().all(|d| d.worker != killed.worker),
        "{} got requests after it died: {after_the_kill:?}",
        killed.worker
    );
    assert!(
        after_the_kill.iter().any(|d| d.status == 200),
        "the job went on after the kill"
    );
    assert_eq!(pool.size(), 2, "the revision's two workers");
    assert_eq!(pool.kills(), missed.len() + 1);
    let started = pool.started();
    assert!(
        started.iter().any(|w| w.name == killed.replacement),
        "{started:?}"
    );
    assert_workers_had_the_jobs_limits(pool);

    apiserver.kubectl_ok(&["delete", "trainingjob", "crash", "--timeout=60s"]);
    stop.store(true, Ordering::Relaxed);
    let _ = runtime.block_on(knative);
}

#[test]
fn an_openfaas_job_uses_the_gateway_with_credentials_from_its_secret() {
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let gateway = FakeOpenFaas::start("admin", "s3cr3t");
    create_secret(
        &apiserver,
        "openfaas-credentials",
        &[
            ("basic-auth-user", "admin"),
            ("basic-auth-password", "s3cr3t"),
        ],
    );
    let mut operator = Operator::start_with(&apiserver, dir.path(), 1, &[]);
    let backend = |secret: &str| {
        format!(
            "{{kind: openfaas, openfaas: {{gateway: \"{}\", image: \"{IMAGE}\", credentialsSecret: {secret}}}}}",
            gateway.url
        )
    };
    let applied = apiserver.apply(&job_manifest(
        "faas",
        2,
        &backend("openfaas-credentials"),
        &redis,
    ));
    assert!(applied.status.success(), "{applied:?}");
    let missing = apiserver.apply(&job_manifest("nosecret", 2, &backend("absent"), &redis));
    assert!(missing.status.success(), "{missing:?}");

    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "faas",
        "Succeeded",
        Duration::from_secs(120),
    );
    assert_eq!(done["status"]["epoch"], 2);
    let failed = wait_for_phase(
        &apiserver,
        &mut operator,
        "nosecret",
        "Failed",
        Duration::from_secs(60),
    );
    let reason = condition(&failed, "Failed");
    let message = reason["message"].as_str().unwrap_or_default();
    assert_eq!(reason["reason"], "BackendFailed");
    let secret = format!("{}/absent", apiserver.namespace());
    assert!(message.contains(&secret), "{message}");
    // Its function cannot be removed without credentials; that must not block its deletion.
    apiserver.kubectl_ok(&["delete", "trainingjob", "nosecret", "--timeout=60s"]);

    let system: Vec<_> = gateway
        .received()
        .into_iter()
        .filter(|r| r.path.starts_with("/system/"))
        .collect();
    assert!(
        system
            .iter()
            .all(|r| r.credentials.as_deref() == Some("admin:s3cr3t")),
        "the Secret's credentials on every management call"
    );
    assert!(
        system
            .iter()
            .any(|r| r.method == "POST" && r.path == "/system/functions"),
        "deployed"
    );
    assert!(
        system
            .iter()
            .any(|r| r.path == "/system/scale-function/siren-faas" && r.body["replicas"] == 2),
        "scaled to the scheduler's two functions"
    );
    assert_workers_had_the_jobs_limits(gateway.pool());
    let started = Instant::now();
    while gateway.replicas() > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the function's replicas outlived the finished job"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let before = gateway.received().len();
    apiserver.kubectl_ok(&["delete", "trainingjob", "faas", "--timeout=60s"]);
    let removals: Vec<(String, String)> = gateway.received()[before..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    for removed in ["/system/functions", "/system/secrets"] {
        assert!(
            removals.contains(&("DELETE".to_string(), removed.to_string())),
            "{removals:?}"
        );
    }
    assert_eq!(gateway.replicas(), 0, "the function went with the job");
    let started = Instant::now();
    while apiserver
        .kubectl(&["get", "trainingjob", "faas"])
        .status
        .success()
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "job not deleted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A store password that lives only in a Secret: a Redis ACL user (the default user needs another
/// password) named by `spec.store.credentialsSecret`. The operator reads the Secret, the OpenFaaS
/// function gets it mounted, and the job runs to Succeeded; the password then appears in no
/// request sent to the gateway or the functions (every task payload included), not in the job's
/// status or events, nor in the operator's or the functions' logs.
#[test]
fn a_store_password_in_a_secret_reaches_no_payload_status_event_or_log() {
    const PASSWORD: &str = "pw-7f3a9c1e-only-in-a-secret";
    let apiserver = KubeApiServer::start();
    let redis = RedisServer::start(&["--requirepass", "admin-only"]);
    let admin_url = redis.url().replace("redis://", "redis://:admin-only@");
    let mut admin = redis::Client::open(admin_url)
        .and_then(|client| client.get_connection())
        .expect("admin connection");
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "siren",
            "on",
            &format!(">{PASSWORD}"),
            "~siren:*",
            "&*",
        ])
        .arg(&["+@all", "-@dangerous"])
        .query::<()>(&mut admin)
        .expect("the ACL user");
    let dir = tempfile::tempdir().expect("tempdir");
    install_crd(&apiserver);
    let gateway = FakeOpenFaas::start_logging("admin", "s3cr3t", "debug");
    create_secret(
        &apiserver,
        "openfaas-credentials",
        &[
            ("basic-auth-user", "admin"),
            ("basic-auth-password", "s3cr3t"),
        ],
    );
    create_secret(
        &apiserver,
        "redis-auth",
        &[("username", "siren"), ("password", PASSWORD)],
    );
    let mut operator = Operator::start_with(&apiserver, dir.path(), 1, &[]);
    let backend = format!(
        "{{kind: openfaas, openfaas: {{gateway: \"{}\", image: \"{IMAGE}\", credentialsSecret: openfaas-credentials}}}}",
        gateway.url
    );
    let manifest = job_manifest("guarded", 2, &backend, &redis).replace(
        "store: {kind: redis, url:",
        "store: {kind: redis, credentialsSecret: redis-auth, url:",
    );
    assert!(
        manifest.contains("credentialsSecret: redis-auth"),
        "{manifest}"
    );
    let applied = apiserver.apply(&manifest);
    assert!(applied.status.success(), "{applied:?}");
    let done = wait_for_phase(
        &apiserver,
        &mut operator,
        "guarded",
        "Succeeded",
        Duration::from_secs(120),
    );
    assert_eq!(done["status"]["epoch"], 2);

    let received = gateway.received();
    let deployment = received
        .iter()
        .find(|r| r.path == "/system/functions" && r.method == "POST")
        .expect("the function was deployed");
    // The credentials the operator read reach the function as gateway secrets of its own, never
    // as a Secret named by the job (faas-netes would take that from the functions' namespace).
    let secrets = deployment.body["secrets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        secrets.contains(&json!("siren-guarded-store-password"))
            && !secrets.contains(&json!("redis-auth")),
        "{secrets:?}"
    );
    let invocations = received
        .iter()
        .filter(|r| r.path.starts_with("/function/"))
        .count();
    assert!(
        invocations >= 4,
        "two functions for two epochs: {invocations}"
    );
    let events = apiserver.kubectl(&["get", "events", "-o", "json"]);
    let events = String::from_utf8_lossy(&events.stdout).into_owned();
    assert!(events.contains("guarded"), "the job's events were read");
    // The gateway's secret API is where the credentials are meant to go (as a Kubernetes Secret
    // is): every other request is scanned, each task payload included.
    let payloads: Vec<String> = received
        .iter()
        .filter(|r| r.path != "/system/secrets")
        .map(|r| r.body.to_string())
        .collect();
    let scanned = [
        (
            "requests to the gateway and the functions",
            payloads.join("\n"),
        ),
        ("the job's status", job(&apiserver, "guarded").to_string()),
        ("the events", events),
        ("the operator's log", operator.log()),
        ("the functions' logs", gateway.worker_log()),
    ];
    for (what, text) in &scanned {
        assert!(!text.is_empty(), "nothing to scan in {what}");
        assert!(!text.contains(PASSWORD), "the store password is in {what}");
    }
    let lines: usize = scanned.iter().map(|(_, text)| text.lines().count()).sum();
    eprintln!(
        "credential scan: {} requests ({invocations} task payloads) and {lines} lines in all",
        payloads.len()
    );

    // Deleting the job clears its store keys, with the credentials from the Secret.
    apiserver.kubectl_ok(&["delete", "trainingjob", "guarded", "--timeout=60s"]);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("siren:guarded:*")
        .query(&mut admin)
        .expect("keys");
    assert!(keys.is_empty(), "{keys:?}");
}
