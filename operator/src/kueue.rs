//! Admission through Kueue, as Kueue documents for frameworks it has no integration of its own
//! for: a TrainingJob labelled `kueue.x-k8s.io/queue-name` gets a Workload (owned by the job, one
//! pod set as large as the job's largest pool of functions), runs only while Kueue admits that
//! Workload, stops at the end of its epoch when Kueue evicts it (then gives the quota back, so
//! that Kueue can queue it again) and marks it Finished when it ends.
//!
//! Kueue is looked at by polling the Workload on every reconcile; a job under Kueue is reconciled
//! every [`KUEUE_RECHECK`]. A watch would need the Workload API installed wherever the operator
//! runs, and most installations have no Kueue.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use siren_crds::{BackendKind, SchedulerPolicy, TrainingJob};
use siren_scheduler::{ActionGrid, MB_PER_VCPU};

use crate::ControllerError;

/// The label naming the LocalQueue a job is submitted to, as for every job Kueue admits.
pub const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";
/// The label Kueue puts on a Workload to find the job it stands for.
const JOB_UID_LABEL: &str = "kueue.x-k8s.io/job-uid";
/// The one pod set of a job's Workload: its functions.
pub const POD_SET: &str = "functions";
/// How often a job under Kueue is looked at, for an admission or an eviction.
pub const KUEUE_RECHECK: Duration = Duration::from_secs(2);

/// Where a job stands with Kueue.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// The job names no queue: Kueue has no say.
    NotQueued,
    Admitted,
    /// Not admitted (yet, or again); why, in Kueue's words where it gave any.
    Waiting(String),
    /// Admitted before, now evicted (preempted, deactivated): the job must stop.
    Evicted(String),
}

fn workload_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk(
        "kueue.x-k8s.io",
        "v1beta1",
        "Workload",
    ))
}

fn workloads(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &workload_resource())
}

/// The LocalQueue the job is submitted to.
pub fn queue_of(job: &TrainingJob) -> Option<&str> {
    job.labels().get(QUEUE_LABEL).map(String::as_str)
}

/// The Workload's name: the job's, prefixed as Kueue names those of its own integrations, with
/// part of the uid so that a job created again under the same name gets a Workload of its own.
pub fn workload_name(job: &TrainingJob) -> String {
    let uid = job.uid().unwrap_or_default();
    let suffix: String = uid
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(5)
        .collect();
    let prefix: String = format!("trainingjob-{}", job.name_any())
        .chars()
        .take(240)
        .collect();
    format!("{}-{suffix}", prefix.trim_end_matches('-'))
}

/// A job's name as a label value, which may hold at most 63 characters.
fn label_value(name: &str) -> String {
    let cut: String = name.chars().take(63).collect();
    cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string()
}

/// The most functions, and the most memory each, the job's scheduler may ever ask for: what
/// Kueue reserves quota for.
pub fn largest_pool(job: &TrainingJob) -> (u32, u32) {
    let spec = &job.spec;
    let (functions, memory_mb) = match spec.scheduler.policy {
        SchedulerPolicy::Static => (spec.scheduler.functions, spec.scheduler.memory_mb),
        SchedulerPolicy::Drl => {
            let grid = ActionGrid::default();
            (
                grid.functions.iter().copied().max().unwrap_or(1),
                grid.memory_mb.iter().copied().max().unwrap_or(1769),
            )
        }
    };
    let cap = spec.backend.max_functions().unwrap_or(u32::MAX);
    (functions.min(cap).max(1), memory_mb)
}

