//! [`QueueError`], the one error type of the crate: a variant per cause, so callers (the retry
//! loops, the binaries' configuration checks) match on variants, never on message text.

use std::fmt;
use std::time::Duration;

/// A queue failure.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Redis answered with an error, or the connection failed. Displays as the Redis error itself.
    #[error(transparent)]
    Redis(#[from] redis::RedisError),
    /// Redis did not answer within the configured bound.
    #[error("redis did not answer within {0:?}")]
    Timeout(Duration),
    /// Redis answered something this code does not understand.
    #[error("unexpected reply from redis: {0}")]
    Protocol(String),
    /// The Redis URL cannot be used; `reason` never contains the URL (it may hold a password).
    #[error("invalid Redis URL: {reason}")]
    InvalidUrl {
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings cannot be used.
    #[error(transparent)]
    Tls(TlsProblem),
    /// A key prefix, queue, group or consumer name breaks its rule.
    #[error("invalid {kind} {name:?}: must be {}", kind.rule())]
    InvalidName {
        /// Which name.
        kind: NameKind,
        /// The name given.
        name: String,
    },
    /// A [`QueueConfig`](crate::QueueConfig) setting is out of its range.
    #[error("{setting} must be {expected}, got {got}")]
    InvalidSetting {
        /// The field of [`QueueConfig`](crate::QueueConfig).
        setting: &'static str,
        /// The range it must be in.
        expected: &'static str,
        /// The value given.
        got: String,
    },
    /// A dead-letter request that cannot be served: an id that is not a stream entry id, or a
    /// dead letter with nothing to replay.
    #[error("dead letter {id:?}: {problem}")]
    DeadLetter {
        /// The id given.
        id: String,
        /// What is wrong.
        problem: &'static str,
    },
    /// A plain `redis://` URL points at a Redis Cluster node, which redirected a call.
    #[error(
        "Redis answered {reply}: it is a Redis Cluster node; use a redis+cluster://host:port,host:port… URL"
    )]
    ClusterNode {
        /// The redirection Redis answered (`MOVED` or `ASK`).
        reply: String,
    },
}

/// Why the TLS settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsProblem {
    /// A CA certificate is set, but the URL is not `rediss://` (or `rediss+cluster://`).
    #[error("a TLS CA is set, but the Redis URL is not rediss://")]
    CaWithoutTls,
    /// The CA certificate cannot be read as PEM.
    #[error("invalid TLS CA certificate (PEM expected): {detail}")]
    InvalidCa {
        /// What the TLS library said.
        detail: String,
    },
}

/// The names [`QueueError::InvalidName`] reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    /// [`QueueConfig::prefix`](crate::QueueConfig::prefix).
    Prefix,
    /// [`QueueConfig::queue`](crate::QueueConfig::queue), or a partition's name.
    Queue,
    /// A consumer group ([`QueueConfig::group`](crate::QueueConfig::group) or an events group).
    Group,
    /// A consumer's name in its group.
    Consumer,
}

impl NameKind {
    /// The rule names of this kind follow.
    pub fn rule(self) -> &'static str {
        match self {
            Self::Prefix | Self::Queue => "1–64 characters of ASCII letters, digits, '-', '_', '.' or ':'",
            Self::Group | Self::Consumer => "non-empty",
        }
    }
}

impl fmt::Display for NameKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Prefix => "queue prefix",
            Self::Queue => "queue name",
            Self::Group => "consumer group name",
            Self::Consumer => "consumer name",
        })
    }
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
            Self::Protocol(_)
            | Self::InvalidUrl { .. }
            | Self::Tls(_)
            | Self::InvalidName { .. }
            | Self::InvalidSetting { .. }
            | Self::DeadLetter { .. }
            | Self::ClusterNode { .. } => false,
        }
    }

    pub(crate) fn invalid_url(reason: impl Into<String>) -> Self {
        Self::InvalidUrl { reason: reason.into() }
    }
}
