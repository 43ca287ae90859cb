//! [`StoreError`]: what can go wrong talking to application storage, split into retryable
//! (the database is unavailable or busy) and permanent failures — among them values the database
//! cannot store ([`StoreError::is_unstorable`]), which are the input's fault.

use longhaul_core::{FailureCase, JobError};

/// An application-storage failure. Messages name the failure only; the cause, if any, is the
/// error's [`source`](std::error::Error::source) — show the chain ([`StoreError::report`]).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A database URL names neither backend.
    #[error("unsupported database URL scheme {0:?}: use postgres://… or sqlite://…")]
    UnsupportedScheme(String),
    /// A database URL of a known backend does not parse.
    #[error("invalid {backend} URL")]
    InvalidUrl {
        /// `PostgreSQL` or `SQLite`.
        backend: &'static str,
        /// What the driver said.
        #[source]
        source: sqlx::Error,
    },
    /// A page cursor this store did not issue (the caller's input).
    #[error("invalid cursor {0:?}")]
    InvalidCursor(String),
    /// An attempt number beyond what the database stores.
    #[error("attempt {0} is out of range")]
    AttemptOutOfRange(u32),
    /// The operating system's random source failed (issuing an API key).
    #[error("the OS random source failed")]
    Random(#[source] getrandom::Error),
    /// A task of this process that writes or reads for its callers (a batcher) has ended, so the
    /// request never reached the database: the process is stopping.
    #[error("the {0} has stopped")]
    Stopped(&'static str),
    /// The batched call a request was in failed for no fault of the request's (the database
    /// unreachable, a wait for a connection timed out, a deadlock): retryable, as the failure it
    /// stands for. Holds that failure's report.
    #[error("the batched call it was in failed: {0}")]
    BatchFailed(String),
    /// A step's operation was taken over by a newer attempt of its job (this attempt's lease ran
    /// out while it still ran): this attempt must not run the step or go on. Not retryable.
    #[error("the operation was taken over by attempt {0}")]
    Superseded(u32),
    /// A referenced row does not exist (or belongs to another tenant).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A row holds a value the code cannot represent; the database was changed outside longhaul.
    #[error("corrupt row in {table}: {detail}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// What is wrong.
        detail: String,
    },
}

impl StoreError {
    /// For a batched call's failure that cannot be any item's fault — the connection: the
    /// database unreachable, shutting down or refusing connections, the pool's wait timed out or
    /// the pool closed — the error each item is answered with ([`StoreError::BatchFailed`],
    /// retryable); `None` for any other, deadlocks, timeouts of a statement and resource limits included (an item or the
    /// batch's size can cause those: serving the items alone finds out).
    pub fn for_each_item(&self) -> Option<StoreError> {
        let connection = match self {
            Self::Database(
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed,
            ) => true,
            Self::Database(sqlx::Error::Database(db)) => {
                db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() && {
                    let code = db.code().unwrap_or_default();
                    // 55000 here is a database that refuses connections (ALLOW_CONNECTIONS
                    // false): the batches' plain statements cannot raise it for one item.
                    code.starts_with("08") || code.starts_with("57P") || code == "55000"
                }
            }
            _ => false,
        };
        connection.then(|| StoreError::BatchFailed(self.report()))
    }

