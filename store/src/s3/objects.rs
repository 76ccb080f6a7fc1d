//! The few S3 operations the store needs, with S3's answers mapped to what the store means by them:
//! a missing key is `None`, a lost create-only race is `false`, everything else that goes wrong is
//! a retryable `Unavailable`.

use std::time::Duration;

use aws_config::meta::region::ProvideRegion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};

use crate::StoreError;

/// How to reach the bucket. Credentials come from the environment (AWS's default chain: variables,
/// profile, web identity on EKS, the role of a Lambda function) unless given here.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// An S3-compatible server instead of AWS; addressing is then path-style.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub credentials: Option<StaticCredentials>,
}

#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"***")
            .finish()
    }
}

/// S3 answers 409 when another conditional write to the same key is in flight: try again.
const CONFLICT_RETRIES: usize = 20;
/// DeleteObjects takes at most this many keys.
const DELETE_BATCH: usize = 1000;

pub struct Objects {
    client: Client,
    bucket: String,
}

fn unavailable<E, R>(action: &str, key: &str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    // The SDK's messages name the operation, status and S3 error code, never the secret key.
    StoreError::Unavailable(format!(
        "s3 {action} {key}: {}",
        DisplayErrorContext(&error)
    ))
}

fn status<E>(error: &SdkError<E, HttpResponse>) -> Option<u16> {
    match error {
        SdkError::ServiceError(_) => error.raw_response().map(|raw| raw.status().as_u16()),
        _ => None,
    }
}

impl Objects {
    pub async fn connect(
        bucket: &str,
        options: &S3Options,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(timeout)
                .operation_attempt_timeout(timeout)
                .operation_timeout(timeout * 3)
                .build(),
        );
        let region = match &options.region {
            Some(region) => Some(Region::new(region.clone())),
            None => {
                aws_config::default_provider::region::default_provider()
                    .region()
                    .await
            }
        };
        loader = loader.region(region.unwrap_or_else(|| Region::new("us-east-1")));
        if let Some(endpoint) = &options.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(credentials) = &options.credentials {
            loader = loader.credentials_provider(Credentials::new(
                &credentials.access_key_id,
                &credentials.secret_access_key,
                None,
                None,
                "siren-static",
            ));
        }
        let shared = loader.load().await;
        // Every blob carries its own CRC-32, checked on read; the SDK's checksums would hash each
        // model twice more.
        let config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(options.endpoint.is_some())
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .build();
        Ok(Self {
            client: Client::from_conf(config),
            bucket: bucket.to_string(),
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let response = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await;
        let output = match response {
            Ok(output) => output,
            Err(error) if status(&error) == Some(404) => return Ok(None),
            Err(error) => return Err(unavailable("GET", key, error)),
        };
        let body =
            output.body.collect().await.map_err(|e| {
                StoreError::Unavailable(format!("s3 GET {key}: body cut short: {e}"))
            })?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    pub async fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(error) if status(&error) == Some(404) => Ok(false),
            Err(error) => Err(unavailable("HEAD", key, error)),
        }
    }

    pub async fn put(&self, key: &str, body: Vec<u8>) -> Result<(), StoreError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| unavailable("PUT", key, error))
    }

    /// Writes `key` only if it does not exist yet (`If-None-Match: *`); `false` when it did.
    pub async fn create(&self, key: &str, body: Vec<u8>) -> Result<bool, StoreError> {
        for attempt in 0..CONFLICT_RETRIES {
            let response = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .if_none_match("*")
                .body(ByteStream::from(body.clone()))
                .send()
                .await;
            match response {
                Ok(_) => return Ok(true),
                Err(error) if status(&error) == Some(412) => return Ok(false),
                Err(error) if status(&error) == Some(409) => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt.min(6))).await;
                }
                Err(error) => return Err(unavailable("PUT (create-only)", key, error)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "s3 PUT (create-only) {key}: still conflicting after {CONFLICT_RETRIES} attempts"
        )))
    }

    /// Keys under `prefix` after `start_after`, in S3's (lexicographic) order.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let mut keys = Vec::new();
        let mut continuation: Option<String> = None;
        loop {
            let mut request = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix);
            if let Some(after) = start_after {
                request = request.start_after(after);
            }
            if let Some(token) = &continuation {
                request = request.continuation_token(token);
            }
            let page = match request.send().await {
                Ok(page) => page,
                // The bucket itself is gone: whatever the job kept there went with it.
                Err(error) if status(&error) == Some(404) => return Err(StoreError::NoModel),
                Err(error) => return Err(unavailable("LIST", prefix, error)),
            };
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|object| object.key().map(str::to_string)),
            );
            match page.next_continuation_token() {
                Some(token) if page.is_truncated() == Some(true) => {
                    continuation = Some(token.to_string())
                }
                _ => return Ok(keys),
            }
        }
    }

    pub async fn delete(&self, keys: &[String]) -> Result<(), StoreError> {
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|key| ObjectIdentifier::builder().key(key).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StoreError::Unavailable(format!("s3 DELETE: {e}")))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| StoreError::Unavailable(format!("s3 DELETE: {e}")))?;
            let output = self
                .client
                .delete_objects()
                .bucket(&self.bucket)
                .delete(delete)
                .send()
                .await
                .map_err(|error| unavailable("DELETE", &batch[0], error))?;
            if let Some(failure) = output.errors().first() {
                return Err(StoreError::Unavailable(format!(
                    "s3 DELETE {}: {}",
                    failure.key().unwrap_or("?"),
                    failure.message().or(failure.code()).unwrap_or("refused")
                )));
            }
        }
        Ok(())
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<(), StoreError> {
        let keys = self.list(prefix, None).await?;
        self.delete(&keys).await
    }

    /// Whether the bucket answers at all, so a wrong endpoint or bucket fails at connect time
    /// with a message that says so.
    pub async fn check_bucket(&self) -> Result<(), StoreError> {
        match self.client.head_bucket().bucket(&self.bucket).send().await {
            Ok(_) => Ok(()),
            Err(error) if status(&error) == Some(404) => Err(StoreError::Config(format!(
                "bucket {} does not exist",
                self.bucket
            ))),
            Err(error) => {
                let code = error
                    .as_service_error()
                    .and_then(|e| e.code())
                    .map(str::to_string);
                Err(match code {
                    Some(code) => {
                        StoreError::Unavailable(format!("s3 bucket {}: {code}", self.bucket))
                    }
                    None => unavailable("HEAD bucket", &self.bucket, error),
                })
            }
        }
    }
}
