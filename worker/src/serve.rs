//! The function's HTTP server as a program: what `siren-worker` runs, and what the operator's
//! binary runs when it is started under the name `siren-worker` (the operator image carries one
//! binary for both). Listens on `$PORT` (default 8080) on `$HOST` (default all interfaces, as a
//! container must); SIGTERM finishes the task in flight, then exits. `PORT=0` takes any free port;
//! the address is announced on stdout as `listening on ADDRESS`, which is how the driver's
//! process backend starts workers without racing for ports.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::access::FunctionAccess;
use crate::function::{FunctionServer, router};
use anyhow::Context;

async fn terminated() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    tracing::info!("shutting down after the task in flight");
}

/// Serves tasks until SIGTERM, configured by the environment (`PORT`, `HOST`, the task key).
pub fn serve_from_env() -> anyhow::Result<()> {
    let started = Instant::now();
    crate::logs::init_json_logs(true);
    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .with_context(|| format!("PORT must be a port number, not `{port}`"))?,
        Err(_) => 8080,
    };
    // A function that would accept anyone's tasks must not start at all.
    let access = FunctionAccess::from_env().context("cannot serve tasks")?;
    let host = std::env::var("HOST").unwrap_or_else(|_| "0.0.0.0".to_string());
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("`{host}:{port}` is not an address to listen on"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let address = listener
            .local_addr()
            .context("cannot tell which address the server listens on")?;
        println!("listening on {address}");
        std::io::stdout()
            .flush()
            .context("cannot announce the address")?;
        let server = Arc::new(FunctionServer::new(started, access));
        tracing::info!(%address, init_seconds = started.elapsed().as_secs_f64(), "serving tasks");
        axum::serve(listener, router(server))
            .with_graceful_shutdown(terminated())
            .await
            .context("the server failed")
    })
}
