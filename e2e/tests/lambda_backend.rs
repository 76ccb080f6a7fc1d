//! The `lambda` backend end to end: the driver invokes `siren-lambda` instances through
//! aws-sdk-lambda pointed at `cargo lambda watch`, with the S3 store on moto's server.
//!
//! What is real: the Invoke API calls, the Lambda Runtime API the instances poll, the handler,
//! the S3 store and the training. What is replaced: the control plane (the emulator has no
//! UpdateFunctionConfiguration), by one that restarts the instances with the new memory size, as
//! Lambda recycles execution environments after a configuration change. Billed durations: the
//! emulator sends no REPORT log line, so they are the driver's measure of each invocation rounded
//! up to the millisecond (the log parsing itself is unit-tested in the backend).
//!
//! One test in this binary: it sets the AWS credentials in the process environment, which the
//! SDK's default chain reads, and that is only sound while no other test thread runs.

mod common;

use std::path::PathBuf;
use std::process::Child;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use siren_crds::{
    BackendKind, JobPhase, LambdaSpec, StoreKind, StoreRef, TASK_KEY_ENV, TASK_PROTOCOL_VERSION,
    TASK_VALIDITY, Task, TaskKey, TrainingJob, now_ms,
};
use siren_driver::backend::{
    Assignment, BackendError, FunctionBackend, Invocation, LambdaBackend, LambdaControl,
    PoolLimits, lambda_client,
};
use siren_driver::{Silent, driver_with_backend};
use siren_e2e::{
    ACCESS_KEY_ID, LAMBDA_BUNDLE_ENV, LAMBDA_FUNCTION, LambdaEmulator, S3Server, SECRET_ACCESS_KEY,
    lambda_binary, lambda_bundle,
};
use siren_scheduler::{Action, CostModel, LambdaPricing};
use siren_store::connect_store;

const MEMORY_MB: u32 = 1769;

/// A function instance, stopped when dropped.
struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The emulator's stand-in for Lambda's control plane.
struct EmulatedControl {
    emulator: Arc<LambdaEmulator>,
    binary: PathBuf,
    env: Mutex<Vec<(&'static str, String)>>,
    /// Keeps the key the function was deployed with, whatever the backend installs: a function
    /// of another job.
    fixed_key: bool,
    instances: Mutex<(u32, Vec<Instance>)>,
    memory_updates: Arc<Mutex<Vec<u32>>>,
    /// What each instance runs, as the kernel says (`/proc/PID/exe`).
    executables: Arc<Mutex<Vec<PathBuf>>>,
}

impl EmulatedControl {
    fn new(emulator: &Arc<LambdaEmulator>) -> Self {
        Self {
            emulator: Arc::clone(emulator),
            binary: lambda_binary(),
            env: Mutex::new(vec![
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
                ("AWS_REGION", "us-east-1".to_string()),
                ("SIREN_LOG", "warn".to_string()),
            ]),
            fixed_key: false,
            instances: Mutex::new((0, Vec::new())),
            memory_updates: Arc::default(),
            executables: Arc::default(),
        }
    }

    /// A function deployed with `key`, which no backend's key replaces.
    fn with_fixed_key(emulator: &Arc<LambdaEmulator>, key: &TaskKey) -> Self {
        let control = Self::new(emulator);
        if let Ok(mut env) = control.env.lock() {
            env.push((TASK_KEY_ENV, key.to_text()));
        }
        Self {
            fixed_key: true,
            ..control
        }
    }
}

#[async_trait]
impl LambdaControl for EmulatedControl {
    async fn set_memory(&self, memory_mb: u32) -> Result<(), BackendError> {
        let mut instances = self.instances.lock().expect("instances");
        // A new configuration: every execution environment starts over, cold.
        *instances = (memory_mb, Vec::new());
        self.memory_updates.lock().expect("updates").push(memory_mb);
        Ok(())
    }

    /// The key in the environment of every instance started from now on, as a configuration
    /// update gives Lambda's execution environments.
    async fn install_key(&self, key: &TaskKey) -> Result<(), BackendError> {
        if self.fixed_key {
            return Ok(());
        }
        let mut env = self.env.lock().expect("env");
        env.retain(|(name, _)| *name != TASK_KEY_ENV);
        env.push((TASK_KEY_ENV, key.to_text()));
        *self.instances.lock().expect("instances") = (0, Vec::new());
        Ok(())
    }

