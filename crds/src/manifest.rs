//! Reading a `TrainingJob` manifest: the same YAML that `kubectl apply -f` takes.

use std::path::Path;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use thiserror::Error;

use crate::spec::{API_GROUP, API_VERSION, KIND, TrainingJob, TrainingJobSpec};
use crate::validate::ValidationErrors;

#[derive(Debug, Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{origin}: `{field}`: {message}")]
    Syntax {
        origin: String,
        field: String,
        message: String,
    },
    #[error(
        "{origin}: expected apiVersion {API_GROUP}/{API_VERSION} and kind {KIND}, got {api_version} {kind}"
    )]
    WrongKind {
        origin: String,
        api_version: String,
        kind: String,
    },
    #[error("{origin}: metadata.name: required")]
    MissingName { origin: String },
    #[error(
        "{origin}: metadata.name: `{name}` is not a DNS-1123 name (lowercase letters, digits, '-' and '.')"
    )]
    BadName { origin: String, name: String },
    #[error("{origin}: {errors}")]
    Invalid {
        origin: String,
        errors: ValidationErrors,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ManifestDocument {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    spec: TrainingJobSpec,
    // A manifest exported from a cluster carries a status; it is the cluster's, not the user's.
    #[serde(default)]
    #[allow(dead_code)]
    status: Option<serde::de::IgnoredAny>,
}

pub fn read_manifest(path: &Path) -> Result<TrainingJob, ManifestError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Io {
        path: origin.clone(),
        source,
    })?;
    parse_manifest(&text, &origin)
}

