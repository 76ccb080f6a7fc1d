//! The `siren` binary as a user runs it: exit codes, one-line errors, outputs on disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use siren_worker::model::load_model;

fn siren(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(args)
        .current_dir(repo_root())
        .output()
        .expect("siren runs")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write_manifest(dir: &tempfile::TempDir, body: &str) -> PathBuf {
    let path = dir.path().join("job.yaml");
    std::fs::write(&path, body).expect("write manifest");
    path
}

const SYNTHETIC: &str = "apiVersion: siren.dev/v1alpha1
kind: TrainingJob
metadata:
  name: tiny
spec:
  model:
    kind: logistic
  dataset:
    synthetic: {samples: 2000, testSamples: 400, features: 10, classes: 3, noise: 0.5}
    shardSize: 200
  training:
    maxEpochs: 2
  scheduler:
    functions: 2
    memoryMb: 512
";

#[test]
fn every_sample_manifest_validates() {
    let samples = repo_root().join("config/samples");
    let mut checked = 0;
    for entry in std::fs::read_dir(&samples).expect("config/samples exists") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let out = siren(&["validate", "-f", path.to_str().expect("utf-8 path")]);
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                text(&out.stderr)
            );
            assert!(text(&out.stdout).contains("valid trainingjob"));
            checked += 1;
        }
    }
    assert!(checked >= 3, "quickstart, mlp and logistic samples");
}

#[test]
fn invalid_manifest_exits_2_with_one_line_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_manifest(
        &dir,
        &SYNTHETIC.replace("maxEpochs: 2", "maxEpochs: 2\n    batchSzie: 3"),
    );
    for command in ["validate", "train"] {
        let out = siren(&[command, "-f", path.to_str().expect("path")]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        let stderr = text(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains("spec.training") && stderr.contains("batchSzie"),
            "{stderr}"
        );
    }
}

#[test]
fn missing_manifest_is_a_clear_error() {
    let out = siren(&["validate", "-f", "/nonexistent/job.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read manifest /nonexistent/job.yaml"));
}

#[test]
fn train_prints_the_table_and_writes_summary_and_model() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(&dir, SYNTHETIC);
    let summary = dir.path().join("summary.json");
    let model = dir.path().join("model.siren");
    let out = siren(&[
        "train",
        "-f",
        manifest.to_str().expect("path"),
        "--summary-json",
        summary.to_str().expect("path"),
        "--model-out",
        model.to_str().expect("path"),
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(stdout.contains("epoch  functions  memory_mb"), "{stdout}");
    let rows = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['1', '2']))
        .count();
    assert_eq!(rows, 2, "{stdout}");

    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&summary).expect("summary written")).expect("json");
    for key in [
        "final_accuracy",
        "final_loss",
        "epochs",
        "seconds",
        "cost_usd",
        "history",
    ] {
        assert!(summary.get(key).is_some(), "summary has {key}: {summary}");
    }
    assert_eq!(summary["epochs"], 2);
    assert_eq!(summary["history"].as_array().map(Vec::len), Some(2));
    assert!(summary["final_accuracy"].as_f64().unwrap_or(0.0) > 0.5);

    let saved = load_model(&model).expect("model file loads");
    assert_eq!(saved.params.len(), 10 * 3 + 3);
}

#[test]
fn unreadable_dataset_fails_with_exit_1_and_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, "1,0.5\n0,NaN\n").expect("write");
    let body = SYNTHETIC.replace(
        "    synthetic: {samples: 2000, testSamples: 400, features: 10, classes: 3, noise: 0.5}",
        &format!("    csv: {{train: {}}}", csv.display()),
    );
    let out = siren(&[
        "train",
        "-f",
        write_manifest(&dir, &body).to_str().expect("path"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("bad.csv") && stderr.contains("line 2, column 2"),
        "{stderr}"
    );
}

#[test]
fn bench_prints_a_row_per_model() {
    let out = siren(&[
        "bench",
        "train",
        "--models",
        "logistic,mlp",
        "--repeats",
        "1",
        "--samples",
        "640",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("logistic")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("mlp") && l.contains("54423")),
        "{stdout}"
    );
    let bad = siren(&["bench", "train", "--models", "resnet"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn store_bench_prints_a_row_per_configuration() {
    let out = siren(&[
        "bench",
        "store",
        "--params",
        "1000,2000",
        "--clients",
        "1,2",
        "--seconds",
        "0.05",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows = stdout
        .lines()
        .filter(|l| l.trim_start().starts_with(['1', '2']))
        .count();
    assert_eq!(rows, 4, "{stdout}");
    let bad = siren(&["bench", "store", "--store", "mongodb://x"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn scheduler_train_and_eval_write_a_policy_a_table_a_report_and_a_plot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("policy.json");
    let out = siren(&[
        "scheduler",
        "train",
        "--quick",
        "--seed",
        "3",
        "--out",
        policy.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    siren_scheduler::Policy::from_json(&std::fs::read_to_string(&policy).expect("policy"))
        .expect("a policy");

    let (json, png) = (dir.path().join("eval.json"), dir.path().join("eval.png"));
    let out = siren(&[
        "scheduler",
        "eval",
        "--jobs",
        "3",
        "--policy",
        policy.to_str().expect("utf-8"),
        "--json",
        json.to_str().expect("utf-8"),
        "--plot",
        png.to_str().expect("utf-8"),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    for scheduler in ["drl", "oracle-static", "median-static", "vm-cluster"] {
        assert!(table.contains(scheduler), "{scheduler} missing:\n{table}");
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&json).expect("report")).expect("JSON report");
    assert_eq!(
        report["acceptance"]["evaluated_runs"], 12,
        "3 jobs x 4 budgets"
    );
    assert!(
        table.contains("DRL missed the target where the oracle"),
        "{table}"
    );
    let drl = report["by_budget"]
        .as_array()
        .and_then(|series| series.iter().find(|s| s["scheduler"] == "drl"))
        .expect("the DRL series");
    for field in ["missed_where_oracle_reached", "oracle_reached"] {
        assert_eq!(
            drl[field].as_array().map(Vec::len),
            Some(4),
            "{field} per budget multiple: {drl}"
        );
    }
    let png = std::fs::read(&png).expect("plot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG file");
}

/// Outside a checkout there is no config/scheduler: the shipped policy comes from the binary.
#[test]
fn scheduler_eval_works_from_any_directory_with_the_built_in_policy() {
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_siren"))
        .args(["scheduler", "eval", "--jobs", "1", "--seed", "5"])
        .current_dir(elsewhere.path())
        .output()
        .expect("siren runs");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("oracle-static"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn scheduler_eval_refuses_a_file_that_is_not_a_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bogus = dir.path().join("bogus.json");
    std::fs::write(&bogus, "{\"weights\": 1}").expect("write");
    let out = siren(&[
        "scheduler",
        "eval",
        "--jobs",
        "1",
        "--policy",
        bogus.to_str().expect("utf-8"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is not a Siren scheduler policy"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn calibrate_rejects_a_malformed_check_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = write_manifest(&dir, SYNTHETIC);
    let out = siren(&[
        "calibrate",
        "-f",
        manifest.to_str().expect("utf-8"),
        "--out",
        dir.path().join("p.json").to_str().expect("utf-8"),
        "--check",
        "4by1769",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("FUNCTIONSxMEMORY_MB"));
}
