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
    BackendKind, JobPhase, LambdaSpec, StoreKind, StoreRef, TASK_PROTOCOL_VERSION, Task,
    TrainingJob,
};
use siren_driver::backend::{
    Assignment, BackendError, FunctionBackend, Invocation, LambdaBackend, LambdaControl,
    PoolLimits, lambda_client,
};
use siren_driver::{Silent, driver_with_backend};
use siren_e2e::{
    ACCESS_KEY_ID, LAMBDA_FUNCTION, LambdaEmulator, S3Server, SECRET_ACCESS_KEY, lambda_binary,
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
    env: Vec<(&'static str, String)>,
    instances: Mutex<(u32, Vec<Instance>)>,
    memory_updates: Arc<Mutex<Vec<u32>>>,
}

impl EmulatedControl {
    fn new(emulator: &Arc<LambdaEmulator>) -> Self {
        Self {
            emulator: Arc::clone(emulator),
            binary: lambda_binary(),
            env: vec![
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.to_string()),
                ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_string()),
                ("AWS_REGION", "us-east-1".to_string()),
                ("SIREN_LOG", "warn".to_string()),
            ],
            instances: Mutex::new((0, Vec::new())),
            memory_updates: Arc::default(),
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

    async fn set_concurrency(&self, functions: u32) -> Result<(), BackendError> {
        let mut instances = self.instances.lock().expect("instances");
        let (memory_mb, running) = &mut *instances;
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        running.truncate(functions as usize);
        while running.len() < functions as usize {
            running.push(Instance(self.emulator.start_instance(
                &self.binary,
                *memory_mb,
                &env,
            )));
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
        let store = connect_store(&StoreRef::from_spec(&job.spec.store), "on-lambda")
            .await
            .expect("the store");
        store.stats().await.expect("stats").updates
    });
    assert_eq!(applied, reported);

    // A task the function cannot run is a final error, not a retry.
    let mut invalid = LambdaBackend::new(
        client,
        &lambda.function_name,
        Box::new(EmulatedControl::new(&emulator)),
        limits,
    );
    let mut task = first_task
        .lock()
        .expect("task")
        .clone()
        .expect("the job dispatched tasks");
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
}
