//! An operator's view of the jobs of every tenant: filtered keyset pages across tenants
//! ([`Store::list_jobs_admin`]), any job by id ([`Store::get_job_admin`]), and the bulk retry of
//! failed jobs matching a filter ([`Store::retry_failed_batch`], counted by
//! [`Store::count_failed`] for a dry run). An operator's cancel or retry of one job goes through
//! the tenant's paths ([`Store::cancel`], [`Store::requeue`]) under the job's owner
//! ([`Store::job_owner`]), with `by` saying who asked.
//!
//! A page of the list is read newest first by walking down from its cursor, through the index of
//! its most selective filter where migration 0007 gives it one; a page of a window of creation
//! time that many newer jobs follow is read window first instead (`Store::window_first`).
//! docs/QUERY_PLANS.md shows the plans on a million jobs.
//!
//! A bulk retry walks the failed jobs in creation order, a batch at a time: each batch is found
//! ([`Store::failed_batch`]), then put back in one transaction of guarded requeues
//! ([`Store::retry_failed`]) with their `retried` audit rows. Each requeue checks again, in its
//! `WHERE`, that the job is still `failed` and still matches the filter: a job retried and
//! cancelled by its tenant since it was found stays cancelled, and one that failed again with
//! another class is left alone. The caller enqueues each batch's jobs before asking for the next,
//! so a crash between batches leaves at most one batch of `queued` records for the reconciler.

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, Priority, TenantId};
use serde_json::json;

use super::read::{page, page_start};
use super::row::{JobRow, PagedJobRow, corrupt, status_filter};
use super::{JobPage, MAX_PAGE_SIZE};
use crate::backend::{Arg, Db};
use crate::{Store, StoreError, audit, now};

/// `$1` tenant or NULL, `$2` seq to start below, `$3` limit, `$4`–`$10` the filters (`$5` and `$11`:
/// the status as [`status_filter`] gives it).
const SELECT_PAGE_ADMIN: &str = include_str!("../../sql/common/jobs/select_page_admin.sql");
/// [`SELECT_PAGE_ADMIN`] read window first (PostgreSQL only): the same parameters and rows.
const SELECT_PAGE_ADMIN_WINDOW: &str = include_str!("../../sql/postgres/jobs/select_page_admin_window.sql");
/// `$1` created at or after (NULL: any), `$2` created before.
const CREATED_BOUNDS: &str = include_str!("../../sql/postgres/jobs/created_bounds.sql");
/// The most jobs a window of creation time may hold for [`Store::list_jobs_admin`] to read a page
/// of it window first (every job of the window, then the newest of them): at most this many rows
/// read and sorted, a few tens of milliseconds.
const WINDOW_FIRST_MAX: i64 = 50_000;
/// `$1` seq to start after, `$2` limit, `$3`–`$7` the filters.
const SELECT_FAILED: &str = include_str!("../../sql/common/jobs/select_failed.sql");
/// `$1`–`$5` the filters.
const COUNT_FAILED: &str = include_str!("../../sql/common/jobs/count_failed.sql");
/// `$1` job, `$2` tenant, `$3` budget, `$4` time, `$5`–`$9` the filters: [`Store::requeue`]'s
/// update, for a `failed` job still matching the filters only.
const REQUEUE_FAILED: &str = include_str!("../../sql/common/jobs/requeue_failed.sql");

/// The largest batch [`Store::retry_failed_batch`] takes.
pub const MAX_RETRY_BATCH: u32 = 1000;

/// The longest key [`AdminJobFilter::key`] takes, in bytes: past every key a job can be recorded
/// with here (a client's `Idempotency-Key` is at most 255 bytes, the keys the kinds derive are
/// shorter), with room for a kind that derives longer ones.
pub const MAX_KEY_FILTER_LEN: usize = 1024;

/// Which jobs [`Store::list_jobs_admin`] lists: those matching every filter set (`None`: any),
/// of every tenant unless `tenant` is set. The default lists them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminJobFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<TenantId>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs whose last failure is of this class.
    pub error_class: Option<ErrorClass>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs of this priority.
    pub priority: Option<Priority>,
    /// Only jobs recorded with exactly this key (the key their id was derived from: a client's
    /// `Idempotency-Key`, or the one their kind derived). Jobs of several tenants may share one.
    pub key: Option<String>,
}

