//! Semantic checks on a spec, beyond what its types enforce. Every error names the field it is about,
//! in the same dotted camelCase path a user wrote in YAML.

use std::fmt;

use crate::spec::{
    BackendKind, ModelKind, PricingSpec, SchedulerPolicy, StoreKind, StoreSpec, TrainingJobSpec,
};
use crate::{is_dns_name, parse_s3_url};

#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self
            .0
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&lines.join("; "))
    }
}

impl std::error::Error for ValidationErrors {}

impl ValidationErrors {
    fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_string(),
            message: message.into(),
        });
    }

    fn range_u32(&mut self, field: &str, value: u32, min: u32, max: u32) {
        if !(min..=max).contains(&value) {
            self.add(
                field,
                format!("must be between {min} and {max}, got {value}"),
            );
        }
    }

    fn positive(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value > 0.0) {
            self.add(field, format!("must be a positive number, got {value}"));
        }
    }

    fn non_negative(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value >= 0.0) {
            self.add(field, format!("must be zero or positive, got {value}"));
        }
    }

    fn fraction(&mut self, field: &str, value: f64) {
        if !(value.is_finite() && value > 0.0 && value < 1.0) {
            self.add(
                field,
                format!("must be strictly between 0 and 1, got {value}"),
            );
        }
    }
}

/// Knative names a Service's revisions after it with a `-00001` suffix, within a 63-character label.
pub const MAX_KNATIVE_SERVICE_NAME: usize = 57;
/// A function's name becomes a Deployment's and a Service's name: a 63-character DNS label.
pub const MAX_FUNCTION_NAME: usize = 63;

