//! [`Queue`]: the shared handle to one queue's keys, and every operation that does not block.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use longhaul_core::JobId;
use redis::Value;

use crate::conn::{RedisConnection, Target};
use crate::entry::{Event, JobEntry};
use crate::error::NameKind;
use crate::reader::{Consumer, EventReader};
use crate::{KeySpace, QueueError, scripts};

/// Queue settings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// First part of every key (`<prefix>:{<queue>}:…`).
    pub prefix: String,
    /// The queue name; also the hash tag.
    pub queue: String,
    /// The workers' consumer group on the jobs stream.
    pub group: String,
    /// An entry idle longer than this is considered abandoned and may be reclaimed.
    pub lease: Duration,
    /// Deliveries after which a reclaimed entry is reported as stalled instead of handed out.
    pub max_deliveries: u64,
    /// Approximate length the events stream is trimmed to.
    pub events_maxlen: u64,
    /// Approximate length the dead-letter stream is trimmed to.
    pub dead_maxlen: u64,
    /// Upper bound on every Redis call (and on connecting).
    pub op_timeout: Duration,
    /// For `rediss://`: PEM certificate(s) of the CA(s) to trust instead of the system's roots
    /// (a private CA). `None`: the system's trust store.
    pub tls_ca_pem: Option<Vec<u8>>,
    /// Partitions producers split the queue into (`<queue>-0` … `<queue>-<n-1>`, a hash tag
    /// each; see [`Queue::route`]). 1: not split. Consumers serve one queue name each.
    pub partitions: u32,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            prefix: "longhaul".into(),
            queue: "triage".into(),
            group: "workers".into(),
            lease: Duration::from_secs(30),
            max_deliveries: 5,
            events_maxlen: 100_000,
            dead_maxlen: 10_000,
            op_timeout: Duration::from_secs(2),
            tls_ca_pem: None,
            partitions: 1,
        }
    }
}

/// An entry handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The stream entry id.
    pub id: String,
    /// The job.
    pub entry: JobEntry,
    /// How many times the entry has been delivered, this time included.
    pub deliveries: u64,
}

/// One delivery to finish in [`Queue::finish_batch`].
#[derive(Debug, Clone, Copy)]
pub struct Finish<'a> {
    /// The delivery.
    pub delivery: &'a Delivery,
    /// The lifecycle event to append, if any (none when acking a duplicate of a finished job).
    pub event: Option<&'a Event>,
    /// Whether to drop the job's presence key (if it still holds this delivery's attempt). False
    /// when the job lives on in another entry, e.g. a duplicate dropped while another attempt runs.
    pub release: bool,
}

/// What [`Queue::reclaim`] took over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reclaimed {
    /// Entries to run again (now owned by the reclaiming consumer).
    pub deliveries: Vec<Delivery>,
    /// Entries delivered more than `max_deliveries` times: fail them in application storage, then
    /// [`Queue::finish`] them with a `stalled` event. They are owned by the reclaiming consumer.
    pub stalled: Vec<Delivery>,
    /// Pending entries whose stream entry no longer existed (Redis removed them from the pending
    /// list); the reconciler restores their jobs from application storage.
    pub deleted: Vec<String>,
    /// Entries that could not be decoded and were dead-lettered.
    pub dead_lettered: usize,
    /// Whether this call reached the end of the pending list (the next call starts over).
    pub scan_done: bool,
}

/// Entries a heartbeat found no longer leased to its consumer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LostLeases {
    /// Another consumer owns them now (it reclaimed them: its delivery is newer).
    pub taken: Vec<String>,
    /// No longer pending at all (acknowledged, or lost with Redis's data).
    pub gone: Vec<String>,
}

/// What [`Queue::promote_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved into the jobs stream.
    pub count: u64,
    /// When the next delayed job is due (ms since the epoch), if any is waiting.
    pub next_due_ms: Option<u64>,
}

