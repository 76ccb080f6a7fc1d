//! The `openfaas` backend: the job's functions are the replicas of one OpenFaaS function, managed
//! through the gateway's REST API. A new memory size deploys the function again
//! (`POST`/`PUT /system/functions`); every epoch scales it (`POST /system/scale-function/<name>`)
//! and waits until that many replicas are available; each task is one `POST /function/<name>`.
//! The `/system` routes take the gateway's basic-auth credentials. The run's task key and the
//! store's credentials the driver holds are gateway secrets of the function's own
//! (`<function>-task-key`, `<function>-store-username`, ..., through `/system/secrets`), mounted into
//! it under `/var/openfaas/secrets/`. A Secret a job names is never mounted by name: faas-netes
//! would take it from the functions' namespace, where a job's author does not choose what it is.
//! Of the job's `backend.podTemplate` the gateway's API takes labels, annotations, plain variables,
//! and the node selector (as `constraints`); validation
//! refuses the rest.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::{Value, json};
use siren_crds::validate::MAX_FUNCTION_NAME;
use siren_crds::{FunctionPodTemplate, OpenFaasSpec, TASK_KEY_ENV, TaskFailure};
use siren_scheduler::Action;
use siren_store::{STORE_CA_FILE_ENV, STORE_PASSWORD_ENV, STORE_USERNAME_ENV, StoreCredentials};

use super::http::run_over_http;
use super::pods::{function_name, merge_into, resources, string_entries};
use super::{
    Assignment, BackendError, FunctionBackend, FunctionSecrets, Invocation, PoolLimits,
    failed_invocations,
};

/// How long a deployment or a scale may take until every replica is available.
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const READY_POLL: Duration = Duration::from_millis(250);
/// Gateway management calls are small; one that takes longer than this is a gateway in trouble.
const SYSTEM_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Keys of OpenFaaS's own `basic-auth` Secret, which a job's credentials Secret copies.
pub const USER_KEY: &str = "basic-auth-user";
pub const PASSWORD_KEY: &str = "basic-auth-password";
/// Where OpenFaaS mounts a function's secrets, one file per key.
const SECRETS_DIR: &str = "/var/openfaas/secrets";

#[derive(Clone, PartialEq)]
pub struct BasicAuth {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A password must not reach a log through a debug print.
        f.debug_struct("BasicAuth")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Reads the gateway's credentials from the Secret `name` in `namespace`.
pub async fn credentials_from_secret(
    client: kube::Client,
    namespace: &str,
    name: &str,
) -> Result<BasicAuth, BackendError> {
    let secret = Api::<Secret>::namespaced(client, namespace)
        .get(name)
        .await
        .map_err(|e| {
            BackendError::platform(
                format!("cannot read the OpenFaaS credentials Secret {namespace}/{name}"),
                e,
            )
        })?;
    let data = secret.data.unwrap_or_default();
    let value = |key: &str| {
        data.get(key)
            .map(|bytes| String::from_utf8_lossy(&bytes.0).trim().to_string())
            .filter(|value| !value.is_empty())
            .ok_or_else(|| {
                BackendError::Config(format!(
                    "the OpenFaaS credentials Secret {namespace}/{name} has no `{key}`"
                ))
            })
    };
    Ok(BasicAuth {
        user: value(USER_KEY)?,
        password: value(PASSWORD_KEY)?,
    })
}

/// Everything about the function that does not change from one epoch to the next.
#[derive(Debug, Clone)]
pub struct OpenFaasTarget {
    pub gateway: String,
    pub name: String,
    pub namespace: Option<String>,
    pub job: String,
    pub image: String,
    pub max_replicas: u32,
    pub credentials: Option<BasicAuth>,
    /// The job's `backend.podTemplate`.
    pub pod_template: Option<FunctionPodTemplate>,
}

/// What a deployment mounts: the run's key (named by its fingerprint, so that a new key rolls the
/// pods) and which of the store's credentials the driver holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mounts<'a> {
    pub key_fingerprint: &'a str,
    pub store_username: bool,
    pub store_password: bool,
    pub store_ca: bool,
}

