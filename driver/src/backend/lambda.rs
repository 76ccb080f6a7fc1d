//! The `lambda` backend: tasks are synchronous invocations of an AWS Lambda function running
//! `siren-lambda`. Memory is the function's configuration, changed between epochs; Lambda itself
//! runs as many instances as there are concurrent invocations.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::BehaviorVersion;
use aws_config::meta::region::ProvideRegion;
use aws_config::retry::RetryConfig;
use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{DisplayErrorContext, SdkError};
use aws_sdk_lambda::operation::get_function_configuration::GetFunctionConfigurationOutput;
use aws_sdk_lambda::operation::invoke::InvokeError;
use aws_sdk_lambda::operation::update_function_configuration::builders::UpdateFunctionConfigurationFluentBuilder;
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, InvocationType, LastUpdateStatus, LogType, State};
use serde::Deserialize;
use siren_crds::{LambdaSpec, TASK_KEY_ENV, Task, TaskFailure, TaskKey, TaskResult};
use siren_scheduler::Action;

use super::slots::{Attempt, run_on_slots};
use super::{Assignment, BackendError, FunctionBackend, Invocation, PoolLimits};

/// Error types `siren-lambda` gives a task that no retry can fix: an invalid one, and one not
/// signed with the function's key.
const INVALID_TASK: &str = "Siren.Invalid";
const UNAUTHORIZED_TASK: &str = "Siren.Unauthorized";
/// The error type Lambda reports for an invocation its function's timeout cut short.
const LAMBDA_TIMEOUT: &str = "Sandbox.Timedout";
/// How long a configuration update may take to reach every new instance.
const UPDATE_TIMEOUT: Duration = Duration::from_secs(300);
const UPDATE_POLL: Duration = Duration::from_secs(1);
/// First pause after a throttled invocation; it doubles (with jitter) up to the maximum.
const THROTTLE_BACKOFF: Duration = Duration::from_millis(200);
const MAX_THROTTLE_BACKOFF: Duration = Duration::from_secs(5);

/// The function's control plane: what the driver changes about the function itself rather than
/// asks of it. AWS's is [`AwsLambdaControl`]; an emulator without control-plane routes (such as
/// `cargo lambda watch`) supplies its own.
#[async_trait]
pub trait LambdaControl: Send + Sync {
    /// Returns once invocations run with `memory_mb` of memory.
    async fn set_memory(&self, memory_mb: u32) -> Result<(), BackendError>;
    /// Returns once new invocations run with `key` as the key their tasks must be signed with.
    async fn install_key(&self, key: &TaskKey) -> Result<(), BackendError>;
    /// Prepares for `functions` concurrent invocations. Lambda scales by itself up to the
    /// account's concurrency limit (beyond it, invocations are throttled, and the backend retries
    /// them with backoff), so AWS's control does nothing here.
    async fn set_concurrency(&self, _functions: u32) -> Result<(), BackendError> {
        Ok(())
    }
}

/// Lambda's control plane through the AWS API: UpdateFunctionConfiguration, then
/// GetFunctionConfiguration until `LastUpdateStatus` is `Successful`.
pub struct AwsLambdaControl {
    client: aws_sdk_lambda::Client,
    function: String,
}

impl AwsLambdaControl {
    pub fn new(client: aws_sdk_lambda::Client, function: &str) -> Self {
        Self {
            client,
            function: function.to_string(),
        }
    }

    /// The function's configuration once no update is in progress, and the reason of its last
    /// update if that failed.
    async fn settled(
        &self,
        deadline: Instant,
    ) -> Result<(GetFunctionConfigurationOutput, Option<String>), BackendError> {
        loop {
            let configuration = self
                .client
                .get_function_configuration()
                .function_name(&self.function)
                .send()
                .await
                .map_err(|e| {
                    BackendError::platform(
                        format!(
                            "cannot read the configuration of Lambda function {}",
                            self.function
                        ),
                        DisplayErrorContext(&e).to_string(),
                    )
                })?;
            let updating = configuration.last_update_status()
                == Some(&LastUpdateStatus::InProgress)
                || configuration.state() == Some(&State::Pending);
            if !updating {
                let failed = (configuration.last_update_status()
                    == Some(&LastUpdateStatus::Failed))
                .then(|| {
                    configuration
                        .last_update_status_reason()
                        .unwrap_or("no reason given")
                        .to_string()
                });
                return Ok((configuration, failed));
            }
            self.wait(deadline).await?;
        }
    }

