//! Job records: create-pending-or-return-existing, the fenced status writes of the core status
//! machine, and tenant-scoped reads with keyset pagination.
//!
//! Each status write is one guarded `UPDATE … RETURNING` whose `WHERE` clause is the core rule for
//! that transition (see `longhaul_core::record`), plus its audit row in the same transaction. When
//! the guard refuses, nothing changes and the caller gets [`WriteOutcome::Refused`] with the current
//! record and the core's reason.
//!
//! The worker's start ([`Write::StartNext`]) is fenced by the queue delivery asking for it (the
//! stream entry id and its delivery count, kept in `lease_entry`/`lease_delivery`; the core rule is
//! `JobRecord::start_delivery`), so a stale copy of an entry never takes over a newer attempt.
//!
//! The batch forms ([`Store::create_pending_many`], [`Store::write_batch`]) apply the same guards
//! to many rows at once; on PostgreSQL each kind of write in a batch is one multi-row statement
//! (`… FROM UNNEST(…)`) whose audit rows are a CTE of the same statement.

use chrono::{DateTime, Utc};
use longhaul_core::{
    ErrorClass, JobId, JobRecord, JobStatus, Lease, NewJob, Progress, TenantId, TicketId, TransitionError,
};
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::{Store, StoreError, now, ops::audit_sql};

/// The job-record columns, in [`JobRow`] order. Macros, so every statement is a `&'static str`
/// assembled at compile time from constants (no SQL is built at run time).
macro_rules! columns {
    () => {
        "job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts, max_attempts, \
         next_attempt_at, output, error_message, error_class, created_at, updated_at, started_at, finished_at, \
         lease_entry, lease_delivery"
    };
}

/// A fenced `UPDATE`: `$1` job, `$2` tenant, `$3` attempt, then the transition's own parameters.
macro_rules! fenced_update {
    (set: $set:expr, guard: $guard:expr) => {
        concat!(
            "UPDATE jobs SET ",
            $set,
            " WHERE job_id = $1 AND tenant_id = $2 AND (",
            $guard,
            ") RETURNING ",
            columns!()
        )
    };
}

/// The running attempt `$3` is owned by the writer.
macro_rules! owns {
    () => {
        "status = 'running' AND attempts = $3"
    };
}

/// `$3` is the next attempt to start.
macro_rules! is_next {
    () => {
        "status IN ('queued', 'running') AND attempts = $3 - 1"
    };
}

/// Records the running attempt's stage and progress: `$4` stage, `$5` percent, `$6` time.
const PROGRESS_SQL: &str = fenced_update!(set: "stage = $4, progress = $5, updated_at = $6", guard: owns!());

const SELECT_ONE: &str = concat!("SELECT ", columns!(), " FROM jobs WHERE job_id = $1 AND tenant_id = $2");

/// The largest page [`Store::list_jobs`] returns.
pub const MAX_PAGE_SIZE: u32 = 500;

/// A progress write: tenant, job, the running attempt, the stage and the overall progress.
pub type ProgressWrite<'a> = (&'a TenantId, &'a JobId, u32, &'a str, Progress);

/// The result of a fenced write.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOutcome {
    /// The write was applied; the record as it now stands.
    Applied(JobRecord),
    /// The guard refused the write (a stale attempt, or a terminal record); nothing changed.
    Refused {
        /// The record as it stands.
        current: JobRecord,
        /// Why, in the core's words.
        reason: TransitionError,
    },
}

impl WriteOutcome {
    /// The record after the write, if it was applied.
    pub fn applied(self) -> Option<JobRecord> {
        match self {
            Self::Applied(r) => Some(r),
            Self::Refused { .. } => None,
        }
    }
}

/// One page of [`Store::list_jobs`], newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The records.
    pub jobs: Vec<JobRecord>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

#[derive(sqlx::FromRow)]
struct JobRow {
    job_id: String,
    tenant_id: String,
    ticket_id: String,
    ticket_revision: i64,
    status: String,
    stage: Option<String>,
    progress: i32,
    attempts: i32,
    max_attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    output: Option<Json<Value>>,
    error_message: Option<String>,
    error_class: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    lease_entry: Option<String>,
    lease_delivery: Option<i32>,
}

#[derive(sqlx::FromRow)]
struct PagedJobRow {
    seq: i64,
    #[sqlx(flatten)]
    job: JobRow,
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { table: "jobs", detail: detail.to_string() }
}

fn to_u32(field: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(format!("{field} = {v} is out of range")))
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let percent = u8::try_from(r.progress).map_err(|_| corrupt(format!("progress = {}", r.progress)))?;
        Ok(JobRecord {
            job_id: JobId::parse(r.job_id).map_err(corrupt)?,
            tenant_id: TenantId::parse(r.tenant_id).map_err(corrupt)?,
            ticket_id: TicketId::parse(r.ticket_id).map_err(corrupt)?,
            ticket_revision: u64::try_from(r.ticket_revision)
                .map_err(|_| corrupt(format!("ticket_revision = {}", r.ticket_revision)))?,
            status: JobStatus::parse(&r.status).map_err(corrupt)?,
            stage: r.stage,
            progress: Progress::new(percent).map_err(corrupt)?,
            attempts: to_u32("attempts", r.attempts.into())?,
            max_attempts: to_u32("max_attempts", r.max_attempts.into())?,
            next_attempt_at: r.next_attempt_at,
            output: r.output.map(|j| j.0),
            error_message: r.error_message,
            error_class: r.error_class.as_deref().map(ErrorClass::parse).transpose().map_err(corrupt)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            lease: match (r.lease_entry, r.lease_delivery) {
                (Some(entry), Some(delivery)) => {
                    Some(Lease { entry, delivery: to_u32("lease_delivery", delivery.into())? })
                }
                _ => None,
            },
        })
    }
}

