//! What the operator console (`/console`, in the producer) keeps and reads: its login sessions
//! (`console_sessions`, migration 0008), and the reads of its pages that no other caller makes —
//! a job's operation log, the live jobs per kind and per tenant, and the jobs finished per kind
//! over the last minutes.
//!
//! A session is issued when an operator logs in with an operator key: a random 256-bit token the
//! browser keeps in a cookie, stored only as its SHA-256 (like every key here), and a CSRF token of
//! its own that the console's forms carry. A session is valid until it expires and only while its
//! operator exists: revoking the operator deletes its sessions (a foreign key), and the read joins
//! `operator_keys` as well.
//!
//! Every read is one statement on both backends (`sql/common/console/`), each named in its first
//! line (`console.kind_load`, …) for the query plans. The live-jobs reads scan the live jobs only
//! (the partial index `jobs_live`), the throughput read is a range of `jobs_finished`, and a job's
//! operation log is read by `operations_by_job`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use longhaul_core::{JobId, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::backend::Arg;
use crate::tenants::{constant_time_eq, hash_key, random_token};
use crate::{Store, StoreError, now};

const INSERT_SESSION: &str = include_str!("../sql/common/console/insert_session.sql");
const SELECT_SESSION: &str = include_str!("../sql/common/console/select_session.sql");
const DELETE_SESSION: &str = include_str!("../sql/common/console/delete_session.sql");
const PRUNE_SESSIONS: &str = include_str!("../sql/common/console/prune_sessions.sql");
const JOB_OPERATIONS: &str = include_str!("../sql/common/console/job_operations.sql");
const KIND_LOAD: &str = include_str!("../sql/common/console/kind_load.sql");
const KIND_THROUGHPUT: &str = include_str!("../sql/common/console/kind_throughput.sql");
const TENANT_LOAD: &str = include_str!("../sql/common/console/tenant_load.sql");

/// The prefix of every console session token.
pub const SESSION_TOKEN_PREFIX: &str = "lhc_";

/// How many minutes [`Store::kind_throughput`] counts, one bucket each.
pub const THROUGHPUT_MINUTES: usize = 5;

/// A console session's secret token, as the browser's cookie holds it. Its `Debug` output is
/// redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(String);

impl SessionToken {
    /// The secret, for the cookie.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionToken(<redacted>)")
    }
}

/// A valid console session.
#[derive(Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// The operator logged in.
    pub operator: String,
    /// The token every form of this session carries (compare with [`ConsoleSession::csrf_matches`]).
    pub csrf: String,
    /// When the operator logged in.
    pub created_at: DateTime<Utc>,
    /// When the session ends.
    pub expires_at: DateTime<Utc>,
}

impl ConsoleSession {
    /// Whether `token` is this session's CSRF token (compared in constant time).
    pub fn csrf_matches(&self, token: &str) -> bool {
        constant_time_eq(self.csrf.as_bytes(), token.as_bytes())
    }
}

impl std::fmt::Debug for ConsoleSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleSession")
            .field("operator", &self.operator)
            .field("csrf", &"<redacted>")
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// One step of a job's operation log: a durable step (or a local effect recorded with its write).
#[derive(Debug, Clone, PartialEq)]
pub struct OperationStep {
    /// The operation id (derived from job, stage and step).
    pub operation_id: String,
    /// The stage it ran in.
    pub stage: String,
    /// The step's name.
    pub effect: String,
    /// `started` (begun, not known to have finished) or `done`.
    pub state: String,
    /// The attempt that last began it.
    pub attempt: i32,
    /// Its stored result, once done.
    pub result: Option<Value>,
    /// When it was first begun.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// The live jobs of one kind ([`Store::kind_load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindLoad {
    /// The kind.
    pub kind: String,
    /// Jobs `running`.
    pub running: u64,
    /// Jobs `scheduled` or `queued` (retries waiting for their time included).
    pub queued: u64,
    /// Since when the longest-waiting job that may run now waits; `None` when none does.
    pub waiting_since: Option<DateTime<Utc>>,
}

/// The jobs of one kind that finished in each of the last [`THROUGHPUT_MINUTES`] minutes
/// ([`Store::kind_throughput`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindThroughput {
    /// The kind.
    pub kind: String,
    /// Jobs finished per minute, oldest minute first (the last one ends now).
    pub per_minute: [u64; THROUGHPUT_MINUTES],
}

