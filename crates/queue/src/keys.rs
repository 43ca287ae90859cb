//! Key names. Every key of one queue shares the hash tag `{<queue>}`, so every script touches a
//! single Redis Cluster slot.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<prefix>:{<queue>}:jobs` | stream | job entries; consumer group of the workers |
//! | `<prefix>:{<queue>}:delayed` | sorted set | retries waiting for their due time (score: ms) |
//! | `<prefix>:{<queue>}:events` | stream | lifecycle events, trimmed; consumer group of queue-events |
//! | `<prefix>:{<queue>}:dead` | stream | dead letters: entries that could not be decoded or stalled, with their raw fields |
//! | `<prefix>:{<queue>}:job:<job id>` | string | the job's presence: `<attempt>:<entry id>` while it has an entry in the stream, `<attempt>:d` while it waits in the delayed set, `<attempt>:w` while it waits in a wait list |
//! | `<prefix>:{<queue>}:wait:<rank>:<tenant>/<kind>` | list | the entries of one flow (priority rank `0` high … `2` low, tenant, kind — empty for entries without a kind: `wait:1:acme/`) waiting for admission, oldest first (JSON arrays of field/value pairs); tenant ids and kind names never hold `/`, so each name is one flow's |
//! | `<prefix>:{<queue>}:ring:<rank>` | list | each flow `<tenant>/<kind>` of that rank with a non-empty wait list, once; admission serves it round robin |
//! | `<prefix>:{<queue>}:flows` | set | every flow with a non-empty wait list, `<rank>:<tenant>/<kind>`: what `heal` checks the rings against |
//! | `<prefix>:{<queue>}:waiting` | hash | entries waiting per rank (fields `0`, `1`, `2`) |
//! | `<prefix>:{<queue>}:turn` | string | the admission counter that picks the preferred priority (weighted rotation) |
//! | `<prefix>:{<queue>}:active:<tenant>` | set | ids of the tenant's jobs admitted to the stream and not finished (its cap counts them) |
//! | `<prefix>:{<queue>}:tenants` | sorted set | tenants that may have an active set (all scores 0, in name order): what `heal` walks |
//! | `<prefix>:{<queue>}:heal` | hash | where `heal` stopped: `tenant` and `cursor` (of its active set), `flows` (the cursor of the flows index) |
//! | `<prefix>:{<queue>}:control` | hash | the mirror of the limits and pauses (see [`Control`](crate::Control)): `ahead`, `cap`, `rate`, `cap:<tenant>`, `rate:<tenant>`, `krate:<kind>`, `paused`, `paused:<kind>` |
//! | `<prefix>:{<queue>}:tokens` | hash | token buckets, `t:<tenant>` and `k:<kind>` → `<tokens>:<last refill ms>` (Redis's clock) |
//! | `<prefix>:{<queue>}:replayed:<dead letter id>` | string | the entry a dead letter was replayed as, for a few minutes: a repeated replay reports the same success |

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

    /// The wait list of one flow: the tenant's entries of kind `kind` (`""` for entries without
    /// one) and priority rank `rank` ([`Priority::rank`](longhaul_core::Priority::rank)) waiting
    /// for admission.
    pub fn wait(&self, rank: u8, tenant: &str, kind: &str) -> String {
        format!("{}:wait:{rank}:{}", self.base, flow(tenant, kind))
    }

    /// The ring of flows (see [`flow`]) with waiting entries of priority rank `rank`.
    pub fn ring(&self, rank: u8) -> String {
        format!("{}:ring:{rank}", self.base)
    }

    /// The index of flows with waiting entries (members `<rank>:<flow>`).
    pub fn flows(&self) -> String {
        format!("{}:flows", self.base)
    }

    /// The marker of a replayed dead letter: the entry it was replayed as, kept a few minutes.
    pub fn replayed(&self, dead_id: &str) -> String {
        format!("{}:replayed:{dead_id}", self.base)
    }

    /// The counts of waiting entries per priority rank.
    pub fn waiting(&self) -> String {
        format!("{}:waiting", self.base)
    }

    /// The admission counter that picks the preferred priority.
    pub fn turn(&self) -> String {
        format!("{}:turn", self.base)
    }

    /// The set of a tenant's jobs admitted to the stream and not finished.
    pub fn active(&self, tenant: &str) -> String {
        format!("{}:active:{tenant}", self.base)
    }

    /// The index of tenants that may have an active set.
    pub fn tenants(&self) -> String {
        format!("{}:tenants", self.base)
    }

    /// Where the last `heal` stopped.
    pub fn heal(&self) -> String {
        format!("{}:heal", self.base)
    }

    /// The mirror of the queue's limits and pauses.
    pub fn control(&self) -> String {
        format!("{}:control", self.base)
    }

    /// The token buckets of the rate limits.
    pub fn tokens(&self) -> String {
        format!("{}:tokens", self.base)
    }

    /// The Redis Cluster slot every key of this queue hashes to (CRC16 of the queue name, the
    /// hash tag, modulo 16384).
    pub fn slot(&self) -> u16 {
        let tag = self.base.rsplit_once('{').map_or("", |(_, t)| t.trim_end_matches('}'));
        crc16_xmodem(tag.as_bytes()) % 16384
    }
}

/// The name of a flow — a tenant's entries of one kind (`""` for entries without one) — as its
/// priority's ring holds it: `<tenant>/<kind>`. Tenant ids and kind names never contain `/`, so
/// no two flows share a name.
pub fn flow(tenant: &str, kind: &str) -> String {
    format!("{tenant}/{kind}")
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
        let keys = [
            k.jobs(),
            k.delayed(),
            k.events(),
            k.dead(),
            k.job("job_1"),
            k.wait(0, "acme", "report"),
            k.ring(2),
            k.flows(),
            k.replayed("1-0"),
            k.waiting(),
            k.turn(),
            k.active("acme"),
            k.tenants(),
            k.heal(),
            k.control(),
            k.tokens(),
        ];
        for key in keys {
            assert!(key.starts_with("longhaul:{triage}:"), "{key}");
        }
    }

    #[test]
    fn flow_names_are_unambiguous() {
        let k = KeySpace::new("longhaul", "triage").expect("keys");
        assert_eq!(k.wait(1, "acme", "report"), "longhaul:{triage}:wait:1:acme/report");
        assert_eq!(k.wait(1, "acme", ""), "longhaul:{triage}:wait:1:acme/", "an entry without a kind");
        // Tenant ids and kind names may hold ':' (never '/'): a colon would let two flows collide.
        assert_ne!(k.wait(0, "a:b", "c"), k.wait(0, "a", "b:c"));
        assert_ne!(k.wait(0, "acme:", ""), k.wait(0, "acme", ":"));
        for name in ["a:b", "acme", "x.y-z_1"] {
            assert!(longhaul_core::TenantId::parse(name).is_ok() && !name.contains('/'));
        }
        assert!(longhaul_core::TenantId::parse("a/b").is_err(), "no tenant id holds a '/'");
        assert!(longhaul_core::kind::validate_kind_name("a/b").is_err(), "no kind name holds a '/'");
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
