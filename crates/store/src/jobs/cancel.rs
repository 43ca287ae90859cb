//! Steering a job: cancellation — the tenant's or an operator's request ([`Store::cancel`]), the
//! running jobs whose cancel was requested (what a worker's heartbeat asks,
//! [`Store::cancel_requested`]), the worker ending such a job ([`Store::end_cancelled`]) — and a
//! retry on request of a failed or cancelled job ([`Store::requeue`]). Core rules:
//! `JobRecord::cancel`, `JobRecord::cancelled` and `JobRecord::requeue`.

use longhaul_core::{JobId, JobRecord, JobStatus, TenantId};
use serde_json::json;

use super::WriteOutcome;
use super::row::JobRow;
use crate::backend::{Arg, Db};
use crate::{Store, StoreError, audit, now};

const CANCEL: &str = include_str!("../../sql/common/jobs/cancel.sql");
const CANCELLED: &str = include_str!("../../sql/common/jobs/cancelled.sql");
const REQUEUE: &str = include_str!("../../sql/common/jobs/requeue.sql");
const PG_CANCEL_REQUESTED: &str = include_str!("../../sql/postgres/jobs/select_cancel_requested.sql");
const SQLITE_CANCEL_REQUESTED: &str = include_str!("../../sql/sqlite/jobs/select_cancel_requested.sql");

#[derive(sqlx::FromRow)]
struct IdRow {
    job_id: String,
}

impl Store {
    /// Cancels job `job` of `tenant` at `by`'s request (audited as `cancelled` for a scheduled or
    /// queued job, `cancel_requested` for a running one, with `by`): a scheduled or queued job is
    /// `cancelled` at once; a running one gets `cancel_requested_at` and its worker ends it.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant has no such job; a refusal (`Refused`, reason
    /// `Terminal`) for a finished one; storage errors.
    pub async fn cancel(&self, tenant: &TenantId, job: &JobId, by: &str) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let args: [Arg<'_>; 3] = [job.as_str().into(), tenant.as_str().into(), now.into()];
        let mut tx = self.db.begin().await?;
        let row: Option<JobRow> = tx.fetch_optional(CANCEL, &args).await?;
        let Some(row) = row else {
            tx.commit().await?;
            let current = self.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
            let reason = match current.cancel(now) {
                Err(reason) => reason,
                // Changed between the write and the read: it is finished now, or was not yet.
                Ok(_) => longhaul_core::TransitionError::Terminal { status: current.status },
            };
            return Ok(WriteOutcome::Refused { current, reason });
        };
        let record = JobRecord::try_from(row)?;
        // A repeated request for a running job is no news: one audit row per cancel.
        let first = record.status == JobStatus::Cancelled || record.cancel_requested_at == Some(now);
        if first {
            let action = if record.status == JobStatus::Cancelled { "cancelled" } else { "cancel_requested" };
            let detail = audit::at_attempt(json!({ "by": by }), record.attempts);
            audit::append(&mut tx, tenant, Some(job), action, &detail, now).await?;
        }
        tx.commit().await?;
        Ok(WriteOutcome::Applied(record))
    }

    /// Of `jobs`, those running with a cancel requested (one query).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn cancel_requested(&self, jobs: &[JobId]) -> Result<Vec<JobId>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json!(jobs.iter().map(JobId::as_str).collect::<Vec<_>>());
        let sql = match &self.db {
            Db::Postgres(_) => PG_CANCEL_REQUESTED,
            Db::Sqlite(_) => SQLITE_CANCEL_REQUESTED,
        };
        let rows: Vec<IdRow> = self.db.fetch_all(sql, &[Arg::Json(&ids)]).await?;
        rows.into_iter()
            .map(|r| JobId::parse(r.job_id).map_err(|e| super::row::corrupt(format!("job_id: {e}"))))
            .collect()
    }

    /// The worker of running attempt `attempt` ends job `job`, whose cancel was requested:
    /// `running → cancelled`, audited as `cancelled` by the worker.
    ///
    /// # Errors
    /// As [`Store::fail`].
    pub async fn end_cancelled(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
    ) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let a = i32::try_from(attempt).map_err(|_| StoreError::AttemptOutOfRange(attempt))?;
        let args: [Arg<'_>; 4] = [job.as_str().into(), tenant.as_str().into(), a.into(), now.into()];
        let mut tx = self.db.begin().await?;
        let row: Option<JobRow> = tx.fetch_optional(CANCELLED, &args).await?;
        if row.is_some() {
            audit::append(
                &mut tx,
                tenant,
                Some(job),
                "cancelled",
                &json!({ "by": "worker", "attempt": attempt }),
                now,
            )
            .await?;
        }
        tx.commit().await?;
        match row {
            Some(row) => Ok(WriteOutcome::Applied(row.try_into()?)),
            None => {
                let current = self.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
                let reason = match current.cancelled(attempt, now) {
                    Err(reason) => reason,
                    Ok(_) => longhaul_core::TransitionError::StaleAttempt {
                        attempt,
                        status: current.status,
                        attempts: current.attempts,
                    },
                };
                Ok(WriteOutcome::Refused { current, reason })
            }
        }
    }

    /// Puts failed or cancelled job `job` of `tenant` back in the queue under the same id, with
    /// `budget` more attempts, at `by`'s request (audited as `retried` with `by` and the budget).
    /// The caller enqueues it (attempt `attempts + 1`).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the tenant has no such job; a refusal (`NotRetryable`) for a
    /// queued, running or completed one; [`StoreError::AttemptOutOfRange`] for a budget the
    /// database cannot hold; storage errors.
    pub async fn requeue(
        &self,
        tenant: &TenantId,
        job: &JobId,
        budget: u32,
        by: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let b = i32::try_from(budget.max(1)).map_err(|_| StoreError::AttemptOutOfRange(budget))?;
        let args: [Arg<'_>; 4] = [job.as_str().into(), tenant.as_str().into(), b.into(), now.into()];
        let mut tx = self.db.begin().await?;
        let row: Option<JobRow> = tx.fetch_optional(REQUEUE, &args).await?;
        let record = row.map(JobRecord::try_from).transpose()?;
        if let Some(r) = &record {
            let detail = audit::at_attempt(json!({ "by": by, "budget": budget }), r.attempts);
            audit::append(&mut tx, tenant, Some(job), "retried", &detail, now).await?;
        }
        tx.commit().await?;
        match record {
            Some(record) => Ok(WriteOutcome::Applied(record)),
            None => {
                let current = self.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
                let reason = match current.requeue(budget, now) {
                    Err(reason) => reason,
                    // Changed between the write and the read (another retry won): not retryable now.
                    Ok(_) => longhaul_core::TransitionError::NotRetryable { status: current.status },
                };
                Ok(WriteOutcome::Refused { current, reason })
            }
        }
    }
}
