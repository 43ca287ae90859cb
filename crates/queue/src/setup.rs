//! Start-up and readiness: creating the consumer groups ([`Queue::prepare`],
//! [`Queue::ensure_group`]), the `maxmemory-policy` check ([`EvictionCheck`]) and [`Queue::ping`]
//! for `/readyz`. On a cluster the keyless commands go to the primary holding the queue's slot.

use redis::Value;

use crate::{Queue, QueueError};

/// The result of the start-up eviction check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvictionCheck {
    /// `maxmemory-policy` is `noeviction`: Redis refuses writes instead of dropping keys.
    Safe,
    /// Another policy: Redis may evict queue keys under memory pressure, which loses jobs.
    Unsafe(String),
    /// The policy could not be read (for example `CONFIG` is disabled).
    Unknown(String),
}

impl Queue {
    /// Checks that Redis answers (for `/readyz`); on a cluster, the primary holding this queue.
    ///
    /// # Errors
    /// A connection error or [`QueueError::Timeout`].
    pub async fn ping(&self) -> Result<(), QueueError> {
        let _: String = self.call_on_queue_node(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// Start-up: creates the consumer groups (idempotent) and warns when Redis may evict keys.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn prepare(&self, events_group: Option<&str>) -> Result<EvictionCheck, QueueError> {
        self.ensure_group(&self.keys.jobs(), &self.config.group).await?;
        if let Some(group) = events_group {
            self.ensure_group(&self.keys.events(), group).await?;
        }
        let check = self.eviction_policy().await?;
        match &check {
            EvictionCheck::Safe => {}
            EvictionCheck::Unsafe(policy) => tracing::warn!(
                maxmemory_policy = %policy,
                "Redis maxmemory-policy is not noeviction: under memory pressure Redis may evict queue keys, \
                 which loses jobs until the reconciler restores them. Set maxmemory-policy noeviction."
            ),
            EvictionCheck::Unknown(why) => {
                tracing::warn!(reason = %why, "could not read Redis maxmemory-policy; make sure it is noeviction")
            }
        }
        Ok(check)
    }

    /// Creates consumer group `group` on `stream` (and the stream), from its first entry.
    /// An existing group is left as it is.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn ensure_group(&self, stream: &str, group: &str) -> Result<(), QueueError> {
        let mut cmd = redis::cmd("XGROUP");
        cmd.arg("CREATE").arg(stream).arg(group).arg("0").arg("MKSTREAM");
        match self.call::<Value>(&cmd).await {
            Ok(_) => Ok(()),
            Err(QueueError::Redis(e)) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads `maxmemory-policy` — on a cluster, of the primary holding this queue.
    ///
    /// # Errors
    /// When Redis cannot be reached (a refused `CONFIG` is [`EvictionCheck::Unknown`]).
    pub async fn eviction_policy(&self) -> Result<EvictionCheck, QueueError> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg("maxmemory-policy");
        match self.call_on_queue_node::<Vec<String>>(&cmd).await {
            Ok(v) => Ok(match v.get(1).map(String::as_str) {
                Some("noeviction") => EvictionCheck::Safe,
                Some(other) => EvictionCheck::Unsafe(other.to_owned()),
                None => EvictionCheck::Unknown("CONFIG GET returned no value".into()),
            }),
            Err(QueueError::Redis(e)) if !e.is_io_error() && !e.is_timeout() => {
                Ok(EvictionCheck::Unknown(e.to_string()))
            }
            Err(QueueError::Protocol(why)) => Ok(EvictionCheck::Unknown(why)),
            Err(e) => Err(e),
        }
    }
}
