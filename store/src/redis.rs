//! The Redis parameter store, for functions running in a cluster.
//!
//! Layout under the job's prefix `siren:<job>:`: `version`; `meta` (parameter count, chunk size and
//! staleness counters); `chunk:<i>` blobs of at most `chunk_size` values, each stamped with the model
//! version; `applied`, the ids of applied updates; `ckpt:<epoch>:...` checkpoints.
//!
//! Redis cannot add float vectors, so a push is optimistic: the client adds the delta to the model
//! at the version it last saw, stages the new chunks under temporary keys (pipelined, so no single
//! command moves the whole model), and a short Lua script commits them only if the version is still
//! the one it saw: it checks, renames the staged chunks into place, bumps the version and records the
//! update id and its staleness, all or nothing. On a conflict the client pulls and tries again. A
//! client remembers the model it last saw, so a lone writer never reads before it writes.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionInfo, IntoConnectionInfo, Script};

use super::blob::{ChunkArg, Layout, decode_chunk};
use super::{
    CheckpointInfo, ParameterStore, PushReceipt, Snapshot, StoreError, StoreStats, Update, redact,
};

use crate::{CHECKPOINTS_KEPT, StoreCredentials};
/// Staged chunks of a push that never committed (its client died) disappear after this.
const STAGE_TTL_MS: u64 = 120_000;
const CONFLICT_RETRIES: usize = 1_000;

const COMMIT: &str = r#"
-- KEYS: version, applied, meta, generation, chunk keys (n), staged keys (n)
-- ARGV: expected version, update id, base version, n, expected generation
local n = tonumber(ARGV[4])
local function drop_staged()
  for i = 1, n do redis.call('DEL', KEYS[4 + n + i]) end
end
local current = redis.call('GET', KEYS[1])
if not current then drop_staged() return {-1, 0} end
current = tonumber(current)
if redis.call('SISMEMBER', KEYS[2], ARGV[2]) == 1 then drop_staged() return {-2, current} end
if current ~= tonumber(ARGV[1]) or redis.call('GET', KEYS[4]) ~= ARGV[5] then
  drop_staged()
  return {-3, current}
end
for i = 1, n do
  if redis.call('EXISTS', KEYS[4 + n + i]) == 0 then drop_staged() return {-4, current} end
end
for i = 1, n do
  redis.call('RENAME', KEYS[4 + n + i], KEYS[4 + i])
  redis.call('PERSIST', KEYS[4 + i])
end
local stale = current - tonumber(ARGV[3])
redis.call('SET', KEYS[1], current + 1)
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('HINCRBY', KEYS[3], 'updates', 1)
redis.call('HINCRBY', KEYS[3], 'staleness_sum', stale)
if stale > tonumber(redis.call('HGET', KEYS[3], 'staleness_max') or '0') then
  redis.call('HSET', KEYS[3], 'staleness_max', stale)
end
return {current + 1, stale}
"#;

const CHECKPOINT: &str = r#"
-- KEYS: version, checkpoint index, checkpoint version, chunk keys (n), checkpoint chunk keys (n)
-- ARGV: epoch, n
local n = tonumber(ARGV[2])
local current = redis.call('GET', KEYS[1])
if not current then return -1 end
for i = 1, n do redis.call('COPY', KEYS[3 + i], KEYS[3 + n + i], 'REPLACE') end
redis.call('SET', KEYS[3], current)
redis.call('ZADD', KEYS[2], tonumber(ARGV[1]), ARGV[1])
return tonumber(current)
"#;

const RESTORE: &str = r#"
-- KEYS: version, meta, checkpoint version, generation, applied, chunk keys (n), checkpoint chunk keys (n)
-- ARGV: n, new generation
local n = tonumber(ARGV[1])
local saved = redis.call('GET', KEYS[3])
if not saved then return -1 end
for i = 1, n do
  if redis.call('EXISTS', KEYS[5 + n + i]) == 0 then return -2 end
end
for i = 1, n do redis.call('COPY', KEYS[5 + n + i], KEYS[5 + i], 'REPLACE') end
redis.call('SET', KEYS[1], saved)
-- A new generation: versions after a restore repeat numbers with different models, and epochs
-- after it re-run with the same update ids.
redis.call('SET', KEYS[4], ARGV[2])
redis.call('DEL', KEYS[5])
redis.call('HSET', KEYS[2], 'updates', 0, 'staleness_sum', 0, 'staleness_max', 0)
return tonumber(saved)
"#;

/// Largest model a store will load (2^30 values, 4 GiB), so a damaged parameter count cannot make a
/// client allocate without bound.
const MAX_PARAMS: usize = 1 << 30;

