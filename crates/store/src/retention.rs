//! Retention: pruning what is old enough to go, in small batches, so the tables stay bounded —
//! finished job records with their audit rows, audit rows of no (or no longer any) job, and the
//! operation log ([`Store::prune`]). The worker's pruner runs it under a task lease
//! ([`crate::task_leases`]), so one process across replicas prunes at a time.
//!
//! What goes, each kind in batches of at most `batch` rows, each batch its own short transaction,
//! oldest first by the indexes of migrations 0006 and 0009:
//!
//! - **finished jobs** — `completed`, `failed` or `cancelled`, finished before the jobs' cutoff
//!   (`jobs_finished`) — with every audit row of each, in the same transaction. A live job
//!   (scheduled, queued, running) is never touched. Its operations still `started` (a step begun
//!   and never finished) go with it: such an operation belongs to the attempt that began it, and a
//!   resubmission under the same id counts its attempts from 1 again, so it must find the step new
//!   (migration 0011 removed those left by earlier pruning). On PostgreSQL a job row a concurrent
//!   writer holds (a retry on request) is skipped, never waited for.
//! - **audit rows** older than the jobs' cutoff that concern no job, or a job that no longer exists
//!   (a row appended while its job was being pruned) (`audit_by_time`).
//! - **operations** begun and last written before the operations' cutoff (`operations_by_time`,
//!   on `created_at`, which never changes, so the index leaves an operation's finish a HOT update
//!   on PostgreSQL — migration 0009; `updated_at` is checked on each row read) whose job's record
//!   is gone: a kept record, live or finished, keeps its steps, however old.
//!
//! # Idempotency after pruning
//!
//! The operation log is what makes a side effect at-most-once (see [`crate::ops`]), so it is kept
//! longer than the records: a job id is derived from its tenant, kind and key, so a resubmission
//! of a job whose record was pruned creates a new record under the same id, and its durable steps
//! find their operations — same [`OperationId`](longhaul_core::OperationId)s — still `done` and
//! reuse the stored results instead of running their effects again, as long as the operations are
//! kept (the longer cutoff). Once they are pruned too, a resubmission runs as a new job. A
//! resubmission of a job whose record is kept is a duplicate, as always.

use chrono::{DateTime, Utc};

use crate::backend::{Arg, Db};
use crate::{Store, StoreError};

/// PostgreSQL: `$1` cutoff, `$2` batch; the jobs and their audit rows in one statement.
const PG_PRUNE_JOBS: &str = include_str!("../sql/postgres/retention/prune_jobs.sql");
/// SQLite: `$1` cutoff, `$2` batch; the batch's audit rows and started operations, then the batch.
const SQLITE_PRUNE_JOBS_OPERATIONS: &str = include_str!("../sql/sqlite/retention/prune_jobs_operations.sql");
const SQLITE_PRUNE_JOBS_AUDIT: &str = include_str!("../sql/sqlite/retention/prune_jobs_audit.sql");
const SQLITE_PRUNE_JOBS: &str = include_str!("../sql/sqlite/retention/prune_jobs.sql");
/// `$1` cutoff, `$2` batch.
const PRUNE_AUDIT: &str = include_str!("../sql/common/retention/prune_audit.sql");
/// `$1` cutoff, `$2` batch.
const PRUNE_OPERATIONS: &str = include_str!("../sql/common/retention/prune_operations.sql");

/// The largest batch [`Store::prune`] deletes at once; larger requests are clamped to it.
pub const MAX_PRUNE_BATCH: u32 = 10_000;

/// What one [`Store::prune`] round deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished job records.
    pub jobs: u64,
    /// Audit rows: those of the jobs deleted, and those of no existing job.
    pub audit_rows: u64,
    /// Operations of the operation log.
    pub operations: u64,
    /// Whether a batch was full, so another round may find more to delete.
    pub more: bool,
}

impl Pruned {
    /// Rows deleted in all.
    pub fn total(&self) -> u64 {
        self.jobs + self.audit_rows + self.operations
    }

    /// Adds the counts of another round (`more` is the other round's).
    pub fn add(&mut self, other: Pruned) {
        self.jobs += other.jobs;
        self.audit_rows += other.audit_rows;
        self.operations += other.operations;
        self.more = other.more;
    }
}

#[derive(sqlx::FromRow)]
struct Counts {
    jobs: i64,
    audit_rows: i64,
    operations: i64,
}

/// What one batch of finished jobs took with it.
struct JobsPruned {
    jobs: u64,
    audit_rows: u64,
    operations: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

impl Store {
    /// One round of pruning (see the module docs): deletes at most `batch` finished jobs that
    /// finished before `older_than_jobs`, with their audit rows; at most `batch` audit rows older
    /// than `older_than_jobs` of no existing job; and at most `batch` operations begun before
    /// `older_than_ops` (of no existing job) — oldest first, each its own short transaction.
    /// `batch` is clamped to `1..=`[`MAX_PRUNE_BATCH`]. Call it again while [`Pruned::more`].
    ///
    /// Pass an `older_than_ops` no later than `older_than_jobs`: the operation log is what a
    /// resubmission of a pruned job needs (see the module docs).
    ///
    /// # Errors
    /// [`StoreError::Database`]: the batches before the failing one stay deleted.
    pub async fn prune(
        &self,
        older_than_jobs: DateTime<Utc>,
        older_than_ops: DateTime<Utc>,
        batch: u32,
    ) -> Result<Pruned, StoreError> {
        let batch = batch.clamp(1, MAX_PRUNE_BATCH);
        let limit = i64::from(batch);
        let done = self.prune_jobs(older_than_jobs, limit).await?;
        let (jobs, job_audit) = (done.jobs, done.audit_rows);
        let args: [Arg<'_>; 2] = [older_than_jobs.into(), limit.into()];
        let orphans = self.db.execute(PRUNE_AUDIT, &args).await?;
        let args: [Arg<'_>; 2] = [older_than_ops.into(), limit.into()];
        let operations = self.db.execute(PRUNE_OPERATIONS, &args).await?;
        let full = |n: u64| n >= u64::from(batch);
        Ok(Pruned {
            jobs,
            audit_rows: job_audit + orphans,
            operations: done.operations + operations,
            more: full(jobs) || full(orphans) || full(operations),
        })
    }

    /// One batch of finished jobs before `cutoff`, with their audit rows and started operations.
    async fn prune_jobs(&self, cutoff: DateTime<Utc>, limit: i64) -> Result<JobsPruned, StoreError> {
        let args: [Arg<'_>; 2] = [cutoff.into(), limit.into()];
        match &self.db {
            Db::Postgres(_) => {
                let counts: Option<Counts> = self.db.fetch_optional(PG_PRUNE_JOBS, &args).await?;
                Ok(counts.map_or(JobsPruned { jobs: 0, audit_rows: 0, operations: 0 }, |c| JobsPruned {
                    jobs: count(c.jobs),
                    audit_rows: count(c.audit_rows),
                    operations: count(c.operations),
                }))
            }
            Db::Sqlite(_) => {
                // The first statement writes, so the transaction holds SQLite's write lock from
                // its start and both statements choose the same batch.
                let mut tx = self.db.begin().await?;
                let audit_rows = tx.execute(SQLITE_PRUNE_JOBS_AUDIT, &args).await?;
                let operations = tx.execute(SQLITE_PRUNE_JOBS_OPERATIONS, &args).await?;
                let jobs = tx.execute(SQLITE_PRUNE_JOBS, &args).await?;
                tx.commit().await?;
                Ok(JobsPruned { jobs, audit_rows, operations })
            }
        }
    }
}