/// Whether `name` is a DNS-1035 label of at most `max` characters, as Kubernetes Services need.
pub fn is_function_name(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes[0].is_ascii_lowercase()
        && bytes
            .last()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

pub const MAX_MLP_LAYERS: usize = 16;
pub const MAX_LAYER_WIDTH: u32 = 65_536;

/// A domain-prefixed path, as Kubernetes requires of a Job's `spec.managedBy`.
fn is_controller_name(name: &str) -> bool {
    let Some((domain, path)) = name.split_once('/') else {
        return false;
    };
    name.len() <= 63
        && domain.contains('.')
        && crate::is_dns_name(domain)
        && !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

fn validate_failure_policy(policy: &crate::spec::FailurePolicySpec, errors: &mut ValidationErrors) {
    errors.range_u32(
        "spec.failurePolicy.attemptsPerTask",
        policy.attempts_per_task,
        1,
        10,
    );
    errors.range_u32(
        "spec.failurePolicy.failedEpochsAllowed",
        policy.failed_epochs_allowed,
        0,
        100,
    );
    for (index, kind) in policy.final_failures.iter().enumerate() {
        if *kind == crate::task::FailureKind::Rejected {
            errors.add(
                &format!("spec.failurePolicy.finalFailures[{index}]"),
                "`rejected` is always final; list only functionError, timeout or unreachable"
                    .to_string(),
            );
        }
    }
}

impl TrainingJobSpec {
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        self.validate_model(&mut errors);
        self.validate_dataset(&mut errors);
        self.validate_training(&mut errors);
        if self.active_deadline_seconds == Some(0) {
            errors.add(
                "spec.activeDeadlineSeconds",
                "must be at least 1, got 0".to_string(),
            );
        }
        if let Some(max_cost) = self.budget.max_cost_usd {
            errors.positive("spec.budget.maxCostUsd", max_cost);
        }
        errors.range_u32(
            "spec.scheduler.functions",
            self.scheduler.functions,
            1,
            1000,
        );
        errors.range_u32(
            "spec.scheduler.memoryMb",
            self.scheduler.memory_mb,
            128,
            10_240,
        );
        self.validate_scheduler(&mut errors);
        self.validate_backend(&mut errors);
        validate_failure_policy(&self.failure_policy, &mut errors);
        if let Some(manager) = &self.managed_by
            && !is_controller_name(manager)
        {
            errors.add(
                "spec.managedBy",
                format!("`{manager}` is not a controller name: a domain-prefixed path such as `siren.dev/operator`, at most 63 characters"),
            );
        }
        validate_pricing(&self.backend.pricing, &mut errors);
        validate_store(&self.store, &mut errors);
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    fn validate_backend(&self, errors: &mut ValidationErrors) {
        let backend = &self.backend;
        errors.range_u32(
            "spec.backend.taskTimeoutSeconds",
            backend.task_timeout_seconds,
            1,
            86_400,
        );
        if !(backend.straggler_factor.is_finite()
            && (1.0..=100.0).contains(&backend.straggler_factor))
        {
            errors.add(
                "spec.backend.stragglerFactor",
                format!(
                    "must be between 1 and 100, got {}",
                    backend.straggler_factor
                ),
            );
        }
        let remote = match backend.kind {
            BackendKind::Process => Some("the process backend's functions are other processes"),
            BackendKind::Knative => Some("Knative functions are pods"),
            BackendKind::OpenFaas => Some("OpenFaaS functions are pods"),
            BackendKind::Local | BackendKind::Lambda => None,
        };
        if let Some(why) = remote
            && self.store.kind == StoreKind::Memory
        {
            errors.add(
                "spec.store.kind",
                format!("{why}: they need a redis or s3 store"),
            );
        }
        self.validate_knative(errors);
        self.validate_openfaas(errors);
        validate_pod_template(backend, errors);
        if backend.kind == BackendKind::Lambda {
            if backend.task_timeout_seconds > 900 {
                errors.add(
                    "spec.backend.taskTimeoutSeconds",
                    format!(
                        "a Lambda invocation runs at most 900 seconds, got {}",
                        backend.task_timeout_seconds
                    ),
                );
            }
            if self.store.kind == StoreKind::Memory {
                errors.add(
                    "spec.store.kind",
                    "Lambda functions run in AWS, not in the driver: they need an s3 store (or a redis they can reach)"
                        .to_string(),
                );
            }
            match &backend.lambda {
                None => errors.add(
                    "spec.backend.lambda.functionName",
                    "the lambda backend needs the function to invoke".to_string(),
                ),
                Some(lambda) if lambda.function_name.trim().is_empty() => errors.add(
                    "spec.backend.lambda.functionName",
                    "must name a function".to_string(),
                ),
                Some(_) => {}
            }
        }
    }

    fn validate_knative(&self, errors: &mut ValidationErrors) {
        let Some(knative) = &self.backend.knative else {
            if self.backend.kind == BackendKind::Knative {
                errors.add(
                    "spec.backend.knative.image",
                    "the knative backend needs the worker image to run",
                );
            }
            return;
        };
        if knative.image.trim().is_empty() {
            errors.add("spec.backend.knative.image", "must name an image");
        }
        if let Some(name) = &knative.service_name
            && !is_function_name(name, MAX_KNATIVE_SERVICE_NAME)
        {
            errors.add(
                "spec.backend.knative.serviceName",
                format!(
                    "must be a DNS label (lowercase letters, digits and '-', starting with a letter) of at most {MAX_KNATIVE_SERVICE_NAME} characters, got `{name}`"
                ),
            );
        }
    }

    fn validate_openfaas(&self, errors: &mut ValidationErrors) {
        let Some(openfaas) = &self.backend.openfaas else {
            if self.backend.kind == BackendKind::OpenFaas {
                errors.add(
                    "spec.backend.openfaas.gateway",
                    "the openfaas backend needs the gateway's URL and the worker image",
                );
            }
            return;
        };
        if !openfaas.gateway.starts_with("http://") && !openfaas.gateway.starts_with("https://") {
            errors.add(
                "spec.backend.openfaas.gateway",
                format!(
                    "must be an http:// or https:// URL, got `{}`",
                    openfaas.gateway
                ),
            );
        }
        if openfaas.image.trim().is_empty() {
            errors.add("spec.backend.openfaas.image", "must name an image");
        }
        if let Some(name) = &openfaas.function_name
            && !is_function_name(name, MAX_FUNCTION_NAME)
        {
            errors.add(
                "spec.backend.openfaas.functionName",
                format!(
                    "must be a DNS label (lowercase letters, digits and '-', starting with a letter) of at most {MAX_FUNCTION_NAME} characters, got `{name}`"
                ),
            );
        }
        errors.range_u32(
            "spec.backend.openfaas.maxReplicas",
            openfaas.max_replicas,
            1,
            1000,
        );
        if self.backend.kind == BackendKind::OpenFaas
            && self.scheduler.policy == SchedulerPolicy::Static
            && self.scheduler.functions > openfaas.max_replicas
        {
            errors.add(
                "spec.scheduler.functions",
                format!(
                    "the OpenFaaS function runs at most {} replicas (spec.backend.openfaas.maxReplicas; Community Edition stops at 5), got {}",
                    openfaas.max_replicas, self.scheduler.functions
                ),
            );
        }
    }

    fn validate_scheduler(&self, errors: &mut ValidationErrors) {
        let scheduler = &self.scheduler;
        if scheduler.policy == SchedulerPolicy::Drl {
            if self.training.target_accuracy.is_none() {
                errors.add(
                    "spec.training.targetAccuracy",
                    "the drl scheduler minimises the time to a target accuracy: set one"
                        .to_string(),
                );
            }
            return;
        }
        for (field, set) in [
            ("spec.scheduler.policyFile", scheduler.policy_file.is_some()),
            (
                "spec.scheduler.profileFile",
                scheduler.profile_file.is_some(),
            ),
        ] {
            if set {
                errors.add(field, "only the drl policy reads it".to_string());
            }
        }
    }

    fn validate_model(&self, errors: &mut ValidationErrors) {
        match (&self.model.kind, &self.model.hidden) {
            (ModelKind::Mlp, Some(hidden)) => {
                if hidden.is_empty() || hidden.len() > MAX_MLP_LAYERS {
                    errors.add(
                        "spec.model.hidden",
                        format!(
                            "needs 1 to {MAX_MLP_LAYERS} layer widths, got {}",
                            hidden.len()
                        ),
                    );
                }
                for (i, width) in hidden.iter().enumerate() {
                    errors.range_u32(
                        &format!("spec.model.hidden[{i}]"),
                        *width,
                        1,
                        MAX_LAYER_WIDTH,
                    );
                }
            }
            (kind, Some(_)) if *kind != ModelKind::Mlp => errors.add(
                "spec.model.hidden",
                format!("only an mlp has hidden layers, not {}", kind.as_str()),
            ),
            _ => {}
        }
    }

    fn validate_dataset(&self, errors: &mut ValidationErrors) {
        let d = &self.dataset;
        let sources = [
            d.builtin.is_some(),
            d.idx.is_some(),
            d.csv.is_some(),
            d.libsvm.is_some(),
            d.synthetic.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count();
        if sources != 1 {
            errors.add(
                "spec.dataset",
                format!(
                    "needs exactly one of builtin, idx, csv, libsvm or synthetic, got {sources}"
                ),
            );
        }
        errors.range_u32("spec.dataset.shardSize", d.shard_size, 1, 1_000_000);
        if d.max_train_samples == Some(0) {
            errors.add("spec.dataset.maxTrainSamples", "must be at least 1");
        }
        if d.max_test_samples == Some(0) {
            errors.add("spec.dataset.maxTestSamples", "must be at least 1");
        }
        if let Some(csv) = &d.csv
            && csv.test.is_none()
        {
            errors.fraction("spec.dataset.csv.testFraction", csv.test_fraction);
        }
        if let Some(libsvm) = &d.libsvm {
            if libsvm.test.is_none() {
                errors.fraction("spec.dataset.libsvm.testFraction", libsvm.test_fraction);
            }
            if libsvm.features == Some(0) {
                errors.add("spec.dataset.libsvm.features", "must be at least 1");
            }
        }
        if let Some(synthetic) = &d.synthetic {
            errors.range_u32(
                "spec.dataset.synthetic.samples",
                synthetic.samples,
                1,
                100_000_000,
            );
            errors.range_u32(
                "spec.dataset.synthetic.testSamples",
                synthetic.test_samples,
                1,
                100_000_000,
            );
            errors.range_u32(
                "spec.dataset.synthetic.features",
                synthetic.features,
                1,
                1_000_000,
            );
            errors.range_u32(
                "spec.dataset.synthetic.classes",
                synthetic.classes,
                2,
                10_000,
            );
            errors.non_negative("spec.dataset.synthetic.noise", synthetic.noise);
        }
    }

    fn validate_training(&self, errors: &mut ValidationErrors) {
        let t = &self.training;
        errors.range_u32("spec.training.batchSize", t.batch_size, 1, 65_536);
        errors.positive("spec.training.learningRate", t.learning_rate);
        if !(t.lr_decay.is_finite() && t.lr_decay > 0.0 && t.lr_decay <= 1.0) {
            errors.add(
                "spec.training.lrDecay",
                format!("must be in (0, 1], got {}", t.lr_decay),
            );
        }
        if !(t.momentum.is_finite() && (0.0..1.0).contains(&t.momentum)) {
            errors.add(
                "spec.training.momentum",
                format!("must be in [0, 1), got {}", t.momentum),
            );
        }
        errors.non_negative("spec.training.weightDecay", t.weight_decay);
        errors.range_u32("spec.training.stepsPerPush", t.steps_per_push, 1, 1000);
        errors.range_u32("spec.training.maxEpochs", t.max_epochs, 1, 10_000);
        if let Some(target) = t.target_accuracy
            && !(target.is_finite() && target > 0.0 && target <= 1.0)
        {
            errors.add(
                "spec.training.targetAccuracy",
                format!("must be in (0, 1], got {target}"),
            );
        }
    }
}

fn validate_store(store: &StoreSpec, errors: &mut ValidationErrors) {
    errors.range_u32(
        "spec.store.chunkValues",
        store.chunk_values,
        1024,
        16_777_216,
    );
    match (store.kind, store.url.as_deref()) {
        (StoreKind::Memory, Some(_)) => {
            errors.add("spec.store.url", "the memory store takes no url")
        }
        (StoreKind::Redis, None) => errors.add("spec.store.url", "required for the redis store"),
        (StoreKind::Redis, Some(url))
            if !url.starts_with("redis://") && !url.starts_with("rediss://") =>
        {
            errors.add(
                "spec.store.url",
                "must start with redis:// or rediss:// (TLS)",
            )
        }
        (StoreKind::Redis, Some(url)) if url_has_credentials(url) => errors.add(
            "spec.store.url",
            "carries credentials (user:password@), which whoever may read the job could read: \
             put them in a Secret (keys username, password) and name it in \
             spec.store.credentialsSecret",
        ),
        (StoreKind::S3, None) => errors.add("spec.store.url", "required for the s3 store"),
        (StoreKind::S3, Some(url)) if parse_s3_url(url).is_none() => errors.add(
            "spec.store.url",
            "must be s3://bucket or s3://bucket/prefix",
        ),
        _ => {}
    }
    if store.kind != StoreKind::S3 {
        for (field, value) in [
            ("spec.store.endpoint", &store.endpoint),
            ("spec.store.region", &store.region),
        ] {
            if value.is_some() {
                errors.add(field, "only applies to the s3 store");
            }
        }
    }
    if store.endpoint.as_deref().is_some_and(|endpoint| {
        !endpoint.starts_with("http://") && !endpoint.starts_with("https://")
    }) {
        errors.add("spec.store.endpoint", "must be an http:// or https:// URL");
    }
    if let Some(secret) = &store.credentials_secret {
        if store.kind != StoreKind::Redis {
            errors.add(
                "spec.store.credentialsSecret",
                "only applies to the redis store (the s3 store takes the AWS credential chain)",
            );
        } else if !is_dns_name(secret) {
            errors.add(
                "spec.store.credentialsSecret",
                "must be the name of a Secret (lowercase letters, digits, '-' and '.')",
            );
        }
    }
    if store.ca_file.is_some()
        && !store
            .url
            .as_deref()
            .is_some_and(|u| u.starts_with("rediss://"))
    {
        errors.add(
            "spec.store.caFile",
            "only applies to a TLS store (rediss://)",
        );
    }
}

/// Whether a URL names a user or password before its host (`scheme://userinfo@host`).
fn url_has_credentials(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    authority.contains('@')
}

fn validate_pricing(pricing: &PricingSpec, errors: &mut ValidationErrors) {
    errors.non_negative(
        "spec.backend.pricing.vcpuSecondUsd",
        pricing.vcpu_second_usd,
    );
    errors.non_negative("spec.backend.pricing.gbSecondUsd", pricing.gb_second_usd);
}

const POD_TEMPLATE: &str = "spec.backend.podTemplate";
/// Labels Siren sets on its functions' objects; a pod carrying them would pass for another's.
const RESERVED_LABELS: [&str; 2] = ["app.kubernetes.io/managed-by", "app.kubernetes.io/name"];
/// Domains of Siren's own labels and annotations and of Knative's, by which Knative scales,
/// routes and sizes the functions (its queue-proxy sidecar's resources among them): keys under
/// them or their subdomains are Siren's to set.
const RESERVED_KEY_DOMAINS: [&str; 2] = ["siren.dev", "knative.dev"];
/// OpenFaaS's keys of the same kind, which have no domain.
const RESERVED_KEY_PREFIXES: [&str; 2] = ["com.openfaas.scale.", "com.openfaas.health."];
/// The annotation faas-netes reads a function's ServiceAccount from, which Siren writes from
/// `serviceAccountName`.
pub const OPENFAAS_SERVICE_ACCOUNT_ANNOTATION: &str = "com.openfaas.serviceaccount";
/// Where an OpenFaaS function's scheduling goes instead of the pod template's.
const OPENFAAS_PROFILE: &str = "place the pods with an OpenFaaS Profile (OpenFaaS Standard and \
     Enterprise) named in the annotation `com.openfaas.profile`";
const QUALIFIED_NAME: &str = "must be a qualified name: an optional DNS subdomain and '/', then at \
     most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
const LABEL_VALUE: &str = "must be empty or at most 63 letters, digits, '-', '_' and '.', starting \
     and ending with a letter or digit";
const OBJECT_NAME: &str = "must be the name of a Kubernetes object (lowercase letters, digits, '-' \
     and '.')";

/// The name part of a qualified name, and a non-empty label value.
fn is_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_alphanumeric();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes
            .iter()
            .all(|b| edge(b) || matches!(b, b'-' | b'_' | b'.'))
}

/// Whether `key` is a qualified name, as label and annotation keys are: a name of at most 63
/// letters, digits, '-', '_' and '.', starting and ending with a letter or digit, optionally after
/// a DNS subdomain and '/'.
pub fn is_qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => is_dns_name(prefix) && is_name_part(name),
        None => is_name_part(key),
    }
}

