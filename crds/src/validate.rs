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