/// A model version is only identified by its number within one generation: `initialize` and
/// `restore` start a new generation, after which numbers repeat with other parameters.
struct Seen {
    generation: String,
    snapshot: Snapshot,
}

pub struct RedisStore {
    connection: MultiplexedConnection,
    prefix: String,
    chunk_values: usize,
    timeout: Duration,
    /// The model this client last pulled or pushed, with its generation; a push built on it needs
    /// no read.
    last_seen: Mutex<Option<Seen>>,
    layout: Mutex<Option<Layout>>,
    commit: Script,
    checkpoint: Script,
    restore: Script,
}

/// Removes the URL's credentials from a message, wherever a library may have echoed them.
fn scrub(message: &str, url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let credentials = rest.rsplit_once('@').map(|(userinfo, _)| userinfo);
    match credentials {
        Some(userinfo) if !userinfo.is_empty() => {
            let mut clean = message.replace(userinfo, "***");
            if let Some((_, password)) = userinfo.split_once(':')
                && !password.is_empty()
            {
                clean = clean.replace(password, "***");
            }
            clean
        }
        _ => message.to_string(),
    }
}

fn with_credentials(info: ConnectionInfo, credentials: &StoreCredentials) -> ConnectionInfo {
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &credentials.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &credentials.password {
        settings = settings.set_password(password);
    }
    info.set_redis_settings(settings)
}

fn new_generation() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn unavailable(error: redis::RedisError) -> StoreError {
    // Redis errors name the failing command or I/O problem, never the URL or password.
    StoreError::Unavailable(format!("redis: {error}"))
}

impl RedisStore {
    /// Connects to `url` (`redis://[user:password@]host:port[/db]`) for the job `job`.
    pub async fn connect(
        url: &str,
        job: &str,
        chunk_values: usize,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        Self::connect_with(
            url,
            job,
            chunk_values,
            timeout,
            &StoreCredentials::default(),
        )
        .await
    }

