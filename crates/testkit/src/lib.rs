//! Test fixtures shared by the crates' integration tests, and the process harness the end-to-end
//! tests, the demo and the benchmark share (never a dependency of a shipped binary).
//!
//! - [`TestDb`] — a migrated [`Store`] on a database of its own: a temporary SQLite file, or a
//!   fresh PostgreSQL database dropped when the fixture is dropped (also after a panic).
//! - [`TestQueue`] — a prepared [`Queue`] under a random key prefix whose keys are deleted on drop.
//! - [`TlsRedis`] — a private TLS-only `redis-server` with a throw-away CA, for `rediss://`.
//! - [`on_redis`] / [`RedisKind`] — runs a test body against one Redis server or against the
//!   3-primary Redis Cluster of [`cluster`], which is started on first use.
//! - [`wait_until`] / [`poll_until`] — polls a condition with a deadline and reports the last state
//!   seen; tests never sleep to synchronise.
//! - [`procs`] — the built binaries as processes (end-to-end tests, demo, benchmark): start with a
//!   shared environment, wait for readiness, SIGTERM then SIGKILL, logs.
//!
//! `LONGHAUL_TEST_PG_URL`, `LONGHAUL_TEST_REDIS_URL` and `LONGHAUL_TEST_REDIS_CLUSTER_URL` point
//! the fixtures at other servers.

pub mod cluster;
pub mod procs;
mod tls;

pub use tls::TlsRedis;

use std::future::Future;
use std::time::{Duration, Instant};

use longhaul_queue::{Queue, QueueConfig, RedisConnection};
use longhaul_store::{Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// Which database a [`TestDb`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary SQLite file.
    Sqlite,
    /// A fresh database on the test PostgreSQL server.
    Postgres,
}

/// The PostgreSQL server tests create their databases on.
pub fn pg_admin_url() -> String {
    std::env::var("LONGHAUL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Which Redis a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisKind {
    /// The single Redis server (`LONGHAUL_TEST_REDIS_URL`).
    Single,
    /// The test Redis Cluster ([`cluster::cluster_url`]).
    Cluster,
}

tokio::task_local! {
    static REDIS_KIND: RedisKind;
}

/// Runs `body` with the Redis fixtures ([`redis_url`], [`TestQueue::new`]) pointing at `kind`.
/// Tasks the body spawns are outside the scope: create fixtures in the body itself.
pub async fn on_redis<F: Future>(kind: RedisKind, body: F) -> F::Output {
    REDIS_KIND.scope(kind, body).await
}

/// The Redis the current test runs against: [`RedisKind::Single`] outside [`on_redis`].
pub fn redis_kind() -> RedisKind {
    REDIS_KIND.try_with(|k| *k).unwrap_or(RedisKind::Single)
}

/// The Redis tests use: the single server, or inside [`on_redis`] with [`RedisKind::Cluster`]
/// the test cluster's `redis+cluster://` URL.
pub fn redis_url() -> String {
    match redis_kind() {
        RedisKind::Single => {
            std::env::var("LONGHAUL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
        }
        RedisKind::Cluster => cluster::cluster_url(),
    }
}

/// A raw connection to [`redis_url`], to inspect keys directly (on a cluster, commands are routed
/// by their keys).
pub fn raw_connection() -> RedisConnection {
    RedisConnection::open(&redis_url(), Duration::from_secs(5)).expect("a valid test Redis URL")
}

/// 12 random hex digits.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("the OS random source");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kind of the jobs [`job_entry`] makes.
pub const TEST_KIND: &str = "test";

/// The id of the job [`job_entry`] makes for `key`.
pub fn test_job_id(key: &str) -> longhaul_core::JobId {
    let tenant = longhaul_core::TenantId::parse("acme").expect("tenant");
    longhaul_core::JobId::derive(&tenant, TEST_KIND, &longhaul_core::JobKey::Derived(key.to_owned()))
}

/// A first-attempt entry of tenant `acme` for the job of kind [`TEST_KIND`] keyed `key`.
pub fn job_entry(key: &str) -> longhaul_queue::JobEntry {
    longhaul_queue::JobEntry {
        job_id: test_job_id(key),
        tenant_id: longhaul_core::TenantId::parse("acme").expect("tenant"),
        kind: Some(TEST_KIND.to_owned()),
        attempt: 1,
        enqueued_at_ms: longhaul_queue::now_ms(),
        priority: Default::default(),
        traceparent: None,
    }
}

/// A migrated store on a database of its own.
pub struct TestDb {
    /// The store.
    pub store: Store,
    /// The URL the store was opened with (for starting binaries against it).
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl std::ops::Deref for TestDb {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.store
    }
}

impl TestDb {
    /// A fresh, migrated database of `backend`.
    pub async fn new(backend: Backend) -> Self {
        let db = Self::unmigrated(backend).await;
        db.store.migrate().await.expect("migrate the test database");
        db
    }

    /// A fresh database of `backend` with no migration applied: for tests of the migrations
    /// themselves (apply some with the backend's `sqlx::migrate::Migrator`, write rows as an older
    /// schema did, then [`Store::migrate`]).
    pub async fn unmigrated(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("longhaul.db").display());
                let store = Store::connect(Some(&url), &StoreOptions::default()).await.expect("sqlite store");
                Self { store, url, pg_name: None, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let admin = pg_admin_url();
                let name = format!("longhaul_test_{}", random_hex());
                let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL admin connection");
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base =
                    admin.rsplit_once('/').map(|(b, _)| b).expect("LONGHAUL_TEST_PG_URL has a database path");
                let url = format!("{base}/{name}");
                let store = Store::connect(Some(&url), &StoreOptions::default()).await.expect("pg store");
                Self { store, url, pg_name: Some(name), _dir: None }
            }
        }
    }
}