    async fn wait(&self, deadline: Instant) -> Result<(), BackendError> {
        if Instant::now() > deadline {
            return Err(BackendError::Unavailable(format!(
                "Lambda function {} is still updating after {UPDATE_TIMEOUT:?}",
                self.function
            )));
        }
        tokio::time::sleep(UPDATE_POLL).await;
        Ok(())
    }

    /// Applies one configuration change (`what`, for messages) and waits until it is in effect.
    /// `secrets` are values AWS's messages must not carry on into ours.
    async fn update(
        &self,
        what: &str,
        deadline: Instant,
        secrets: &[String],
        change: impl Fn(
            UpdateFunctionConfigurationFluentBuilder,
        ) -> UpdateFunctionConfigurationFluentBuilder
        + Send
        + Sync,
    ) -> Result<GetFunctionConfigurationOutput, BackendError> {
        loop {
            let builder = self
                .client
                .update_function_configuration()
                .function_name(&self.function);
            match change(builder).send().await {
                Ok(_) => break,
                // Someone else's update started in between: wait for it, then try again.
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.is_resource_conflict_exception()) =>
                {
                    self.wait(deadline).await?;
                }
                Err(error) => {
                    let message = secrets.iter().filter(|secret| !secret.is_empty()).fold(
                        DisplayErrorContext(&error).to_string(),
                        |message, secret| message.replace(secret.as_str(), "***"),
                    );
                    return Err(BackendError::platform(
                        format!("cannot {what} of Lambda function {}", self.function),
                        message,
                    ));
                }
            }
        }
        match self.settled(deadline).await? {
            (_, Some(reason)) => Err(BackendError::platform(
                format!(
                    "the update to {what} of Lambda function {} failed",
                    self.function
                ),
                reason,
            )),
            (configuration, None) => Ok(configuration),
        }
    }
}

#[async_trait]
impl LambdaControl for AwsLambdaControl {
    async fn set_memory(&self, memory_mb: u32) -> Result<(), BackendError> {
        let deadline = Instant::now() + UPDATE_TIMEOUT;
        // A failed update from before this call does not matter: ours replaces it.
        let (configuration, _) = self.settled(deadline).await?;
        if configuration.memory_size() == Some(memory_mb as i32) {
            return Ok(());
        }
        let what = format!("set the memory to {memory_mb} MB");
        let configuration = self
            .update(&what, deadline, &[], |builder| {
                builder.memory_size(memory_mb as i32)
            })
            .await?;
        let memory = configuration.memory_size().unwrap_or(0);
        if memory != memory_mb as i32 {
            return Err(BackendError::platform(
                format!(
                    "Lambda function {} has {memory} MB after an update to {memory_mb} MB",
                    self.function
                ),
                "is something else configuring it?",
            ));
        }
        Ok(())
    }

