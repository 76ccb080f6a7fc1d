//! Real `siren-worker` processes behind one loopback address, standing in for what a cluster puts
//! in front of a function's pods (Knative's activator and queue-proxy, OpenFaaS's gateway): each
//! request goes to a worker with nothing else to do, and waits while every worker is busy, as
//! `containerConcurrency: 1` makes Knative do.

use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use tokio::sync::Semaphore;

use crate::workspace_binary;

struct Worker {
    child: Child,
    url: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the pool's workers log, and how much.
#[derive(Default)]
struct Logging {
    level: Option<String>,
    file: Option<tempfile::NamedTempFile>,
}

/// A worker with `env` added to its environment: what its platform gives a function's container.
fn start_worker(env: &[(String, String)], logging: &Logging) -> Result<Worker, String> {
    let binary = workspace_binary("siren-worker");
    let stderr = match &logging.file {
        Some(file) => Stdio::from(
            std::fs::File::options()
                .append(true)
                .open(file.path())
                .map_err(|e| format!("cannot open the workers' log: {e}"))?,
        ),
        None => Stdio::inherit(),
    };
    let mut child = Command::new(&binary)
        .envs(env.iter().map(|(name, value)| (name, value)))
        .env("PORT", "0")
        .env("HOST", "127.0.0.1")
        .env("SIREN_LOG", logging.level.as_deref().unwrap_or("warn"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = String::new();
    reader
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the worker's address: {e}"))?;
    let address = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the worker printed `{}`", line.trim()))?
        .to_string();
    // Whatever the worker prints later must not meet a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
    Ok(Worker {
        child,
        url: format!("http://{address}"),
    })
}

#[derive(Default)]
struct Pool {
    workers: Vec<Worker>,
    idle: Vec<String>,
    free: Option<Arc<Semaphore>>,
}

/// A pool of worker processes; cloning shares it.
#[derive(Clone, Default)]
pub struct WorkerPool {
    pool: Arc<Mutex<Pool>>,
    http: reqwest::Client,
    logging: Arc<Logging>,
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

    /// Replaces the pool with `size` fresh (cold) workers, as a new revision or deployment gets,
    /// each with `env` in its environment.
    pub fn resize(&self, size: usize, env: &[(String, String)]) -> Result<(), String> {
        let workers = (0..size)
            .map(|_| start_worker(env, &self.logging))
            .collect::<Result<Vec<_>, _>>()?;
        let mut pool = self.pool.lock().map_err(|_| "pool poisoned")?;
        pool.idle = workers.iter().map(|w| w.url.clone()).collect();
        pool.workers = workers;
        pool.free = Some(Arc::new(Semaphore::new(size)));
        Ok(())
    }

    pub fn size(&self) -> usize {
        self.pool.lock().map(|p| p.workers.len()).unwrap_or(0)
    }

    /// Sends `body` to an idle worker, waiting for one, and answers what it answered.
    pub async fn forward(&self, body: Bytes) -> (StatusCode, Bytes) {
        let free = self.pool.lock().ok().and_then(|p| p.free.clone());
        let Some(free) = free else {
            return (StatusCode::SERVICE_UNAVAILABLE, Bytes::from("no replicas"));
        };
        let Ok(_permit) = free.acquire_owned().await else {
            return (StatusCode::SERVICE_UNAVAILABLE, Bytes::from("pool closed"));
        };
        let url = self.pool.lock().ok().and_then(|mut p| p.idle.pop());
        let Some(url) = url else {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                Bytes::from("no idle worker"),
            );
        };
        let answer = self.http.post(&url).body(body).send().await;
        let result = match answer {
            Ok(response) => {
                let status = StatusCode::from_u16(response.status().as_u16())
                    .unwrap_or(StatusCode::BAD_GATEWAY);
                (status, response.bytes().await.unwrap_or_default())
            }
            Err(error) => (StatusCode::BAD_GATEWAY, Bytes::from(error.to_string())),
        };
        if let Ok(mut pool) = self.pool.lock()
            && pool.workers.iter().any(|w| w.url == url)
        {
            pool.idle.push(url);
        }
        result
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
