//! `longhaul-queue`: the Redis Streams protocol of longhaul (Redis 7.0 or newer).
//!
//! - [`Queue`] — the shared handle: idempotent [`Queue::enqueue`]; [`Queue::finish`], which acks,
//!   deletes and appends the lifecycle event atomically; [`Queue::retry`] into the delayed set and
//!   [`Queue::promote_due`] back out; heartbeats and reclaiming of stalled entries; events;
//!   statistics; and the start-up safety checks.
//! - [`Consumer`] — one process's reader in the workers' consumer group: takes back its own pending
//!   entries first, then reads new ones; dead-letters entries it cannot decode.
//! - [`EventReader`] — a reader of the events stream in its own consumer group (queue-events).
//! - [`keys`] — key names; all keys of a queue share one hash tag, so Redis Cluster works;
//!   [`partition_name`] splits a queue into partitions, one hash tag (slot) each.
//! - [`RedisConnection`] — one Redis server (`redis://`) or a Redis Cluster
//!   (`redis+cluster://seed,seed…`), chosen by the URL.
//! - [`entry`] — [`JobEntry`] and [`Event`] and their field encodings.
//!
//! Every call is bounded by [`QueueConfig::op_timeout`]: an outage yields
//! [`QueueError::Timeout`] or a connection error in bounded time, never a hang. Connections
//! reconnect by themselves.
//!
//! The queue owns delivery only. Application storage is always written before a queue entry is
//! acknowledged; this crate does not know about storage.

mod conn;
pub mod entry;
pub mod keys;
mod queue;
mod reader;
mod scripts;

use std::time::Duration;

pub use conn::RedisConnection;
pub use entry::{DecodeError, Event, EventKind, JobEntry};
pub use keys::{KeySpace, partition_name};
pub use queue::{
    Delivery, EvictionCheck, Finish, LostLeases, Promoted, Queue, QueueConfig, QueueStats, Reclaimed,
};
pub use reader::{Consumer, EventReader, ReceivedEvent};

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis answered with an error, or the connection failed.
    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the configured bound.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// The configuration is unusable.
    #[error("{0}")]
    Config(String),
    /// Redis answered something this code does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
}

impl QueueError {
    /// Whether trying again later may succeed (Redis unreachable, slow, loading or failing over; on a
    /// cluster also no node reachable or slots moving).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout(_) => true,
            Self::Redis(e) => {
                e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    // Redis Cluster: no node reachable, or redirections still in flux (resharding,
                    // failover) after the client's own retries.
                    || e.is_cluster_error()
                    || matches!(e.kind(), redis::ErrorKind::ClusterConnectionNotFound)
                    || matches!(
                        e.code(),
                        Some("TRYAGAIN" | "LOADING" | "BUSY" | "CLUSTERDOWN" | "MASTERDOWN" | "READONLY")
                    )
            }
            Self::Config(_) | Self::Protocol(_) => false,
        }
    }
}

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
