//! `siren bench dispatch`: what invoking a function costs beyond the work it does. Real
//! `siren-worker` processes on loopback; the task is one the function rejects as soon as it has
//! verified its signature and decoded it (an unsupported protocol version), so the numbers are
//! signing, HTTP, verifying, decoding and the backend's fan-out, and no training.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use siren_crds::{
    DatasetSpec, HyperParameters, ModelKind, ModelSpec, StoreRef, StoreSpec, SyntheticSource, Task,
    TaskKey,
};
use siren_driver::backend::{
    Assignment, FunctionBackend, FunctionSecrets, PoolLimits, ProcessBackend, worker_binary,
};
use siren_scheduler::Action;

use crate::Failure;

#[derive(clap::Args)]
pub struct DispatchBenchArgs {
    /// Pool sizes to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1u32, 4, 16])]
    functions: Vec<u32>,
    /// Tasks per fan-out.
    #[arg(long, default_value_t = 64)]
    tasks: usize,
    /// Round trips (and fan-outs) measured per pool size; medians are reported.
    #[arg(long, default_value_t = 50)]
    repeats: usize,
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    functions: u32,
    round_trip_ms: f64,
    round_trip_p95_ms: f64,
    fan_out_ms: f64,
    fan_out_per_task_ms: f64,
}

fn rejected_task(index: usize) -> Task {
    Task {
        protocol_version: 0,
        job: "dispatch".into(),
        task_id: format!("dispatch-{index}"),
        attempt: 1,
        epoch: 0,
        function: 0,
        model: ModelSpec {
            kind: ModelKind::Logistic,
            hidden: None,
        },
        dataset: DatasetSpec::synthetic(
            SyntheticSource {
                samples: 1,
                test_samples: 1,
                features: 1,
                classes: 2,
                noise: 0.0,
                seed: 0,
            },
            1,
        ),
        shards: vec![0],
        store: StoreRef::from_spec(&StoreSpec::default()),
        hyper: HyperParameters {
            batch_size: 1,
            learning_rate: 0.1,
            momentum: 0.0,
            weight_decay: 0.0,
            steps_per_push: 1,
        },
        threads: 1,
        memory_mb: 1769,
        seed: 0,
        stored_data: None,
    }
}

fn percentile(values: &mut [f64], fraction: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * fraction).round() as usize;
    values.get(index).copied().unwrap_or(0.0)
}

async fn measure(args: &DispatchBenchArgs, functions: u32) -> Result<Row, Failure> {
    let limits = PoolLimits {
        task_timeout: Duration::from_secs(30),
        straggler_factor: 100.0,
    };
    let key = TaskKey::generate();
    let secrets = FunctionSecrets {
        key: key.clone(),
        store: Default::default(),
    };
    let mut backend = ProcessBackend::new(worker_binary(), limits, secrets)?;
    backend
        .scale(Action {
            functions,
            memory_mb: 1769,
        })
        .await?;
    let client = reqwest::Client::new();
    let url = backend.urls().first().cloned().unwrap_or_default();
    let mut round_trips = Vec::new();
    for repeat in 0..=args.repeats {
        let started = Instant::now();
        // Every delivery is signed afresh, as the driver does: a repeated nonce is refused.
        let signed = key.sign(&rejected_task(0)).context("sign the task")?;
        let body = serde_json::to_vec(&signed).context("encode the task")?;
        let response = client
            .post(&url)
            .body(body)
            .send()
            .await
            .context("invoke the worker")?;
        let _ = response.bytes().await;
        // The first request opens the connection: not measured.
        if repeat > 0 {
            round_trips.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut fan_outs = Vec::new();
    for _ in 0..args.repeats.clamp(1, 20) {
        let assignments = (0..args.tasks)
            .map(|i| Assignment {
                slot: i % functions as usize,
                task: rejected_task(i),
            })
            .collect();
        let started = Instant::now();
        backend
            .invoke_all(assignments, Arc::new(AtomicU64::new(0)))
            .await;
        fan_outs.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let fan_out = percentile(&mut fan_outs, 0.5);
    Ok(Row {
        functions,
        round_trip_ms: percentile(&mut round_trips, 0.5),
        round_trip_p95_ms: percentile(&mut round_trips, 0.95),
        fan_out_ms: fan_out,
        fan_out_per_task_ms: fan_out / args.tasks.max(1) as f64,
    })
}

pub fn dispatch(args: &DispatchBenchArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    println!(
        "{:>9}  {:>13}  {:>13}  {:>14}  {:>14}",
        "functions", "round trip ms", "p95 ms", "fan-out ms", "per task ms"
    );
    let mut rows = Vec::new();
    for &functions in &args.functions {
        let row = runtime.block_on(measure(args, functions.max(1)))?;
        println!(
            "{:>9}  {:>13.3}  {:>13.3}  {:>14.2}  {:>14.3}",
            row.functions,
            row.round_trip_ms,
            row.round_trip_p95_ms,
            row.fan_out_ms,
            row.fan_out_per_task_ms
        );
        rows.push(row);
    }
    if let Some(path) = &args.json {
        crate::write_json(path, &rows)?;
    }
    Ok(())
}