impl TestDb {
    /// Makes the (PostgreSQL) database refuse new connections and ends every open one, or lets
    /// it accept them again: a storage outage for everything but the admin connection.
    ///
    /// # Panics
    /// On SQLite, or when the admin connection fails.
    pub async fn set_reachable(&self, reachable: bool) {
        let name = self.pg_name.as_deref().expect("an outage needs a PostgreSQL test database");
        let mut admin = PgConnection::connect(&pg_admin_url()).await.expect("PostgreSQL admin connection");
        // Identifiers cannot be bound parameters; `name` is this database's generated name.
        let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {reachable}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("alter database");
        if !reachable {
            // Open connections survive ALLOW_CONNECTIONS; end them, so every pool must reconnect.
            sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
                .bind(name)
                .execute(&mut admin)
                .await
                .expect("terminate backends");
        }
    }
}

impl TestDb {
    /// (PostgreSQL) Ends the session of whoever inserts an `audit_log` row whose action is
    /// `action`, from then on (`true`) or no more (`false`): a connection lost in the middle of a
    /// transaction, at a point the test chooses. One action at a time.
    ///
    /// # Panics
    /// On SQLite, for an action that is not a plain word, or when the trigger cannot be created
    /// (one is already on) or dropped.
    pub async fn cut_connections_at_audit(&self, action: &str, on: bool) {
        assert!(self.pg_name.is_some(), "cutting connections needs a PostgreSQL test database");
        assert!(action.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "action {action:?}");
        let mut conn = PgConnection::connect(&self.url).await.expect("PostgreSQL test database");
        let sql = if on {
            // `action` is a plain word (checked above).
            format!(
                "CREATE FUNCTION longhaul_test_cut() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                   IF NEW.action = '{action}' THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; \
                   RETURN NEW; END $$; \
                 CREATE TRIGGER longhaul_test_cut BEFORE INSERT ON audit_log \
                   FOR EACH ROW EXECUTE FUNCTION longhaul_test_cut();"
            )
        } else {
            "DROP TRIGGER longhaul_test_cut ON audit_log; DROP FUNCTION longhaul_test_cut();".to_owned()
        };
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.expect("the cutting trigger");
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else { return };
        // Drop cannot await: drop the database from a thread with a runtime of its own.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&pg_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// A prepared queue under a random key prefix; its keys are deleted on drop (on a cluster, on
/// whichever nodes hold them).
pub struct TestQueue {
    /// The queue.
    pub queue: Queue,
    /// Its key prefix.
    pub prefix: String,
    /// The Redis URL the queue was opened with.
    pub url: String,
}

impl std::ops::Deref for TestQueue {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.queue
    }
}

impl TestQueue {
    /// A prepared queue (consumer groups created) on the current test's Redis ([`redis_url`]),
    /// with its configuration adjusted by `tweak`.
    pub async fn new(tweak: impl FnOnce(&mut QueueConfig)) -> Self {
        Self::on(&redis_url(), tweak).await
    }

