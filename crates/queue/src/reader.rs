//! Consumer-group readers: [`Consumer`] (workers, on the jobs stream) and [`EventReader`]
//! (queue-events, on the events stream). Each has a connection of its own (on a Redis Cluster, a
//! cluster connection of its own), because a blocking `XREADGROUP` holds its connection until it
//! returns.
//!
//! A reader first re-reads its own pending entries (those it was handed before a restart and never
//! acknowledged), then reads new ones with `>`.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use crate::conn::RedisConnection;
use crate::entry::Event;
use crate::error::NameKind;
use crate::reply::{RawEntry, parse_read_reply};
use crate::{Delivery, Queue, QueueError, Reclaimed};

struct GroupReader {
    queue: Queue,
    conn: RedisConnection,
    stream: String,
    group: String,
    name: String,
    /// Where the re-read of our own pending entries has got to; `None` once it is done.
    pending_from: Option<String>,
}

impl GroupReader {
    fn new(queue: Queue, stream: String, group: &str, name: &str) -> Result<Self, QueueError> {
        if group.is_empty() {
            return Err(QueueError::InvalidName { kind: NameKind::Group, name: String::new() });
        }
        if name.is_empty() {
            return Err(QueueError::InvalidName { kind: NameKind::Consumer, name: String::new() });
        }
        // Blocking reads may take up to their block time plus a normal call's bound. On a cluster
        // this is a cluster connection of its own, with its own connection to each node.
        let op = queue.config.op_timeout;
        let conn = queue.target.connect_lazy(op + Duration::from_secs(60), op)?;
        Ok(Self {
            queue,
            conn,
            stream,
            group: group.to_owned(),
            name: name.to_owned(),
            pending_from: Some("0".into()),
        })
    }

    /// Up to `count` entries: own pending ones first, then new ones, waiting up to `block`.
    async fn read(&mut self, count: usize, block: Duration) -> Result<(Vec<RawEntry>, bool), QueueError> {
        if count == 0 {
            return Ok((Vec::new(), false));
        }
        if let Some(from) = self.pending_from.clone() {
            let entries = self.xreadgroup(count, None, &from).await?;
            match entries.last() {
                Some((last, _)) => {
                    self.pending_from = Some(last.clone());
                    return Ok((entries, true));
                }
                None => self.pending_from = None,
            }
        }
        let entries = self.xreadgroup(count, Some(block), ">").await?;
        Ok((entries, false))
    }

    async fn xreadgroup(
        &mut self,
        count: usize,
        block: Option<Duration>,
        from: &str,
    ) -> Result<Vec<RawEntry>, QueueError> {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP").arg(&self.group).arg(&self.name).arg("COUNT").arg(count);
        let mut limit = self.queue.config.op_timeout;
        if let Some(block) = block {
            let ms = u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1);
            cmd.arg("BLOCK").arg(ms);
            limit += block;
        }
        cmd.arg("STREAMS").arg(&self.stream).arg(from);
        let mut conn = self.conn.clone();
        let reply: Value = match self.queue.bounded(limit, cmd.query_async(&mut conn)).await {
            Err(QueueError::Redis(e)) if e.code() == Some("NOGROUP") => {
                // The group is gone: Redis restarted without its data, or someone deleted the
                // stream. Recreate it from the stream's first entry (what the reconciler
                // re-enqueues from application storage lands there) and read again.
                tracing::warn!(stream = %self.stream, group = %self.group,
                    "consumer group missing (did Redis lose its data?); recreating it");
                self.queue.ensure_group(&self.stream, &self.group).await?;
                self.pending_from = None;
                self.queue.bounded(limit, cmd.query_async(&mut conn)).await?
            }
            other => other?,
        };
        parse_read_reply(reply)
    }

    async fn pending_counts(&self, ids: &[String]) -> Result<HashMap<String, u64>, QueueError> {
        let (Some(first), Some(last)) = (ids.first(), ids.last()) else {
            return Ok(HashMap::new());
        };
        let mut cmd = redis::cmd("XPENDING");
        cmd.arg(&self.stream).arg(&self.group).arg(first).arg(last).arg(ids.len()).arg(&self.name);
        let mut conn = self.queue.conn.clone();
        let rows: Vec<(String, String, u64, u64)> =
            self.queue.bounded(self.queue.config.op_timeout, cmd.query_async(&mut conn)).await?;
        Ok(rows.into_iter().map(|(id, _, _, n)| (id, n)).collect())
    }
}

