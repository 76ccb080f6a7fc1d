//! The S3 parameter store, for functions on AWS Lambda (or any S3-compatible server).
//!
//! S3 has no read-modify-write, but it has create-only writes (`If-None-Match: *`), and that is
//! enough for a log: the model of a generation is its starting snapshot plus an append-only log of
//! updates, and version `v` is log position `v`. A push claims position `head + 1` with a
//! create-only PUT; exactly one claimant wins each position, and a loser reads the entry that beat
//! it and tries the next one. Every client folds the log in position order, so all of them compute
//! the same model (the same additions in the same order). A claim only succeeds for a client that
//! has read every entry before it, so it has seen whether its own update id is already there: a
//! retried push is recognised and never enters the log twice.
//!
//! Layout under `<prefix>/<job>/`:
//! - `current`: the generation in use and the model's layout.
//! - `gen/<g>/log/<position>`: one update (id, base version, the delta inline when small, or the
//!   name of its `delta/<nonce>` object) or a seal naming the next generation.
//! - `gen/<g>/snap/<position>`: the model at a position, with the applied update ids and the
//!   staleness counters, written every `SNAPSHOT_EVERY` positions by the client that claimed it,
//!   so a client that is far behind (or starting cold) reads one snapshot instead of the whole log.
//! - `ckpt/<epoch>-<version>`: checkpoints.
//!
//! `initialize` and `restore` start a new generation and seal the old log by claiming its next
//! position with a seal: a client that was still on the old generation loses its claim to the
//! seal, follows it, and pushes again on the new model.

mod objects;

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use super::blob::{Layout, decode_model, encode_model};
use super::{
    CheckpointInfo, ParameterStore, PushReceipt, Snapshot, StoreError, StoreStats, Update,
};
pub use objects::{Objects, S3Options, StaticCredentials};

/// Positions between snapshots: a client behind by more than this reads a snapshot.
const SNAPSHOT_EVERY: u64 = 4;
/// Deltas up to this size travel inside their log entry (one request to read); larger ones get an
/// object of their own, so that a lost claim re-sends a few bytes instead of the delta.
const INLINE_DELTA_BYTES: usize = 256 * 1024;
use crate::CHECKPOINTS_KEPT;
const CLAIM_ATTEMPTS: usize = 100_000;
/// Log entries fetched at once while folding.
const WINDOW: u64 = 8;
const MAX_PARAMS: usize = 1 << 30;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Head {
    generation: String,
    params: usize,
    chunk_values: usize,
}