/// The Workload that asks Kueue for the job's largest pool: one pod set of that many functions,
/// each with its memory and the CPU that memory buys, and the job's pod template's scheduling
/// constraints (Kueue picks resource flavors by them).
pub fn workload_object(job: &TrainingJob) -> Value {
    let (functions, memory_mb) = largest_pool(job);
    let millicores = ((f64::from(memory_mb) * 1000.0 / MB_PER_VCPU).round() as u64).max(1);
    let requests = json!({ "cpu": format!("{millicores}m"), "memory": format!("{memory_mb}Mi") });
    let backend = &job.spec.backend;
    let image = match backend.kind {
        BackendKind::Knative => backend.knative.as_ref().map(|k| k.image.clone()),
        BackendKind::OpenFaas => backend.openfaas.as_ref().map(|o| o.image.clone()),
        _ => None,
    };
    let mut container = json!({ "name": "worker", "resources": { "requests": requests } });
    if let Some(image) = image {
        container["image"] = json!(image);
    }
    let mut pod_spec = json!({ "containers": [container] });
    let mut template_metadata = json!({});
    if let Some(template) = &backend.pod_template {
        template.place(&mut pod_spec);
        if !template.labels.is_empty() {
            template_metadata["labels"] = json!(template.labels);
        }
    }
    let owner = job.controller_owner_ref(&());
    json!({
        "apiVersion": "kueue.x-k8s.io/v1beta1",
        "kind": "Workload",
        "metadata": {
            "name": workload_name(job),
            "namespace": job.namespace(),
            "labels": {
                JOB_UID_LABEL: job.uid(),
                "siren.dev/job": label_value(&job.name_any()),
                "app.kubernetes.io/managed-by": "siren-operator",
            },
            "ownerReferences": owner.map(|o| vec![o]).unwrap_or_default(),
        },
        "spec": {
            "queueName": queue_of(job),
            "podSets": [{
                "name": POD_SET,
                "count": functions,
                "template": { "metadata": template_metadata, "spec": pod_spec },
            }],
        },
    })
}

fn condition<'a>(workload: &'a Value, type_: &str) -> Option<&'a Value> {
    workload["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn is_true(workload: &Value, type_: &str) -> bool {
    condition(workload, type_).is_some_and(|c| c["status"] == "True")
}

fn message_of(workload: &Value, type_: &str) -> Option<String> {
    condition(workload, type_)
        .and_then(|c| c["message"].as_str())
        .filter(|m| !m.is_empty())
        .map(str::to_string)
}

/// What a Workload says about the job's right to run. An eviction of a Workload that still has
/// quota reserved must be answered (the job stopped, the quota given back) whether or not it was
/// admitted, as Kueue waits for that; one older than the admission it would end is a leftover
/// (Kueue resets it on readmission, but a stale one must not stop the job again).
pub fn admission_of(workload: &Value) -> Admission {
    let reserved = !workload["status"]["admission"].is_null();
    let deactivated = workload["spec"]["active"] == false;
    let since = |type_: &str| {
        condition(workload, type_)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .and_then(|t| t.parse::<Timestamp>().ok())
    };
    let evicted = is_true(workload, "Evicted")
        && match (since("Evicted"), since("Admitted")) {
            (Some(evicted), Some(admitted)) => evicted >= admitted,
            _ => true,
        };
    let admitted = reserved && is_true(workload, "Admitted");
    if reserved && (evicted || deactivated) {
        let why = message_of(workload, "Evicted")
            .unwrap_or_else(|| "Kueue deactivated the Workload".to_string());
        return Admission::Evicted(why);
    }
    if admitted {
        return Admission::Admitted;
    }
    let name = workload["metadata"]["name"].as_str().unwrap_or("?");
    let queue = workload["spec"]["queueName"].as_str().unwrap_or("?");
    let why = if deactivated {
        "the Workload is deactivated (spec.active is false)".to_string()
    } else {
        message_of(workload, "QuotaReserved")
            .or_else(|| message_of(workload, "Admitted"))
            .unwrap_or_else(|| "Kueue has not looked at it yet".to_string())
    };
    Admission::Waiting(format!(
        "waiting for Kueue to admit Workload {name} in LocalQueue {queue}: {why}"
    ))
}

/// Reads (creating when missing) the job's Workload, and says where the job stands.
pub async fn admission(client: &Client, job: &TrainingJob) -> Result<Admission, ControllerError> {
    if queue_of(job).is_none() {
        return Ok(Admission::NotQueued);
    }
    let namespace = job.namespace().unwrap_or_else(|| "default".to_string());
    let api = workloads(client, &namespace);
    let name = workload_name(job);
    let workload = match api.get_opt(&name).await {
        Ok(Some(workload)) => workload,
        Ok(None) => {
            let object: DynamicObject = serde_json::from_value(workload_object(job))
                .map_err(|e| ControllerError::Kueue(format!("the Workload {name}: {e}")))?;
            match api.create(&PostParams::default(), &object).await {
                Ok(created) => created,
                Err(error) => return Err(unavailable(error)),
            }
        }
        Err(error) => return Err(unavailable(error)),
    };
    let workload = serde_json::to_value(&workload)
        .map_err(|e| ControllerError::Kueue(format!("the Workload {name}: {e}")))?;
    Ok(admission_of(&workload))
}

