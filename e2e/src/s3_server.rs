//! A real S3-compatible server on a free loopback port: moto's S3 server (PyPI `moto[server]`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::wait_until_listening;

const LAUNCHER: &str = include_str!("moto_server.py");

/// Credentials moto accepts (it accepts any); tests pass them explicitly.
pub const ACCESS_KEY_ID: &str = "siren-test";
pub const SECRET_ACCESS_KEY: &str = "siren-test-secret";

pub struct S3Server {
    child: Child,
    pub port: u16,
    log: tempfile::NamedTempFile,
}

impl S3Server {
    /// Starts the server with the given buckets created.
    pub fn start(buckets: &[&str]) -> Self {
        let server = crate::start_on_a_free_port("moto's S3 server", Self::start_on);
        for bucket in buckets {
            server.create_bucket(bucket);
        }
        server
    }

    fn start_on(port: u16) -> Result<Self, String> {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new("python3")
            .args(["-c", LAUNCHER, "127.0.0.1", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"))
            .spawn()
            .expect("python3 runs");
        let mut server = Self { child, port, log };
        match wait_until_listening(&mut server.child, port, Duration::from_secs(30)) {
            Ok(()) => Ok(server),
            Err(problem) => Err(format!(
                "moto's S3 server on port {port} {problem} (pip install 'moto[server]'):\n{}",
                std::fs::read_to_string(server.log.path()).unwrap_or_default()
            )),
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a plain HTTP request (moto needs no signature for it).
    pub fn create_bucket(&self, bucket: &str) {
        let status = self.request("PUT", &format!("/{bucket}"));
        assert_eq!(status, 200, "create bucket {bucket}");
    }

    /// Deletes every bucket and object, as if the server had restarted empty.
    pub fn reset(&self) {
        let status = self.request("POST", "/moto-api/reset");
        assert_eq!(status, 200, "reset moto");
    }

    /// Creates an IAM role Lambda may assume (moto's CreateFunction checks the role exists) and
    /// returns its ARN. moto routes the request by the credential scope and checks no signature.
    pub fn create_lambda_role(&self, name: &str) -> String {
        let status = self.request_with(
            "POST",
            "/",
            "Authorization: AWS4-HMAC-SHA256 Credential=siren-test/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0\r\nContent-Type: application/x-www-form-urlencoded\r\n",
            &format!(
                "Action=CreateRole&Version=2010-05-08&RoleName={name}&AssumeRolePolicyDocument=%7B%7D"
            ),
        );
        assert_eq!(status, 200, "create role {name}");
        format!("arn:aws:iam::123456789012:role/{name}")
    }

    fn request(&self, method: &str, path: &str) -> u16 {
        self.request_with(method, path, "", "")
    }

    fn request_with(&self, method: &str, path: &str, headers: &str, body: &str) -> u16 {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .expect("send request");
        let mut response = String::new();
        let _ = stream.read_to_string(&mut response);
        response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
