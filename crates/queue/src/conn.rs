//! The connection a queue talks through — one Redis server or a Redis Cluster — and how the Redis
//! URL chooses between them.
//!
//! - `redis://[user:password@]host:port[/db]` (or `rediss://`): one server, through a
//!   reconnecting [`ConnectionManager`].
//! - `redis+cluster://[user:password@]host:port[,host:port…]` (or `rediss+cluster://`): a Redis
//!   Cluster, found from any of the seed nodes, through a [`ClusterConnection`] that routes each
//!   command to the primary owning its keys' slot and follows `MOVED`/`ASK` redirections. All keys
//!   of one queue share one hash tag, so every script runs on one node.
//!
//! [`RedisConnection`] implements [`ConnectionLike`], so commands, pipelines and scripts run on
//! either kind unchanged.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::{QueueError, TlsProblem};

/// The scheme prefix that selects Redis Cluster.
const CLUSTER_SCHEMES: [(&str, &str); 2] =
    [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")];

/// Where a queue's Redis lives, parsed from its URL; opens connections.
#[derive(Clone)]
#[allow(
    clippy::large_enum_variant,
    reason = "one per queue handle, cloned rarely; TLS makes the client large"
)]
pub(crate) enum Target {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster (boxed: the client is large).
    Cluster(Box<ClusterClient>),
}

fn invalid(e: &redis::RedisError) -> QueueError {
    QueueError::invalid_url(e.detail().unwrap_or("cannot parse"))
}

impl Target {
    /// Parses `url`: `redis://…` for one server, `redis+cluster://seed,seed…` for a cluster.
    /// `tls_ca_pem`: for `rediss://` (and `rediss+cluster://`), the CA(s) to trust instead of the
    /// system's roots.
    pub(crate) fn parse(
        url: &str,
        op_timeout: Duration,
        tls_ca_pem: Option<&[u8]>,
    ) -> Result<Self, QueueError> {
        if tls_ca_pem.is_some() && !url.starts_with("rediss://") && !url.starts_with("rediss+cluster://") {
            return Err(QueueError::Tls(TlsProblem::CaWithoutTls));
        }
        let certificates =
            |pem: &[u8]| redis::TlsCertificates { client_tls: None, root_cert: Some(pem.to_vec()) };
        let bad_ca = |e: redis::RedisError| {
            QueueError::Tls(TlsProblem::InvalidCa { detail: e.detail().unwrap_or("cannot parse").to_owned() })
        };
        let Some((plain, rest)) = CLUSTER_SCHEMES
            .iter()
            .find_map(|(cluster, plain)| url.strip_prefix(cluster).map(|rest| (*plain, rest)))
        else {
            redis::Client::open(url).map_err(|e| invalid(&e))?;
            return match tls_ca_pem {
                None => redis::Client::open(url).map(Self::Single).map_err(|e| invalid(&e)),
                Some(pem) => {
                    redis::Client::build_with_tls(url, certificates(pem)).map(Self::Single).map_err(bad_ca)
                }
            };
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(path, "" | "0") {
            return Err(QueueError::invalid_url("a Redis Cluster has only database 0; drop the /<db> path"));
        }
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let seeds: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| format!("{plain}{userinfo}{h}"))
            .collect();
        if seeds.is_empty() {
            return Err(QueueError::invalid_url(
                "redis+cluster:// needs at least one seed node, e.g. redis+cluster://10.0.0.1:6379,10.0.0.2:6379",
            ));
        }
        for seed in &seeds {
            redis::Client::open(seed.as_str()).map_err(|e| invalid(&e))?;
        }
        let mut builder = ClusterClient::builder(seeds);
        if let Some(pem) = tls_ca_pem {
            builder = builder.certs(certificates(pem));
        }
        builder
            .connection_timeout(op_timeout)
            .response_timeout(op_timeout)
            .retries(3)
            .max_retry_wait(500)
            .build()
            .map(|client| Self::Cluster(Box::new(client)))
            .map_err(|e| invalid(&e))
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self, Self::Cluster(_))
    }

    /// A new connection that connects (and reconnects) in the background: creating it never
    /// waits for Redis. Calls on it wait at most `response_timeout` for an answer.
    pub(crate) fn connect_lazy(
        &self,
        response_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<RedisConnection, QueueError> {
        Ok(match self {
            Self::Single(client) => RedisConnection::Single(ConnectionManager::new_lazy_with_config(
                client.clone(),
                ConnectionManagerConfig::new()
                    .set_response_timeout(Some(response_timeout))
                    .set_connection_timeout(Some(connect_timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_millis(500)),
            )?),
            Self::Cluster(client) => RedisConnection::Cluster(
                client.get_pending_async_connection_with_config(
                    ClusterConfig::new()
                        .set_response_timeout(response_timeout)
                        .set_connection_timeout(connect_timeout),
                ),
            ),
        })
    }
}

/// A connection to one Redis server or to a Redis Cluster. Cheap to clone; clones share the
/// underlying multiplexed connection(s).
#[derive(Clone)]
pub enum RedisConnection {
    /// One server, reconnecting by itself.
    Single(ConnectionManager),
    /// A Redis Cluster: commands are routed by the slot of their keys.
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "RedisConnection::Single",
            Self::Cluster(_) => "RedisConnection::Cluster",
        })
    }
}

impl RedisConnection {
    /// A connection to the Redis (or Redis Cluster) at `url`, in the forms the queue accepts
    /// (see the module documentation), connecting in the background. For tools and tests.
    ///
    /// # Errors
    /// [`QueueError::InvalidUrl`] for an invalid URL.
    pub fn open(url: &str, timeout: Duration) -> Result<Self, QueueError> {
        Target::parse(url, timeout, None)?.connect_lazy(timeout, timeout)
    }

    /// Runs a keyless command (`CONFIG GET`, `PING`, `CLIENT LIST`…) on the server that holds
    /// `slot`: on one server that is the server; on a cluster, the primary owning the slot.
    pub async fn query_on_slot(&mut self, cmd: &Cmd, slot: u16) -> redis::RedisResult<Value> {
        match self {
            Self::Single(conn) => cmd.query_async(conn).await,
            Self::Cluster(conn) => {
                let route = Route::new(slot, SlotAddr::Master);
                conn.route_command(
                    cmd.clone(),
                    RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                )
                .await
            }
        }
    }
}

impl ConnectionLike for RedisConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_choose_the_connection_kind() {
        let t = Duration::from_secs(1);
        assert!(!Target::parse("redis://127.0.0.1:6379", t, None).expect("single").is_cluster());
        assert!(Target::parse("redis+cluster://127.0.0.1:7000", t, None).expect("one seed").is_cluster());
        assert!(
            Target::parse("redis+cluster://u:p@127.0.0.1:7000, 127.0.0.1:7001,", t, None)
                .expect("seeds with credentials")
                .is_cluster()
        );
        for bad in [
            "redis+cluster://",
            "redis+cluster://,",
            "redis+cluster://127.0.0.1:7000/3",
            "redis+cluster://127.0.0.1:notaport",
            "http://127.0.0.1",
        ] {
            let err = Target::parse(bad, t, None).err().unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(matches!(err, QueueError::InvalidUrl { .. }), "{bad}: {err:?}");
            assert!(err.to_string().starts_with("invalid Redis URL"), "{bad}: {err}");
        }
    }
}
