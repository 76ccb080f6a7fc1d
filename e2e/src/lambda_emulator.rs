//! A local AWS Lambda: `cargo lambda watch` (PyPI `cargo-lambda`) serving the Invoke API and the
//! Lambda Runtime API on a free loopback port, and function instances that poll it, as Lambda's
//! execution environments do.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
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

/// Names a Lambda bundle (the zip of one `bootstrap`, as scripts/lambda-bundle.sh builds it) whose
/// handler the instances run instead of the workspace's binary.
pub const LAMBDA_BUNDLE_ENV: &str = "SIREN_E2E_LAMBDA_BUNDLE";

/// The handler the instances run: the `bootstrap` of the bundle `SIREN_E2E_LAMBDA_BUNDLE` names,
/// else the workspace's `siren-lambda`, built beside the running test binary.
pub fn lambda_binary() -> PathBuf {
    match lambda_bundle() {
        Some(bootstrap) => bootstrap.to_path_buf(),
        None => crate::workspace_binary(FUNCTION),
    }
}

/// The `bootstrap` of the bundle `SIREN_E2E_LAMBDA_BUNDLE` names, when it names one: extracted
/// once per test binary, into a directory that lasts as long as the binary runs.
///
/// Panics when the file is not a zip or holds no `bootstrap`.
pub fn lambda_bundle() -> Option<&'static Path> {
    static BOOTSTRAP: OnceLock<Option<PathBuf>> = OnceLock::new();
    BOOTSTRAP
        .get_or_init(|| {
            let zip = std::env::var_os(LAMBDA_BUNDLE_ENV).filter(|zip| !zip.is_empty())?;
            Some(extract_bootstrap(Path::new(&zip)))
        })
        .as_deref()
}

const BUNDLE_DIR_PREFIX: &str = "siren-lambda-bundle-";

/// Extracts with Python's zipfile module (python3 is already the moto server's and cargo-lambda's
/// runtime), which leaves file modes behind: the handler is made executable here, as Lambda runs
/// it.
fn extract_bootstrap(zip: &Path) -> PathBuf {
    let dir = bundle_dir();
    let output = Command::new("python3")
        .args(["-m", "zipfile", "-e"])
        .arg(zip)
        .arg(&dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run python3 to extract the Lambda bundle {} ({LAMBDA_BUNDLE_ENV}): {e}",
                zip.display()
            )
        });
    assert!(
        output.status.success(),
        "{} ({LAMBDA_BUNDLE_ENV}) is not a Lambda bundle that can be extracted (a zip holding \
         `bootstrap`): python3 -m zipfile ended with {}: {}",
        zip.display(),
        output.status,
        // A Python traceback, whose last line says what was wrong.
        String::from_utf8_lossy(&output.stderr)
            .trim()
            .lines()
            .next_back()
            .unwrap_or_default()
    );
    let bootstrap = dir.join("bootstrap");
    if !bootstrap.is_file() {
        let held: Vec<String> = std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|entry| entry.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        panic!(
            "the Lambda bundle {} ({LAMBDA_BUNDLE_ENV}) has no `bootstrap` at its top; it holds {held:?}",
            zip.display()
        );
    }
    std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))
        .unwrap_or_else(|e| panic!("cannot make {} executable: {e}", bootstrap.display()));
    bootstrap
}

/// A directory of this process's own for the extracted handler. Nothing removes it when the test
/// binary exits (a static is never dropped), so the directories of test binaries that have exited
/// are removed here instead: a bundle is tens of megabytes.
fn bundle_dir() -> PathBuf {
    let temp = std::env::temp_dir();
    for entry in std::fs::read_dir(&temp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let pid = name
            .to_str()
            .and_then(|name| name.strip_prefix(BUNDLE_DIR_PREFIX))
            .and_then(|pid| pid.parse::<u32>().ok());
        if let Some(pid) = pid
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = temp.join(format!("{BUNDLE_DIR_PREFIX}{}", std::process::id()));
    // Left by an earlier process that had this id.
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot create {} for the Lambda bundle: {e}", dir.display()));
    dir
}
