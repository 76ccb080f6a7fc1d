//! `siren bench train`: one function's training throughput per model, through the real task path
//! (pull, forward, backward, SGD step, push against the in-process store).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use siren_crds::{
    DatasetSpec, HyperParameters, ModelKind, ModelSpec, StoreRef, StoreSpec, SyntheticSource,
    TASK_PROTOCOL_VERSION, Task,
};
use siren_store::{MemoryStore, ParameterStore};
use siren_worker::FunctionState;
use siren_worker::model::{Architecture, ComputeEngine};

use crate::{Failure, invalid_input};

#[derive(clap::Args)]
pub struct TrainBenchArgs {
    /// Mini-batch size.
    #[arg(long, default_value_t = 64)]
    batch: u32,
    /// Compute threads of the function.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Measured tasks per model (after one warm-up task); the median is reported.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Samples per task.
    #[arg(long, default_value_t = 6400)]
    samples: u32,
    /// Models to measure.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["logistic".to_string(), "mlp".to_string(), "lenet5".to_string()])]
    models: Vec<String>,
    /// Gradient engines to compare: native (a specialised kernel where the model has one) and burn.
    #[arg(long, value_delimiter = ',', default_values_t = vec!["native".to_string(), "burn".to_string()])]
    engines: Vec<String>,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(Serialize)]
struct Row {
    model: ModelKind,
    engine: ComputeEngine,
    params: usize,
    batch: u32,
    threads: usize,
    compute_samples_per_s: f64,
    task_samples_per_s: f64,
    pytorch_samples_per_s: Option<f64>,
}

/// PyTorch 2.15 CPU on this machine (../shared/PERFORMANCE.md).
fn pytorch_anchor(kind: ModelKind, batch: u32, threads: usize) -> Option<f64> {
    match (kind, batch, threads) {
        (ModelKind::Lenet5, 64, 1) => Some(8_421.0),
        (ModelKind::Lenet5, 64, 2) => Some(15_925.0),
        (ModelKind::Lenet5, 256, 1) => Some(9_141.0),
        (ModelKind::Mlp, 64, 1) => Some(54_423.0),
        (ModelKind::Mlp, 64, 2) => Some(55_914.0),
        (ModelKind::Mlp, 256, 1) => Some(73_805.0),
        (ModelKind::Mlp, 256, 2) => Some(109_642.0),
        _ => None,
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn parse_all<T: serde::de::DeserializeOwned>(
    names: &[String],
    what: &str,
    choices: &str,
) -> Result<Vec<T>, Failure> {
    names
        .iter()
        .map(|name| {
            serde_json::from_value(serde_json::Value::String(name.clone())).map_err(|_| {
                invalid_input(anyhow::anyhow!("unknown {what} `{name}`: use {choices}"))
            })
        })
        .collect()
}

struct Bench<'a> {
    args: &'a TrainBenchArgs,
    pool: rayon::ThreadPool,
    runtime: tokio::runtime::Runtime,
    dataset: DatasetSpec,
}

pub fn train(args: &TrainBenchArgs) -> Result<(), Failure> {
    let kinds: Vec<ModelKind> = parse_all(&args.models, "model", "logistic, mlp or lenet5")?;
    let engines: Vec<ComputeEngine> = parse_all(&args.engines, "engine", "native or burn")?;
    let bench = Bench {
        args,
        pool: rayon::ThreadPoolBuilder::new()
            .num_threads(args.threads.max(1))
            .build()
            .context("cannot start compute threads")?,
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .context("cannot start the async runtime")?,
        dataset: DatasetSpec::synthetic(
            SyntheticSource {
                samples: args.samples.max(1),
                test_samples: 10,
                features: 784,
                classes: 10,
                noise: 1.0,
                seed: 1,
            },
            args.samples.max(1),
        ),
    };
    println!(
        "{:<9} {:>7} {:>8} {:>6} {:>8} {:>16} {:>16} {:>14} {:>9}",
        "model",
        "engine",
        "params",
        "batch",
        "threads",
        "compute samp/s",
        "task samp/s",
        "pytorch samp/s",
        "vs torch"
    );
    let mut rows = Vec::new();
    for kind in kinds {
        // Only LeNet-5 has a native kernel; for the others both engines are burn.
        let model_engines = if kind == ModelKind::Lenet5 {
            engines.clone()
        } else {
            vec![ComputeEngine::Native]
        };
        for engine in model_engines {
            let row = bench.measure(kind, engine)?;
            println!(
                "{:<9} {:>7} {:>8} {:>6} {:>8} {:>16.0} {:>16.0} {:>14} {:>9}",
                kind.as_str(),
                format!("{engine:?}").to_lowercase(),
                row.params,
                row.batch,
                row.threads,
                row.compute_samples_per_s,
                row.task_samples_per_s,
                row.pytorch_samples_per_s
                    .map_or("-".to_string(), |v| format!("{v:.0}")),
                row.pytorch_samples_per_s
                    .map_or("-".to_string(), |v| format!(
                        "{:.2}x",
                        row.task_samples_per_s / v
                    )),
            );
            rows.push(row);
        }
    }
    if let Some(path) = &args.json {
        crate::write_json(path, &rows)?;
    }
    Ok(())
}

impl Bench<'_> {
    fn measure(&self, kind: ModelKind, engine: ComputeEngine) -> Result<Row, Failure> {
        let args = self.args;
        let model = ModelSpec { kind, hidden: None };
        let architecture = Architecture::new(&model, 784, 10, Some((28, 28)))?;
        let store = MemoryStore::new();
        self.runtime
            .block_on(store.initialize(&architecture.initial_params(1)))?;
        let mut function = FunctionState::with_engine(engine);
        let mut compute = Vec::new();
        let mut total = Vec::new();
        for repeat in 0..=args.repeats.max(1) {
            let task = Task {
                protocol_version: TASK_PROTOCOL_VERSION,
                job: "bench".into(),
                task_id: format!("bench-{}-{repeat}", kind.as_str()),
                attempt: 1,
                epoch: repeat as u32,
                function: 0,
                model: model.clone(),
                dataset: self.dataset.clone(),
                shards: vec![0],
                store: StoreRef::from_spec(&StoreSpec::default()),
                hyper: HyperParameters {
                    batch_size: args.batch,
                    learning_rate: 0.01,
                    momentum: 0.9,
                    weight_decay: 0.0,
                    steps_per_push: 1,
                },
                threads: args.threads as u32,
                memory_mb: 1769,
                seed: 1,
                stored_data: None,
            };
            let started = Instant::now();
            let result = self.pool.install(|| {
                self.runtime
                    .block_on(function.run_task(&task, &store, None))
            })?;
            let wall = started.elapsed().as_secs_f64();
            // The first task is the cold start (data generation, model build): not measured.
            if repeat > 0 {
                compute.push(result.samples as f64 / result.timing.compute.max(1e-9));
                total.push(result.samples as f64 / wall.max(1e-9));
            }
        }
        Ok(Row {
            model: kind,
            engine,
            params: architecture.param_count(),
            batch: args.batch,
            threads: args.threads,
            compute_samples_per_s: median(&mut compute),
            task_samples_per_s: median(&mut total),
            pytorch_samples_per_s: pytorch_anchor(kind, args.batch, args.threads),
        })
    }
}
