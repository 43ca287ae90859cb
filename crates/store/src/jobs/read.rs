//! Reading job records: one job (scoped by tenant), its owner (integrity checks only), the
//! reconciler's scan of stale live jobs, and a tenant's jobs in filtered keyset pages — walked
//! newest first from the cursor, or, for a window of creation time that many newer jobs follow,
//! read window first as the operator's list is (`Store::window_first`).

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobId, JobRecord, TenantId};

use super::row::{JobRow, PagedJobRow, corrupt, status_filter};
use super::{JobFilter, JobPage, MAX_PAGE_SIZE};
use crate::backend::{Arg, Session};
use crate::{Store, StoreError};

/// `$1` job, `$2` tenant.
const SELECT: &str = include_str!("../../sql/common/jobs/select.sql");
const SELECT_OWNER: &str = include_str!("../../sql/common/jobs/select_owner.sql");
const SELECT_STALE_LIVE: &str = include_str!("../../sql/common/jobs/select_stale_live.sql");
/// `$1` tenant, `$2` seq to start below, `$3` limit, `$4`–`$9` the filters (`$5` and `$10`: the
/// status as [`status_filter`] gives it).
pub(super) const SELECT_PAGE: &str = include_str!("../../sql/common/jobs/select_page.sql");
/// [`SELECT_PAGE`] read window first (PostgreSQL only): the same parameters and rows.
pub(super) const SELECT_PAGE_WINDOW: &str = include_str!("../../sql/postgres/jobs/select_page_window.sql");

/// The record of `job` of `tenant`, read in `session` (inside a write's transaction, say).
pub(super) async fn select(
    session: &mut Session,
    tenant: &TenantId,
    job: &JobId,
) -> Result<Option<JobRow>, StoreError> {
    session.fetch_optional(SELECT, &[job.as_str().into(), tenant.as_str().into()]).await
}

/// [`select`], decoded.
pub(crate) async fn select_record(
    session: &mut Session,
    tenant: &TenantId,
    job: &JobId,
) -> Result<Option<JobRecord>, StoreError> {
    select(session, tenant, job).await?.map(JobRecord::try_from).transpose()
}

impl Store {
    /// Reads one job of `tenant`. Another tenant's job reads as `None`, like a missing one.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_job(&self, tenant: &TenantId, job: &JobId) -> Result<Option<JobRecord>, StoreError> {
        select_record(&mut self.db.connect().await?, tenant, job).await
    }

    /// The tenant that owns job `job`, whoever asks. Only for integrity checks inside the worker
    /// (a queue entry claiming the wrong tenant is an alert); never exposed through the API.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn job_owner(&self, job: &JobId) -> Result<Option<TenantId>, StoreError> {
        let row: Option<(String,)> = self.db.fetch_optional(SELECT_OWNER, &[job.as_str().into()]).await?;
        row.map(|(t,)| TenantId::parse(t).map_err(corrupt)).transpose()
    }

    /// Live jobs (scheduled, queued or running) of every tenant not updated since `cutoff`, in
    /// creation order after `after_seq` — the reconciler's scan. Returns `(seq, record)` pairs;
    /// pass the last seq back to continue.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn stale_live_jobs(
        &self,
        cutoff: DateTime<Utc>,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<(i64, JobRecord)>, StoreError> {
        let args: [Arg<'_>; 3] = [cutoff.into(), after_seq.into(), i64::from(limit.max(1)).into()];
        let rows: Vec<PagedJobRow> = self.db.fetch_all(SELECT_STALE_LIVE, &args).await?;
        rows.into_iter().map(|r| Ok((r.seq, JobRecord::try_from(r.job)?))).collect()
    }

    /// Lists `tenant`'s jobs matching `filter`, newest first (by creation order, `seq`). `limit`
    /// is clamped to 1..=[`MAX_PAGE_SIZE`]; `cursor` is a previous page's `next_cursor`, and the
    /// pages that follow it hold exactly the matching jobs created before that page's last one,
    /// whatever was created since. Pass the same filter with a cursor as for the page it came from.
    ///
    /// # Errors
    /// [`StoreError::InvalidCursor`] for a cursor this store did not issue; [`StoreError::Database`].
    pub async fn list_jobs(
        &self,
        tenant: &TenantId,
        filter: &JobFilter,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<JobPage, StoreError> {
        let after = page_start(cursor)?;
        let limit = limit.clamp(1, MAX_PAGE_SIZE);
        let sql = if self.window_first(filter.created_after, filter.created_before, after).await? {
            SELECT_PAGE_WINDOW
        } else {
            SELECT_PAGE
        };
        let (phase, status) = status_filter(filter.status);
        let args: [Arg<'_>; 10] = [
            tenant.as_str().into(),
            after.into(),
            (i64::from(limit) + 1).into(),
            filter.kind.as_deref().into(),
            status.into(),
            filter.error_class.map(ErrorClass::as_str).into(),
            filter.created_after.into(),
            filter.created_before.into(),
            filter.priority.map(longhaul_core::Priority::as_str).into(),
            phase.into(),
        ];
        let rows: Vec<PagedJobRow> = self.db.fetch_all_uncached(sql, &args).await?;
        page(rows, limit)
    }
}

/// Where a page that continues `cursor` starts (below this seq): the top for none.
pub(super) fn page_start(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor {
        None => Ok(i64::MAX),
        Some(c) => {
            c.parse::<i64>().ok().filter(|v| *v > 0).ok_or_else(|| StoreError::InvalidCursor(c.to_owned()))
        }
    }
}

/// A page of at most `limit` records from `rows`, read with `limit + 1` so one more row says that
/// another page follows.
pub(super) fn page(rows: Vec<PagedJobRow>, limit: u32) -> Result<JobPage, StoreError> {
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
