//! The local backend: each function is a thread of this process with its own compute thread pool
//! sized by its CPU share. An in-memory store is shared with the driver; a network store gets one
//! connection per function, as separate function instances would have.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use async_trait::async_trait;
use siren_crds::{StoreKind, Task};
use siren_scheduler::{Action, CostModel};
use siren_worker::store::{ParameterStore, connect_store};
use siren_worker::{FunctionState, TaskError};

use super::{Assignment, BackendError, FunctionBackend, Invocation};

/// One function instance: its warm state, compute threads, event loop and (for network stores) its
/// own store connection, all kept while it stays warm.
struct LocalFunction {
    state: FunctionState,
    pool: Arc<rayon::ThreadPool>,
    runtime: FunctionRuntime,
    store: Option<Arc<dyn ParameterStore>>,
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
    functions: Vec<LocalFunction>,
    memory_mb: u32,
    threads: usize,
    store: Arc<dyn ParameterStore>,
    cost_model: Arc<dyn CostModel>,
    cores: usize,
}

impl LocalBackend {
    pub fn new(store: Arc<dyn ParameterStore>, cost_model: Arc<dyn CostModel>) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self {
            functions: Vec::new(),
            memory_mb: 0,
            threads: 1,
            store,
            cost_model,
            cores,
        }
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
            .map_err(|e| BackendError::Scale(format!("cannot start compute threads: {e}")))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| BackendError::Scale(format!("cannot start a function runtime: {e}")))?;
        Ok(LocalFunction {
            state: FunctionState::new(),
            pool: Arc::new(pool),
            runtime: FunctionRuntime(Some(runtime)),
            store: None,
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
) -> Result<siren_crds::TaskResult, TaskError> {
    let store = match (task.store.kind, &function.store) {
        (StoreKind::Memory, _) => Arc::clone(driver_store),
        (_, Some(store)) => Arc::clone(store),
        (_, None) => {
            let store = function
                .runtime
                .block_on(connect_store(&task.store, &task.job))??;
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
            self.functions.push(function);
        }
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        let slots = self.functions.len().max(1);
        let mut per_slot: Vec<Vec<(usize, Task)>> = (0..slots).map(|_| Vec::new()).collect();
        for (position, assignment) in assignments.into_iter().enumerate() {
            per_slot[assignment.slot % slots].push((position, assignment.task));
        }
        let mut functions = std::mem::take(&mut self.functions);
        let store = Arc::clone(&self.store);
        // Threads do not inherit the caller's span: carried by hand, so what functions log
        // still names the job and epoch.
        let span = tracing::Span::current();
        let handle = tokio::task::spawn_blocking(move || {
            let _job = span.enter();
            let mut invocations = Vec::new();
            std::thread::scope(|scope| {
                let workers: Vec<_> = functions
                    .iter_mut()
                    .zip(per_slot)
                    .enumerate()
                    .filter(|(_, (_, tasks))| !tasks.is_empty())
                    .map(|(slot, (function, tasks))| {
                        let store = Arc::clone(&store);
                        let progress = Arc::clone(&progress);
                        let span = span.clone();
                        let thread = std::thread::Builder::new()
                            .name(format!("siren-fn-{slot}"))
                            .spawn_scoped(scope, move || {
                                let _job = span.enter();
                                let mut done = Vec::new();
                                for (position, task) in tasks {
                                    let started = Instant::now();
                                    let result = std::panic::catch_unwind(
                                        std::panic::AssertUnwindSafe(|| {
                                            run_on_function(function, &task, &store, &progress)
                                        }),
                                    )
                                    .unwrap_or_else(|panic| {
                                        // The instance may be in any state after a panic: replace it.
                                        function.state = FunctionState::new();
                                        function.store = None;
                                        Err(TaskError::Crashed(panic_message(&panic)))
                                    });
                                    done.push((
                                        position,
                                        Invocation {
                                            task_id: task.task_id.clone(),
                                            slot,
                                            result,
                                            billed_seconds: started.elapsed().as_secs_f64(),
                                        },
                                    ));
                                }
                                done
                            });
                        (slot, thread)
                    })
                    .collect();
                for (slot, worker) in workers {
                    match worker {
                        Ok(handle) => match handle.join() {
                            Ok(done) => invocations.extend(done),
                            Err(_) => tracing::error!(slot, "function thread died"),
                        },
                        Err(e) => tracing::error!(slot, error = %e, "cannot start function thread"),
                    }
                }
            });
            invocations.sort_by_key(|(position, _)| *position);
            (functions, invocations)
        });
        match handle.await {
            Ok((functions, invocations)) => {
                self.functions = functions;
                invocations
                    .into_iter()
                    .map(|(_, invocation)| invocation)
                    .collect()
            }
            Err(e) => {
                tracing::error!(error = %e, "local function pool failed");
                Vec::new()
            }
        }
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
