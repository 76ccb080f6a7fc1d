//! The `knative` backend: the job's functions are the pods of one Knative Service
//! (`serving.knative.dev/v1`) in the job's namespace. Before each epoch the Service is applied with
//! `min-scale` = `max-scale` = the scheduler's function count and the memory and CPU of its memory
//! size; every task is one request to the Service's cluster-local address, and
//! `containerConcurrency: 1` makes Knative route each request to a pod with nothing else to do.
//! The run's task key lives in a Secret of the job's (`<service>-task-key`) that the container reads
//! through `secretKeyRef`; the store's credentials come from the job's own `credentialsSecret`.
//! The job's `backend.podTemplate` adds to the revision template what Siren leaves open.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams,
};
use serde_json::{Value, json};
use siren_crds::validate::MAX_KNATIVE_SERVICE_NAME;
use siren_crds::{FunctionPodTemplate, KnativeSpec, TASK_KEY_ENV, TaskFailure, TaskKey};
use siren_scheduler::Action;
use siren_store::{STORE_CA_FILE_ENV, STORE_PASSWORD_ENV, STORE_USERNAME_ENV};

use super::http::run_over_http;
use super::pods::{function_name, merge_into, resources, string_entries};
use super::{
    Assignment, BackendError, FunctionBackend, Invocation, PoolLimits, failed_invocations,
};

/// The operator's field manager: the fields it applies are its own, and nobody else's edits to
/// them survive the next epoch.
const FIELD_MANAGER: &str = "siren-operator";
/// Knative's default `max-revision-timeout-seconds`: a Service asking for more is refused.
pub const MAX_REVISION_TIMEOUT_SECONDS: u32 = 600;
/// How long a new revision may take to become ready (image pull, `n` pods scheduled and started).
const READY_TIMEOUT: Duration = Duration::from_secs(600);
const READY_POLL: Duration = Duration::from_millis(250);
/// The port the worker listens on (Knative tells it through `$PORT`).
const WORKER_PORT: u16 = 8080;
/// The key of the task key in its Secret.
const TASK_KEY_FIELD: &str = "task-key";
/// Where the store's CA from `credentialsSecret` is mounted.
const STORE_CA_DIR: &str = "/var/run/siren/store-ca";

/// Everything about the Service that does not change from one epoch to the next.
#[derive(Debug, Clone)]
pub struct KnativeTarget {
    pub namespace: String,
    pub name: String,
    pub job: String,
    pub image: String,
    pub service_account_name: Option<String>,
    /// The TrainingJob, so that deleting the job lets Kubernetes collect the Service even when no
    /// operator runs.
    pub owner: Option<OwnerReference>,
    pub timeout_seconds: u32,
    /// The job's `credentialsSecret` (in its own namespace, as the Service), holding the store's
    /// `username`, `password` and `ca.crt`, each optional.
    pub store_secret: Option<String>,
    /// Whether that Secret holds `ca.crt`, which is then mounted.
    pub store_ca: bool,
    /// The job's `backend.podTemplate`.
    pub pod_template: Option<FunctionPodTemplate>,
}

impl KnativeTarget {
    pub fn new(
        spec: &KnativeSpec,
        pod_template: Option<&FunctionPodTemplate>,
        job: &str,
        namespace: &str,
        owner: Option<OwnerReference>,
        limits: PoolLimits,
    ) -> Result<Self, BackendError> {
        let name = function_name(spec.service_name.as_deref(), job, MAX_KNATIVE_SERVICE_NAME)?;
        Ok(Self {
            namespace: namespace.to_string(),
            name,
            job: job.to_string(),
            image: spec.image.clone(),
            service_account_name: spec.service_account_name.clone(),
            owner,
            timeout_seconds: (limits.task_timeout.as_secs() as u32)
                .clamp(1, MAX_REVISION_TIMEOUT_SECONDS),
            store_secret: None,
            store_ca: false,
            pod_template: pod_template.cloned(),
        })
    }