impl AdminJobFilter {
    /// Checks `key` as a value of [`AdminJobFilter::key`]: not empty (leave the filter out to
    /// list every key) and at most [`MAX_KEY_FILTER_LEN`] bytes. The error says which, for an
    /// operator to read.
    ///
    /// # Errors
    /// What is wrong with `key`.
    pub fn check_key(key: &str) -> Result<(), String> {
        if key.is_empty() {
            Err("must not be empty: leave it out to list jobs of every key".to_owned())
        } else if key.len() > MAX_KEY_FILTER_LEN {
            Err(format!("must be at most {MAX_KEY_FILTER_LEN} bytes, got {}", key.len()))
        } else if key.contains('\0') {
            Err("must not contain NUL (\\u0000): no job's key holds one".to_owned())
        } else {
            Ok(())
        }
    }
}

/// Which failed jobs a bulk retry takes: every `failed` job matching every filter set (`None`:
/// any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FailedFilter {
    /// Only this tenant's jobs.
    pub tenant: Option<TenantId>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs that failed with this class.
    pub error_class: Option<ErrorClass>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
}

/// One batch of a bulk retry ([`Store::retry_failed_batch`]).
#[derive(Debug, Clone, PartialEq)]
pub struct RetriedBatch {
    /// Failed jobs the batch found matching.
    pub matched: u64,
    /// Those it put back (`queued`, a fresh budget), for the caller to enqueue; fewer than
    /// `matched` when some stopped being `failed`, or stopped matching the filter, meanwhile
    /// (another retry won, the tenant cancelled it, it failed again with another class).
    pub retried: Vec<JobRecord>,
    /// Pass back as `after` for the next batch; `None` after the last.
    pub next: Option<i64>,
}

/// A failed job found for a bulk retry ([`Store::failed_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedJob {
    /// The job.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Its kind (which sets its budget).
    pub kind: String,
}

/// The failed jobs of one batch of a bulk retry, found but not yet put back
/// ([`Store::failed_batch`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedBatch {
    /// The jobs, in creation order.
    pub jobs: Vec<FailedJob>,
    /// Pass back as `after` for the next batch; `None` after the last.
    pub next: Option<i64>,
}

#[derive(sqlx::FromRow)]
struct FailedRow {
    seq: i64,
    job_id: String,
    tenant_id: String,
    kind: String,
}

