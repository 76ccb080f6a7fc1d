//! The `process` backend: a pool of real `siren-worker` processes on loopback ports, as the pods
//! behind a Knative Service would be, invoked over HTTP. A function's memory size becomes its CPU
//! share: the compute threads each task may use (its vCPUs rounded, at least one, at most this
//! machine's cores), as the local backend does; the processes are not otherwise confined.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use siren_crds::TASK_KEY_ENV;
use siren_scheduler::Action;
use siren_store::{STORE_CA_FILE_ENV, STORE_PASSWORD_ENV, STORE_USERNAME_ENV};

use super::http::run_over_http;
use super::{Assignment, BackendError, FunctionBackend, FunctionSecrets, Invocation, PoolLimits};

/// How long a fresh worker process may take to answer its health check.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Where the `siren-worker` binary is: `$SIREN_WORKER_BIN`, else beside the running executable
/// (or its parent directory, for test binaries in `deps/`), else on `PATH`.
pub fn worker_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIREN_WORKER_BIN") {
        return PathBuf::from(path);
    }
    let beside = std::env::current_exe().ok().and_then(|exe| {
        exe.ancestors()
            .skip(1)
            .take(2)
            .map(|dir| dir.join("siren-worker"))
            .find(|candidate| candidate.is_file())
    });
    beside.unwrap_or_else(|| PathBuf::from("siren-worker"))
}

struct WorkerProcess {
    child: Child,
    url: String,
}

impl WorkerProcess {
    async fn start(binary: &Path, env: &[(&'static str, String)]) -> Result<Self, BackendError> {
        let mut command = Command::new(binary);
        // The job's secrets reach a worker as they reach a function in a cluster: through its
        // environment, never through a task.
        command.envs(env.iter().map(|(name, value)| (*name, value)));
        if std::env::var_os("SIREN_LOG").is_none() {
            // A pool of functions logging every start at info would drown the driver's output.
            command.env("SIREN_LOG", "warn");
        }
        // Port 0: the worker binds a free port itself and announces it, so no other program can
        // take the port between choosing it and binding it.
        let mut child = command
            .env("PORT", "0")
            .env("HOST", "127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                BackendError::platform(
                    format!(
                        "cannot start the worker {} (build it with `cargo build --release --bin siren-worker`, or set SIREN_WORKER_BIN)",
                        binary.display()
                    ),
                    e,
                )
            })?;
        let stdout = child.stdout.take();
        let mut process = Self {
            child,
            url: String::new(),
        };
        let address = stdout.map(announced_address).ok_or_else(|| {
            BackendError::platform("cannot start the worker", "its output is not connected")
        })?;
        process.url = match tokio::time::timeout(START_TIMEOUT, address).await {
            Ok(Ok(Ok(address))) => format!("http://{address}"),
            Ok(Ok(Err(problem))) => {
                return Err(BackendError::platform(
                    format!("the worker {} did not start", binary.display()),
                    problem,
                ));
            }
            Ok(Err(_)) | Err(_) => {
                return Err(BackendError::Unavailable(format!(
                    "the worker {} announced no address within {START_TIMEOUT:?}",
                    binary.display()
                )));
            }
        };
        Ok(process)
    }

    fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the worker's `listening on ADDRESS` line on a thread of its own, so that a worker that
/// hangs before binding costs a timeout rather than a blocked driver.
fn announced_address(
    stdout: std::process::ChildStdout,
) -> tokio::sync::oneshot::Receiver<Result<String, String>> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        let read = reader.read_line(&mut line);
        let announced = match read {
            Ok(0) => Err("it exited before listening".to_string()),
            Ok(_) => line
                .trim()
                .strip_prefix("listening on ")
                .map(str::to_string)
                .ok_or_else(|| format!("it printed `{}` instead of its address", line.trim())),
            Err(e) => Err(format!("its output cannot be read: {e}")),
        };
        let _ = sender.send(announced);
        // Whatever the worker prints later must not meet a closed pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    receiver
}

