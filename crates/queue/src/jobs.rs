//! The operations on job entries that do not block, one script or pipeline each: enqueue (now or
//! delayed; straight into the stream or into a wait list, see `admit`), the reconciler's presence
//! test, finish (with the next read folded in), retry, promotion of due retries, publishing
//! events, and dead-lettering entries that cannot be decoded. Finish and retry take the job out
//! of its tenant's active set. The scripts themselves are in `scripts` (and `crates/queue/lua/`).

use std::collections::HashMap;

use longhaul_core::JobId;
use redis::Value;

use crate::entry::{Event, JobEntry};
use crate::reply::{RawFields, parse_read_reply};
use crate::{Queue, QueueError, scripts};

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

/// What [`Queue::promote_due`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Promoted {
    /// Jobs moved out of the delayed set: into the jobs stream, or into their wait lists.
    pub count: u64,
    /// When the next delayed job is due (ms since the epoch), if any is waiting.
    pub next_due_ms: Option<u64>,
}

impl Queue {
    /// Adds `entry` unless the job already has a live entry (in the stream, pending, waiting as a
    /// delayed retry, or waiting for admission). Returns whether an entry was added.
    ///
    /// The entry goes straight into the jobs stream when nothing waits for admission and its flow
    /// may start now (the queue's backlog under the window, the tenant under its cap and rate, the
    /// kind neither paused nor over its rate, on Redis's clock; see [`Queue::admit`]) — so an idle
    /// queue, or one without limits, is the plain FIFO it always was. Otherwise it waits at the
    /// back of its flow's wait list (its priority, tenant and kind; presence `<attempt>:w`) until
    /// [`Queue::admit`] lets it in.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn enqueue(&self, entry: &JobEntry) -> Result<bool, QueueError> {
        let mut inv = scripts::ENQUEUE.prepare_invoke();
        inv.key(self.keys.job(entry.job_id.as_str()))
            .key(self.keys.jobs())
            .arg(entry.attempt)
            .arg(self.keys.base())
            .arg(&self.config.group)
            .arg(entry.priority.rank())
            .arg(entry.tenant_id.as_str())
            .arg(entry.kind.as_deref().unwrap_or(""))
            .arg(entry.job_id.as_str());
        for (k, v) in entry.to_fields() {
            inv.arg(k).arg(v);
        }
        let id: Option<String> = self.run(&inv).await?;
        Ok(id.is_some())
    }

    /// [`Queue::enqueue`], but the entry waits in the delayed set until `due_ms` (the promoter then
    /// moves it into the stream or its wait list) — how the reconciler restores a lost retry whose
    /// backoff has not run out. Returns whether an entry was scheduled.
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

    /// Drops the delayed entry of attempt `attempt` of `job`, due at `due_ms` — a scheduled job
    /// cancelled before its `run_at` — and its presence key while that still marks the attempt
    /// delayed, so a later retry or resubmission of the job is not taken for a duplicate of it.
    /// Returns how many entries were dropped (0 when the entry was promoted already: its delivery
    /// finds the job cancelled and drops it).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn unschedule(&self, job: &JobId, attempt: u32, due_ms: u64) -> Result<u64, QueueError> {
        let mut inv = scripts::UNSCHEDULE.prepare_invoke();
        inv.key(self.keys.delayed())
            .key(self.keys.job(job.as_str()))
            .arg(due_ms)
            .arg(job.as_str())
            .arg(attempt);
        self.run(&inv).await
    }

    /// Whether the job has a live entry — in the stream, the delayed set or a wait list — the
    /// reconciler's test. A presence key whose entry was deleted from the stream (or
    /// dead-lettered) is no trace.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn has_trace(&self, job: &JobId) -> Result<bool, QueueError> {
        let mut inv = scripts::HAS_TRACE.prepare_invoke();
        inv.key(self.keys.job(job.as_str())).key(self.keys.jobs());
        let n: u64 = self.run(&inv).await?;
        Ok(n > 0)
    }

    /// Acks and deletes a delivery's entry, drops the job's presence key (if it still belongs to
    /// this attempt), takes the job out of its tenant's active set (freeing a place under its cap)
    /// and appends `event` — atomically. Returns whether the entry was still pending.
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
        }
        for item in batch {
            inv.key(self.keys.active(item.delivery.entry.tenant_id.as_str()));
        }
        for item in batch {
            let fields = item.event.map(Event::to_fields).unwrap_or_default();
            let attempt = if item.release { item.delivery.entry.attempt.to_string() } else { String::new() };
            inv.arg(&item.delivery.id)
                .arg(item.delivery.entry.job_id.as_str())
                .arg(attempt)
                .arg(fields.len() * 2);
            for (k, v) in fields {
                inv.arg(k).arg(v);
            }
        }
        let (acked, taken): (u64, Value) = self.run(&inv).await?;
        let mut deliveries = Vec::new();
        for (id, fields) in parse_read_reply(taken)? {
            if let Some(entry) = self.decode_or_dead_letter(&id, fields).await? {
                deliveries.push(Delivery { id, entry, deliveries: 1 });
            }
        }
        Ok((acked, deliveries))
    }

    /// Acks and deletes a delivery's entry, takes the job out of its tenant's active set and
    /// schedules `next` (the job's next attempt) at `due_ms`, appending `event` — atomically. Call
    /// it only after application storage holds the scheduled retry.
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
            .key(self.keys.active(delivery.entry.tenant_id.as_str()))
            .arg(&self.config.group)
            .arg(&delivery.id)
            .arg(due_ms)
            .arg(member)
            .arg(next.attempt)
            .arg(self.config.events_maxlen)
            .arg(delivery.entry.job_id.as_str());
        for (k, v) in event.to_fields() {
            inv.arg(k).arg(v);
        }
        let _: u64 = self.run(&inv).await?;
        Ok(())
    }

    /// Moves up to `limit` retries (and schedules) due at `now_ms` out of the delayed set: each
    /// straight into the jobs stream when [`Queue::enqueue`] would put it there, else into its
    /// flow's wait list (presence `<attempt>:w`), where it passes [`Queue::admit`] like a new
    /// entry (the rate limits' token buckets go by Redis's clock, not `now_ms`). Safe with any number of
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
            .arg(self.keys.job(""))
            .arg(self.keys.base())
            .arg(&self.config.group);
        let (count, next): (u64, Option<String>) = self.run(&inv).await?;
        let next_due_ms = next.and_then(|s| s.parse::<f64>().ok()).map(|f| f.max(0.0) as u64);
        Ok(Promoted { count, next_due_ms })
    }

    /// Appends an event (progress, alert) outside a finish or retry.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn publish(&self, event: &Event) -> Result<(), QueueError> {
        let _: String = self.call(&self.event_xadd(event)).await?;
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
            pipe.add_command(self.event_xadd(event)).ignore();
        }
        self.call_pipe(&pipe).await
    }

    /// `XADD` of `event` to the events stream, trimmed to about `events_maxlen`.
    fn event_xadd(&self, event: &Event) -> redis::Cmd {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(self.keys.events()).arg("MAXLEN").arg("~").arg(self.config.events_maxlen).arg("*");
        for (k, v) in event.to_fields() {
            cmd.arg(k).arg(v);
        }
        cmd
    }

    /// Decodes an entry; an undecodable one is dead-lettered (copied with its raw fields and the
    /// reason, then acked and deleted) and `None` is returned.
    pub(crate) async fn decode_or_dead_letter(
        &self,
        id: &str,
        fields: RawFields,
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
}

/// An entry as a member of the delayed set or a wait list: a JSON array of its field/value pairs
/// (the promoter and admission `XADD` them as they are).
pub(crate) fn delayed_member(entry: &JobEntry) -> Result<String, QueueError> {
    let fields: Vec<String> = entry.to_fields().into_iter().flat_map(|(k, v)| [k.to_owned(), v]).collect();
    serde_json::to_string(&fields).map_err(|e| QueueError::Protocol(e.to_string()))
}
