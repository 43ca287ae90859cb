//! `longhaul-queue`: the Redis Streams protocol of longhaul (Redis 7.0 or newer).
//!
//! - [`Queue`] — the shared handle: idempotent [`Queue::enqueue`] (straight into the stream, or
//!   into the wait list of its flow — priority, tenant, kind — when admission must decide);
//!   [`Queue::admit`], which moves waiting entries into the stream fairly (round robin over
//!   flows, weighted priorities, per-tenant caps and rates, per-kind rates and pauses, a backlog
//!   window — limits from [`Control`], see [`Queue::set_control`]; rates on Redis's clock; a
//!   paused or limited kind holds back only its own flows); [`Queue::defer`] (a worker hands a
//!   fresh delivery of a paused kind back to its flow — only the consumer it is pending with
//!   may); [`Queue::heal`] (the periodic repair of active sets and rings); [`Queue::finish`],
//!   which acks, deletes and appends the lifecycle event atomically; [`Queue::retry`] into the
//!   delayed set and [`Queue::promote_due`] back out; heartbeats and reclaiming of stalled
//!   entries; events; statistics; and the start-up safety checks; dead letters ([`DeadLetter`]):
//!   listed, replayed (a repeated replay reports the first one's success), purged.
//! - [`Consumer`] — one process's reader in the workers' consumer group: takes back its own pending
//!   entries first, then reads new ones; dead-letters entries it cannot decode.
//! - [`EventReader`] — a reader of the events stream in its own consumer group (queue-events).
//! - [`keys`] — key names; all keys of a queue share one hash tag, so Redis Cluster works;
//!   [`partition_name`] splits a queue into partitions, one hash tag (slot) each.
//! - [`RedisConnection`] — one Redis server (`redis://`) or a Redis Cluster
//!   (`redis+cluster://seed,seed…`), chosen by the URL.
//! - [`entry`] — [`JobEntry`] and [`Event`] and their field encodings.
//! - [`QueueError`] — a variant per cause; configuration problems ([`QueueError::InvalidUrl`],
//!   [`QueueError::Tls`], [`QueueError::InvalidName`], [`QueueError::InvalidSetting`],
//!   [`QueueError::ClusterNode`]) are told apart from outages by variant.
//!
//! Inside, [`Queue`]'s methods are grouped by concern: `config` (settings and their checks),
//! `routing` (partitions), `setup` (groups, readiness, eviction check), `admit` (admission, defer,
//! heal, waiting counts), `control` (the limits and pauses mirror), `jobs` (enqueue, finish,
//! retry, promote, events, dead-lettering undecodable entries), `dead` (the dead stream: list,
//! replay, purge, stalled entries), `leases` (heartbeats, reclaiming, handing back), `stats`;
//! `reply` reads Redis replies, and `scripts` loads the Lua scripts of `crates/queue/lua/`.
//!
//! Every call is bounded by [`QueueConfig::op_timeout`]: an outage yields
//! [`QueueError::Timeout`] or a connection error in bounded time, never a hang. Connections
//! reconnect by themselves.
//!
//! The queue owns delivery only. Application storage is always written before a queue entry is
//! acknowledged; this crate does not know about storage.

mod admit;
mod config;
mod conn;
mod control;
mod dead;
pub mod entry;
mod error;
mod jobs;
pub mod keys;
mod leases;
mod queue;
mod reader;
mod reply;
mod routing;
mod scripts;
mod setup;
mod stats;

pub use admit::Admitted;
pub use config::QueueConfig;
pub use conn::RedisConnection;
pub use control::Control;
pub use dead::{DeadLetter, MAX_DEAD_LETTER_PAGE, REPLAY_MEMORY};
pub use entry::{DecodeError, Event, EventKind, JobEntry};
pub use error::{NameKind, QueueError, TlsProblem};
pub use jobs::{Delivery, Finish, Promoted};
pub use keys::{KeySpace, partition_name};
pub use leases::{LostLeases, Reclaimed};
pub use queue::Queue;
pub use reader::{Consumer, EventReader, ReceivedEvent};
pub use setup::EvictionCheck;
pub use stats::QueueStats;

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