/// Binds a transition's own parameters (from `$4` on) to a query.
macro_rules! bind_params {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in &$params {
            q = match p {
                Param::Text(v) => q.bind(v.clone()),
                Param::Int(v) => q.bind(*v),
                Param::Time(v) => q.bind(*v),
                Param::Json(v) => q.bind(v.clone().map(Json)),
            };
        }
        q
    }};
}

/// Appends the audit row of an applied transition inside the same transaction.
macro_rules! insert_audit {
    ($tx:expr, $tenant:expr, $job:expr, $action:expr, $detail:expr, $now:expr) => {
        sqlx::query(audit_sql())
            .bind($tenant.as_str())
            .bind(Some($job.as_str()))
            .bind(*$action)
            .bind(Json($detail.clone()))
            .bind($now)
            .execute($tx)
            .await?;
    };
}

/// A write [`Store::write_many`] can batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// [`Store::start`].
    Start {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The attempt to start.
        attempt: u32,
    },
    /// [`Store::start_next`]: the worker's start, which needs no read of the record first.
    StartNext {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The queue delivery asking to start it.
        lease: Lease,
        /// The attempt its entry was enqueued for.
        entry_attempt: u32,
    },
    /// [`Store::complete`].
    Complete {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The running attempt.
        attempt: u32,
        /// The output.
        output: Value,
    },
}

impl Write {
    /// The tenant and job written.
    fn target(&self) -> (&TenantId, &JobId) {
        match self {
            Self::Start { tenant, job, .. }
            | Self::StartNext { tenant, job, .. }
            | Self::Complete { tenant, job, .. } => (tenant, job),
        }
    }

    /// The attempt named, if any (a [`Write::StartNext`] starts whichever is next).
    fn attempt(&self) -> Option<u32> {
        match self {
            Self::Start { attempt, .. } | Self::Complete { attempt, .. } => Some(*attempt),
            Self::StartNext { .. } => None,
        }
    }

    /// The audit action of the write.
    fn action(&self) -> &'static str {
        match self {
            Self::Start { .. } | Self::StartNext { .. } => "started",
            Self::Complete { .. } => "completed",
        }
    }

    /// The single-row transition (its SQL unused for [`Write::StartNext`], which has its own).
    fn transition(&self, now: DateTime<Utc>) -> Transition<'static> {
        match self {
            Self::Start { attempt, .. } => start_transition(*attempt, now),
            Self::StartNext { lease, entry_attempt, .. } => {
                let (lease, entry_attempt) = (lease.clone(), *entry_attempt);
                Transition {
                    sql: START_NEXT_SQL,
                    params: Vec::new(),
                    audit: None,
                    rule: Box::new(move |r| r.start_delivery(&lease, entry_attempt, now)),
                }
            }
            Self::Complete { attempt, output, .. } => complete_transition(*attempt, output.clone(), now),
        }
    }
}

fn start_transition(attempt: u32, now: DateTime<Utc>) -> Transition<'static> {
    Transition {
        sql: fenced_update!(
            set: "status = 'running', attempts = $3, stage = NULL, progress = 0, next_attempt_at = NULL, \
                  started_at = $4, updated_at = $4, lease_entry = NULL, lease_delivery = NULL",
            guard: concat!(is_next!(), " AND $3 <= max_attempts")
        ),
        params: vec![Param::Time(Some(now))],
        audit: Some(("started", json!({ "attempt": attempt }))),
        rule: Box::new(move |r| r.start(attempt, now)),
    }
}

/// Starts the attempt after the last one started (`attempts + 1`) for a queue delivery, if
/// attempts remain and the delivery is newer than the one that started the current attempt (see
/// `JobRecord::start_delivery`): `$1` job, `$2` tenant, `$3` time, `$4` entry id, `$5` delivery
/// count, `$6` the attempt the entry was enqueued for.
const START_NEXT_SQL: &str = concat!(
    "UPDATE jobs SET status = 'running', attempts = attempts + 1, stage = NULL, progress = 0, \
     next_attempt_at = NULL, started_at = $3, updated_at = $3, lease_entry = $4, lease_delivery = $5 \
     WHERE job_id = $1 AND tenant_id = $2 AND status IN ('queued', 'running') AND attempts < max_attempts \
     AND CASE WHEN status = 'running' AND lease_entry = $4 THEN lease_delivery < $5 \
     WHEN status = 'running' AND lease_entry IS NULL THEN TRUE ELSE attempts < $6 END \
     RETURNING ",
    columns!()
);