    /// The Secret holding the run's task key.
    pub fn key_secret(&self) -> String {
        format!("{}-task-key", self.name)
    }
}

/// The Secret holding `key` for the Service's pods, owned by the job like the Service.
pub fn key_secret_object(target: &KnativeTarget, key: &TaskKey) -> Value {
    let mut metadata = json!({
        "name": target.key_secret(),
        "namespace": target.namespace,
        "labels": {
            "app.kubernetes.io/managed-by": "siren-operator",
            "siren.dev/job": target.job,
        },
    });
    if let Some(owner) = &target.owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "stringData": { TASK_KEY_FIELD: key.to_text() },
    })
}

fn secret_env(variable: &str, secret: &str, key: &str) -> Value {
    json!({
        "name": variable,
        "valueFrom": { "secretKeyRef": { "name": secret, "key": key } },
    })
}

/// A variable from a key the Secret may not have: then the container starts without it.
fn optional_secret_env(variable: &str, secret: &str, key: &str) -> Value {
    let mut env = secret_env(variable, secret, key);
    env["valueFrom"]["secretKeyRef"]["optional"] = json!(true);
    env
}

/// The container's secrets: the task key, and the store's credentials when the job names them.
fn secrets_of(target: &KnativeTarget, container: &mut Value, pod_spec: &mut Value) {
    let mut env = vec![secret_env(
        TASK_KEY_ENV,
        &target.key_secret(),
        TASK_KEY_FIELD,
    )];
    if let Some(secret) = &target.store_secret {
        env.push(optional_secret_env(STORE_USERNAME_ENV, secret, "username"));
        env.push(optional_secret_env(STORE_PASSWORD_ENV, secret, "password"));
        if target.store_ca {
            env.push(json!({
                "name": STORE_CA_FILE_ENV,
                "value": format!("{STORE_CA_DIR}/ca.crt"),
            }));
            container["volumeMounts"] =
                json!([{ "name": "store-ca", "mountPath": STORE_CA_DIR, "readOnly": true }]);
            pod_spec["volumes"] = json!([{
                "name": "store-ca",
                "secret": { "secretName": secret, "items": [{ "key": "ca.crt", "path": "ca.crt" }] },
            }]);
        }
    }
    container["env"] = json!(env);
}

/// Applies the job's pod template to the revision template: labels and annotations next to
/// Siren's, scheduling and pull secrets in the pod spec, variables after Siren's (Kubernetes lets
/// `env` win over `envFrom`, so Siren's hold either way) and extra resources next to the
/// scheduler's CPU and memory.
///
/// Knative's webhook refuses `nodeSelector`, `tolerations`, `affinity` and `priorityClassName`
/// unless its `config-features` ConfigMap enables `kubernetes.podspec-nodeselector`,
/// `kubernetes.podspec-tolerations`, `kubernetes.podspec-affinity` and
/// `kubernetes.podspec-priorityclassname` (and `valueFrom.fieldRef` unless it enables
/// `kubernetes.podspec-fieldref`): the Service's apply then fails with its message.
fn apply_pod_template(
    template: &FunctionPodTemplate,
    metadata: &mut Value,
    container: &mut Value,
    pod_spec: &mut Value,
) {
    merge_into(&mut metadata["labels"], string_entries(&template.labels));
    merge_into(
        &mut metadata["annotations"],
        string_entries(&template.annotations),
    );
    template.place(pod_spec);
    if let Some(class) = &template.priority_class_name {
        pod_spec["priorityClassName"] = json!(class);
    }
    if !template.image_pull_secrets.is_empty() {
        pod_spec["imagePullSecrets"] = json!(template.image_pull_secrets);
    }
    if let Some(env) = container["env"].as_array_mut() {
        env.extend(template.env.iter().map(|var| json!(var)));
    }
    if !template.env_from.is_empty() {
        container["envFrom"] = json!(template.env_from);
    }
    if let Some(extra) = &template.resources {
        for (part, quantities) in [("requests", &extra.requests), ("limits", &extra.limits)] {
            let quantities = quantities
                .iter()
                .flatten()
                .map(|(resource, quantity)| (resource.clone(), json!(quantity)));
            merge_into(&mut container["resources"][part], quantities);
        }
    }
}

