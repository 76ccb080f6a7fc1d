//! `siren-lambda`: the function as an AWS Lambda handler (a `provided.al2023` custom runtime whose
//! executable is named `bootstrap`). The payload is a task, the response its result; every task
//! runs through the same code as `siren-worker`'s HTTP handler.
//!
//! A task that produces no result ends in a function error. Its `errorType` says whether the
//! driver may retry the task on another invocation (`Siren.Retryable`) or not (`Siren.Invalid`);
//! its `errorMessage` names the problem.

use std::sync::Arc;
use std::time::Instant;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};
use siren_crds::TaskResult;
use siren_worker::access::FunctionAccess;
use siren_worker::function::{FunctionServer, Rejection};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Error types of the function errors this handler raises.
const RETRYABLE: &str = "Siren.Retryable";
const INVALID: &str = "Siren.Invalid";
/// The payload is not a task signed by this function's job.
const UNAUTHORIZED: &str = "Siren.Unauthorized";

#[derive(Debug)]
struct Rejected(Rejection);

impl From<Rejected> for Diagnostic {
    fn from(Rejected(rejection): Rejected) -> Self {
        Diagnostic {
            error_type: match rejection {
                _ if rejection.retryable() => RETRYABLE,
                Rejection::Unauthorized { .. } => UNAUTHORIZED,
                _ => INVALID,
            }
            .to_string(),
            error_message: rejection.message(),
        }
    }
}

async fn handle(
    server: &FunctionServer,
    event: LambdaEvent<serde_json::Value>,
) -> Result<TaskResult, Rejected> {
    // The runtime has parsed the payload as JSON already; the task decoder gives the message
    // that names what is wrong with it.
    let payload = serde_json::to_vec(&event.payload).map_err(|e| {
        Rejected(Rejection::Malformed(format!(
            "the payload is not JSON: {e}"
        )))
    })?;
    server.handle(&payload).await.map_err(Rejected)
}

fn main() -> Result<(), lambda_runtime::Error> {
    let started = Instant::now();
    siren_worker::logs::init_json_logs(false);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // Without its key the function fails its initialisation: Lambda reports that on the first
    // invocation instead of running anyone's tasks.
    let access = FunctionAccess::from_env()?;
    runtime.block_on(async {
        let server = Arc::new(FunctionServer::new(started, access));
        lambda_runtime::run(service_fn(move |event| {
            let server = Arc::clone(&server);
            async move { handle(&server, event).await }
        }))
        .await
    })
}
