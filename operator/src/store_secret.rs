//! The store's credentials, read from the Secret a job names in `spec.store.credentialsSecret`:
//! the operator's own connection uses them, and the job's functions get the same Secret from their
//! platform. Nothing here ever puts a value into a message.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, ResourceExt};
use siren_crds::TrainingJob;
use siren_store::{StoreCredentials, StoreError};

/// The credentials `job` names, or none when it names no Secret.
pub async fn store_credentials(
    client: &kube::Client,
    job: &TrainingJob,
) -> Result<StoreCredentials, StoreError> {
    let Some(name) = &job.spec.store.credentials_secret else {
        return Ok(StoreCredentials::default());
    };
    let namespace = job.namespace().unwrap_or_else(|| "default".to_string());
    let secret = Api::<Secret>::namespaced(client.clone(), &namespace)
        .get(name)
        .await
        .map_err(|e| {
            StoreError::Config(format!(
                "cannot read spec.store.credentialsSecret {namespace}/{name}: {e}"
            ))
        })?;
    let data = secret.data.unwrap_or_default();
    let text = |key: &str| -> Result<Option<String>, StoreError> {
        data.get(key)
            .map(|value| {
                String::from_utf8(value.0.clone())
                    .map(|text| text.trim_end_matches(['\n', '\r']).to_string())
                    .map_err(|_| {
                        StoreError::Config(format!(
                            "`{key}` of spec.store.credentialsSecret {namespace}/{name} is not text"
                        ))
                    })
            })
            .transpose()
    };
    let credentials = StoreCredentials {
        username: text("username")?,
        password: text("password")?,
        ca_pem: data.get("ca.crt").map(|pem| pem.0.clone()),
    };
    if credentials == StoreCredentials::default() {
        return Err(StoreError::Config(format!(
            "spec.store.credentialsSecret {namespace}/{name} holds none of `username`, \
             `password` and `ca.crt`"
        )));
    }
    Ok(credentials)
}
