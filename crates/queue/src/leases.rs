//! Leases on delivered entries: a consumer keeps its entries with heartbeats
//! ([`Queue::heartbeat_owners`]); entries idle longer than [`QueueConfig::lease`] are taken over
//! by another consumer ([`Queue::reclaim`], which also reports stalled and deleted entries); a
//! consumer that will not run entries hands them back at once ([`Queue::hand_back`],
//! [`Queue::idle_owned`]). Idle times and delivery counts are Redis's own (`XPENDING`).
//!
//! [`QueueConfig::lease`]: crate::QueueConfig::lease

use std::time::Duration;

use redis::Value;

use crate::jobs::Delivery;
use crate::reply::parse_reclaim_reply;
use crate::{Queue, QueueError, scripts};

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

/// `d` in whole milliseconds, saturating.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Queue {
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
        let mut inv = scripts::RECLAIM.prepare_invoke();
        inv.key(self.keys.jobs())
            .arg(&self.config.group)
            .arg(consumer)
            .arg(millis(self.config.lease))
            .arg(count.max(1))
            .arg(cursor);
        let reply = parse_reclaim_reply(self.run::<Value>(&inv).await?)?;
        let mut out =
            Reclaimed { scan_done: reply.next == "0-0", deleted: reply.deleted, ..Reclaimed::default() };
        for ((id, fields), deliveries) in reply.claimed {
            match self.decode_or_dead_letter(&id, fields).await? {
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
        Ok((out, reply.next))
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
        let mut inv = scripts::HAND_BACK.prepare_invoke();
        inv.key(self.keys.jobs())
            .arg(&self.config.group)
            .arg(consumer)
            .arg(millis(self.config.lease))
            .arg(millis(min_idle));
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
            .arg(millis(min_idle))
            .arg("-")
            .arg("+")
            .arg(count.max(1))
            .arg(consumer);
        let rows: Vec<(String, String, u64, u64)> = self.call(&cmd).await?;
        Ok(rows.into_iter().map(|(id, ..)| id).collect())
    }
}