impl Head {
    fn layout(&self) -> Layout {
        Layout {
            params: self.params,
            chunk_values: self.chunk_values,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
enum Entry {
    Update {
        id: String,
        nonce: String,
        base: u64,
        inline: bool,
    },
    Seal {
        next: Head,
    },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SnapshotState {
    version: u64,
    updates: u64,
    staleness_sum: u64,
    staleness_max: u64,
    ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckpointHeader {
    epoch: u32,
    version: u64,
    params: usize,
    chunk_values: usize,
}

/// A small JSON header, a newline, then an optional binary blob: one object, written atomically.
fn frame<T: Serialize>(header: &T, blob: &[u8]) -> Vec<u8> {
    let mut body = serde_json::to_vec(header).unwrap_or_default();
    body.push(b'\n');
    body.extend_from_slice(blob);
    body
}

fn unframe<'a, T: serde::de::DeserializeOwned>(
    body: &'a [u8],
    what: &str,
) -> Result<(T, &'a [u8]), StoreError> {
    let split = body
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| StoreError::Corrupt(format!("{what}: no header")))?;
    let header = serde_json::from_slice(&body[..split])
        .map_err(|e| StoreError::Corrupt(format!("{what}: unreadable header: {e}")))?;
    Ok((header, &body[split + 1..]))
}

fn check_layout(head: &Head) -> Result<(), StoreError> {
    if head.chunk_values == 0 || head.params > MAX_PARAMS {
        return Err(StoreError::Corrupt(format!(
            "stored layout of {} parameters in chunks of {} is not plausible",
            head.params, head.chunk_values
        )));
    }
    Ok(())
}

fn new_token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// What this client has folded of the log.
struct Cursor {
    head: Head,
    version: u64,
    params: Vec<f32>,
    ids: HashSet<String>,
    stats: StoreStats,
    /// Positions of folded updates whose delta has an object of its own, for clean-up once a
    /// snapshot covers them.
    referenced: VecDeque<(u64, String)>,
}

impl Cursor {
    fn apply(&mut self, position: u64, id: String, base: u64, delta: &[f32]) {
        for (p, d) in self.params.iter_mut().zip(delta) {
            *p += d;
        }
        let staleness = (position - 1).saturating_sub(base);
        self.version = position;
        self.ids.insert(id);
        self.stats.version = position;
        self.stats.updates += 1;
        self.stats.staleness_sum += staleness;
        self.stats.staleness_max = self.stats.staleness_max.max(staleness);
    }
}

/// An entry read from the log, with its delta.
enum Folded {
    Update {
        id: String,
        nonce: String,
        base: u64,
        inline: bool,
        delta: Vec<f32>,
    },
    Seal(Head),
    /// Its delta object was already cleaned up: a snapshot covers it.
    Gone,
}

pub struct S3Store {
    objects: Objects,
    root: String,
    chunk_values: usize,
    cursor: Mutex<Option<Cursor>>,
}

impl S3Store {
    /// Connects to `url` (`s3://bucket[/prefix]`) for the job `job`.
    pub async fn connect(
        url: &str,
        job: &str,
        chunk_values: usize,
        options: &S3Options,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        if !siren_crds::is_dns_name(job) {
            return Err(StoreError::Config(format!(
                "job name `{job}` is not a DNS-1123 name; it would not make a safe key prefix"
            )));
        }
        let (bucket, prefix) = siren_crds::parse_s3_url(url).ok_or_else(|| {
            StoreError::Config(format!(
                "`{url}` is not an S3 location (s3://bucket[/prefix])"
            ))
        })?;
        let objects = Objects::connect(&bucket, options, timeout).await?;
        objects.check_bucket().await?;
        let root = if prefix.is_empty() {
            format!("{job}/")
        } else {
            format!("{prefix}/{job}/")
        };
        Ok(Self {
            objects,
            root,
            chunk_values: chunk_values.max(1),
            cursor: Mutex::new(None),
        })
    }

    fn current_key(&self) -> String {
        format!("{}current", self.root)
    }

    fn log_prefix(&self, generation: &str) -> String {
        format!("{}gen/{generation}/log/", self.root)
    }

    fn log_key(&self, generation: &str, position: u64) -> String {
        format!("{}{position:020}", self.log_prefix(generation))
    }

    fn snapshot_prefix(&self, generation: &str) -> String {
        format!("{}gen/{generation}/snap/", self.root)
    }

    fn snapshot_key(&self, generation: &str, position: u64) -> String {
        format!("{}{position:020}", self.snapshot_prefix(generation))
    }

    /// Names the newest snapshot of a generation (a hint: a racing writer may leave an older one).
    fn snapshot_hint_key(&self, generation: &str) -> String {
        format!("{}gen/{generation}/newest-snapshot", self.root)
    }

    async fn snapshot_hint(&self, generation: &str) -> Result<Option<u64>, StoreError> {
        let body = self
            .objects
            .get(&self.snapshot_hint_key(generation))
            .await?;
        Ok(body.and_then(|body| std::str::from_utf8(&body).ok()?.trim().parse().ok()))
    }

    async fn write_snapshot_hint(&self, generation: &str, position: u64) -> Result<(), StoreError> {
        self.objects
            .put(
                &self.snapshot_hint_key(generation),
                position.to_string().into_bytes(),
            )
            .await
    }

    fn delta_key(&self, generation: &str, nonce: &str) -> String {
        format!("{}gen/{generation}/delta/{nonce}", self.root)
    }

    /// Outside every generation: initialize and restore leave the dataset in place.
    fn data_key(&self, name: &str) -> String {
        format!("{}data/{name}", self.root)
    }

    fn checkpoint_prefix(&self) -> String {
        format!("{}ckpt/", self.root)
    }

    async fn read_head(&self) -> Result<Head, StoreError> {
        let body = self
            .objects
            .get(&self.current_key())
            .await?
            .ok_or(StoreError::NoModel)?;
        let head: Head = serde_json::from_slice(&body)
            .map_err(|e| StoreError::Corrupt(format!("the store's head is unreadable: {e}")))?;
        check_layout(&head)?;
        Ok(head)
    }

    fn encode_snapshot(&self, cursor: &Cursor) -> Vec<u8> {
        let state = SnapshotState {
            version: cursor.version,
            updates: cursor.stats.updates,
            staleness_sum: cursor.stats.staleness_sum,
            staleness_max: cursor.stats.staleness_max,
            ids: cursor.ids.iter().cloned().collect(),
        };
        frame(
            &state,
            &encode_model(cursor.head.layout(), &cursor.params, cursor.version),
        )
    }

    async fn read_snapshot(&self, head: &Head, key: &str) -> Result<Option<Cursor>, StoreError> {
        let Some(body) = self.objects.get(key).await? else {
            return Ok(None);
        };
        let (state, blob): (SnapshotState, _) = unframe(&body, key)?;
        let params = decode_model(blob, head.layout(), state.version)?;
        Ok(Some(Cursor {
            head: head.clone(),
            version: state.version,
            params,
            ids: state.ids.into_iter().collect(),
            stats: StoreStats {
                version: state.version,
                updates: state.updates,
                staleness_sum: state.staleness_sum,
                staleness_max: state.staleness_max,
            },
            referenced: VecDeque::new(),
        }))
    }

    /// The newest snapshot of a generation. Snapshots are cleaned up behind newer ones, so one may
    /// vanish between the listing and the read: list again.
    async fn load_generation(&self, head: &Head) -> Result<Cursor, StoreError> {
        if let Some(position) = self.snapshot_hint(&head.generation).await?
            && let Some(cursor) = self
                .read_snapshot(head, &self.snapshot_key(&head.generation, position))
                .await?
        {
            return Ok(cursor);
        }
        self.listed_snapshot(head).await
    }

    /// The newest snapshot by listing, which (unlike the hint) cannot lag behind.
    async fn listed_snapshot(&self, head: &Head) -> Result<Cursor, StoreError> {
        for _ in 0..5 {
            let keys = self
                .objects
                .list(&self.snapshot_prefix(&head.generation), None)
                .await?;
            let Some(newest) = keys.last() else {
                return Err(StoreError::Corrupt(format!(
                    "generation {} has no snapshot",
                    head.generation
                )));
            };
            if let Some(cursor) = self.read_snapshot(head, newest).await? {
                return Ok(cursor);
            }
        }
        Err(StoreError::Unavailable(
            "snapshots kept disappearing while being read".into(),
        ))
    }

    async fn load(&self) -> Result<Cursor, StoreError> {
        let head = self.read_head().await?;
        self.load_generation(&head).await
    }

    async fn fetch_entry(
        &self,
        generation: &str,
        key: String,
        layout: Layout,
    ) -> Result<Option<Folded>, StoreError> {
        let Some(body) = self.objects.get(&key).await? else {
            return Ok(None);
        };
        let (entry, blob): (Entry, _) = unframe(&body, &key)?;
        match entry {
            Entry::Seal { next } => {
                check_layout(&next)?;
                Ok(Some(Folded::Seal(next)))
            }
            Entry::Update {
                id,
                nonce,
                base,
                inline,
            } => {
                let delta = if inline {
                    decode_model(blob, layout, base)?
                } else {
                    match self
                        .objects
                        .get(&self.delta_key(generation, &nonce))
                        .await?
                    {
                        Some(blob) => decode_model(&blob, layout, base)?,
                        None => return Ok(Some(Folded::Gone)),
                    }
                };
                Ok(Some(Folded::Update {
                    id,
                    nonce,
                    base,
                    inline,
                    delta,
                }))
            }
        }
    }

    /// Reads the log past the cursor and applies it, following seals into newer generations.
    /// Returns the `(position, id, nonce)` of every update of the final generation it applied.
    ///
    /// Entries are found by reading the next positions, one first (a client that is up to date
    /// pays one request) and then a window at a time; listing is avoided because it costs a
    /// server time in proportion to the whole bucket. A client that is behind reads the newest
    /// snapshot when it is past the entries in hand, instead of every entry.
    async fn fold(&self, cursor: &mut Cursor) -> Result<Vec<(u64, String, String)>, StoreError> {
        let mut applied = Vec::new();
        let mut window = 1;
        let mut hint_read = false;
        loop {
            let generation = cursor.head.generation.clone();
            let layout = cursor.head.layout();
            let first = cursor.version + 1;
            let fetched: Vec<Option<Folded>> = futures::stream::iter(first..first + window)
                .map(|position| {
                    self.fetch_entry(&generation, self.log_key(&generation, position), layout)
                })
                .buffered(window as usize)
                .try_collect()
                .await?;
            let found = fetched.iter().take_while(|entry| entry.is_some()).count() as u64;
            // Behind by at least one: the newest snapshot may save reading many entries.
            if found > 0 && !hint_read {
                hint_read = true;
                if let Some(position) = self.snapshot_hint(&generation).await?
                    && position > cursor.version + found
                {
                    let key = self.snapshot_key(&generation, position);
                    if let Some(snapshot) = self.read_snapshot(&cursor.head, &key).await? {
                        *cursor = snapshot;
                        window = 1;
                        continue;
                    }
                }
            }
            // A seal, or a delta already cleaned up, sends the fold to another starting point.
            let mut moved = false;
            for folded in fetched.into_iter().map_while(|entry| entry) {
                match folded {
                    Folded::Update {
                        id,
                        nonce,
                        base,
                        inline,
                        delta,
                    } => {
                        let position = cursor.version + 1;
                        if delta.len() != cursor.params.len() {
                            return Err(StoreError::Corrupt(format!(
                                "update at position {position} has {} values, the model {}",
                                delta.len(),
                                cursor.params.len()
                            )));
                        }
                        cursor.apply(position, id.clone(), base, &delta);
                        if !inline {
                            cursor.referenced.push_back((position, nonce.clone()));
                        }
                        applied.push((position, id, nonce));
                    }
                    Folded::Seal(next) => {
                        if next.generation == generation {
                            return Err(StoreError::Corrupt(format!(
                                "generation {generation} is sealed into itself"
                            )));
                        }
                        *cursor = self.load_generation(&next).await?;
                        applied.clear();
                        moved = true;
                        break;
                    }
                    Folded::Gone => {
                        // The hint may lag; only a listed snapshot past the gone delta will do.
                        let missing = cursor.version + 1;
                        let snapshot = self.listed_snapshot(&cursor.head.clone()).await?;
                        if snapshot.version < missing {
                            return Err(StoreError::Corrupt(format!(
                                "the delta at position {missing} is gone and no snapshot covers it"
                            )));
                        }
                        *cursor = snapshot;
                        moved = true;
                        break;
                    }
                }
            }
            if moved {
                window = 1;
            } else if found < window {
                return Ok(applied);
            } else {
                window = WINDOW;
            }
        }
    }

    async fn loaded<'a>(&self, slot: &'a mut Option<Cursor>) -> Result<&'a mut Cursor, StoreError> {
        if slot.is_none() {
            *slot = Some(self.load().await?);
        }
        slot.as_mut().ok_or(StoreError::NoModel)
    }

    /// The cursor, loaded and folded to the end of the log.
    async fn caught_up<'a>(
        &self,
        slot: &'a mut Option<Cursor>,
    ) -> Result<&'a mut Cursor, StoreError> {
        let cursor = self.loaded(slot).await?;
        if let Err(error) = self.fold(cursor).await {
            // Only a network failure leaves the cursor worth keeping.
            if !error.is_retryable() {
                *slot = None;
            }
            return Err(error);
        }
        slot.as_mut().ok_or(StoreError::NoModel)
    }

    /// Claims the next position for `entry`, folding whatever beat it. A seal is claimed the
    /// same way. Returns the position won.
    async fn claim(&self, cursor: &mut Cursor, body: &[u8]) -> Result<u64, StoreError> {
        for _ in 0..CLAIM_ATTEMPTS {
            let position = cursor.version + 1;
            let key = self.log_key(&cursor.head.generation, position);
            if self.objects.create(&key, body.to_vec()).await? {
                return Ok(position);
            }
            // The SDK retries a write whose answer was lost: the entry in the way may be ours.
            if self.objects.get(&key).await?.as_deref() == Some(body) {
                return Ok(position);
            }
            self.fold(cursor).await?;
        }
        Err(StoreError::Unavailable(format!(
            "lost {CLAIM_ATTEMPTS} log positions in a row"
        )))
    }

    /// After this client claimed a snapshot position: write the model there, and clean up what
    /// the snapshot makes unnecessary (older snapshots, delta objects it covers).
    async fn write_snapshot(&self, cursor: &mut Cursor) -> Result<(), StoreError> {
        let generation = cursor.head.generation.clone();
        self.objects
            .put(
                &self.snapshot_key(&generation, cursor.version),
                self.encode_snapshot(cursor),
            )
            .await?;
        self.write_snapshot_hint(&generation, cursor.version)
            .await?;
        let mut garbage = Vec::new();
        if let Some(old) = cursor.version.checked_sub(SNAPSHOT_EVERY * 3)
            && old > 0
        {
            garbage.push(self.snapshot_key(&generation, old));
        }
        let covered = cursor.version.saturating_sub(SNAPSHOT_EVERY);
        while cursor
            .referenced
            .front()
            .is_some_and(|(position, _)| *position <= covered)
        {
            if let Some((_, nonce)) = cursor.referenced.pop_front() {
                garbage.push(self.delta_key(&generation, &nonce));
            }
        }
        if !garbage.is_empty() {
            self.objects.delete(&garbage).await?;
        }
        Ok(())
    }

    /// Starts a generation at `state` with the model `params`, seals the one in use (if any),
    /// and makes the new one current.
    async fn switch_generation(
        &self,
        slot: &mut Option<Cursor>,
        params: Vec<f32>,
        version: u64,
    ) -> Result<(), StoreError> {
        let head = Head {
            generation: new_token(),
            params: params.len(),
            chunk_values: self.chunk_values,
        };
        let mut fresh = Cursor {
            head: head.clone(),
            version,
            params,
            ids: HashSet::new(),
            stats: StoreStats {
                version,
                ..StoreStats::default()
            },
            referenced: VecDeque::new(),
        };
        self.objects
            .put(
                &self.snapshot_key(&head.generation, version),
                self.encode_snapshot(&fresh),
            )
            .await?;
        self.write_snapshot_hint(&head.generation, version).await?;
        // Seal the generation the store names, which a cached cursor may not be on.
        slot.take();
        let old = match self.load().await {
            Ok(cursor) => Some(cursor),
            // Nothing (readable) to seal: a first initialisation, or a store that lost it.
            Err(StoreError::NoModel | StoreError::Corrupt(_)) => None,
            Err(error) => return Err(error),
        };
        if let Some(mut old) = old {
            let seal = frame(&Entry::Seal { next: head.clone() }, &[]);
            match self.claim(&mut old, &seal).await {
                // The old generation is gone already: nothing is left to seal.
                Ok(_) | Err(StoreError::NoModel) => {}
                Err(error) => return Err(error),
            }
        }
        let current = serde_json::to_vec(&head).unwrap_or_default();
        self.objects.put(&self.current_key(), current).await?;
        fresh.referenced.clear();
        *slot = Some(fresh);
        Ok(())
    }

    async fn checkpoint_keys(&self) -> Result<Vec<(u32, u64, String)>, StoreError> {
        let keys = self.objects.list(&self.checkpoint_prefix(), None).await?;
        Ok(keys
            .into_iter()
            .filter_map(|key| {
                let name = key.rsplit('/').next()?;
                let (epoch, version) = name.split_once('-')?;
                Some((epoch.parse().ok()?, version.parse().ok()?, key))
            })
            .collect())
    }
}

