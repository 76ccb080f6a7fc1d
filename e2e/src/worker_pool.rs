//! Real `siren-worker`s behind one loopback address, standing in for what a cluster puts in front
//! of a function's pods (Knative's activator and queue-proxy, OpenFaaS's gateway): each request goes
//! to a worker with nothing else to do, and waits while every worker is busy, as
//! `containerConcurrency: 1` makes Knative do.
//!
//! The workers are processes of the workspace's binary, or, when `SIREN_E2E_WORKER_IMAGE` names
//! an image, containers of it run by podman with what Kubernetes gives a hardened function pod: a
//! read-only root, no capabilities, a non-root user, and the function's memory and CPU limits.

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::FunctionLimits;
use crate::workspace_binary;

/// Names the image to run workers from as containers; unset or empty, they are processes.
pub const WORKER_IMAGE_ENV: &str = "SIREN_E2E_WORKER_IMAGE";

/// The images' `nonroot` user (scripts/build-images.sh), as a pod's `runAsUser` would set it.
const CONTAINER_USER: &str = "65532:65532";

/// What a platform gives every replica of a function.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSpec {
    /// Added to the worker's environment (`PORT`, `HOST` and `SIREN_LOG` are the pool's).
    pub env: Vec<(String, String)>,
    /// Enforced on containers; recorded, not enforced, for processes.
    pub limits: FunctionLimits,
    /// Host directories a container sees read-only at the same path, so that paths in `env`
    /// hold in either mode (a process sees them anyway).
    pub mounts: Vec<PathBuf>,
}

/// A worker the pool started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StartedWorker {
    pub name: String,
    pub url: String,
    /// Whether it ran as a container (else as a process).
    pub container: bool,
    /// The limits its platform asked for.
    pub limits: FunctionLimits,
    /// What podman reports the container got (`podman inspect`); `None` for a process.
    pub applied: Option<FunctionLimits>,
}

/// One request the pool forwarded, and how it ended.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The name of the worker it went to.
    pub worker: String,
    pub request: Bytes,
    /// The status the pool answered: the worker's, or 502 when the worker never answered.
    pub status: u16,
}

/// A worker [`WorkerPool::kill_busy_worker`] killed while it served a request.
#[derive(Clone, Debug)]
pub struct Killed {
    pub worker: String,
    pub url: String,
    /// The request it was serving.
    pub request: Bytes,
    /// The name of the worker started in its place.
    pub replacement: String,
}

/// How the pool runs its workers.
#[derive(Clone, Debug)]
enum Isolation {
    Process,
    Container { image: String },
}

impl Isolation {
    fn from_env() -> Self {
        match std::env::var(WORKER_IMAGE_ENV) {
            Ok(image) if !image.trim().is_empty() => Self::Container {
                image: image.trim().to_string(),
            },
            _ => Self::Process,
        }
    }
}

/// A request a worker is serving.
struct Busy {
    since: Instant,
    request: Bytes,
}

struct Worker {
    name: String,
    url: String,
    child: Child,
    /// `podman run`'s client, whose death leaves the container running: it is removed by name.
    container: bool,
    busy: Option<Busy>,
}

