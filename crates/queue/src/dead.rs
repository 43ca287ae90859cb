//! Dead letters: the dead stream `<prefix>:{<queue>}:dead`, where entries go that a worker cannot
//! run — those that could not be decoded (`Queue::decode_or_dead_letter`), and those delivered too
//! often without finishing ([`Queue::dead_letter_stalled`]). Each dead letter holds `source_id`
//! (the entry's id in the jobs stream), `reason`, then the entry's fields as they were (raw).
//!
//! An operator lists ([`Queue::dead_letters`]), inspects ([`Queue::dead_letter`]), replays
//! ([`Queue::replay_dead`]) and purges ([`Queue::purge_dead`], [`Queue::purge_all_dead`]) them.
//! A replay puts the raw fields back into the jobs stream as a new entry, straight into the stream
//! (no admission, no presence key: the start of a job is fenced in storage, so a replayed copy
//! never runs an attempt twice) — right for an entry that can now be decoded (after an upgrade).
//! The replay is remembered for [`REPLAY_MEMORY`] (key `replayed:<dead letter id>`), so a repeated
//! replay — a client's retry after a lost reply — reports the same success and adds nothing.
//! A stalled job is better put back through storage: retry its record (fresh attempts), enqueue
//! it, then purge the dead letter.

use std::collections::HashMap;

use redis::Value;
use serde::Serialize;

use crate::entry::{DecodeError, JobEntry};
use crate::jobs::Delivery;
use crate::reply::as_string;
use crate::{Queue, QueueError, scripts};

/// The most dead letters [`Queue::dead_letters`] returns at once.
pub const MAX_DEAD_LETTER_PAGE: usize = 1000;

/// How long a replayed dead letter is remembered, so a repeated [`Queue::replay_dead`] reports the
/// first one's success.
pub const REPLAY_MEMORY: std::time::Duration = std::time::Duration::from_secs(600);

/// One entry of the dead stream; its id is what [`Queue::replay_dead`] and [`Queue::purge_dead`]
/// take. Its OpenAPI schema ([`utoipa::ToSchema`]) is the operator API's view of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(description = "One entry of a queue's dead stream: a job entry a worker could not run (it could \
    not be decoded, or was delivered too often without finishing), with the entry's fields as they were.")]
pub struct DeadLetter {
    /// Its id in the dead stream (`<ms>-<seq>`): what a replay or a purge names.
    #[schema(example = "1767261600123-0")]
    pub id: String,
    /// The entry's id in the jobs stream.
    pub source_id: String,
    /// Why it was dead-lettered.
    pub reason: String,
    /// The job (field `j`), if the entry names one.
    #[schema(required = true)]
    pub job_id: Option<String>,
    /// The tenant (field `t`), if the entry names one.
    #[schema(required = true)]
    pub tenant_id: Option<String>,
    /// The kind (field `n`), if the entry names one.
    #[schema(required = true)]
    pub kind: Option<String>,
    /// The entry's fields as they were, in order (bytes that are not UTF-8 shown replaced; a
    /// replay puts back the original bytes).
    pub fields: Vec<(String, String)>,
    /// When it was dead-lettered, ms since the epoch (from its id).
    pub at_ms: u64,
}

impl DeadLetter {
    /// The job entry its fields decode to, if they do (a stalled entry's always do; an
    /// undecodable one's may after an upgrade).
    ///
    /// # Errors
    /// [`DecodeError`] naming the first bad field.
    pub fn entry(&self) -> Result<JobEntry, DecodeError> {
        let map: HashMap<String, Vec<u8>> =
            self.fields.iter().map(|(k, v)| (k.clone(), v.clone().into_bytes())).collect();
        JobEntry::from_fields(&map)
    }

    /// A dead letter from a stream entry: `source_id`, `reason`, then the raw fields.
    fn from_entry(id: String, pairs: Vec<(String, String)>) -> Self {
        let mut rest = pairs.as_slice();
        let mut take = |name: &str| match rest.split_first() {
            Some(((k, v), tail)) if k == name => {
                rest = tail;
                v.clone()
            }
            _ => String::new(),
        };
        let source_id = take("source_id");
        let reason = take("reason");
        let fields = rest.to_vec();
        let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let at_ms = id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0);
        Self {
            source_id,
            reason,
            job_id: field("j"),
            tenant_id: field("t"),
            kind: field("n"),
            at_ms,
            id,
            fields,
        }
    }
}

/// Checks that `id` is a stream entry id (`<ms>-<seq>` or `<ms>`).
fn checked(id: &str) -> Result<&str, QueueError> {
    let number = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    let ok = match id.split_once('-') {
        Some((ms, seq)) => {
            number(ms) && number(seq) && ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok()
        }
        None => number(id) && id.parse::<u64>().is_ok(),
    };
    if ok {
        Ok(id)
    } else {
        Err(QueueError::DeadLetter {
            id: id.to_owned(),
            problem: "not a stream entry id (such as 1700000000000-0)",
        })
    }
}

/// An `XRANGE` reply → dead letters.
fn parse_range(reply: Value) -> Result<Vec<DeadLetter>, QueueError> {
    let Value::Array(entries) = reply else {
        return Err(QueueError::Protocol(format!("XRANGE returned {reply:?}")));
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => as_string(other).unwrap_or_default(),
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let [id, fields] = <[Value; 2]>::try_from(parts)
            .map_err(|_| QueueError::Protocol("stream entry is not {id, fields}".into()))?;
        let id = as_string(&id).ok_or_else(|| QueueError::Protocol("entry id is not a string".into()))?;
        let pairs = match &fields {
            Value::Array(items) => items.chunks_exact(2).map(|kv| (text(&kv[0]), text(&kv[1]))).collect(),
            Value::Map(items) => items.iter().map(|(k, v)| (text(k), text(v))).collect(),
            _ => Vec::new(),
        };
        out.push(DeadLetter::from_entry(id, pairs));
    }
    Ok(out)
}

