//! Which backend runs a job's functions: the one place that reads `spec.backend.kind`, for the
//! `siren` CLI and the operator alike, and for releasing the functions of a job that is gone.

use std::sync::Arc;

use siren_crds::{BackendKind, TrainingJob};
use siren_scheduler::CostModel;
use siren_store::ParameterStore;

use super::{BackendError, FunctionBackend, FunctionSecrets, LocalBackend, PoolLimits};

/// How the caller reaches the platforms a job's functions may run on.
#[derive(Clone, Default)]
pub struct BackendOptions {
    /// Every function runs as a local `siren-worker` process, whatever the job's backend: an
    /// operator developed against a bare API server.
    pub process_functions: bool,
    /// The cluster of Knative and OpenFaaS functions (the operator's own client). Without one,
    /// the cluster of the current kubeconfig (or the in-cluster configuration).
    #[cfg(feature = "cluster")]
    pub kube: Option<kube::Client>,
}

/// The backend that runs `job`'s functions. The local backend's functions share `store` when it
/// is in memory; every backend bills with `cost_model`; functions elsewhere get `secrets` through
/// their platform and run only tasks signed with its key.
#[cfg_attr(
    not(any(feature = "process", feature = "lambda", feature = "cluster")),
    allow(unused_variables, reason = "only remote functions have pool limits")
)]
pub async fn backend_for(
    job: &TrainingJob,
    store: &Arc<dyn ParameterStore>,
    cost_model: &Arc<dyn CostModel>,
    options: &BackendOptions,
    secrets: &FunctionSecrets,
) -> Result<Box<dyn FunctionBackend>, BackendError> {
    let spec = &job.spec.backend;
    let limits = PoolLimits::of(spec);
    #[cfg(feature = "process")]
    if options.process_functions {
        return Ok(Box::new(super::ProcessBackend::new(
            super::worker_binary(),
            limits,
            secrets.clone(),
        )?));
    }
    match spec.kind {
        BackendKind::Local => Ok(Box::new(
            LocalBackend::new(Arc::clone(store), Arc::clone(cost_model), limits)
                .with_store_credentials(secrets.store.clone()),
        )),
        #[cfg(feature = "process")]
        BackendKind::Process => Ok(Box::new(super::ProcessBackend::new(
            super::worker_binary(),
            limits,
            secrets.clone(),
        )?)),
        #[cfg(feature = "lambda")]
        BackendKind::Lambda => {
            let lambda = spec.lambda.as_ref().ok_or_else(|| {
                BackendError::Config("the lambda backend needs spec.backend.lambda".to_string())
            })?;
            Ok(Box::new(
                super::LambdaBackend::connect(lambda, limits, secrets.key.clone()).await,
            ))
        }
        #[cfg(feature = "cluster")]
        BackendKind::Knative | BackendKind::OpenFaas => {
            let client = cluster_client(job, options).await?;
            super::cluster::cluster_backend(job, client, limits, secrets).await
        }
        #[cfg(not(all(feature = "lambda", feature = "cluster", feature = "process")))]
        kind => Err(BackendError::Config(format!(
            "this build of Siren has no {kind:?} backend: build it with the default features \
             (`cargo build --release`), as scripts/test.sh does; the quickstart's build leaves \
             the process, cluster and Lambda backends out"
        ))),
    }
}

/// Removes the functions of a job that may have outlived its run (its Knative Service or
/// OpenFaaS function): when the job is deleted, or its run ended without its backend at hand.
/// Backends whose functions end with the process that ran them have nothing to release.
#[cfg_attr(
    not(feature = "cluster"),
    allow(unused_variables, reason = "only cluster functions outlive their run")
)]
pub async fn release_functions(
    job: &TrainingJob,
    options: &BackendOptions,
) -> Result<(), BackendError> {
    if options.process_functions {
        return Ok(());
    }
    match job.spec.backend.kind {
        #[cfg(feature = "cluster")]
        BackendKind::Knative | BackendKind::OpenFaas => {
            let client = cluster_client(job, options).await?;
            super::cluster::release_cluster_functions(job, client).await
        }
        _ => Ok(()),
    }
}

#[cfg(feature = "cluster")]
async fn cluster_client(
    job: &TrainingJob,
    options: &BackendOptions,
) -> Result<kube::Client, BackendError> {
    match &options.kube {
        Some(client) => Ok(client.clone()),
        None => kube::Client::try_default().await.map_err(|e| {
            BackendError::platform(
                format!(
                    "the {:?} backend needs a Kubernetes cluster (in-cluster config or KUBECONFIG)",
                    job.spec.backend.kind
                ),
                e,
            )
        }),
    }
}
