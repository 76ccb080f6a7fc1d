//! The `openfaas` backend against a fake gateway on loopback that records every request and runs
//! real `siren-worker`s as the function's replicas (processes, or containers when
//! `SIREN_E2E_WORKER_IMAGE` is set), with a real redis-server as the store.

mod common;

use common::{job, on, runtime};
use serde_json::json;
use siren_crds::{BackendKind, JobPhase, OpenFaasSpec, TaskKey, TrainingJob};
use siren_driver::backend::openfaas::{
    BasicAuth, Mounts, OpenFaasBackend, OpenFaasTarget, deployment,
};
use siren_driver::backend::{FunctionBackend, FunctionSecrets, PoolLimits};
use siren_driver::driver::DriverError;
use siren_driver::{JobOutcome, Silent, driver_with_backend};
use siren_e2e::{FakeOpenFaas, FunctionLimits, RedisServer};
use siren_scheduler::Action;

const USER: &str = "admin";
const PASSWORD: &str = "s3cr3t";

fn openfaas_job(name: &str, gateway: &FakeOpenFaas, redis: &RedisServer) -> TrainingJob {
    let mut job = on(job(name, 2, 2, 2000, "[16]"), BackendKind::OpenFaas, redis);
    job.spec.backend.openfaas = Some(OpenFaasSpec {
        gateway: gateway.url.clone(),
        image: "registry.example.com/siren-worker:0.1.0".to_string(),
        function_name: None,
        namespace: None,
        credentials_secret: None,
        max_replicas: 5,
    });
    job
}

fn target(job: &TrainingJob, password: &str) -> OpenFaasTarget {
    let spec = job.spec.backend.openfaas.as_ref().expect("openfaas spec");
    let credentials = BasicAuth {
        user: USER.to_string(),
        password: password.to_string(),
    };
    OpenFaasTarget::new(
        spec,
        job.spec.backend.pod_template.as_ref(),
        &job.metadata.name.clone().unwrap_or_default(),
        Some(credentials),
    )
    .expect("target")
}

fn run_on_gateway(job: &TrainingJob, password: &str) -> Result<JobOutcome, DriverError> {
    let backend = OpenFaasBackend::new(
        target(job, password),
        PoolLimits::of(&job.spec.backend),
        Some(FunctionSecrets {
            key: TaskKey::generate(),
            store: Default::default(),
        }),
    )
    .expect("backend");
    runtime().block_on(async {
        driver_with_backend(job, Box::new(backend))
            .await?
            .run(&mut Silent)
            .await
    })
}

