//! The worker as a function. [`FunctionServer::handle`] runs one task from its JSON payload and is
//! shared by both transports: HTTP ([`http`], for Knative and OpenFaaS) and the Lambda handler.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use siren_crds::{StoreRef, Task, TaskDecodeError, TaskFailure, TaskResult, now_ms};
use siren_store::{ParameterStore, StoreCredentials, connect_store};
use tokio::sync::Mutex;

use crate::access::{FunctionAccess, ReplayGuard};
use crate::{FunctionState, TaskError};

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "http")]
pub use http::router;

/// Tasks are small JSON documents of references; anything larger is not a task.
pub const MAX_TASK_BYTES: usize = 1 << 20;

/// One function instance: the warm state a serverless platform keeps between invocations.
pub struct FunctionServer {
    /// Held for a task's whole run, by the task itself: a client that gives up (a timeout) does
    /// not free the function while its task still computes.
    slot: Arc<Mutex<Instance>>,
    init_seconds: f64,
    access: FunctionAccess,
    replays: ReplayGuard,
}

struct Instance {
    state: FunctionState,
    stores: HashMap<(String, String), Arc<dyn ParameterStore>>,
    pool: Option<(u32, Arc<rayon::ThreadPool>)>,
}

impl FunctionServer {
    /// `started` is when the process began: the first task reports the time to here as its
    /// cold start's initialisation. Only tasks signed with `access.key` run.
    pub fn new(started: Instant, access: FunctionAccess) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Instance {
                state: FunctionState::new(),
                stores: HashMap::new(),
                pool: None,
            })),
            init_seconds: started.elapsed().as_secs_f64(),
            access,
            replays: ReplayGuard::default(),
        }
    }
}

/// Why an invocation produced no result. Each transport maps it to its own signal: an HTTP status
/// for Knative and OpenFaaS, an error type for Lambda.
#[derive(Debug, Clone, PartialEq)]
pub enum Rejection {
    /// The payload is not a task signed by this function's job (unsigned, wrongly signed), or a
    /// delivery of one out of its time window or seen before, which a fresh signature may fix.
    Unauthorized { error: String, retryable: bool },
    /// The function is running another task.
    Busy,
    /// The payload is not a task (bad JSON, a missing field, too large).
    Malformed(String),
    /// A task this build cannot run: another protocol version, an unsupported model.
    Unsupported(String),
    /// The task ran and failed.
    Failed { error: String, retryable: bool },
}

impl Rejection {
    pub fn retryable(&self) -> bool {
        match self {
            Rejection::Busy => true,
            Rejection::Malformed(_) | Rejection::Unsupported(_) => false,
            Rejection::Unauthorized { retryable, .. } => *retryable,
            Rejection::Failed { retryable, .. } => *retryable,
        }
    }

    pub fn message(&self) -> String {
        match self {
            Rejection::Busy => "this function is running a task; one at a time".to_string(),
            Rejection::Malformed(error)
            | Rejection::Unsupported(error)
            | Rejection::Unauthorized { error, .. }
            | Rejection::Failed { error, .. } => error.clone(),
        }
    }

    /// What the function answers: the failure type every transport and backend shares.
    pub fn to_failure(&self) -> TaskFailure {
        match self {
            Rejection::Busy => TaskFailure::unreachable(self.message()),
            _ if self.retryable() => TaskFailure::retryable(self.message()),
            _ => TaskFailure::fatal(self.message()),
        }
    }
}

pub(crate) fn oversized() -> Rejection {
    Rejection::Malformed(format!(
        "the payload is not a task: larger than {MAX_TASK_BYTES} bytes, or cut short"
    ))
}

