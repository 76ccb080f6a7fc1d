//! What the pods of Knative Services and OpenFaaS functions share: how a job's functions are
//! named, the Kubernetes resources a memory size stands for, and how a job's pod template joins
//! what Siren sets.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use siren_crds::validate::is_function_name;

use super::BackendError;

/// The name a job's functions go by: the one the spec gives, else `siren-` and the job's name,
/// which must then be a DNS label of at most `max` characters.
pub fn function_name(given: Option<&str>, job: &str, max: usize) -> Result<String, BackendError> {
    let name = given.map_or_else(|| format!("siren-{job}"), str::to_string);
    if is_function_name(&name, max) {
        Ok(name)
    } else {
        Err(BackendError::Config(format!(
            "`{name}` cannot name the job's functions: it must be a DNS label of at most {max} characters (lowercase letters, digits and '-'); set the backend's function name"
        )))
    }
}

/// Kubernetes quantities for a function of `memory_mb`: that much memory, and the CPU share a
/// Lambda function of that size gets (one vCPU per 1,769 MB), as requests and limits alike so
/// that the pod is what the scheduler priced.
pub fn resources(memory_mb: u32) -> Value {
    let millicores =
        ((f64::from(memory_mb) * 1000.0 / siren_scheduler::MB_PER_VCPU).round() as u64).max(1);
    let quantities = json!({ "cpu": format!("{millicores}m"), "memory": format!("{memory_mb}Mi") });
    json!({ "requests": quantities.clone(), "limits": quantities })
}

/// Adds `extra`'s entries to the JSON object `into`, keeping those it has: Siren's own labels,
/// annotations, variables and quantities win over a pod template's (validation refuses clashes
/// anyway).
pub fn merge_into(into: &mut Value, extra: impl IntoIterator<Item = (String, Value)>) {
    if let Some(into) = into.as_object_mut() {
        for (key, value) in extra {
            into.entry(key).or_insert(value);
        }
    }
}

/// A template's labels or annotations, as entries for [`merge_into`].
pub fn string_entries(
    map: &BTreeMap<String, String>,
) -> impl Iterator<Item = (String, Value)> + '_ {
    map.iter().map(|(key, value)| (key.clone(), json!(value)))
}
