//! The Redis store against a real `redis-server` (Debian package) on a free loopback port.

use std::sync::Arc;
use std::time::Duration;

use siren_e2e::RedisServer;
use siren_store::{
    ParameterStore, RedisStore, Snapshot, StoreCredentials, StoreError, Update, conformance,
};

async fn store(url: &str, job: &str, chunk_values: usize) -> RedisStore {
    RedisStore::connect(url, job, chunk_values, Duration::from_secs(5))
        .await
        .expect("connect")
}

/// 16 writers, each with its own connection, push 200 updates each at the same time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_nothing() {
    let server = RedisServer::start(&[]);
    let url = server.url();
    // Chunks of 300 values: four chunks, the last one short.
    let open = move || {
        let url = url.clone();
        Box::pin(async move { Arc::new(store(&url, "race", 300).await) as Arc<dyn ParameterStore> })
            as std::pin::Pin<Box<dyn Future<Output = Arc<dyn ParameterStore>> + Send>>
    };
    let stats = conformance::concurrent_writers_lose_nothing(open, 16, 200, 1000).await;
    assert!(
        stats.staleness_sum > 0,
        "concurrent writers see stale versions"
    );
    println!(
        "16 x 200 updates: mean staleness {:.2}, max {}",
        stats.staleness_sum as f64 / stats.updates as f64,
        stats.staleness_max
    );
    let ttl: i64 = redis::cmd("TTL")
        .arg("siren:race:chunk:0")
        .query(&mut server.raw())
        .expect("ttl");
    assert_eq!(ttl, -1, "committed chunks do not keep the staging expiry");
    let staged: Vec<String> = redis::cmd("KEYS")
        .arg("siren:race:stage:*")
        .query(&mut server.raw())
        .expect("keys");
    assert!(
        staged.is_empty(),
        "no staged chunks are left behind: {staged:?}"
    );
}

#[tokio::test]
async fn duplicates_bad_lengths_and_future_versions_change_nothing() {
    let server = RedisServer::start(&[]);
    let client = store(&server.url(), "rules", 2).await;
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
    // A second client sees exactly one applied update.
    let other = store(&server.url(), "rules", 2).await;
    assert_eq!(
        other.pull().await.expect("pull"),
        Snapshot {
            version: 1,
            params: vec![2.0, 3.0, 4.0]
        }
    );
}

#[tokio::test]
async fn checkpoints_restore_and_clear() {
    let server = RedisServer::start(&[]);
    let client = store(&server.url(), "ckpt", 2).await;
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
            .map(|c| c.epoch),
        Some(5)
    );
    assert!(
        matches!(client.restore(1).await, Err(StoreError::NoCheckpoint(1))),
        "only 3 are kept"
    );
    client
        .push(&Update::new("t", 2, 2, vec![1.0, 1.0, 1.0]))
        .await
        .expect("push");
    let restored = client.restore(5).await.expect("restore");
    assert_eq!(restored.version, 2);
    assert_eq!(
        client.pull().await.expect("pull"),
        Snapshot {
            version: 2,
            params: vec![6.0, 6.0, 6.0]
        }
    );
    // Other jobs' keys survive a clear.
    let neighbour = store(&server.url(), "neighbour", 2).await;
    neighbour.initialize(&[1.0]).await.expect("init");
    client.clear().await.expect("clear");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("siren:ckpt:*")
        .query(&mut server.raw())
        .expect("keys");
    assert!(left.is_empty(), "{left:?}");
    assert!(neighbour.pull().await.is_ok());
}

#[tokio::test]
async fn corrupt_and_missing_chunks_are_reported() {
    let server = RedisServer::start(&[]);
    let client = store(&server.url(), "damaged", 2).await;
    client
        .initialize(&[1.0, 2.0, 3.0, 4.0])
        .await
        .expect("init");
    let mut raw = server.raw();
    let blob: Vec<u8> = redis::cmd("GET")
        .arg("siren:damaged:chunk:1")
        .query(&mut raw)
        .expect("get");
    let mut flipped = blob.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 0x40;
    let _: () = redis::cmd("SET")
        .arg("siren:damaged:chunk:1")
        .arg(&flipped)
        .query(&mut raw)
        .expect("set");
    let message = client.pull().await.expect_err("flipped bit").to_string();
    assert!(
        message.contains("chunk 1") && message.contains("bad checksum"),
        "{message}"
    );
    let _: () = redis::cmd("SET")
        .arg("siren:damaged:chunk:1")
        .arg(&blob[..blob.len() - 4])
        .query(&mut raw)
        .expect("set");
    assert!(
        client
            .pull()
            .await
            .expect_err("truncated")
            .to_string()
            .contains("chunk 1")
    );
    let _: () = redis::cmd("DEL")
        .arg("siren:damaged:chunk:0")
        .query(&mut raw)
        .expect("del");
    assert!(
        client
            .pull()
            .await
            .expect_err("missing")
            .to_string()
            .contains("chunk 0")
    );
}