impl FunctionServer {
    /// Runs the task in `payload` on this function: the code every transport shares.
    /// Nothing of the task is decoded, read or connected to before its signature, time and
    /// nonce have passed.
    pub async fn handle(&self, payload: &[u8]) -> Result<TaskResult, Rejection> {
        if payload.len() > MAX_TASK_BYTES {
            return Err(oversized());
        }
        let now = now_ms();
        let unauthorized = |error: siren_crds::SignatureError| {
            tracing::warn!(%error, "refused a task");
            Rejection::Unauthorized {
                error: error.to_string(),
                retryable: error.retryable(),
            }
        };
        let verified = self.access.key.verify(payload, now).map_err(unauthorized)?;
        let Ok(mut instance) = Arc::clone(&self.slot).try_lock_owned() else {
            return Err(Rejection::Busy);
        };
        // Only a delivery that runs is remembered: one refused as busy may come again.
        self.replays.admit(&verified, now).map_err(unauthorized)?;
        let task = Task::from_json(verified.task.as_bytes()).map_err(|error| match error {
            TaskDecodeError::UnsupportedVersion { .. } => Rejection::Unsupported(error.to_string()),
            _ => Rejection::Malformed(error.to_string()),
        })?;
        if task.stored_data.is_none() {
            return Err(Rejection::Unsupported(
                "the task names no training data in the store: a function reads its data only \
                 from the store, never from files a task names"
                    .to_string(),
            ));
        }
        let credentials = self.access.store.clone();
        // The task runs to its end (holding the function) even if the caller stops waiting.
        let running = tokio::spawn(async move {
            let cold = !instance.state.is_warm();
            let outcome = run(&mut instance, &task, &credentials).await;
            (cold, outcome)
        });
        let (cold, outcome) = running.await.map_err(|error| Rejection::Failed {
            error: format!("the task failed: {error}"),
            retryable: true,
        })?;
        match outcome {
            Ok(mut result) => {
                if cold {
                    result.timing.init = self.init_seconds;
                }
                Ok(result)
            }
            Err(error @ TaskError::Model(_)) => Err(Rejection::Unsupported(error.to_string())),
            Err(error) => Err(Rejection::Failed {
                error: error.to_string(),
                retryable: error.is_retryable(),
            }),
        }
    }
}

/// The store connection is opened on the first task of a job and reused while the function is
/// warm; a retryable failure drops it, so the next task reconnects.
async fn store_for(
    instance: &mut Instance,
    store: &StoreRef,
    job: &str,
    credentials: &StoreCredentials,
) -> Result<Arc<dyn ParameterStore>, TaskError> {
    let key = (
        serde_json::to_string(store).unwrap_or_default(),
        job.to_string(),
    );
    if let Some(store) = instance.stores.get(&key) {
        return Ok(Arc::clone(store));
    }
    let connected = connect_store(store, job, credentials).await?;
    // A warm function serves one job at a time: connections of earlier jobs are closed.
    instance.stores.clear();
    instance.stores.insert(key, Arc::clone(&connected));
    Ok(connected)
}

async fn run(
    instance: &mut Instance,
    task: &Task,
    credentials: &StoreCredentials,
) -> Result<TaskResult, TaskError> {
    let store = store_for(instance, &task.store, &task.job, credentials).await?;
    // A caller cannot make the function start more threads than the machine has cores.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    let threads = task.threads.clamp(1, cores);
    let pool = match &instance.pool {
        Some((built, pool)) if *built == threads => Arc::clone(pool),
        _ => {
            let pool = Arc::new(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads as usize)
                    .build()
                    .map_err(|e| {
                        TaskError::Crashed(format!("cannot start compute threads: {e}"))
                    })?,
            );
            instance.pool = Some((threads, Arc::clone(&pool)));
            pool
        }
    };
    // Training is CPU-bound: it runs on a blocking thread inside the task's compute pool, so the
    // server keeps answering /healthz (and 429) meanwhile.
    let mut state = std::mem::take(&mut instance.state);
    let owned = task.clone();
    let store_for_task = Arc::clone(&store);
    let handle = tokio::runtime::Handle::current();
    let (state_back, result) = tokio::task::spawn_blocking(move || {
        let result =
            pool.install(|| handle.block_on(state.run_task(&owned, store_for_task.as_ref(), None)));
        (state, result)
    })
    .await
    .map_err(|e| TaskError::Crashed(format!("the task's thread failed: {e}")))?;
    instance.state = state_back;
    if result.as_ref().is_err_and(TaskError::is_retryable) {
        instance.stores.clear();
    }
    result
}
