//! A fake OpenFaaS gateway on loopback: the REST API's routes for deploying, reading, scaling,
//! deleting and invoking one function and for its secrets, with basic auth on `/system`, recording
//! every request it receives. Invocations reach real `siren-worker`s (processes, or containers
//! with the deployment's `limits` when `SIREN_E2E_WORKER_IMAGE` is set), as many as the function is
//! scaled to, with the secrets the deployment lists mounted as files (in a directory of the
//! test's, where faas-netes uses `/var/openfaas/secrets`) and its `envVars` set.
//! It proves what the operator asks of a gateway and that training works through one; it does not
//! prove that a real faas-netes accepts the requests (the golden requests pin them to the API).

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::{Value, json};

use crate::limits::FunctionLimits;
use crate::worker_pool::{ServerGuard, WorkerPool, WorkerSpec, serve};

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

/// Where faas-netes mounts a function's secrets.
const SECRETS_MOUNT: &str = "/var/openfaas/secrets";

#[derive(Default)]
struct Function {
    deployment: Value,
    replicas: u64,
    /// What the replicas get: `envVars` (with the secrets' mount moved to the test's directory),
    /// that directory, and the deployment's `limits`.
    spec: WorkerSpec,
}

/// Secrets by name, each a set of files (key, content).
type Secrets = HashMap<String, Vec<(String, String)>>;

#[derive(Clone)]
struct Gateway {
    credentials: String,
    received: Arc<Mutex<Vec<Received>>>,
    functions: Arc<Mutex<HashMap<String, Function>>>,
    secrets: Arc<Mutex<Secrets>>,
    mounts: Arc<tempfile::TempDir>,
    pool: WorkerPool,
}

pub struct FakeOpenFaas {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    secrets: Arc<Mutex<Secrets>>,
    pool: WorkerPool,
    _server: ServerGuard,
}

impl FakeOpenFaas {
    /// A gateway whose `/system` routes accept only `user` and `password`.
    pub fn start(user: &str, password: &str) -> Self {
        Self::start_with(user, password, WorkerPool::default())
    }

    /// The same, with replicas that log at `level` into a file ([`FakeOpenFaas::worker_log`]).
    pub fn start_logging(user: &str, password: &str, level: &str) -> Self {
        Self::start_with(user, password, WorkerPool::logging(level))
    }

    /// What the replicas logged, for a gateway started with [`FakeOpenFaas::start_logging`].
    pub fn worker_log(&self) -> String {
        self.pool.log()
    }

    fn start_with(user: &str, password: &str, pool: WorkerPool) -> Self {
        let mounts = tempfile::tempdir().expect("a directory for mounted secrets");
        readable_by_the_function(mounts.path(), 0o755).expect("a directory the functions read");
        let state = Gateway {
            credentials: format!("{user}:{password}"),
            received: Arc::default(),
            functions: Arc::default(),
            secrets: Arc::default(),
            mounts: Arc::new(mounts),
            pool,
        };
        let router = Router::new()
            .route("/system/functions", post(deploy).put(deploy).delete(remove))
            .route(
                "/system/secrets",
                post(secrets).put(secrets).delete(secrets),
            )
            .route("/system/function/{name}", get(status))
            .route("/system/scale-function/{name}", post(scale))
            .route("/function/{name}", post(invoke))
            .with_state(state.clone());
        let (address, server) = serve(router);
        Self {
            url: format!("http://{address}"),
            received: state.received,
            secrets: state.secrets,
            pool: state.pool,
            _server: server,
        }
    }

