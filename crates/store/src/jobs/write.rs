//! The job writes: pending records, the batched writes of the worker (progress, starts,
//! completions — [`Store::write_batch`] and its single forms), and the unbatched ones (failing,
//! scheduling a retry). A refused write is explained by reading the record back and asking the
//! core rule its guard is.

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobId, JobRecord, Lease, NewJob, Progress, TenantId, TransitionError};
use serde_json::{Value, json};

use super::row::JobRow;
use super::{ProgressWrite, Write, WriteOutcome, postgres, sqlite};
use crate::backend::{Arg, Db};
use crate::{Store, StoreError, audit, now};

/// `$1` job, `$2` tenant, `$3` attempt, `$4` class, `$5` message, `$6` time.
const FAIL: &str = include_str!("../../sql/common/jobs/fail.sql");
/// `$1` job, `$2` tenant, `$3` attempt, `$4` class, `$5` message, `$6` due, `$7` time.
const RETRY: &str = include_str!("../../sql/common/jobs/retry.sql");

/// An attempt that failed, as [`Store::fail`] and [`Store::schedule_retry`] record it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptFailure<'a> {
    /// The attempt that failed (or, for [`Store::fail`], is about to start and never will).
    pub attempt: u32,
    /// The failure's class.
    pub class: ErrorClass,
    /// What went wrong.
    pub message: &'a str,
}

impl<'a> AttemptFailure<'a> {
    /// Attempt `attempt` failed with `class` and `message`.
    pub fn new(attempt: u32, class: ErrorClass, message: &'a str) -> Self {
        Self { attempt, class, message }
    }
}

impl Store {
    /// Writes the pending record for `job` — `scheduled` when its `run_at` is in the future, else
    /// `queued` — or returns the existing record with the same job id (unchanged).
    /// Atomic under concurrency: any number of simultaneous calls create one row, and exactly one
    /// caller gets `true` (created). A duplicate appends a `duplicate_enqueue` audit row; the
    /// job's `enqueued` entry is read from its record (see [`crate::audit`]).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the job id exists under another tenant (never for ids derived
    /// by the core), [`StoreError::Database`] when the database fails, [`StoreError::BatchFailed`]
    /// (retryable) when the connection failed while a duplicate's record was read,
    /// [`StoreError::Corrupt`] when a stored row cannot be read back.
    pub async fn create_pending(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        let mut out = self.create_pending_many(vec![job]).await?;
        out.pop().unwrap_or(Err(StoreError::NotFound("job")))
    }