/// The gateway secrets of a run: the task key and each store credential, by their name suffix.
const KEY_SECRET: &str = "task-key";
const STORE_USERNAME_SECRET: &str = "store-username";
const STORE_PASSWORD_SECRET: &str = "store-password";
const STORE_CA_SECRET: &str = "store-ca";

impl Mounts<'_> {
    fn of<'a>(key_fingerprint: &'a str, store: &StoreCredentials) -> Mounts<'a> {
        Mounts {
            key_fingerprint,
            store_username: store.username.is_some(),
            store_password: store.password.is_some(),
            store_ca: store.ca_pem.is_some(),
        }
    }
}

impl OpenFaasTarget {
    pub fn new(
        spec: &OpenFaasSpec,
        pod_template: Option<&FunctionPodTemplate>,
        job: &str,
        credentials: Option<BasicAuth>,
    ) -> Result<Self, BackendError> {
        Ok(Self {
            gateway: spec.gateway.trim_end_matches('/').to_string(),
            name: function_name(spec.function_name.as_deref(), job, MAX_FUNCTION_NAME)?,
            namespace: spec.namespace.clone(),
            job: job.to_string(),
            image: spec.image.clone(),
            max_replicas: spec.max_replicas,
            credentials,
            pod_template: pod_template.cloned(),
        })
    }

    /// The name of the function's gateway secret `suffix`.
    pub fn secret(&self, suffix: &str) -> String {
        format!("{}-{suffix}", self.name)
    }

    /// Where tasks go: `/function/<name>`, or `/function/<name>.<namespace>` outside the
    /// gateway's default namespace.
    pub fn invocation_url(&self) -> String {
        match &self.namespace {
            Some(namespace) => format!("{}/function/{}.{namespace}", self.gateway, self.name),
            None => format!("{}/function/{}", self.gateway, self.name),
        }
    }
}

/// Adds what the gateway's API takes of the job's pod template to the deployment `body`: labels,
/// annotations and plain variables next to Siren's (which win), the node selector as
/// `constraints` (`key=value`, which faas-netes turns back into the pods' node selector).
/// Validation refuses the rest.
fn apply_pod_template(template: &FunctionPodTemplate, body: &mut Value) {
    merge_into(&mut body["labels"], string_entries(&template.labels));
    merge_into(
        &mut body["annotations"],
        string_entries(&template.annotations),
    );
    if !template.node_selector.is_empty() {
        let constraints: Vec<String> = template
            .node_selector
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        body["constraints"] = json!(constraints);
    }
    let variables = template.env.iter().map(|var| {
        let value = var.value.clone().unwrap_or_default();
        (var.name.clone(), json!(value))
    });
    merge_into(&mut body["envVars"], variables);
}

/// The `FunctionDeployment` the gateway's `/system/functions` takes, for functions of
/// `action.memory_mb` starting with `action.functions` replicas, with `mounts`.
pub fn deployment(target: &OpenFaasTarget, action: Action, mounts: Mounts<'_>) -> Value {
    let resources = resources(action.memory_mb);
    let mut secrets = Vec::new();
    let mut env = serde_json::Map::new();
    let mut mount = |variable: String, suffix: &str| {
        let secret = target.secret(suffix);
        env.insert(variable, json!(format!("{SECRETS_DIR}/{secret}")));
        secrets.push(secret);
    };
    mount(format!("{TASK_KEY_ENV}_FILE"), KEY_SECRET);
    if mounts.store_username {
        mount(format!("{STORE_USERNAME_ENV}_FILE"), STORE_USERNAME_SECRET);
    }
    if mounts.store_password {
        mount(format!("{STORE_PASSWORD_ENV}_FILE"), STORE_PASSWORD_SECRET);
    }
    if mounts.store_ca {
        mount(STORE_CA_FILE_ENV.to_string(), STORE_CA_SECRET);
    }
    let mut body = json!({
        "service": target.name,
        "image": target.image,
        "labels": {
            "com.openfaas.scale.min": action.functions.to_string(),
            "com.openfaas.scale.max": target.max_replicas.to_string(),
            "com.openfaas.scale.zero": "false",
            "app.kubernetes.io/managed-by": "siren-operator",
            "siren.dev/job": target.job,
        },
        "annotations": {
            "com.openfaas.health.http.path": "/healthz",
            "siren.dev/task-key": mounts.key_fingerprint,
        },
        "envVars": env,
        "secrets": secrets,
        "limits": resources["limits"],
        "requests": resources["requests"],
        "readOnlyRootFilesystem": true,
    });
    if let Some(namespace) = &target.namespace {
        body["namespace"] = json!(namespace);
    }
    if let Some(template) = &target.pod_template {
        apply_pod_template(template, &mut body);
    }
    body
}

