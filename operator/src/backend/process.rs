//! The `process` backend: a pool of real `siren-worker` processes on loopback ports, as the pods
//! behind a Knative Service would be, invoked over HTTP. A function's memory size becomes its CPU
//! share: the compute threads each task may use (its vCPUs rounded, at least one, at most this
//! machine's cores), as the local backend does; the processes are not otherwise confined.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use siren_crds::{Task, TaskResult};
use siren_scheduler::Action;
use siren_worker::TaskError;
use siren_worker::function::FunctionError;

use super::{Assignment, BackendError, FunctionBackend, Invocation};

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

/// Time limits of the pool.
#[derive(Debug, Clone, Copy)]
pub struct ProcessLimits {
    /// A task still running after this long is abandoned (and retried elsewhere).
    pub task_timeout: Duration,
    /// Once every other task of the epoch has finished, a task still running this many times the
    /// median task's duration later is dispatched again on an idle function; the first answer
    /// counts.
    pub straggler_factor: f64,
}

struct WorkerProcess {
    child: Child,
    url: String,
}

impl WorkerProcess {
    async fn start(binary: &Path) -> Result<Self, BackendError> {
        let mut command = Command::new(binary);
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
                BackendError::Scale(format!(
                    "cannot start the worker {}: {e} (build it with `cargo build --release --bin siren-worker`, or set SIREN_WORKER_BIN)",
                    binary.display()
                ))
            })?;
        let stdout = child.stdout.take();
        let mut process = Self {
            child,
            url: String::new(),
        };
        let address = stdout.map(announced_address).ok_or_else(|| {
            BackendError::Scale("the worker's output is not connected".to_string())
        })?;
        process.url = match tokio::time::timeout(START_TIMEOUT, address).await {
            Ok(Ok(Ok(address))) => format!("http://{address}"),
            Ok(Ok(Err(problem))) => {
                return Err(BackendError::Scale(format!(
                    "the worker {} did not start: {problem}",
                    binary.display()
                )));
            }
            Ok(Err(_)) | Err(_) => {
                return Err(BackendError::Scale(format!(
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
        let read = std::io::BufReader::new(stdout).read_line(&mut line);
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
    });
    receiver
}

pub struct ProcessBackend {
    binary: PathBuf,
    functions: Vec<WorkerProcess>,
    memory_mb: u32,
    client: reqwest::Client,
    limits: ProcessLimits,
}

impl ProcessBackend {
    pub fn new(binary: PathBuf, limits: ProcessLimits) -> Result<Self, BackendError> {
        let client = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BackendError::Scale(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            binary,
            functions: Vec::new(),
            memory_mb: 0,
            client,
            limits,
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
                    return Err(BackendError::Scale(format!(
                        "the worker at {url} did not become healthy within {START_TIMEOUT:?}"
                    )));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        Ok(())
    }

    /// Replaces dead processes (a crashed or killed function) with fresh, cold ones.
    async fn replace_dead(&mut self) -> Result<(), BackendError> {
        let mut started = Vec::new();
        for slot in 0..self.functions.len() {
            if !self.functions[slot].is_running() {
                tracing::warn!(slot, "a worker process died; starting a new one");
                self.functions[slot] = WorkerProcess::start(&self.binary).await?;
                started.push(slot);
            }
        }
        self.wait_until_healthy(&started).await
    }
}

type Running = std::pin::Pin<
    Box<dyn Future<Output = (usize, usize, Result<TaskResult, TaskError>, f64)> + Send>,
>;

/// Invokes `task` on the function at `url` as the `slot`'s work for assignment `position`.
fn dispatch(
    client: &reqwest::Client,
    url: &str,
    task: Task,
    (slot, position): (usize, usize),
    timeout: Duration,
) -> Running {
    let (client, url) = (client.clone(), url.to_string());
    Box::pin(async move {
        let started = Instant::now();
        let result = invoke(client, url, task, timeout).await;
        (slot, position, result, started.elapsed().as_secs_f64())
    })
}

/// What an HTTP invocation came to.
async fn invoke(
    client: reqwest::Client,
    url: String,
    task: Task,
    timeout: Duration,
) -> Result<TaskResult, TaskError> {
    let response = client
        .post(&url)
        .timeout(timeout)
        .json(&task)
        .send()
        .await
        .map_err(|e| TaskError::Crashed(format!("invoking {url}: {e}")))?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| TaskError::Crashed(format!("reading the answer of {url}: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            TaskError::Crashed(format!(
                "{url} answered something that is not a result: {e}"
            ))
        });
    }
    let error: FunctionError = serde_json::from_slice(&bytes).unwrap_or_else(|_| FunctionError {
        error: String::from_utf8_lossy(&bytes).into_owned(),
        retryable: status.is_server_error() || status.as_u16() == 429,
    });
    let message = format!("{url} answered {status}: {}", error.error);
    Err(if error.retryable {
        TaskError::Crashed(message)
    } else {
        TaskError::Invalid(message)
    })
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
        let mut started = Vec::new();
        while self.functions.len() < action.functions as usize {
            started.push(self.functions.len());
            self.functions
                .push(WorkerProcess::start(&self.binary).await?);
        }
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
        if self.functions.is_empty() {
            return assignments
                .into_iter()
                .map(|assignment| Invocation {
                    task_id: assignment.task.task_id,
                    slot: assignment.slot,
                    result: Err(TaskError::Crashed("the pool has no functions".into())),
                    billed_seconds: 0.0,
                })
                .collect();
        }
        let slots = self.functions.len();
        let urls: Vec<String> = self.functions.iter().map(|f| f.url.clone()).collect();
        let timeout = self.limits.task_timeout;
        // One slot runs one task at a time: assignments of a busy slot wait for it.
        let mut queues: Vec<Vec<usize>> = vec![Vec::new(); slots];
        for (position, assignment) in assignments.iter().enumerate() {
            queues[assignment.slot % slots].push(position);
        }
        let mut answers: Vec<Option<Invocation>> = (0..assignments.len()).map(|_| None).collect();
        let mut extra_billed = vec![0.0f64; assignments.len()];
        let mut copies = vec![0u32; assignments.len()];
        let mut in_flight = vec![0u32; assignments.len()];
        let mut launched_at: Vec<Option<Instant>> = vec![None; assignments.len()];
        let mut busy = vec![false; slots];
        let mut durations: Vec<f64> = Vec::new();
        let mut running: FuturesUnordered<Running> = FuturesUnordered::new();
        let client = self.client.clone();
        // Counts the copy, marks its function busy and starts it.
        macro_rules! launch {
            ($slot:expr, $position:expr) => {{
                let (slot, position): (usize, usize) = ($slot, $position);
                copies[position] += 1;
                in_flight[position] += 1;
                launched_at[position] = Some(Instant::now());
                busy[slot] = true;
                running.push(dispatch(
                    &client,
                    &urls[slot],
                    assignments[position].task.clone(),
                    (slot, position),
                    timeout,
                ));
            }};
        }
        for (slot, queue) in queues.iter_mut().enumerate() {
            if !queue.is_empty() {
                let position = queue.remove(0);
                launch!(slot, position);
            }
        }
        let mut watch = tokio::time::interval(Duration::from_millis(50));
        while !running.is_empty() {
            let finished = tokio::select! {
                finished = running.next() => finished,
                _ = watch.tick() => None,
            };
            if let Some((slot, position, result, seconds)) = finished {
                busy[slot] = false;
                in_flight[position] -= 1;
                // The first success counts; a failure counts only once no copy is left running.
                // Every other invocation is billed and never counted.
                let settles =
                    answers[position].is_none() && (result.is_ok() || in_flight[position] == 0);
                if settles {
                    if let Ok(result) = &result {
                        progress.fetch_add(result.samples, Ordering::Relaxed);
                        durations.push(seconds);
                    }
                    answers[position] = Some(Invocation {
                        task_id: assignments[position].task.task_id.clone(),
                        slot,
                        result,
                        billed_seconds: seconds,
                    });
                } else {
                    extra_billed[position] += seconds;
                }
                if !queues[slot].is_empty() {
                    let next = queues[slot].remove(0);
                    launch!(slot, next);
                }
            }
            if answers.iter().all(Option::is_some) {
                // Copies still running lost the race: they are billed until now and abandoned
                // (their functions finish them and stay busy meanwhile).
                for position in 0..assignments.len() {
                    if in_flight[position] > 0
                        && let Some(started) = launched_at[position]
                    {
                        extra_billed[position] += started.elapsed().as_secs_f64();
                    }
                }
                break;
            }
            // Straggler handling: nothing is queued any more and a task has run for much longer
            // than the typical one took; an idle function runs it again.
            if queues.iter().all(Vec::is_empty) && !durations.is_empty() {
                let mut sorted = durations.clone();
                sorted.sort_by(f64::total_cmp);
                let median = sorted[sorted.len() / 2];
                let patience = median * self.limits.straggler_factor;
                let late: Vec<usize> = (0..assignments.len())
                    .filter(|p| {
                        answers[*p].is_none()
                            && copies[*p] < 2
                            && launched_at[*p].is_some_and(|t| t.elapsed().as_secs_f64() > patience)
                    })
                    .collect();
                for position in late {
                    let Some(idle) = (0..slots).find(|s| !busy[*s]) else {
                        break;
                    };
                    tracing::info!(
                        task = %assignments[position].task.task_id,
                        slot = idle,
                        "straggler: dispatching the task again on an idle function"
                    );
                    launch!(idle, position);
                }
            }
        }
        answers
            .into_iter()
            .zip(extra_billed)
            .zip(assignments)
            .map(|((answer, extra), assignment)| match answer {
                Some(mut invocation) => {
                    invocation.billed_seconds += extra;
                    invocation
                }
                None => Invocation {
                    task_id: assignment.task.task_id,
                    slot: assignment.slot,
                    result: Err(TaskError::Crashed("no function answered".into())),
                    billed_seconds: extra,
                },
            })
            .collect()
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
        match runtime.block_on(WorkerProcess::start(Path::new(binary))) {
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