    /// [`Store::create_pending`] for many jobs: how the producer records concurrent requests
    /// together. Results come back in the order given, one per request; a job id that appears
    /// twice is created once, for its first request. Rows are written in job-id order, so
    /// concurrent batches lock in the same order and cannot deadlock.
    ///
    /// On PostgreSQL one statement writes every new record and commits on its own (one round
    /// trip, no `BEGIN`/`COMMIT`); duplicates (rare) then read their records and append their
    /// audit rows in one transaction. On SQLite every request is a statement of one transaction.
    ///
    /// # Errors
    /// The outer error when the batch could not be written. On SQLite nothing was; on PostgreSQL
    /// the new records' insert failed, or its answer was lost after it committed — no request
    /// was told it created its job, and the client's retry (which finds a live job with no queue
    /// trace and enqueues it) or the reconciler enqueues what was written. A request's own error
    /// (as [`Store::create_pending`]): its job id is another tenant's job, or on PostgreSQL its
    /// existing record could not be read or its audit row written (`BatchFailed` when the
    /// connection failed) — the batch's new jobs are recorded and answered as created all the
    /// same. If the outer error came after the insert committed and was not the connection's,
    /// the producer serves each request alone: the creator's request then finds its own record
    /// and is answered as a duplicate (nothing is lost; the record is enqueued).
    pub async fn create_pending_many(
        &self,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Result<(JobRecord, bool), StoreError>>, StoreError> {
        let now = now();
        let records: Vec<JobRecord> = jobs.into_iter().map(|j| JobRecord::pending(j, now)).collect();
        match &self.db {
            Db::Postgres(pool) => postgres::create_pending(pool, &records, now).await,
            Db::Sqlite(_) => sqlite::create_pending(&self.db, &records).await,
        }
    }

    /// Records the running attempt's stage and progress: [`Store::record_progress_many`] with one
    /// write. When applied, the record is read back.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the job does not exist for `tenant`; [`StoreError::Database`].
    pub async fn record_progress(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        stage: &str,
        progress: Progress,
    ) -> Result<WriteOutcome, StoreError> {
        let applied = self.record_progress_many(&[(tenant, job, attempt, stage, progress)]).await?;
        if applied == [true] {
            let record = self.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
            return Ok(WriteOutcome::Applied(record));
        }
        self.refusal(tenant, job, Some(attempt), |r| r.progress(attempt, stage, progress, now())).await
    }

    /// [`Store::record_progress`] for many running attempts in one transaction (one commit).
    /// Returns, per write, whether it was applied; a refused write (stale attempt, finished job)
    /// changes nothing. Progress is advisory: on PostgreSQL this transaction commits without
    /// waiting for its WAL flush (see [`Store::write_batch`]).
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of the writes was applied.
    pub async fn record_progress_many(&self, writes: &[ProgressWrite<'_>]) -> Result<Vec<bool>, StoreError> {
        Ok(self.write_batch(writes, &[]).await?.0)
    }

    /// Completes the running attempt with `output`: [`Write::Complete`] alone. Its `completed`
    /// audit entry is read from the record (see [`crate::audit`]).
    ///
    /// # Errors
    /// As [`Store::record_progress`].
    pub async fn complete(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        output: &Value,
    ) -> Result<WriteOutcome, StoreError> {
        let write =
            Write::Complete { tenant: tenant.clone(), job: job.clone(), attempt, output: output.clone() };
        self.write_one(write).await
    }

    /// Starts the attempt after the last one started, if attempts remain, for queue delivery
    /// `lease` of an entry enqueued for attempt `entry_attempt` — the worker's start:
    /// `scheduled|queued|running → running` with `attempts + 1`, in one statement with no read
    /// first. A later delivery of the entry that started the running attempt takes it over (that
    /// attempt's later writes are refused); a stale delivery is refused with
    /// [`TransitionError::Superseded`] and changes nothing (see `JobRecord::start_delivery`).
    /// Audited as `started`.
    ///
    /// # Errors
    /// As [`Store::record_progress`].
    pub async fn start_next(
        &self,
        tenant: &TenantId,
        job: &JobId,
        lease: Lease,
        entry_attempt: u32,
    ) -> Result<WriteOutcome, StoreError> {
        self.write_one(Write::StartNext { tenant: tenant.clone(), job: job.clone(), lease, entry_attempt })
            .await
    }

    async fn write_one(&self, write: Write) -> Result<WriteOutcome, StoreError> {
        let mut out = self.write_many(std::slice::from_ref(&write)).await?;
        out.pop().ok_or(StoreError::NotFound("job"))?
    }

    /// Applies many starts and completions in one transaction (one commit). See
    /// [`Store::write_batch`].
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of the writes was applied (retry them one by one).
    pub async fn write_many(
        &self,
        writes: &[Write],
    ) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        Ok(self.write_batch(&[], writes).await?.1)
    }

    /// Applies progress writes, then starts and completions, in one transaction (one commit): how
    /// a worker records what its concurrent jobs did together. Each write is fenced exactly as its
    /// single form. On PostgreSQL the batch is at most three statements — the progress writes, the
    /// starts and the completions, each multi-row — unless a start names a job that another start
    /// or completion of the batch names too; then each start and completion is a statement of its
    /// own, in order. In the multi-row form a job's progress write that its
    /// completion (same attempt) supersedes is folded into it: the completion records the stage,
    /// and the progress counts as applied with it. On SQLite each write is a statement of its own.
    ///
    /// A batch of progress alone is advisory: on PostgreSQL its transaction commits with
    /// `synchronous_commit = off` (visible at once, flushed by the WAL writer or by the next
    /// synchronous commit), so its caller does not wait for an fsync; a crash of the server or a
    /// failover can lose it, and only it. A batch with a start or a completion commits as the
    /// server is configured.
    ///
    /// Returns, per progress write, whether it was applied (on PostgreSQL a job written twice
    /// keeps its last write; the earlier ones of the same attempt count as applied with it), and
    /// per write its outcome, in order; a write whose job does not exist for its tenant gets
    /// [`StoreError::NotFound`] in its place.
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of the writes was applied (retry them one by one).
    pub async fn write_batch(
        &self,
        progress: &[ProgressWrite<'_>],
        writes: &[Write],
    ) -> Result<(Vec<bool>, Vec<Result<WriteOutcome, StoreError>>), StoreError> {
        if progress.is_empty() && writes.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let now = now();
        let (applied, rows) = match &self.db {
            Db::Postgres(pool) => postgres::write_batch(pool, progress, writes, now).await?,
            Db::Sqlite(_) => sqlite::write_batch(&self.db, progress, writes, now).await?,
        };
        let mut outcomes = Vec::with_capacity(rows.len());
        for (w, row) in writes.iter().zip(rows) {
            let (tenant, job) = w.target();
            outcomes.push(match row {
                Some(row) => JobRecord::try_from(row).map(WriteOutcome::Applied),
                None => self.refusal(tenant, job, w.attempt(), |r| w.rule(r, now)).await,
            });
        }
        Ok((applied, outcomes))
    }

    /// Fails the job for good with `class` and `message`: the running attempt `attempt`, or the
    /// next one before it starts (a job found invalid before running). Audited as `failed`, or
    /// `alert` for the alert class.
    ///
    /// # Errors
    /// [`StoreError::AttemptOutOfRange`] for an attempt the database cannot hold; otherwise as
    /// [`Store::record_progress`].
    pub async fn fail(
        &self,
        tenant: &TenantId,
        job: &JobId,
        failure: AttemptFailure<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let AttemptFailure { attempt, class, message } = failure;
        let now = now();
        let (a, c) = (stored_attempt(attempt)?, class.as_str());
        let args: [Arg<'_>; 6] =
            [job.as_str().into(), tenant.as_str().into(), a.into(), c.into(), message.into(), now.into()];
        let action = if class == ErrorClass::Alert { "alert" } else { "failed" };
        let detail = json!({ "attempt": attempt, "class": class, "message": message });
        match self.fenced(tenant, job, FAIL, &args, action, &detail, now).await? {
            Some(row) => Ok(WriteOutcome::Applied(row.try_into()?)),
            None => self.refusal(tenant, job, Some(attempt), |r| r.fail(attempt, class, message, now)).await,
        }
    }

    /// Schedules the next attempt after attempt `attempt` failed with a retryable error:
    /// `running → queued` with `next_attempt_at` and the error kept. Audited as `retry_scheduled`.
    ///
    /// # Errors
    /// As [`Store::fail`].
    pub async fn schedule_retry(
        &self,
        tenant: &TenantId,
        job: &JobId,
        failure: AttemptFailure<'_>,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<WriteOutcome, StoreError> {
        let AttemptFailure { attempt, class, message } = failure;
        let now = now();
        let (a, c) = (stored_attempt(attempt)?, class.as_str());
        let args: [Arg<'_>; 7] = [
            job.as_str().into(),
            tenant.as_str().into(),
            a.into(),
            c.into(),
            message.into(),
            next_attempt_at.into(),
            now.into(),
        ];
        let detail = json!({ "attempt": attempt, "class": class, "message": message, "next_attempt_at": next_attempt_at });
        match self.fenced(tenant, job, RETRY, &args, "retry_scheduled", &detail, now).await? {
            Some(row) => Ok(WriteOutcome::Applied(row.try_into()?)),
            None => {
                let rule = |r: &JobRecord| r.retry(attempt, class, message, next_attempt_at, now);
                self.refusal(tenant, job, Some(attempt), rule).await
            }
        }
    }

    /// Runs the guarded statement `sql` and, if it wrote the row, the audit row `action` with
    /// `detail`, in one transaction. Returns the row written.
    #[allow(clippy::too_many_arguments)] // the statement, its parameters and its audit row
    async fn fenced(
        &self,
        tenant: &TenantId,
        job: &JobId,
        sql: &'static str,
        args: &[Arg<'_>],
        action: &str,
        detail: &Value,
        now: DateTime<Utc>,
    ) -> Result<Option<JobRow>, StoreError> {
        let mut tx = self.db.begin().await?;
        let row: Option<JobRow> = tx.fetch_optional(sql, args).await?;
        if row.is_some() {
            audit::append(&mut tx, tenant, Some(job), action, detail, now).await?;
        }
        tx.commit().await?;
        Ok(row)
    }

    /// Why a guarded write changed nothing: the record as it stands, and what the core `rule` the
    /// guard is says of it.
    async fn refusal(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: Option<u32>,
        rule: impl FnOnce(&JobRecord) -> Result<JobRecord, TransitionError>,
    ) -> Result<WriteOutcome, StoreError> {
        let current = self.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
        let attempt = attempt.unwrap_or(current.attempts + 1);
        let reason = match rule(&current) {
            Err(reason) => reason,
            // The row changed between the guarded write and this read: report it as stale.
            Ok(_) => {
                TransitionError::StaleAttempt { attempt, status: current.status, attempts: current.attempts }
            }
        };
        Ok(WriteOutcome::Refused { current, reason })
    }
}

/// An attempt number as the database stores it.
fn stored_attempt(attempt: u32) -> Result<i32, StoreError> {
    i32::try_from(attempt).map_err(|_| StoreError::AttemptOutOfRange(attempt))
}