/// The backlog, for metrics and autoscaling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries in the jobs stream (waiting or in flight).
    pub stream_length: u64,
    /// Entries delivered but not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group (`None` when Redis cannot tell).
    pub lag: Option<u64>,
    /// Retries waiting for their due time.
    pub delayed: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// Entries in the events stream.
    pub events_length: u64,
}

/// The result of the start-up eviction check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionCheck {
    /// `maxmemory-policy` is `noeviction`: Redis refuses writes instead of dropping keys.
    Safe,
    /// Another policy: Redis may evict queue keys under memory pressure, which loses jobs.
    Unsafe(String),
    /// The policy could not be read (for example `CONFIG` is disabled).
    Unknown(String),
}

/// A handle to one queue. Cheap to clone; all clones share one multiplexed connection.
#[derive(Clone)]
pub struct Queue {
    pub(crate) target: Target,
    pub(crate) conn: RedisConnection,
    pub(crate) keys: KeySpace,
    pub(crate) config: Arc<QueueConfig>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: never print the client.
        f.debug_struct("Queue").field("keys", &self.keys).field("config", &self.config).finish()
    }
}

impl Queue {
    /// A queue on the Redis at `url`: `redis://` or `rediss://` for one server, with optional ACL
    /// user and password; `redis+cluster://host:port,host:port…` (or `rediss+cluster://`) for a
    /// Redis Cluster found from those seed nodes. Connects lazily, so a service can start while
    /// Redis is down; the first call reports the outage.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] or [`QueueError::InvalidSetting`] for unusable settings,
    /// [`QueueError::InvalidUrl`] for an invalid URL, [`QueueError::Tls`] for unusable TLS settings.
    pub fn new(url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        let keys = KeySpace::new(&config.prefix, &config.queue)?;
        if config.group.is_empty() {
            return Err(QueueError::InvalidName { kind: NameKind::Group, name: String::new() });
        }
        for (setting, value) in [("op_timeout", config.op_timeout), ("lease", config.lease)] {
            if value.is_zero() {
                return Err(QueueError::InvalidSetting {
                    setting,
                    expected: "greater than zero",
                    got: format!("{value:?}"),
                });
            }
        }
        if !(1..=1024).contains(&config.partitions) {
            return Err(QueueError::InvalidSetting {
                setting: "partitions",
                expected: "between 1 and 1024",
                got: config.partitions.to_string(),
            });
        }
        if config.partitions > 1 {
            // The longest partition name must be a valid queue name too.
            KeySpace::new(&config.prefix, &format!("{}-{}", config.queue, config.partitions - 1))?;
        }
        let target = Target::parse(url, config.op_timeout, config.tls_ca_pem.as_deref())?;
        let conn = target.connect_lazy(config.op_timeout, config.op_timeout)?;
        Ok(Self { target, conn, keys, config: Arc::new(config) })
    }

    /// The queue a job with `routing_key` (the producers use the ticket id) belongs to: this queue
    /// when it is not partitioned, otherwise partition
    /// [`partition_name`](crate::partition_name)`(queue, partitions, routing_key)`. The handle
    /// shares this one's connection and settings.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] if the partition's name is invalid (checked by [`Queue::new`]).
    pub fn route(&self, routing_key: &str) -> Result<Queue, QueueError> {
        if self.config.partitions <= 1 {
            return Ok(self.clone());
        }
        self.named(&crate::partition_name(&self.config.queue, self.config.partitions, routing_key))
    }

    /// Every partition (this queue itself when it is not partitioned), e.g. to prepare them all.
    ///
    /// # Errors
    /// As [`Queue::route`].
    pub fn partitions(&self) -> Result<Vec<Queue>, QueueError> {
        if self.config.partitions <= 1 {
            return Ok(vec![self.clone()]);
        }
        (0..self.config.partitions).map(|k| self.named(&format!("{}-{k}", self.config.queue))).collect()
    }

