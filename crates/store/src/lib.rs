//! `longhaul-store`: application storage — the user-facing truth — with sqlx.
//!
//! One [`Store`], two backends: PostgreSQL for production (several pods share it) and SQLite, the
//! embedded default when no `DATABASE_URL` is given (a file created on first use). Each has its
//! own migrations under `migrations/{postgres,sqlite}`, with aligned numbering, embedded in the
//! binary.
//!
//! The store knows jobs of any kind and nothing of what a kind does: no stage, effect or table of
//! a kind's own. A kind keeping data of its own (the triage kind's tickets) keeps it in tables of
//! its own, with its own migrations and `.sql` files, run on the store's pool through
//! [`backend`] ([`Store::db`]).
//!
//! The SQL is in `.sql` files under `crates/store/sql/`, and the tree says which backend runs what:
//!
//! - `common/` — run by both as written (positional `$n` parameters, `ON CONFLICT`,
//!   `RETURNING`): the reads, tenants, the operation log, the audit log, and the job writes that
//!   have no batched form (`fail`, `retry`).
//! - `postgres/` — PostgreSQL only: the batched forms of the hot path — pending records, starts,
//!   completions, progress — each one multi-row statement over `UNNEST` arrays; a start keeps the
//!   attempt's start in the record (`attempt_starts`) instead of an audit row. A single write of
//!   these kinds runs the same statement with one row.
//! - `sqlite/` — SQLite only: the single-row forms of those writes, which SQLite (in-process, so
//!   statements are cheap) runs one after another inside one transaction.
//!
//! Modules, one table family each:
//!
//! - [`tenants`] — tenants and their hashed API keys, with the authentication cache.
//! - [`jobs`] — job records of every kind: create-pending-or-return-existing, fenced status
//!   writes, reads and filtered keyset pagination, always scoped by tenant.
//! - [`ops`] — the side-effect operation log.
//! - [`operators`] — operators and their hashed keys (the operator API's credentials).
//! - [`control`] — pauses of queues and kinds, and per-tenant and per-kind limits, with their
//!   audit rows.
//! - [`audit`] — the audit log, and jobs' trails: its rows with the entries read from the record.
//! - [`console`] — the operator console's login sessions and the reads only its pages make.
//! - [`retention`] — pruning old finished jobs, their audit rows and old operations, in batches.
//! - [`task_leases`] — leases that keep a background task running in one process at a time.
//! - [`error`] — [`StoreError`], with the retryable/permanent split the worker needs.
//! - [`backend`] — the two databases behind one interface, public for crates with tables of
//!   their own.
//!
//! Time comes from the caller's clock only through `now` values taken here with microsecond
//! precision, so a record read back equals the record written on both backends.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

pub mod audit;
pub mod backend;
pub mod console;
pub mod control;
pub mod error;
pub mod jobs;
pub mod operators;
pub mod ops;
pub mod outage;
pub mod retention;
pub mod task_leases;
pub mod tenants;

pub use audit::AuditEntry;
use backend::Db;
pub use console::{ConsoleSession, KindLoad, KindThroughput, OperationStep, SessionToken, TenantLoad};
pub use control::{Limit, LimitScope, Pause, PauseScope, Rate};
pub use error::StoreError;
pub use jobs::{AdminJobFilter, FailedBatch, FailedFilter, FailedJob, MAX_KEY_FILTER_LEN, RetriedBatch};
pub use jobs::{AttemptFailure, JobFilter, JobPage, MAX_PAGE_SIZE, ProgressWrite, Write, WriteOutcome};
pub use operators::{Operator, OperatorKey, OperatorName};
pub use ops::{OperationBegin, OperationFinish};
pub use retention::Pruned;
pub use task_leases::TaskLease;
pub use tenants::{ApiKey, Tenant};

/// The database used when no URL is configured: a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://longhaul.db";

static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Pool size.
    pub max_connections: u32,
    /// How long a caller waits for a connection before getting a retryable error. This bounds how
    /// long a request can hang while the database is down.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { max_connections: 10, acquire_timeout: Duration::from_secs(2) }
    }
}

/// How long a PostgreSQL connection may sit idle in the pool and still be handed out without a
/// ping. A server that ended it within this window (a restart, `pg_terminate_backend`) fails the
/// caller's first statement on it with a retryable error instead (workers hold through it, the
/// API answers `503`). The pool's idle reaper also restarts this clock when it puts a connection
/// back (every few minutes), without a ping.
pub const PING_IDLE_AFTER: Duration = Duration::from_millis(500);