    /// Adds the key to the function's environment variables, keeping the others. Lambda encrypts
    /// them at rest; who may read the function's configuration may read the key.
    async fn install_key(&self, key: &TaskKey) -> Result<(), BackendError> {
        let deadline = Instant::now() + UPDATE_TIMEOUT;
        let (configuration, _) = self.settled(deadline).await?;
        let environment = configuration.environment();
        if let Some(error) = environment.and_then(|environment| environment.error()) {
            // Writing only the key would drop every variable we could not read.
            return Err(BackendError::Config(format!(
                "cannot read the environment of Lambda function {} to add the task key to it ({}): \
                 grant kms:Decrypt on its key to the driver",
                self.function,
                error.error_code().unwrap_or("no code given")
            )));
        }
        let mut variables: HashMap<String, String> = environment
            .and_then(|environment| environment.variables())
            .cloned()
            .unwrap_or_default();
        let text = key.to_text();
        if variables.get(TASK_KEY_ENV) == Some(&text) {
            return Ok(());
        }
        variables.insert(TASK_KEY_ENV.to_string(), text);
        // AWS may quote the variables back in an error (a size limit): none may reach a message.
        let secrets: Vec<String> = variables.values().cloned().collect();
        let environment = Environment::builder()
            .set_variables(Some(variables))
            .build();
        self.update("set the task key", deadline, &secrets, |builder| {
            builder.environment(environment.clone())
        })
        .await
        .map(drop)
    }
}

pub struct LambdaBackend {
    client: aws_sdk_lambda::Client,
    function: String,
    control: Box<dyn LambdaControl>,
    limits: PoolLimits,
    key: TaskKey,
    key_installed: bool,
    memory_mb: Option<u32>,
    functions: usize,
}

/// A Lambda client for invocations, for the spec's region and endpoint, with the SDK's retries off:
/// a failed invocation is the driver's to retry, on its own terms and within the budget (throttled
/// ones are retried in [`invoke`]).
pub async fn lambda_client(spec: &LambdaSpec) -> aws_sdk_lambda::Client {
    client_with(spec, RetryConfig::disabled()).await
}

async fn client_with(spec: &LambdaSpec, retries: RetryConfig) -> aws_sdk_lambda::Client {
    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    let region = match &spec.region {
        Some(region) => Some(aws_config::Region::new(region.clone())),
        None => {
            aws_config::default_provider::region::default_provider()
                .region()
                .await
        }
    };
    loader = loader.region(region.unwrap_or_else(|| aws_config::Region::new("us-east-1")));
    if let Some(endpoint) = &spec.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    let shared = loader.load().await;
    let config = aws_sdk_lambda::config::Builder::from(&shared)
        .retry_config(retries)
        .build();
    aws_sdk_lambda::Client::from_conf(config)
}

impl LambdaBackend {
    /// A backend on `spec`'s function, controlled through the AWS API.
    pub async fn connect(spec: &LambdaSpec, limits: PoolLimits, key: TaskKey) -> Self {
        let client = lambda_client(spec).await;
        // Configuration calls are the SDK's to retry: throttling there is no task's failure.
        let control = AwsLambdaControl::new(
            client_with(spec, RetryConfig::standard()).await,
            &spec.function_name,
        );
        Self::new(client, &spec.function_name, Box::new(control), limits, key)
    }

    pub fn new(
        client: aws_sdk_lambda::Client,
        function: &str,
        control: Box<dyn LambdaControl>,
        limits: PoolLimits,
        key: TaskKey,
    ) -> Self {
        Self {
            client,
            function: function.to_string(),
            control,
            limits,
            key,
            key_installed: false,
            memory_mb: None,
            functions: 0,
        }
    }
}

#[async_trait]
impl FunctionBackend for LambdaBackend {
    fn name(&self) -> &'static str {
        "lambda"
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        if !self.key_installed {
            self.control.install_key(&self.key).await?;
            self.key_installed = true;
        }
        if self.memory_mb != Some(action.memory_mb) {
            self.control.set_memory(action.memory_mb).await?;
            self.memory_mb = Some(action.memory_mb);
        }
        self.control.set_concurrency(action.functions).await?;
        self.functions = action.functions as usize;
        Ok(())
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        let timeout = self.limits.task_timeout;
        let (client, function, key) = (self.client.clone(), self.function.clone(), &self.key);
        run_on_slots(
            assignments,
            self.functions,
            self.limits.straggler_factor,
            Some(progress),
            |_, task| -> Attempt {
                Box::pin(invoke(
                    client.clone(),
                    function.clone(),
                    key.clone(),
                    task,
                    timeout,
                ))
            },
        )
        .await
    }
}