/// The Service for a pool of `action.functions` functions of `action.memory_mb` each.
/// `key_fingerprint` names the run's key on the revision template, so that a new key (a new run)
/// rolls new pods that read it.
pub fn service_object(target: &KnativeTarget, action: Action, key_fingerprint: &str) -> Value {
    let scale = action.functions.to_string();
    let mut container = json!({
        "name": "worker",
        "image": target.image,
        "ports": [{ "name": "http1", "containerPort": WORKER_PORT }],
        "resources": resources(action.memory_mb),
        "readinessProbe": { "httpGet": { "path": "/healthz" } },
    });
    let mut pod_spec = json!({
        "containerConcurrency": 1,
        "timeoutSeconds": target.timeout_seconds,
    });
    let mut revision_metadata = json!({
        "labels": { "siren.dev/job": target.job },
        "annotations": {
            "autoscaling.knative.dev/initial-scale": scale,
            "autoscaling.knative.dev/min-scale": scale,
            "autoscaling.knative.dev/max-scale": scale,
            "siren.dev/task-key": key_fingerprint,
        },
    });
    secrets_of(target, &mut container, &mut pod_spec);
    if let Some(template) = &target.pod_template {
        apply_pod_template(
            template,
            &mut revision_metadata,
            &mut container,
            &mut pod_spec,
        );
    }
    pod_spec["containers"] = json!([container]);
    let template_account = target
        .pod_template
        .as_ref()
        .and_then(|template| template.service_account_name.as_ref());
    // Validation lets the two name only the same account.
    if let Some(account) = target.service_account_name.as_ref().or(template_account) {
        pod_spec["serviceAccountName"] = json!(account);
    }
    let mut metadata = json!({
        "name": target.name,
        "namespace": target.namespace,
        "labels": {
            "networking.knative.dev/visibility": "cluster-local",
            "app.kubernetes.io/name": "siren-worker",
            "app.kubernetes.io/managed-by": "siren-operator",
            "siren.dev/job": target.job,
        },
    });
    if let Some(owner) = &target.owner {
        metadata["ownerReferences"] = json!([owner]);
    }
    json!({
        "apiVersion": "serving.knative.dev/v1",
        "kind": "Service",
        "metadata": metadata,
        "spec": {
            "template": {
                "metadata": revision_metadata,
                "spec": pod_spec,
            },
        },
    })
}

fn service_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "serving.knative.dev",
        "v1",
        "Service",
    ))
}

pub fn services(client: kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client, namespace, &service_resource())
}

/// What a Service's status says about the revision it was last asked for.
#[derive(Debug, PartialEq)]
pub enum Readiness {
    /// Ready; requests go to this address.
    Ready(String),
    Pending(String),
    Failed(String),
}

pub fn readiness(service: &Value) -> Readiness {
    let generation = service["metadata"]["generation"].as_i64();
    let status = &service["status"];
    if generation.is_none() || status["observedGeneration"].as_i64() != generation {
        return Readiness::Pending("Knative has not seen the latest change yet".to_string());
    }
    let conditions = status["conditions"].as_array().cloned().unwrap_or_default();
    let Some(ready) = conditions.iter().find(|c| c["type"] == "Ready") else {
        return Readiness::Pending("no Ready condition yet".to_string());
    };
    let explanation = format!(
        "{}: {}",
        ready["reason"].as_str().unwrap_or("no reason"),
        ready["message"].as_str().unwrap_or("no message")
    );
    match ready["status"].as_str() {
        Some("True") => {}
        Some("False") => return Readiness::Failed(explanation),
        _ => return Readiness::Pending(explanation),
    }
    if status["latestReadyRevisionName"] != status["latestCreatedRevisionName"] {
        return Readiness::Pending("the new revision is not ready yet".to_string());
    }
    match status["address"]["url"].as_str() {
        Some(url) if !url.is_empty() => Readiness::Ready(url.trim_end_matches('/').to_string()),
        _ => Readiness::Pending("the Service has no address yet".to_string()),
    }
}

