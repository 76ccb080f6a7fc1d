//! The operator's end-to-end tests share these: the real `siren-operator` binary against a real
//! kube-apiserver, and reading jobs back with kubectl.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use siren_e2e::{KubeApiServer, RedisServer, free_port, workspace_binary};

/// A client of `apiserver`, as the tests' own code talks to it (the operator reads the same
/// kubeconfig).
pub async fn client_of(apiserver: &KubeApiServer) -> kube::Client {
    client_at(&apiserver.kubeconfig()).await
}

/// A client of the API server `kubeconfig` names, whose connections live on the calling runtime.
pub async fn client_at(kubeconfig: &std::path::Path) -> kube::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    kube::Client::try_from(config).expect("client")
}

pub struct Operator {
    pub child: Child,
    log: PathBuf,
    probe_port: u16,
}

impl Operator {
    pub fn start(apiserver: &KubeApiServer, dir: &std::path::Path, generation: u32) -> Self {
        Self::start_with(apiserver, dir, generation, &["--dev-process-functions"])
    }

    pub fn start_with(
        apiserver: &KubeApiServer,
        dir: &std::path::Path,
        generation: u32,
        extra: &[&str],
    ) -> Self {
        let log = dir.join(format!("operator-{generation}.log"));
        let probe_port = free_port();
        let child = Command::new(workspace_binary("siren-operator"))
            .env("KUBECONFIG", apiserver.kubeconfig())
            .env("SIREN_LOG", "info,kube=warn")
            .args(["--namespace", apiserver.namespace()])
            .args(["--lease-namespace", apiserver.namespace()])
            .args(extra)
            .arg("--probe-address")
            .arg(format!("127.0.0.1:{probe_port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("operator log"))
            .spawn()
            .expect("siren-operator runs");
        Self {
            child,
            log,
            probe_port,
        }
    }

    /// Waits (up to 10 s) for `/metrics` to show `line`, and returns the whole exposition.
    pub fn wait_for_metric(&self, line: &str) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.probe_port);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let started = Instant::now();
        loop {
            let text = runtime.block_on(async {
                match reqwest::get(&url).await {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            });
            if text.lines().any(|l| l == line) || started.elapsed() > Duration::from_secs(10) {
                return text;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// One scrape of `/metrics` (empty if the operator does not answer).
    pub fn metrics(&self) -> String {
        let url = format!("http://127.0.0.1:{}/metrics", self.probe_port);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                match reqwest::get(&url).await {
                    Ok(response) => response.text().await.unwrap_or_default(),
                    Err(_) => String::new(),
                }
            })
    }

    /// The operator process's peak resident memory so far (`VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> u64 {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmHWM in {path}:\n{status}"));
        kib * 1024
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn job(apiserver: &KubeApiServer, name: &str) -> Value {
    let text = apiserver.kubectl_ok(&["get", "trainingjob", name, "-o", "json"]);
    serde_json::from_str(&text).expect("kubectl prints JSON")
}

pub fn wait_for(
    apiserver: &KubeApiServer,
    operator: &mut Operator,
    name: &str,
    what: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let started = Instant::now();
    loop {
        let current = job(apiserver, name);
        if done(&current) {
            return current;
        }
        if let Ok(Some(exit)) = operator.child.try_wait() {
            panic!("the operator exited ({exit}):\n{}", operator.log());
        }
        assert!(
            started.elapsed() < limit,
            "{name} not {what} within {limit:?}; status {}\noperator log:\n{}",
            current["status"],
            operator.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Epochs 1..=n each recorded once, and a spend that is exactly the sum of the epochs' costs.
pub fn assert_every_epoch_once(status: &Value, epochs: u64) {
    let history = status["history"].as_array().cloned().unwrap_or_default();
    let recorded: Vec<u64> = history.iter().filter_map(|r| r["epoch"].as_u64()).collect();
    assert_eq!(
        recorded,
        (1..=epochs).collect::<Vec<u64>>(),
        "no epoch lost or repeated"
    );
    let summed: f64 = history.iter().filter_map(|r| r["costUsd"].as_f64()).sum();
    let charged = status["costUsd"].as_f64().unwrap_or(0.0);
    assert!(
        (summed - charged).abs() < 1e-9,
        "cost charged once per epoch: history sums to {summed}, status says {charged}"
    );
}

pub fn phase(job: &Value) -> &str {
    job["status"]["phase"].as_str().unwrap_or("")
}

pub fn event_reasons(apiserver: &KubeApiServer, name: &str) -> Vec<String> {
    let text = apiserver.kubectl_ok(&["get", "events", "-o", "json"]);
    let events: Value = serde_json::from_str(&text).expect("events JSON");
    events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["name"] == name)
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect()
}

pub fn redis_keys(redis: &RedisServer, job: &str) -> Vec<String> {
    let mut connection = redis.raw();
    redis::cmd("KEYS")
        .arg(format!("siren:{job}:*"))
        .query(&mut connection)
        .expect("KEYS")
}

pub fn install_crd(apiserver: &KubeApiServer) {
    let crd = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/trainingjob.yaml");
    apiserver.kubectl_ok(&["apply", "-f", crd]);
    apiserver.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/trainingjobs.siren.dev",
    ]);
}

/// Waits until the job `name` is in `wanted` phase.
pub fn wait_for_phase(
    apiserver: &KubeApiServer,
    operator: &mut Operator,
    name: &str,
    wanted: &str,
    limit: Duration,
) -> Value {
    wait_for(apiserver, operator, name, wanted, limit, |job| {
        phase(job) == wanted
    })
}

/// The job's condition of `type_`, which must be there.
pub fn condition(job: &Value, type_: &str) -> Value {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} condition in {}", job["status"]))
}

/// A small synthetic job on `backend` (YAML flow, e.g. `{kind: process}`) with a Redis store.
pub fn job_manifest(name: &str, epochs: u32, backend: &str, redis: &RedisServer) -> String {
    format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: {name}
spec:
  model: {{kind: mlp, hidden: [32]}}
  dataset:
    synthetic: {{samples: 3000, testSamples: 500, features: 20, classes: 4, noise: 0.8, seed: 3}}
    shardSize: 250
  training: {{batchSize: 32, learningRate: 0.02, maxEpochs: {epochs}, seed: 7}}
  scheduler: {{functions: 2, memoryMb: 1769}}
  backend: {backend}
  store: {{kind: redis, url: \"{url}\"}}
",
        url = redis.url()
    )
}
