//! The `siren-worker` binary as a serverless platform runs it: a real process on a loopback port
//! with its job's task key in its environment, real HTTP requests, a real redis-server as its
//! store.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use siren_crds::{
    CsvSource, HyperParameters, ModelKind, ModelSpec, StoreKind, StoreRef, StoreSpec,
    SyntheticSource, TASK_KEY_ENV, TASK_PROTOCOL_VERSION, TASK_VALIDITY, Task, TaskFailure,
    TaskKey, TaskResult, now_ms,
};
use siren_data::cached_splits;
use siren_e2e::{RedisServer, free_port};
use siren_store::{ParameterStore, RedisStore, upload_dataset};
use siren_worker::model::Architecture;

struct Worker {
    child: Child,
    url: String,
    key: TaskKey,
}

impl Worker {
    fn start() -> Self {
        let port = free_port();
        let key = TaskKey::generate();
        let child = Command::new(env!("CARGO_BIN_EXE_siren-worker"))
            .env(TASK_KEY_ENV, key.to_text())
            .env("PORT", port.to_string())
            .env("HOST", "127.0.0.1")
            .env("SIREN_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("siren-worker starts");
        let worker = Worker {
            child,
            url: format!("http://127.0.0.1:{port}"),
            key,
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

    /// `text` as a task signed with the worker's key, now.
    fn signed(&self, text: String) -> Vec<u8> {
        let signed = self.key.sign_text(text, now_ms(), nonce());
        serde_json::to_vec(&signed).expect("json")
    }

    fn post_task(&self, task: &Task) -> (u16, Vec<u8>) {
        self.post(self.signed(serde_json::to_string(task).expect("json")))
    }
}

fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
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
    let (status, body) = worker.post_task(&first);
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
    let (status, body) = worker.post_task(&second);
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
    let (status, body) =
        worker.post(worker.signed("{\"protocolVersion\": 1, \"job\": 7}".to_string()));
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
    let (status, body) = worker.post(worker.signed(future.to_string()));
    assert_eq!(status, 422);
    assert!(error_of(&body).error.contains("protocol version 99"));

    // LeNet-5 needs images; this dataset is tabular.
    let mut lenet = task(&redis, 1000, vec![0]);
    lenet.model = ModelSpec {
        kind: ModelKind::Lenet5,
        hidden: None,
    };
    let mut tabular = task(&redis, 1000, vec![0]);
    prepare(&redis, &mut tabular);
    lenet.stored_data = tabular.stored_data;
    let (status, body) = worker.post_task(&lenet);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    assert!(!error_of(&body).retryable);

    let mut good = task(&redis, 1000, vec![0]);
    prepare(&redis, &mut good);
    let (status, body) = worker.post_task(&good);
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
    let body = worker.signed(serde_json::to_string(&long).expect("json"));
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
    let (status, body) = worker.post_task(&second);
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

/// A function runs only what its job's driver signed: anything else gets 401 before the function
/// decodes the task, reads a file or connects anywhere.
#[test]
fn tasks_not_signed_with_its_key_get_401_before_anything_is_read() {
    let redis = RedisServer::start(&[]);
    let worker = Worker::start();
    // A "store" that records whether anyone connected to it.
    let trap = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    trap.set_nonblocking(true).expect("non-blocking");
    let mut lured = task(&redis, 1000, vec![0]);
    prepare(&redis, &mut lured);
    lured.store.url = Some(format!("redis://{}", trap.local_addr().expect("address")));
    let text = serde_json::to_string(&lured).expect("json");

    let unsigned = worker.post(text.clone());
    let other_key = TaskKey::generate().sign_text(text.clone(), now_ms(), nonce());
    let wrong_key = worker.post(serde_json::to_vec(&other_key).expect("json"));
    let mut tampered = worker.key.sign_text(text.clone(), now_ms(), nonce());
    tampered.task = tampered.task.replace("http-e1-f0", "http-e1-f9");
    let tampered = worker.post(serde_json::to_vec(&tampered).expect("json"));
    let stale_at = now_ms() - TASK_VALIDITY.as_millis() as u64 - 60_000;
    let stale = worker.key.sign_text(text.clone(), stale_at, nonce());
    let stale = worker.post(serde_json::to_vec(&stale).expect("json"));
    // Only a delivery signed with the right key may pass when the driver signs it afresh.
    for (case, (status, body), retryable) in [
        ("unsigned", unsigned, false),
        ("signed with another key", wrong_key, false),
        ("changed after signing", tampered, false),
        ("issued too long ago", stale, true),
    ] {
        assert_eq!(status, 401, "{case}: {}", String::from_utf8_lossy(&body));
        let failure = error_of(&body);
        assert_eq!(failure.retryable, retryable, "{case}: {failure:?}");
    }
    assert!(
        matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a refused task made the function connect to the address it named"
    );

    // The same signed delivery twice: the second is a replay.
    let mut good = task(&redis, 1000, vec![0]);
    prepare(&redis, &mut good);
    let once = worker.signed(serde_json::to_string(&good).expect("json"));
    let (status, body) = worker.post(once.clone());
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let (status, body) = worker.post(once);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let replayed = error_of(&body);
    assert!(replayed.error.contains("already delivered"), "{replayed:?}");
    assert!(replayed.retryable, "a fresh signature makes a new delivery");
}

/// Even a signed task cannot make a function read one of its files: data comes from the store.
#[test]
fn a_signed_task_naming_a_local_file_is_refused_without_reading_it() {
    let redis = RedisServer::start(&[]);
    let worker = Worker::start();
    let mut sneaky = task(&redis, 1000, vec![0]);
    sneaky.dataset.synthetic = None;
    sneaky.dataset.csv = Some(CsvSource {
        train: "/etc/passwd".into(),
        test: None,
        label_column: 0,
        header: false,
        test_fraction: 0.2,
    });
    let (status, body) = worker.post_task(&sneaky);
    assert_eq!(status, 422, "{}", String::from_utf8_lossy(&body));
    let error = error_of(&body).error;
    assert!(error.contains("only from the store"), "{error}");
    assert!(!error.contains("root:"), "{error}");
}

/// A function without a key would run anyone's tasks: it does not start.
#[test]
fn a_worker_without_a_task_key_refuses_to_start() {
    let output = Command::new(env!("CARGO_BIN_EXE_siren-worker"))
        .env_remove(TASK_KEY_ENV)
        .env_remove(format!("{TASK_KEY_ENV}_FILE"))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .output()
        .expect("siren-worker runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(TASK_KEY_ENV), "{stderr}");
}
