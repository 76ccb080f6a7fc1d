//! `siren-worker`: the function as an HTTP server, for Knative Services, OpenFaaS (of-watchdog in
//! http mode) and the driver's `process` backend. Listens on `$PORT` (default 8080) on `$HOST`
//! (default all interfaces, as a container must); SIGTERM finishes the task in flight, then exits.
//! `PORT=0` takes any free port; the address is announced on stdout as `listening on ADDRESS`,
//! which is how the driver's process backend starts workers without racing for ports.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    siren_worker::serve::serve_from_env()
}
