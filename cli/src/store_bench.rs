//! `siren bench store`: pull + push round trips through a parameter store, beside the raw baseline
//! of the same bytes through the same client (plain GET + SET for Redis, GetObject + PutObject for
//! S3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use siren_store::{
    MemoryStore, ParameterStore, RedisStore, S3Objects, S3Options, S3Store, Update, redact,
};

use crate::{Failure, invalid_input};

#[derive(clap::Args)]
pub struct StoreBenchArgs {
    /// `memory`, a `redis://` URL, or an `s3://bucket[/prefix]` location (credentials from the
    /// environment, as AWS tools take them).
    #[arg(long, default_value = "memory")]
    store: String,
    /// S3 only: an S3-compatible server's endpoint instead of AWS.
    #[arg(long)]
    endpoint: Option<String>,
    /// S3 only: the bucket's region.
    #[arg(long)]
    region: Option<String>,
    /// Model sizes (parameters).
    #[arg(long, value_delimiter = ',', default_values_t = vec![10_000usize, 100_000, 1_000_000, 10_000_000])]
    params: Vec<usize>,
    /// Concurrent clients, each with its own connection.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 16])]
    clients: Vec<usize>,
    /// Stop measuring a configuration after this many seconds (at least 3 round trips each).
    #[arg(long, default_value_t = 2.0)]
    seconds: f64,
    /// Also write the table as JSON.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
    /// Values per stored chunk.
    #[arg(long, default_value_t = siren_store::DEFAULT_CHUNK_VALUES)]
    chunk_values: usize,
}

#[derive(Serialize)]
struct Row {
    params: usize,
    clients: usize,
    store_ms: f64,
    raw_ms: Option<f64>,
    round_trips_per_s: f64,
}

async fn open(args: &StoreBenchArgs, job: &str) -> Result<Arc<dyn ParameterStore>, Failure> {
    if args.store == "memory" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    if args.store.starts_with("s3://") {
        let store = S3Store::connect(
            &args.store,
            job,
            args.chunk_values,
            &s3_options(args),
            Duration::from_secs(30),
        )
        .await?;
        return Ok(Arc::new(store));
    }
    if !args.store.starts_with("redis://") {
        return Err(invalid_input(anyhow::anyhow!(
            "--store takes `memory`, a redis:// URL or an s3:// location"
        )));
    }
    let store =
        RedisStore::connect(&args.store, job, args.chunk_values, Duration::from_secs(30)).await?;
    Ok(Arc::new(store))
}

