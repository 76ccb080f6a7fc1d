//! The local backend: each function is an instance in this process with its own compute thread
//! pool sized by its CPU share, run on a blocking thread per task. Tasks reach functions through
//! the same slot scheduler as remote functions (one task at a time per function, straggler copies,
//! time limits). An in-memory store is shared with the driver; a network store gets one connection
//! per function, as separate function instances would have.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use async_trait::async_trait;
use siren_crds::{StoreKind, Task, TaskFailure, TaskResult};
use siren_scheduler::{Action, CostModel};
use siren_store::{ParameterStore, StoreCredentials, connect_store};
use siren_worker::{FunctionState, TaskError};

use super::slots::run_on_slots;
use super::{Assignment, BackendError, FunctionBackend, Invocation, PoolLimits};

/// One function instance: its warm state, compute threads, event loop and (for network stores) its
/// own store connection, all kept while it stays warm.
struct LocalFunction {
    state: FunctionState,
    pool: Arc<rayon::ThreadPool>,
    runtime: FunctionRuntime,
    store: Option<Arc<dyn ParameterStore>>,
    store_credentials: StoreCredentials,
}

/// A function's event loop. Functions are dropped by the async driver (scaling down, or at the end
/// of a job), where a runtime may not block to shut down: it is let go in the background instead.
struct FunctionRuntime(Option<tokio::runtime::Runtime>);

impl FunctionRuntime {
    fn block_on<F: Future>(&self, future: F) -> Result<F::Output, TaskError> {
        match &self.0 {
            Some(runtime) => Ok(runtime.block_on(future)),
            None => Err(TaskError::Crashed("the function's runtime is gone".into())),
        }
    }
}

impl Drop for FunctionRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

pub struct LocalBackend {
    /// Shared with the blocking threads their tasks run on.
    functions: Vec<Arc<Mutex<LocalFunction>>>,
    memory_mb: u32,
    threads: usize,
    store: Arc<dyn ParameterStore>,
    cost_model: Arc<dyn CostModel>,
    limits: PoolLimits,
    cores: usize,
    store_credentials: StoreCredentials,
}

impl LocalBackend {
    pub fn new(
        store: Arc<dyn ParameterStore>,
        cost_model: Arc<dyn CostModel>,
        limits: PoolLimits,
    ) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            functions: Vec::new(),
            memory_mb: 0,
            threads: 1,
            store,
            cost_model,
            limits,
            cores,
            store_credentials: StoreCredentials::default(),
        }
    }

    /// Functions that connect to a network store themselves do so with `credentials`.
    pub fn with_store_credentials(mut self, credentials: StoreCredentials) -> Self {
        self.store_credentials = credentials;
        self
    }

    /// Compute threads for a memory size: its vCPU share rounded, at least one, and never more
    /// than this machine has (a function cannot use cores that are not there).
    pub fn threads_for(&self, memory_mb: u32) -> usize {
        (self.cost_model.vcpus(memory_mb).round() as usize).clamp(1, self.cores)
    }

    fn new_function(&self) -> Result<LocalFunction, BackendError> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .thread_name(|i| format!("siren-fn-compute-{i}"))
            .build()
            .map_err(|e| BackendError::platform("cannot start compute threads", e))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::platform("cannot start a function runtime", e))?;
        Ok(LocalFunction {
            state: FunctionState::new(),
            pool: Arc::new(pool),
            runtime: FunctionRuntime(Some(runtime)),
            store: None,
            store_credentials: self.store_credentials.clone(),
        })
    }
}