    /// Whether trying again later may succeed: the database was unreachable, timed out, or
    /// reported a serialization failure, deadlock or lock contention. [`StoreError::Stopped`] is
    /// not: this process is stopping, and trying again in it cannot succeed (callers that answer
    /// someone else, as the producer's HTTP API, report it as unavailability all the same).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Database(e) => match e {
                sqlx::Error::Io(_)
                | sqlx::Error::Tls(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Protocol(_) => true,
                sqlx::Error::Database(db) => {
                    let code = db.code().unwrap_or_default();
                    if db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some() {
                        // serialization_failure, deadlock_detected, connection exceptions (08xxx),
                        // insufficient resources (53xxx), operator intervention (57xxx), and
                        // 55000, which a server answers while a database refuses connections.
                        matches!(code.as_ref(), "40001" | "40P01" | "55000")
                            || ["08", "53", "57"].iter().any(|p| code.starts_with(p))
                    } else {
                        // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes. Only
                        // SQLite's numeric codes: a numeric SQLSTATE such as PostgreSQL's 22021
                        // (22021 & 0xff = 5) is no SQLite code.
                        code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
                    }
                }
                _ => false,
            },
            Self::BatchFailed(_) => true,
            Self::Migrate(_)
            | Self::UnsupportedScheme(_)
            | Self::InvalidUrl { .. }
            | Self::InvalidCursor(_)
            | Self::AttemptOutOfRange(_)
            | Self::Random(_)
            | Self::Stopped(_)
            | Self::Superseded(_)
            | Self::NotFound(_)
            | Self::Corrupt { .. } => false,
        }
    }

    /// Whether the database refused a value it cannot hold — PostgreSQL text and `jsonb` cannot
    /// contain NUL (SQLSTATE 22021, "invalid byte sequence", and 22P05, "unsupported Unicode escape
    /// sequence"). Never retryable: the same value fails again; the caller's input is at fault.
    pub fn is_unstorable(&self) -> bool {
        match self {
            Self::Database(sqlx::Error::Database(db)) => {
                db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>().is_some()
                    && matches!(db.code().as_deref(), Some("22021" | "22P05"))
            }
            _ => false,
        }
    }

    /// The error and its causes on one line, `: `-separated: how it reads where only text goes on
    /// (a job's error message, a log field). A cause its parent's message already ends with (sqlx
    /// quotes its own sources) is not repeated.
    pub fn report(&self) -> String {
        longhaul_core::Report(self).to_string()
    }
}

impl From<StoreError> for JobError {
    /// Storage failures inside a pipeline are temporary infrastructure errors when retryable,
    /// invalid job data when the row is missing or a value cannot be stored, and retryable
    /// otherwise (a retry is the safe default: the attempt limit still bounds it).
    fn from(e: StoreError) -> Self {
        let case = match e {
            StoreError::NotFound(_) => FailureCase::InvalidJobData,
            _ if e.is_unstorable() => FailureCase::InvalidJobData,
            _ => FailureCase::TemporaryInfrastructure,
        };
        JobError::new(case, e.report())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failure_that_is_no_items_fault_is_shared_by_a_batchs_items() {
        let outage = StoreError::Database(sqlx::Error::PoolTimedOut);
        let each = outage.for_each_item().expect("a pool timeout is no item's fault");
        assert!(each.is_retryable(), "each item may try again: {each:?}");
        assert!(each.to_string().contains("batched call"), "{each}");
        assert!(StoreError::NotFound("job").for_each_item().is_none());
        assert!(StoreError::Stopped("recorder").for_each_item().is_none());
        assert!(StoreError::InvalidCursor("x".into()).for_each_item().is_none());
        // Retryable, but possibly one item's doing: served alone.
        assert!(StoreError::Database(sqlx::Error::Protocol("x".into())).is_retryable());
        assert!(StoreError::Database(sqlx::Error::Protocol("x".into())).for_each_item().is_none());
    }

    #[test]
    fn a_report_prints_each_cause_once() {
        let e = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(e.to_string(), "database error");
        assert_eq!(e.report(), "database error: pool timed out while waiting for an open connection");
        // sqlx quotes its own source in its message; the report does not repeat it.
        let e = StoreError::Database(sqlx::Error::Configuration("bad port".into()));
        assert_eq!(e.report(), "database error: error with configuration: bad port");
        assert_eq!(StoreError::Stopped("recorder").report(), "the recorder has stopped");
    }

    #[test]
    fn only_an_unavailable_database_is_retryable() {
        assert!(StoreError::Database(sqlx::Error::PoolTimedOut).is_retryable());
        for e in [
            StoreError::Stopped("recorder"),
            StoreError::InvalidCursor("x".into()),
            StoreError::AttemptOutOfRange(u32::MAX),
            StoreError::UnsupportedScheme("mysql".into()),
            StoreError::NotFound("job"),
        ] {
            assert!(!e.is_retryable(), "{e}");
        }
    }
}
