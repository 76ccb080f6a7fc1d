//! Property tests of the task decoder, the first thing a function does with bytes from the network:
//! whatever arrives, it answers a task or an error, never a panic.

use proptest::prelude::*;
use siren_crds::{TASK_PROTOCOL_VERSION, Task, TaskKey, now_ms};

fn valid_task_json() -> serde_json::Value {
    serde_json::json!({
        "protocolVersion": TASK_PROTOCOL_VERSION,
        "job": "fuzz",
        "taskId": "fuzz-e1-f0",
        "epoch": 0,
        "function": 0,
        "model": {"kind": "mlp", "hidden": [8]},
        "dataset": {"synthetic": {"samples": 10, "features": 2, "classes": 2}, "shardSize": 5},
        "shards": [0, 1],
        "store": {"kind": "redis", "url": "redis://127.0.0.1:6379"},
        "hyper": {"batchSize": 4, "learningRate": 0.1, "momentum": 0.9, "weightDecay": 0.0, "stepsPerPush": 1},
        "threads": 1,
        "memoryMb": 1769,
        "seed": 1,
        "storedData": {"fingerprint": "d10x2s5-00", "samples": 10, "shards": 2, "shardSize": 5, "dim": 2, "classes": 2}
    })
}

fn json_leaf() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,12}".prop_map(serde_json::Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = Task::from_json(&bytes);
    }

    /// The signature check runs on every payload before anything else: any bytes are refused,
    /// never a panic.
    #[test]
    fn arbitrary_bytes_never_pass_or_panic_the_signature_check(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
    ) {
        prop_assert!(TaskKey::generate().verify(&bytes, now_ms()).is_err());
    }

    /// A valid task with one field replaced by anything: decoded or refused, and a refusal names
    /// something.
    #[test]
    fn one_field_replaced_by_anything_never_panics(
        field in proptest::sample::select(vec![
            "/protocolVersion", "/job", "/taskId", "/epoch", "/model/kind", "/model/hidden",
            "/dataset/shardSize", "/shards", "/store/kind", "/store/url", "/hyper/batchSize",
            "/hyper/learningRate", "/hyper/momentum", "/threads", "/memoryMb",
            "/storedData/fingerprint", "/storedData/shards", "/storedData/dim",
        ]),
        value in json_leaf(),
    ) {
        let mut task = valid_task_json();
        if let Some(slot) = task.pointer_mut(field) {
            *slot = value;
        }
        if let Err(error) = Task::from_json(task.to_string().as_bytes()) {
            prop_assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn the_valid_task_survives_any_truncation(cut in 0usize..1000) {
        let bytes = valid_task_json().to_string().into_bytes();
        let cut = cut.min(bytes.len());
        let decoded = Task::from_json(&bytes[..cut]);
        prop_assert_eq!(decoded.is_ok(), cut == bytes.len());
    }
}