/// One worker process's reader of the jobs stream.
pub struct Consumer {
    reader: GroupReader,
    reclaim_cursor: String,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer").field("name", &self.reader.name).finish()
    }
}

impl Consumer {
    pub(crate) fn new(queue: Queue, name: &str) -> Result<Self, QueueError> {
        let stream = queue.keys.jobs();
        let group = queue.config.group.clone();
        Ok(Self { reader: GroupReader::new(queue, stream, &group, name)?, reclaim_cursor: "0-0".into() })
    }

    /// This consumer's name in the group.
    pub fn name(&self) -> &str {
        &self.reader.name
    }

    /// Up to `max` deliveries (pass the worker's free capacity): first the entries this consumer
    /// was handed before a restart and never acknowledged, then new entries, waiting up to `block`
    /// for one to arrive. Undecodable entries are dead-lettered and skipped.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn fetch(&mut self, max: usize, block: Duration) -> Result<Vec<Delivery>, QueueError> {
        let (raw, own_pending) = self.reader.read(max, block).await?;
        let counts = if own_pending {
            let ids: Vec<String> = raw.iter().map(|(id, _)| id.clone()).collect();
            self.reader.pending_counts(&ids).await?
        } else {
            HashMap::new()
        };
        let mut out = Vec::with_capacity(raw.len());
        for (id, fields) in raw {
            if let Some(entry) = self.reader.queue.decode_or_dead_letter(&id, fields).await? {
                let deliveries = counts.get(&id).copied().unwrap_or(1);
                out.push(Delivery { id, entry, deliveries });
            }
        }
        Ok(out)
    }

    /// Takes over up to `count` entries whose consumers stopped heart-beating; continues the scan
    /// of the pending list where the previous call stopped.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn reclaim(&mut self, count: usize) -> Result<Reclaimed, QueueError> {
        let (reclaimed, next) =
            self.reader.queue.reclaim(&self.reader.name, count, &self.reclaim_cursor).await?;
        self.reclaim_cursor = next;
        Ok(reclaimed)
    }

    /// Keeps this consumer's in-flight entries leased; returns the ids it lost.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn heartbeat(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        self.reader.queue.heartbeat(&self.reader.name, ids).await
    }
}

/// An event read from the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedEvent {
    /// The stream entry id (pass to [`EventReader::ack`]).
    pub id: String,
    /// The event.
    pub event: Event,
}

/// A reader of the events stream in its own consumer group: replicas share the events, each is
/// handled once, and a restart resumes with its own unacknowledged events.
pub struct EventReader {
    reader: GroupReader,
}

impl std::fmt::Debug for EventReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventReader")
            .field("group", &self.reader.group)
            .field("name", &self.reader.name)
            .finish()
    }
}

impl EventReader {
    pub(crate) fn new(queue: Queue, group: &str, name: &str) -> Result<Self, QueueError> {
        let stream = queue.keys.events();
        Ok(Self { reader: GroupReader::new(queue, stream, group, name)? })
    }

    /// Up to `count` events, waiting up to `block`. Undecodable events are acknowledged, logged
    /// and skipped.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn read(&mut self, count: usize, block: Duration) -> Result<Vec<ReceivedEvent>, QueueError> {
        let (raw, _) = self.reader.read(count, block).await?;
        let mut out = Vec::with_capacity(raw.len());
        let mut bad = Vec::new();
        for (id, fields) in raw {
            let map: HashMap<String, Vec<u8>> = fields
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (String::from_utf8_lossy(&k).into_owned(), v))
                .collect();
            match Event::from_fields(&map) {
                Ok(event) => out.push(ReceivedEvent { id, event }),
                Err(e) => {
                    tracing::warn!(entry_id = %id, reason = %e, "skipping an undecodable event");
                    bad.push(id);
                }
            }
        }
        self.ack(&bad).await?;
        Ok(out)
    }

    /// Acknowledges handled events.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn ack(&self, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut cmd = redis::cmd("XACK");
        cmd.arg(&self.reader.stream).arg(&self.reader.group);
        for id in ids {
            cmd.arg(id);
        }
        let mut conn = self.reader.queue.conn.clone();
        let _: u64 = self
            .reader
            .queue
            .bounded(self.reader.queue.config.op_timeout, cmd.query_async(&mut conn))
            .await?;
        Ok(())
    }
}
