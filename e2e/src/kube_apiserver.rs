//! A real Kubernetes control plane on loopback: etcd and the kube-apiserver that
//! `e2e/kube/build-apiserver.sh` builds from Debian's source package, with an admin token.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{start_on_a_free_port, wait_until_listening};

const ADMIN_TOKEN: &str = "siren-e2e-admin-token";

/// The API server the operator's e2e tests run against: by default etcd and a kube-apiserver of
/// their own on loopback, or, with `SIREN_E2E_KUBECONFIG` set, the cluster that kubeconfig points
/// at (the tests then need cluster-admin, install the CRDs there, and keep each test's objects in
/// a namespace of its own that is deleted afterwards).
pub struct KubeApiServer {
    local: Option<(Child, Child)>,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    namespace: String,
}

/// The kubeconfig of an existing cluster to run the e2e tests against instead of a local one.
pub const EXTERNAL_KUBECONFIG: &str = "SIREN_E2E_KUBECONFIG";

/// Where e2e/kube/build-apiserver.sh leaves the binaries it builds.
fn built_binaries() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    std::env::var_os("SIREN_KUBE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&home).join(".cache/siren/kube"))
        .join("bin")
}

/// `$SIREN_KUBECTL`, else the kubectl built beside the API server (the same version), else, for
/// an existing cluster only, whichever kubectl is on PATH. A kubectl the machine happens to have
/// is never used against the local API server: Kubernetes supports a client at most one minor
/// version away from its server.
pub fn kubectl_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIREN_KUBECTL") {
        return PathBuf::from(path);
    }
    let built = built_binaries().join("kubectl");
    if built.is_file() || std::env::var_os(EXTERNAL_KUBECONFIG).is_none() {
        return built;
    }
    PathBuf::from("kubectl")
}

/// `$SIREN_KUBE_APISERVER`, or where the build script leaves it.
pub fn apiserver_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SIREN_KUBE_APISERVER") {
        return PathBuf::from(path);
    }
    let binary = built_binaries().join("kube-apiserver");
    assert!(
        binary.is_file(),
        "no kube-apiserver at {}: run e2e/kube/build-apiserver.sh",
        binary.display()
    );
    binary
}

impl KubeApiServer {
    pub fn start() -> Self {
        match std::env::var_os(EXTERNAL_KUBECONFIG) {
            Some(kubeconfig) => Self::external(PathBuf::from(kubeconfig)),
            None => Self::start_local(),
        }
    }

    fn external(kubeconfig: PathBuf) -> Self {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let namespace = format!(
            "siren-e2e-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let server = Self {
            local: None,
            dir: tempfile::tempdir().expect("tempdir"),
            kubeconfig,
            namespace,
        };
        server.kubectl_ok(&["create", "namespace", &server.namespace]);
        server
    }

