//! Harnesses for end-to-end tests: real servers on free loopback ports, stopped when dropped.

mod fake_openfaas;
mod kube_apiserver;
mod lambda_emulator;
mod limits;
mod redis_server;
mod s3_server;
mod worker_pool;

use std::net::TcpListener;
use std::sync::atomic::{AtomicU16, Ordering};

pub use fake_openfaas::{FakeOpenFaas, Received};
pub use kube_apiserver::{KubeApiServer, apiserver_binary, workspace_binary};
pub use lambda_emulator::{
    FUNCTION as LAMBDA_FUNCTION, LAMBDA_BUNDLE_ENV, LambdaEmulator, lambda_binary, lambda_bundle,
};
pub use limits::FunctionLimits;
pub use redis_server::RedisServer;
pub use s3_server::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
pub use worker_pool::{
    Delivery, Killed, PoolAddress, StartedWorker, WORKER_IMAGE_ENV, WorkerPool, WorkerSpec,
};

/// Ports handed out lie below Linux's ephemeral range (32768 and up), where outgoing connections
/// of parallel tests take their local ports and could occupy a port between its check and its use.
const PORTS: std::ops::Range<u16> = 15_000..32_000;

/// A loopback port that is free now and that no other caller in this process will be given, so
/// that parallel tests (one of which may stop and restart a server on its port) never collide.
/// Test binaries start at different offsets (by process id) so that they rarely meet either.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let span = PORTS.end - PORTS.start;
    let _ = NEXT.compare_exchange(
        0,
        (std::process::id().wrapping_mul(7_919) % u32::from(span)) as u16 + 1,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    loop {
        let port = PORTS.start + NEXT.fetch_add(1, Ordering::SeqCst) % span;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Runs `start` on free ports until a server comes up: another program may still take a port
/// between `free_port` and the server's bind, and that must not fail a test.
pub(crate) fn start_on_a_free_port<T>(
    what: &str,
    mut start: impl FnMut(u16) -> Result<T, String>,
) -> T {
    const ATTEMPTS: usize = 5;
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        match start(free_port()) {
            Ok(server) => return server,
            Err(failure) => failures.push(failure),
        }
    }
    panic!(
        "{what} did not start in {ATTEMPTS} attempts:\n{}",
        failures.join("\n")
    );
}

/// Waits until `child` accepts connections on loopback `port`, or says why not: it exited (with
/// its status), or it was still silent after `limit`.
pub(crate) fn wait_until_listening(
    child: &mut std::process::Child,
    port: u16,
    limit: std::time::Duration,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    loop {
        // Checked before connecting: a port taken by another program accepts connections too.
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("exited with {status}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            // Another program on the port answers at once, while the child is still starting;
            // the child then fails to bind and exits shortly after.
            std::thread::sleep(std::time::Duration::from_millis(100));
            return match child.try_wait() {
                Ok(Some(status)) => Err(format!("exited with {status}")),
                _ => Ok(()),
            };
        }
        if started.elapsed() > limit {
            return Err(format!("did not listen within {limit:?}"));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
