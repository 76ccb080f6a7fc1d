//! A network store's credentials: never part of its URL, a task or a message. The driver gets them
//! from the job's `credentialsSecret` (operator) or its environment (CLI); a function from its
//! environment, where its platform put the same Secret.

use std::fmt;

use siren_crds::{EnvSecretError, secret_from_env};

use crate::StoreError;

pub const STORE_USERNAME_ENV: &str = "SIREN_STORE_USERNAME";
pub const STORE_PASSWORD_ENV: &str = "SIREN_STORE_PASSWORD";
/// A PEM file of the CA that signed a `rediss://` server's certificate.
pub const STORE_CA_FILE_ENV: &str = "SIREN_STORE_CA_FILE";

#[derive(Clone, Default, PartialEq, Eq)]
pub struct StoreCredentials {
    pub username: Option<String>,
    pub password: Option<String>,
    /// PEM certificates of a private CA.
    pub ca_pem: Option<Vec<u8>>,
}

impl fmt::Debug for StoreCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreCredentials")
            .field("username", &self.username.as_ref().map(|_| "***"))
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_pem", &self.ca_pem.as_ref().map(Vec::len))
            .finish()
    }
}

fn env_error(error: EnvSecretError) -> StoreError {
    StoreError::Config(format!("the store's credentials: {error}"))
}

impl StoreCredentials {
    /// `SIREN_STORE_USERNAME` and `SIREN_STORE_PASSWORD` (or their `_FILE` variants), and the CA
    /// file `SIREN_STORE_CA_FILE`; whatever is unset stays empty.
    pub fn from_env() -> Result<Self, StoreError> {
        let ca_pem = match std::env::var_os(STORE_CA_FILE_ENV) {
            Some(path) => Some(read_ca(&path.to_string_lossy())?),
            None => None,
        };
        Ok(Self {
            username: secret_from_env(STORE_USERNAME_ENV).map_err(env_error)?,
            password: secret_from_env(STORE_PASSWORD_ENV).map_err(env_error)?,
            ca_pem,
        })
    }

    /// These credentials with `ca_file`'s certificates when there are none yet.
    pub fn with_ca_file(mut self, ca_file: Option<&str>) -> Result<Self, StoreError> {
        if self.ca_pem.is_none()
            && let Some(path) = ca_file
        {
            self.ca_pem = Some(read_ca(path)?);
        }
        Ok(self)
    }

    /// The values a message must never show.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        [self.username.as_deref(), self.password.as_deref()]
            .into_iter()
            .flatten()
            .filter(|secret| !secret.is_empty())
    }
}

fn read_ca(path: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path)
        .map_err(|e| StoreError::Config(format!("cannot read the store's CA file {path}: {e}")))
}
