//! Key names. Every key of one queue shares the hash tag `{<queue>}`, so every script touches a
//! single Redis Cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{<queue>}:jobs` | stream | job entries; consumer group of the workers |
//! | `<prefix>:{<queue>}:delayed` | sorted set | retries waiting for their due time (score: ms) |
//! | `<prefix>:{<queue>}:events` | stream | lifecycle events, trimmed; consumer group of queue-events |
//! | `<prefix>:{<queue>}:dead` | stream | entries that could not be decoded, with their raw fields |
//! | `<prefix>:{<queue>}:job:<job id>` | string | the attempt of the job's live entry: present while the job is in the stream, pending or delayed |

use crate::QueueError;
use crate::error::NameKind;

/// The key names of one queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySpace {
    base: String,
}

/// Checks `name` against [`NameKind::rule`] for prefixes and queue names.
fn validate(kind: NameKind, name: &str) -> Result<(), QueueError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok { Ok(()) } else { Err(QueueError::InvalidName { kind, name: name.to_owned() }) }
}

impl KeySpace {
    /// The keys of queue `queue` under `prefix`.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] when either name is empty, too long, or contains characters outside
    /// `A–Z a–z 0–9 - _ . :` (braces would break the hash tag).
    pub fn new(prefix: &str, queue: &str) -> Result<Self, QueueError> {
        validate(NameKind::Prefix, prefix)?;
        validate(NameKind::Queue, queue)?;
        Ok(Self { base: format!("{prefix}:{{{queue}}}") })
    }

    /// The common start of every key, `<prefix>:{<queue>}`.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The jobs stream.
    pub fn jobs(&self) -> String {
        format!("{}:jobs", self.base)
    }

    /// The delayed-retry sorted set.
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.base)
    }

    /// The lifecycle events stream.
    pub fn events(&self) -> String {
        format!("{}:events", self.base)
    }

    /// The dead-letter stream.
    pub fn dead(&self) -> String {
        format!("{}:dead", self.base)
    }

    /// The presence key of one job.
    pub fn job(&self, job_id: &str) -> String {
        format!("{}:job:{job_id}", self.base)
    }

    /// The Redis Cluster slot every key of this queue hashes to (CRC16 of the queue name, the
    /// hash tag, modulo 16384).
    pub fn slot(&self) -> u16 {
        let tag = self.base.rsplit_once('{').map_or("", |(_, t)| t.trim_end_matches('}'));
        crc16_xmodem(tag.as_bytes()) % 16384
    }
}

/// The partition queue name for `routing_key` (a job or tenant id) when queue `queue` is split
/// into `partitions` queues `<queue>-0` … `<queue>-<partitions-1>`, each its own hash tag and so
/// its own Redis Cluster slot. Stable across processes and releases (FNV-1a of the key), so every
/// producer sends one job's entries to the same partition. With `partitions` ≤ 1 the
/// queue is not split and its name is returned unchanged.
pub fn partition_name(queue: &str, partitions: u32, routing_key: &str) -> String {
    if partitions <= 1 {
        return queue.to_owned();
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in routing_key.as_bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{queue}-{}", hash % u64::from(partitions))
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster hashes keys with.
fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in bytes {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_one_hash_tag() {
        let k = KeySpace::new("longhaul", "triage").expect("keys");
        for key in [k.jobs(), k.delayed(), k.events(), k.dead(), k.job("job_1")] {
            assert!(key.starts_with("longhaul:{triage}:"), "{key}");
        }
    }

    #[test]
    fn slot_is_the_hash_tag_slot() {
        // Values from `CLUSTER KEYSLOT` on Redis 7.
        for (queue, slot) in [("triage", 12920), ("foo", 12182), ("123456789", 12739)] {
            let k = KeySpace::new("longhaul", queue).expect("keys");
            assert_eq!(k.slot(), slot, "{queue}");
        }
    }

    #[test]
    fn partitions_are_stable_and_spread() {
        assert_eq!(partition_name("triage", 1, "acme"), "triage");
        assert_eq!(partition_name("triage", 4, "acme"), partition_name("triage", 4, "acme"));
        let mut seen = std::collections::BTreeSet::new();
        for t in 0..200 {
            let name = partition_name("triage", 4, &format!("tenant-{t}"));
            assert!(KeySpace::new("longhaul", &name).is_ok(), "{name}");
            seen.insert(name);
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    #[test]
    fn names_are_validated() {
        for (prefix, queue, ok) in [
            ("longhaul", "triage", true),
            ("", "q", false),
            ("p", "", false),
            ("p", "a{b}", false),
            ("p q", "q", false),
        ] {
            assert_eq!(KeySpace::new(prefix, queue).is_ok(), ok, "{prefix:?} {queue:?}");
        }
    }
}
