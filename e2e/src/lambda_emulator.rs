//! A local AWS Lambda: `cargo lambda watch` (PyPI `cargo-lambda`) serving the Invoke API and the
//! Lambda Runtime API on a free loopback port, and function instances that poll it, as Lambda's
//! execution environments do.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{start_on_a_free_port, wait_until_listening};

/// The emulator only serves functions named after a binary of the workspace it runs in.
pub const FUNCTION: &str = "siren-lambda";

pub struct LambdaEmulator {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl LambdaEmulator {
    /// Starts the emulator's APIs without a function of its own (`--only-lambda-apis`): the
    /// test starts the already built instances, so nothing is compiled here.
    pub fn start() -> Self {
        start_on_a_free_port("cargo lambda watch", Self::start_on)
    }

    fn start_on(port: u16) -> Result<Self, String> {
        let log = tempfile::NamedTempFile::new().expect("log file");
        // The running test's package, as cargo says now: a directory compiled into this library
        // may be another clone's, since clones share one build directory.
        let package = std::env::var_os("CARGO_MANIFEST_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let workspace = package
            .parent()
            .expect("the workspace holds every package")
            .to_path_buf();
        // `cargo-lambda` itself rather than `cargo lambda`: cargo would run it as a child of its
        // own, which killing cargo leaves behind, holding the port.
        let child = Command::new("cargo-lambda")
            .args([
                "lambda",
                "watch",
                "--only-lambda-apis",
                "--ignore-changes",
                "--invoke-address",
                "127.0.0.1",
                "--invoke-port",
                &port.to_string(),
            ])
            .current_dir(workspace)
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log file"))
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("cargo-lambda runs (python3 -m pip install cargo-lambda)");
        let mut emulator = Self { child, port, log };
        match wait_until_listening(&mut emulator.child, port, Duration::from_secs(60)) {
            Ok(()) => Ok(emulator),
            Err(problem) => Err(format!(
                "cargo lambda watch on port {port} {problem} (python3 -m pip install cargo-lambda):\n{}",
                emulator.log()
            )),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Where an AWS SDK sends Invoke requests.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts one instance of `binary` as the function `FUNCTION` with `memory_mb` of memory,
    /// with `env` added to its environment.
    pub fn start_instance(&self, binary: &Path, memory_mb: u32, env: &[(&str, &str)]) -> Child {
        let variables: HashMap<&str, String> = HashMap::from([
            (
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt/{FUNCTION}", self.port),
            ),
            ("AWS_LAMBDA_FUNCTION_NAME", FUNCTION.to_string()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_string()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", memory_mb.to_string()),
        ]);
        Command::new(binary)
            .envs(variables)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()))
    }
}

impl Drop for LambdaEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace's `siren-lambda` binary, built beside the running test binary.
pub fn lambda_binary() -> PathBuf {
    crate::workspace_binary(FUNCTION)
}