#[async_trait]
impl ParameterStore for S3Store {
    async fn initialize(&self, params: &[f32]) -> Result<(), StoreError> {
        let mut slot = self.cursor.lock().await;
        self.switch_generation(&mut slot, params.to_vec(), 0)
            .await?;
        drop(slot);
        // Earlier runs' checkpoints go; their generations stay until `clear`, because a
        // straggling client must still be able to read its way to the seal.
        self.objects.delete_prefix(&self.checkpoint_prefix()).await
    }

    async fn pull(&self) -> Result<Snapshot, StoreError> {
        let mut slot = self.cursor.lock().await;
        // A cached model must never outlive the store's: check the head is still there.
        let current = self.current_key();
        let (folded, head) = futures::join!(self.caught_up(&mut slot), self.objects.get(&current));
        let Some(head) = head? else {
            *slot = None;
            return Err(StoreError::NoModel);
        };
        folded?;
        let named: Head = serde_json::from_slice(&head)
            .map_err(|e| StoreError::Corrupt(format!("the store's head is unreadable: {e}")))?;
        let cursor = match slot.as_mut() {
            Some(cursor) if cursor.head.generation == named.generation => cursor,
            // Re-initialised (or cleared and re-created) behind this client's back, without a
            // seal it could follow.
            _ => {
                *slot = None;
                self.caught_up(&mut slot).await?
            }
        };
        Ok(Snapshot {
            version: cursor.version,
            params: cursor.params.clone(),
        })
    }

