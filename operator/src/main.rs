//! `siren-operator`: runs TrainingJobs applied to a Kubernetes cluster.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use siren_operator::leader::{LeaseConfig, acquire, keep, release};
use siren_operator::metrics::Metrics;
use siren_operator::probes::{Probes, serve};
use siren_operator::run::RunOptions;
use siren_operator::{Context, run_controller};

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
    /// Run jobs only while holding the Lease `siren-operator` (so that replicas are safe).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    lease_namespace: String,
    /// Seconds a leader that stopped renewing keeps the lease.
    #[arg(long, default_value_t = 15)]
    lease_seconds: u64,
}

/// The operator image has one binary: `siren-worker` beside it is a link to it, for the worker
/// processes of `process` jobs (which the driver starts from beside its own binary), so that the
/// image does not carry the compute code twice.
fn main() -> anyhow::Result<()> {
    let invoked_as = std::env::args_os()
        .next()
        .map(std::path::PathBuf::from)
        .and_then(|path| path.file_name().map(|name| name.to_os_string()));
    if invoked_as.as_deref() == Some(std::ffi::OsStr::new("siren-worker")) {
        return siren_worker::serve::serve_from_env();
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(operate())
}

async fn operate() -> anyhow::Result<()> {
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
    let leases: Api<Lease> = Api::namespaced(client.clone(), &args.lease_namespace);
    let lease = LeaseConfig {
        name: "siren-operator".to_string(),
        identity: identity(),
        duration: Duration::from_secs(args.lease_seconds.max(1)),
    };
    let context = Arc::new(Context::new(
        client,
        metrics,
        RunOptions {
            dev_process_functions: args.dev_process_functions,
        },
    ));
    let lead_and_run = async {
        if !args.leader_election {
            run_controller(context, args.namespace, ready).await;
            return Ok::<(), anyhow::Error>(());
        }
        acquire(&leases, &lease)
            .await
            .context("cannot take part in leader election")?;
        tokio::select! {
            lost = keep(&leases, &lease) => {
                // Jobs stop with this process, at once: epochs computing on blocking threads must
                // not outlive the leadership. The next leader resumes them from their checkpoints.
                tracing::error!(%lost, "stopped leading; exiting");
                std::process::exit(1);
            }
            () = run_controller(Arc::clone(&context), args.namespace, ready) => {
                // A termination signal: stop the runs, then hand the lease over at once.
                context.stop_runs().await;
                match release(&leases, &lease).await {
                    Ok(true) => tracing::info!("released the lease"),
                    Ok(false) => {}
                    Err(error) => tracing::warn!(%error, "cannot release the lease; it expires by itself"),
                }
                Ok(())
            }
        }
    };
    tokio::select! {
        served = server => served.with_context(|| format!("serving probes on {}", args.probe_address))?,
        done = lead_and_run => done?,
    }
    Ok(())
}

/// The pod's name in a cluster; host name and process id elsewhere.
fn identity() -> String {
    std::env::var("POD_NAME").unwrap_or_else(|_| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "siren-operator".to_string());
        format!("{host}-{}", std::process::id())
    })
}
