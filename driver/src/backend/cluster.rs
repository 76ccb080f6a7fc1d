//! Backends whose functions live in a Kubernetes cluster (Knative, OpenFaaS): building them from a
//! job, also to release the functions of a job whose run is over.

use kube::{Resource, ResourceExt};
use siren_crds::{BackendKind, TrainingJob};

use super::knative::{KnativeBackend, KnativeTarget};
use super::openfaas::{OpenFaasBackend, OpenFaasTarget, credentials_from_secret};
use super::{BackendError, FunctionBackend, FunctionSecrets, PoolLimits};

fn namespace_of(job: &TrainingJob) -> String {
    job.namespace().unwrap_or_else(|| "default".to_string())
}

fn knative_target(job: &TrainingJob, limits: PoolLimits) -> Result<KnativeTarget, BackendError> {
    let spec = job.spec.backend.knative.as_ref().ok_or_else(|| {
        BackendError::Config("the knative backend needs spec.backend.knative".to_string())
    })?;
    KnativeTarget::new(
        spec,
        job.spec.backend.pod_template.as_ref(),
        &job.name_any(),
        &namespace_of(job),
        job.controller_owner_ref(&()),
        limits,
    )
}

async fn openfaas_target(
    job: &TrainingJob,
    client: &kube::Client,
) -> Result<OpenFaasTarget, BackendError> {
    let spec = job.spec.backend.openfaas.as_ref().ok_or_else(|| {
        BackendError::Config("the openfaas backend needs spec.backend.openfaas".to_string())
    })?;
    let credentials = match &spec.credentials_secret {
        Some(secret) => {
            Some(credentials_from_secret(client.clone(), &namespace_of(job), secret).await?)
        }
        None => None,
    };
    OpenFaasTarget::new(
        spec,
        job.spec.backend.pod_template.as_ref(),
        &job.name_any(),
        credentials,
    )
}

/// The job's Knative or OpenFaaS backend.
pub(super) async fn cluster_backend(
    job: &TrainingJob,
    client: kube::Client,
    limits: PoolLimits,
    secrets: &FunctionSecrets,
) -> Result<Box<dyn FunctionBackend>, BackendError> {
    match job.spec.backend.kind {
        // OpenFaaS would mount a Secret from the functions' namespace, not the job's: the
        // credentials the driver read become gateway secrets of the function's own.
        BackendKind::OpenFaas => Ok(Box::new(OpenFaasBackend::new(
            openfaas_target(job, &client).await?,
            limits,
            Some(secrets.clone()),
        )?)),
        // A Knative Service lives in the job's namespace: it references the job's Secret.
        _ => {
            let mut target = knative_target(job, limits)?;
            target.store_secret = job.spec.store.credentials_secret.clone();
            target.store_ca = target.store_secret.is_some() && secrets.store.ca_pem.is_some();
            Ok(Box::new(KnativeBackend::new(
                client,
                target,
                limits,
                Some(secrets.key.clone()),
            )?))
        }
    }
}

/// Deletes the job's Knative Service or OpenFaaS function, if it has one.
pub(super) async fn release_cluster_functions(
    job: &TrainingJob,
    client: kube::Client,
) -> Result<(), BackendError> {
    let limits = PoolLimits::of(&job.spec.backend);
    let backend = match job.spec.backend.kind {
        BackendKind::OpenFaas => match openfaas_target(job, &client).await {
            Ok(target) => OpenFaasBackend::new(target, limits, None)
                .map(|b| Box::new(b) as Box<dyn FunctionBackend>),
            // Without the gateway's credentials nothing can be deleted, now or on any retry:
            // holding the job's deletion hostage would not bring them back.
            Err(error) => {
                tracing::warn!(job = %job.name_any(), %error, "cannot remove the job's OpenFaaS function");
                return Ok(());
            }
        },
        _ => match knative_target(job, limits) {
            Ok(target) => KnativeBackend::new(client, target, limits, None)
                .map(|b| Box::new(b) as Box<dyn FunctionBackend>),
            // A job whose Service could not even be named never created one.
            Err(_) => return Ok(()),
        },
    };
    backend?.release().await
}
