//! The audit log: what happened to each job, oldest first. The job writes append their own rows in
//! the transaction (or statement) that applies them; services append others with
//! [`Store::append_audit`]. Operators' control actions (pauses, limits) are rows without a job,
//! under the tenant they concern or [`QUEUE_WIDE`] (see [`crate::control`]).
//!
//! # Rows, and entries read from the record
//!
//! A job's trail ([`Store::job_audit`]) is its rows with entries read from its record, which are
//! never rows:
//!
//! - `enqueued`, first: at the record's `created_at`, with the kind and key (and `run_at` and
//!   `priority` when set) — what creating the record wrote into it.
//! - `started`, on PostgreSQL, for each attempt the record keeps the start of (`attempt_starts`,
//!   by attempt number, migration 0010): after the rows of earlier attempts and before those of its
//!   own or later ones, and among the rest (a cancel request, an operator's action) by time.
//! - `completed`, once the record is completed: at its `finished_at`, with the attempt that
//!   completed (`attempts`). Completion is terminal, so it follows the last `started` entry; rows
//!   written after it (a duplicate request for the finished job, say) follow it.
//!
//! Each says nothing the record does not, and as a row each cost every job an insert into
//! `audit_log` and its three indexes on the hot path. Everything else is a row: `started` on SQLite
//! (and for attempts started before migration 0010), `duplicate_enqueue`, `retry_scheduled`,
//! `failed`, `alert`, the cancel rows and operators' actions (`retried`, …). Once a job's record is
//! pruned (with its rows, see [`crate::retention`]) its trail is whatever rows remain. A trail whose
//! rows hold an `enqueued`, `completed` or an attempt's `started` of their own (written before these
//! entries were read from the record) is read as stored, without a second one.

use chrono::{DateTime, Utc};
use longhaul_core::{JobId, JobRecord, JobStatus, TenantId};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::backend::{Arg, Session};
use crate::jobs::{enqueue_detail, select_record};
use crate::{BackendKind, Store, StoreError, now};

/// `$1` tenant, `$2` job (nullable), `$3` action, `$4` detail, `$5` time.
const INSERT: &str = include_str!("../sql/common/audit/insert.sql");
const SELECT_JOB: &str = include_str!("../sql/common/audit/select_job.sql");
/// `$1` tenant, `$2` job: each attempt's start the record keeps (PostgreSQL).
const SELECT_STARTS: &str = include_str!("../sql/postgres/audit/select_starts.sql");

/// The `tenant_id` of audit rows that concern no one tenant: an operator's pause or resume of a
/// queue or a kind, and a kind's limit (a tenant's limit is recorded under the tenant). No tenant
/// id can be `*`.
pub const QUEUE_WIDE: &str = "*";

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The job it concerns, if any.
    pub job_id: Option<String>,
    /// What happened: `enqueued` or `completed` (read from the record), `duplicate_enqueue`,
    /// `started`, `retry_scheduled`, `failed`, `alert`, or an action a service appends.
    pub action: String,
    /// Details (attempt, class, message, …).
    pub detail: Value,
    /// When.
    pub at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    job_id: Option<String>,
    action: String,
    detail: Json<Value>,
    at: DateTime<Utc>,
}

/// `detail` with `"attempt": attempts` — the attempt the job is at — once it has had one: a row
/// written by a request while a job runs, or after an attempt (a cancel request, a retry), carries
/// the attempt it follows, so a job's trail places it after that attempt's `started` entry read
/// from the record, whatever the clocks of the hosts that wrote them say.
pub(crate) fn at_attempt(mut detail: Value, attempts: u32) -> Value {
    if attempts > 0
        && let Some(fields) = detail.as_object_mut()
    {
        fields.insert("attempt".to_owned(), json!(attempts));
    }
    detail
}

/// Appends an audit row in `session` (the transaction of the write it records).
pub(crate) async fn append(
    session: &mut Session,
    tenant: &TenantId,
    job: Option<&JobId>,
    action: &str,
    detail: &Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    append_as(session, tenant.as_str(), job, action, detail, at).await
}

/// [`append`] under `tenant` given as text: a tenant's id, or [`QUEUE_WIDE`].
pub(crate) async fn append_as(
    session: &mut Session,
    tenant: &str,
    job: Option<&JobId>,
    action: &str,
    detail: &Value,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let args = [tenant.into(), job.map(JobId::as_str).into(), action.into(), detail.into(), at.into()];
    session.execute(INSERT, &args).await.map(|_| ())
}

