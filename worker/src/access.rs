//! What a function needs from its own environment to serve a job: the key its tasks must be
//! signed with and the store's credentials. Neither ever comes from a task.

use std::collections::HashMap;
use std::sync::Mutex;

use siren_crds::{
    SignatureError, TASK_KEY_ENV, TASK_VALIDITY, TaskKey, VerifiedTask, secret_from_env,
};
use siren_store::StoreCredentials;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum AccessError {
    #[error(
        "no task key: set {TASK_KEY_ENV} (or {TASK_KEY_ENV}_FILE) to the key of the job whose \
         tasks this function runs; the backend that deploys it does"
    )]
    NoKey,
    #[error("{TASK_KEY_ENV}: {0}")]
    BadKey(String),
    #[error("{0}")]
    Credentials(String),
}

/// The function's secrets, read once at start.
#[derive(Debug, Clone)]
pub struct FunctionAccess {
    pub key: TaskKey,
    pub store: StoreCredentials,
}

impl FunctionAccess {
    pub fn from_env() -> Result<Self, AccessError> {
        let key = secret_from_env(TASK_KEY_ENV)
            .map_err(|e| AccessError::BadKey(e.to_string()))?
            .ok_or(AccessError::NoKey)?;
        let key = TaskKey::from_text(&key).map_err(|e| AccessError::BadKey(e.to_string()))?;
        let store =
            StoreCredentials::from_env().map_err(|e| AccessError::Credentials(e.to_string()))?;
        Ok(Self { key, store })
    }
}

/// The nonces of tasks this function accepted, kept as long as a task with them could still pass
/// the time check: a delivery seen twice is a replay.
#[derive(Default)]
pub struct ReplayGuard {
    seen: Mutex<HashMap<String, u64>>,
}

impl ReplayGuard {
    /// Admits `task` once: refuses a nonce accepted before, remembers it otherwise until no clock
    /// within the window could accept it. Call it only for a delivery that will run, so that one
    /// refused as busy may come again.
    pub fn admit(&self, task: &VerifiedTask, now_ms: u64) -> Result<(), SignatureError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        seen.retain(|_, forget_at| *forget_at > now_ms);
        if seen.contains_key(&task.nonce) {
            return Err(SignatureError::Replayed);
        }
        let forget_at = task.issued_at_ms + 2 * TASK_VALIDITY.as_millis() as u64;
        seen.insert(task.nonce.clone(), forget_at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(nonce: &str, issued_at_ms: u64) -> VerifiedTask {
        VerifiedTask {
            task: "{}".into(),
            nonce: nonce.into(),
            issued_at_ms,
        }
    }

    #[test]
    fn an_admitted_nonce_is_a_replay_until_it_expires() {
        let guard = ReplayGuard::default();
        let task = verified("n", 1_000_000);
        assert_eq!(guard.admit(&task, 1_000_000), Ok(()));
        assert_eq!(guard.admit(&task, 1_000_001), Err(SignatureError::Replayed));
        assert_eq!(guard.admit(&verified("m", 1_000_000), 1_000_001), Ok(()));
        let later = 1_000_000 + 2 * TASK_VALIDITY.as_millis() as u64 + 1;
        assert_eq!(guard.admit(&task, later), Ok(()));
    }
}
