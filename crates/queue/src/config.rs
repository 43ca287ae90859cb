//! [`QueueConfig`]: the settings of one queue, their defaults, and the checks [`Queue::new`]
//! runs on them before anything talks to Redis.
//!
//! [`Queue::new`]: crate::Queue::new

use std::time::Duration;

use crate::error::NameKind;
use crate::{KeySpace, QueueError};

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
    /// each; see [`Queue::route`](crate::Queue::route)). 1: not split. Consumers serve one queue
    /// name each.
    pub partitions: u32,
    /// Entries one flow may have admitted per turn of admission's round robin (at least 1): a
    /// larger turn costs fewer Redis commands per job under backlog; another tenant's entry then
    /// waits at most this many entries of each other flow of its priority. A flow under a rate
    /// limit is admitted one entry per turn.
    pub admit_turn: u32,
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
            admit_turn: 16,
        }
    }
}

impl QueueConfig {
    /// Checks the names and settings; returns the queue's key names.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] or [`QueueError::InvalidSetting`].
    pub(crate) fn validate(&self) -> Result<KeySpace, QueueError> {
        let keys = KeySpace::new(&self.prefix, &self.queue)?;
        if self.group.is_empty() {
            return Err(QueueError::InvalidName { kind: NameKind::Group, name: String::new() });
        }
        for (setting, value) in [("op_timeout", self.op_timeout), ("lease", self.lease)] {
            if value.is_zero() {
                return Err(QueueError::InvalidSetting {
                    setting,
                    expected: "greater than zero",
                    got: format!("{value:?}"),
                });
            }
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(QueueError::InvalidSetting {
                setting: "partitions",
                expected: "between 1 and 1024",
                got: self.partitions.to_string(),
            });
        }
        if self.partitions > 1 {
            // The longest partition name must be a valid queue name too.
            KeySpace::new(&self.prefix, &format!("{}-{}", self.queue, self.partitions - 1))?;
        }
        Ok(keys)
    }
}