/// Whether `value` is a label value: empty, or a name of at most 63 characters as in
/// [`is_qualified_name`].
pub fn is_label_value(value: &str) -> bool {
    value.is_empty() || is_name_part(value)
}

fn is_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `quantity` reads as a Kubernetes quantity: a decimal number and an SI (`k`, `M`),
/// binary (`Ki`, `Mi`) or exponent (`e3`) suffix. Checked here so that a typo fails the job's
/// validation rather than the Service's apply in the middle of its run.
fn is_quantity(quantity: &str) -> bool {
    let unsigned = quantity.strip_prefix('+').unwrap_or(quantity);
    let number_end = unsigned
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(unsigned.len());
    let (number, suffix) = unsigned.split_at(number_end);
    let number_ok = number.bytes().any(|b| b.is_ascii_digit()) && number.matches('.').count() <= 1;
    let suffix_ok = match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" | "Ki" | "Mi" | "Gi" | "Ti"
        | "Pi" | "Ei" => true,
        exponent => exponent.strip_prefix(['e', 'E']).is_some_and(|power| {
            let digits = power.strip_prefix(['+', '-']).unwrap_or(power);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }),
    };
    number_ok && suffix_ok
}

/// A label or annotation key: well formed, and not one Siren or the platforms set.
fn check_metadata_key(errors: &mut ValidationErrors, field: &str, key: &str) {
    if !is_qualified_name(key) {
        errors.add(field, QUALIFIED_NAME);
    } else if let Some(reserved) = reserved_part(key) {
        errors.add(
            field,
            format!("keys under `{reserved}` are reserved: Siren and the platform set them"),
        );
    }
}