#[test]
fn a_job_trains_through_the_gateway_with_exactly_the_requests_of_its_api() {
    let redis = RedisServer::start(&[]);
    let gateway = FakeOpenFaas::start(USER, PASSWORD);
    let mut job = openfaas_job("faas", &gateway, &redis);
    job.spec.backend.pod_template = Some(
        serde_json::from_value(json!({
            "labels": { "team": "vision" },
            "nodeSelector": { "pool": "training" },
            "env": [{ "name": "RUST_BACKTRACE", "value": "1" }],
        }))
        .expect("a pod template"),
    );
    let outcome = run_on_gateway(&job, PASSWORD).expect("the job runs");
    assert_eq!(outcome.status.phase, JobPhase::Succeeded);
    assert_eq!(outcome.status.history.len(), 2);
    assert!(outcome.status.history.iter().all(|r| r.functions == 2));
    assert!(outcome.status.accuracy.expect("evaluated") > 0.5);

    let received = gateway.received();
    let system: Vec<_> = received
        .iter()
        .filter(|r| r.path.starts_with("/system/"))
        .collect();
    assert!(
        system
            .iter()
            .all(|r| r.credentials.as_deref() == Some("admin:s3cr3t")),
        "every management call carries the gateway's credentials"
    );
    // The first epoch deploys (the function did not exist), scales and waits for replicas; the
    // second, with the same memory, only scales and waits.
    let calls: Vec<(String, String)> = system
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let call = |method: &str, path: &str| (method.to_string(), path.to_string());
    assert_eq!(calls[0], call("POST", "/system/secrets"));
    assert_eq!(calls[1], call("GET", "/system/function/siren-faas"));
    assert_eq!(calls[2], call("POST", "/system/functions"));
    assert_eq!(calls[3], call("POST", "/system/scale-function/siren-faas"));
    let deploys = calls.iter().filter(|c| c.1 == "/system/functions").count();
    assert_eq!(deploys, 1, "memory never changed: {calls:?}");
    let scales: Vec<_> = system
        .iter()
        .filter(|r| r.path == "/system/scale-function/siren-faas")
        .map(|r| r.body.clone())
        .collect();
    assert_eq!(
        scales,
        vec![json!({"serviceName": "siren-faas", "replicas": 2}); 2]
    );
    // The run's key went to the gateway as a secret, never in a deployment or an invocation.
    let key = system[0].body["value"]
        .as_str()
        .expect("the key")
        .to_string();
    assert_eq!(system[0].body["name"], "siren-faas-task-key");
    let key = TaskKey::from_text(&key).expect("a task key");
    let expected = deployment(
        &target(&job, PASSWORD),
        Action {
            functions: 2,
            memory_mb: 1769,
        },
        Mounts {
            key_fingerprint: &key.fingerprint(),
            store_username: false,
            store_password: false,
            store_ca: false,
        },
    );
    assert_eq!(system[2].body, expected);
    // The pod template's node selector travels as faas-provider's `constraints`.
    assert_eq!(system[2].body["constraints"], json!(["pool=training"]));
    assert_eq!(system[2].body["envVars"]["RUST_BACKTRACE"], "1");

    let invocations: Vec<_> = received
        .iter()
        .filter(|r| r.path == "/function/siren-faas")
        .collect();
    assert!(
        invocations.len() >= 4,
        "two functions for two epochs: {} invocations",
        invocations.len()
    );
    assert!(invocations.iter().all(|r| {
        r.method == "POST"
            && r.credentials.is_none()
            && r.body["signature"].is_string()
            && r.body["task"]
                .as_str()
                .is_some_and(|task| task.contains("taskId"))
            && !r.body.to_string().contains(&key.to_text())
    }));
    assert_eq!(gateway.replicas(), 2, "two real workers ran them");
    // The deployment's limits reached the replicas, and podman enforced them on containers.
    let limits = FunctionLimits {
        memory_mib: Some(1769),
        cpu_millis: Some(1000),
    };
    let started = gateway.pool().started();
    assert!(!started.is_empty(), "no replica was started");
    for worker in &started {
        assert_eq!(worker.limits, limits, "{worker:?}");
        assert_eq!(
            worker.container,
            gateway.pool().is_container(),
            "{worker:?}"
        );
        assert_eq!(
            worker.applied,
            worker.container.then_some(limits),
            "{worker:?}"
        );
    }

    // The backend releases its function when a run ends (the driver's release_functions).
    let mut backend = OpenFaasBackend::new(
        target(&job, PASSWORD),
        PoolLimits::of(&job.spec.backend),
        None,
    )
    .expect("backend");
    runtime().block_on(backend.release()).expect("released");
    let received = gateway.received();
    let removals: Vec<(&str, &str)> = received[received.len() - 5..]
        .iter()
        .map(|r| (r.method.as_str(), r.path.as_str()))
        .collect();
    assert_eq!(removals[0], ("DELETE", "/system/functions"));
    assert!(
        removals[1..]
            .iter()
            .all(|r| *r == ("DELETE", "/system/secrets"))
    );
    assert_eq!(
        received[received.len() - 5].body,
        json!({"functionName": "siren-faas"})
    );
    assert_eq!(gateway.replicas(), 0);
    assert!(gateway.secret_names().is_empty(), "the run's key is gone");
}

#[test]
fn wrong_credentials_fail_the_job_with_a_reason_a_person_can_act_on() {
    let redis = RedisServer::start(&[]);
    let gateway = FakeOpenFaas::start(USER, PASSWORD);
    let job = openfaas_job("refused", &gateway, &redis);
    let error = match run_on_gateway(&job, "wrong") {
        Ok(outcome) => panic!("ran with wrong credentials: {:?}", outcome.status.phase),
        Err(error) => error,
    };
    // Credentials the gateway refuses are the job's configuration to fix, not a platform failure.
    assert_eq!(error.reason(), "BackendMisconfigured");
    let message = error.to_string();
    assert!(
        message.contains("401") && message.contains("credentialsSecret"),
        "{message}"
    );
    assert_eq!(gateway.replicas(), 0, "nothing was deployed");
}