    async fn push(&self, update: &Update) -> Result<PushReceipt, StoreError> {
        let mut slot = self.cursor.lock().await;
        let cursor = self.loaded(&mut slot).await?;
        if update.delta.len() != cursor.params.len() {
            return Err(StoreError::LengthMismatch {
                expected: cursor.params.len(),
                found: update.delta.len(),
            });
        }
        if update.base_version > cursor.version {
            self.fold(cursor).await?;
            if update.base_version > cursor.version {
                return Err(StoreError::FutureVersion {
                    base: update.base_version,
                    current: cursor.version,
                });
            }
        }
        let id = format!("{}#{}", update.task_id, update.seq);
        let duplicate = |cursor: &Cursor| PushReceipt {
            version: cursor.version,
            staleness: cursor.version.saturating_sub(update.base_version),
            duplicate: true,
        };
        if cursor.ids.contains(&id) {
            return Ok(duplicate(cursor));
        }
        let nonce = new_token();
        let layout = cursor.head.layout();
        let blob = encode_model(layout, &update.delta, update.base_version);
        let inline = blob.len() <= INLINE_DELTA_BYTES;
        let entry = Entry::Update {
            id: id.clone(),
            nonce: nonce.clone(),
            base: update.base_version,
            inline,
        };
        let body = if inline {
            frame(&entry, &blob)
        } else {
            self.objects
                .put(&self.delta_key(&cursor.head.generation, &nonce), blob)
                .await?;
            frame(&entry, &[])
        };
        for _ in 0..CLAIM_ATTEMPTS {
            let position = cursor.version + 1;
            let key = self.log_key(&cursor.head.generation, position);
            if self.objects.create(&key, body.clone()).await? {
                cursor.apply(position, id, update.base_version, &update.delta);
                if !inline {
                    cursor.referenced.push_back((position, nonce));
                }
                if position % SNAPSHOT_EVERY == 0 {
                    // The update is in; a missing snapshot only makes later reads longer.
                    if let Err(error) = self.write_snapshot(cursor).await {
                        tracing::warn!(%error, position, "could not write a snapshot");
                    }
                }
                return Ok(PushReceipt {
                    version: position,
                    staleness: (position - 1).saturating_sub(update.base_version),
                    duplicate: false,
                });
            }
            let generation = cursor.head.generation.clone();
            let folded = self.fold(cursor).await?;
            if let Some((position, _, won)) = folded.iter().find(|(_, other, _)| *other == id) {
                // An earlier attempt of this very request (the SDK retries) or of the task.
                let ours = *won == nonce;
                if !inline && !ours {
                    let key = self.delta_key(&generation, &nonce);
                    let _ = self.objects.delete(&[key]).await;
                }
                return Ok(PushReceipt {
                    version: *position,
                    staleness: (position - 1).saturating_sub(update.base_version),
                    duplicate: !ours,
                });
            }
            if cursor.ids.contains(&id) {
                return Ok(duplicate(cursor));
            }
            if cursor.head.generation != generation && cursor.head.params != update.delta.len() {
                return Err(StoreError::LengthMismatch {
                    expected: cursor.head.params,
                    found: update.delta.len(),
                });
            }
        }
        Err(StoreError::Unavailable(format!(
            "update {id} lost {CLAIM_ATTEMPTS} log positions in a row"
        )))
    }

