//! Settings of the pods that run a job's functions, for the backends whose functions are pods
//! (Knative and OpenFaaS). Siren owns the rest of those pods: the worker container, its CPU and
//! memory, its secrets and the labels and annotations the platforms scale by.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvFromSource, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the function pods beyond those Siren sets: where they may be scheduled, what they
/// carry and which identity they run with. The knative backend takes every field; the openfaas
/// backend takes `labels`, `annotations`, `nodeSelector`, `env` with plain values and
/// `serviceAccountName` (the gateway's API has no place for the others).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FunctionPodTemplate {
    /// Labels of the function pods. Siren's own (`siren.dev/...`, `app.kubernetes.io/name`,
    /// `app.kubernetes.io/managed-by`) and the platforms' scaling keys (`serving.knative.dev/...`,
    /// `autoscaling.knative.dev/...`, `com.openfaas.scale....`) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations of the function pods, e.g. `com.openfaas.profile` to apply an OpenFaaS Profile.
    /// The same reserved keys as for labels are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Node labels a node must have to run a function pod. On Knative this needs the
    /// `kubernetes.podspec-nodeselector` feature flag; on OpenFaaS it becomes the function's
    /// `constraints`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the function pods tolerate, e.g. those of a dedicated node pool. Knative only, with
    /// the `kubernetes.podspec-tolerations` feature flag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the function pods. Knative only, with the
    /// `kubernetes.podspec-affinity` feature flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// PriorityClass of the function pods. Knative only, with the
    /// `kubernetes.podspec-priorityclassname` feature flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    /// Extra environment variables of the worker container, after Siren's own. Names starting
    /// with `SIREN_`, and `PORT`, are the worker's and refused. OpenFaaS takes only plain `value`s.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// ConfigMaps and Secrets whose keys become environment variables of the worker container;
    /// Siren's own variables take precedence. Knative only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,
    /// Secrets to pull the worker image with, in the job's namespace. Knative only: OpenFaaS pulls
    /// with those of the function's ServiceAccount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// ServiceAccount of the function pods, in the job's namespace: the same as
    /// `backend.knative.serviceAccountName` (set either, or both to the same name). Knative only:
    /// OpenFaaS functions run in a namespace other jobs share, as its `default` ServiceAccount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Extra resources of the worker container, such as `ephemeral-storage` or an extended
    /// resource (`example.com/fpga`); every request other than `ephemeral-storage` needs a limit.
    /// `cpu` and `memory` are refused: the scheduler sets them from the memory size it picks.
    /// Knative only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

impl FunctionPodTemplate {
    /// Puts where the pods may run (node selector, tolerations, affinity) into a pod spec: the
    /// functions' own pods, and the pods a Kueue Workload stands for, which Kueue picks resource
    /// flavors by.
    pub fn place(&self, pod_spec: &mut serde_json::Value) {
        if !self.node_selector.is_empty() {
            pod_spec["nodeSelector"] = serde_json::json!(self.node_selector);
        }
        if !self.tolerations.is_empty() {
            pod_spec["tolerations"] = serde_json::json!(self.tolerations);
        }
        if let Some(affinity) = &self.affinity {
            pod_spec["affinity"] = serde_json::json!(affinity);
        }
    }
}
