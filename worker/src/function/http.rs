//! The function's HTTP transport, the Knative and OpenFaaS (of-watchdog) contract: `POST /` runs
//! one task and answers its result, `GET /healthz` says the process is up; a second task meanwhile
//! gets 429, as of-watchdog's `max_inflight` answers.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{FunctionServer, MAX_TASK_BYTES, Rejection, oversized};

pub fn router(server: Arc<FunctionServer>) -> Router {
    Router::new()
        .route("/", post(invoke))
        .route("/healthz", get(healthz))
        // OpenFaaS's default probe path, for deployments that do not set their own.
        .route("/_/health", get(healthz))
        .with_state(server)
}

impl Rejection {
    fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Rejection::Busy => StatusCode::TOO_MANY_REQUESTS,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
            Rejection::Unsupported(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Failed {
                retryable: true, ..
            } => StatusCode::SERVICE_UNAVAILABLE,
            Rejection::Failed {
                retryable: false, ..
            } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(self.to_failure())).into_response()
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn invoke(State(server): State<Arc<FunctionServer>>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, MAX_TASK_BYTES).await else {
        return oversized().into_response();
    };
    match server.handle(&bytes).await {
        Ok(result) => (StatusCode::OK, axum::Json(result)).into_response(),
        Err(rejection) => rejection.into_response(),
    }
}