pub struct ProcessBackend {
    binary: PathBuf,
    functions: Vec<WorkerProcess>,
    memory_mb: u32,
    client: reqwest::Client,
    limits: PoolLimits,
    secrets: FunctionSecrets,
    env: Vec<(&'static str, String)>,
    /// The store's CA as a file for the workers, while they may need it.
    _ca_file: Option<tempfile::NamedTempFile>,
}

impl ProcessBackend {
    pub fn new(
        binary: PathBuf,
        limits: PoolLimits,
        secrets: FunctionSecrets,
    ) -> Result<Self, BackendError> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BackendError::platform("cannot build the HTTP client", e))?;
        let mut env = vec![(TASK_KEY_ENV, secrets.key.to_text())];
        if let Some(username) = &secrets.store.username {
            env.push((STORE_USERNAME_ENV, username.clone()));
        }
        if let Some(password) = &secrets.store.password {
            env.push((STORE_PASSWORD_ENV, password.clone()));
        }
        let ca_file = match &secrets.store.ca_pem {
            Some(pem) => {
                let mut file = tempfile::NamedTempFile::new().map_err(|e| {
                    BackendError::platform("cannot write the store's CA for the workers", e)
                })?;
                std::io::Write::write_all(&mut file, pem).map_err(|e| {
                    BackendError::platform("cannot write the store's CA for the workers", e)
                })?;
                env.push((STORE_CA_FILE_ENV, file.path().display().to_string()));
                Some(file)
            }
            None => None,
        };
        Ok(Self {
            binary,
            functions: Vec::new(),
            memory_mb: 0,
            client,
            limits,
            secrets,
            env,
            _ca_file: ca_file,
        })
    }

    /// Process ids of the pool, in slot order (for fault-injection tests and debugging).
    pub fn pids(&self) -> Vec<u32> {
        self.functions.iter().map(WorkerProcess::pid).collect()
    }

    /// Each function's URL, in slot order.
    pub fn urls(&self) -> Vec<String> {
        self.functions.iter().map(|f| f.url.clone()).collect()
    }

    async fn wait_until_healthy(&self, started: &[usize]) -> Result<(), BackendError> {
        let deadline = Instant::now() + START_TIMEOUT;
        for &slot in started {
            let url = format!("{}/healthz", self.functions[slot].url);
            loop {
                let ok = self
                    .client
                    .get(&url)
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    return Err(BackendError::Unavailable(format!(
                        "the worker at {url} did not become healthy within {START_TIMEOUT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Starts `count` workers at once: scaling up takes the slowest start, not the sum.
    async fn start_workers(&self, count: usize) -> Result<Vec<WorkerProcess>, BackendError> {
        futures::future::try_join_all(
            (0..count).map(|_| WorkerProcess::start(&self.binary, &self.env)),
        )
        .await
    }

    /// Replaces dead processes (a crashed or killed function) with fresh, cold ones.
    async fn replace_dead(&mut self) -> Result<(), BackendError> {
        let dead: Vec<usize> = (0..self.functions.len())
            .filter(|slot| !self.functions[*slot].is_running())
            .collect();
        for slot in &dead {
            tracing::warn!(slot, "a worker process died; starting a new one");
        }
        let fresh = self.start_workers(dead.len()).await?;
        for (slot, worker) in dead.iter().zip(fresh) {
            self.functions[*slot] = worker;
        }
        self.wait_until_healthy(&dead).await
    }
}

#[async_trait]
impl FunctionBackend for ProcessBackend {
    fn name(&self) -> &'static str {
        "process"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        if action.memory_mb != self.memory_mb {
            // A new memory size is a new function configuration: every instance starts cold.
            self.functions.clear();
            self.memory_mb = action.memory_mb;
        }
        self.functions.truncate(action.functions as usize);
        let started: Vec<usize> = (self.functions.len()..action.functions as usize).collect();
        let fresh = self.start_workers(started.len()).await?;
        self.functions.extend(fresh);
        self.wait_until_healthy(&started).await?;
        self.replace_dead().await
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        if let Err(error) = self.replace_dead().await {
            tracing::error!(%error, "cannot replace dead workers");
        }
        let urls: Vec<String> = self.functions.iter().map(|f| f.url.clone()).collect();
        run_over_http(
            &self.client,
            urls,
            self.limits,
            assignments,
            progress,
            &self.secrets.key,
        )
        .await
    }

    /// Stops the worker processes (a process ends when its handle drops).
    async fn release(&mut self) -> Result<(), BackendError> {
        self.functions.clear();
        self.memory_mb = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start_failure(binary: &str) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        match runtime.block_on(WorkerProcess::start(Path::new(binary), &[])) {
            Ok(_) => panic!("{binary} is not a worker"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn a_worker_that_exits_before_listening_is_a_clear_error() {
        let error = start_failure("true");
        assert!(error.contains("exited before listening"), "{error}");
    }

    #[test]
    fn a_worker_that_announces_no_address_is_a_clear_error() {
        // `echo` prints its arguments (none) and a newline: a line that is not an address.
        let error = start_failure("echo");
        assert!(error.contains("instead of its address"), "{error}");
    }

    #[test]
    fn a_missing_worker_binary_says_how_to_build_it() {
        let error = start_failure("/nonexistent/siren-worker");
        assert!(error.contains("SIREN_WORKER_BIN"), "{error}");
    }
}