/// What a function error's payload says (`siren-lambda`'s own errors and the runtime's).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ErrorPayload {
    error_type: String,
    #[serde(default)]
    error_message: String,
}

/// One synchronous invocation: its outcome and its billed seconds.
async fn invoke(
    client: aws_sdk_lambda::Client,
    function: String,
    key: TaskKey,
    task: Task,
    timeout: Duration,
) -> (Result<TaskResult, TaskFailure>, f64) {
    let deadline = Instant::now() + timeout;
    let mut backoff = THROTTLE_BACKOFF;
    let (output, measured) = loop {
        // Signed for each call: throttling may outlast a signature's validity.
        let payload = match key
            .sign(&task)
            .and_then(|signed| serde_json::to_vec(&signed))
        {
            Ok(payload) => payload,
            Err(e) => {
                return (
                    Err(TaskFailure::fatal(format!("cannot encode the task: {e}"))),
                    0.0,
                );
            }
        };
        let started = Instant::now();
        let call = client
            .invoke()
            .function_name(&function)
            .invocation_type(InvocationType::RequestResponse)
            .log_type(LogType::Tail)
            .payload(Blob::new(payload))
            .send();
        let answered =
            tokio::time::timeout(deadline.saturating_duration_since(started), call).await;
        // Lambda bills each invocation's duration rounded up to the millisecond; when the answer
        // has no REPORT line to read it from, the driver's own measure (a slight overestimate)
        // stands in.
        let measured = (started.elapsed().as_secs_f64() * 1000.0).ceil() / 1000.0;
        match answered {
            Err(_) => {
                return (
                    Err(TaskFailure::timeout(format!(
                        "Lambda function {function} did not answer within {timeout:?}"
                    ))),
                    measured,
                );
            }
            // Over the concurrency limit: nothing ran and nothing is billed; wait and try again
            // while the task's time allows.
            Ok(Err(error)) if is_throttled(&error) => {
                let pause = backoff.mul_f64(0.5 + rand::random::<f64>());
                if Instant::now() + pause > deadline {
                    return (
                        Err(TaskFailure::unreachable(format!(
                            "Lambda function {function} was throttled for {timeout:?}: {}",
                            DisplayErrorContext(&error)
                        ))),
                        0.0,
                    );
                }
                tokio::time::sleep(pause).await;
                backoff = (backoff * 2).min(MAX_THROTTLE_BACKOFF);
            }
            Ok(Err(error)) => {
                let (failure, ran) = invoke_error(&function, &error);
                return (Err(failure), if ran { measured } else { 0.0 });
            }
            Ok(Ok(output)) => break (output, measured),
        }
    };
    let billed = output
        .log_result()
        .and_then(billed_seconds_in_log)
        .unwrap_or(measured);
    let body = output.payload().map(Blob::as_ref).unwrap_or_default();
    let result = match output.function_error() {
        Some(_) => Err(function_error(&function, body)),
        None => serde_json::from_slice(body).map_err(|e| {
            TaskFailure::retryable(format!(
                "Lambda function {function} answered something that is not a result: {e}"
            ))
        }),
    };
    (result, billed)
}

fn is_throttled(error: &SdkError<InvokeError, HttpResponse>) -> bool {
    error
        .as_service_error()
        .is_some_and(|e| e.is_too_many_requests_exception() || e.is_ec2_throttled_exception())
}

