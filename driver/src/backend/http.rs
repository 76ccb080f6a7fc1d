//! Invoking a function over HTTP, as Knative Services, OpenFaaS functions and the process backend's
//! workers are: the task, signed with the job's key, as a JSON body; its result or a `TaskFailure`
//! as the answer.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use siren_crds::{Task, TaskFailure, TaskKey, TaskResult};

use super::slots::run_on_slots;
use super::{Assignment, Invocation, PoolLimits};

/// Runs an epoch's assignments over HTTP, slot `i` at `urls[i]`. A pool behind one address (a
/// Knative Service, an OpenFaaS function) repeats it once per function. Functions in a cluster are
/// paid for as long as they work on a task, so that is what each invocation bills.
pub async fn run_over_http(
    client: &reqwest::Client,
    urls: Vec<String>,
    limits: PoolLimits,
    assignments: Vec<Assignment>,
    progress: Arc<AtomicU64>,
    key: &TaskKey,
) -> Vec<Invocation> {
    let timeout = limits.task_timeout;
    run_on_slots(
        assignments,
        urls.len(),
        limits.straggler_factor,
        Some(progress),
        |slot, task| {
            let (client, url, key) = (client.clone(), urls[slot].clone(), key.clone());
            Box::pin(async move {
                let started = Instant::now();
                let result = invoke(client, url, &key, task, timeout).await;
                (result, started.elapsed().as_secs_f64())
            })
        },
    )
    .await
}

/// What an HTTP invocation came to.
async fn invoke(
    client: reqwest::Client,
    url: String,
    key: &TaskKey,
    task: Task,
    timeout: Duration,
) -> Result<TaskResult, TaskFailure> {
    // Signed per delivery: each attempt, retries included, carries its own nonce.
    let signed = key
        .sign(&task)
        .map_err(|e| TaskFailure::fatal(format!("cannot encode the task: {e}")))?;
    let response = client
        .post(&url)
        .timeout(timeout)
        .json(&signed)
        .send()
        .await
        .map_err(|e| {
            let error = format!("invoking {url}: {e}");
            if e.is_timeout() {
                TaskFailure::timeout(error)
            } else {
                TaskFailure::unreachable(error)
            }
        })?;
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .map_err(|e| TaskFailure::retryable(format!("reading the answer of {url}: {e}")))?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| {
            TaskFailure::retryable(format!(
                "{url} answered something that is not a result: {e}"
            ))
        });
    }
    // Not a function's answer: a gateway's or proxy's error page. A 504 or 408 is a proxy (the
    // OpenFaaS gateway, Knative's activator or queue-proxy) cutting a task that ran too long.
    let failure: TaskFailure = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
        let page = String::from_utf8_lossy(&bytes).into_owned();
        match status.as_u16() {
            408 | 504 => TaskFailure::timeout(page),
            429 => TaskFailure::unreachable(page),
            _ if status.is_server_error() => TaskFailure::unreachable(page),
            _ => TaskFailure::fatal(page),
        }
    });
    Err(failure.in_context(format_args!("{url} answered {status}")))
}
