//! The Siren API: what a user writes (`TrainingJob` spec), what the driver reports (status), and the
//! versioned JSON contract between the driver and its functions (tasks and results).

pub mod env_secret;
pub mod fingerprint;
pub mod manifest;
pub mod pod_template;
pub mod signing;
pub mod spec;
pub mod status;
pub mod task;
pub mod validate;

pub use env_secret::{EnvSecretError, secret_from_env};
pub use manifest::{ManifestError, parse_manifest, read_manifest};
pub use pod_template::FunctionPodTemplate;
pub use signing::*;
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

/// An S3 location `s3://bucket[/prefix]`, split into the bucket and the key prefix (no slashes at
/// either end). `None` when the bucket is not a valid S3 bucket name.
pub fn parse_s3_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len()) && is_dns_name(bucket);
    let prefix = prefix.trim_matches('/');
    (valid_bucket && !prefix.contains("//")).then(|| (bucket.to_string(), prefix.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_split_into_bucket_and_prefix() {
        let split = |url| parse_s3_url(url);
        assert_eq!(split("s3://models"), Some(("models".into(), String::new())));
        assert_eq!(
            split("s3://models/siren/jobs/"),
            Some(("models".into(), "siren/jobs".into()))
        );
        assert_eq!(split("s3://Models"), None);
        assert_eq!(split("s3://ab"), None);
        assert_eq!(split("https://models"), None);
        assert_eq!(split("s3://models/a//b"), None);
    }
}