impl Store {
    /// Lists the jobs of every tenant (or of `filter.tenant`) matching `filter`, newest first,
    /// with the cursor of [`Store::list_jobs`] (`limit` clamped to 1..=[`MAX_PAGE_SIZE`]).
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue; [`StoreError::Database`].
    pub async fn list_jobs_admin(
        &self,
        filter: &AdminJobFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobPage, StoreError> {
        let before = page_start(cursor)?;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let sql = if self.window_first(filter.created_after, filter.created_before, before).await? {
            SELECT_PAGE_ADMIN_WINDOW
        } else {
            SELECT_PAGE_ADMIN
        };
        let (phase, status) = status_filter(filter.status);
        let args: [Arg<'_>; 11] = [
            filter.tenant.as_ref().map(TenantId::as_str).into(),
            before.into(),
            (i64::from(limit) + 1).into(),
            filter.kind.as_deref().into(),
            status.into(),
            filter.error_class.map(ErrorClass::as_str).into(),
            filter.created_after.into(),
            filter.created_before.into(),
            filter.priority.map(Priority::as_str).into(),
            filter.key.as_deref().into(),
            phase.into(),
        ];
        let rows: Vec<PagedJobRow> = self.db.fetch_all_uncached(sql, &args).await?;
        page(rows, limit)
    }

    /// Whether [`Store::list_jobs_admin`] or [`Store::list_jobs`] reads a page of jobs created in
    /// [`created_after`, `created_before`) window first. A page is read newest first, and
    /// PostgreSQL reads it by walking jobs down from the cursor (by seq, or an index by tenant,
    /// status, kind, error class...) until the page is full, which it expects to be quick when a
    /// filter lets through a share of the jobs spread over them. A window of creation time is not
    /// spread: its jobs follow one another in seq, so a window that ends in the past is reached
    /// only after every job created since. So when the window holds fewer than
    /// [`WINDOW_FIRST_MAX`] jobs (of every tenant: the window's are read through `jobs_by_created`),
    /// and more came after it, the page is read window first; where the window lies in seq
    /// ([`CREATED_BOUNDS`], three index probes) tells. Either way the page is the same. A later
    /// page (below seq `below`, its cursor) counts only what lies below it: once the cursor is
    /// inside the window or below it, the walk starts there and is short. SQLite plans without the
    /// filters' values and would never use the window's index: it always walks.
    pub(super) async fn window_first(
        &self,
        created_after: Option<DateTime<Utc>>,
        created_before: Option<DateTime<Utc>>,
        below: i64,
    ) -> Result<bool, StoreError> {
        let (Db::Postgres(_), Some(before)) = (&self.db, created_before) else { return Ok(false) };
        let args: [Arg<'_>; 2] = [created_after.into(), before.into()];
        let bounds: Vec<(Option<i64>, Option<i64>, Option<i64>)> =
            self.db.fetch_all_uncached(CREATED_BOUNDS, &args).await?;
        Ok(match bounds.first() {
            // The walk would start inside the window or below it: it is short.
            Some(&(_, Some(end), _)) if below <= end => false,
            Some(&(Some(start), Some(end), Some(newest))) => {
                let in_window = end.min(below).saturating_sub(start).max(0);
                let after = newest.min(below.saturating_sub(1)).saturating_sub(end).saturating_add(1);
                in_window < WINDOW_FIRST_MAX && after > in_window
            }
            // No job created since the window: the walk down starts in it.
            _ => false,
        })
    }

    /// Any tenant's job `job` (an operator's read).
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_job_admin(&self, job: &JobId) -> Result<Option<JobRecord>, StoreError> {
        match self.job_owner(job).await? {
            Some(owner) => self.get_job(&owner, job).await,
            None => Ok(None),
        }
    }

    /// How many failed jobs match `filter`: what a bulk retry would take now (its dry run).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn count_failed(&self, filter: &FailedFilter) -> Result<u64, StoreError> {
        let args: [Arg<'_>; 5] = [
            filter.tenant.as_ref().map(TenantId::as_str).into(),
            filter.kind.as_deref().into(),
            filter.error_class.map(ErrorClass::as_str).into(),
            filter.created_after.into(),
            filter.created_before.into(),
        ];
        let row: Option<(i64,)> = self.db.fetch_optional(COUNT_FAILED, &args).await?;
        Ok(row.map_or(0, |(n,)| u64::try_from(n).unwrap_or(0)))
    }

    /// One batch of a bulk retry: the next `batch` (1..=[`MAX_RETRY_BATCH`]) failed jobs matching
    /// `filter` created after seq `after` (0 to start), each put back in the queue as
    /// [`Store::requeue`] does — `budget(kind)` more attempts, audited as `retried` with `by` and
    /// `"bulk": true` — in one transaction: [`Store::failed_batch`], then [`Store::retry_failed`].
    /// Enqueue the batch's `retried` jobs, then pass `next` back as `after` until it is `None`.
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of the batch was retried; [`StoreError::Corrupt`].
    pub async fn retry_failed_batch(
        &self,
        filter: &FailedFilter,
        after: i64,
        batch: u32,
        budget: impl Fn(&str) -> u32,
        by: &str,
    ) -> Result<RetriedBatch, StoreError> {
        let found = self.failed_batch(filter, after, batch).await?;
        let retried = self.retry_failed(filter, &found.jobs, budget, by).await?;
        Ok(RetriedBatch { matched: found.jobs.len() as u64, retried, next: found.next })
    }

    /// The next `batch` (1..=[`MAX_RETRY_BATCH`]) failed jobs matching `filter` created after seq
    /// `after` (0 to start), in creation order, and the `after` of the batch that follows (`None`
    /// after the last). Nothing changes: [`Store::retry_failed`] puts them back.
    ///
    /// # Errors
    /// [`StoreError::Database`]; [`StoreError::Corrupt`].
    pub async fn failed_batch(
        &self,
        filter: &FailedFilter,
        after: i64,
        batch: u32,
    ) -> Result<FailedBatch, StoreError> {
        let batch = batch.clamp(1, MAX_RETRY_BATCH);
        let args: [Arg<'_>; 7] = [
            after.into(),
            i64::from(batch).into(),
            filter.tenant.as_ref().map(TenantId::as_str).into(),
            filter.kind.as_deref().into(),
            filter.error_class.map(ErrorClass::as_str).into(),
            filter.created_after.into(),
            filter.created_before.into(),
        ];
        let rows: Vec<FailedRow> = self.db.fetch_all_uncached(SELECT_FAILED, &args).await?;
        let next = if rows.len() == batch as usize { rows.last().map(|r| r.seq) } else { None };
        let jobs = rows
            .into_iter()
            .map(|row| {
                Ok(FailedJob {
                    job_id: JobId::parse(row.job_id).map_err(corrupt)?,
                    tenant_id: TenantId::parse(row.tenant_id).map_err(corrupt)?,
                    kind: row.kind,
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(FailedBatch { jobs, next })
    }

    /// Puts `jobs` (found by [`Store::failed_batch`] with the same `filter`) back in the queue in
    /// one transaction, each as [`Store::requeue`] does — `budget(kind)` more attempts, audited as
    /// `retried` with `by` and `"bulk": true` — but only while it is still `failed` and still
    /// matches `filter`: a job that changed since it was found is skipped. Returns those put back,
    /// for the caller to enqueue.
    ///
    /// # Errors
    /// [`StoreError::Database`]: then none of them was retried; [`StoreError::Corrupt`];
    /// [`StoreError::AttemptOutOfRange`] for a budget the database cannot hold.
    pub async fn retry_failed(
        &self,
        filter: &FailedFilter,
        jobs: &[FailedJob],
        budget: impl Fn(&str) -> u32,
        by: &str,
    ) -> Result<Vec<JobRecord>, StoreError> {
        let now = now();
        let mut retried = Vec::with_capacity(jobs.len());
        // The jobs were read outside this transaction (a SQLite transaction that reads first may
        // not be able to write); each requeue checks status and filter again in its WHERE.
        let mut tx = self.db.begin().await?;
        for FailedJob { job_id, tenant_id, kind } in jobs {
            let budget = budget(kind).max(1);
            let b = i32::try_from(budget).map_err(|_| StoreError::AttemptOutOfRange(budget))?;
            let args: [Arg<'_>; 9] = [
                job_id.as_str().into(),
                tenant_id.as_str().into(),
                b.into(),
                now.into(),
                filter.tenant.as_ref().map(TenantId::as_str).into(),
                filter.kind.as_deref().into(),
                filter.error_class.map(ErrorClass::as_str).into(),
                filter.created_after.into(),
                filter.created_before.into(),
            ];
            let requeued: Option<JobRow> = tx.fetch_optional(REQUEUE_FAILED, &args).await?;
            if let Some(requeued) = requeued {
                let record = JobRecord::try_from(requeued)?;
                let detail =
                    audit::at_attempt(json!({ "by": by, "budget": budget, "bulk": true }), record.attempts);
                audit::append(&mut tx, tenant_id, Some(job_id), "retried", &detail, now).await?;
                retried.push(record);
            }
        }
        tx.commit().await?;
        Ok(retried)
    }
}

#[cfg(test)]
mod tests {
    use super::super::read::{SELECT_PAGE, SELECT_PAGE_WINDOW};
    use super::{SELECT_PAGE_ADMIN, SELECT_PAGE_ADMIN_WINDOW};

    /// A statement's SQL without its comment lines.
    fn code(sql: &str) -> String {
        sql.lines().filter(|l| !l.trim_start().starts_with("--")).collect::<Vec<_>>().join("\n")
    }

    #[test]
    fn the_window_first_page_is_the_same_page_in_another_order_of_reading() {
        for (page, window) in
            [(SELECT_PAGE_ADMIN, SELECT_PAGE_ADMIN_WINDOW), (SELECT_PAGE, SELECT_PAGE_WINDOW)]
        {
            let plain = code(page);
            assert!(plain.contains("\nORDER BY seq DESC\n"), "{plain}");
            assert_eq!(code(window), plain.replace("\nORDER BY seq DESC\n", "\nORDER BY seq + 0 DESC\n"));
        }
    }
}
