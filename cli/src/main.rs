//! `siren`: train a TrainingJob on this machine, check a manifest, measure training throughput.

mod bench;
mod calibrate_cmd;
mod data;
#[cfg(feature = "process")]
mod dispatch_bench;
#[cfg(feature = "plots")]
mod plot;
mod scheduler_cmd;
#[cfg(all(feature = "redis", feature = "s3"))]
mod store_bench;
mod train_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

// Training allocates and frees parameter-sized buffers every step; glibc serves those from fresh
// mmaps (a page fault per 4 KiB), mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "siren",
    version,
    about = "Train models with a swarm of stateless functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum BackendArg {
    Local,
    Process,
    /// The manifest's `backend.lambda` function (required).
    Lambda,
}

#[derive(Subcommand)]
enum Command {
    /// Run a TrainingJob manifest to completion on this machine.
    Train {
        /// The TrainingJob manifest (the same file `kubectl apply -f` takes).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Run on this backend whatever the manifest says.
        #[arg(long)]
        backend: Option<BackendArg>,
        /// Write the final summary (accuracy, loss, epochs, seconds, cost, history) as JSON.
        #[arg(long)]
        summary_json: Option<PathBuf>,
        /// Save the trained model.
        #[arg(long)]
        model_out: Option<PathBuf>,
    },
    /// Check a manifest without running it.
    Validate {
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
    /// Datasets in a job's store.
    Data {
        #[command(subcommand)]
        what: DataCommand,
    },
    /// Measure a job on this machine and write the simulator's profile of it.
    Calibrate(calibrate_cmd::CalibrateArgs),
    /// The DRL scheduler: train it in the simulator, evaluate it against the baselines.
    Scheduler {
        #[command(subcommand)]
        what: SchedulerCommand,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Write a job's training shards to its Redis or S3 store now, so the job finds them there.
    Upload {
        /// The TrainingJob manifest whose dataset and store to use.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
    },
}

#[derive(Subcommand)]
enum SchedulerCommand {
    /// Train the policy offline on randomised simulated jobs and platforms.
    Train(scheduler_cmd::TrainArgs),
    /// Run every scheduler on held-out simulated jobs at several budgets and print the table.
    Eval(scheduler_cmd::EvalArgs),
}

#[derive(Subcommand)]
enum BenchCommand {
    /// One function's training throughput (forward, backward, SGD step) per model.
    Train(bench::TrainBenchArgs),
    /// Pull + push round trips through a parameter store, beside raw GET + SET of the same bytes.
    #[cfg(all(feature = "redis", feature = "s3"))]
    Store(store_bench::StoreBenchArgs),
    /// What invoking worker processes over HTTP costs beyond their work, alone and in a fan-out.
    #[cfg(feature = "process")]
    Dispatch(dispatch_bench::DispatchBenchArgs),
}

/// A failure with the exit code it maps to: 2 for input the user must fix, 1 for everything else.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }
}

/// Writes a value as pretty JSON (summaries, benchmark tables).
pub fn write_json<T: serde::Serialize>(path: &std::path::Path, value: &T) -> Result<(), Failure> {
    use anyhow::Context;
    let json = serde_json::to_vec_pretty(value).context("cannot encode JSON")?;
    std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

pub fn invalid_input(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SIREN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Train {
            file,
            backend,
            summary_json,
            model_out,
        } => train_cmd::train(
            &file,
            backend,
            summary_json.as_deref(),
            model_out.as_deref(),
        ),
        Command::Validate { file } => train_cmd::validate(&file),
        Command::Data {
            what: DataCommand::Upload { file },
        } => data::upload(&file),
        Command::Calibrate(args) => calibrate_cmd::run(&args),
        Command::Scheduler {
            what: SchedulerCommand::Train(args),
        } => scheduler_cmd::train(&args),
        Command::Scheduler {
            what: SchedulerCommand::Eval(args),
        } => scheduler_cmd::eval(&args),
        Command::Bench {
            what: BenchCommand::Train(args),
        } => bench::train(&args),
        #[cfg(all(feature = "redis", feature = "s3"))]
        Command::Bench {
            what: BenchCommand::Store(args),
        } => store_bench::store(&args),
        #[cfg(feature = "process")]
        Command::Bench {
            what: BenchCommand::Dispatch(args),
        } => dispatch_bench::dispatch(&args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            // One line: the chain of causes joined, as a person reads it.
            eprintln!("siren: error: {:#}", failure.error);
            ExitCode::from(failure.code)
        }
    }
}