impl Queue {
    /// Up to `limit` dead letters (at most [`MAX_DEAD_LETTER_PAGE`]), oldest first, after dead
    /// letter `after` (exclusive; `None`: from the first). Pass the last id back for the next page.
    ///
    /// # Errors
    /// [`QueueError::DeadLetter`] when `after` is not a stream entry id; when Redis cannot be
    /// reached in time.
    pub async fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let start = match after {
            Some(id) => format!("({}", checked(id)?),
            None => "-".to_owned(),
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.keys.dead()).arg(start).arg("+").arg("COUNT").arg(limit.min(MAX_DEAD_LETTER_PAGE));
        parse_range(self.call(&cmd).await?)
    }

    /// Dead letter `id`, if it is (still) there.
    ///
    /// # Errors
    /// [`QueueError::DeadLetter`] when `id` is not a stream entry id; when Redis cannot be reached
    /// in time.
    pub async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, QueueError> {
        let id = checked(id)?;
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.keys.dead()).arg(id).arg(id);
        Ok(parse_range(self.call(&cmd).await?)?.into_iter().next())
    }

    /// Puts dead letter `id`'s raw fields back into the jobs stream as a new entry and deletes the
    /// dead letter, atomically (see the module docs). Returns `false` when it is gone (purged, or
    /// replayed more than [`REPLAY_MEMORY`] ago). A replay repeated within [`REPLAY_MEMORY`] (a
    /// client's retry after a lost reply) returns `true` again and adds nothing.
    ///
    /// # Errors
    /// [`QueueError::DeadLetter`] when `id` is not a stream entry id, or the dead letter holds no
    /// fields to put back (an entry deleted while pending: purge it); when Redis cannot be reached
    /// in time.
    pub async fn replay_dead(&self, id: &str) -> Result<bool, QueueError> {
        let id = checked(id)?;
        let mut inv = scripts::DEAD_REPLAY.prepare_invoke();
        inv.key(self.keys.dead())
            .key(self.keys.jobs())
            .key(self.keys.replayed(id))
            .arg(id)
            .arg(u64::try_from(REPLAY_MEMORY.as_millis()).unwrap_or(u64::MAX));
        match self.run::<Value>(&inv).await? {
            Value::Int(0) => Ok(false),
            Value::Int(_) => Err(QueueError::DeadLetter {
                id: id.to_owned(),
                problem: "holds no fields to put back (its entry was deleted while pending); purge it",
            }),
            _ => Ok(true),
        }
    }

    /// Deletes the dead letters `ids`; returns how many there were.
    ///
    /// # Errors
    /// [`QueueError::DeadLetter`] naming the first id that is not a stream entry id (then nothing
    /// is deleted); when Redis cannot be reached in time.
    pub async fn purge_dead(&self, ids: &[String]) -> Result<u64, QueueError> {
        for id in ids {
            checked(id)?;
        }
        if ids.is_empty() {
            return Ok(0);
        }
        let mut cmd = redis::cmd("XDEL");
        cmd.arg(self.keys.dead()).arg(ids);
        self.call(&cmd).await
    }

    /// Deletes every dead letter; returns how many there were.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn purge_all_dead(&self) -> Result<u64, QueueError> {
        let mut inv = scripts::DEAD_PURGE_ALL.prepare_invoke();
        inv.key(self.keys.dead());
        self.run(&inv).await
    }

    /// Copies a stalled delivery's entry — delivered too often without finishing — into the dead
    /// stream with `reason` (its fields as the stream holds them; as delivered, if it was deleted
    /// from the stream). Call it after failing the job in storage and before finishing the
    /// delivery, which stays pending until then. Returns the dead letter's id; `None` when the
    /// entry is no longer pending (finished already) or was just dead-lettered (a repeated call).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn dead_letter_stalled(
        &self,
        delivery: &Delivery,
        reason: &str,
    ) -> Result<Option<String>, QueueError> {
        let mut inv = scripts::DEAD_STALLED.prepare_invoke();
        inv.key(self.keys.jobs())
            .key(self.keys.dead())
            .arg(&self.config.group)
            .arg(&delivery.id)
            .arg(reason)
            .arg(self.config.dead_maxlen);
        for (k, v) in delivery.entry.to_fields() {
            inv.arg(k).arg(v);
        }
        self.run(&inv).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_are_checked() {
        for ok in ["0", "0-0", "1700000000000-12", "18446744073709551615-18446744073709551615"] {
            assert_eq!(checked(ok).ok(), Some(ok));
        }
        for bad in ["", "-", "1-", "-1", "1-2-3", "abc", "1-x", "(1-0", "18446744073709551616-0", "+"] {
            let err = checked(bad).expect_err(bad);
            assert!(err.to_string().contains("not a stream entry id"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_dead_letter_reads_its_leading_fields_and_keeps_the_rest_raw() {
        let pairs = |p: &[(&str, &str)]| p.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let d = DeadLetter::from_entry(
            "1700000000123-4".into(),
            pairs(&[("source_id", "5-0"), ("reason", "bad"), ("j", "job_x"), ("reason", "raw")]),
        );
        assert_eq!((d.source_id.as_str(), d.reason.as_str(), d.at_ms), ("5-0", "bad", 1_700_000_000_123));
        assert_eq!(d.job_id.as_deref(), Some("job_x"));
        assert_eq!(d.fields, pairs(&[("j", "job_x"), ("reason", "raw")]));
        assert!(d.entry().is_err());
    }
}