fn s3_options(args: &StoreBenchArgs) -> S3Options {
    S3Options {
        endpoint: args.endpoint.clone(),
        region: args.region.clone(),
        credentials: None,
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// Mean milliseconds of one pull + push per client, with all clients running at once.
async fn store_round_trips(
    args: &StoreBenchArgs,
    params: usize,
    clients: usize,
) -> Result<(f64, f64), Failure> {
    let job = format!("bench-{params}-{clients}");
    let shared = open(args, &job).await?;
    shared.initialize(&vec![0.0; params]).await?;
    let budget = Duration::from_secs_f64(args.seconds);
    let all_started = Instant::now();
    let mut workers = Vec::new();
    for client in 0..clients {
        // In memory all clients share the store; over the network each has its own connection.
        let store = if args.store == "memory" {
            Arc::clone(&shared)
        } else {
            open(args, &job).await?
        };
        workers.push(tokio::spawn(async move {
            let started = Instant::now();
            let mut latencies = Vec::new();
            let delta = vec![1e-3f32; params];
            let mut update = Update {
                task_id: format!("bench-{client}"),
                seq: 0,
                base_version: 0,
                delta,
            };
            while latencies.len() < 3 || started.elapsed() < budget {
                let t = Instant::now();
                update.base_version = store.pull().await?.version;
                store.push(&update).await?;
                update.seq += 1;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            Ok::<_, siren_store::StoreError>((latencies, Instant::now()))
        }));
    }
    let mut per_client = Vec::new();
    let mut total_round_trips = 0usize;
    let mut longest = 0f64;
    for worker in workers {
        let (latencies, finished) = worker.await.context("benchmark client panicked")??;
        total_round_trips += latencies.len();
        longest = longest.max(finished.duration_since(all_started).as_secs_f64());
        per_client.push(median(latencies));
    }
    shared.clear().await?;
    Ok((
        median(per_client),
        total_round_trips as f64 / longest.max(1e-9),
    ))
}

/// The same bytes through the same kind of client: GET + SET of one value of params * 4 bytes.
async fn raw_round_trips(
    args: &StoreBenchArgs,
    params: usize,
    clients: usize,
) -> Result<Option<f64>, Failure> {
    if args.store == "memory" {
        return Ok(None);
    }
    if args.store.starts_with("s3://") {
        return raw_s3_round_trips(args, params, clients).await.map(Some);
    }
    let client = redis::Client::open(args.store.as_str()).context("invalid Redis URL")?;
    let budget = Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for index in 0..clients {
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .with_context(|| format!("cannot reach {}", redact(&args.store)))?;
        let key = format!("siren-bench-raw:{index}");
        workers.push(tokio::spawn(async move {
            let bytes = vec![7u8; params * 4];
            redis::cmd("SET")
                .arg(&key)
                .arg(&bytes)
                .query_async::<()>(&mut connection)
                .await?;
            let started = Instant::now();
            let mut latencies = Vec::new();
            while latencies.len() < 3 || started.elapsed() < budget {
                let t = Instant::now();
                let value: Vec<u8> = redis::cmd("GET")
                    .arg(&key)
                    .query_async(&mut connection)
                    .await?;
                redis::cmd("SET")
                    .arg(&key)
                    .arg(value)
                    .query_async::<()>(&mut connection)
                    .await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            redis::cmd("DEL")
                .arg(&key)
                .query_async::<()>(&mut connection)
                .await?;
            Ok::<_, redis::RedisError>(median(latencies))
        }));
    }
    let mut per_client = Vec::new();
    for worker in workers {
        per_client.push(
            worker
                .await
                .context("benchmark client panicked")?
                .context("raw GET/SET failed")?,
        );
    }
    Ok(Some(median(per_client)))
}

/// GetObject + PutObject of one object of params * 4 bytes, through the store's own S3 client.
async fn raw_s3_round_trips(
    args: &StoreBenchArgs,
    params: usize,
    clients: usize,
) -> Result<f64, Failure> {
    let (bucket, prefix) = siren_crds::parse_s3_url(&args.store)
        .ok_or_else(|| invalid_input(anyhow::anyhow!("--store: not an s3://bucket location")))?;
    let budget = Duration::from_secs_f64(args.seconds);
    let mut workers = Vec::new();
    for index in 0..clients {
        let objects =
            S3Objects::connect(&bucket, &s3_options(args), Duration::from_secs(30)).await?;
        let key = format!("{prefix}/siren-bench-raw/{index}");
        workers.push(tokio::spawn(async move {
            objects.put(&key, vec![7u8; params * 4]).await?;
            let started = Instant::now();
            let mut latencies = Vec::new();
            while latencies.len() < 3 || started.elapsed() < budget {
                let t = Instant::now();
                let value = objects.get(&key).await?.unwrap_or_default();
                objects.put(&key, value).await?;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            objects.delete(std::slice::from_ref(&key)).await?;
            Ok::<_, siren_store::StoreError>(median(latencies))
        }));
    }
    let mut per_client = Vec::new();
    for worker in workers {
        per_client.push(worker.await.context("benchmark client panicked")??);
    }
    Ok(median(per_client))
}

pub fn store(args: &StoreBenchArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    println!("store: {}", redact(&args.store));
    println!(
        "{:>10} {:>8} {:>16} {:>14} {:>10} {:>16}",
        "params", "clients", "store ms/round", "raw ms/round", "store/raw", "round trips/s"
    );
    let mut rows = Vec::new();
    for &params in &args.params {
        for &clients in &args.clients {
            let (store_ms, rate) =
                runtime.block_on(store_round_trips(args, params, clients.max(1)))?;
            let raw_ms = runtime.block_on(raw_round_trips(args, params, clients.max(1)))?;
            println!(
                "{:>10} {:>8} {:>16.3} {:>14} {:>10} {:>16.1}",
                params,
                clients,
                store_ms,
                raw_ms.map_or("-".into(), |r| format!("{r:.3}")),
                raw_ms.map_or("-".into(), |r| format!("{:.2}x", store_ms / r)),
                rate
            );
            rows.push(Row {
                params,
                clients,
                store_ms,
                raw_ms,
                round_trips_per_s: rate,
            });
        }
    }
    if let Some(path) = &args.json {
        crate::write_json(path, &rows)?;
    }
    Ok(())
}
