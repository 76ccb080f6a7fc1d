//! `siren data upload` against a real redis-server: the job's shards land in its store once, and a
//! second upload of the same data (as the job's own, at its start) finds them there.

use std::process::Command;

use siren_e2e::RedisServer;

fn manifest(dir: &tempfile::TempDir, store: &str) -> std::path::PathBuf {
    let path = dir.path().join("job.yaml");
    let body = format!(
        "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: uploaded
spec:
  model: {{kind: logistic}}
  dataset:
    synthetic: {{samples: 1000, testSamples: 100, features: 6, classes: 3, noise: 0.5}}
    shardSize: 300
  training: {{maxEpochs: 1}}
  store: {store}
"
    );
    std::fs::write(&path, body).expect("write manifest");
    path
}

/// Outside a cluster the store's credentials come from the environment, never the manifest.
fn upload(path: &std::path::Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .env("SIREN_STORE_USERNAME", "default")
        .env("SIREN_STORE_PASSWORD", "s3cret")
        .args(["data", "upload", "-f"])
        .arg(path)
        .output()
        .expect("siren runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn uploads_once_and_finds_the_upload_again() {
    let server = RedisServer::start(&["--requirepass", "s3cret"]);
    let url = server.url();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = manifest(&dir, &format!("{{kind: redis, url: \"{url}\"}}"));

    let (ok, stdout, stderr) = upload(&path);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("1000 samples in 4 shards"),
        "four shards of 300: {stdout}"
    );
    assert!(
        !stdout.contains("s3cret") && !stderr.contains("s3cret"),
        "the password leaked: {stdout} {stderr}"
    );
    let mut raw = server.raw();
    redis::cmd("AUTH")
        .arg("s3cret")
        .exec(&mut raw)
        .expect("auth");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("siren:uploaded:data:*")
        .query(&mut raw)
        .expect("keys");
    assert_eq!(keys.len(), 5, "four shards and the manifest: {keys:?}");

    let (ok, stdout, stderr) = upload(&path);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("nothing written"), "{stdout}");
}

#[test]
fn the_in_process_store_has_nothing_to_upload_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, _, stderr) = upload(&manifest(&dir, "{kind: memory}"));
    assert!(!ok);
    assert!(stderr.contains("use a redis or s3 store"), "{stderr}");
}

#[test]
fn a_dead_store_is_a_clear_error() {
    let port = siren_e2e::free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = manifest(
        &dir,
        &format!("{{kind: redis, url: \"redis://127.0.0.1:{port}\"}}"),
    );
    let (ok, _, stderr) = upload(&path);
    assert!(!ok);
    assert!(
        stderr.contains("cannot upload the dataset of job uploaded"),
        "{stderr}"
    );
}