/// PostgreSQL: many starts in one statement, each with its `started` audit row. `$1` jobs, `$2`
/// tenants, `$3` attempts (NULL: the next one for a delivery, fenced as [`START_NEXT_SQL`]), `$4`
/// time, `$5` entry ids, `$6` delivery counts, `$7` the attempts the entries were enqueued for.
const PG_STARTS_SQL: &str = concat!(
    "WITH u AS (UPDATE jobs SET status = 'running', attempts = COALESCE(v.attempt, jobs.attempts + 1), \
     stage = NULL, progress = 0, next_attempt_at = NULL, started_at = $4, updated_at = $4, \
     lease_entry = v.entry, lease_delivery = v.delivery \
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $5::text[], $6::int4[], $7::int4[]) \
     AS v(job, tenant, attempt, entry, delivery, entry_attempt) \
     WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status IN ('queued', 'running') \
     AND (v.attempt IS NULL OR jobs.attempts = v.attempt - 1) \
     AND COALESCE(v.attempt, jobs.attempts + 1) <= jobs.max_attempts \
     AND (v.attempt IS NOT NULL OR CASE WHEN jobs.status = 'running' AND jobs.lease_entry = v.entry \
     THEN jobs.lease_delivery < v.delivery WHEN jobs.status = 'running' AND jobs.lease_entry IS NULL THEN TRUE \
     ELSE jobs.attempts < v.entry_attempt END) RETURNING jobs.*), \
     a AS (INSERT INTO audit_log (tenant_id, job_id, action, detail, at) \
     SELECT tenant_id, job_id, 'started', jsonb_build_object('attempt', attempts), $4 FROM u) \
     SELECT ",
    columns!(),
    " FROM u"
);

/// PostgreSQL: many completions in one statement, each with its `completed` audit row. `$1` jobs,
/// `$2` tenants, `$3` attempts, `$4` outputs, `$5` time.
const PG_COMPLETES_SQL: &str = concat!(
    "WITH u AS (UPDATE jobs SET status = 'completed', progress = 100, output = v.output, error_message = NULL, \
     error_class = NULL, next_attempt_at = NULL, updated_at = $5, finished_at = $5 \
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::jsonb[]) AS v(job, tenant, attempt, output) \
     WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running' \
     AND jobs.attempts = v.attempt RETURNING jobs.*), \
     a AS (INSERT INTO audit_log (tenant_id, job_id, action, detail, at) \
     SELECT tenant_id, job_id, 'completed', jsonb_build_object('attempt', attempts), $5 FROM u) \
     SELECT ",
    columns!(),
    " FROM u"
);

/// PostgreSQL: many progress writes in one statement (one per job). `$1` jobs, `$2` tenants,
/// `$3` attempts, `$4` stages, `$5` percents, `$6` time.
const PG_PROGRESS_SQL: &str = "UPDATE jobs SET stage = v.stage, progress = v.progress, updated_at = $6 \
     FROM UNNEST($1::text[], $2::text[], $3::int4[], $4::text[], $5::int4[]) AS v(job, tenant, attempt, stage, progress) \
     WHERE jobs.job_id = v.job AND jobs.tenant_id = v.tenant AND jobs.status = 'running' \
     AND jobs.attempts = v.attempt RETURNING jobs.job_id";

/// PostgreSQL: many pending records in one statement, each new one with its `enqueued` audit row;
/// existing ids are left alone (and not returned). `$1` jobs, `$2` tenants, `$3` tickets, `$4`
/// revisions, `$5` max attempts, `$6` time. Rows are inserted in job-id order, so concurrent
/// batches lock in the same order, and among requests for one id in request order, so the row
/// written is the first request's (the one told it created the job).
const PG_CREATES_SQL: &str = concat!(
    "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int8[], $5::int4[]) \
     WITH ORDINALITY AS v(job, tenant, ticket, revision, max_attempts, ord)), \
     ins AS (INSERT INTO jobs (",
    columns!(),
    ") SELECT job, tenant, ticket, revision, 'queued', NULL, 0, 0, max_attempts, NULL, NULL, NULL, NULL, $6, $6, \
     NULL, NULL, NULL, NULL FROM v ORDER BY job, ord ON CONFLICT (job_id) DO NOTHING RETURNING ",
    columns!(),
    "), a AS (INSERT INTO audit_log (tenant_id, job_id, action, detail, at) \
     SELECT tenant_id, job_id, 'enqueued', \
     jsonb_build_object('ticket_id', ticket_id, 'ticket_revision', ticket_revision), $6 FROM ins) \
     SELECT ",
    columns!(),
    " FROM ins"
);

fn complete_transition(attempt: u32, output: Value, now: DateTime<Utc>) -> Transition<'static> {
    Transition {
        sql: fenced_update!(
            set: "status = 'completed', progress = 100, output = $4, error_message = NULL, \
                  error_class = NULL, next_attempt_at = NULL, updated_at = $5, finished_at = $5",
            guard: owns!()
        ),
        params: vec![Param::Json(Some(output.clone())), Param::Time(Some(now))],
        audit: Some(("completed", json!({ "attempt": attempt }))),
        rule: Box::new(move |r| r.complete(attempt, output.clone(), now)),
    }
}

/// The core transition a guarded write mirrors.
type Rule<'a> = Box<dyn Fn(&JobRecord) -> Result<JobRecord, TransitionError> + Send + Sync + 'a>;

/// A fenced transition: the SQL that applies it, and the core rule that explains a refusal.
struct Transition<'a> {
    /// The guarded statement, from [`fenced_update!`].
    sql: &'static str,
    /// Extra parameters, bound in order from `$4`.
    params: Vec<Param>,
    /// The audit action written when applied (none for progress).
    audit: Option<(&'static str, Value)>,
    /// The core rule, to explain a refusal.
    rule: Rule<'a>,
}