    /// The names of the secrets the gateway holds now.
    pub fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .secrets
            .lock()
            .map(|s| s.keys().cloned().collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every request so far, in the order received.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Workers running now.
    pub fn replicas(&self) -> usize {
        self.pool.size()
    }

    /// The function's replicas, for what they were (processes or containers) and got.
    pub fn pool(&self) -> &WorkerPool {
        &self.pool
    }
}

/// The functions' container runs as a user of its own (65532), not as the test's: the secrets'
/// directories and files must be readable by others, as faas-netes mounts them into a pod.
fn readable_by_the_function(path: &std::path::Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("cannot make {} readable: {e}", path.display()))
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
    let limits = match FunctionLimits::from_kubernetes(&deployment["limits"]) {
        Ok(limits) => limits,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let env = match mount_secrets(&state, &name, &deployment) {
        Ok(env) => env,
        Err(error) => return (StatusCode::BAD_REQUEST, error).into_response(),
    };
    let spec = WorkerSpec {
        env,
        limits,
        // The whole directory, which outlives every function's: a function's own is made anew
        // on each deployment, and a bind mount of it would keep showing the old one.
        mounts: vec![state.mounts.path().to_path_buf()],
    };
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
                spec: spec.clone(),
            },
        );
    }
    resize(&state, replicas as usize, spec).await
}

/// Writes the secrets `deployment` lists as the files of its mount, and its `envVars` with the
/// mount's path moved there: what the function's containers get.
fn mount_secrets(
    state: &Gateway,
    function: &str,
    deployment: &Value,
) -> Result<Vec<(String, String)>, String> {
    let mount = state.mounts.path().join(function);
    let _ = std::fs::remove_dir_all(&mount);
    std::fs::create_dir_all(&mount).map_err(|e| e.to_string())?;
    readable_by_the_function(&mount, 0o755)?;
    let secrets = state.secrets.lock().map_err(|_| "secrets poisoned")?;
    for name in deployment["secrets"].as_array().into_iter().flatten() {
        let name = name.as_str().unwrap_or_default();
        let files = secrets
            .get(name)
            .ok_or_else(|| format!("secret {name} does not exist"))?;
        for (key, value) in files {
            let file = mount.join(key);
            std::fs::write(&file, value).map_err(|e| e.to_string())?;
            readable_by_the_function(&file, 0o644)?;
        }
    }
    let mount = mount.display().to_string();
    Ok(deployment["envVars"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, value)| {
            let value = value.as_str().unwrap_or_default();
            (name.clone(), value.replace(SECRETS_MOUNT, &mount))
        })
        .collect())
}

/// faas-provider's `/system/secrets`: POST creates (409 if it exists), PUT replaces, DELETE
/// removes; a secret made here is one file named after it.
async fn secrets(
    State(state): State<Gateway>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !record(&state, &method, &uri, &headers, &body) {
        return unauthorized();
    }
    let secret = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let Some(name) = secret["name"].as_str() else {
        return (StatusCode::BAD_REQUEST, "a secret has a name").into_response();
    };
    let Ok(mut secrets) = state.secrets.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let exists = secrets.contains_key(name);
    match (method, secret["value"].as_str()) {
        (Method::DELETE, _) if exists => {
            secrets.remove(name);
            StatusCode::ACCEPTED.into_response()
        }
        (Method::POST, Some(_)) if exists => {
            (StatusCode::CONFLICT, "secret exists").into_response()
        }
        (Method::PUT | Method::DELETE, _) if !exists => {
            (StatusCode::NOT_FOUND, "no such secret").into_response()
        }
        (Method::POST | Method::PUT, Some(value)) => {
            secrets.insert(
                name.to_string(),
                vec![(name.to_string(), value.to_string())],
            );
            StatusCode::ACCEPTED.into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "a secret has a value").into_response(),
    }
}

async fn resize(state: &Gateway, replicas: usize, spec: WorkerSpec) -> Response {
    let pool = state.pool.clone();
    match tokio::task::spawn_blocking(move || pool.resize(replicas, &spec)).await {
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
    resize(&state, 0, WorkerSpec::default()).await;
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
    let (changed, spec) = {
        let Ok(mut functions) = state.functions.lock() else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        let Some(function) = functions.get_mut(&name) else {
            return (StatusCode::NOT_FOUND, "no such function").into_response();
        };
        let changed = function.replicas != replicas;
        function.replicas = replicas;
        (changed, function.spec.clone())
    };
    if changed || state.pool.size() as u64 != replicas {
        return resize(&state, replicas as usize, spec).await;
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
