//! The worker as an HTTP function (the Knative and OpenFaaS of-watchdog contract): `POST /` runs one
//! task and answers its result, `GET /healthz` says the process is up. One task at a time per
//! process; a second one meanwhile gets 429, as of-watchdog's `max_inflight` answers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use siren_crds::{StoreRef, Task, TaskDecodeError, TaskResult};
use tokio::sync::Mutex;

use crate::store::{ParameterStore, connect_store};
use crate::{FunctionState, TaskError};

/// Tasks are small JSON documents of references; anything larger is not a task.
pub const MAX_TASK_BYTES: usize = 1 << 20;

/// What a function answers when a task does not produce a result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionError {
    pub error: String,
    /// Whether the same task may succeed on another function.
    pub retryable: bool,
}

/// One function instance: the warm state a serverless platform keeps between invocations.
pub struct FunctionServer {
    /// Held for a task's whole run, by the task itself: a client that gives up (a timeout) does
    /// not free the function while its task still computes.
    slot: Arc<Mutex<Instance>>,
    init_seconds: f64,
}

struct Instance {
    state: FunctionState,
    stores: HashMap<(String, String), Arc<dyn ParameterStore>>,
    pool: Option<(u32, Arc<rayon::ThreadPool>)>,
}

impl FunctionServer {
    /// `started` is when the process began: the first task reports the time to here as its
    /// cold start's initialisation.
    pub fn new(started: Instant) -> Self {
        Self {
            slot: Arc::new(Mutex::new(Instance {
                state: FunctionState::new(),
                stores: HashMap::new(),
                pool: None,
            })),
            init_seconds: started.elapsed().as_secs_f64(),
        }
    }
}

pub fn router(server: Arc<FunctionServer>) -> Router {
    Router::new()
        .route("/", post(invoke))
        .route("/healthz", get(healthz))
        .with_state(server)
}

fn answer(status: StatusCode, error: impl Into<String>, retryable: bool) -> Response {
    let body = FunctionError {
        error: error.into(),
        retryable,
    };
    (status, axum::Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn invoke(State(server): State<Arc<FunctionServer>>, body: Body) -> Response {
    let Ok(mut instance) = Arc::clone(&server.slot).try_lock_owned() else {
        return answer(
            StatusCode::TOO_MANY_REQUESTS,
            "this function is running a task; one at a time",
            true,
        );
    };
    let bytes = match axum::body::to_bytes(body, MAX_TASK_BYTES).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return answer(
                StatusCode::BAD_REQUEST,
                format!(
                    "the payload is not a task: larger than {MAX_TASK_BYTES} bytes, or cut short"
                ),
                false,
            );
        }
    };
    let task = match Task::from_json(&bytes) {
        Ok(task) => task,
        Err(error @ TaskDecodeError::UnsupportedVersion { .. }) => {
            return answer(StatusCode::UNPROCESSABLE_ENTITY, error.to_string(), false);
        }
        Err(error) => return answer(StatusCode::BAD_REQUEST, error.to_string(), false),
    };
    let init_seconds = server.init_seconds;
    // The task runs to its end (holding the function) even if the caller stops waiting.
    let running = tokio::spawn(async move {
        let cold = !instance.state.is_warm();
        let outcome = run(&mut instance, &task).await;
        (cold, outcome)
    });
    let (cold, outcome) = match running.await {
        Ok(done) => done,
        Err(error) => {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the task failed: {error}"),
                true,
            );
        }
    };
    match outcome {
        Ok(mut result) => {
            if cold {
                result.timing.init = init_seconds;
            }
            (StatusCode::OK, axum::Json(result)).into_response()
        }
        Err(error @ TaskError::Model(_)) => {
            answer(StatusCode::UNPROCESSABLE_ENTITY, error.to_string(), false)
        }
        Err(error) => {
            let status = if error.is_retryable() {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
            answer(status, error.to_string(), error.is_retryable())
        }
    }
}

/// The store connection is opened on the first task of a job and reused while the function is
/// warm; a retryable failure drops it, so the next task reconnects.
async fn store_for(
    instance: &mut Instance,
    store: &StoreRef,
    job: &str,
) -> Result<Arc<dyn ParameterStore>, TaskError> {
    let key = (
        serde_json::to_string(store).unwrap_or_default(),
        job.to_string(),
    );
    if let Some(store) = instance.stores.get(&key) {
        return Ok(Arc::clone(store));
    }
    let connected = connect_store(store, job).await?;
    // A warm function serves one job at a time: connections of earlier jobs are closed.
    instance.stores.clear();
    instance.stores.insert(key, Arc::clone(&connected));
    Ok(connected)
}

async fn run(instance: &mut Instance, task: &Task) -> Result<TaskResult, TaskError> {
    let store = store_for(instance, &task.store, &task.job).await?;
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
