//! The side-effect operation log and the audit log.
//!
//! The operation log makes side effects at-most-once per [`OperationId`]: a stage calls `begin`
//! before an effect and `finish` with its result after. A later attempt of the same job that finds
//! the operation `done` reuses the stored result instead of running the effect again; one that finds
//! it only `started` (the earlier attempt died mid-effect) runs it again with the same operation id
//! as the receiver's idempotency key.

use chrono::{DateTime, Utc};
use longhaul_core::{JobContext, JobError, JobId, OperationId, OperationLog, OperationState, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::{Store, StoreError, now};

/// The audit insert: `$1` tenant, `$2` job (nullable), `$3` action, `$4` detail JSON, `$5` time.
pub(crate) fn audit_sql() -> &'static str {
    "INSERT INTO audit_log (tenant_id, job_id, action, detail, at) VALUES ($1, $2, $3, $4, $5)"
}

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

#[derive(sqlx::FromRow)]
struct OperationRow {
    state: String,
    attempt: i32,
    result: Option<Json<Value>>,
}

impl Store {
    /// Records that `ctx.attempt` is about to run operation `op`; returns the state it was in
    /// before (`None` the first time). See the module docs.
    ///
    /// # Errors
    /// [`StoreError::Database`]; [`StoreError::Corrupt`] for an unknown stored state.
    pub async fn begin_operation(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> Result<Option<OperationState>, StoreError> {
        let now = now();
        let attempt = i32::try_from(ctx.attempt).unwrap_or(i32::MAX);
        on_pool!(self, pool => {
            let inserted: Option<(String,)> = sqlx::query_as(
                "INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result, \
                 created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'started', $6, NULL, $7, $7) \
                 ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id",
            )
            .bind(op.as_str())
            .bind(ctx.tenant_id.as_str())
            .bind(ctx.job_id.as_str())
            .bind(stage)
            .bind(effect)
            .bind(attempt)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            if inserted.is_some() {
                return Ok(None);
            }
            let row: OperationRow = sqlx::query_as(
                "SELECT state, attempt, result FROM operations WHERE operation_id = $1 AND tenant_id = $2",
            )
            .bind(op.as_str())
            .bind(ctx.tenant_id.as_str())
            .fetch_optional(pool)
            .await?
            .ok_or(StoreError::NotFound("operation"))?;
            match row.state.as_str() {
                "done" => Ok(Some(OperationState::Done { result: row.result.map(|j| j.0).unwrap_or(Value::Null) })),
                "started" => {
                    sqlx::query(
                        "UPDATE operations SET attempt = $3, updated_at = $4 \
                         WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started'",
                    )
                    .bind(op.as_str())
                    .bind(ctx.tenant_id.as_str())
                    .bind(attempt)
                    .bind(now)
                    .execute(pool)
                    .await?;
                    Ok(Some(OperationState::Started { attempt: u32::try_from(row.attempt).unwrap_or(0) }))
                }
                other => Err(StoreError::Corrupt { table: "operations", detail: format!("state = {other:?}") }),
            }
        })
    }

    /// Records that operation `op` finished with `result`. Finishing an operation that is already
    /// done keeps the first result.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `op` was never begun; [`StoreError::Database`].
    pub async fn finish_operation(
        &self,
        tenant: &TenantId,
        op: &OperationId,
        result: &Value,
    ) -> Result<(), StoreError> {
        let now = now();
        let found: Option<(String,)> = on_pool!(self, pool => {
            let updated = sqlx::query(
                "UPDATE operations SET state = 'done', result = $3, updated_at = $4 \
                 WHERE operation_id = $1 AND tenant_id = $2 AND state = 'started'",
            )
            .bind(op.as_str())
            .bind(tenant.as_str())
            .bind(Json(result))
            .bind(now)
            .execute(pool)
            .await?;
            if updated.rows_affected() == 1 {
                Ok::<_, StoreError>(Some((String::new(),)))
            } else {
                Ok(sqlx::query_as("SELECT state FROM operations WHERE operation_id = $1 AND tenant_id = $2")
                    .bind(op.as_str())
                    .bind(tenant.as_str())
                    .fetch_optional(pool)
                    .await?)
            }
        })?;
        found.map(|_| ()).ok_or(StoreError::NotFound("operation"))
    }

    /// The state of operation `op`, if it was ever begun.
    ///
    /// # Errors
    /// [`StoreError::Database`]; [`StoreError::Corrupt`] for an unknown stored state.
    pub async fn get_operation(
        &self,
        tenant: &TenantId,
        op: &OperationId,
    ) -> Result<Option<OperationState>, StoreError> {
        let row: Option<OperationRow> = on_pool!(self, pool => {
            sqlx::query_as("SELECT state, attempt, result FROM operations WHERE operation_id = $1 AND tenant_id = $2")
                .bind(op.as_str())
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await
        })?;
        row.map(|r| match r.state.as_str() {
            "done" => Ok(OperationState::Done { result: r.result.map(|j| j.0).unwrap_or(Value::Null) }),
            "started" => Ok(OperationState::Started { attempt: u32::try_from(r.attempt).unwrap_or(0) }),
            other => Err(StoreError::Corrupt { table: "operations", detail: format!("state = {other:?}") }),
        })
        .transpose()
    }

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
        let now = now();
        on_pool!(self, pool => {
            sqlx::query(audit_sql())
                .bind(tenant.as_str())
                .bind(job.map(JobId::as_str))
                .bind(action)
                .bind(Json(detail))
                .bind(now)
                .execute(pool)
                .await
                .map(|_| ())
        })?;
        Ok(())
    }

    /// The audit trail of one job of `tenant`, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn job_audit(&self, tenant: &TenantId, job: &JobId) -> Result<Vec<AuditEntry>, StoreError> {
        let rows: Vec<AuditRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT job_id, action, detail, at FROM audit_log WHERE tenant_id = $1 AND job_id = $2 ORDER BY seq",
            )
            .bind(tenant.as_str())
            .bind(job.as_str())
            .fetch_all(pool)
            .await
        })?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry { job_id: r.job_id, action: r.action, detail: r.detail.0, at: r.at })
            .collect())
    }
}

impl OperationLog for Store {
    async fn begin(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> Result<Option<OperationState>, JobError> {
        Ok(self.begin_operation(ctx, op, stage, effect).await?)
    }

    async fn finish(&self, ctx: &JobContext, op: &OperationId, result: &Value) -> Result<(), JobError> {
        Ok(self.finish_operation(&ctx.tenant_id, op, result).await?)
    }
}
