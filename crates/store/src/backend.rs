//! The two databases behind one small interface: [`Db`] (a pool) hands out a [`Session`] (one
//! connection, in a transaction or not), which runs a statement with [`Arg`] parameters on
//! whichever backend it holds and decodes its rows once, through `sqlx::FromRow`.
//!
//! The SQL lives in `.sql` files under `crates/store/sql/`: `common/` for statements both backends
//! run as written, `postgres/` and `sqlite/` for those only one runs. PostgreSQL-only statements
//! bind arrays, which have no SQLite type, so their callers run them with sqlx directly on the
//! pool of [`Db::Postgres`] (or a transaction of it); everything else goes through [`Session`]'s
//! methods. Where the paths of the two backends part, the code says so with a `match` on [`Db`].
//!
//! Public so that a crate keeping tables of its own in the same database (a job kind's data, such
//! as the triage kind's tickets) runs its statements on the store's pool and, where it must, in one
//! transaction with a row of the store's (see [`crate::ops`]): reach it with
//! [`Store::db`](crate::Store::db). Such a crate keeps its own `.sql` files and migrations;
//! statements are `&'static str`, so every one is a compile-time constant as here.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use sqlx::{
    Arguments as _, Database, Encode, FromRow, PgPool, Postgres, Sqlite, SqlitePool, Transaction, Type,
};

use crate::StoreError;

/// The connection pool of one backend.
#[derive(Debug, Clone)]
pub enum Db {
    /// PostgreSQL.
    Postgres(PgPool),
    /// SQLite.
    Sqlite(SqlitePool),
}

/// A statement parameter. Each variant binds as the same SQL type on both backends.
#[derive(Debug, Clone, Copy)]
pub enum Arg<'a> {
    /// `text`, or NULL.
    Text(Option<&'a str>),
    /// `integer` (`int4`), or NULL.
    Int(Option<i32>),
    /// `bigint` (`int8`).
    BigInt(i64),
    /// `double precision` (`float8`; `REAL` on SQLite), or NULL.
    Float(Option<f64>),
    /// `timestamptz` (RFC 3339 text on SQLite), or NULL.
    Time(Option<DateTime<Utc>>),
    /// `jsonb` (JSON text on SQLite).
    Json(&'a Value),
    /// `bytea` (a blob on SQLite).
    Bytes(&'a [u8]),
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(v: &'a str) -> Self {
        Self::Text(Some(v))
    }
}

impl<'a> From<Option<&'a str>> for Arg<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Self::Text(v)
    }
}

impl From<i32> for Arg<'_> {
    fn from(v: i32) -> Self {
        Self::Int(Some(v))
    }
}

impl From<Option<i32>> for Arg<'_> {
    fn from(v: Option<i32>) -> Self {
        Self::Int(v)
    }
}

impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Self::BigInt(v)
    }
}

impl From<Option<f64>> for Arg<'_> {
    fn from(v: Option<f64>) -> Self {
        Self::Float(v)
    }
}

impl From<DateTime<Utc>> for Arg<'_> {
    fn from(v: DateTime<Utc>) -> Self {
        Self::Time(Some(v))
    }
}

impl From<Option<DateTime<Utc>>> for Arg<'_> {
    fn from(v: Option<DateTime<Utc>>) -> Self {
        Self::Time(v)
    }
}

impl<'a> From<&'a Value> for Arg<'a> {
    fn from(v: &'a Value) -> Self {
        Self::Json(v)
    }
}

impl<'a> From<&'a [u8]> for Arg<'a> {
    fn from(v: &'a [u8]) -> Self {
        Self::Bytes(v)
    }
}

/// A row type both backends decode (every `#[derive(sqlx::FromRow)]` struct and tuple of
/// decodable columns).
pub trait Row: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

impl<T> Row for T where T: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin {}

