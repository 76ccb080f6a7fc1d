//! The Siren API: what a user writes (`TrainingJob` spec), what the driver reports (status), and the
//! versioned JSON contract between the driver and its functions (tasks and results).

pub mod manifest;
pub mod spec;
pub mod status;
pub mod task;
pub mod validate;

pub use manifest::{ManifestError, parse_manifest, read_manifest};
pub use spec::*;
pub use status::*;
pub use task::*;
pub use validate::{FieldError, ValidationErrors};

/// Whether a name is a Kubernetes object name (DNS-1123 subdomain): lowercase letters, digits, '-'
/// and '.', starting and ending with a letter or digit, at most 253 characters. Job names become
/// store key prefixes, so nothing else may get through.
pub fn is_dns_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
        && bytes.iter().all(|b| edge(b) || *b == b'-' || *b == b'.')
}