/// A failed Invoke call as the task's error, and whether the function ran (and is billed).
///
/// AWS answers a function error with status 200 and `X-Amz-Function-Error`; emulators often answer
/// it as an HTTP error with the same payload, which reaches here as a failed call.
fn invoke_error(
    function: &str,
    error: &SdkError<InvokeError, HttpResponse>,
) -> (TaskFailure, bool) {
    if let Some(body) = error.raw_response().and_then(|raw| raw.body().bytes())
        && serde_json::from_slice::<ErrorPayload>(body).is_ok()
    {
        return (function_error(function, body), true);
    }
    let message = format!(
        "invoking Lambda function {function}: {}",
        DisplayErrorContext(error)
    );
    // The caller's mistakes (no such function, no permission, a payload Lambda refuses) are not
    // fixed by asking again; nothing ran.
    let refused = error.as_service_error().is_some_and(|e| {
        e.is_resource_not_found_exception()
            || e.is_invalid_request_content_exception()
            || e.is_request_too_large_exception()
            || e.is_invalid_parameter_value_exception()
            || e.is_unsupported_media_type_exception()
    }) || error
        .raw_response()
        .is_some_and(|raw| matches!(raw.status().as_u16(), 401 | 403));
    if refused {
        (TaskFailure::fatal(message), false)
    } else {
        // The network or the service failed; the function may have run, so it is billed.
        (TaskFailure::unreachable(message), true)
    }
}

fn function_error(function: &str, body: &[u8]) -> TaskFailure {
    match serde_json::from_slice::<ErrorPayload>(body) {
        Ok(error) => {
            let message = format!(
                "Lambda function {function} failed ({}): {}",
                error.error_type, error.error_message
            );
            if error.error_type == INVALID_TASK || error.error_type == UNAUTHORIZED_TASK {
                TaskFailure::fatal(message)
            } else if error.error_type == LAMBDA_TIMEOUT {
                TaskFailure::timeout(message)
            } else {
                // Runtime crashes, timeouts and out-of-memory kills may pass on another instance.
                TaskFailure::retryable(message)
            }
        }
        Err(_) => TaskFailure::retryable(format!(
            "Lambda function {function} failed: {}",
            String::from_utf8_lossy(body)
        )),
    }
}

/// The `Billed Duration` of the REPORT line in an invocation's log tail (base64, as Lambda sends
/// it with `LogType::Tail`).
fn billed_seconds_in_log(log_base64: &str) -> Option<f64> {
    let log = aws_smithy_types::base64::decode(log_base64).ok()?;
    let log = String::from_utf8_lossy(&log);
    let report = log.lines().rev().find(|line| line.starts_with("REPORT"))?;
    let billed = report.split('\t').find_map(|field| {
        field
            .trim()
            .strip_prefix("Billed Duration:")?
            .trim()
            .strip_suffix("ms")?
            .trim()
            .parse::<f64>()
            .ok()
    })?;
    Some(billed / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn billed_duration_comes_from_the_report_line() {
        let log = "START RequestId: 1 Version: $LATEST\nsome output\nEND RequestId: 1\nREPORT RequestId: 1\tDuration: 1203.34 ms\tBilled Duration: 1204 ms\tMemory Size: 1769 MB\tMax Memory Used: 180 MB\tInit Duration: 45.10 ms\t\n";
        let encoded = aws_smithy_types::base64::encode(log);
        assert_eq!(billed_seconds_in_log(&encoded), Some(1.204));
    }

    #[test]
    fn a_log_without_a_report_line_has_no_billed_duration() {
        let encoded = aws_smithy_types::base64::encode("just output\n");
        assert_eq!(billed_seconds_in_log(&encoded), None);
        assert_eq!(billed_seconds_in_log("%%% not base64"), None);
    }

    #[test]
    fn invalid_tasks_are_final_and_everything_else_is_retried() {
        let invalid = br#"{"errorType":"Siren.Invalid","errorMessage":"unknown field `x`"}"#;
        let failure = function_error("f", invalid);
        assert!(!failure.retryable);
        assert!(failure.error.contains("unknown field `x`"), "{failure}");
        for retryable in [
            br#"{"errorType":"Siren.Retryable","errorMessage":"store unreachable"}"#.as_slice(),
            br#"{"errorType":"Sandbox.Timedout","errorMessage":"Task timed out"}"#,
            b"not json at all",
        ] {
            assert!(function_error("f", retryable).retryable);
        }
    }
}