#[tokio::test]
async fn a_dead_or_wiped_redis_is_a_clear_error() {
    let mut server = RedisServer::start(&[]);
    let port = server.port;
    let client = store(&server.url(), "fragile", 100).await;
    client.initialize(&[1.0; 10]).await.expect("init");
    server.kill();
    let error = client
        .push(&Update::new("t", 0, 0, vec![1.0; 10]))
        .await
        .expect_err("dead server");
    assert!(error.is_retryable(), "{error}");
    let error = client.pull().await.expect_err("dead server");
    assert!(error.is_retryable(), "{error}");
    // Restarted with empty memory: the model is gone and the store says so, not stale data.
    let _restarted = RedisServer::start_on(port, &[]);
    let fresh = store(&format!("redis://127.0.0.1:{port}"), "fragile", 100).await;
    assert!(matches!(fresh.pull().await, Err(StoreError::NoModel)));
    assert!(matches!(fresh.stats().await, Err(StoreError::NoModel)));
}

#[tokio::test]
async fn passwords_work_and_never_show_in_errors() {
    let server = RedisServer::start(&["--requirepass", "s3cret-pass"]);
    let good = format!("redis://:s3cret-pass@127.0.0.1:{}", server.port);
    let client = store(&good, "auth", 100).await;
    client.initialize(&[1.0]).await.expect("authenticated init");
    let bad = format!("redis://:wrong-pass@127.0.0.1:{}", server.port);
    let message = match RedisStore::connect(&bad, "auth", 100, Duration::from_secs(5)).await {
        Ok(store) => store.pull().await.expect_err("unauthenticated").to_string(),
        Err(error) => error.to_string(),
    };
    assert!(!message.contains("wrong-pass"), "{message}");
    let unreachable = RedisStore::connect(
        "redis://user:hidden@127.0.0.1:1",
        "auth",
        100,
        Duration::from_secs(2),
    )
    .await
    .err()
    .expect("nothing listens on port 1")
    .to_string();
    assert!(
        !unreachable.contains("hidden") && unreachable.contains("***@127.0.0.1:1"),
        "{unreachable}"
    );
}

/// An ACL user that may touch only Siren's keys, with its credentials given apart from the URL,
/// as a job's `credentialsSecret` gives them.
#[tokio::test]
async fn an_acl_user_from_credentials_works_and_its_password_never_shows() {
    let server = RedisServer::start(&[]);
    let mut admin = server.raw();
    redis::cmd("ACL")
        .arg(&[
            "SETUSER",
            "siren",
            "on",
            ">acl-s3cret",
            "~siren:*",
            "&*",
            "+@all",
            "-@dangerous",
        ])
        .query::<()>(&mut admin)
        .expect("ACL user created");
    let credentials = |password: &str| StoreCredentials {
        username: Some("siren".into()),
        password: Some(password.into()),
        ca_pem: None,
    };
    let client = RedisStore::connect_with(
        &server.url(),
        "acl",
        100,
        Duration::from_secs(5),
        &credentials("acl-s3cret"),
    )
    .await
    .expect("the ACL user connects");
    client
        .initialize(&[1.0, 2.0])
        .await
        .expect("init as the ACL user");
    client
        .push(&Update::new("t", 0, 0, vec![1.0, 1.0]))
        .await
        .expect("push as the ACL user");
    assert_eq!(client.pull().await.expect("pull").params, vec![2.0, 3.0]);
    let refused = match RedisStore::connect_with(
        &server.url(),
        "acl",
        100,
        Duration::from_secs(5),
        &credentials("wrong-acl-pass"),
    )
    .await
    {
        Ok(store) => store.pull().await.expect_err("unauthenticated").to_string(),
        Err(error) => error.to_string(),
    };
    assert!(!refused.contains("wrong-acl-pass"), "{refused}");
    assert!(!format!("{:?}", credentials("acl-s3cret")).contains("acl-s3cret"));
}