/// One tenant with its live jobs ([`Store::tenant_load`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantLoad {
    /// The tenant.
    pub tenant_id: String,
    /// Its name.
    pub name: String,
    /// Its jobs `running`.
    pub running: u64,
    /// Its jobs `scheduled` or `queued`.
    pub queued: u64,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    token_hash: Vec<u8>,
    operator: String,
    csrf: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: String,
    stage: String,
    effect: String,
    state: String,
    attempt: i32,
    result: Option<Json<Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct KindLoadRow {
    kind: String,
    running: i64,
    queued: i64,
    waiting_since: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct ThroughputRow {
    kind: String,
    m1: i64,
    m2: i64,
    m3: i64,
    m4: i64,
    m5: i64,
}

#[derive(sqlx::FromRow)]
struct TenantLoadRow {
    tenant_id: String,
    name: String,
    running: i64,
    queued: i64,
}

/// A count as read (never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// Logs operator `operator` in for `ttl`: a new session (and its token, returned once, stored
    /// only as a hash). Sessions that have expired are pruned on the way.
    ///
    /// # Errors
    /// [`StoreError::Database`] (a foreign-key violation when no such operator exists);
    /// [`StoreError::Random`].
    pub async fn create_console_session(
        &self,
        operator: &str,
        ttl: Duration,
    ) -> Result<(SessionToken, ConsoleSession), StoreError> {
        let token = SessionToken(random_token(SESSION_TOKEN_PREFIX)?);
        let csrf = random_token("")?;
        let created_at = now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires_at = created_at.checked_add_signed(ttl).unwrap_or(DateTime::<Utc>::MAX_UTC);
        self.prune_console_sessions().await?;
        let hash = hash_key(token.expose());
        let args: [Arg<'_>; 5] = [
            hash.as_slice().into(),
            operator.into(),
            csrf.as_str().into(),
            created_at.into(),
            expires_at.into(),
        ];
        self.db.execute(INSERT_SESSION, &args).await?;
        Ok((token, ConsoleSession { operator: operator.to_owned(), csrf, created_at, expires_at }))
    }

    /// The session of `token`, if it is valid: issued, not expired, its operator not revoked.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn console_session(&self, token: &str) -> Result<Option<ConsoleSession>, StoreError> {
        if !token.starts_with(SESSION_TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = hash_key(token);
        let row: Option<SessionRow> =
            self.db.fetch_optional(SELECT_SESSION, &[hash.as_slice().into(), now().into()]).await?;
        Ok(row.filter(|r| constant_time_eq(&r.token_hash, &hash)).map(|r| ConsoleSession {
            operator: r.operator,
            csrf: r.csrf,
            created_at: r.created_at,
            expires_at: r.expires_at,
        }))
    }

    /// Ends the session of `token` (a logout); whether there was one.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn delete_console_session(&self, token: &str) -> Result<bool, StoreError> {
        let hash = hash_key(token);
        Ok(self.db.execute(DELETE_SESSION, &[hash.as_slice().into()]).await? > 0)
    }

    /// Deletes the sessions that have expired; how many.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn prune_console_sessions(&self) -> Result<u64, StoreError> {
        self.db.execute(PRUNE_SESSIONS, &[now().into()]).await
    }

    /// The operation log of `tenant`'s job `job`: its steps in the order they were first begun.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn job_operations(
        &self,
        tenant: &TenantId,
        job: &JobId,
    ) -> Result<Vec<OperationStep>, StoreError> {
        let args: [Arg<'_>; 2] = [tenant.as_str().into(), job.as_str().into()];
        let rows: Vec<OperationRow> = self.db.fetch_all(JOB_OPERATIONS, &args).await?;
        Ok(rows
            .into_iter()
            .map(|r| OperationStep {
                operation_id: r.operation_id,
                stage: r.stage,
                effect: r.effect,
                state: r.state,
                attempt: r.attempt,
                result: r.result.map(|j| j.0),
                created_at: r.created_at,
                updated_at: r.updated_at,
            })
            .collect())
    }

    /// The live jobs of every kind that has some, by kind, as they stand at `now`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn kind_load(&self, now: DateTime<Utc>) -> Result<Vec<KindLoad>, StoreError> {
        let rows: Vec<KindLoadRow> = self.db.fetch_all(KIND_LOAD, &[now.into()]).await?;
        Ok(rows
            .into_iter()
            .map(|r| KindLoad {
                kind: r.kind,
                running: count(r.running),
                queued: count(r.queued),
                waiting_since: r.waiting_since,
            })
            .collect())
    }

    /// The jobs finished per kind in each of the [`THROUGHPUT_MINUTES`] minutes before `now`, for
    /// every kind that finished any.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn kind_throughput(&self, now: DateTime<Utc>) -> Result<Vec<KindThroughput>, StoreError> {
        let minutes = THROUGHPUT_MINUTES as i64;
        let bound = |i: i64| now - chrono::Duration::minutes(minutes - i);
        let args: [Arg<'_>; 6] =
            [bound(0).into(), bound(1).into(), bound(2).into(), bound(3).into(), bound(4).into(), now.into()];
        let rows: Vec<ThroughputRow> = self.db.fetch_all(KIND_THROUGHPUT, &args).await?;
        Ok(rows
            .into_iter()
            .map(|r| KindThroughput {
                kind: r.kind,
                per_minute: [count(r.m1), count(r.m2), count(r.m3), count(r.m4), count(r.m5)],
            })
            .collect())
    }

    /// The first `limit` tenants by id, each with its live jobs.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn tenant_load(&self, limit: u32) -> Result<Vec<TenantLoad>, StoreError> {
        let rows: Vec<TenantLoadRow> = self.db.fetch_all(TENANT_LOAD, &[i64::from(limit).into()]).await?;
        Ok(rows
            .into_iter()
            .map(|r| TenantLoad {
                tenant_id: r.tenant_id,
                name: r.name,
                running: count(r.running),
                queued: count(r.queued),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let token = SessionToken("lhc_secret".into());
        assert_eq!(format!("{token:?}"), "SessionToken(<redacted>)");
        let session = ConsoleSession {
            operator: "ops".into(),
            csrf: "csrf-secret".into(),
            created_at: now(),
            expires_at: now(),
        };
        let shown = format!("{session:?}");
        assert!(shown.contains("ops") && !shown.contains("csrf-secret"), "{shown}");
        assert!(session.csrf_matches("csrf-secret"));
        assert!(!session.csrf_matches("csrf-secreT"));
        assert!(!session.csrf_matches(""));
    }
}