/// Application storage. Cheap to clone (it holds a connection pool).
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    auth_cache: std::sync::Arc<tenants::AuthCache>,
}

/// Which database a [`Store`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// PostgreSQL.
    Postgres,
    /// SQLite.
    Sqlite,
}

impl Store {
    /// Connects to `url` — `postgres://…`/`postgresql://…` or `sqlite://…` — or to
    /// [`DEFAULT_DATABASE_URL`] when `url` is `None`. A SQLite file is created if missing and runs
    /// in WAL mode with full synchronous commits. Migrations are not applied; see [`Store::migrate`].
    ///
    /// # Errors
    /// [`StoreError::UnsupportedScheme`] for a URL that names neither backend,
    /// [`StoreError::InvalidUrl`] for one that does not parse;
    /// [`StoreError::Database`] when the database cannot be reached.
    pub async fn connect(url: Option<&str>, options: &StoreOptions) -> Result<Self, StoreError> {
        let url = url.unwrap_or(DEFAULT_DATABASE_URL);
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let connect = PgConnectOptions::from_str(url)
                .map_err(|source| StoreError::InvalidUrl { backend: "PostgreSQL", source })?;
            let pool = match PgPoolOptions::new()
                // sqlx pings a connection when it goes back to the pool and, by default, again
                // before handing it out: a round trip per use. One idle for less than
                // `PING_IDLE_AFTER` (mostly: released a moment ago, after its release ping) is
                // handed out as is, as HikariCP's `aliveBypassWindowMs` does; one idle longer is
                // pinged first, and a dead one is replaced by a new connection without the caller
                // seeing it (sqlx logs a warning for it).
                .test_before_acquire(false)
                .before_acquire(|conn, meta| {
                    Box::pin(async move {
                        if meta.idle_for >= PING_IDLE_AFTER {
                            use sqlx::Connection as _;
                            conn.ping().await?;
                        }
                        Ok(true)
                    })
                })
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await
            {
                Ok(pool) => pool,
                Err(sqlx::Error::PoolTimedOut) => {
                    // The pool only says it timed out; one direct attempt says why (refused,
                    // unknown host, authentication). Its messages never contain the password.
                    use sqlx::ConnectOptions as _;
                    let cause = match tokio::time::timeout(options.acquire_timeout, connect.connect()).await {
                        Ok(Err(e)) => e,
                        _ => sqlx::Error::PoolTimedOut,
                    };
                    return Err(StoreError::Database(cause));
                }
                Err(e) => return Err(e.into()),
            };
            Db::Postgres(pool)
        } else if url.starts_with("sqlite:") {
            let connect = SqliteConnectOptions::from_str(url)
                .map_err(|source| StoreError::InvalidUrl { backend: "SQLite", source })?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let pool = SqlitePoolOptions::new()
                .max_connections(options.max_connections)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect)
                .await?;
            Db::Sqlite(pool)
        } else {
            let scheme = url.split(':').next().unwrap_or_default();
            return Err(StoreError::UnsupportedScheme(scheme.to_owned()));
        };
        Ok(Self { db, auth_cache: std::sync::Arc::default() })
    }

    /// Connects and applies pending migrations.
    ///
    /// # Errors
    /// As [`Store::connect`] and [`Store::migrate`].
    pub async fn connect_and_migrate(url: Option<&str>, options: &StoreOptions) -> Result<Self, StoreError> {
        let store = Self::connect(url, options).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Applies the embedded migrations that have not run yet. Safe to call from several processes
    /// at once (sqlx takes an advisory lock on PostgreSQL).
    ///
    /// # Errors
    /// [`StoreError::Migrate`] when a migration fails or the applied history differs from the
    /// embedded one.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.db {
            Db::Postgres(pool) => PG_MIGRATOR.run(pool).await?,
            Db::Sqlite(pool) => SQLITE_MIGRATOR.run(pool).await?,
        }
        Ok(())
    }

    /// The connection pool, to run statements of tables the store does not own on the store's
    /// database (see [`backend`]).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Which backend this store uses.
    pub fn kind(&self) -> BackendKind {
        match self.db {
            Db::Postgres(_) => BackendKind::Postgres,
            Db::Sqlite(_) => BackendKind::Sqlite,
        }
    }

    /// Checks that the database answers (for `/readyz`).
    ///
    /// # Errors
    /// [`StoreError::Database`] when it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db.execute("SELECT 1", &[]).await.map(|_| ())
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.db {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }
}

/// The current time at the precision both backends store (microseconds): what every timestamp
/// the store writes is taken with, and what a crate writing tables of its own through [`backend`]
/// should use, so a row read back equals the row written.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
