//! Signed tasks: a function runs a task only if the driver of its job signed it. The driver holds a
//! per-job key (HMAC-SHA256); the functions get the same key from their environment, never from a
//! task. Every signed task carries when it was issued and a nonce, so a function can refuse a stale
//! one and one it has already seen.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::task::Task;

/// The environment variable a function reads its key from; `SIREN_TASK_KEY_FILE` names a file
/// holding it instead (a mounted Secret).
pub const TASK_KEY_ENV: &str = "SIREN_TASK_KEY";

/// A key shorter than this is refused: it must be as strong as the hash it keys.
pub const TASK_KEY_MIN_BYTES: usize = 32;

/// How far a task's issue time may be from the function's clock, either way. Bounds how long a
/// function has to remember nonces, and tolerates clock skew between driver and function.
pub const TASK_VALIDITY: Duration = Duration::from_secs(300);

/// What the MAC covers, ahead of the issue time, nonce and task: a signature for anything else
/// made with the same key (there is nothing else today) can never pass for a task's.
const DOMAIN: &[u8] = b"siren-task-v1\n";

/// The secret a job's driver signs its tasks with.
#[derive(Clone, PartialEq, Eq)]
pub struct TaskKey(Vec<u8>);

impl fmt::Debug for TaskKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TaskKey({})", self.fingerprint())
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TaskKeyError {
    #[error("a task key is hexadecimal text: {0}")]
    NotHex(String),
    #[error("a task key has at least {TASK_KEY_MIN_BYTES} bytes ({digits} hex digits); this one has {0}", digits = TASK_KEY_MIN_BYTES * 2)]
    TooShort(usize),
}

/// Why a function refuses a payload before looking inside it.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("the payload is not a signed task ({0}); only this job's driver may run tasks here")]
    NotSigned(String),
    #[error("the task's signature does not match this function's key")]
    BadSignature,
    #[error("the task was issued {0} s away from this function's clock (at most {window} s are accepted)", window = TASK_VALIDITY.as_secs())]
    OutOfTime(u64),
    #[error("this task was already delivered to this function (nonce seen before)")]
    Replayed,
}

impl SignatureError {
    /// Whether the driver's own retry, signed afresh, may pass: a delivery that came too late or
    /// twice was still signed with the right key; anything else was not.
    pub fn retryable(&self) -> bool {
        matches!(
            self,
            SignatureError::OutOfTime(_) | SignatureError::Replayed
        )
    }
}

/// A task as it travels: the task's JSON text with what authenticates it. Lambda payloads and HTTP
/// bodies are this, serialised as JSON.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignedTask {
    /// The task's JSON, signed as these exact characters.
    pub task: String,
    /// Milliseconds since the Unix epoch when the driver signed it.
    pub issued_at_ms: u64,
    /// Random, once per delivery: a function refuses one it has seen.
    pub nonce: String,
    /// Hex HMAC-SHA256 over the issue time, the nonce and the task.
    pub signature: String,
}