    async fn set_concurrency(&self, functions: u32) -> Result<(), BackendError> {
        let mut instances = self.instances.lock().expect("instances");
        let (memory_mb, running) = &mut *instances;
        let env = self.env.lock().expect("env").clone();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        running.truncate(functions as usize);
        while running.len() < functions as usize {
            let child = self.emulator.start_instance(&self.binary, *memory_mb, &env);
            // Read at once: spawning returns after the exec, and the instance runs until stopped.
            if let Ok(executable) = std::fs::read_link(format!("/proc/{}/exe", child.id())) {
                self.executables
                    .lock()
                    .expect("executables")
                    .push(executable);
            }
            running.push(Instance(child));
        }
        Ok(())
    }
}

/// Passes everything to the Lambda backend and keeps every invocation's billed seconds.
struct Recording {
    inner: LambdaBackend,
    billed: Arc<Mutex<Vec<f64>>>,
    first_task: Arc<Mutex<Option<Task>>>,
}

#[async_trait]
impl FunctionBackend for Recording {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    async fn scale(&mut self, action: Action) -> Result<(), BackendError> {
        self.inner.scale(action).await
    }

    async fn invoke_all(
        &mut self,
        assignments: Vec<Assignment>,
        progress: Arc<AtomicU64>,
    ) -> Vec<Invocation> {
        if let Some(assignment) = assignments.first() {
            let mut first = self.first_task.lock().expect("task");
            first.get_or_insert_with(|| assignment.task.clone());
        }
        let invocations = self.inner.invoke_all(assignments, progress).await;
        self.billed
            .lock()
            .expect("billed")
            .extend(invocations.iter().map(|i| i.billed_seconds));
        invocations
    }
}

fn lambda_job(emulator: &LambdaEmulator, s3: &S3Server) -> TrainingJob {
    let mut job = common::job("on-lambda", 2, 2, 2000, "[32]");
    job.spec.backend.kind = BackendKind::Lambda;
    job.spec.backend.lambda = Some(LambdaSpec {
        function_name: LAMBDA_FUNCTION.to_string(),
        region: Some("us-east-1".to_string()),
        endpoint: Some(emulator.endpoint()),
    });
    job.spec.backend.task_timeout_seconds = 120;
    job.spec.store.kind = StoreKind::S3;
    job.spec.store.url = Some("s3://siren/jobs".to_string());
    job.spec.store.endpoint = Some(s3.endpoint());
    job.spec.store.region = Some("us-east-1".to_string());
    job.spec.validate().expect("a valid lambda job");
    job
}

#[test]
fn lambda_functions_train_two_epochs_and_the_cost_is_their_billed_time() {
    // SAFETY: the only test of this binary, run before any other thread of it exists.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY);
        std::env::set_var("AWS_REGION", "us-east-1");
    }
    let s3 = S3Server::start(&["siren"]);
    let emulator = Arc::new(LambdaEmulator::start());
    let job = lambda_job(&emulator, &s3);
    assert_eq!(job.spec.backend.kind, BackendKind::Lambda);
    assert_eq!(job.spec.store.kind, StoreKind::S3);
    let billed = Arc::new(Mutex::new(Vec::new()));
    let first_task = Arc::new(Mutex::new(None));
    let control = EmulatedControl::new(&emulator);
    let memory_updates = Arc::clone(&control.memory_updates);
    let executables = Arc::clone(&control.executables);
    let binary = control.binary.clone();
    let limits = PoolLimits {
        task_timeout: Duration::from_secs(120),
        straggler_factor: 3.0,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let lambda: LambdaSpec = job.spec.backend.lambda.clone().expect("lambda settings");
    let client = runtime.block_on(lambda_client(&lambda));
    let backend = Recording {
        inner: LambdaBackend::new(
            client.clone(),
            &lambda.function_name,
            Box::new(control),
            limits,
            TaskKey::generate(),
        ),
        billed: Arc::clone(&billed),
        first_task: Arc::clone(&first_task),
    };
    let outcome = runtime
        .block_on(async {
            driver_with_backend(&job, Box::new(backend))
                .await?
                .run(&mut Silent)
                .await
        })
        .unwrap_or_else(|e| panic!("the job runs: {e}\n{}", emulator.log()));

    let status = &outcome.status;
    assert_eq!(status.phase, JobPhase::Succeeded);
    assert_eq!(status.history.len(), 2, "two epochs");
    let accuracy = status.accuracy.expect("evaluated");
    assert!(accuracy > 0.5, "it learned: accuracy {accuracy}");
    assert_eq!(
        *memory_updates.lock().expect("updates"),
        vec![MEMORY_MB],
        "memory is configured once, before the first epoch"
    );
    assert_ran_the_handler_under_test(&binary, &executables.lock().expect("executables"));

    // The cost is the Lambda price of exactly the billed durations, each a whole number of ms.
    let billed = billed.lock().expect("billed").clone();
    assert!(!billed.is_empty());
    for seconds in &billed {
        let ms = seconds * 1000.0;
        assert!(
            seconds > &0.0 && (ms - ms.round()).abs() < 1e-6,
            "{seconds}"
        );
    }
    let priced: f64 = billed
        .iter()
        .map(|s| LambdaPricing::X86.invocation_cost(MEMORY_MB, *s))
        .sum();
    assert!(
        (status.cost_usd - priced).abs() < 1e-12,
        "cost {} against the price of the billed durations {priced}",
        status.cost_usd
    );

    // Every update the functions reported is in the store, once.
    let reported: u64 = status.history.iter().map(|r| r.updates).sum();
    let applied = runtime.block_on(async {
        let store = connect_store(
            &StoreRef::from_spec(&job.spec.store),
            "on-lambda",
            &Default::default(),
        )
        .await
        .expect("the store");
        store.stats().await.expect("stats").updates
    });
    assert_eq!(applied, reported);

    // A task the function cannot run is a final error, not a retry.
    let mut invalid = LambdaBackend::new(
        client.clone(),
        &lambda.function_name,
        Box::new(EmulatedControl::new(&emulator)),
        limits,
        TaskKey::generate(),
    );
    let first_task = first_task
        .lock()
        .expect("task")
        .clone()
        .expect("the job dispatched tasks");
    let mut task = first_task.clone();
    task.protocol_version = TASK_PROTOCOL_VERSION + 1;
    let invocations = runtime.block_on(async {
        invalid
            .scale(Action {
                functions: 1,
                memory_mb: MEMORY_MB,
            })
            .await
            .expect("scale");
        invalid
            .invoke_all(vec![Assignment { slot: 0, task }], Arc::default())
            .await
    });
    match &invocations[0].result {
        Err(failure) if !failure.retryable => {
            assert!(failure.error.contains("Siren.Invalid"), "{failure}");
            assert!(failure.error.contains("protocol"), "{failure}");
        }
        other => panic!("expected a final error, got {other:?}"),
    }
    // Its instances hold another key and would take some of the next invocations.
    drop(invalid);

    refusals_of_tasks_not_signed_with_the_functions_key(
        &runtime, &emulator, &client, &lambda, limits, first_task,
    );
}

/// The instances that served the job ran `binary`, and, when a Lambda bundle is given, that is
/// the bundle's `bootstrap` rather than the workspace's build.
fn assert_ran_the_handler_under_test(binary: &std::path::Path, executables: &[PathBuf]) {
    let expected = binary
        .canonicalize()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    assert!(!executables.is_empty(), "no instance was started");
    assert!(
        executables.iter().all(|e| *e == expected),
        "every instance runs {}: {executables:?}",
        expected.display()
    );
    let zip = std::env::var_os(LAMBDA_BUNDLE_ENV).filter(|zip| !zip.is_empty());
    match (zip, lambda_bundle()) {
        (Some(zip), Some(bootstrap)) => {
            assert_eq!(binary, bootstrap, "the handler of {zip:?}");
            assert!(
                binary.ends_with("bootstrap") && binary.starts_with(std::env::temp_dir()),
                "extracted from {zip:?}: {}",
                binary.display()
            );
            eprintln!("the instances ran the bundle {zip:?}");
        }
        (None, None) => assert!(binary.ends_with(LAMBDA_FUNCTION), "{}", binary.display()),
        (zip, bootstrap) => {
            panic!("{LAMBDA_BUNDLE_ENV} is {zip:?} but the bundle is {bootstrap:?}")
        }
    }
}

/// The handler refuses, before it reads anything, a task signed with another key and one sent
/// without a signature (a final `Siren.Unauthorized`), and one issued too long ago and one
/// delivered twice (`Siren.Retryable`: only a fresh signature from the driver passes).
fn refusals_of_tasks_not_signed_with_the_functions_key(
    runtime: &tokio::runtime::Runtime,
    emulator: &Arc<LambdaEmulator>,
    client: &aws_sdk_lambda::Client,
    lambda: &LambdaSpec,
    limits: PoolLimits,
    task: Task,
) {
    let functions_key = TaskKey::generate();
    let mut other_job = LambdaBackend::new(
        client.clone(),
        &lambda.function_name,
        Box::new(EmulatedControl::with_fixed_key(emulator, &functions_key)),
        limits,
        TaskKey::generate(),
    );
    // Not signed with the key: final. Signed with it but late or twice: the driver's own retry,
    // signed afresh, may pass.
    let refused = |result: Result<Vec<u8>, String>, case: &str, error_type: &str| match result {
        Err(error) => assert!(error.contains(error_type), "{case}: {error}"),
        Ok(body) => panic!("{case} ran: {}", String::from_utf8_lossy(&body)),
    };
    runtime.block_on(async {
        other_job
            .scale(Action {
                functions: 1,
                memory_mb: MEMORY_MB,
            })
            .await
            .expect("scale");
        let invocations = other_job
            .invoke_all(
                vec![Assignment {
                    slot: 0,
                    task: task.clone(),
                }],
                Arc::default(),
            )
            .await;
        match &invocations[0].result {
            Err(failure) => {
                assert!(!failure.retryable, "{failure}");
                assert!(failure.error.contains("Siren.Unauthorized"), "{failure}");
            }
            other => panic!("a task signed with another key ran: {other:?}"),
        }
        let invoke = |payload: Vec<u8>| {
            let client = client.clone();
            let function = lambda.function_name.clone();
            async move {
                let output = client
                    .invoke()
                    .function_name(function)
                    .payload(aws_sdk_lambda::primitives::Blob::new(payload))
                    .send()
                    .await
                    .map_err(|e| format!("{}", aws_sdk_lambda::error::DisplayErrorContext(&e)))?;
                let body = output
                    .payload()
                    .map(|b| b.as_ref().to_vec())
                    .unwrap_or_default();
                match output.function_error() {
                    Some(_) => Err(String::from_utf8_lossy(&body).into_owned()),
                    None => Ok(body),
                }
            }
        };
        let unsigned = serde_json::to_vec(&task).expect("json");
        refused(
            invoke(unsigned).await,
            "an unsigned task",
            "Siren.Unauthorized",
        );
        let text = serde_json::to_string(&task).expect("json");
        let issued_long_ago = now_ms() - TASK_VALIDITY.as_millis() as u64 - 60_000;
        let stale = functions_key.sign_text(text, issued_long_ago, "0".repeat(32));
        refused(
            invoke(serde_json::to_vec(&stale).expect("json")).await,
            "a task issued too long ago",
            "Siren.Retryable",
        );
        // Signed with the function's key but for a protocol it does not speak: accepted past the
        // signature (and refused as invalid), so its second delivery is a replay.
        let mut stale_protocol = task.clone();
        stale_protocol.protocol_version = TASK_PROTOCOL_VERSION + 1;
        let signed = functions_key.sign(&stale_protocol).expect("signed");
        let once = serde_json::to_vec(&signed).expect("json");
        match invoke(once.clone()).await {
            Err(error) => assert!(error.contains("Siren.Invalid"), "{error}"),
            Ok(_) => panic!("a task of another protocol ran"),
        }
        refused(invoke(once).await, "a replayed task", "already delivered");
    });
}