/// A Workload API that is not there (404) or not the operator's to use (403) is for the job's
/// owner to hear about; anything else is retried.
fn unavailable(error: kube::Error) -> ControllerError {
    match error {
        kube::Error::Api(response) if response.code == 404 => ControllerError::Kueue(
            "the job names a Kueue queue, but Kueue's Workload API (kueue.x-k8s.io/v1beta1) is not installed"
                .to_string(),
        ),
        kube::Error::Api(response) if response.code == 403 => ControllerError::Kueue(format!(
            "the job names a Kueue queue, but the operator may not use Kueue's Workloads (the chart's kueue.enabled): {}",
            response.message
        )),
        error => error.into(),
    }
}

/// Sets a condition in a Workload's conditions, its transition time moving only with its status.
fn set_condition(
    conditions: &mut Vec<Value>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
) {
    let status = if status { "True" } else { "False" };
    let now = Time(Timestamp::now());
    match conditions.iter_mut().find(|c| c["type"] == type_) {
        Some(existing) => {
            if existing["status"] != status {
                existing["lastTransitionTime"] = json!(now);
            }
            existing["status"] = json!(status);
            existing["reason"] = json!(reason);
            existing["message"] = json!(message);
        }
        None => conditions.push(json!({
            "type": type_,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        })),
    }
}

