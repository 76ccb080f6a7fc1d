//! Backends whose functions live in a Kubernetes cluster (Knative, OpenFaaS): building them from a
//! job and removing their functions when the job goes.

use kube::{Resource, ResourceExt};
use siren_crds::{BackendKind, TrainingJob};

use super::knative::{KnativeBackend, KnativeTarget, delete_service};
use super::openfaas::{Gateway, OpenFaasBackend, OpenFaasTarget, credentials_from_secret};
use super::{BackendError, FunctionBackend, PoolLimits};

fn namespace_of(job: &TrainingJob) -> String {
    job.namespace().unwrap_or_else(|| "default".to_string())
}

fn knative_target(job: &TrainingJob, limits: PoolLimits) -> Result<KnativeTarget, BackendError> {
    let spec = job.spec.backend.knative.as_ref().ok_or_else(|| {
        BackendError::Scale("the knative backend needs spec.backend.knative".to_string())
    })?;
    KnativeTarget::new(
        spec,
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
        BackendError::Scale("the openfaas backend needs spec.backend.openfaas".to_string())
    })?;
    let credentials = match &spec.credentials_secret {
        Some(secret) => {
            Some(credentials_from_secret(client.clone(), &namespace_of(job), secret).await?)
        }
        None => None,
    };
    OpenFaasTarget::new(spec, &job.name_any(), credentials)
}

/// The job's Knative or OpenFaaS backend; `None` for a backend outside the cluster.
pub async fn cluster_backend(
    job: &TrainingJob,
    client: kube::Client,
    limits: PoolLimits,
) -> Result<Option<Box<dyn FunctionBackend>>, BackendError> {
    Ok(match job.spec.backend.kind {
        BackendKind::Knative => Some(Box::new(KnativeBackend::new(
            client,
            knative_target(job, limits)?,
            limits,
        )?)),
        BackendKind::OpenFaas => Some(Box::new(OpenFaasBackend::new(
            openfaas_target(job, &client).await?,
            limits,
        )?)),
        BackendKind::Local | BackendKind::Process | BackendKind::Lambda => None,
    })
}

/// Deletes the job's functions (its Knative Service or OpenFaaS function), if it has any: when
/// the job is deleted, and when its run ends, since idle pods would be paid for until then.
pub async fn remove_functions(job: &TrainingJob, client: kube::Client) -> Result<(), BackendError> {
    let limits = PoolLimits::of(&job.spec.backend);
    match job.spec.backend.kind {
        BackendKind::Knative => {
            // A job whose Service could not even be named never created one.
            let Ok(target) = knative_target(job, limits) else {
                return Ok(());
            };
            delete_service(client, &target.namespace, &target.name)
                .await
                .map_err(|e| {
                    BackendError::Scale(format!(
                        "cannot delete Knative Service {}/{}: {e}",
                        target.namespace, target.name
                    ))
                })
        }
        BackendKind::OpenFaas => match openfaas_target(job, &client).await {
            Ok(target) => Gateway::new(target)?.delete().await,
            // Without the gateway's credentials nothing can be deleted, now or on any retry:
            // holding the job's deletion hostage would not bring them back.
            Err(error) => {
                tracing::warn!(job = %job.name_any(), %error, "cannot remove the job's OpenFaaS function");
                Ok(())
            }
        },
        BackendKind::Local | BackendKind::Process | BackendKind::Lambda => Ok(()),
    }
}