    fn named(&self, name: &str) -> Result<Queue, QueueError> {
        let keys = KeySpace::new(&self.config.prefix, name)?;
        let config = QueueConfig { queue: name.to_owned(), partitions: 1, ..(*self.config).clone() };
        Ok(Self { target: self.target.clone(), conn: self.conn.clone(), keys, config: Arc::new(config) })
    }

    /// Whether the queue lives on a Redis Cluster (a `redis+cluster://` URL).
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// The key names.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Runs `fut` within the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, QueueError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            // A plain redis:// URL pointing at a Redis Cluster node: say how to configure it.
            Ok(Err(e)) if !self.target.is_cluster() && matches!(e.code(), Some("MOVED" | "ASK")) => {
                Err(QueueError::ClusterNode { reply: e.code().unwrap_or("MOVED").to_owned() })
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(QueueError::Timeout(limit)),
        }
    }

    async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, cmd.query_async(&mut conn)).await
    }

    /// Runs a keyless command on the server holding this queue's keys (on a cluster, the primary
    /// owning the queue's slot).
    async fn call_on_queue_node<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        let slot = self.keys.slot();
        let value = self.bounded(self.config.op_timeout, conn.query_on_slot(cmd, slot)).await?;
        redis::from_redis_value(value).map_err(|e| QueueError::Protocol(e.to_string()))
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, invocation.invoke_async(&mut conn)).await
    }

    /// Checks that Redis answers (for `/readyz`); on a cluster, the primary holding this queue.
    ///
    /// # Errors
    /// A connection error or [`QueueError::Timeout`].
    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = self.call_on_queue_node(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Start-up: creates the consumer groups (idempotent) and warns when Redis may evict keys.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn prepare(&self, events_group: Option<&str>) -> Result<EvictionCheck, QueueError> {
        self.ensure_group(&self.keys.jobs(), &self.config.group).await?;
        if let Some(group) = events_group {
            self.ensure_group(&self.keys.events(), group).await?;
        }
        let check = self.eviction_policy().await?;
        match &check {
            EvictionCheck::Safe => {}
            EvictionCheck::Unsafe(policy) => tracing::warn!(
                maxmemory_policy = %policy,
                "Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queue keys, \
                 which loses jobs until the reconciler restores them. Set maxmemory-policy noeviction."
            ),
            EvictionCheck::Unknown(why) => {
                tracing::warn!(reason = %why, "could not read Redis maxmemory-policy; make sure it is noeviction")
            }
        }
        Ok(check)
    }

    /// Creates consumer group `group` on `stream` (and the stream), from its first entry.
    /// An existing group is left as it is.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(stream).arg(group).arg("0").arg("MKSTREAM");
        match self.call::<Value>(&cmd).await {
            Ok(_) => Ok(()),
            Err(QueueError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads `maxmemory-policy` — on a cluster, of the primary holding this queue.
    ///
    /// # Errors
    /// When Redis cannot be reached (a refused `CONFIG` is [`EvictionCheck::Unknown`]).
    pub async fn eviction_policy(&self) -> Result<EvictionCheck, QueueError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        match self.call_on_queue_node::<Vec<String>>(&cmd).await {
            Ok(v) => Ok(match v.get(1).map(String::as_str) {
                Some("noeviction") => EvictionCheck::Safe,
                Some(other) => EvictionCheck::Unsafe(other.to_owned()),
                None => EvictionCheck::Unknown("CONFIG GET returned no value".into()),
            }),
            Err(QueueError::Redis(e)) if !e.is_io_error() && !e.is_timeout() => {
                Ok(EvictionCheck::Unknown(e.to_string()))
            }
            Err(QueueError::Protocol(why)) => Ok(EvictionCheck::Unknown(why)),
            Err(e) => Err(e),
        }
    }

    /// Adds `entry` to the jobs stream unless the job already has a live entry (in the stream,
    /// pending, or waiting as a delayed retry). Returns whether an entry was added.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn enqueue(&self, entry: &JobEntry) -> Result<bool, QueueError> {
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(self.keys.job(entry.job_id.as_str())).key(self.keys.jobs()).arg(entry.attempt);
        for (k, v) in entry.to_fields() {
            inv.arg(k).arg(v);
        }
        let id: Option<String> = self.run(&inv).await?;
        Ok(id.is_some())
    }

    /// [`Queue::enqueue`], but the entry waits in the delayed set until `due_ms` (the promoter then
    /// moves it into the stream) — how the reconciler restores a lost retry whose backoff has not
    /// run out. Returns whether an entry was scheduled.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn enqueue_at(&self, entry: &JobEntry, due_ms: u64) -> Result<bool, QueueError> {
        let member = delayed_member(entry)?;
        let mut inv = scripts::ENQUEUE_DELAYED.prepare_invoke();
        inv.key(self.keys.job(entry.job_id.as_str()))
            .key(self.keys.jobs())
            .key(self.keys.delayed())
            .arg(entry.attempt)
            .arg(due_ms)
            .arg(member);
        let added: u64 = self.run(&inv).await?;
        Ok(added == 1)
    }

    /// Whether the job has a live entry — in the stream or the delayed set — the reconciler's
    /// test. A presence key whose entry was deleted from the stream (or dead-lettered) is no trace.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn has_trace(&self, job: &JobId) -> Result<bool, QueueError> {
        let mut inv = scripts::HAS_TRACE.prepare_invoke();
        inv.key(self.keys.job(job.as_str())).key(self.keys.jobs());
        let n: u64 = self.run(&inv).await?;
        Ok(n > 0)
    }

    /// Hands back entries `consumer` owns but will not run (read while shutting down, or
    /// stranded): those idle at least `min_idle` become reclaimable by any worker at once, their
    /// delivery counts unchanged. Returns how many were handed back.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn hand_back(
        &self,
        consumer: &str,
        ids: &[String],
        min_idle: Duration,
    ) -> Result<u64, QueueError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut inv = scripts::HAND_BACK.prepare_invoke();
        inv.key(self.keys.jobs())
            .arg(&self.config.group)
            .arg(consumer)
            .arg(lease_ms)
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX));
        for id in ids {
            inv.arg(id);
        }
        self.run(&inv).await
    }

    /// Entries `consumer` owns that were last delivered (or heart-beaten) at least `min_idle` ago,
    /// up to `count`, oldest first.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn idle_owned(
        &self,
        consumer: &str,
        min_idle: Duration,
        count: usize,
    ) -> Result<Vec<String>, QueueError> {
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(self.keys.jobs())
            .arg(&self.config.group)
            .arg("IDLE")
            .arg(u64::try_from(min_idle.as_millis()).unwrap_or(u64::MAX))
            .arg("-")
            .arg("+")
            .arg(count.max(1))
            .arg(consumer);
        let rows: Vec<(String, String, u64, u64)> = self.call(&cmd).await?;
        Ok(rows.into_iter().map(|(id, ..)| id).collect())
    }

    /// Acks and deletes a delivery's entry, drops the job's presence key (if it still belongs to
    /// this attempt) and appends `event` — atomically. Returns whether the entry was still pending.
    /// Call it only after application storage holds the outcome.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn finish(&self, delivery: &Delivery, event: &Event) -> Result<bool, QueueError> {
        let item = Finish { delivery, event: Some(event), release: true };
        let (acked, _) = self.finish_batch(&[item], "", 0).await?;
        Ok(acked == 1)
    }

    /// Finishes a batch of deliveries in one atomic step and one round trip — how a worker's
    /// completer finishes the jobs of concurrent tasks together — and, in the same step, takes up to
    /// `take` new entries for `consumer` (the capacity the batch frees). Returns how many entries
    /// were still pending, and the new deliveries.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn finish_batch(
        &self,
        batch: &[Finish<'_>],
        consumer: &str,
        take: usize,
    ) -> Result<(u64, Vec<Delivery>), QueueError> {
        if batch.is_empty() && take == 0 {
            return Ok((0, Vec::new()));
        }
        let mut inv = scripts::FINISH.prepare_invoke();
        inv.key(self.keys.jobs()).key(self.keys.events());
        inv.arg(&self.config.group).arg(self.config.events_maxlen).arg(batch.len()).arg(consumer).arg(take);
        for item in batch {
            inv.key(self.keys.job(item.delivery.entry.job_id.as_str()));
            let fields = item.event.map(Event::to_fields).unwrap_or_default();
            let attempt = if item.release { item.delivery.entry.attempt.to_string() } else { String::new() };
            inv.arg(&item.delivery.id).arg(attempt).arg(fields.len() * 2);
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
        }
        let (acked, taken): (u64, Value) = self.run(&inv).await?;
        let mut deliveries = Vec::new();
        for (id, fields) in crate::reader::parse_read_reply(taken)? {
            if let Some(entry) = self.decode_or_dead_letter(&id, fields).await? {
                deliveries.push(Delivery { id, entry, deliveries: 1 });
            }
        }
        Ok((acked, deliveries))
    }

    /// Acks and deletes a delivery's entry and schedules `next` (the job's next attempt) at
    /// `due_ms`, appending `event` — atomically. Call it only after application storage holds the
    /// scheduled retry.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        next: &JobEntry,
        due_ms: u64,
        event: &Event,
    ) -> Result<(), QueueError> {
        let member = delayed_member(next)?;
        let mut inv = scripts::RETRY.prepare_invoke();
        inv.key(self.keys.jobs())
            .key(self.keys.delayed())
            .key(self.keys.job(next.job_id.as_str()))
            .key(self.keys.events())
            .arg(&self.config.group)
            .arg(&delivery.id)
            .arg(due_ms)
            .arg(member)
            .arg(next.attempt)
            .arg(self.config.events_maxlen);
        for (k, v) in event.to_fields() {
            inv.arg(k).arg(v);
        }
        let _: u64 = self.run(&inv).await?;
        Ok(())
    }

    /// Moves up to `limit` retries due at `now_ms` into the jobs stream. Safe with any number of
    /// concurrent promoters: each job is promoted once. A blocked reader wakes at once.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn promote_due(&self, now_ms: u64, limit: usize) -> Result<Promoted, QueueError> {
        let mut inv = scripts::PROMOTE.prepare_invoke();
        inv.key(self.keys.delayed())
            .key(self.keys.jobs())
            .arg(now_ms)
            .arg(limit.max(1))
            .arg(self.keys.job(""));
        let (count, next): (u64, Option<String>) = self.run(&inv).await?;
        let next_due_ms = next.and_then(|s| s.parse::<f64>().ok()).map(|f| f.max(0.0) as u64);
        Ok(Promoted { count, next_due_ms })
    }

    /// Appends an event (progress, alert) outside a finish or retry.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn publish(&self, event: &Event) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.events()).arg("MAXLEN").arg("~").arg(self.config.events_maxlen).arg("*");
        for (k, v) in event.to_fields() {
            cmd.arg(k).arg(v);
        }
        let _: String = self.call(&cmd).await?;
        Ok(())
    }

    /// [`Queue::publish`] for many events, pipelined in one round trip.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn publish_many(&self, events: &[Event]) -> Result<(), QueueError> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let cmd = pipe
                .cmd("XADD")
                .arg(self.keys.events())
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.events_maxlen)
                .arg("*");
            for (k, v) in event.to_fields() {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, pipe.query_async::<()>(&mut conn)).await
    }

    /// Resets the idle time of entries `consumer` still owns, keeping their delivery counts.
    /// Returns the ids it no longer owns: another consumer reclaimed them, or they were finished.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn heartbeat(&self, consumer: &str, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let lost = self.heartbeat_owners(consumer, ids).await?;
        Ok(lost.taken.into_iter().chain(lost.gone).collect())
    }

    /// [`Queue::heartbeat`], telling the entries another consumer took over from those no longer
    /// pending at all (finished, or lost with Redis's data).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn heartbeat_owners(&self, consumer: &str, ids: &[String]) -> Result<LostLeases, QueueError> {
        if ids.is_empty() {
            return Ok(LostLeases::default());
        }
        let mut inv = scripts::HEARTBEAT.prepare_invoke();
        inv.key(self.keys.jobs()).arg(&self.config.group).arg(consumer);
        for id in ids {
            inv.arg(id);
        }
        let (taken, gone): (Vec<String>, Vec<String>) = self.run(&inv).await?;
        Ok(LostLeases { taken, gone })
    }

    /// Takes over up to `count` entries idle longer than the lease, scanning the pending list from
    /// `cursor` (`"0-0"` to start). Returns what was taken and the cursor for the next call
    /// (`"0-0"` once the scan wrapped).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn reclaim(
        &self,
        consumer: &str,
        count: usize,
        cursor: &str,
    ) -> Result<(Reclaimed, String), QueueError> {
        let lease_ms = u64::try_from(self.config.lease.as_millis()).unwrap_or(u64::MAX);
        let mut inv = scripts::RECLAIM.prepare_invoke();
        inv.key(self.keys.jobs())
            .arg(&self.config.group)
            .arg(consumer)
            .arg(lease_ms)
            .arg(count.max(1))
            .arg(cursor);
        let reply: Value = self.run(&inv).await?;
        let Value::Array(parts) = reply else {
            return Err(QueueError::Protocol(format!("XAUTOCLAIM script returned {reply:?}")));
        };
        let mut parts = parts.into_iter();
        let next = parts.next().and_then(|v| as_string(&v)).unwrap_or_else(|| "0-0".into());
        let mut out = Reclaimed { scan_done: next == "0-0", ..Reclaimed::default() };
        if let Some(Value::Array(entries)) = parts.next() {
            for e in entries {
                let Value::Array(triple) = e else { continue };
                let [id, fields, deliveries] = <[Value; 3]>::try_from(triple)
                    .map_err(|_| QueueError::Protocol("reclaimed entry is not {id, fields, count}".into()))?;
                let id =
                    as_string(&id).ok_or_else(|| QueueError::Protocol("entry id is not a string".into()))?;
                let deliveries = match deliveries {
                    Value::Int(n) => u64::try_from(n).unwrap_or(0),
                    _ => 0,
                };
                match self.decode_or_dead_letter(&id, fields_of(&fields)).await? {
                    Some(entry) => {
                        let d = Delivery { id, entry, deliveries };
                        if deliveries > self.config.max_deliveries {
                            out.stalled.push(d);
                        } else {
                            out.deliveries.push(d);
                        }
                    }
                    None => out.dead_lettered += 1,
                }
            }
        }
        if let Some(Value::Array(deleted)) = parts.next() {
            out.deleted = deleted.iter().filter_map(as_string).collect();
        }
        Ok((out, next))
    }

    /// Decodes an entry; an undecodable one is dead-lettered (copied with its raw fields and the
    /// reason, then acked and deleted) and `None` is returned.
    pub(crate) async fn decode_or_dead_letter(
        &self,
        id: &str,
        fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    ) -> Result<Option<JobEntry>, QueueError> {
        let reason = match &fields {
            None => "the entry was deleted while pending".to_owned(),
            Some(pairs) => {
                let map: HashMap<String, Vec<u8>> =
                    pairs.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone())).collect();
                match JobEntry::from_fields(&map) {
                    Ok(entry) => return Ok(Some(entry)),
                    Err(e) => e.0,
                }
            }
        };
        tracing::warn!(entry_id = %id, %reason, "dead-lettering an undecodable job entry");
        let mut inv = scripts::DEAD_LETTER.prepare_invoke();
        inv.key(self.keys.jobs())
            .key(self.keys.dead())
            .arg(&self.config.group)
            .arg(id)
            .arg(&reason)
            .arg(self.config.dead_maxlen);
        for (k, v) in fields.unwrap_or_default() {
            inv.arg(k).arg(v);
        }
        let _: u64 = self.run(&inv).await?;
        Ok(None)
    }

    /// The backlog.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(self.keys.jobs());
        pipe.cmd("ZCARD").arg(self.keys.delayed());
        pipe.cmd("XLEN").arg(self.keys.dead());
        pipe.cmd("XLEN").arg(self.keys.events());
        let mut conn = self.conn.clone();
        let (stream_length, delayed, dead_letters, events_length): (u64, u64, u64, u64) =
            self.bounded(self.config.op_timeout, pipe.query_async(&mut conn)).await?;
        let mut stats =
            QueueStats { stream_length, delayed, dead_letters, events_length, ..Default::default() };
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(self.keys.jobs());
        let groups: Value = match self.call(&cmd).await {
            Ok(v) => v,
            Err(QueueError::Redis(e)) if e.code().is_none() || e.to_string().contains("no such key") => {
                return Ok(stats);
            }
            Err(e) => return Err(e),
        };
        if let Value::Array(groups) = groups {
            for g in groups {
                let info = map_of(&g);
                if info.get("name").and_then(as_string).as_deref() == Some(self.config.group.as_str()) {
                    stats.pending = info.get("pending").and_then(as_u64).unwrap_or(0);
                    stats.lag = info.get("lag").and_then(as_u64);
                }
            }
        }
        Ok(stats)
    }

    /// A reader in the workers' group, named `name`, with a connection of its own (its blocking
    /// reads must not stall other calls). Use a name that is stable across restarts of the same
    /// process slot (the pod name), so a restarted worker takes back its own pending entries.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] for an empty name.
    pub fn consumer(&self, name: &str) -> Result<Consumer, QueueError> {
        Consumer::new(self.clone(), name)
    }

    /// A reader of the events stream in consumer group `group`, named `name`.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] for an empty name.
    pub fn event_reader(&self, group: &str, name: &str) -> Result<EventReader, QueueError> {
        EventReader::new(self.clone(), group, name)
    }
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => as_string(other).and_then(|s| s.parse().ok()),
    }
}