    /// Connects as `credentials`' user (over the URL's, if it names one), trusting their CA for a
    /// `rediss://` server besides the system's roots.
    pub async fn connect_with(
        url: &str,
        job: &str,
        chunk_values: usize,
        timeout: Duration,
        credentials: &StoreCredentials,
    ) -> Result<Self, StoreError> {
        if !siren_crds::is_dns_name(job) {
            return Err(StoreError::Config(format!(
                "job name `{job}` is not a DNS-1123 name; it would not make a safe key prefix"
            )));
        }
        // Redis errors name the command or the I/O problem; scrubbing guards against a library
        // that one day echoes what it was given.
        let clean = |message: String| {
            credentials
                .secrets()
                .fold(scrub(&message, url), |clean, secret| {
                    clean.replace(secret, "***")
                })
        };
        let invalid = |e: redis::RedisError| {
            StoreError::Unavailable(clean(format!("invalid Redis URL {}: {e}", redact(url))))
        };
        let info = with_credentials(url.into_connection_info().map_err(invalid)?, credentials);
        let client = if url.starts_with("rediss://") {
            // rustls needs one process-wide crypto provider; another component may have set it.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: credentials.ca_pem.clone(),
            };
            redis::Client::build_with_tls(info, certificates).map_err(invalid)?
        } else {
            redis::Client::open(info).map_err(invalid)?
        };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        let connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| {
                StoreError::Unavailable(clean(format!(
                    "cannot reach Redis at {}: {e}",
                    redact(url)
                )))
            })?;
        let commit = Script::new(COMMIT);
        let mut loader = connection.clone();
        tokio::time::timeout(timeout, commit.load_async(&mut loader))
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("Redis at {} did not answer", redact(url)))
            })?
            .map_err(|e| {
                StoreError::Unavailable(clean(format!("Redis at {}: {e}", redact(url))))
            })?;
        Ok(Self {
            connection,
            prefix: format!("siren:{job}:"),
            chunk_values: chunk_values.max(1),
            timeout,
            last_seen: Mutex::new(None),
            layout: Mutex::new(None),
            commit,
            checkpoint: Script::new(CHECKPOINT),
            restore: Script::new(RESTORE),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn chunk_keys(&self, layout: Layout, part: &str) -> Vec<String> {
        (0..layout.chunks())
            .map(|i| self.key(&format!("{part}{i}")))
            .collect()
    }

    fn connection(&self) -> MultiplexedConnection {
        self.connection.clone()
    }

    async fn bounded<T>(
        &self,
        operation: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.timeout, operation).await {
            Ok(result) => result.map_err(unavailable),
            Err(_) => Err(StoreError::Unavailable(format!(
                "redis did not answer within {:?}",
                self.timeout
            ))),
        }
    }

    fn remember(&self, seen: Option<Seen>) {
        *self.last_seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
    }

    fn remembers(&self, generation: &str, version: u64) -> bool {
        self.last_seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .is_some_and(|seen| seen.generation == generation && seen.snapshot.version == version)
    }

    async fn layout(&self) -> Result<Layout, StoreError> {
        if let Some(layout) = *self.layout.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(layout);
        }
        let (params, chunk_values): (Option<usize>, Option<usize>) = self
            .bounded(
                redis::cmd("HMGET")
                    .arg(self.key("meta"))
                    .arg("params")
                    .arg("chunk_values")
                    .query_async(&mut self.connection()),
            )
            .await?;
        let (Some(params), Some(chunk_values)) = (params, chunk_values) else {
            return Err(StoreError::NoModel);
        };
        if chunk_values == 0 || params > MAX_PARAMS {
            return Err(StoreError::Corrupt(format!(
                "stored layout of {params} parameters in chunks of {chunk_values} is not plausible"
            )));
        }
        let layout = Layout {
            params,
            chunk_values,
        };
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(layout);
        Ok(layout)
    }

    fn encode<'a>(&self, layout: Layout, params: &'a [f32], version: u64) -> Vec<ChunkArg<'a>> {
        params
            .chunks(layout.chunk_values)
            .enumerate()
            .map(|(i, values)| ChunkArg {
                header: layout.header(i, version),
                values,
            })
            .collect()
    }

    fn data_key(&self, name: &str) -> String {
        self.key(&format!("data:{name}"))
    }

    /// Removes every key under the job's prefix; the data area too unless `keep_data`.
    async fn delete_all(&self, keep_data: bool) -> Result<(), StoreError> {
        let data_prefix = self.data_key("");
        let mut connection = self.connection();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = self
                .bounded(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(format!("{}*", self.prefix))
                        .arg("COUNT")
                        .arg(1000)
                        .query_async(&mut connection),
                )
                .await?;
            let keys: Vec<String> = keys
                .into_iter()
                .filter(|key| !(keep_data && key.starts_with(&data_prefix)))
                .collect();
            if !keys.is_empty() {
                self.bounded(
                    redis::cmd("UNLINK")
                        .arg(&keys)
                        .query_async::<()>(&mut connection),
                )
                .await?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl ParameterStore for RedisStore {
    async fn initialize(&self, params: &[f32]) -> Result<(), StoreError> {
        self.delete_all(true).await?;
        let layout = Layout {
            params: params.len(),
            chunk_values: self.chunk_values,
        };
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (key, blob) in self
            .chunk_keys(layout, "chunk:")
            .iter()
            .zip(self.encode(layout, params, 0))
        {
            pipe.cmd("SET").arg(key).arg(blob).ignore();
        }
        pipe.cmd("HSET")
            .arg(self.key("meta"))
            .arg("params")
            .arg(layout.params)
            .arg("chunk_values")
            .arg(layout.chunk_values)
            .arg("updates")
            .arg(0)
            .arg("staleness_sum")
            .arg(0)
            .arg("staleness_max")
            .arg(0)
            .ignore();
        pipe.cmd("SET").arg(self.key("version")).arg(0).ignore();
        let generation = new_generation();
        pipe.cmd("SET")
            .arg(self.key("generation"))
            .arg(&generation)
            .ignore();
        self.bounded(pipe.query_async::<()>(&mut self.connection()))
            .await?;
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = Some(layout);
        self.remember(Some(Seen {
            generation,
            snapshot: Snapshot {
                version: 0,
                params: params.to_vec(),
            },
        }));
        Ok(())
    }

    async fn pull(&self) -> Result<Snapshot, StoreError> {
        let layout = self.layout().await?;
        let keys = self.chunk_keys(layout, "chunk:");
        let (version, generation, blobs): (Option<u64>, Option<String>, Vec<Option<Vec<u8>>>) =
            self.bounded(
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(self.key("version"))
                    .cmd("GET")
                    .arg(self.key("generation"))
                    .cmd("MGET")
                    .arg(&keys)
                    .query_async(&mut self.connection()),
            )
            .await?;
        let (Some(version), Some(generation)) = (version, generation) else {
            return Err(StoreError::NoModel);
        };
        let mut params = Vec::with_capacity(layout.params);
        for (i, blob) in blobs.iter().enumerate() {
            let blob = blob.as_deref().ok_or_else(|| {
                StoreError::Corrupt(format!("chunk {i} of version {version} is missing"))
            })?;
            decode_chunk(blob, layout.header(i, version), &mut params)?;
        }
        let snapshot = Snapshot { version, params };
        // After this client's own push the cache already holds this model: no copy needed.
        if !self.remembers(&generation, version) {
            self.remember(Some(Seen {
                generation,
                snapshot: snapshot.clone(),
            }));
        }
        Ok(snapshot)
    }

    async fn push(&self, update: &Update) -> Result<PushReceipt, StoreError> {
        let layout = self.layout().await?;
        if update.delta.len() != layout.params {
            return Err(StoreError::LengthMismatch {
                expected: layout.params,
                found: update.delta.len(),
            });
        }
        let chunk_keys = self.chunk_keys(layout, "chunk:");
        let id = format!("{}#{}", update.task_id, update.seq);
        let mut refreshed = false;
        for _ in 0..CONFLICT_RETRIES {
            // The new model is the last one this client saw plus the delta, computed under the
            // cache's lock so the cached copy is read in place.
            let applied = self
                .last_seen
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .map(|seen| {
                    let params: Vec<f32> = seen
                        .snapshot
                        .params
                        .iter()
                        .zip(&update.delta)
                        .map(|(p, d)| p + d)
                        .collect();
                    (seen.generation.clone(), seen.snapshot.version, params)
                });
            let Some((generation, base_version, params)) = applied else {
                self.pull().await?;
                refreshed = true;
                continue;
            };
            if update.base_version > base_version {
                // The cache may only be behind (another task of this client pulled earlier):
                // only the server's own version can say the update is from the future.
                if refreshed {
                    return Err(StoreError::FutureVersion {
                        base: update.base_version,
                        current: base_version,
                    });
                }
                self.pull().await?;
                refreshed = true;
                continue;
            }
            let token = format!("{:016x}", rand::random::<u64>());
            let staged = self.chunk_keys(layout, &format!("stage:{token}:"));
            let mut pipe = redis::pipe();
            for (key, blob) in staged
                .iter()
                .zip(self.encode(layout, &params, base_version + 1))
            {
                pipe.cmd("SET")
                    .arg(key)
                    .arg(blob)
                    .arg("PX")
                    .arg(STAGE_TTL_MS)
                    .ignore();
            }
            // Staging and commit travel in one pipeline: one round trip per push.
            pipe.cmd("EVALSHA")
                .arg(self.commit.get_hash())
                .arg(4 + 2 * chunk_keys.len())
                .arg(self.key("version"))
                .arg(self.key("applied"))
                .arg(self.key("meta"))
                .arg(self.key("generation"))
                .arg(&chunk_keys)
                .arg(&staged)
                .arg(base_version)
                .arg(&id)
                .arg(update.base_version)
                .arg(chunk_keys.len())
                .arg(&generation);
            let outcome = tokio::time::timeout(
                self.timeout,
                pipe.query_async::<((i64, i64),)>(&mut self.connection()),
            )
            .await
            .map_err(|_| {
                StoreError::Unavailable(format!("redis did not answer within {:?}", self.timeout))
            })?;
            let (code, value) = match outcome {
                Ok(((code, value),)) => (code, value),
                Err(error)
                    if error.kind()
                        == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    // A restarted server forgot the script; the staged chunks expire on their own.
                    self.bounded(self.commit.load_async(&mut self.connection()))
                        .await?;
                    continue;
                }
                Err(error) => return Err(unavailable(error)),
            };
            match code {
                -1 => return Err(StoreError::NoModel),
                -2 => {
                    return Ok(PushReceipt {
                        version: value as u64,
                        staleness: (value as u64).saturating_sub(update.base_version),
                        duplicate: true,
                    });
                }
                -3 | -4 => self.remember(None),
                version => {
                    self.remember(Some(Seen {
                        generation,
                        snapshot: Snapshot {
                            version: version as u64,
                            params,
                        },
                    }));
                    return Ok(PushReceipt {
                        version: version as u64,
                        staleness: value as u64,
                        duplicate: false,
                    });
                }
            }
        }
        Err(StoreError::Unavailable(format!(
            "update {id} lost {CONFLICT_RETRIES} races in a row"
        )))
    }

    async fn checkpoint(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let layout = self.layout().await?;
        let mut invocation = self.checkpoint.prepare_invoke();
        invocation
            .key(self.key("version"))
            .key(self.key("checkpoints"))
            .key(self.key(&format!("ckpt:{epoch}:version")))
            .key(self.chunk_keys(layout, "chunk:"))
            .key(self.chunk_keys(layout, &format!("ckpt:{epoch}:chunk:")))
            .arg(epoch)
            .arg(layout.chunks());
        let version: i64 = self
            .bounded(invocation.invoke_async(&mut self.connection()))
            .await?;
        if version < 0 {
            return Err(StoreError::NoModel);
        }
        let epochs: Vec<u32> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(self.key("checkpoints"))
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut self.connection()),
            )
            .await?;
        if epochs.len() > CHECKPOINTS_KEPT {
            for old in &epochs[..epochs.len() - CHECKPOINTS_KEPT] {
                let mut keys = self.chunk_keys(layout, &format!("ckpt:{old}:chunk:"));
                keys.push(self.key(&format!("ckpt:{old}:version")));
                let mut pipe = redis::pipe();
                pipe.cmd("UNLINK").arg(&keys).ignore();
                pipe.cmd("ZREM")
                    .arg(self.key("checkpoints"))
                    .arg(old)
                    .ignore();
                self.bounded(pipe.query_async::<()>(&mut self.connection()))
                    .await?;
            }
        }
        Ok(CheckpointInfo {
            epoch,
            version: version as u64,
        })
    }

    async fn latest_checkpoint(&self) -> Result<Option<CheckpointInfo>, StoreError> {
        let epochs: Vec<u32> = self
            .bounded(
                redis::cmd("ZRANGE")
                    .arg(self.key("checkpoints"))
                    .arg(-1)
                    .arg(-1)
                    .query_async(&mut self.connection()),
            )
            .await?;
        let Some(epoch) = epochs.first().copied() else {
            return Ok(None);
        };
        let version: Option<u64> = self
            .bounded(
                redis::cmd("GET")
                    .arg(self.key(&format!("ckpt:{epoch}:version")))
                    .query_async(&mut self.connection()),
            )
            .await?;
        Ok(version.map(|version| CheckpointInfo { epoch, version }))
    }

    async fn restore(&self, epoch: u32) -> Result<CheckpointInfo, StoreError> {
        let layout = self.layout().await?;
        let mut invocation = self.restore.prepare_invoke();
        invocation
            .key(self.key("version"))
            .key(self.key("meta"))
            .key(self.key(&format!("ckpt:{epoch}:version")))
            .key(self.key("generation"))
            .key(self.key("applied"))
            .key(self.chunk_keys(layout, "chunk:"))
            .key(self.chunk_keys(layout, &format!("ckpt:{epoch}:chunk:")))
            .arg(layout.chunks())
            .arg(new_generation());
        let version: i64 = self
            .bounded(invocation.invoke_async(&mut self.connection()))
            .await?;
        match version {
            -1 => Err(StoreError::NoCheckpoint(epoch)),
            -2 => Err(StoreError::Corrupt(format!(
                "checkpoint of epoch {epoch} lost chunks"
            ))),
            version => {
                self.remember(None);
                Ok(CheckpointInfo {
                    epoch,
                    version: version as u64,
                })
            }
        }
    }

    async fn stats(&self) -> Result<StoreStats, StoreError> {
        let (version, (updates, staleness_sum, staleness_max)): (
            Option<u64>,
            (Option<u64>, Option<u64>, Option<u64>),
        ) = self
            .bounded(
                redis::pipe()
                    .atomic()
                    .cmd("GET")
                    .arg(self.key("version"))
                    .cmd("HMGET")
                    .arg(self.key("meta"))
                    .arg("updates")
                    .arg("staleness_sum")
                    .arg("staleness_max")
                    .query_async(&mut self.connection()),
            )
            .await?;
        let version = version.ok_or(StoreError::NoModel)?;
        Ok(StoreStats {
            version,
            updates: updates.unwrap_or(0),
            staleness_sum: staleness_sum.unwrap_or(0),
            staleness_max: staleness_max.unwrap_or(0),
        })
    }

    async fn clear(&self) -> Result<(), StoreError> {
        self.delete_all(false).await?;
        *self.layout.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.remember(None);
        Ok(())
    }

    async fn put_data(&self, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
        self.bounded(
            redis::cmd("SET")
                .arg(self.data_key(name))
                .arg(bytes)
                .query_async::<()>(&mut self.connection()),
        )
        .await
    }

    async fn get_data(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.bounded(
            redis::cmd("GET")
                .arg(self.data_key(name))
                .query_async(&mut self.connection()),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_never_survive_redaction() {
        assert_eq!(
            redact("redis://user:pw@host:6379/0"),
            "redis://***@host:6379/0"
        );
        assert_eq!(redact("user:pw@host:6379"), "***@host:6379");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        let message = scrub("failed for user:pw and pw", "rediss://user:pw@host");
        assert!(!message.contains("pw"), "{message}");
        assert!(!scrub("bad pw", "user:pw@host").contains("pw"));
    }
}
