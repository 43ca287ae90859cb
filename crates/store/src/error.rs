//! [`StoreError`]: what can go wrong talking to application storage, split into retryable
//! (the database is unavailable or busy) and permanent failures — among them values the database
//! cannot store ([`StoreError::is_unstorable`]), which are the input's fault.

use longhaul_core::{FailureCase, JobError};

/// An application-storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A query failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The configuration is unusable (for example an unsupported URL).
    #[error("{0}")]
    Config(String),
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
    /// Whether trying again later may succeed: the database was unreachable, timed out, or
    /// reported a serialization failure, deadlock or lock contention.
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
            Self::Migrate(_) | Self::Config(_) | Self::NotFound(_) | Self::Corrupt { .. } => false,
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
        JobError::new(case, e.to_string())
    }
}