    fn start_local() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let etcd = start_on_a_free_port("etcd", |port| start_etcd(dir.path(), port));
        let (etcd, etcd_port) = etcd;
        write_credentials(dir.path());
        let mut server = start_on_a_free_port("kube-apiserver", |port| {
            start_apiserver(dir.path(), etcd_port, port).map(|child| (child, port))
        });
        let kubeconfig = dir.path().join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(dir.path(), server.1)).expect("kubeconfig");
        let started = Instant::now();
        let ready = loop {
            let probe = kubectl_at(&kubeconfig, &["get", "--raw", "/readyz"]);
            if probe.status.success() {
                break true;
            }
            if started.elapsed() > Duration::from_secs(90)
                || matches!(server.0.try_wait(), Ok(Some(_)))
            {
                break false;
            }
            std::thread::sleep(Duration::from_millis(250));
        };
        assert!(
            ready,
            "kube-apiserver never became ready:\n{}",
            std::fs::read_to_string(dir.path().join("apiserver.log")).unwrap_or_default()
        );
        Self {
            local: Some((etcd, server.0)),
            dir,
            kubeconfig,
            namespace: "default".to_string(),
        }
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.kubeconfig.clone()
    }

    /// Where the test's namespaced objects live (and the operator watches).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// A directory for the test's files (logs, manifests), removed with the server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// kubectl in the test's namespace.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        let mut scoped = vec!["--namespace", self.namespace.as_str()];
        scoped.extend_from_slice(args);
        kubectl_at(&self.kubeconfig, &scoped)
    }

    /// Runs kubectl and returns its stdout, panicking with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// `kubectl apply -f -` of `manifest`.
    pub fn apply(&self, manifest: &str) -> Output {
        use std::io::Write;
        let kubectl = kubectl_binary();
        let mut child = Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["--namespace", &self.namespace, "apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| kubectl_missing(&kubectl, e));
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(manifest.as_bytes())
                .expect("manifest to kubectl");
        }
        child.wait_with_output().expect("kubectl finishes")
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        match &mut self.local {
            Some((etcd, apiserver)) => {
                for child in [apiserver, etcd] {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
            None => {
                // The test's operator is gone: nothing would remove the jobs' finalizers.
                let jobs = self.kubectl(&["get", "trainingjobs", "-o", "name"]);
                for job in String::from_utf8_lossy(&jobs.stdout).lines() {
                    let _ = self.kubectl(&[
                        "patch",
                        job,
                        "--type=merge",
                        "-p",
                        r#"{"metadata":{"finalizers":null}}"#,
                    ]);
                }
                let _ = self.kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
            }
        }
    }
}

fn kubectl_at(kubeconfig: &Path, args: &[&str]) -> Output {
    let kubectl = kubectl_binary();
    Command::new(&kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap_or_else(|e| kubectl_missing(&kubectl, e))
}

fn kubectl_missing(kubectl: &Path, error: std::io::Error) -> ! {
    panic!(
        "cannot run {} (e2e/kube/build-apiserver.sh builds it): {error}",
        kubectl.display()
    )
}

fn start_etcd(dir: &Path, port: u16) -> Result<(Child, u16), String> {
    let peer = crate::free_port();
    let client_url = format!("http://127.0.0.1:{port}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let log = std::fs::File::create(dir.join("etcd.log")).map_err(|e| e.to_string())?;
    let mut child = Command::new("etcd")
        .arg("--data-dir")
        .arg(dir.join(format!("etcd-{port}")))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("etcd does not run (apt-get install etcd-server): {e}"))?;
    match wait_until_listening(&mut child, port, Duration::from_secs(30)) {
        Ok(()) => Ok((child, port)),
        Err(problem) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!("etcd on port {port} {problem}"))
        }
    }
}

fn write_credentials(dir: &Path) {
    std::fs::write(
        dir.join("tokens.csv"),
        format!("{ADMIN_TOKEN},siren-e2e-admin,siren-e2e-admin,system:masters\n"),
    )
    .expect("token file");
    let key = Command::new("openssl")
        .args(["genrsa", "-out"])
        .arg(dir.join("service-accounts.key"))
        .arg("2048")
        .output()
        .expect("openssl runs");
    assert!(key.status.success(), "openssl genrsa failed");
}

fn start_apiserver(dir: &Path, etcd_port: u16, port: u16) -> Result<Child, String> {
    let log = std::fs::File::create(dir.join("apiserver.log")).map_err(|e| e.to_string())?;
    let key = dir.join("service-accounts.key");
    let mut child = Command::new(apiserver_binary())
        .arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
        .args(["--bind-address=127.0.0.1", "--advertise-address=127.0.0.1"])
        .arg(format!("--secure-port={port}"))
        .arg("--insecure-port=0")
        .arg(format!("--cert-dir={}", dir.join("certs").display()))
        .arg(format!(
            "--token-auth-file={}",
            dir.join("tokens.csv").display()
        ))
        .arg("--authorization-mode=RBAC")
        .arg(format!("--service-account-key-file={}", key.display()))
        .arg(format!(
            "--service-account-signing-key-file={}",
            key.display()
        ))
        .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
        .arg("--service-cluster-ip-range=10.96.0.0/16")
        .arg("--endpoint-reconciler-type=none")
        .arg("--enable-priority-and-fairness=false")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("kube-apiserver does not run: {e}"))?;
    match wait_until_listening(&mut child, port, Duration::from_secs(60)) {
        Ok(()) => Ok(child),
        Err(problem) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "kube-apiserver on port {port} {problem}:\n{}",
                std::fs::read_to_string(dir.join("apiserver.log")).unwrap_or_default()
            ))
        }
    }
}

fn kubeconfig_yaml(dir: &Path, port: u16) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    server: https://127.0.0.1:{port}
    certificate-authority: {ca}
users:
- name: admin
  user:
    token: {ADMIN_TOKEN}
contexts:
- name: e2e
  context:
    cluster: e2e
    user: admin
    namespace: default
current-context: e2e
",
        ca = dir.join("certs/apiserver.crt").display()
    )
}

/// A binary of this workspace, built beside the test binary by `cargo test --workspace`.
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no {name} beside {} (cargo build --release --bin {name})",
                exe.display()
            )
        })
}