/// The reserved domain or prefix `key` falls under, if any.
fn reserved_part(key: &str) -> Option<String> {
    if let Some((domain, _)) = key.split_once('/')
        && let Some(reserved) = RESERVED_KEY_DOMAINS
            .iter()
            .find(|d| domain == **d || domain.ends_with(&format!(".{d}")))
    {
        return Some(format!("{reserved}/"));
    }
    RESERVED_KEY_PREFIXES
        .iter()
        .find(|prefix| key.starts_with(**prefix))
        .map(|prefix| prefix.to_string())
}

fn backend_name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Local => "local",
        BackendKind::Process => "process",
        BackendKind::Lambda => "lambda",
        BackendKind::Knative => "knative",
        BackendKind::OpenFaas => "openfaas",
    }
}

fn validate_pod_template(backend: &crate::spec::BackendSpec, errors: &mut ValidationErrors) {
    let Some(template) = &backend.pod_template else {
        return;
    };
    let field = |name: &str| format!("{POD_TEMPLATE}.{name}");
    if !matches!(backend.kind, BackendKind::Knative | BackendKind::OpenFaas) {
        errors.add(
            POD_TEMPLATE,
            format!(
                "only the knative and openfaas backends run their functions as pods, not {}",
                backend_name(backend.kind)
            ),
        );
    }
    for (key, value) in &template.labels {
        let at = format!("{POD_TEMPLATE}.labels[{key:?}]");
        check_metadata_key(errors, &at, key);
        if RESERVED_LABELS.contains(&key.as_str()) {
            errors.add(&at, "is reserved: Siren labels its functions with it");
        }
        if !is_label_value(value) {
            errors.add(&at, format!("the value `{value}` {LABEL_VALUE}"));
        }
    }
    for key in template.annotations.keys() {
        let at = format!("{POD_TEMPLATE}.annotations[{key:?}]");
        check_metadata_key(errors, &at, key);
        if key.as_str() == OPENFAAS_SERVICE_ACCOUNT_ANNOTATION {
            errors.add(
                &at,
                "is reserved: OpenFaaS functions run as their namespace's `default` ServiceAccount, which a job may not change",
            );
        }
    }
    for (key, value) in &template.node_selector {
        let at = format!("{POD_TEMPLATE}.nodeSelector[{key:?}]");
        if !is_qualified_name(key) {
            errors.add(&at, QUALIFIED_NAME);
        }
        if !is_label_value(value) {
            errors.add(&at, format!("the value `{value}` {LABEL_VALUE}"));
        }
    }
    for (index, toleration) in template.tolerations.iter().enumerate() {
        let at = format!("{POD_TEMPLATE}.tolerations[{index}]");
        let key = toleration.key.as_deref().unwrap_or_default();
        if key.is_empty() {
            if toleration.operator.as_deref() != Some("Exists") {
                errors.add(
                    &format!("{at}.operator"),
                    "a toleration without a key must have operator Exists (it then tolerates every taint)",
                );
            }
        } else if !is_qualified_name(key) {
            errors.add(&format!("{at}.key"), QUALIFIED_NAME);
        }
        if toleration.operator.as_deref() == Some("Exists")
            && toleration.value.as_deref().is_some_and(|v| !v.is_empty())
        {
            errors.add(
                &format!("{at}.value"),
                "operator Exists matches every value: leave value out",
            );
        }
        match toleration.effect.as_deref() {
            None | Some("" | "NoSchedule" | "PreferNoSchedule" | "NoExecute") => {}
            Some(effect) => errors.add(
                &format!("{at}.effect"),
                format!("must be NoSchedule, PreferNoSchedule or NoExecute, got `{effect}`"),
            ),
        }
    }
    if let Some(class) = &template.priority_class_name
        && !is_dns_name(class)
    {
        errors.add(&field("priorityClassName"), OBJECT_NAME);
    }
    for (index, var) in template.env.iter().enumerate() {
        let at = format!("{POD_TEMPLATE}.env[{index}]");
        if var.name.starts_with("SIREN_") || var.name == "PORT" || var.name == "HOST" {
            errors.add(
                &format!("{at}.name"),
                format!(
                    "`{}` is the worker's own: Siren sets the SIREN_ variables and the platform sets PORT",
                    var.name
                ),
            );
        } else if !is_env_name(&var.name) {
            errors.add(
                &format!("{at}.name"),
                format!(
                    "`{}` is not a variable name (a letter or '_', then letters, digits, '_', '.' and '-')",
                    var.name
                ),
            );
        }
        if var.value.is_some() && var.value_from.is_some() {
            errors.add(&at, "takes value or valueFrom, not both");
        }
    }
    for (index, source) in template.env_from.iter().enumerate() {
        let at = format!("{POD_TEMPLATE}.envFrom[{index}]");
        let names: Vec<&str> = [
            source.config_map_ref.as_ref().map(|r| r.name.as_str()),
            source.secret_ref.as_ref().map(|r| r.name.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect();
        if names.len() != 1 {
            errors.add(&at, "needs exactly one of configMapRef and secretRef");
        }
        if names.iter().any(|name| !is_dns_name(name)) {
            errors.add(&at, format!("the referenced name {OBJECT_NAME}"));
        }
        if source
            .prefix
            .as_deref()
            .is_some_and(|prefix| prefix.starts_with("SIREN_"))
        {
            errors.add(
                &format!("{at}.prefix"),
                "SIREN_ variables are the worker's own",
            );
        }
    }
    for (index, secret) in template.image_pull_secrets.iter().enumerate() {
        if !is_dns_name(&secret.name) {
            errors.add(
                &format!("{POD_TEMPLATE}.imagePullSecrets[{index}].name"),
                OBJECT_NAME,
            );
        }
    }
    if let Some(account) = &template.service_account_name {
        let knative_account = backend
            .knative
            .as_ref()
            .and_then(|knative| knative.service_account_name.as_ref());
        if !is_dns_name(account) {
            errors.add(&field("serviceAccountName"), OBJECT_NAME);
        } else if backend.kind == BackendKind::Knative
            && let Some(knative_account) = knative_account
            && knative_account != account
        {
            errors.add(
                &field("serviceAccountName"),
                format!(
                    "`{account}` differs from spec.backend.knative.serviceAccountName `{knative_account}`: set one of them"
                ),
            );
        }
    }
    if let Some(resources) = &template.resources {
        validate_extra_resources(resources, errors);
    }
    if backend.kind == BackendKind::OpenFaas {
        refuse_on_openfaas(template, errors);
    }
}

fn validate_extra_resources(
    resources: &k8s_openapi::api::core::v1::ResourceRequirements,
    errors: &mut ValidationErrors,
) {
    for (part, quantities) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (resource, quantity) in quantities.iter().flatten() {
            let at = format!("{POD_TEMPLATE}.resources.{part}[{resource:?}]");
            if matches!(resource.as_str(), "cpu" | "memory") {
                errors.add(
                    &at,
                    format!(
                        "the scheduler sets {resource}: memory is the size it picks (spec.scheduler.memoryMb) and CPU follows it, one vCPU per 1,769 MB"
                    ),
                );
            } else if !is_qualified_name(resource) {
                errors.add(&at, format!("is not a resource name: it {QUALIFIED_NAME}"));
            }
            if !is_quantity(&quantity.0) {
                errors.add(
                    &at,
                    format!(
                        "`{}` is not a quantity (such as 1, 500m or 10Gi)",
                        quantity.0
                    ),
                );
            }
        }
    }
    // Kubernetes overcommits only ephemeral storage among the resources left to the template:
    // extended resources and hugepages are granted only when the limit names them.
    let limited = |resource: &str| {
        resources
            .limits
            .as_ref()
            .is_some_and(|limits| limits.contains_key(resource))
    };
    for resource in resources
        .requests
        .iter()
        .flat_map(|requests| requests.keys())
    {
        if !matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage")
            && !limited(resource)
        {
            errors.add(
                &format!("{POD_TEMPLATE}.resources.limits"),
                format!("needs `{resource}` too: Kubernetes grants it only up to its limit"),
            );
        }
    }
    if resources
        .claims
        .as_ref()
        .is_some_and(|claims| !claims.is_empty())
    {
        errors.add(
            &format!("{POD_TEMPLATE}.resources.claims"),
            "claims name the pod's resourceClaims, which Siren does not set",
        );
    }
}

/// What the gateway's API has no place for: each refusal says where OpenFaaS takes it instead.
fn refuse_on_openfaas(
    template: &crate::pod_template::FunctionPodTemplate,
    errors: &mut ValidationErrors,
) {
    let refusals = [
        (
            "tolerations",
            !template.tolerations.is_empty(),
            OPENFAAS_PROFILE,
        ),
        ("affinity", template.affinity.is_some(), OPENFAAS_PROFILE),
        (
            "priorityClassName",
            template.priority_class_name.is_some(),
            "the gateway's API sets no priority class",
        ),
        (
            "imagePullSecrets",
            !template.image_pull_secrets.is_empty(),
            "faas-netes pulls with the image pull secrets of the function's ServiceAccount: add them to the `default` ServiceAccount of the function's namespace",
        ),
        (
            "serviceAccountName",
            template.service_account_name.is_some(),
            "OpenFaaS functions run in the gateway's functions namespace, which other jobs and functions share, and a job may not pick an identity there; the functions run as that namespace's `default` ServiceAccount",
        ),
        (
            "envFrom",
            !template.env_from.is_empty(),
            "a function's environment holds only plain values; secrets reach OpenFaaS functions as OpenFaaS secrets (`faas-cli secret create`), mounted as files",
        ),
        (
            "resources",
            template.resources.is_some(),
            "a function's requests and limits hold only cpu and memory, which the scheduler sets",
        ),
    ];
    for (name, set, instead) in refusals {
        if set {
            errors.add(
                &format!("{POD_TEMPLATE}.{name}"),
                format!("OpenFaaS does not take it: {instead}"),
            );
        }
    }
    for (index, var) in template.env.iter().enumerate() {
        if var.value_from.is_some() {
            errors.add(
                &format!("{POD_TEMPLATE}.env[{index}].valueFrom"),
                "OpenFaaS takes only plain values: secrets reach OpenFaaS functions as OpenFaaS secrets (`faas-cli secret create`), mounted as files",
            );
        }
    }
}

#[cfg(test)]
mod pod_template_tests {
    use serde_json::{Value, json};

    use super::{is_qualified_name, is_quantity};
    use crate::spec::TrainingJobSpec;

    fn job(kind: &str, template: Value) -> TrainingJobSpec {
        let mut backend = json!({ "kind": kind, "podTemplate": template });
        match kind {
            "knative" => backend["knative"] = json!({ "image": "siren-worker:1" }),
            "openfaas" => {
                backend["openfaas"] = json!({
                    "gateway": "http://gateway.openfaas:8080",
                    "image": "siren-worker:1",
                });
            }
            _ => {}
        }
        let spec = json!({
            "model": { "kind": "mlp" },
            "dataset": { "builtin": "fashion-mnist" },
            "backend": backend,
            "store": { "kind": "redis", "url": "redis://redis:6379" },
        });
        serde_json::from_value(spec).expect("a spec")
    }

    fn errors(spec: &TrainingJobSpec) -> Vec<(String, String)> {
        match spec.validate() {
            Ok(()) => Vec::new(),
            Err(errors) => errors.0.into_iter().map(|e| (e.field, e.message)).collect(),
        }
    }

    /// The messages of the errors about `field`, which must have some.
    fn refusal(spec: &TrainingJobSpec, field: &str) -> String {
        let errors = errors(spec);
        let messages: Vec<&str> = errors
            .iter()
            .filter(|(f, _)| f == field)
            .map(|(_, message)| message.as_str())
            .collect();
        assert!(!messages.is_empty(), "no error about {field}: {errors:?}");
        messages.join("; ")
    }

    fn full_template() -> Value {
        json!({
            "labels": { "team": "vision", "example.com/cost-centre": "ml-42" },
            "annotations": { "example.com/owner": "Vision team <vision@example.com>" },
            "nodeSelector": { "node.kubernetes.io/instance-type": "m6i.2xlarge" },
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
                                "values": ["eu-west-1a"],
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
            "envFrom": [{ "configMapRef": { "name": "worker-settings" } }],
            "imagePullSecrets": [{ "name": "registry-credentials" }],
            "serviceAccountName": "trainer",
            "resources": {
                "requests": { "ephemeral-storage": "1Gi", "example.com/fpga": 1 },
                "limits": { "ephemeral-storage": "2Gi", "example.com/fpga": 1 },
            },
        })
    }

    #[test]
    fn knative_takes_every_setting() {
        let spec = job("knative", full_template());
        assert_eq!(errors(&spec), Vec::<(String, String)>::new());
        let template = spec.backend.pod_template.expect("a pod template");
        assert_eq!(template.tolerations.len(), 1);
        assert_eq!(template.priority_class_name.as_deref(), Some("batch-low"));
    }

    #[test]
    fn openfaas_takes_metadata_node_selector_and_plain_env() {
        let spec = job(
            "openfaas",
            json!({
                "labels": { "team": "vision" },
                "annotations": { "com.openfaas.profile": "training-pool" },
                "nodeSelector": { "pool": "training" },
                "env": [{ "name": "RUST_BACKTRACE", "value": "1" }],
            }),
        );
        assert_eq!(errors(&spec), Vec::<(String, String)>::new());
    }

    #[test]
    fn openfaas_refuses_what_its_gateway_cannot_set_and_says_what_to_do_instead() {
        let spec = job("openfaas", full_template());
        for field in ["tolerations", "affinity"] {
            let message = refusal(&spec, &format!("spec.backend.podTemplate.{field}"));
            assert!(message.contains("com.openfaas.profile"), "{message}");
        }
        let message = refusal(&spec, "spec.backend.podTemplate.imagePullSecrets");
        assert!(message.contains("ServiceAccount"), "{message}");
        let message = refusal(&spec, "spec.backend.podTemplate.env[1].valueFrom");
        assert!(message.contains("OpenFaaS secrets"), "{message}");
        let message = refusal(&spec, "spec.backend.podTemplate.serviceAccountName");
        assert!(message.contains("default"), "{message}");
        for field in ["priorityClassName", "envFrom", "resources"] {
            let message = refusal(&spec, &format!("spec.backend.podTemplate.{field}"));
            assert!(
                message.starts_with("OpenFaaS does not take it"),
                "{message}"
            );
        }
        let fields: Vec<String> = errors(&spec).into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields.len(), 8, "{fields:?}");
    }

    #[test]
    fn only_pod_backends_take_a_template() {
        let spec = job("process", json!({ "labels": { "team": "vision" } }));
        let message = refusal(&spec, "spec.backend.podTemplate");
        assert!(message.contains("not process"), "{message}");
    }

    #[test]
    fn siren_and_platform_keys_are_reserved() {
        let spec = job(
            "knative",
            json!({
                "labels": {
                    "siren.dev/job": "other",
                    "app.kubernetes.io/managed-by": "me",
                    "app.kubernetes.io/name": "worker",
                    "serving.knative.dev/service": "other",
                    "com.openfaas.scale.min": "9",
                    "team.siren.dev/x": "y",
                },
                "annotations": {
                    "siren.dev/task-key": "0123",
                    "autoscaling.knative.dev/min-scale": "9",
                    "queue.sidecar.serving.knative.dev/cpu-resource-request": "4",
                    "com.openfaas.serviceaccount": "trainer",
                },
            }),
        );
        for key in [
            "siren.dev/job",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/name",
            "serving.knative.dev/service",
            "com.openfaas.scale.min",
            "team.siren.dev/x",
        ] {
            let message = refusal(&spec, &format!("spec.backend.podTemplate.labels[{key:?}]"));
            assert!(message.contains("reserved"), "{key}: {message}");
        }
        for key in [
            "siren.dev/task-key",
            "autoscaling.knative.dev/min-scale",
            "queue.sidecar.serving.knative.dev/cpu-resource-request",
        ] {
            let field = format!("spec.backend.podTemplate.annotations[{key:?}]");
            assert!(refusal(&spec, &field).contains("reserved"));
        }
        let message = refusal(
            &spec,
            "spec.backend.podTemplate.annotations[\"com.openfaas.serviceaccount\"]",
        );
        assert!(message.contains("ServiceAccount"), "{message}");
    }

    #[test]
    fn keys_values_and_names_are_checked() {
        let spec = job(
            "knative",
            json!({
                "labels": { "-team": "vision", "Example.com/team": "a b" },
                "annotations": { "example.com/": "x" },
                "nodeSelector": { "pool": "x".repeat(64) },
                "tolerations": [{ "value": "x" }, { "key": "dedicated", "effect": "Sometimes" }],
                "priorityClassName": "Batch",
                "env": [
                    { "name": "SIREN_TASK_KEY", "value": "forged" },
                    { "name": "PORT", "value": "9090" },
                    { "name": "1ST", "value": "x" },
                ],
                "envFrom": [{ "prefix": "SIREN_", "secretRef": { "name": "Bad_Name" } }],
                "imagePullSecrets": [{ "name": "Registry" }],
            }),
        );
        let at = |field: &str| refusal(&spec, &format!("spec.backend.podTemplate.{field}"));
        assert!(at("labels[\"-team\"]").contains("qualified name"));
        let message = at("labels[\"Example.com/team\"]");
        assert!(message.contains("qualified name"), "{message}");
        assert!(message.contains("`a b`"), "{message}");
        assert!(at("annotations[\"example.com/\"]").contains("qualified name"));
        assert!(at("nodeSelector[\"pool\"]").contains("at most 63"));
        assert!(at("tolerations[0].operator").contains("Exists"));
        assert!(at("tolerations[1].effect").contains("Sometimes"));
        assert!(at("priorityClassName").contains("Kubernetes object"));
        assert!(at("env[0].name").contains("worker's own"));
        assert!(at("env[1].name").contains("PORT"));
        assert!(at("env[2].name").contains("not a variable name"));
        assert!(at("envFrom[0]").contains("Kubernetes object"));
        assert!(at("envFrom[0].prefix").contains("SIREN_"));
        assert!(at("imagePullSecrets[0].name").contains("Kubernetes object"));
    }

    #[test]
    fn the_scheduler_keeps_cpu_and_memory() {
        let spec = job(
            "knative",
            json!({
                "resources": {
                    "requests": { "cpu": "2", "example.com/fpga": "1", "ephemeral-storage": "1Gi" },
                    "limits": { "memory": "4Gi", "hugepages-2Mi": "lots" },
                },
            }),
        );
        let at = |field: &str| {
            refusal(
                &spec,
                &format!("spec.backend.podTemplate.resources.{field}"),
            )
        };
        let message = at("requests[\"cpu\"]");
        assert!(message.contains("the scheduler sets cpu"), "{message}");
        assert!(at("limits[\"memory\"]").contains("spec.scheduler.memoryMb"));
        assert!(at("limits[\"hugepages-2Mi\"]").contains("not a quantity"));
        let message = at("limits");
        assert!(message.contains("example.com/fpga"), "{message}");
        assert!(!message.contains("ephemeral-storage"), "{message}");
    }

    #[test]
    fn a_second_service_account_must_agree_with_knatives() {
        let mut spec = job("knative", json!({ "serviceAccountName": "trainer" }));
        if let Some(knative) = spec.backend.knative.as_mut() {
            knative.service_account_name = Some("trainer".to_string());
        }
        assert_eq!(errors(&spec), Vec::<(String, String)>::new());
        if let Some(knative) = spec.backend.knative.as_mut() {
            knative.service_account_name = Some("irsa".to_string());
        }
        let message = refusal(&spec, "spec.backend.podTemplate.serviceAccountName");
        assert!(
            message.contains("irsa") && message.contains("trainer"),
            "{message}"
        );
    }

    #[test]
    fn names_and_quantities_read_as_kubernetes_reads_them() {
        for key in ["team", "example.com/team", "a.b-c_d", "k8s.io/x"] {
            assert!(is_qualified_name(key), "{key}");
        }
        let long = "x".repeat(64);
        for key in [
            "",
            "-a",
            "a-",
            "a/b/c",
            "Example.com/a",
            "/a",
            long.as_str(),
        ] {
            assert!(!is_qualified_name(key), "{key}");
        }
        for quantity in ["1", "500m", "1.5Gi", "2e3", "+4", "0.5", "10E"] {
            assert!(is_quantity(quantity), "{quantity}");
        }
        for quantity in ["", "lots", "1.2.3", "Gi", "1GB", "-1", "1e"] {
            assert!(!is_quantity(quantity), "{quantity}");
        }
    }
}
