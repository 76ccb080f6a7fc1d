//! The S3 store against a real S3-compatible server (moto) on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use siren_e2e::{ACCESS_KEY_ID, S3Server, SECRET_ACCESS_KEY};
use siren_store::{
    ParameterStore, S3Options, S3Store, Snapshot, StaticCredentials, StoreError, Update,
    conformance,
};

const BUCKET: &str = "siren-test";

fn options(server: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        credentials: Some(StaticCredentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
        }),
    }
}

async fn store(server: &S3Server, job: &str, chunk_values: usize) -> S3Store {
    S3Store::connect(
        &format!("s3://{BUCKET}/jobs"),
        job,
        chunk_values,
        &options(server),
        Duration::from_secs(10),
    )
    .await
    .expect("connect")
}

/// A plain S3 client, for poking at objects behind the store's back.
fn raw(server: &S3Server) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(
            ACCESS_KEY_ID,
            SECRET_ACCESS_KEY,
            None,
            None,
            "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

async fn keys(client: &aws_sdk_s3::Client, prefix: &str) -> Vec<String> {
    let listed = client
        .list_objects_v2()
        .bucket(BUCKET)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect()
}

async fn get(client: &aws_sdk_s3::Client, key: &str) -> Vec<u8> {
    let object = client
        .get_object()
        .bucket(BUCKET)
        .key(key)
        .send()
        .await
        .expect("get");
    object.body.collect().await.expect("body").to_vec()
}

async fn put(client: &aws_sdk_s3::Client, key: &str, body: Vec<u8>) {
    client
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(ByteStream::from(body))
        .send()
        .await
        .expect("put");
}

fn opener(
    server: &Arc<S3Server>,
    job: &'static str,
    chunk_values: usize,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = Arc<dyn ParameterStore>> + Send>> + use<> {
    let server = server.clone();
    move || {
        let server = server.clone();
        Box::pin(async move {
            Arc::new(store(&server, job, chunk_values).await) as Arc<dyn ParameterStore>
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_concurrent_writers_lose_nothing() {
    let server = Arc::new(S3Server::start(&[BUCKET]));
    let stats =
        conformance::concurrent_writers_lose_nothing(opener(&server, "few", 300), 4, 25, 1000)
            .await;
    assert!(
        stats.staleness_sum > 0,
        "concurrent writers see stale versions"
    );
}

/// The acceptance check: 16 writers, each with a client of its own, push 200 updates each at the
/// same time. Minutes against moto, whose every request costs milliseconds of Python: it runs
/// with the acceptance runs (`--ignored`), in CI too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "minutes long: an acceptance run"]
async fn concurrent_writers_lose_nothing() {
    let server = Arc::new(S3Server::start(&[BUCKET]));
    let started = std::time::Instant::now();
    let stats =
        conformance::concurrent_writers_lose_nothing(opener(&server, "race", 300), 16, 200, 1000)
            .await;
    assert!(
        stats.staleness_sum > 0,
        "concurrent writers see stale versions"
    );
    println!(
        "16 x 200 updates on S3 in {:.1} s: mean staleness {:.2}, max {}",
        started.elapsed().as_secs_f64(),
        stats.staleness_sum as f64 / stats.updates as f64,
        stats.staleness_max
    );
    let log = keys(&raw(&server), "jobs/race/gen/").await;
    assert!(
        log.iter().filter(|k| k.contains("/log/")).count() >= 1000,
        "one log entry per update (the listing pages at 1000)"
    );
}

/// Deltas too large to travel inside their log entry get objects of their own, which snapshots
/// make unnecessary and which are then removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_deltas_go_through_their_own_objects() {
    let server = Arc::new(S3Server::start(&[BUCKET]));
    let len = 100_000;
    conformance::concurrent_writers_lose_nothing(opener(&server, "large", 30_000), 3, 12, len)
        .await;
    let client = raw(&server);
    let deltas: Vec<String> = keys(&client, "jobs/large/gen/")
        .await
        .into_iter()
        .filter(|key| key.contains("/delta/"))
        .collect();
    assert!(
        !deltas.is_empty() && deltas.len() < 36,
        "delta objects exist and covered ones are cleaned up: {} left",
        deltas.len()
    );
    let cold = store(&server, "large", 30_000).await;
    assert_eq!(cold.pull().await.expect("cold pull").version, 36);
}

#[tokio::test]
async fn duplicates_bad_lengths_and_future_versions_change_nothing() {
    let server = S3Server::start(&[BUCKET]);
    let client = store(&server, "rules", 2).await;
    assert!(matches!(client.pull().await, Err(StoreError::NoModel)));
    client.initialize(&[1.0, 1.0, 1.0]).await.expect("init");
    let first = client
        .push(&Update::new("t", 0, 0, vec![1.0, 2.0, 3.0]))
        .await
        .expect("push");
    let again = client
        .push(&Update::new("t", 0, 0, vec![1.0, 2.0, 3.0]))
        .await
        .expect("retry");
    assert!(!first.duplicate && again.duplicate);
    // A retry through another client, which has not seen the first push yet.
    let other = store(&server, "rules", 2).await;
    let elsewhere = other
        .push(&Update::new("t", 0, 0, vec![1.0, 2.0, 3.0]))
        .await
        .expect("retry elsewhere");
    assert!(elsewhere.duplicate);
    assert!(matches!(
        client.push(&Update::new("t", 1, 1, vec![1.0])).await,
        Err(StoreError::LengthMismatch {
            expected: 3,
            found: 1
        })
    ));
    assert!(matches!(
        client.push(&Update::new("t", 2, 9, vec![0.0; 3])).await,
        Err(StoreError::FutureVersion {
            base: 9,
            current: 1
        })
    ));
    let third = store(&server, "rules", 2).await;
    assert_eq!(
        third.pull().await.expect("pull"),
        Snapshot {
            version: 1,
            params: vec![2.0, 3.0, 4.0]
        }
    );
}

#[tokio::test]
async fn checkpoints_restore_and_clear() {
    let server = S3Server::start(&[BUCKET]);
    let client = store(&server, "ckpt", 2).await;
    client.initialize(&[0.0, 0.0, 0.0]).await.expect("init");
    client
        .push(&Update::new("t", 0, 0, vec![1.0, 1.0, 1.0]))
        .await
        .expect("push");
    assert_eq!(client.checkpoint(1).await.expect("checkpoint").version, 1);
    client
        .push(&Update::new("t", 1, 1, vec![5.0, 5.0, 5.0]))
        .await
        .expect("push");
    for epoch in 2..=5 {
        client.checkpoint(epoch).await.expect("checkpoint");
    }
    assert_eq!(
        client
            .latest_checkpoint()
            .await
            .expect("latest")
            .map(|c| (c.epoch, c.version)),
        Some((5, 2))
    );
    assert!(
        matches!(client.restore(1).await, Err(StoreError::NoCheckpoint(1))),
        "only 3 are kept"
    );
    // A second client that is on the model before the restore.
    let straggler = store(&server, "ckpt", 2).await;
    assert_eq!(straggler.pull().await.expect("pull").version, 2);
    client
        .push(&Update::new("t", 2, 2, vec![1.0, 1.0, 1.0]))
        .await
        .expect("push");
    let restored = client.restore(4).await.expect("restore");
    assert_eq!(restored.version, 2);
    assert_eq!(
        client.pull().await.expect("pull"),
        Snapshot {
            version: 2,
            params: vec![6.0, 6.0, 6.0]
        }
    );
    // The straggler's push loses its position to the seal, follows it and lands on the restored
    // model; the update ids of the rolled-back run may be used again.
    let receipt = straggler
        .push(&Update::new("t", 2, 2, vec![10.0, 10.0, 10.0]))
        .await
        .expect("push after restore");
    assert!(!receipt.duplicate);
    assert_eq!(
        client.pull().await.expect("pull"),
        Snapshot {
            version: 3,
            params: vec![16.0, 16.0, 16.0]
        }
    );
    // Re-running epoch 5 after rolling back to 4 replaces the old epoch 5.
    client.checkpoint(5).await.expect("checkpoint");
    assert_eq!(
        client.latest_checkpoint().await.expect("latest"),
        Some(siren_store::CheckpointInfo {
            epoch: 5,
            version: 3
        })
    );
    let neighbour = store(&server, "neighbour", 2).await;
    neighbour.initialize(&[1.0]).await.expect("init");
    client.clear().await.expect("clear");
    assert!(keys(&raw(&server), "jobs/ckpt/").await.is_empty());
    assert!(neighbour.pull().await.is_ok());
}

#[tokio::test]
async fn corrupt_and_missing_objects_are_reported() {
    let server = S3Server::start(&[BUCKET]);
    let client = store(&server, "damaged", 2).await;
    client
        .initialize(&[1.0, 2.0, 3.0, 4.0])
        .await
        .expect("init");
    client
        .push(&Update::new("t", 0, 0, vec![1.0; 4]))
        .await
        .expect("push");
    let raw = raw(&server);
    let entry = keys(&raw, "jobs/damaged/gen/")
        .await
        .into_iter()
        .find(|k| k.contains("/log/"))
        .expect("a log entry");
    let body = get(&raw, &entry).await;
    let check = async |damaged: Vec<u8>, needle: &str| {
        put(&raw, &entry, damaged).await;
        let fresh = store(&server, "damaged", 2).await;
        let message = fresh.pull().await.expect_err(needle).to_string();
        assert!(message.contains(needle), "{needle}: {message}");
    };
    let mut flipped = body.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    check(flipped, "bad checksum").await;
    check(body[..body.len() - 4].to_vec(), "truncated").await;
    check(b"{\"kind\":\"update\"}\n".to_vec(), "unreadable header").await;
    check(b"no header at all".to_vec(), "no header").await;
    put(&raw, &entry, body).await;
    let snapshot = keys(&raw, "jobs/damaged/gen/")
        .await
        .into_iter()
        .find(|k| k.contains("/snap/"))
        .expect("a snapshot");
    let mut damaged = get(&raw, &snapshot).await;
    let last = damaged.len() - 1;
    damaged[last] ^= 0x01;
    put(&raw, &snapshot, damaged).await;
    let fresh = store(&server, "damaged", 2).await;
    let message = fresh
        .pull()
        .await
        .expect_err("damaged snapshot")
        .to_string();
    assert!(message.contains("bad checksum"), "{message}");
}

#[tokio::test]
async fn a_dead_or_wiped_server_is_a_clear_error() {
    let mut server = S3Server::start(&[BUCKET]);
    let client = store(&server, "fragile", 100).await;
    client.initialize(&[1.0; 10]).await.expect("init");
    client.pull().await.expect("pull");
    server.reset();
    // A cached model is never reported once the store has lost it.
    assert!(matches!(client.pull().await, Err(StoreError::NoModel)));
    server.create_bucket(BUCKET);
    assert!(matches!(client.pull().await, Err(StoreError::NoModel)));
    client.initialize(&[1.0; 10]).await.expect("init");
    // Cleared and re-created behind a warm client's back: it must see the new model.
    let warm = store(&server, "fragile", 100).await;
    assert_eq!(warm.pull().await.expect("pull").params, vec![1.0; 10]);
    client.clear().await.expect("clear");
    client.initialize(&[2.0; 10]).await.expect("init again");
    assert_eq!(
        warm.pull().await.expect("pull"),
        Snapshot {
            version: 0,
            params: vec![2.0; 10]
        }
    );
    drop(std::mem::replace(&mut server, S3Server::start(&[])));
    let error = client
        .push(&Update::new("t", 0, 0, vec![1.0; 10]))
        .await
        .expect_err("dead server");
    assert!(error.is_retryable(), "{error}");
    let missing = S3Store::connect(
        "s3://no-such-bucket",
        "job",
        100,
        &options(&server),
        Duration::from_secs(5),
    )
    .await
    .err()
    .expect("missing bucket");
    assert!(missing.to_string().contains("no-such-bucket"), "{missing}");
}

#[tokio::test]
async fn datasets_live_in_the_store_until_clear() {
    let server = S3Server::start(&[BUCKET]);
    let client = store(&server, "data", 1000).await;
    conformance::dataset_round_trips_until_clear(&client).await;
    assert!(keys(&raw(&server), "jobs/data/").await.is_empty());
}