/// The parameters of one statement, encoded for backend `DB`; an encoding failure is reported as
/// sqlx reports one at execution.
fn arguments<DB>(args: &[Arg<'_>]) -> Result<DB::Arguments, sqlx::Error>
where
    DB: Database,
    for<'a> Option<&'a str>: Encode<'a, DB> + Type<DB>,
    for<'a> Option<i32>: Encode<'a, DB> + Type<DB>,
    for<'a> i64: Encode<'a, DB> + Type<DB>,
    for<'a> Option<f64>: Encode<'a, DB> + Type<DB>,
    for<'a> Option<DateTime<Utc>>: Encode<'a, DB> + Type<DB>,
    for<'a> Json<&'a Value>: Encode<'a, DB> + Type<DB>,
    for<'a> &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    let mut out = DB::Arguments::default();
    for arg in args {
        match *arg {
            Arg::Text(v) => out.add(v),
            Arg::Int(v) => out.add(v),
            Arg::BigInt(v) => out.add(v),
            Arg::Float(v) => out.add(v),
            Arg::Time(v) => out.add(v),
            Arg::Json(v) => out.add(Json(v)),
            Arg::Bytes(v) => out.add(v),
        }
        .map_err(sqlx::Error::Encode)?;
    }
    Ok(out)
}

/// One pooled connection of backend `DB`, in a transaction or in autocommit mode.
#[derive(Debug)]
pub(crate) enum Handle<DB: Database> {
    Transaction(Transaction<'static, DB>),
    Autocommit(PoolConnection<DB>),
}

impl<DB: Database> Handle<DB> {
    /// A transaction when `transaction`, else a connection in autocommit mode.
    pub(crate) async fn open(pool: &sqlx::Pool<DB>, transaction: bool) -> Result<Self, StoreError> {
        Ok(if transaction {
            Self::Transaction(pool.begin().await?)
        } else {
            Self::Autocommit(pool.acquire().await?)
        })
    }

    /// The connection to run statements on.
    pub(crate) fn connection(&mut self) -> &mut DB::Connection {
        match self {
            Self::Transaction(tx) => tx,
            Self::Autocommit(conn) => conn,
        }
    }

    /// Commits the transaction; in autocommit mode there is nothing to commit.
    pub(crate) async fn commit(self) -> Result<(), StoreError> {
        if let Self::Transaction(tx) = self {
            tx.commit().await?;
        }
        Ok(())
    }
}

/// One connection of either backend, in a transaction ([`Db::begin`]) or in autocommit mode
/// ([`Db::connect`]): what statements run on.
#[derive(Debug)]
pub struct Session(Conn);

#[derive(Debug)]
enum Conn {
    Postgres(Handle<Postgres>),
    Sqlite(Handle<Sqlite>),
}

impl Db {
    /// A connection in autocommit mode: each statement commits on its own.
    pub async fn connect(&self) -> Result<Session, StoreError> {
        self.open(false).await
    }

    /// A connection in a new transaction; see [`Session::commit`]. Dropped without a commit, the
    /// transaction rolls back.
    pub async fn begin(&self) -> Result<Session, StoreError> {
        self.open(true).await
    }

    async fn open(&self, transaction: bool) -> Result<Session, StoreError> {
        Ok(match self {
            Self::Postgres(pool) => Session(Conn::Postgres(Handle::open(pool, transaction).await?)),
            Self::Sqlite(pool) => Session(Conn::Sqlite(Handle::open(pool, transaction).await?)),
        })
    }

    /// Runs one statement on its own and returns its first row, if any.
    pub async fn fetch_optional<R: Row>(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, StoreError> {
        self.connect().await?.fetch_optional(sql, args).await
    }

    /// Runs one statement on its own and returns its rows.
    pub async fn fetch_all<R: Row>(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<Vec<R>, StoreError> {
        self.connect().await?.fetch_all(sql, args).await
    }

    /// Runs one statement on its own, prepared for this call only, and returns its rows; see
    /// [`Session::fetch_all_uncached`].
    pub async fn fetch_all_uncached<R: Row>(
        &self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        self.connect().await?.fetch_all_uncached(sql, args).await
    }

    /// Runs one statement on its own and returns how many rows it changed.
    pub async fn execute(&self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        self.connect().await?.execute(sql, args).await
    }
}

impl Session {
    /// Runs `sql` and returns its first row, if any.
    pub async fn fetch_optional<R: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Option<R>, StoreError> {
        Ok(match &mut self.0 {
            Conn::Postgres(h) => {
                sqlx::query_as_with(sql, arguments::<Postgres>(args)?).fetch_optional(h.connection()).await?
            }
            Conn::Sqlite(h) => {
                sqlx::query_as_with(sql, arguments::<Sqlite>(args)?).fetch_optional(h.connection()).await?
            }
        })
    }

    /// Runs `sql` and returns its rows.
    pub async fn fetch_all<R: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        self.fetch_all_with(sql, args, true).await
    }

    /// Runs `sql` as a statement prepared for this call only (not kept in the connection's
    /// statement cache), and returns its rows. A cached statement soon runs with a plan made once
    /// for any parameters (a PostgreSQL generic plan), in which an optional filter
    /// (`$n IS NULL OR col = $n`) can use no index; one prepared for this call is planned with the
    /// values bound, so the filters left NULL fold away and the others can use their indexes.
    /// Costs a parse and a plan per call: for reads with optional filters, not for the hot path.
    pub async fn fetch_all_uncached<R: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
    ) -> Result<Vec<R>, StoreError> {
        self.fetch_all_with(sql, args, false).await
    }

    async fn fetch_all_with<R: Row>(
        &mut self,
        sql: &'static str,
        args: &[Arg<'_>],
        persistent: bool,
    ) -> Result<Vec<R>, StoreError> {
        Ok(match &mut self.0 {
            Conn::Postgres(h) => {
                sqlx::query_as_with(sql, arguments::<Postgres>(args)?)
                    .persistent(persistent)
                    .fetch_all(h.connection())
                    .await?
            }
            Conn::Sqlite(h) => {
                sqlx::query_as_with(sql, arguments::<Sqlite>(args)?)
                    .persistent(persistent)
                    .fetch_all(h.connection())
                    .await?
            }
        })
    }

    /// Runs `sql` and returns how many rows it changed.
    pub async fn execute(&mut self, sql: &'static str, args: &[Arg<'_>]) -> Result<u64, StoreError> {
        Ok(match &mut self.0 {
            Conn::Postgres(h) => sqlx::query_with(sql, arguments::<Postgres>(args)?)
                .execute(h.connection())
                .await?
                .rows_affected(),
            Conn::Sqlite(h) => sqlx::query_with(sql, arguments::<Sqlite>(args)?)
                .execute(h.connection())
                .await?
                .rows_affected(),
        })
    }

    /// Commits the transaction ([`Db::begin`]); in autocommit mode there is nothing to commit.
    pub async fn commit(self) -> Result<(), StoreError> {
        match self.0 {
            Conn::Postgres(h) => h.commit().await,
            Conn::Sqlite(h) => h.commit().await,
        }
    }
}