/// A flat `[k1, v1, k2, v2, …]` array (or a RESP3 map) as a map.
fn map_of(v: &Value) -> HashMap<String, Value> {
    match v {
        Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => as_string(k).map(|k| (k, v.clone())),
                _ => None,
            })
            .collect(),
        Value::Map(pairs) => pairs.iter().filter_map(|(k, v)| as_string(k).map(|k| (k, v.clone()))).collect(),
        _ => HashMap::new(),
    }
}

/// An entry's field list; `None` for a deleted entry (nil fields).
pub(crate) fn fields_of(v: &Value) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let bytes = |v: &Value| match v {
        Value::BulkString(b) => b.clone(),
        other => as_string(other).unwrap_or_default().into_bytes(),
    };
    match v {
        Value::Array(items) => Some(
            items
                .chunks(2)
                .filter_map(|kv| match kv {
                    [k, v] => Some((bytes(k), bytes(v))),
                    _ => None,
                })
                .collect(),
        ),
        Value::Map(pairs) => Some(pairs.iter().map(|(k, v)| (bytes(k), bytes(v))).collect()),
        _ => None,
    }
}

/// An entry as a member of the delayed set: a JSON array of its field/value pairs (the promoter
/// `XADD`s them as they are).
fn delayed_member(entry: &JobEntry) -> Result<String, QueueError> {
    let fields: Vec<String> = entry.to_fields().into_iter().flat_map(|(k, v)| [k.to_owned(), v]).collect();
    serde_json::to_string(&fields).map_err(|e| QueueError::Protocol(e.to_string()))
}