/// Parses and validates a manifest; `origin` names its source in errors.
pub fn parse_manifest(text: &str, origin: &str) -> Result<TrainingJob, ManifestError> {
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let document: ManifestDocument =
        serde_path_to_error::deserialize(deserializer).map_err(|e| ManifestError::Syntax {
            origin: origin.to_string(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    let expected_api_version = format!("{API_GROUP}/{API_VERSION}");
    if document.api_version != expected_api_version || document.kind != KIND {
        return Err(ManifestError::WrongKind {
            origin: origin.to_string(),
            api_version: document.api_version,
            kind: document.kind,
        });
    }
    let name = document.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ManifestError::MissingName {
            origin: origin.to_string(),
        });
    }
    if !crate::is_dns_name(&name) {
        return Err(ManifestError::BadName {
            origin: origin.to_string(),
            name,
        });
    }
    document
        .spec
        .validate()
        .map_err(|errors| ManifestError::Invalid {
            origin: origin.to_string(),
            errors,
        })?;
    let mut job = TrainingJob::new(&name, document.spec);
    job.metadata = document.metadata;
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: quick
spec:
  model:
    kind: mlp
  dataset:
    builtin: fashion-mnist
";

    fn error_of(text: &str) -> String {
        match parse_manifest(text, "job.yaml") {
            Ok(_) => panic!("manifest should have been rejected:\n{text}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn minimal_manifest_gets_defaults() {
        let job = parse_manifest(MINIMAL, "job.yaml").expect("valid manifest");
        assert_eq!(job.metadata.name.as_deref(), Some("quick"));
        assert_eq!(job.spec.training.batch_size, 64);
        assert_eq!(job.spec.scheduler.functions, 4);
        assert_eq!(job.spec.scheduler.memory_mb, 1769);
        assert_eq!(job.spec.dataset.shard_size, 1000);
    }

    #[test]
    fn unknown_field_is_named() {
        let text = MINIMAL.replace("    kind: mlp", "    kind: mlp\n    layers: 3");
        let message = error_of(&text);
        assert!(message.contains("spec.model"), "{message}");
        assert!(message.contains("unknown field `layers`"), "{message}");
    }

    #[test]
    fn unknown_top_level_field_is_named() {
        let message = error_of(&format!("{MINIMAL}extra: 1\n"));
        assert!(message.contains("unknown field `extra`"), "{message}");
    }

    #[test]
    fn invalid_enum_value_is_named() {
        let text = MINIMAL.replace("kind: mlp", "kind: resnet");
        let message = error_of(&text);
        assert!(message.contains("spec.model.kind"), "{message}");
        assert!(message.contains("resnet"), "{message}");
    }

    #[test]
    fn wrong_type_is_named() {
        let text = format!("{MINIMAL}  training:\n    batchSize: lots\n");
        let message = error_of(&text);
        assert!(message.contains("spec.training.batchSize"), "{message}");
    }

    #[test]
    fn out_of_range_values_are_named() {
        let text = format!(
            "{MINIMAL}  training:\n    batchSize: 0\n    momentum: 1.5\n  scheduler:\n    memoryMb: 64\n"
        );
        let message = error_of(&text);
        assert!(
            message.contains("spec.training.batchSize: must be between 1 and 65536, got 0"),
            "{message}"
        );
        assert!(message.contains("spec.training.momentum"), "{message}");
        assert!(message.contains("spec.scheduler.memoryMb"), "{message}");
    }

    #[test]
    fn the_failure_policy_defaults_to_three_attempts_and_no_failed_epoch() {
        let job = parse_manifest(MINIMAL, "job.yaml").expect("valid manifest");
        assert_eq!(job.spec.failure_policy.attempts_per_task, 3);
        assert_eq!(job.spec.failure_policy.failed_epochs_allowed, 0);
        assert!(job.spec.failure_policy.final_failures.is_empty());

        let text = format!(
            "{MINIMAL}  failurePolicy:\n    attemptsPerTask: 5\n    failedEpochsAllowed: 2\n    finalFailures: [timeout]\n"
        );
        let policy = parse_manifest(&text, "job.yaml")
            .expect("valid manifest")
            .spec
            .failure_policy;
        assert_eq!(policy.attempts_per_task, 5);
        assert_eq!(policy.failed_epochs_allowed, 2);
        assert_eq!(policy.final_failures, vec![crate::FailureKind::Timeout]);
        assert!(policy.is_final(&crate::TaskFailure::timeout("slow")));
        assert!(!policy.is_final(&crate::TaskFailure::unreachable("gone")));
        assert!(policy.is_final(&crate::TaskFailure::fatal("bad task")));
    }

    #[test]
    fn a_bad_failure_policy_is_named() {
        let text = format!(
            "{MINIMAL}  failurePolicy:\n    attemptsPerTask: 0\n    finalFailures: [rejected]\n"
        );
        let message = error_of(&text);
        assert!(
            message.contains("spec.failurePolicy.attemptsPerTask: must be between 1 and 10, got 0"),
            "{message}"
        );
        assert!(
            message.contains("spec.failurePolicy.finalFailures[0]"),
            "{message}"
        );
        let message = error_of(&format!(
            "{MINIMAL}  failurePolicy:\n    finalFailures: [oom]\n"
        ));
        assert!(
            message.contains("spec.failurePolicy.finalFailures"),
            "{message}"
        );
    }

    #[test]
    fn two_dataset_sources_are_rejected() {
        let text = MINIMAL.replace(
            "    builtin: fashion-mnist",
            "    builtin: fashion-mnist\n    synthetic: {samples: 10, features: 2, classes: 2}",
        );
        assert!(error_of(&text).contains("spec.dataset: needs exactly one of"));
    }

    #[test]
    fn hidden_layers_only_for_mlp() {
        let text = MINIMAL.replace("kind: mlp", "kind: lenet5\n    hidden: [10]");
        assert!(error_of(&text).contains("spec.model.hidden: only an mlp"));
    }

    #[test]
    fn wrong_kind_and_missing_name_are_rejected() {
        assert!(
            error_of(&MINIMAL.replace("kind: TrainingJob", "kind: Job"))
                .contains("expected apiVersion")
        );
        assert!(
            error_of(&MINIMAL.replace("  name: quick\n", "  labels: {}\n"))
                .contains("metadata.name: required")
        );
    }

    #[test]
    fn store_settings_are_checked() {
        let with_store = |store: &str| format!("{MINIMAL}  store:\n{store}");
        assert!(error_of(&with_store("    kind: redis\n")).contains("spec.store.url: required"));
        assert!(
            error_of(&with_store("    url: redis://x:6379\n"))
                .contains("memory store takes no url")
        );
        assert!(
            error_of(&with_store("    kind: redis\n    url: http://x\n"))
                .contains("redis:// or rediss://")
        );
        let ca_on_plain =
            with_store("    kind: redis\n    url: redis://x:6379\n    caFile: /ca.pem\n");
        assert!(error_of(&ca_on_plain).contains("spec.store.caFile"));
        let tls = with_store(
            "    kind: redis\n    url: rediss://x:6380\n    caFile: /ca.pem\n    credentialsSecret: redis-auth\n",
        );
        assert!(parse_manifest(&tls, "job.yaml").is_ok());
        let password_in_url = error_of(&with_store(
            "    kind: redis\n    url: redis://:pw@x:6379\n",
        ));
        assert!(
            password_in_url.contains("spec.store.url: carries credentials")
                && password_in_url.contains("spec.store.credentialsSecret")
                && !password_in_url.contains("pw@"),
            "{password_in_url}"
        );
        assert!(
            error_of(&with_store(
                "    kind: redis\n    url: redis://x:6379\n    credentialsSecret: Bad_Name\n"
            ))
            .contains("spec.store.credentialsSecret: must be the name of a Secret")
        );
    }

    #[test]
    fn scheduler_settings_are_checked() {
        let with = |section: &str| format!("{MINIMAL}{section}");
        assert!(
            error_of(&with("  scheduler:\n    policy: drl\n"))
                .contains("spec.training.targetAccuracy: the drl scheduler")
        );
        let drl = with(
            "  scheduler:\n    policy: drl\n    policyFile: p.json\n  training:\n    targetAccuracy: 0.8\n",
        );
        let job = parse_manifest(&drl, "job.yaml").expect("a drl job");
        assert!(job.spec.scheduler.online_learning, "on by default");
        assert!(
            error_of(&with("  scheduler:\n    profileFile: p.json\n"))
                .contains("spec.scheduler.profileFile: only the drl policy")
        );
    }

    #[test]
    fn malformed_yaml_is_an_error_not_a_panic() {
        let message = error_of("apiVersion: [unclosed\n");
        assert!(message.starts_with("job.yaml"), "{message}");
    }

    #[test]
    fn the_lambda_backend_needs_a_function_and_a_remote_store() {
        let text = format!("{MINIMAL}  backend:\n    kind: lambda\n");
        let message = error_of(&text);
        assert!(
            message.contains("spec.backend.lambda.functionName"),
            "{message}"
        );
        assert!(message.contains("need an s3 store"), "{message}");
        let text = format!("{MINIMAL}  backend:\n    kind: lambda\n    taskTimeoutSeconds: 901\n");
        assert!(error_of(&text).contains("at most 900 seconds"));
        let text = format!(
            "{MINIMAL}  backend:\n    kind: lambda\n    lambda:\n      functionName: siren\n      endpoint: http://127.0.0.1:9000\n  store:\n    kind: s3\n    url: s3://bucket/jobs\n"
        );
        let job = parse_manifest(&text, "job.yaml").expect("valid lambda job");
        let lambda = job.spec.backend.lambda.expect("lambda settings");
        assert_eq!(lambda.function_name, "siren");
        assert_eq!(lambda.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }

    #[test]
    fn the_knative_backend_needs_an_image_a_valid_name_and_a_remote_store() {
        let message = error_of(&format!("{MINIMAL}  backend:\n    kind: knative\n"));
        assert!(message.contains("spec.backend.knative.image"), "{message}");
        assert!(message.contains("Knative functions are pods"), "{message}");
        let text = format!(
            "{MINIMAL}  backend:\n    kind: knative\n    knative:\n      image: siren-worker:1\n      serviceName: Bad_Name\n  store:\n    kind: redis\n    url: redis://redis:6379\n"
        );
        let message = error_of(&text);
        assert!(
            message.contains("spec.backend.knative.serviceName") && message.contains("Bad_Name"),
            "{message}"
        );
        let job = parse_manifest(&text.replace("Bad_Name", "trainer"), "job.yaml")
            .expect("valid knative job");
        let knative = job.spec.backend.knative.expect("knative settings");
        assert_eq!(knative.service_name.as_deref(), Some("trainer"));
    }

    #[test]
    fn the_openfaas_backend_needs_a_gateway_and_respects_the_replica_cap() {
        let message = error_of(&format!("{MINIMAL}  backend:\n    kind: openfaas\n"));
        assert!(
            message.contains("spec.backend.openfaas.gateway"),
            "{message}"
        );
        let valid = format!(
            "{MINIMAL}  backend:\n    kind: openfaas\n    openfaas:\n      gateway: http://gateway.openfaas:8080\n      image: siren-worker:1\n  store:\n    kind: redis\n    url: redis://redis:6379\n"
        );
        let job = parse_manifest(&valid, "job.yaml").expect("valid openfaas job");
        let openfaas = job.spec.backend.openfaas.expect("openfaas settings");
        assert_eq!(
            openfaas.max_replicas, 5,
            "Community Edition's cap by default"
        );
        let too_many = valid.replace("  backend:", "  scheduler:\n    functions: 8\n  backend:");
        let message = error_of(&too_many);
        assert!(
            message.contains("spec.scheduler.functions") && message.contains("at most 5 replicas"),
            "{message}"
        );
        let pro = too_many.replace(
            "image: siren-worker:1",
            "image: siren-worker:1\n      maxReplicas: 8",
        );
        parse_manifest(&pro, "job.yaml").expect("OpenFaaS Pro runs 8 replicas");
        let message = error_of(&valid.replace("http://gateway.openfaas:8080", "gateway:8080"));
        assert!(
            message.contains("must be an http:// or https:// URL"),
            "{message}"
        );
    }
}