enum Param {
    Text(Option<String>),
    Int(i32),
    Time(Option<DateTime<Utc>>),
    Json(Option<Value>),
}

impl Store {
    /// Writes the `queued` record for `job`, or returns the existing record with the same job id.
    /// Atomic under concurrency: any number of simultaneous calls create one row, and exactly one
    /// caller gets `true` (created). Appends an `enqueued` or `duplicate_enqueue` audit row.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the job id exists under another tenant (never for ids derived
    /// by the core), [`StoreError::Database`] when the database fails.
    pub async fn create_pending(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        let mut out = self.create_pending_many(vec![job]).await?;
        out.pop().ok_or(StoreError::NotFound("job"))
    }

    /// [`Store::create_pending`] for many jobs in one transaction (one commit): how the producer
    /// records concurrent requests together. Results come back in the order given; a job id that
    /// appears twice is created once. Rows are written in job-id order, so concurrent batches lock
    /// in the same order and cannot deadlock.
    ///
    /// # Errors
    /// As [`Store::create_pending`]; then none of the jobs was recorded.
    pub async fn create_pending_many(&self, jobs: Vec<NewJob>) -> Result<Vec<(JobRecord, bool)>, StoreError> {
        let now = now();
        let records: Vec<JobRecord> = jobs.into_iter().map(|j| JobRecord::pending(j, now)).collect();
        match &self.backend {
            crate::Backend::Postgres(pool) => create_pending_pg(pool, &records, now).await,
            crate::Backend::Sqlite(pool) => create_pending_each(pool, &records).await,
        }
    }