/// Changes the Workload's status conditions (and optionally clears its admission), guarded by
/// its resource version so that a concurrent write of Kueue's is never overwritten.
async fn patch_status(
    client: &Client,
    job: &TrainingJob,
    change: impl FnOnce(&mut Vec<Value>) -> bool,
    clear_admission: bool,
) -> Result<(), ControllerError> {
    let namespace = job.namespace().unwrap_or_else(|| "default".to_string());
    let api = workloads(client, &namespace);
    let name = workload_name(job);
    let Some(workload) = api.get_opt(&name).await? else {
        return Ok(());
    };
    let version = workload.resource_version();
    let workload = serde_json::to_value(&workload)
        .map_err(|e| ControllerError::Kueue(format!("the Workload {name}: {e}")))?;
    let mut conditions = workload["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if !change(&mut conditions) && !clear_admission {
        return Ok(());
    }
    let mut status = json!({ "conditions": conditions });
    if clear_admission {
        status["admission"] = Value::Null;
    }
    let patch = json!({
        "metadata": { "resourceVersion": version },
        "status": status,
    });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        // Kueue wrote in between: the next reconcile looks again.
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The job stopped after an eviction: its quota goes back to Kueue (admission cleared, quota no
/// longer reserved), which queues the Workload again, as Kueue's own job integrations do.
pub async fn release_quota(
    client: &Client,
    job: &TrainingJob,
    why: &str,
) -> Result<(), ControllerError> {
    patch_status(
        client,
        job,
        |conditions| {
            set_condition(conditions, "QuotaReserved", false, "Pending", why);
            set_condition(conditions, "Admitted", false, "NoReservation", why);
            set_condition(conditions, "Requeued", true, "Evicted", why);
            true
        },
        true,
    )
    .await
}

/// The job's functions are starting on the admitted quota: with `waitForPodsReady`, Kueue evicts
/// a Workload that does not say so in time.
pub async fn mark_started(client: &Client, job: &TrainingJob) -> Result<(), ControllerError> {
    patch_status(
        client,
        job,
        |conditions| {
            let ready = conditions
                .iter()
                .any(|c| c["type"] == "PodsReady" && c["status"] == "True");
            if !ready {
                set_condition(
                    conditions,
                    "PodsReady",
                    true,
                    "Started",
                    "the job's functions are starting",
                );
            }
            !ready
        },
        false,
    )
    .await
}

/// The job ended: Kueue frees its quota once the Workload is Finished.
pub async fn finish(
    client: &Client,
    job: &TrainingJob,
    succeeded: bool,
    message: &str,
) -> Result<(), ControllerError> {
    let reason = if succeeded { "Succeeded" } else { "Failed" };
    patch_status(
        client,
        job,
        |conditions| {
            let done = conditions
                .iter()
                .any(|c| c["type"] == "Finished" && c["status"] == "True");
            if !done {
                set_condition(conditions, "Finished", true, reason, message);
            }
            !done
        },
        false,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(manifest: &str) -> TrainingJob {
        let mut job = siren_crds::parse_manifest(manifest, "test").expect("manifest");
        job.metadata.uid = Some("0a1b2c3d-ffff".to_string());
        job.metadata.namespace = Some("ml".to_string());
        job
    }

    const STATIC: &str = "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: mnist
  labels: {kueue.x-k8s.io/queue-name: team-a}
spec:
  model: {kind: mlp}
  dataset: {builtin: fashion-mnist}
  scheduler: {functions: 6, memoryMb: 3008}
";

    #[test]
    fn the_workload_asks_for_the_largest_pool_in_the_jobs_queue() {
        let workload = workload_object(&job(STATIC));
        assert_eq!(workload["metadata"]["name"], "trainingjob-mnist-0a1b2");
        assert_eq!(workload["metadata"]["namespace"], "ml");
        assert_eq!(
            workload["metadata"]["labels"][JOB_UID_LABEL],
            "0a1b2c3d-ffff"
        );
        assert_eq!(workload["spec"]["queueName"], "team-a");
        let pod_set = &workload["spec"]["podSets"][0];
        assert_eq!(pod_set["name"], POD_SET);
        assert_eq!(pod_set["count"], 6);
        assert_eq!(
            pod_set["template"]["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "1700m", "memory": "3008Mi"})
        );
        let drl = job(&STATIC.replace(
            "scheduler: {functions: 6, memoryMb: 3008}",
            "scheduler: {policy: drl}\n  training: {targetAccuracy: 0.8}",
        ));
        assert_eq!(largest_pool(&drl), (64, 10_240));
    }

    fn workload(status: Value) -> Value {
        json!({
            "metadata": { "name": "trainingjob-mnist-0a1b2" },
            "spec": { "queueName": "team-a" },
            "status": status,
        })
    }

    #[test]
    fn admission_follows_the_workloads_status() {
        assert!(matches!(
            admission_of(&workload(json!({}))),
            Admission::Waiting(why) if why.contains("LocalQueue team-a")
        ));
        let pending = workload(json!({ "conditions": [
            { "type": "QuotaReserved", "status": "False", "message": "couldn't assign flavors" },
        ]}));
        assert!(matches!(
            admission_of(&pending),
            Admission::Waiting(why) if why.contains("couldn't assign flavors")
        ));
        let admitted = workload(json!({
            "admission": { "clusterQueue": "cq", "podSetAssignments": [] },
            "conditions": [{ "type": "Admitted", "status": "True" }],
        }));
        assert_eq!(admission_of(&admitted), Admission::Admitted);
        let evicted = workload(json!({
            "admission": { "clusterQueue": "cq", "podSetAssignments": [] },
            "conditions": [
                { "type": "Admitted", "status": "True" },
                { "type": "Evicted", "status": "True", "message": "Preempted to accommodate a higher priority Workload" },
            ],
        }));
        assert!(matches!(
            admission_of(&evicted),
            Admission::Evicted(why) if why.contains("higher priority")
        ));
        // An admission check's eviction: quota still reserved, no longer admitted.
        let checked_out = workload(json!({
            "admission": { "clusterQueue": "cq", "podSetAssignments": [] },
            "conditions": [
                { "type": "Admitted", "status": "False" },
                { "type": "Evicted", "status": "True", "message": "AdmissionCheck rejected" },
            ],
        }));
        assert!(matches!(admission_of(&checked_out), Admission::Evicted(_)));
        // Admitted again after the eviction: the old Evicted condition no longer counts.
        let readmitted = workload(json!({
            "admission": { "clusterQueue": "cq", "podSetAssignments": [] },
            "conditions": [
                { "type": "Admitted", "status": "True", "lastTransitionTime": "2026-12-03T10:05:00Z" },
                { "type": "Evicted", "status": "True", "lastTransitionTime": "2026-12-03T10:00:00Z" },
            ],
        }));
        assert_eq!(admission_of(&readmitted), Admission::Admitted);
        let deactivated = json!({
            "metadata": { "name": "w" },
            "spec": { "queueName": "team-a", "active": false },
            "status": {},
        });
        assert!(matches!(
            admission_of(&deactivated),
            Admission::Waiting(why) if why.contains("deactivated")
        ));
    }

    #[test]
    fn a_condition_moves_its_transition_time_only_when_its_status_changes() {
        let mut conditions = vec![json!({
            "type": "Finished", "status": "False", "reason": "r", "message": "m",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
        })];
        set_condition(&mut conditions, "Finished", false, "r2", "m2");
        assert_eq!(conditions[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        set_condition(&mut conditions, "Finished", true, "Succeeded", "done");
        assert_ne!(conditions[0]["lastTransitionTime"], "2026-01-01T00:00:00Z");
        assert_eq!(conditions[0]["reason"], "Succeeded");
    }
}
