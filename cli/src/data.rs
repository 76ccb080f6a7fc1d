//! `siren data upload`: puts a job's training split into its store ahead of the job, so that the
//! job finds it there instead of uploading it. A job that finishes clears its store keys, the
//! dataset included; a failed one keeps them, so its rerun finds the data too.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use siren_crds::{StoreKind, StoreRef, read_manifest};
use siren_data::cached_splits;
use siren_store::{StoreCredentials, connect_store, redact, upload_dataset};

use crate::{Failure, invalid_input};

pub fn upload(file: &Path) -> Result<(), Failure> {
    let job = read_manifest(file).map_err(invalid_input)?;
    let spec = &job.spec;
    if spec.store.kind == StoreKind::Memory {
        return Err(invalid_input(anyhow::anyhow!(
            "{}: the in-process store lives only while `siren train` runs; there is nothing to upload to (use a redis or s3 store)",
            file.display()
        )));
    }
    let name = job.metadata.name.clone().unwrap_or_default();
    let location = redact(spec.store.url.as_deref().unwrap_or_default());
    let started = Instant::now();
    let (splits, _) = cached_splits(&spec.dataset, spec.training.seed)
        .with_context(|| format!("cannot load the dataset of job {name}"))?;
    let loaded = started.elapsed().as_secs_f64();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime
        .block_on(async {
            let credentials =
                StoreCredentials::from_env()?.with_ca_file(spec.store.ca_file.as_deref())?;
            let store =
                connect_store(&StoreRef::from_spec(&spec.store), &name, &credentials).await?;
            upload_dataset(store.as_ref(), &splits.train, spec.dataset.shard_size).await
        })
        .with_context(|| format!("cannot upload the dataset of job {name} to {location}"))?;
    let stored = &report.stored;
    if report.shards_written == 0 {
        println!(
            "{location}: job {name} already holds dataset {} ({} samples in {} shards); nothing written",
            stored.fingerprint, stored.samples, stored.shards
        );
    } else {
        println!(
            "{location}: wrote dataset {} for job {name}: {} samples in {} shards, {:.1} MB in {:.1} s (loading took {loaded:.1} s)",
            stored.fingerprint,
            stored.samples,
            stored.shards,
            report.bytes_written as f64 / 1e6,
            started.elapsed().as_secs_f64() - loaded,
        );
    }
    Ok(())
}