/// The `ScaleServiceRequest` of `/system/scale-function/<name>`.
pub fn scale_request(target: &OpenFaasTarget, replicas: u32) -> Value {
    let mut body = json!({ "serviceName": target.name, "replicas": replicas });
    if let Some(namespace) = &target.namespace {
        body["namespace"] = json!(namespace);
    }
    body
}

/// The `DeleteFunctionRequest` of `DELETE /system/functions`.
pub fn delete_request(target: &OpenFaasTarget) -> Value {
    let mut body = json!({ "functionName": target.name });
    if let Some(namespace) = &target.namespace {
        body["namespace"] = json!(namespace);
    }
    body
}

/// The gateway's management API.
pub struct Gateway {
    target: OpenFaasTarget,
    http: reqwest::Client,
}

impl Gateway {
    pub fn new(target: OpenFaasTarget) -> Result<Self, BackendError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BackendError::platform("cannot build the HTTP client", e))?;
        Ok(Self { target, http })
    }

    fn system(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.target.gateway))
            .timeout(SYSTEM_CALL_TIMEOUT);
        if let Some(namespace) = &self.target.namespace {
            request = request.query(&[("namespace", namespace)]);
        }
        match &self.target.credentials {
            Some(auth) => request.basic_auth(&auth.user, Some(&auth.password)),
            None => request,
        }
    }

    async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(reqwest::StatusCode, String), BackendError> {
        let response = request.send().await.map_err(|e| {
            BackendError::platform(
                format!(
                    "cannot {what} at the OpenFaaS gateway {}",
                    self.target.gateway
                ),
                e,
            )
        })?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(BackendError::Config(format!(
                "the OpenFaaS gateway {} refused to {what}: 401 Unauthorized (check spec.backend.openfaas.credentialsSecret)",
                self.target.gateway
            )));
        }
        Ok((status, body))
    }

    /// What the gateway's answer `status` with `body` means for `what`: a refusal.
    fn refusal(&self, what: &str, status: reqwest::StatusCode, body: &str) -> BackendError {
        BackendError::platform(
            format!(
                "the OpenFaaS gateway {} could not {what}",
                self.target.gateway
            ),
            format!("{status}: {}", body.trim()),
        )
    }

    /// Sends a removal: done, or already gone.
    async fn expect_gone(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(), BackendError> {
        let (status, body) = self.send(what, request).await?;
        if status.is_success() || status == reqwest::StatusCode::NOT_FOUND {
            Ok(())
        } else {
            Err(self.refusal(what, status, &body))
        }
    }

    async fn expect_success(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<String, BackendError> {
        let (status, body) = self.send(what, request).await?;
        if status.is_success() {
            Ok(body)
        } else {
            Err(self.refusal(what, status, &body))
        }
    }

    /// The function's status, or `None` when it is not deployed.
    pub async fn status(&self) -> Result<Option<Value>, BackendError> {
        let path = format!("/system/function/{}", self.target.name);
        let what = format!("read function {}", self.target.name);
        let (status, body) = self
            .send(&what, self.system(reqwest::Method::GET, &path))
            .await?;
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.refusal(&what, status, &body));
        }
        serde_json::from_str(&body).map(Some).map_err(|e| {
            BackendError::platform(
                "the OpenFaaS gateway answered a function status that is not JSON",
                e,
            )
        })
    }

    /// Writes the gateway secret `name`, creating it or replacing its value.
    pub async fn put_secret(&self, name: &str, value: &str) -> Result<(), BackendError> {
        let what = format!("write secret {name}");
        let mut body = json!({ "name": name, "value": value });
        if let Some(namespace) = &self.target.namespace {
            body["namespace"] = json!(namespace);
        }
        let (status, answer) = self
            .send(
                &what,
                self.system(reqwest::Method::POST, "/system/secrets")
                    .json(&body),
            )
            .await?;
        if status.is_success() {
            return Ok(());
        }
        // faas-netes answers 409 for a secret that exists: replace its value instead.
        if status == reqwest::StatusCode::CONFLICT {
            let request = self
                .system(reqwest::Method::PUT, "/system/secrets")
                .json(&body);
            return self.expect_success(&what, request).await.map(drop);
        }
        Err(self.refusal(&what, status, &answer))
    }

    /// Removes the gateway secret `name`; one that is already gone is fine.
    pub async fn delete_secret(&self, name: &str) -> Result<(), BackendError> {
        let what = format!("delete secret {name}");
        let mut body = json!({ "name": name });
        if let Some(namespace) = &self.target.namespace {
            body["namespace"] = json!(namespace);
        }
        let request = self
            .system(reqwest::Method::DELETE, "/system/secrets")
            .json(&body);
        self.expect_gone(&what, request).await
    }

    /// Creates the function, or updates it when it exists. A `fresh` deployment (a new run, with a
    /// new key) replaces an existing function instead: its pods hold the old key, and a rolling
    /// update would keep them serving until the new ones are up.
    pub async fn deploy(
        &self,
        action: Action,
        mounts: Mounts<'_>,
        fresh: bool,
    ) -> Result<(), BackendError> {
        let exists = self.status().await?.is_some();
        if exists && fresh {
            self.delete().await?;
            self.wait_until_gone().await?;
        }
        let method = if exists && !fresh {
            reqwest::Method::PUT
        } else {
            reqwest::Method::POST
        };
        let what = format!("deploy function {}", self.target.name);
        let body = deployment(&self.target, action, mounts);
        // The namespace travels in the body here, not as a query parameter.
        let mut request = self
            .http
            .request(method, format!("{}/system/functions", self.target.gateway))
            .timeout(SYSTEM_CALL_TIMEOUT)
            .json(&body);
        if let Some(auth) = &self.target.credentials {
            request = request.basic_auth(&auth.user, Some(&auth.password));
        }
        self.expect_success(&what, request).await.map(drop)
    }

    pub async fn scale(&self, replicas: u32) -> Result<(), BackendError> {
        let path = format!("/system/scale-function/{}", self.target.name);
        let what = format!("scale function {} to {replicas}", self.target.name);
        let request = self
            .system(reqwest::Method::POST, &path)
            .json(&scale_request(&self.target, replicas));
        self.expect_success(&what, request).await.map(drop)
    }

    /// Removes the function; one that is already gone is fine.
    pub async fn delete(&self) -> Result<(), BackendError> {
        let what = format!("delete function {}", self.target.name);
        let mut request = self
            .http
            .delete(format!("{}/system/functions", self.target.gateway))
            .timeout(SYSTEM_CALL_TIMEOUT)
            .json(&delete_request(&self.target));
        if let Some(auth) = &self.target.credentials {
            request = request.basic_auth(&auth.user, Some(&auth.password));
        }
        self.expect_gone(&what, request).await
    }

    async fn wait_until_gone(&self) -> Result<(), BackendError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        while self.status().await?.is_some() {
            if Instant::now() > deadline {
                return Err(BackendError::Unavailable(format!(
                    "OpenFaaS function {} was still there {READY_TIMEOUT:?} after its deletion",
                    self.target.name
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
        Ok(())
    }

    async fn wait_for_replicas(&self, replicas: u32) -> Result<(), BackendError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let status = self.status().await?;
            let count = |field: &str| status.as_ref().and_then(|s| s[field].as_u64()).unwrap_or(0);
            let (wanted, available) = (count("replicas"), count("availableReplicas"));
            if wanted == u64::from(replicas) && available >= u64::from(replicas) {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(BackendError::Unavailable(format!(
                    "OpenFaaS function {} had {available} of {replicas} replicas available after {READY_TIMEOUT:?}",
                    self.target.name
                )));
            }
            tokio::time::sleep(READY_POLL).await;
        }
    }
}

pub struct OpenFaasBackend {
    gateway: Gateway,
    invocation_url: String,
    limits: PoolLimits,
    /// The run's key and store credentials; `None` for a backend that only releases a job's
    /// function.
    secrets: Option<FunctionSecrets>,
    deployed_memory_mb: Option<u32>,
    functions: u32,
}

/// Every gateway secret a run may write, by name suffix.
const RUN_SECRETS: [&str; 4] = [
    KEY_SECRET,
    STORE_USERNAME_SECRET,
    STORE_PASSWORD_SECRET,
    STORE_CA_SECRET,
];

impl OpenFaasBackend {
    pub fn new(
        target: OpenFaasTarget,
        limits: PoolLimits,
        secrets: Option<FunctionSecrets>,
    ) -> Result<Self, BackendError> {
        Ok(Self {
            invocation_url: target.invocation_url(),
            gateway: Gateway::new(target)?,
            limits,
            secrets,
            deployed_memory_mb: None,
            functions: 0,
        })
    }

    /// Writes the run's key and the store's credentials as the function's gateway secrets.
    async fn put_run_secrets(&self, secrets: &FunctionSecrets) -> Result<(), BackendError> {
        let store = &secrets.store;
        let ca = store
            .ca_pem
            .as_ref()
            .map(|pem| String::from_utf8_lossy(pem).into_owned());
        let values = [
            (KEY_SECRET, Some(secrets.key.to_text())),
            (STORE_USERNAME_SECRET, store.username.clone()),
            (STORE_PASSWORD_SECRET, store.password.clone()),
            (STORE_CA_SECRET, ca),
        ];
        for (suffix, value) in values {
            if let Some(value) = value {
                let name = self.gateway.target.secret(suffix);
                self.gateway.put_secret(&name, &value).await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl FunctionBackend for OpenFaasBackend {
    fn name(&self) -> &'static str {
        "openfaas"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        let cap = self.gateway.target.max_replicas;
        if action.functions > cap {
            return Err(BackendError::Config(format!(
                "{} functions asked of an OpenFaaS function that runs at most {cap} replicas (spec.backend.openfaas.maxReplicas)",
                action.functions
            )));
        }
        let secrets = self.secrets.as_ref().ok_or_else(|| {
            BackendError::Config("this OpenFaaS backend has no task key to run with".to_string())
        })?;
        // Memory is part of the Deployment: a new size is a new deployment (and cold pods).
        if self.deployed_memory_mb != Some(action.memory_mb) {
            let fresh = self.deployed_memory_mb.is_none();
            if fresh {
                self.put_run_secrets(secrets).await?;
            }
            let fingerprint = secrets.key.fingerprint();
            let mounts = Mounts::of(&fingerprint, &secrets.store);
            self.gateway.deploy(action, mounts, fresh).await?;
            self.deployed_memory_mb = Some(action.memory_mb);
        }
        self.gateway.scale(action.functions).await?;
        self.gateway.wait_for_replicas(action.functions).await?;
        self.functions = action.functions;
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        let Some(FunctionSecrets { key, .. }) = &self.secrets else {
            let failure = TaskFailure::fatal("this OpenFaaS backend has no task key");
            return failed_invocations(assignments, &failure);
        };
        let slots = vec![self.invocation_url.clone(); self.functions as usize];
        run_over_http(
            &self.gateway.http,
            slots,
            self.limits,
            assignments,
            progress,
            key,
        )
        .await
    }

    async fn release(&mut self) -> Result<(), BackendError> {
        let deleted = self.gateway.delete().await;
        // The key is worthless once its run is over (a new run writes its own), and the store's
        // credentials must not outlive the function: removed even if the function is not.
        for suffix in RUN_SECRETS {
            let name = self.gateway.target.secret(suffix);
            self.gateway.delete_secret(&name).await?;
        }
        deleted?;
        self.deployed_memory_mb = None;
        self.functions = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(namespace: Option<&str>) -> OpenFaasTarget {
        OpenFaasTarget {
            gateway: "http://gateway.openfaas:8080".to_string(),
            name: "siren-mnist".to_string(),
            namespace: namespace.map(str::to_string),
            job: "mnist".to_string(),
            image: "registry.example.com/siren-worker:0.1.0".to_string(),
            max_replicas: 5,
            credentials: None,
            pod_template: None,
        }
    }

    fn mounts() -> Mounts<'static> {
        Mounts {
            key_fingerprint: "0123456789ab",
            store_username: true,
            store_password: true,
            store_ca: false,
        }
    }

    /// Field names and shapes follow faas-provider's `FunctionDeployment`, `ScaleServiceRequest`
    /// and `DeleteFunctionRequest` (the gateway's REST API).
    #[test]
    fn the_gateway_requests_match_the_golden_ones() {
        let golden: Value =
            serde_json::from_str(include_str!("../../tests/golden/openfaas-requests.json"))
                .expect("golden JSON");
        let target = target(Some("ml-fn"));
        let action = Action {
            functions: 4,
            memory_mb: 3008,
        };
        assert_eq!(deployment(&target, action, mounts()), golden["deploy"]);
        assert_eq!(scale_request(&target, 4), golden["scale"]);
        assert_eq!(delete_request(&target), golden["delete"]);
        assert_eq!(
            target.invocation_url(),
            "http://gateway.openfaas:8080/function/siren-mnist.ml-fn"
        );
    }

    /// faas-provider's `FunctionDeployment` has `constraints` (node selector terms `key=value`)
    /// next to the labels, annotations and `envVars` a pod template adds to.
    #[test]
    fn a_pod_template_deploys_as_the_golden_request() {
        let golden: Value =
            serde_json::from_str(include_str!("../../tests/golden/openfaas-requests.json"))
                .expect("golden JSON");
        let mut target = target(Some("ml-fn"));
        target.pod_template = Some(
            serde_json::from_value(json!({
                "labels": { "team": "vision" },
                "annotations": { "com.openfaas.profile": "training-pool" },
                "nodeSelector": { "pool": "cpu-only", "kubernetes.io/arch": "amd64" },
                "env": [{ "name": "RUST_BACKTRACE", "value": "1" }, { "name": "EMPTY" }],
            }))
            .expect("a pod template"),
        );
        let action = Action {
            functions: 4,
            memory_mb: 3008,
        };
        assert_eq!(
            deployment(&target, action, mounts()),
            golden["deployWithPodTemplate"]
        );
    }

    #[test]
    fn the_default_namespace_is_left_to_the_gateway() {
        let target = target(None);
        let deploy = deployment(
            &target,
            Action {
                functions: 1,
                memory_mb: 512,
            },
            mounts(),
        );
        assert!(deploy.get("namespace").is_none(), "{deploy}");
        assert!(scale_request(&target, 1).get("namespace").is_none());
        assert_eq!(
            target.invocation_url(),
            "http://gateway.openfaas:8080/function/siren-mnist"
        );
    }

    #[test]
    fn credentials_never_reach_a_debug_print() {
        let auth = BasicAuth {
            user: "admin".to_string(),
            password: "hunter2".to_string(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