impl Worker {
    /// SIGKILL, as an out-of-memory kill or a crash ends a container, with no chance to answer.
    fn kill(&mut self) -> Result<(), String> {
        if !self.container {
            return self
                .child
                .kill()
                .map_err(|e| format!("cannot kill {}: {e}", self.name));
        }
        let output = Command::new("podman")
            .args(["kill", "--signal", "KILL", self.name.as_str()])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run podman kill: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "podman kill {} ended with {}: {}",
                self.name,
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.container {
            let _ = Command::new("podman")
                .args(["rm", "--force", "--time", "0", self.name.as_str()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            // The client exits by itself once its container is gone; killing it sooner could cut
            // its own cleanup short.
            let _ = exit_within(&mut self.child, Duration::from_secs(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's exit status, if it exits within `limit`.
fn exit_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if started.elapsed() < limit => std::thread::sleep(Duration::from_millis(20)),
            _ => return None,
        }
    }
}

/// Unique among the pool's workers and, with the process id, among parallel test binaries'
/// containers.
fn worker_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "siren-e2e-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where the pool's workers log, and how much.
#[derive(Default)]
struct Logging {
    level: Option<String>,
    file: Option<tempfile::NamedTempFile>,
}

/// The `podman run` arguments of a worker container: the pod a hardened function gets.
fn container_args(
    name: &str,
    image: &str,
    spec: &WorkerSpec,
    env: &[(String, String)],
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--name",
        name,
        "--network",
        "host",
        "--read-only",
        "--read-only-tmpfs=false",
        "--tmpfs",
        "/tmp:rw,mode=1777",
        "--cap-drop",
        "all",
        "--security-opt",
        "no-new-privileges",
        "--user",
        CONTAINER_USER,
        // A kubelet passes no proxy variables of the node's into a pod; podman would.
        "--http-proxy=false",
        // The image is built here; a missing one must fail at once, not wait on a registry.
        "--pull=never",
    ]
    .map(String::from)
    .into();
    args.extend(spec.limits.podman_args());
    for dir in &spec.mounts {
        let dir = dir.display();
        args.extend(["--volume".to_string(), format!("{dir}:{dir}:ro")]);
    }
    // Names only: podman takes each value from its own environment, which keeps secrets (the
    // task key, store credentials) out of command lines that `ps` shows.
    for (variable, _) in env {
        args.extend(["--env".to_string(), variable.clone()]);
    }
    args.push(image.to_string());
    args
}

/// A worker with `spec`: what its platform gives a function's container.
fn start_worker(
    isolation: &Isolation,
    spec: &WorkerSpec,
    logging: &Logging,
) -> Result<Worker, String> {
    let name = worker_name();
    let mut env = spec.env.clone();
    let level = logging.level.as_deref().unwrap_or("warn");
    for (variable, value) in [("PORT", "0"), ("HOST", "127.0.0.1"), ("SIREN_LOG", level)] {
        env.retain(|(existing, _)| existing != variable);
        env.push((variable.to_string(), value.to_string()));
    }
    let stderr = match &logging.file {
        Some(file) => Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(file.path())
                .map_err(|e| format!("cannot open the workers' log: {e}"))?,
        ),
        None => Stdio::inherit(),
    };
    let (mut command, container) = match isolation {
        Isolation::Process => (Command::new(workspace_binary("siren-worker")), false),
        Isolation::Container { image } => {
            let mut command = Command::new("podman");
            command.args(container_args(&name, image, spec, &env));
            (command, true)
        }
    };
    let program = command.get_program().to_string_lossy().into_owned();
    let child = command
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    // Owned from here, so that a worker that fails to come up is stopped (and its container
    // removed) on the way out.
    let mut worker = Worker {
        name,
        url: String::new(),
        child,
        container,
        busy: None,
    };
    let stdout = worker.child.stdout.take().ok_or("no stdout")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the address of {}: {e}", worker.name))?;
    let Some(address) = line.trim().strip_prefix("listening on ") else {
        if !line.is_empty() {
            return Err(format!("{} printed `{}`", worker.name, line.trim()));
        }
        let exit = exit_within(&mut worker.child, Duration::from_secs(5)).map_or_else(
            || "closed its output".to_string(),
            |s| format!("exited with {s}"),
        );
        return Err(format!(
            "{} ({program}) {exit} before it listened",
            worker.name
        ));
    };
    worker.url = format!("http://{address}");
    // Whatever the worker prints later must not meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok(worker)
}

/// The limits podman applied to the container `name`.
fn applied_limits(name: &str) -> Result<FunctionLimits, String> {
    let output = Command::new("podman")
        .args([
            "inspect",
            "--format",
            "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}",
            name,
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run podman inspect: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "podman inspect {name} ended with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    match (fields.next(), fields.next()) {
        (Some(Ok(memory)), Some(Ok(nano_cpus))) => {
            Ok(FunctionLimits::from_podman(memory, nano_cpus))
        }
        _ => Err(format!("podman inspect {name} printed `{}`", text.trim())),
    }
}

#[derive(Default)]
struct Pool {
    workers: Vec<Worker>,
    /// One permit per idle worker of the current generation.
    free: Option<Arc<Semaphore>>,
    /// Bumped by every resize: a worker started for an older one must not join.
    generation: u64,
    spec: WorkerSpec,
    started: Vec<StartedWorker>,
    deliveries: Vec<Delivery>,
    kills: usize,
}

/// What a request that holds a permit finds.
enum Claim {
    Worker {
        name: String,
        url: String,
    },
    /// The pool was resized while the request waited: its permit counts workers that are gone.
    Resized,
    Nobody,
}

/// A pool of workers; cloning shares it.
#[derive(Clone)]
pub struct WorkerPool {
    pool: Arc<Mutex<Pool>>,
    http: reqwest::Client,
    logging: Arc<Logging>,
    isolation: Arc<Isolation>,
}

impl Default for WorkerPool {
    /// Processes, or containers when `SIREN_E2E_WORKER_IMAGE` names an image.
    fn default() -> Self {
        Self {
            pool: Arc::default(),
            http: reqwest::Client::default(),
            logging: Arc::default(),
            isolation: Arc::new(Isolation::from_env()),
        }
    }
}

impl WorkerPool {
    /// A pool whose workers log at `level` into one file the test can read ([`WorkerPool::log`]).
    pub fn logging(level: &str) -> Self {
        Self {
            logging: Arc::new(Logging {
                level: Some(level.to_string()),
                file: Some(tempfile::NamedTempFile::new().expect("a log file for the workers")),
            }),
            ..Self::default()
        }
    }

    /// Everything the pool's workers logged, when it logs to a file.
    pub fn log(&self) -> String {
        self.logging
            .file
            .as_ref()
            .and_then(|file| std::fs::read_to_string(file.path()).ok())
            .unwrap_or_default()
    }

    /// Whether the workers run as containers (else as processes).
    pub fn is_container(&self) -> bool {
        matches!(*self.isolation, Isolation::Container { .. })
    }

    /// A panicking test thread must not take the pool's bookkeeping down with it.
    fn state(&self) -> MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces the pool with `size` fresh (cold) workers of `spec`, as a new revision or
    /// deployment gets.
    pub fn resize(&self, size: usize, spec: &WorkerSpec) -> Result<(), String> {
        let mut workers = Vec::with_capacity(size);
        for _ in 0..size {
            workers.push(self.start(spec)?);
        }
        let replaced = {
            let mut pool = self.state();
            pool.generation += 1;
            pool.spec = spec.clone();
            // Requests waiting for the old workers wake up and wait for the new ones.
            if let Some(old) = pool.free.replace(Arc::new(Semaphore::new(size))) {
                old.close();
            }
            std::mem::replace(&mut pool.workers, workers)
        };
        // Removing containers takes podman a while: not while requests wait for the lock.
        drop(replaced);
        Ok(())
    }

    fn start(&self, spec: &WorkerSpec) -> Result<Worker, String> {
        let worker = start_worker(&self.isolation, spec, &self.logging)?;
        let applied = if worker.container {
            Some(applied_limits(&worker.name)?)
        } else {
            None
        };
        self.state().started.push(StartedWorker {
            name: worker.name.clone(),
            url: worker.url.clone(),
            container: worker.container,
            limits: spec.limits,
            applied,
        });
        Ok(worker)
    }

    pub fn size(&self) -> usize {
        self.state().workers.len()
    }

    /// Workers serving a request now.
    pub fn busy(&self) -> usize {
        self.state()
            .workers
            .iter()
            .filter(|w| w.busy.is_some())
            .count()
    }

    /// The limits of the last resize's workers.
    pub fn limits(&self) -> FunctionLimits {
        self.state().spec.limits
    }

    /// Every worker started so far, replacements included, in order.
    pub fn started(&self) -> Vec<StartedWorker> {
        self.state().started.clone()
    }

    /// Every request forwarded so far, in the order they ended.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state().deliveries.clone()
    }

    /// Workers killed by [`WorkerPool::kill_busy_worker`].
    pub fn kills(&self) -> usize {
        self.state().kills
    }

    /// Kills the worker that has been serving its request the longest (`None` when none is
    /// busy) and starts another with the same spec in its place, as the kubelet restarts a
    /// Deployment's crashed container. The request it served fails as a crash makes it fail:
    /// its connection drops and the pool answers 502. The dead worker is never handed a request
    /// again, and the pool keeps its size.
    pub fn kill_busy_worker(&self) -> Result<Option<Killed>, String> {
        let (mut worker, spec, generation) = {
            let mut pool = self.state();
            let longest = pool
                .workers
                .iter()
                .enumerate()
                .filter_map(|(index, w)| w.busy.as_ref().map(|busy| (busy.since, index)))
                .min();
            let Some((_, index)) = longest else {
                return Ok(None);
            };
            pool.kills += 1;
            let worker = pool.workers.remove(index);
            (worker, pool.spec.clone(), pool.generation)
        };
        let request = worker
            .busy
            .as_ref()
            .map(|busy| busy.request.clone())
            .unwrap_or_default();
        let (name, url) = (worker.name.clone(), worker.url.clone());
        let killed = worker.kill();
        // Reaps the process, or removes the container.
        drop(worker);
        killed?;
        let fresh = self.start(&spec)?;
        let replacement = fresh.name.clone();
        let stale = {
            let mut pool = self.state();
            if pool.generation == generation {
                pool.workers.push(fresh);
                // The killed worker's permit is forgotten when its request ends: this one is the
                // replacement's.
                if let Some(free) = &pool.free {
                    free.add_permits(1);
                }
                None
            } else {
                Some(fresh)
            }
        };
        drop(stale);
        Ok(Some(Killed {
            worker: name,
            url,
            request,
            replacement,
        }))
    }

    fn claim(&self, permit_of: &Arc<Semaphore>, request: &Bytes) -> Claim {
        let mut pool = self.state();
        if !pool
            .free
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, permit_of))
        {
            return Claim::Resized;
        }
        match pool.workers.iter_mut().rev().find(|w| w.busy.is_none()) {
            Some(worker) => {
                worker.busy = Some(Busy {
                    since: Instant::now(),
                    request: request.clone(),
                });
                Claim::Worker {
                    name: worker.name.clone(),
                    url: worker.url.clone(),
                }
            }
            None => Claim::Nobody,
        }
    }