pub struct KnativeBackend {
    api: Api<DynamicObject>,
    secrets: Api<Secret>,
    target: KnativeTarget,
    /// The run's key; `None` for a backend that only releases a job's functions.
    key: Option<TaskKey>,
    key_written: bool,
    http: reqwest::Client,
    limits: PoolLimits,
    url: Option<String>,
    functions: u32,
}

impl KnativeBackend {
    pub fn new(
        client: kube::Client,
        target: KnativeTarget,
        limits: PoolLimits,
        key: Option<TaskKey>,
    ) -> Result<Self, BackendError> {
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| BackendError::platform("cannot build the HTTP client", e))?;
        Ok(Self {
            api: services(client.clone(), &target.namespace),
            secrets: Api::namespaced(client, &target.namespace),
            target,
            key,
            key_written: false,
            http,
            limits,
            url: None,
            functions: 0,
        })
    }

    async fn wait_until_ready(&self) -> Result<String, BackendError> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let name = &self.target.name;
        loop {
            let service = self.api.get(name).await.map_err(|e| {
                BackendError::platform(format!("cannot read Knative Service {name}"), e)
            })?;
            let service = serde_json::to_value(&service).map_err(|e| {
                BackendError::platform(format!("Knative Service {name} is not JSON"), e)
            })?;
            match readiness(&service) {
                Readiness::Ready(url) => return Ok(url),
                Readiness::Failed(why) => {
                    return Err(BackendError::platform(
                        format!(
                            "Knative Service {}/{name} is not ready",
                            self.target.namespace
                        ),
                        why,
                    ));
                }
                Readiness::Pending(why) if Instant::now() > deadline => {
                    return Err(BackendError::Unavailable(format!(
                        "Knative Service {}/{name} was not ready after {READY_TIMEOUT:?}: {why}",
                        self.target.namespace
                    )));
                }
                Readiness::Pending(_) => tokio::time::sleep(READY_POLL).await,
            }
        }
    }
}

