//! `siren-operator`: runs TrainingJobs applied to a Kubernetes cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context as _;
use clap::Parser;
use siren_operator::controller::http::{Probes, serve};
use siren_operator::controller::metrics::Metrics;
use siren_operator::controller::run::RunOptions;
use siren_operator::controller::{Context, run_controller};

// Training allocates and frees parameter-sized buffers every step; mimalloc reuses them.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "siren-operator", version, about = "Runs Siren TrainingJobs")]
struct Args {
    /// Watch TrainingJobs in this namespace only (default: every namespace).
    #[arg(long, env = "SIREN_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, env = "SIREN_PROBE_ADDRESS", default_value = "0.0.0.0:8080")]
    probe_address: SocketAddr,
    /// Run every job's functions as local siren-worker processes, whatever its backend (for
    /// development against a bare API server).
    #[arg(long)]
    dev_process_functions: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    siren_worker::logs::init_json_logs(true);
    let args = Args::parse();
    // Both ring and aws-lc-rs are linked (kube and the AWS SDK), so rustls cannot pick on its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = kube::Client::try_default()
        .await
        .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
    let metrics = Arc::new(Metrics::default());
    let ready = Arc::new(AtomicBool::new(false));
    let probes = Probes {
        metrics: Arc::clone(&metrics),
        ready: Arc::clone(&ready),
    };
    let server = serve(args.probe_address, probes);
    let context = Arc::new(Context::new(
        client,
        metrics,
        RunOptions {
            dev_process_functions: args.dev_process_functions,
        },
    ));
    tokio::select! {
        served = server => served.with_context(|| format!("serving probes on {}", args.probe_address))?,
        () = run_controller(context, args.namespace, ready) => {}
    }
    Ok(())
}