    /// Reads one job of `tenant`. Another tenant's job reads as `None`, like a missing one.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_job(&self, tenant: &TenantId, job: &JobId) -> Result<Option<JobRecord>, StoreError> {
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(SELECT_ONE).bind(job.as_str()).bind(tenant.as_str()).fetch_optional(pool).await
        })?;
        row.map(JobRecord::try_from).transpose()
    }

    /// The tenant that owns job `job`, whoever asks. Only for integrity checks inside the worker
    /// (a queue entry claiming the wrong tenant is an alert); never exposed through the API.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn job_owner(&self, job: &JobId) -> Result<Option<TenantId>, StoreError> {
        let row: Option<(String,)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT tenant_id FROM jobs WHERE job_id = $1").bind(job.as_str()).fetch_optional(pool).await
        })?;
        row.map(|(t,)| TenantId::parse(t).map_err(corrupt)).transpose()
    }

    /// Live jobs (queued or running) of every tenant not updated since `cutoff`, in creation order
    /// after `after_seq` — the reconciler's scan. Returns `(seq, record)` pairs; pass the last seq
    /// back to continue.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn stale_live_jobs(
        &self,
        cutoff: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, JobRecord)>, StoreError> {
        const SQL: &str = concat!(
            "SELECT seq, ",
            columns!(),
            " FROM jobs WHERE status IN ('queued', 'running') AND updated_at < $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let rows: Vec<PagedJobRow> = on_pool!(self, pool => {
            sqlx::query_as(SQL).bind(cutoff).bind(after_seq).bind(i64::from(limit.max(1))).fetch_all(pool).await
        })?;
        rows.into_iter().map(|r| Ok((r.seq, JobRecord::try_from(r.job)?))).collect()
    }

    /// Lists `tenant`'s jobs, newest first, optionally only those in `status`. `limit` is clamped to
    /// 1..=[`MAX_PAGE_SIZE`]; `cursor` is a previous page's `next_cursor`.
    ///
    /// # Errors
    /// [`StoreError::Config`] for a cursor this store did not issue; [`StoreError::Database`].
    pub async fn list_jobs(
        &self,
        tenant: &TenantId,
        status: Option<JobStatus>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobPage, StoreError> {
        let after = match cursor {
            None => i64::MAX,
            Some(c) => c
                .parse::<i64>()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| StoreError::Config(format!("invalid cursor {c:?}")))?,
        };
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        const SQL: &str = concat!(
            "SELECT seq, ",
            columns!(),
            " FROM jobs WHERE tenant_id = $1 AND ($2 IS NULL OR status = $2) AND seq < $3 \
             ORDER BY seq DESC LIMIT $4"
        );
        let rows: Vec<PagedJobRow> = on_pool!(self, pool => {
            sqlx::query_as(SQL)
                .bind(tenant.as_str())
                .bind(status.map(JobStatus::as_str))
                .bind(after)
                .bind(i64::from(limit) + 1)
                .fetch_all(pool)
                .await
        })?;
        let more = rows.len() > limit as usize;
        let mut jobs = Vec::with_capacity(rows.len().min(limit as usize));
        let mut last_seq = None;
        for row in rows.into_iter().take(limit as usize) {
            last_seq = Some(row.seq);
            jobs.push(JobRecord::try_from(row.job)?);
        }
        let next_cursor = if more { last_seq.map(|s| s.to_string()) } else { None };
        Ok(JobPage { jobs, next_cursor })
    }

    /// Starts attempt `attempt`: `queued|running → running` when `attempts == attempt − 1` and
    /// attempts remain. Audited as `started`.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the job does not exist for `tenant`; [`StoreError::Database`].
    pub async fn start(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
    ) -> Result<WriteOutcome, StoreError> {
        self.transition(tenant, job, attempt, start_transition(attempt, now())).await
    }

    /// Records the running attempt's stage and progress.
    ///
    /// # Errors
    /// As [`Store::start`].
    pub async fn record_progress(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        stage: &str,
        progress: Progress,
    ) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let stage_owned = stage.to_owned();
        self.transition(
            tenant,
            job,
            attempt,
            Transition {
                sql: PROGRESS_SQL,
                params: vec![
                    Param::Text(Some(stage.to_owned())),
                    Param::Int(i32::from(progress.percent())),
                    Param::Time(Some(now)),
                ],
                audit: None,
                rule: Box::new(move |r| r.progress(attempt, &stage_owned, progress, now)),
            },
        )
        .await
    }

    /// [`Store::record_progress`] for many running attempts in one transaction (one commit).
    /// Returns, per write, whether it was applied; a refused write (stale attempt, finished job)
    /// changes nothing.
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of the writes was applied.
    pub async fn record_progress_many(&self, writes: &[ProgressWrite<'_>]) -> Result<Vec<bool>, StoreError> {
        Ok(self.write_batch(writes, &[]).await?.0)
    }

    /// Completes the running attempt with `output`. Audited as `completed`.
    ///
    /// # Errors
    /// As [`Store::start`].
    pub async fn complete(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        output: &Value,
    ) -> Result<WriteOutcome, StoreError> {
        self.transition(tenant, job, attempt, complete_transition(attempt, output.clone(), now())).await
    }

    /// Starts the attempt after the last one started, if attempts remain, for queue delivery
    /// `lease` of an entry enqueued for attempt `entry_attempt` — the worker's start:
    /// `queued|running → running` with `attempts + 1`, in one statement with no read first. A later
    /// delivery of the entry that started the running attempt takes it over (that attempt's later
    /// writes are refused); a stale delivery is refused with [`TransitionError::Superseded`] and
    /// changes nothing (see `JobRecord::start_delivery`). Audited as `started`.
    ///
    /// # Errors
    /// As [`Store::start`].
    pub async fn start_next(
        &self,
        tenant: &TenantId,
        job: &JobId,
        lease: Lease,
        entry_attempt: u32,
    ) -> Result<WriteOutcome, StoreError> {
        let write = Write::StartNext { tenant: tenant.clone(), job: job.clone(), lease, entry_attempt };
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
    /// starts and the completions, each multi-row and with its audit rows — unless a start names a
    /// job that another start or completion of the batch names too; such a batch is written one
    /// statement per write, in order.
    ///
    /// Returns, per progress write, whether it was applied (a job written twice keeps its last
    /// write; the earlier ones of the same attempt count as applied with it), and per write its
    /// outcome, in order; a write whose job does not exist for its tenant gets
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
        let (applied, rows): (Vec<bool>, Vec<Option<JobRow>>) = match &self.backend {
            crate::Backend::Postgres(pool) if pg_batchable(writes) => {
                write_batch_pg(pool, progress, writes, now).await?
            }
            _ => on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                let mut applied = Vec::with_capacity(progress.len());
                for (tenant, job, attempt, stage, percent) in progress {
                    let n = sqlx::query(PROGRESS_SQL)
                        .bind(job.as_str())
                        .bind(tenant.as_str())
                        .bind(i32::try_from(*attempt).unwrap_or(i32::MAX))
                        .bind(*stage)
                        .bind(i32::from(percent.percent()))
                        .bind(now)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    applied.push(n == 1);
                }
                let mut rows = Vec::with_capacity(writes.len());
                for w in writes {
                    let (tenant, job) = w.target();
                    let row: Option<JobRow> = match w {
                        Write::StartNext { lease, entry_attempt, .. } => {
                            sqlx::query_as(START_NEXT_SQL)
                                .bind(job.as_str())
                                .bind(tenant.as_str())
                                .bind(now)
                                .bind(lease.entry.as_str())
                                .bind(to_i32(lease.delivery))
                                .bind(to_i32(*entry_attempt))
                                .fetch_optional(&mut *tx)
                                .await?
                        }
                        Write::Start { attempt, .. } | Write::Complete { attempt, .. } => {
                            let t = w.transition(now);
                            let attempt = i32::try_from(*attempt).unwrap_or(i32::MAX);
                            let q = bind_params!(
                                sqlx::query_as(t.sql).bind(job.as_str()).bind(tenant.as_str()).bind(attempt),
                                t.params
                            );
                            q.fetch_optional(&mut *tx).await?
                        }
                    };
                    if let Some(r) = &row {
                        let detail = json!({ "attempt": r.attempts });
                        insert_audit!(&mut *tx, tenant, job, &w.action(), detail, now);
                    }
                    rows.push(row);
                }
                tx.commit().await?;
                Ok::<_, StoreError>((applied, rows))
            })?,
        };
        let mut outcomes = Vec::with_capacity(rows.len());
        for (w, row) in writes.iter().zip(rows) {
            let (tenant, job) = w.target();
            outcomes.push(match row {
                Some(row) => JobRecord::try_from(row).map(WriteOutcome::Applied),
                None => self.refusal(tenant, job, w.attempt(), &w.transition(now).rule).await,
            });
        }
        Ok((applied, outcomes))
    }

    /// Fails the job for good with `class` and `message`. Audited as `failed`, or `alert` for the
    /// alert class.
    ///
    /// # Errors
    /// As [`Store::start`].
    pub async fn fail(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        class: ErrorClass,
        message: &str,
    ) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let msg = message.to_owned();
        let action = if class == ErrorClass::Alert { "alert" } else { "failed" };
        self.transition(
            tenant,
            job,
            attempt,
            Transition {
                sql: fenced_update!(
                    set: "status = 'failed', attempts = $3, error_class = $4, error_message = $5, \
                          next_attempt_at = NULL, updated_at = $6, finished_at = $6",
                    guard: concat!("(", owns!(), ") OR (", is_next!(), ")")
                ),
                params: vec![
                    Param::Text(Some(class.as_str().to_owned())),
                    Param::Text(Some(message.to_owned())),
                    Param::Time(Some(now)),
                ],
                audit: Some((action, json!({ "attempt": attempt, "class": class, "message": message }))),
                rule: Box::new(move |r| r.fail(attempt, class, &msg, now)),
            },
        )
        .await
    }

    /// Schedules the next attempt after attempt `attempt` failed with a retryable error:
    /// `running → queued` with `next_attempt_at` and the error kept. Audited as `retry_scheduled`.
    ///
    /// # Errors
    /// As [`Store::start`].
    pub async fn schedule_retry(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        class: ErrorClass,
        message: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<WriteOutcome, StoreError> {
        let now = now();
        let msg = message.to_owned();
        self.transition(tenant, job, attempt, Transition {
            sql: fenced_update!(
                set: "status = 'queued', stage = NULL, progress = 0, error_class = $4, error_message = $5, \
                      next_attempt_at = $6, updated_at = $7",
                guard: concat!(owns!(), " AND attempts < max_attempts")
            ),
            params: vec![
                Param::Text(Some(class.as_str().to_owned())),
                Param::Text(Some(message.to_owned())),
                Param::Time(Some(next_attempt_at)),
                Param::Time(Some(now)),
            ],
            audit: Some((
                "retry_scheduled",
                json!({ "attempt": attempt, "class": class, "message": message, "next_attempt_at": next_attempt_at }),
            )),
            rule: Box::new(move |r| r.retry(attempt, class, &msg, next_attempt_at, now)),
        })
        .await
    }

    async fn transition(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: u32,
        t: Transition<'_>,
    ) -> Result<WriteOutcome, StoreError> {
        let attempt_param = i32::try_from(attempt)
            .map_err(|_| StoreError::Config(format!("attempt {attempt} is out of range")))?;
        let now = now();
        let updated: Option<JobRow> = on_pool!(self, pool => {
            let q = bind_params!(sqlx::query_as(t.sql).bind(job.as_str()).bind(tenant.as_str()).bind(attempt_param), t.params);
            match &t.audit {
                // A single statement needs no explicit transaction (progress writes).
                None => q.fetch_optional(pool).await.map_err(StoreError::from),
                Some((action, detail)) => {
                    let mut tx = pool.begin().await?;
                    let row: Option<JobRow> = q.fetch_optional(&mut *tx).await?;
                    if row.is_some() {
                        insert_audit!(&mut *tx, tenant, job, action, detail, now);
                    }
                    tx.commit().await?;
                    Ok(row)
                }
            }
        })?;
        match updated {
            Some(row) => Ok(WriteOutcome::Applied(row.try_into()?)),
            None => self.refusal(tenant, job, Some(attempt), &t.rule).await,
        }
    }

    /// Why a guarded write changed nothing: the current record and the core's reason.
    async fn refusal(
        &self,
        tenant: &TenantId,
        job: &JobId,
        attempt: Option<u32>,
        rule: &Rule<'_>,
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

/// [`Store::create_pending_many`] on PostgreSQL: one statement inserts every new record with its
/// audit row; only duplicates (rare) cost more statements. One transaction either way.
async fn create_pending_pg(
    pool: &sqlx::PgPool,
    records: &[JobRecord],
    now: DateTime<Utc>,
) -> Result<Vec<(JobRecord, bool)>, StoreError> {
    let column = |f: fn(&JobRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let mut tx = pool.begin().await?;
    let inserted: Vec<JobRow> = sqlx::query_as(PG_CREATES_SQL)
        .bind(column(|r| r.job_id.as_str()))
        .bind(column(|r| r.tenant_id.as_str()))
        .bind(column(|r| r.ticket_id.as_str()))
        .bind(
            records.iter().map(|r| i64::try_from(r.ticket_revision).unwrap_or(i64::MAX)).collect::<Vec<_>>(),
        )
        .bind(records.iter().map(|r| to_i32(r.max_attempts)).collect::<Vec<_>>())
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
    let mut created = std::collections::HashMap::with_capacity(inserted.len());
    for row in inserted {
        let record = JobRecord::try_from(row)?;
        created.insert(record.job_id.clone(), record);
    }
    // The first request for a created id is its creator; every other request is a duplicate.
    let mut claimed = std::collections::HashSet::new();
    let duplicates: Vec<&JobRecord> = records
        .iter()
        .filter(|r| !(created.contains_key(&r.job_id) && claimed.insert(r.job_id.clone())))
        .collect();
    let mut existing = std::collections::HashMap::new();
    if !duplicates.is_empty() {
        const SELECT_MANY: &str = concat!("SELECT ", columns!(), " FROM jobs WHERE job_id = ANY($1)");
        const AUDIT_MANY: &str = "INSERT INTO audit_log (tenant_id, job_id, action, detail, at) \
             SELECT tenant, job, 'duplicate_enqueue', detail, $4 \
             FROM UNNEST($1::text[], $2::text[], $3::jsonb[]) AS v(tenant, job, detail)";
        let ids: Vec<&str> = duplicates.iter().map(|r| r.job_id.as_str()).collect();
        let rows: Vec<JobRow> = sqlx::query_as(SELECT_MANY).bind(&ids).fetch_all(&mut *tx).await?;
        for row in rows {
            let record = JobRecord::try_from(row)?;
            existing.insert(record.job_id.clone(), record);
        }
        for r in &duplicates {
            // Another tenant's job reads as missing, as in `get_job`.
            if existing.get(&r.job_id).is_none_or(|e: &JobRecord| e.tenant_id != r.tenant_id) {
                return Err(StoreError::NotFound("job"));
            }
        }
        sqlx::query(AUDIT_MANY)
            .bind(duplicates.iter().map(|r| r.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(&ids)
            .bind(
                duplicates
                    .iter()
                    .map(|r| Json(json!({ "ticket_id": r.ticket_id, "ticket_revision": r.ticket_revision })))
                    .collect::<Vec<_>>(),
            )
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let mut claimed = std::collections::HashSet::new();
    records
        .iter()
        .map(|r| match created.get(&r.job_id) {
            Some(record) => Ok((record.clone(), claimed.insert(r.job_id.clone()))),
            None => existing.get(&r.job_id).map(|e| (e.clone(), false)).ok_or(StoreError::NotFound("job")),
        })
        .collect()
}

/// [`Store::create_pending_many`] one statement per record (SQLite: in-process, so statements are
/// cheap), in one transaction. Rows are written in job-id order, so concurrent batches lock in the
/// same order and cannot deadlock.
async fn create_pending_each(
    pool: &sqlx::SqlitePool,
    records: &[JobRecord],
) -> Result<Vec<(JobRecord, bool)>, StoreError> {
    const INSERT: &str = concat!(
        "INSERT INTO jobs (",
        columns!(),
        ") VALUES ($1, $2, $3, $4, $5, NULL, 0, 0, $6, NULL, NULL, NULL, NULL, $7, $7, NULL, NULL, NULL, NULL) \
         ON CONFLICT (job_id) DO NOTHING RETURNING ",
        columns!()
    );
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&x, &y| records[x].job_id.cmp(&records[y].job_id));
    let mut tx = pool.begin().await?;
    let mut out: Vec<Option<(JobRecord, bool)>> = (0..records.len()).map(|_| None).collect();
    for &i in &order {
        let r = &records[i];
        let inserted: Option<JobRow> = sqlx::query_as(INSERT)
            .bind(r.job_id.as_str())
            .bind(r.tenant_id.as_str())
            .bind(r.ticket_id.as_str())
            .bind(i64::try_from(r.ticket_revision).unwrap_or(i64::MAX))
            .bind(JobStatus::Queued.as_str())
            .bind(to_i32(r.max_attempts))
            .bind(r.created_at)
            .fetch_optional(&mut *tx)
            .await?;
        let (row, created) = match inserted {
            Some(row) => (row, true),
            None => {
                let existing: Option<JobRow> = sqlx::query_as(SELECT_ONE)
                    .bind(r.job_id.as_str())
                    .bind(r.tenant_id.as_str())
                    .fetch_optional(&mut *tx)
                    .await?;
                (existing.ok_or(StoreError::NotFound("job"))?, false)
            }
        };
        let action = if created { "enqueued" } else { "duplicate_enqueue" };
        sqlx::query(audit_sql())
            .bind(r.tenant_id.as_str())
            .bind(Some(r.job_id.as_str()))
            .bind(action)
            .bind(Json(json!({ "ticket_id": r.ticket_id, "ticket_revision": r.ticket_revision })))
            .bind(r.created_at)
            .execute(&mut *tx)
            .await?;
        out[i] = Some((row.try_into()?, created));
    }
    tx.commit().await?;
    out.into_iter().map(|o| o.ok_or(StoreError::NotFound("job"))).collect()
}

/// Where [`write_batch_pg`] writes: a transaction, or one connection in autocommit mode.
enum PgWriter {
    Transaction(sqlx::Transaction<'static, sqlx::Postgres>),
    Autocommit(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl PgWriter {
    fn connection(&mut self) -> &mut sqlx::PgConnection {
        match self {
            Self::Transaction(tx) => tx,
            Self::Autocommit(conn) => conn,
        }
    }
}

/// Whether [`write_batch_pg`] may write `writes` as one statement per kind without changing
/// their outcome: every job started at most once, completed at most once, and never both.
fn pg_batchable(writes: &[Write]) -> bool {
    let mut started = std::collections::HashSet::new();
    let mut completed = std::collections::HashSet::new();
    writes.iter().all(|w| match w {
        Write::Complete { job, .. } => completed.insert(job) && !started.contains(job),
        Write::Start { job, .. } | Write::StartNext { job, .. } => {
            started.insert(job) && !completed.contains(job)
        }
    })
}

/// [`Store::write_batch`] on PostgreSQL: the progress writes, the starts and the completions, one
/// multi-row statement each, in that order; in one transaction when there is more than one.
async fn write_batch_pg(
    pool: &sqlx::PgPool,
    progress: &[ProgressWrite<'_>],
    writes: &[Write],
    now: DateTime<Utc>,
) -> Result<(Vec<bool>, Vec<Option<JobRow>>), StoreError> {
    // Progress: one write per job (a statement cannot update a row twice) — the last of its newest
    // attempt (an older attempt's write would be refused anyway). In job-id order, so concurrent
    // batches lock rows in the same order.
    let mut last: std::collections::HashMap<&str, usize> =
        std::collections::HashMap::with_capacity(progress.len());
    for (i, (_, job, attempt, ..)) in progress.iter().enumerate() {
        let newest = last.get(job.as_str()).is_none_or(|&j| *attempt >= progress[j].2);
        if newest {
            last.insert(job.as_str(), i);
        }
    }
    let mut chosen: Vec<usize> = last.values().copied().collect();
    chosen.sort_unstable_by_key(|&i| progress[i].1.as_str());
    let (mut jobs, mut tenants, mut attempts, mut stages, mut percents) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for &i in &chosen {
        let (tenant, job, attempt, stage, percent) = progress[i];
        jobs.push(job.as_str());
        tenants.push(tenant.as_str());
        attempts.push(i32::try_from(attempt).unwrap_or(i32::MAX));
        stages.push(stage);
        percents.push(i32::from(percent.percent()));
    }
    let progress_query = sqlx::query_as::<_, (String,)>(PG_PROGRESS_SQL)
        .bind(jobs)
        .bind(tenants)
        .bind(attempts)
        .bind(stages)
        .bind(percents)
        .bind(now);

    // In job-id order, so concurrent batches lock rows in the same order.
    let mut starts: Vec<&Write> = writes.iter().filter(|w| !matches!(w, Write::Complete { .. })).collect();
    let mut completes: Vec<&Write> = writes.iter().filter(|w| matches!(w, Write::Complete { .. })).collect();
    starts.sort_unstable_by_key(|w| w.target().1.as_str());
    completes.sort_unstable_by_key(|w| w.target().1.as_str());
    let ids = |ws: &[&Write]| ws.iter().map(|w| w.target().1.as_str().to_owned()).collect::<Vec<_>>();
    let tenants = |ws: &[&Write]| ws.iter().map(|w| w.target().0.as_str().to_owned()).collect::<Vec<_>>();
    let attempts = |ws: &[&Write]| {
        ws.iter().map(|w| w.attempt().map(|a| i32::try_from(a).unwrap_or(i32::MAX))).collect::<Vec<_>>()
    };
    let (mut entries, mut deliveries, mut entry_attempts) = (Vec::new(), Vec::new(), Vec::new());
    for w in &starts {
        let (entry, delivery, entry_attempt) = match w {
            Write::StartNext { lease, entry_attempt, .. } => {
                (Some(lease.entry.as_str()), Some(to_i32(lease.delivery)), Some(to_i32(*entry_attempt)))
            }
            _ => (None, None, None),
        };
        entries.push(entry);
        deliveries.push(delivery);
        entry_attempts.push(entry_attempt);
    }
    let start_query = sqlx::query_as::<_, JobRow>(PG_STARTS_SQL)
        .bind(ids(&starts))
        .bind(tenants(&starts))
        .bind(attempts(&starts))
        .bind(now)
        .bind(entries)
        .bind(deliveries)
        .bind(entry_attempts);
    let outputs: Vec<Json<&Value>> = completes
        .iter()
        .filter_map(|w| match w {
            Write::Complete { output, .. } => Some(Json(output)),
            _ => None,
        })
        .collect();
    let complete_query = sqlx::query_as::<_, JobRow>(PG_COMPLETES_SQL)
        .bind(ids(&completes))
        .bind(tenants(&completes))
        .bind(attempts(&completes))
        .bind(outputs)
        .bind(now);

    let statements = [!chosen.is_empty(), !starts.is_empty(), !completes.is_empty()];
    // One statement commits on its own; more share a transaction.
    let mut db = if statements.iter().filter(|s| **s).count() > 1 {
        PgWriter::Transaction(pool.begin().await?)
    } else {
        PgWriter::Autocommit(pool.acquire().await?)
    };
    let updated: Vec<(String,)> =
        if statements[0] { progress_query.fetch_all(db.connection()).await? } else { Vec::new() };
    let mut written: Vec<JobRow> =
        if statements[1] { start_query.fetch_all(db.connection()).await? } else { Vec::new() };
    if statements[2] {
        written.extend(complete_query.fetch_all(db.connection()).await?);
    }
    if let PgWriter::Transaction(tx) = db {
        tx.commit().await?;
    }

    let updated: std::collections::HashSet<String> = updated.into_iter().map(|(j,)| j).collect();
    let applied = progress
        .iter()
        .map(|(_, job, attempt, ..)| {
            updated.contains(job.as_str())
                && last.get(job.as_str()).is_some_and(|&i| progress[i].2 == *attempt)
        })
        .collect();
    let mut by_job: std::collections::HashMap<String, JobRow> =
        written.into_iter().map(|r| (r.job_id.clone(), r)).collect();
    Ok((applied, writes.iter().map(|w| by_job.remove(w.target().1.as_str())).collect()))
}
