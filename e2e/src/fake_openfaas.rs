//! A fake OpenFaaS gateway on loopback: the REST API's routes for deploying, reading, scaling,
//! deleting and invoking one function, with basic auth on `/system`, recording every request it
//! receives. Invocations reach real `siren-worker` processes, as many as the function is scaled to.
//! It proves what the operator asks of a gateway and that training works through one; it does not
//! prove that a real faas-netes accepts the requests (the golden requests pin them to the API).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use crate::worker_pool::{ServerGuard, WorkerPool, serve};

/// One request the gateway received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    /// The JSON body, `Value::Null` when there is none or it is not JSON.
    pub body: Value,
    /// The `user:password` of its basic-auth header.
    pub credentials: Option<String>,
}

#[derive(Default)]
struct Function {
    deployment: Value,
    replicas: u64,
}

#[derive(Clone)]
struct Gateway {
    credentials: String,
    received: Arc<Mutex<Vec<Received>>>,
    functions: Arc<Mutex<HashMap<String, Function>>>,
    pool: WorkerPool,
}

pub struct FakeOpenFaas {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    pool: WorkerPool,
    _server: ServerGuard,
}

impl FakeOpenFaas {
    /// A gateway whose `/system` routes accept only `user` and `password`.
    pub fn start(user: &str, password: &str) -> Self {
        let state = Gateway {
            credentials: format!("{user}:{password}"),
            received: Arc::default(),
            functions: Arc::default(),
            pool: WorkerPool::default(),
        };
        let router = Router::new()
            .route("/system/functions", post(deploy).put(deploy).delete(remove))
            .route("/system/function/{name}", get(status))
            .route("/system/scale-function/{name}", post(scale))
            .route("/function/{name}", post(invoke))
            .with_state(state.clone());
        let (address, server) = serve(router);
        Self {
            url: format!("http://{address}"),
            received: state.received,
            pool: state.pool,
            _server: server,
        }
    }

    /// Every request so far, in the order received.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Worker processes running now.
    pub fn replicas(&self) -> usize {
        self.pool.size()
    }
}

fn record(state: &Gateway, method: &Method, uri: &Uri, headers: &HeaderMap, body: &Bytes) -> bool {
    let credentials = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|v| base64::engine::general_purpose::STANDARD.decode(v).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned());
    let authorized = credentials.as_deref() == Some(state.credentials.as_str());
    if let Ok(mut received) = state.received.lock() {
        received.push(Received {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or_default().to_string(),
            body: serde_json::from_slice(body).unwrap_or(Value::Null),
            credentials,
        });
    }
    authorized
}

fn unauthorized() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid credentials").into_response()
}

async fn deploy(
    State(state): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&state, &method, &uri, &headers, &body) {
        return unauthorized();
    }
    let Ok(deployment) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let Some(name) = deployment["service"].as_str().map(str::to_string) else {
        return (StatusCode::BAD_REQUEST, "no service").into_response();
    };
    let replicas = deployment["labels"]["com.openfaas.scale.min"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    {
        let Ok(mut functions) = state.functions.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let exists = functions.contains_key(&name);
        if method == Method::PUT && !exists {
            return (StatusCode::NOT_FOUND, "no such function").into_response();
        }
        functions.insert(
            name,
            Function {
                deployment,
                replicas,
            },
        );
    }
    resize(&state, replicas as usize).await
}

async fn resize(state: &Gateway, replicas: usize) -> Response {
    let pool = state.pool.clone();
    match tokio::task::spawn_blocking(move || pool.resize(replicas)).await {
        Ok(Ok(())) => StatusCode::ACCEPTED.into_response(),
        Ok(Err(error)) => (StatusCode::INTERNAL_SERVER_ERROR, error).into_response(),
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

async fn remove(
    State(state): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&state, &method, &uri, &headers, &body) {
        return unauthorized();
    }
    let name = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["functionName"].as_str().map(str::to_string))
        .unwrap_or_default();
    let removed = state
        .functions
        .lock()
        .map(|mut f| f.remove(&name).is_some())
        .unwrap_or(false);
    if !removed {
        return (StatusCode::NOT_FOUND, "no such function").into_response();
    }
    resize(&state, 0).await;
    StatusCode::ACCEPTED.into_response()
}

async fn status(
    State(state): State<Gateway>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    if !record(&state, &method, &uri, &headers, &Bytes::new()) {
        return unauthorized();
    }
    let functions = match state.functions.lock() {
        Ok(functions) => functions,
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    let Some(function) = functions.get(&name) else {
        return (StatusCode::NOT_FOUND, "no such function").into_response();
    };
    let available = state.pool.size() as u64;
    let mut body = function.deployment.clone();
    body["name"] = json!(name);
    body["replicas"] = json!(function.replicas);
    body["availableReplicas"] = json!(available.min(function.replicas));
    axum::Json(body).into_response()
}

async fn scale(
    State(state): State<Gateway>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&state, &method, &uri, &headers, &body) {
        return unauthorized();
    }
    let replicas = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|b| b["replicas"].as_u64());
    let Some(replicas) = replicas else {
        return (StatusCode::BAD_REQUEST, "no replicas").into_response();
    };
    let changed = {
        let Ok(mut functions) = state.functions.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(function) = functions.get_mut(&name) else {
            return (StatusCode::NOT_FOUND, "no such function").into_response();
        };
        let changed = function.replicas != replicas;
        function.replicas = replicas;
        changed
    };
    if changed || state.pool.size() as u64 != replicas {
        return resize(&state, replicas as usize).await;
    }
    StatusCode::ACCEPTED.into_response()
}

async fn invoke(
    State(state): State<Gateway>,
    Path(name): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    record(&state, &method, &uri, &headers, &body);
    let function = name.split('.').next().unwrap_or_default().to_string();
    let deployed = state
        .functions
        .lock()
        .map(|f| f.contains_key(&function))
        .unwrap_or(false);
    if !deployed {
        return (StatusCode::NOT_FOUND, "no such function").into_response();
    }
    state.pool.forward(body).await.into_response()
}