    /// Waits for an idle worker and marks it busy with `request`.
    async fn take_idle(
        &self,
        request: &Bytes,
    ) -> Result<(OwnedSemaphorePermit, String, String), (StatusCode, Bytes)> {
        loop {
            let free = self.state().free.clone();
            let Some(free) = free else {
                return Err((StatusCode::SERVICE_UNAVAILABLE, Bytes::from("no replicas")));
            };
            // Closed by a resize: wait on the new workers' permits instead.
            let Ok(permit) = free.clone().acquire_owned().await else {
                continue;
            };
            match self.claim(&free, request) {
                Claim::Worker { name, url } => return Ok((permit, name, url)),
                Claim::Resized => continue,
                Claim::Nobody => {
                    return Err((
                        StatusCode::SERVICE_UNAVAILABLE,
                        Bytes::from("no idle worker"),
                    ));
                }
            }
        }
    }

    /// Sends `body` to an idle worker, waiting for one, and answers what it answered.
    pub async fn forward(&self, body: Bytes) -> (StatusCode, Bytes) {
        let (permit, name, url) = match self.take_idle(&body).await {
            Ok(taken) => taken,
            Err(answer) => return answer,
        };
        let answer = self.http.post(&url).body(body.clone()).send().await;
        let (status, response) = match answer {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                match response.bytes().await {
                    Ok(bytes) => (status, bytes),
                    // Cut off mid-answer: the worker died while it answered.
                    Err(error) => (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string())),
                }
            }
            Err(error) => (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string())),
        };
        let mut pool = self.state();
        pool.deliveries.push(Delivery {
            worker: name.clone(),
            request: body,
            status: status.as_u16(),
        });
        match pool.workers.iter_mut().find(|w| w.name == name) {
            Some(worker) => worker.busy = None,
            // Killed (its replacement brought a permit of its own) or gone with a resize (whose
            // semaphore is closed): this permit stands for no idle worker.
            None => permit.forget(),
        }
        (status, response)
    }
}

/// Serves `router` on a free loopback port from a thread of its own (so that synchronous tests can
/// use it too) until the returned guard is dropped.
pub fn serve(router: Router) -> (SocketAddr, ServerGuard) {
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime for the fake platform");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let _ = address_tx.send(listener.local_addr().expect("an address"));
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                })
                .await;
        });
    });
    let address = address_rx.recv().expect("the fake platform listens");
    (
        address,
        ServerGuard {
            stop: Some(stop_tx),
            thread: Some(thread),
        },
    )
}

pub struct ServerGuard {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The pool behind its own loopback address: what a Knative Service's `status.address.url` leads
/// to.
pub struct PoolAddress {
    pub pool: WorkerPool,
    pub url: String,
    _server: ServerGuard,
}

impl PoolAddress {
    pub fn start() -> Self {
        let pool = WorkerPool::default();
        let router = Router::new()
            .route("/", post(invoke_pool))
            .with_state(pool.clone());
        let (address, server) = serve(router);
        Self {
            pool,
            url: format!("http://{address}"),
            _server: server,
        }
    }
}

async fn invoke_pool(State(pool): State<WorkerPool>, body: Bytes) -> impl IntoResponse {
    pool.forward(body).await
}