/// A signed task whose signature and time checked out: its JSON still to be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedTask {
    pub task: String,
    pub nonce: String,
    pub issued_at_ms: u64,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl TaskKey {
    /// A fresh random key from the operating system's generator (through rand's thread RNG).
    pub fn generate() -> Self {
        let mut key = vec![0u8; TASK_KEY_MIN_BYTES];
        rand::rng().fill_bytes(&mut key);
        Self(key)
    }

    /// Reads a key written by [`TaskKey::to_text`]; surrounding whitespace (a trailing newline in a
    /// mounted file) is ignored.
    pub fn from_text(text: &str) -> Result<Self, TaskKeyError> {
        let key = hex::decode(text.trim()).map_err(|e| TaskKeyError::NotHex(e.to_string()))?;
        if key.len() < TASK_KEY_MIN_BYTES {
            return Err(TaskKeyError::TooShort(key.len()));
        }
        Ok(Self(key))
    }

    pub fn to_text(&self) -> String {
        hex::encode(&self.0)
    }

    /// Names the key without revealing it (a hash prefix): what logs and annotations may show, so
    /// that a change of key is visible and rolls the functions that hold the old one.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(&self.0);
        hex::encode(&digest[..6])
    }

    fn mac(&self, issued_at_ms: u64, nonce: &str, task: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(DOMAIN);
        mac.update(issued_at_ms.to_string().as_bytes());
        mac.update(b"\n");
        mac.update(nonce.as_bytes());
        mac.update(b"\n");
        mac.update(task.as_bytes());
        mac
    }

    /// Signs `task` for one delivery, now.
    pub fn sign(&self, task: &Task) -> Result<SignedTask, serde_json::Error> {
        let text = serde_json::to_string(task)?;
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        Ok(self.sign_text(text, now_ms(), hex::encode(nonce)))
    }

    /// Signs a task's JSON text as issued at `issued_at_ms` with `nonce`.
    pub fn sign_text(&self, task: String, issued_at_ms: u64, nonce: String) -> SignedTask {
        let signature = hex::encode(
            self.mac(issued_at_ms, &nonce, &task)
                .finalize()
                .into_bytes(),
        );
        SignedTask {
            task,
            issued_at_ms,
            nonce,
            signature,
        }
    }

    /// Checks a payload's signature (in constant time) and issue time against `now_ms`. Nothing of
    /// the task is read before both pass.
    pub fn verify(&self, payload: &[u8], now_ms: u64) -> Result<VerifiedTask, SignatureError> {
        let signed: SignedTask = serde_json::from_slice(payload)
            .map_err(|e| SignatureError::NotSigned(e.to_string()))?;
        let signature = hex::decode(&signed.signature).map_err(|_| SignatureError::BadSignature)?;
        self.mac(signed.issued_at_ms, &signed.nonce, &signed.task)
            .verify_slice(&signature)
            .map_err(|_| SignatureError::BadSignature)?;
        let skew_ms = now_ms.abs_diff(signed.issued_at_ms);
        if skew_ms > TASK_VALIDITY.as_millis() as u64 {
            return Err(SignatureError::OutOfTime(skew_ms / 1000));
        }
        Ok(VerifiedTask {
            task: signed.task,
            nonce: signed.nonce,
            issued_at_ms: signed.issued_at_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TaskKey {
        TaskKey::from_text(&"ab".repeat(32)).expect("key")
    }

    fn payload(signed: &SignedTask) -> Vec<u8> {
        serde_json::to_vec(signed).expect("json")
    }

    #[test]
    fn a_signed_task_verifies_with_its_key_only() {
        let now = now_ms();
        let signed = key().sign_text("{\"a\":1}".into(), now, "n1".into());
        let verified = key().verify(&payload(&signed), now).expect("verifies");
        assert_eq!(verified.task, "{\"a\":1}");
        assert_eq!(verified.nonce, "n1");
        assert_eq!(
            TaskKey::generate().verify(&payload(&signed), now),
            Err(SignatureError::BadSignature)
        );
    }

    #[test]
    fn any_change_to_a_signed_task_breaks_its_signature() {
        let now = now_ms();
        let signed = key().sign_text("{\"a\":1}".into(), now, "n1".into());
        let mut changed_task = signed.clone();
        changed_task.task = "{\"a\":2}".into();
        let mut changed_nonce = signed.clone();
        changed_nonce.nonce = "n2".into();
        let mut changed_time = signed.clone();
        changed_time.issued_at_ms += 1;
        for forged in [changed_task, changed_nonce, changed_time] {
            assert_eq!(
                key().verify(&payload(&forged), now),
                Err(SignatureError::BadSignature)
            );
        }
    }

    #[test]
    fn stale_and_future_tasks_are_refused() {
        let now = now_ms();
        let window = TASK_VALIDITY.as_millis() as u64;
        for issued in [now - window - 1000, now + window + 1000] {
            let signed = key().sign_text("{}".into(), issued, "n".into());
            assert!(matches!(
                key().verify(&payload(&signed), now),
                Err(SignatureError::OutOfTime(_))
            ));
        }
    }

    #[test]
    fn an_unsigned_task_is_not_signed() {
        let error = key().verify(br#"{"protocolVersion":2}"#, now_ms());
        assert!(matches!(error, Err(SignatureError::NotSigned(_))));
    }

    #[test]
    fn keys_are_long_hex_and_never_shown() {
        assert!(matches!(
            TaskKey::from_text("zz"),
            Err(TaskKeyError::NotHex(_))
        ));
        assert_eq!(
            TaskKey::from_text(&"ab".repeat(8)),
            Err(TaskKeyError::TooShort(8))
        );
        let key = TaskKey::generate();
        assert_eq!(
            TaskKey::from_text(&format!("{}\n", key.to_text())),
            Ok(key.clone())
        );
        assert!(!format!("{key:?}").contains(&key.to_text()));
        assert_ne!(TaskKey::generate(), key);
    }
}