#[async_trait]
impl FunctionBackend for KnativeBackend {
    fn name(&self) -> &'static str {
        "knative"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        let key = self.key.as_ref().ok_or_else(|| {
            BackendError::Config("this Knative backend has no task key to run with".to_string())
        })?;
        if !self.key_written {
            let name = self.target.key_secret();
            self.secrets
                .patch(
                    &name,
                    &PatchParams::apply(FIELD_MANAGER).force(),
                    &Patch::Apply(&key_secret_object(&self.target, key)),
                )
                .await
                .map_err(|e| {
                    BackendError::platform(
                        format!(
                            "cannot write the task key Secret {}/{name}",
                            self.target.namespace
                        ),
                        e,
                    )
                })?;
            self.key_written = true;
        }
        let service = service_object(&self.target, action, &key.fingerprint());
        self.api
            .patch(
                &self.target.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&service),
            )
            .await
            .map_err(|e| {
                BackendError::platform(
                    format!(
                        "cannot apply Knative Service {}/{}",
                        self.target.namespace, self.target.name
                    ),
                    e,
                )
            })?;
        self.url = Some(self.wait_until_ready().await?);
        self.functions = action.functions;
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        let slots = match &self.url {
            Some(url) => vec![url.clone(); self.functions as usize],
            None => Vec::new(),
        };
        let Some(key) = &self.key else {
            let failure = TaskFailure::fatal("this Knative backend has no task key");
            return failed_invocations(assignments, &failure);
        };
        run_over_http(&self.http, slots, self.limits, assignments, progress, key).await
    }

    /// Deletes the job's Service; one that is already gone (or a cluster without Knative) is
    /// fine.
    async fn release(&mut self) -> Result<(), BackendError> {
        let (namespace, name) = (&self.target.namespace, &self.target.name);
        let service = match self.api.delete(name, &DeleteParams::background()).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(BackendError::platform(
                format!("cannot delete Knative Service {namespace}/{name}"),
                error,
            )),
        };
        // The key is worthless once its run is over (a new run writes its own); it goes even
        // when the Service does not.
        let secret = self.target.key_secret();
        match self
            .secrets
            .delete(&secret, &DeleteParams::background())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => {
                return Err(BackendError::platform(
                    format!("cannot delete the task key Secret {namespace}/{secret}"),
                    error,
                ));
            }
        }
        service?;
        self.key_written = false;
        self.url = None;
        self.functions = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> KnativeTarget {
        KnativeTarget {
            namespace: "ml".to_string(),
            name: "siren-mnist".to_string(),
            job: "mnist".to_string(),
            image: "registry.example.com/siren-worker:0.1.0".to_string(),
            service_account_name: Some("trainer".to_string()),
            owner: Some(OwnerReference {
                api_version: "siren.dev/v1alpha1".to_string(),
                kind: "TrainingJob".to_string(),
                name: "mnist".to_string(),
                uid: "0b7c7a5e-6f1a-4b8e-9a57-2f3c4d5e6f70".to_string(),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }),
            timeout_seconds: 300,
            store_secret: Some("redis-auth".to_string()),
            store_ca: true,
            pod_template: None,
        }
    }

    /// A pod template with every setting, the ServiceAccount among them.
    fn pod_template() -> FunctionPodTemplate {
        serde_json::from_value(json!({
            "labels": { "team": "vision" },
            "annotations": { "example.com/owner": "vision" },
            "nodeSelector": { "pool": "cpu-only" },
            "tolerations": [
                {
                    "key": "dedicated",
                    "operator": "Equal",
                    "value": "training",
                    "effect": "NoSchedule",
                },
            ],
            "affinity": {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{
                            "matchExpressions": [{
                                "key": "topology.kubernetes.io/zone",
                                "operator": "In",
                                "values": ["eu-west-1a", "eu-west-1b"],
                            }],
                        }],
                    },
                },
            },
            "priorityClassName": "batch-low",
            "env": [
                { "name": "RUST_BACKTRACE", "value": "1" },
                {
                    "name": "HTTPS_PROXY",
                    "valueFrom": { "secretKeyRef": { "name": "proxy", "key": "url" } },
                },
            ],
            "envFrom": [
                { "configMapRef": { "name": "worker-settings" } },
                { "prefix": "WORKER_", "secretRef": { "name": "worker-secrets" } },
            ],
            "imagePullSecrets": [{ "name": "registry-credentials" }],
            "serviceAccountName": "trainer",
            "resources": {
                "requests": { "ephemeral-storage": "1Gi" },
                "limits": { "ephemeral-storage": "2Gi", "example.com/fpga": 1 },
            },
        }))
        .expect("a pod template")
    }

    /// Every field follows serving.knative.dev/v1 (knative.dev/docs/serving/reference/serving-api):
    /// the visibility label on the Service, the autoscaling annotations on the revision template,
    /// `containerConcurrency` and `timeoutSeconds` in the revision spec.
    #[test]
    fn the_service_matches_the_golden_object() {
        let object = service_object(
            &target(),
            Action {
                functions: 8,
                memory_mb: 1769,
            },
            "0123456789ab",
        );
        let golden: Value =
            serde_json::from_str(include_str!("../../tests/golden/knative-service.json"))
                .expect("golden JSON");
        assert_eq!(
            object,
            golden,
            "{}",
            serde_json::to_string_pretty(&object).unwrap_or_default()
        );
    }

    /// The template's scheduling fields follow the Knative Service's pod spec (with Knative's
    /// `kubernetes.podspec-*` feature flags); Siren's own labels, annotations, variables, CPU and
    /// memory are all still there.
    #[test]
    fn a_pod_template_matches_its_golden_object() {
        let mut target = target();
        target.service_account_name = None;
        target.pod_template = Some(pod_template());
        let object = service_object(
            &target,
            Action {
                functions: 8,
                memory_mb: 1769,
            },
            "0123456789ab",
        );
        let golden: Value = serde_json::from_str(include_str!(
            "../../tests/golden/knative-service-pod-template.json"
        ))
        .expect("golden JSON");
        assert_eq!(
            object,
            golden,
            "{}",
            serde_json::to_string_pretty(&object).unwrap_or_default()
        );
    }

    #[test]
    fn the_knative_service_account_names_the_pods_when_the_template_does_not() {
        let mut target = target();
        let mut template = pod_template();
        template.service_account_name = None;
        target.pod_template = Some(template);
        let action = Action {
            functions: 1,
            memory_mb: 512,
        };
        let object = service_object(&target, action, "0123456789ab");
        assert_eq!(
            object["spec"]["template"]["spec"]["serviceAccountName"],
            "trainer"
        );
    }

    #[test]
    fn cpu_follows_memory_as_on_lambda() {
        assert_eq!(resources(1769)["limits"]["cpu"], "1000m");
        assert_eq!(resources(512)["requests"]["cpu"], "289m");
        assert_eq!(resources(10_240)["limits"]["memory"], "10240Mi");
    }

    #[test]
    fn a_long_task_timeout_is_cut_to_knatives_maximum() {
        let limits = PoolLimits {
            task_timeout: Duration::from_secs(900),
            straggler_factor: 3.0,
        };
        let spec = KnativeSpec {
            image: "worker".to_string(),
            service_name: None,
            service_account_name: None,
        };
        let target =
            KnativeTarget::new(&spec, None, "job", "default", None, limits).expect("target");
        assert_eq!(target.timeout_seconds, MAX_REVISION_TIMEOUT_SECONDS);
        assert_eq!(target.name, "siren-job");
        let long = "j".repeat(60);
        let error = KnativeTarget::new(&spec, None, &long, "default", None, limits)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(error.contains("at most 57 characters"), "{error}");
    }

    fn service(generation: i64, status: Value) -> Value {
        json!({ "metadata": { "generation": generation }, "status": status })
    }

    #[test]
    fn readiness_waits_for_the_latest_generation_and_revision() {
        let ready = json!({
            "observedGeneration": 2,
            "conditions": [{ "type": "Ready", "status": "True" }],
            "latestCreatedRevisionName": "siren-mnist-00002",
            "latestReadyRevisionName": "siren-mnist-00002",
            "address": { "url": "http://siren-mnist.ml.svc.cluster.local/" },
        });
        assert_eq!(
            readiness(&service(2, ready.clone())),
            Readiness::Ready("http://siren-mnist.ml.svc.cluster.local".to_string())
        );
        assert!(matches!(
            readiness(&service(3, ready.clone())),
            Readiness::Pending(_)
        ));
        let mut rolling = ready.clone();
        rolling["latestReadyRevisionName"] = json!("siren-mnist-00001");
        assert!(matches!(
            readiness(&service(2, rolling)),
            Readiness::Pending(_)
        ));
        let mut failed = ready;
        failed["conditions"] = json!([{
            "type": "Ready", "status": "False", "reason": "RevisionFailed",
            "message": "Unable to fetch image \"registry.example.com/siren-worker:0.1.0\""
        }]);
        match readiness(&service(2, failed)) {
            Readiness::Failed(why) => assert!(why.contains("Unable to fetch image"), "{why}"),
            other => panic!("a failed revision is not {other:?}"),
        }
    }
}
