//! The `siren-worker` binary as a serverless platform runs it: a real process on a loopback port,
//! real HTTP requests, a real redis-server as its store.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siren_crds::TaskFailure;
use siren_crds::{
    HyperParameters, ModelKind, ModelSpec, StoreKind, StoreRef, StoreSpec, SyntheticSource,
    TASK_PROTOCOL_VERSION, Task, TaskResult,
};
use siren_data::cached_splits;
use siren_e2e::{RedisServer, free_port};
use siren_store::{ParameterStore, RedisStore, upload_dataset};
use siren_worker::model::Architecture;

struct Worker {
    child: Child,
    url: String,
}

impl Worker {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_siren-worker"))
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SIREN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("siren-worker starts");
        let worker = Worker {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while reqwest::blocking::get(format!("{}/healthz", worker.url)).is_err() {
            assert!(Instant::now() < deadline, "the worker never became healthy");
            std::thread::sleep(Duration::from_millis(20));
        }
        worker
    }

    fn post(&self, body: impl Into<reqwest::blocking::Body>) -> (u16, Vec<u8>) {
        let response = reqwest::blocking::Client::new()
            .post(&self.url)
            .timeout(Duration::from_secs(60))
            .body(body)
            .send()
            .expect("the worker answers");
        let status = response.status().as_u16();
        (status, response.bytes().expect("body").to_vec())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn task(redis: &RedisServer, samples: u32, shards: Vec<u32>) -> Task {
    let mut store = StoreRef::from_spec(&StoreSpec::default());
    store.kind = StoreKind::Redis;
    store.url = Some(redis.url());
    Task {
        protocol_version: TASK_PROTOCOL_VERSION,
        job: "http".into(),
        task_id: "http-e1-f0".into(),
        attempt: 1,
        epoch: 0,
        function: 0,
        model: ModelSpec {
            kind: ModelKind::Mlp,
            hidden: Some(vec![64]),
        },
        dataset: siren_crds::DatasetSpec::synthetic(
            SyntheticSource {
                samples,
                test_samples: 100,
                features: 30,
                classes: 4,
                noise: 0.5,
                seed: 2,
            },
            200,
        ),
        shards,
        store,
        hyper: HyperParameters {
            batch_size: 32,
            learning_rate: 0.05,
            momentum: 0.9,
            weight_decay: 0.0,
            steps_per_push: 1,
        },
        threads: 1,
        memory_mb: 1769,
        seed: 5,
        stored_data: None,
    }
}

/// Initialises the job's model in Redis and uploads its shards, as the driver does.
fn prepare(redis: &RedisServer, task: &mut Task) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = RedisStore::connect(&redis.url(), &task.job, 4096, Duration::from_secs(5))
            .await
            .expect("connect");
        let (splits, _) = cached_splits(&task.dataset, task.seed).expect("data");
        let architecture =
            Architecture::new(&task.model, splits.train.dim, splits.train.classes, None)
                .expect("architecture");
        store
            .initialize(&architecture.initial_params(1))
            .await
            .expect("initialize");
        let report = upload_dataset(&store, &splits.train, task.dataset.shard_size)
            .await
            .expect("upload");
        task.stored_data = Some(report.stored);
    });
}

fn store_version(redis: &RedisServer, job: &str) -> u64 {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = RedisStore::connect(&redis.url(), job, 4096, Duration::from_secs(5))
            .await
            .expect("connect");
        store.stats().await.map_or(0, |stats| stats.version)
    })
}

fn error_of(body: &[u8]) -> TaskFailure {
    serde_json::from_slice(body).expect("a JSON error")
}

