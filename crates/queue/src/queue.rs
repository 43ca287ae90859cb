//! [`Queue`]: the shared handle to one queue's keys — its connection, key names and settings —
//! and the bounded call helpers every operation goes through. The operations live by concern in
//! sibling modules, each an `impl Queue` block: `routing` (partitions), `setup` (groups,
//! readiness, the eviction check), `jobs` (enqueue, finish, retry, promote, events), `admit`
//! (admission, defer, heal), `control` (the limits mirror), `leases` (heartbeats, reclaiming,
//! handing back) and `stats`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::conn::{RedisConnection, Target};
use crate::reader::{Consumer, EventReader};
use crate::{KeySpace, QueueConfig, QueueError};

/// A handle to one queue. Cheap to clone; all clones share one multiplexed connection.
#[derive(Clone)]
pub struct Queue {
    pub(crate) target: Target,
    pub(crate) conn: RedisConnection,
    pub(crate) keys: KeySpace,
    pub(crate) config: Arc<QueueConfig>,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry credentials: never print the client.
        f.debug_struct("Queue").field("keys", &self.keys).field("config", &self.config).finish()
    }
}

impl Queue {
    /// A queue on the Redis at `url`: `redis://` or `rediss://` for one server, with optional ACL
    /// user and password; `redis+cluster://host:port,host:port…` (or `rediss+cluster://`) for a
    /// Redis Cluster found from those seed nodes. Connects lazily, so a service can start while
    /// Redis is down; the first call reports the outage.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] or [`QueueError::InvalidSetting`] for unusable settings,
    /// [`QueueError::InvalidUrl`] for an invalid URL, [`QueueError::Tls`] for unusable TLS settings.
    pub fn new(url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        let keys = config.validate()?;
        let target = Target::parse(url, config.op_timeout, config.tls_ca_pem.as_deref())?;
        let conn = target.connect_lazy(config.op_timeout, config.op_timeout)?;
        Ok(Self { target, conn, keys, config: Arc::new(config) })
    }

    /// Whether the queue lives on a Redis Cluster (a `redis+cluster://` URL).
    pub fn is_cluster(&self) -> bool {
        self.target.is_cluster()
    }

    /// The key names.
    pub fn keys(&self) -> &KeySpace {
        &self.keys
    }

    /// The settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// A reader in the workers' group, named `name`, with a connection of its own (its blocking
    /// reads must not stall other calls). Use a name that is stable across restarts of the same
    /// process slot (the pod name), so a restarted worker takes back its own pending entries.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] for an empty name.
    pub fn consumer(&self, name: &str) -> Result<Consumer, QueueError> {
        Consumer::new(self.clone(), name)
    }

    /// A reader of the events stream in consumer group `group`, named `name`.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] for an empty name.
    pub fn event_reader(&self, group: &str, name: &str) -> Result<EventReader, QueueError> {
        EventReader::new(self.clone(), group, name)
    }

    /// Runs `fut` within `limit`.
    pub(crate) async fn bounded<T>(
        &self,
        limit: Duration,
        fut: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, QueueError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(Ok(v)) => Ok(v),
            // A plain redis:// URL pointing at a Redis Cluster node: say how to configure it.
            Ok(Err(e)) if !self.target.is_cluster() && matches!(e.code(), Some("MOVED" | "ASK")) => {
                Err(QueueError::ClusterNode { reply: e.code().unwrap_or("MOVED").to_owned() })
            }
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(QueueError::Timeout(limit)),
        }
    }

    /// Runs one command within the operation timeout.
    pub(crate) async fn call<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, cmd.query_async(&mut conn)).await
    }

    /// Runs a pipeline within the operation timeout.
    pub(crate) async fn call_pipe<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, pipe.query_async(&mut conn)).await
    }

    /// Runs a keyless command on the server holding this queue's keys (on a cluster, the primary
    /// owning the queue's slot).
    pub(crate) async fn call_on_queue_node<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        let slot = self.keys.slot();
        let value = self.bounded(self.config.op_timeout, conn.query_on_slot(cmd, slot)).await?;
        redis::from_redis_value(value).map_err(|e| QueueError::Protocol(e.to_string()))
    }

    /// Runs a script within the operation timeout.
    pub(crate) async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: &redis::ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let mut conn = self.conn.clone();
        self.bounded(self.config.op_timeout, invocation.invoke_async(&mut conn)).await
    }
}
