//! A real `redis-server` on a free loopback port.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{start_on_a_free_port, wait_until_listening};

/// A `redis-server` (Debian's package) with persistence off, in a temporary directory.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
    tls: bool,
}

impl RedisServer {
    pub fn start(extra: &[&str]) -> Self {
        start_on_a_free_port("redis-server", |port| Self::try_start_on(port, extra))
    }

    /// Starts on a given port, e.g. to restart a killed server where its clients expect it.
    pub fn start_on(port: u16, extra: &[&str]) -> Self {
        Self::try_start_on(port, extra).unwrap_or_else(|failure| panic!("{failure}"))
    }

    fn try_start_on(port: u16, extra: &[&str]) -> Result<Self, String> {
        let port_arg = port.to_string();
        let mut args = vec!["--port", port_arg.as_str()];
        args.extend_from_slice(extra);
        Self::spawn(port, &args, false)
    }

    fn spawn(port: u16, args: &[&str], tls: bool) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .args(args)
            .arg("--logfile")
            .arg(dir.path().join("redis.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        let mut server = Self {
            child,
            port,
            _dir: dir,
            tls,
        };
        match wait_until_listening(&mut server.child, port, Duration::from_secs(10)) {
            Ok(()) => Ok(server),
            Err(problem) => Err(format!(
                "redis-server on port {port} {problem}:\n{}",
                std::fs::read_to_string(server._dir.path().join("redis.log")).unwrap_or_default()
            )),
        }
    }

    /// A server that only speaks TLS, with a certificate for 127.0.0.1 signed by a fresh test CA
    /// (made with the `openssl` command). Returns the server and the CA's PEM file.
    pub fn start_tls() -> (Self, std::path::PathBuf) {
        let certs = tempfile::tempdir().expect("tempdir");
        let dir = certs.path();
        let openssl = |args: &[&str]| {
            let status = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .expect("openssl runs");
            assert!(status.success(), "openssl {args:?}");
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=siren-test-ca",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n")
            .expect("write extension");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "san.ext",
        ]);
        let path = |name: &str| dir.join(name).display().to_string();
        let server = start_on_a_free_port("redis-server with TLS", |port| {
            Self::spawn(
                port,
                &[
                    "--port",
                    "0",
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cert-file",
                    &path("server.crt"),
                    "--tls-key-file",
                    &path("server.key"),
                    "--tls-ca-cert-file",
                    &path("ca.crt"),
                    "--tls-auth-clients",
                    "no",
                ],
                true,
            )
        });
        let ca = server._dir.path().join("ca.crt");
        std::fs::copy(dir.join("ca.crt"), &ca).expect("keep the CA with the server");
        (server, ca)
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A plain synchronous connection, for poking at keys behind the store's back.
    pub fn raw(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("raw connection")
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