/// Runs a task on a function: the driver's own store when it is in memory, otherwise the
/// function's connection to the store the task names (opened on its first task).
fn run_on_function(
    function: &mut LocalFunction,
    task: &Task,
    driver_store: &Arc<dyn ParameterStore>,
    progress: &AtomicU64,
) -> Result<TaskResult, TaskError> {
    let store = match (task.store.kind, &function.store) {
        (StoreKind::Memory, _) => Arc::clone(driver_store),
        (_, Some(store)) => Arc::clone(store),
        (_, None) => {
            let store = function.runtime.block_on(connect_store(
                &task.store,
                &task.job,
                &function.store_credentials,
            ))??;
            function.store = Some(Arc::clone(&store));
            store
        }
    };
    let pool = Arc::clone(&function.pool);
    let (state, runtime) = (&mut function.state, &function.runtime);
    let result =
        pool.install(|| runtime.block_on(state.run_task(task, store.as_ref(), Some(progress))))?;
    if result.as_ref().is_err_and(TaskError::is_retryable) {
        // The connection may be what failed (a restarted server, a dropped socket): the next task
        // on this function opens a fresh one.
        function.store = None;
    }
    result
}

/// One invocation on a blocking thread, as a platform would run it: a panic is the function's
/// crash, after which the instance starts afresh.
fn invoke_function(
    function: &Mutex<LocalFunction>,
    task: &Task,
    driver_store: &Arc<dyn ParameterStore>,
    progress: &AtomicU64,
) -> Result<TaskResult, TaskFailure> {
    // A panic is caught below, so the lock is never poisoned by a task.
    let mut function = function.lock().unwrap_or_else(PoisonError::into_inner);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        run_on_function(&mut function, task, driver_store, progress)
    }));
    match outcome {
        Ok(result) => result.map_err(|error| {
            if error.is_retryable() {
                TaskFailure::retryable(error.to_string())
            } else {
                TaskFailure::fatal(error.to_string())
            }
        }),
        Err(panic) => {
            function.state = FunctionState::new();
            function.store = None;
            Err(TaskFailure::retryable(panic_message(&panic)))
        }
    }
}

#[async_trait]
impl FunctionBackend for LocalBackend {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        let threads = self.threads_for(action.memory_mb);
        if action.memory_mb != self.memory_mb || threads != self.threads {
            // A new memory size is a new function configuration: every instance starts cold.
            self.functions.clear();
            self.memory_mb = action.memory_mb;
            self.threads = threads;
        }
        self.functions.truncate(action.functions as usize);
        while self.functions.len() < action.functions as usize {
            let function = self.new_function()?;
            self.functions.push(Arc::new(Mutex::new(function)));
        }
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        let functions = self.functions.clone();
        let store = Arc::clone(&self.store);
        let timeout = self.limits.task_timeout;
        // Blocking threads do not inherit the caller's span: carried by hand, so what functions
        // log still names the job and epoch.
        let span = tracing::Span::current();
        // Samples are counted as each batch trains (a live progress bar), not when a task ends.
        let counted_by_tasks = Arc::clone(&progress);
        run_on_slots(
            assignments,
            functions.len(),
            self.limits.straggler_factor,
            None,
            move |slot, task| {
                let function = Arc::clone(&functions[slot]);
                let (store, progress, span) = (
                    Arc::clone(&store),
                    Arc::clone(&counted_by_tasks),
                    span.clone(),
                );
                Box::pin(async move {
                    let started = Instant::now();
                    let running = tokio::task::spawn_blocking(move || {
                        let _in_job = span.enter();
                        invoke_function(&function, &task, &store, &progress)
                    });
                    let result = match tokio::time::timeout(timeout, running).await {
                        Ok(Ok(result)) => result,
                        Ok(Err(error)) => Err(TaskFailure::retryable(format!(
                            "the function's thread failed: {error}"
                        ))),
                        // The thread cannot be stopped; the function stays busy until it ends.
                        Err(_) => Err(TaskFailure::timeout(format!(
                            "the function gave no answer within {timeout:?}"
                        ))),
                    };
                    (result, started.elapsed().as_secs_f64())
                })
            },
        )
        .await
    }

    async fn release(&mut self) -> Result<(), BackendError> {
        self.functions.clear();
        self.memory_mb = 0;
        Ok(())
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .map_or_else(
            || "the function panicked".to_string(),
            |m| format!("the function panicked: {m}"),
        )
}