#[tokio::test]
async fn large_models_round_trip_through_many_chunks() {
    let server = RedisServer::start(&[]);
    let client = Arc::new(store(&server.url(), "big", 64 * 1024).await);
    let params: Vec<f32> = (0..1_000_003).map(|i| (i % 1000) as f32 * 0.5).collect();
    client.initialize(&params).await.expect("init");
    let delta: Vec<f32> = (0..params.len())
        .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
        .collect();
    client
        .push(&Update::new("t", 0, 0, delta.clone()))
        .await
        .expect("push");
    let other = store(&server.url(), "big", 64 * 1024).await;
    let snapshot = other.pull().await.expect("pull");
    assert_eq!(snapshot.version, 1);
    assert!(
        snapshot
            .params
            .iter()
            .zip(params.iter().zip(&delta))
            .all(|(s, (p, d))| *s == p + d)
    );
}

#[tokio::test]
async fn tls_with_the_servers_ca_works_and_without_it_is_refused() {
    let (server, ca) = RedisServer::start_tls();
    let ca_pem = std::fs::read(&ca).expect("CA file");
    let credentials = StoreCredentials {
        ca_pem: Some(ca_pem),
        ..StoreCredentials::default()
    };
    let client = RedisStore::connect_with(
        &server.url(),
        "tls",
        100,
        Duration::from_secs(5),
        &credentials,
    )
    .await
    .expect("TLS connection trusting the test CA");
    client.initialize(&[1.0, 2.0]).await.expect("init over TLS");
    client
        .push(&Update::new("t", 0, 0, vec![1.0, 1.0]))
        .await
        .expect("push over TLS");
    assert_eq!(client.pull().await.expect("pull").params, vec![2.0, 3.0]);
    let untrusted = RedisStore::connect(&server.url(), "tls", 100, Duration::from_secs(5))
        .await
        .err()
        .expect("an unknown CA is refused");
    assert!(
        untrusted.to_string().contains("cannot reach Redis"),
        "{untrusted}"
    );
    let plain = format!("redis://127.0.0.1:{}", server.port);
    assert!(
        RedisStore::connect(&plain, "tls", 100, Duration::from_secs(2))
            .await
            .is_err()
    );
}

/// A client whose cache holds version 2 must not build on it once another client has restored a
/// checkpoint and pushed a different version 2.
#[tokio::test]
async fn a_restore_elsewhere_invalidates_what_a_client_remembers() {
    let server = RedisServer::start(&[]);
    let a = store(&server.url(), "generations", 2).await;
    a.initialize(&[0.0, 0.0]).await.expect("init");
    a.push(&Update::new("a", 0, 0, vec![1.0, 1.0]))
        .await
        .expect("push");
    a.checkpoint(1).await.expect("checkpoint");
    a.push(&Update::new("a", 1, 1, vec![1.0, 1.0]))
        .await
        .expect("push");
    let b = store(&server.url(), "generations", 2).await;
    b.restore(1).await.expect("restore");
    b.pull().await.expect("pull");
    b.push(&Update::new("b", 0, 1, vec![10.0, 10.0]))
        .await
        .expect("push");
    let seen = a.pull().await.expect("pull");
    assert_eq!(
        seen,
        Snapshot {
            version: 2,
            params: vec![11.0, 11.0]
        }
    );
    a.push(&Update::new("a", 2, 2, vec![1.0, 1.0]))
        .await
        .expect("push");
    assert_eq!(
        b.pull().await.expect("pull"),
        Snapshot {
            version: 3,
            params: vec![12.0, 12.0]
        }
    );
}

#[tokio::test]
async fn job_names_that_are_not_safe_prefixes_are_refused() {
    let server = RedisServer::start(&[]);
    for job in ["a:b", "*", "UPPER", ""] {
        let error = RedisStore::connect(&server.url(), job, 100, Duration::from_secs(2))
            .await
            .err()
            .expect("refused");
        assert!(error.to_string().contains("DNS-1123"), "{job}: {error}");
    }
}

#[tokio::test]
async fn datasets_live_in_the_store_until_clear() {
    let server = RedisServer::start(&[]);
    let client = store(&server.url(), "data", 1000).await;
    conformance::dataset_round_trips_until_clear(&client).await;
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("siren:data:*")
        .query(&mut server.raw())
        .expect("keys");
    assert!(left.is_empty(), "clear left {left:?}");
}