#[test]
fn a_task_runs_cold_then_warm_on_shards_from_the_store() {
    let redis = RedisServer::start(&[]);
    let worker = Worker::start();
    let mut first = task(&redis, 1000, vec![0, 1]);
    prepare(&redis, &mut first);
    let (status, body) = worker.post(serde_json::to_vec(&first).expect("json"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let result: TaskResult = serde_json::from_slice(&body).expect("a result");
    assert!(result.cold_start);
    assert!(
        result.timing.init > 0.0,
        "a cold start reports its init time"
    );
    assert_eq!((result.samples, result.shards_fetched), (400, 2));

    let mut second = first.clone();
    second.task_id = "http-e1-f1".into();
    second.shards = vec![1, 2];
    let (status, body) = worker.post(serde_json::to_vec(&second).expect("json"));
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let result: TaskResult = serde_json::from_slice(&body).expect("a result");
    assert!(!result.cold_start);
    assert_eq!(result.timing.init, 0.0);
    assert_eq!(
        result.shards_fetched, 1,
        "shard 1 was kept from the first task"
    );
}

#[test]
fn bad_payloads_get_400_and_unsupported_tasks_422() {
    let redis = RedisServer::start(&[]);
    let worker = Worker::start();
    let (status, body) = worker.post("{\"protocolVersion\": 1, \"job\": 7}");
    assert_eq!(status, 400);
    assert!(
        error_of(&body).error.contains("job"),
        "{:?}",
        error_of(&body)
    );

    let (status, body) = worker.post(vec![b'x'; (1 << 20) + 1]);
    assert_eq!(status, 400);
    assert!(error_of(&body).error.contains("larger than"));

    let mut future = serde_json::to_value(task(&redis, 1000, vec![0])).expect("json");
    future["protocolVersion"] = serde_json::json!(99);
    let (status, body) = worker.post(future.to_string());
    assert_eq!(status, 422);
    assert!(error_of(&body).error.contains("protocol version 99"));

    // LeNet-5 needs images; this dataset is tabular.
    let mut lenet = task(&redis, 1000, vec![0]);
    lenet.model = ModelSpec {
        kind: ModelKind::Lenet5,
        hidden: None,
    };
    let (status, body) = worker.post(serde_json::to_vec(&lenet).expect("json"));
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert!(!error_of(&body).retryable);

    let mut good = task(&redis, 1000, vec![0]);
    prepare(&redis, &mut good);
    let (status, body) = worker.post(serde_json::to_vec(&good).expect("json"));
    assert_eq!(
        status,
        200,
        "the function still works after bad payloads: {}",
        String::from_utf8_lossy(&body)
    );
}

#[test]
fn a_second_task_meanwhile_gets_429_and_sigterm_finishes_the_task_in_flight() {
    let redis = RedisServer::start(&[]);
    let mut worker = Worker::start();
    // About 300,000 parameters pulled and pushed 1,250 times: seconds of work.
    let mut long = task(&redis, 40_000, (0..200).collect());
    long.model.hidden = Some(vec![512, 512]);
    prepare(&redis, &mut long);
    let url = worker.url.clone();
    let body = serde_json::to_vec(&long).expect("json");
    let in_flight = std::thread::spawn(move || {
        let response = reqwest::blocking::Client::new()
            .post(&url)
            .timeout(Duration::from_secs(120))
            .body(body)
            .send()
            .expect("answered");
        response.status().as_u16()
    });
    // The long task is running once the store's version moves.
    let deadline = Instant::now() + Duration::from_secs(30);
    while store_version(&redis, &long.job) < 5 {
        assert!(Instant::now() < deadline, "the long task never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut second = long.clone();
    second.task_id = "http-e1-f1".into();
    let (status, body) = worker.post(serde_json::to_vec(&second).expect("json"));
    assert_eq!(status, 429, "{}", String::from_utf8_lossy(&body));
    assert!(error_of(&body).retryable);
    assert!(!in_flight.is_finished(), "the task must still be running");

    let pid = worker.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    assert_eq!(
        in_flight.join().expect("request thread"),
        200,
        "the task in flight finished"
    );
    let exit = worker.child.wait().expect("the worker exits");
    assert!(exit.success(), "{exit:?}");
}
