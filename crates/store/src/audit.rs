//! The audit log: what happened to each job, one row per event, oldest first. The job writes
//! append their own rows in the transaction (or statement) that applies them; services append
//! others with [`Store::append_audit`]. Operators' control actions (pauses, limits) are rows
//! without a job, under the tenant they concern or [`QUEUE_WIDE`] (see [`crate::control`]).

use chrono::{DateTime, Utc};
use longhaul_core::{JobId, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::backend::{Arg, Session};
use crate::{Store, StoreError, now};

/// `$1` tenant, `$2` job (nullable), `$3` action, `$4` detail, `$5` time.
const INSERT: &str = include_str!("../sql/common/audit/insert.sql");
const SELECT_JOB: &str = include_str!("../sql/common/audit/select_job.sql");

/// The `tenant_id` of audit rows that concern no one tenant: an operator's pause or resume of a
/// queue or a kind, and a kind's limit (a tenant's limit is recorded under the tenant). No tenant
/// id can be `*`.
pub const QUEUE_WIDE: &str = "*";

/// One audit row.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// The job it concerns, if any.
    pub job_id: Option<String>,
    /// What happened: `enqueued`, `duplicate_enqueue`, `started`, `retry_scheduled`, `completed`,
    /// `failed`, `alert`, or an action a service appends.
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

    /// The audit trail of one job of `tenant`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn job_audit(&self, tenant: &TenantId, job: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let args: [Arg<'_>; 2] = [tenant.as_str().into(), job.as_str().into()];
        let rows: Vec<AuditRow> = self.db.fetch_all(SELECT_JOB, &args).await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry { job_id: r.job_id, action: r.action, detail: r.detail.0, at: r.at })
            .collect())
    }
}