    async fn checkpoint(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let mut slot = self.cursor.lock().await;
        let cursor = self.caught_up(&mut slot).await?;
        let header = CheckpointHeader {
            epoch,
            version: cursor.version,
            params: cursor.head.params,
            chunk_values: cursor.head.chunk_values,
        };
        let body = frame(
            &header,
            &encode_model(cursor.head.layout(), &cursor.params, cursor.version),
        );
        let key = format!(
            "{}{epoch:010}-{:020}",
            self.checkpoint_prefix(),
            cursor.version
        );
        self.objects.put(&key, body).await?;
        let mut saved = self.checkpoint_keys().await?;
        saved.sort();
        // Checkpoints of this epoch or later belong to a run that was rolled back past them.
        let (earlier, later): (Vec<_>, Vec<_>) = saved
            .into_iter()
            .filter(|(_, _, name)| *name != key)
            .partition(|(other, _, _)| *other < epoch);
        let stale: Vec<String> = later
            .into_iter()
            .chain(
                earlier
                    .into_iter()
                    .rev()
                    .skip(CHECKPOINTS_KEPT.saturating_sub(1)),
            )
            .map(|(_, _, name)| name)
            .collect();
        if !stale.is_empty() {
            self.objects.delete(&stale).await?;
        }
        Ok(CheckpointInfo {
            epoch,
            version: header.version,
        })
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointInfo>, StoreError> {
        Ok(self
            .checkpoint_keys()
            .await?
            .into_iter()
            .max()
            .map(|(epoch, version, _)| CheckpointInfo { epoch, version }))
    }

    async fn restore(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let Some((_, _, key)) = self
            .checkpoint_keys()
            .await?
            .into_iter()
            .filter(|(other, _, _)| *other == epoch)
            .max()
        else {
            return Err(StoreError::NoCheckpoint(epoch));
        };
        let body = self
            .objects
            .get(&key)
            .await?
            .ok_or(StoreError::NoCheckpoint(epoch))?;
        let (header, blob): (CheckpointHeader, _) = unframe(&body, &key)?;
        let head = Head {
            generation: String::new(),
            params: header.params,
            chunk_values: header.chunk_values,
        };
        check_layout(&head)?;
        let params = decode_model(blob, head.layout(), header.version)?;
        let mut slot = self.cursor.lock().await;
        self.switch_generation(&mut slot, params, header.version)
            .await?;
        Ok(CheckpointInfo {
            epoch,
            version: header.version,
        })
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let mut slot = self.cursor.lock().await;
        let cursor = self.caught_up(&mut slot).await?;
        Ok(cursor.stats)
    }

    async fn clear(&self) -> Result<(), StoreError> {
        let mut slot = self.cursor.lock().await;
        *slot = None;
        self.objects.delete_prefix(&self.root).await
    }

    async fn put_data(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.objects.put(&self.data_key(name), bytes.to_vec()).await
    }

    async fn get_data(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.objects.get(&self.data_key(name)).await
    }
}