impl Store {
    /// Appends an audit row.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn append_audit(
        &self,
        tenant: &TenantId,
        job: Option<&JobId>,
        action: &str,
        detail: &Value,
    ) -> Result<(), StoreError> {
        append(&mut self.db.connect().await?, tenant, job, action, detail, now()).await
    }

    /// The audit trail of one job of `tenant`, oldest first: its rows with the entries read from
    /// its record (see the module docs). Reads the record, the rows, then (on PostgreSQL) its
    /// attempts' starts.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn job_audit(&self, tenant: &TenantId, job: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let mut session = self.db.connect().await?;
        let record = select_record(&mut session, tenant, job).await?;
        let rows = job_rows(&mut session, tenant, job).await?;
        // After the rows: a start committed in between shows without the rows that follow it (a
        // state the job was in), never a row of an attempt without its start.
        let starts =
            if record.is_some() { self.attempt_starts(&mut session, tenant, job).await? } else { Vec::new() };
        Ok(trail(record.as_ref(), &starts, rows))
    }

    /// [`Store::job_audit`] of the job of `record`, already read: the rows, and on PostgreSQL its
    /// attempts' starts.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn job_audit_of(&self, record: &JobRecord) -> Result<Vec<AuditEntry>, StoreError> {
        let mut session = self.db.connect().await?;
        let rows = job_rows(&mut session, &record.tenant_id, &record.job_id).await?;
        let starts = self.attempt_starts(&mut session, &record.tenant_id, &record.job_id).await?;
        Ok(trail(Some(record), &starts, rows))
    }

    /// Each attempt's start the record of `job` keeps, as (attempt, time) in attempt order: on
    /// PostgreSQL (migration 0010); none on SQLite, whose starts are rows.
    async fn attempt_starts(
        &self,
        session: &mut Session,
        tenant: &TenantId,
        job: &JobId,
    ) -> Result<Vec<(i32, DateTime<Utc>)>, StoreError> {
        if self.kind() != BackendKind::Postgres {
            return Ok(Vec::new());
        }
        let args: [Arg<'_>; 2] = [tenant.as_str().into(), job.as_str().into()];
        session.fetch_all(SELECT_STARTS, &args).await
    }
}

/// The audit rows of `job` of `tenant`, in the order appended.
async fn job_rows(
    session: &mut Session,
    tenant: &TenantId,
    job: &JobId,
) -> Result<Vec<AuditEntry>, StoreError> {
    let args: [Arg<'_>; 2] = [tenant.as_str().into(), job.as_str().into()];
    let rows: Vec<AuditRow> = session.fetch_all(SELECT_JOB, &args).await?;
    Ok(rows
        .into_iter()
        .map(|r| AuditEntry { job_id: r.job_id, action: r.action, detail: r.detail.0, at: r.at })
        .collect())
}

/// The actions of rows that can follow a job's completion: they leave its record as it is.
const AFTER_COMPLETION: [&str; 2] = ["duplicate_enqueue", "alert"];

/// The attempt an entry concerns, if its detail names one.
fn attempt_of(e: &AuditEntry) -> Option<i64> {
    e.detail.get("attempt").and_then(Value::as_i64)
}

/// A job's trail: its `rows` with the `enqueued`, `started` (`starts`, by attempt) and `completed`
/// entries of its `record` (none when the record is gone, or the rows hold them already).
fn trail(
    record: Option<&JobRecord>,
    starts: &[(i32, DateTime<Utc>)],
    mut rows: Vec<AuditEntry>,
) -> Vec<AuditEntry> {
    let Some(r) = record else { return rows };
    let stored = |action: &str| rows.iter().any(|e| e.action == action);
    let (enqueued, completed) =
        (!stored("enqueued"), r.status == JobStatus::Completed && !stored("completed"));
    let entry = |action: &str, detail: Value, at: DateTime<Utc>| AuditEntry {
        job_id: Some(r.job_id.as_str().to_owned()),
        action: action.to_owned(),
        detail,
        at,
    };
    for &(attempt, at) in starts {
        let n = i64::from(attempt);
        if rows.iter().any(|e| e.action == "started" && attempt_of(e) == Some(n)) {
            continue;
        }
        // After every row of an earlier attempt, before any of this attempt or a later one (its
        // retry, its failure, a later start); between them, by time.
        let after = rows.iter().rposition(|e| attempt_of(e).is_some_and(|a| a < n)).map_or(0, |i| i + 1);
        let before = rows
            .iter()
            .position(|e| attempt_of(e).is_some_and(|a| a >= n))
            .map_or(rows.len(), |i| i.max(after));
        let pos = rows[after..before].iter().position(|e| e.at > at).map_or(before, |i| after + i);
        rows.insert(pos, entry("started", json!({ "attempt": n }), at));
    }
    if completed {
        let finished = r.finished_at.unwrap_or(r.updated_at);
        // Completion is terminal: only rows that do not write the record (a duplicate request, an
        // alert) can follow it. So after every other row — whatever its time says: a cancel
        // request committed before the completion can carry a later clock reading — and among
        // the trailing ones, after those written by the time it finished.
        let settled =
            rows.iter().rposition(|e| !AFTER_COMPLETION.contains(&e.action.as_str())).map_or(0, |i| i + 1);
        let at = rows[settled..].iter().position(|e| e.at > finished).map_or(rows.len(), |i| settled + i);
        rows.insert(at, entry("completed", json!({ "attempt": r.attempts }), finished));
    }
    if enqueued {
        rows.insert(0, entry("enqueued", enqueue_detail(r), r.created_at));
    }
    rows
}