    /// A prepared queue on the test Redis Cluster, whatever the current test's [`RedisKind`].
    pub async fn cluster(tweak: impl FnOnce(&mut QueueConfig)) -> Self {
        Self::on(&cluster::cluster_url(), tweak).await
    }

    async fn on(url: &str, tweak: impl FnOnce(&mut QueueConfig)) -> Self {
        let prefix = format!("lhtest-{}", random_hex());
        let mut config = QueueConfig { prefix: prefix.clone(), ..QueueConfig::default() };
        tweak(&mut config);
        let queue = Queue::new(url, config).expect("queue");
        queue.prepare(Some("queue-events")).await.expect("prepare the queue");
        Self { queue, prefix, url: url.to_owned() }
    }

    /// A raw connection to this queue's Redis, to inspect keys directly.
    pub async fn raw(&self) -> RedisConnection {
        RedisConnection::open(&self.url, Duration::from_secs(5)).expect("a valid test Redis URL")
    }

    /// The workers' pending entries with ids from `from` to `to` (`"-"`, `"+"` for all), up to 100:
    /// who holds each, how long it has been idle, and how often it was delivered.
    pub async fn pending(&self, from: &str, to: &str) -> Vec<PendingEntry> {
        let mut conn = self.raw().await;
        let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
            .arg(self.queue.keys().jobs())
            .arg(&self.queue.config().group)
            .arg(from)
            .arg(to)
            .arg(100)
            .query_async(&mut conn)
            .await
            .expect("xpending");
        rows.into_iter()
            .map(|(id, consumer, idle_ms, deliveries)| PendingEntry { id, consumer, idle_ms, deliveries })
            .collect()
    }

    /// Pending entry `id`, if it is pending.
    pub async fn pending_entry(&self, id: &str) -> Option<PendingEntry> {
        self.pending(id, id).await.into_iter().next()
    }
}

/// A pending entry of the jobs stream ([`TestQueue::pending`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingEntry {
    /// The entry id.
    pub id: String,
    /// The consumer holding it.
    pub consumer: String,
    /// Milliseconds since it was last delivered or heart-beaten.
    pub idle_ms: u64,
    /// How often it was delivered.
    pub deliveries: u64,
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        // Drop cannot await: delete from a thread with a runtime of its own. Only this test's own
        // keys are touched. On a cluster, KEYS asks every primary and DEL is split by slot.
        let (url, pattern) = (self.url.clone(), format!("{}:*", self.prefix));
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let Ok(mut conn) = RedisConnection::open(&url, Duration::from_secs(5)) else { return };
                let keys: Vec<String> =
                    redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap_or_default();
                for chunk in keys.chunks(500) {
                    let _: redis::RedisResult<u64> =
                        redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
                }
            });
        });
        let _ = handle.join();
    }
}

/// Polls `check` every 20 ms until it returns `Ok`, or panics at `timeout` with the last state seen.
pub async fn wait_until<T, S: std::fmt::Debug>(
    timeout: Duration,
    what: &str,
    check: impl AsyncFnMut() -> Result<T, S>,
) -> T {
    match poll_until(timeout, check).await {
        Ok(v) => v,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last state: {last:?}"),
    }
}

/// Polls `check` every 20 ms until it returns `Ok`; at `timeout`, the last state seen as `Err` —
/// [`wait_until`] for callers that report rather than panic (the demo, the benchmark).
///
/// # Errors
/// The last state `check` returned, once `timeout` has passed.
pub async fn poll_until<T, S>(
    timeout: Duration,
    mut check: impl AsyncFnMut() -> Result<T, S>,
) -> Result<T, S> {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return Ok(v),
            Err(last) if Instant::now() >= deadline => return Err(last),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}
