//! SQLite's forms of the batched job writes: one single-row statement per write, all of a batch in
//! one transaction (SQLite runs in-process, so statements are cheap; the commit is what costs).
//! Audit rows are appended for starts and duplicate requests; a pending record's `enqueued` and a
//! completion's `completed` are read from the record (see [`crate::audit`]).

use chrono::{DateTime, Utc};
use longhaul_core::JobRecord;
use serde_json::json;

use super::read::select;
use super::row::{JobRow, to_i32};
use super::{ProgressWrite, Write, enqueue_detail};
use crate::backend::{Arg, Db};
use crate::{StoreError, audit};

/// `$1` job, `$2` tenant, `$3` kind, `$4` key, `$5` input, `$6` status, `$7` max attempts, `$8` time,
/// `$9` run_at, `$10` priority.
const CREATE: &str = include_str!("../../sql/sqlite/jobs/create.sql");
/// `$1` job, `$2` tenant, `$3` attempt, `$4` stage, `$5` percent, `$6` time.
const PROGRESS: &str = include_str!("../../sql/sqlite/jobs/progress.sql");
/// `$1` job, `$2` tenant, `$3` time, `$4` entry id, `$5` delivery count, `$6` entry attempt.
const START_NEXT: &str = include_str!("../../sql/sqlite/jobs/start_next.sql");
/// `$1` job, `$2` tenant, `$3` attempt, `$4` output, `$5` time.
const COMPLETE: &str = include_str!("../../sql/sqlite/jobs/complete.sql");

/// Pending records, each inserted or found (a duplicate request with its `duplicate_enqueue` audit
/// row), in one transaction. Rows are written in job-id order, so concurrent batches lock in the
/// same order and cannot deadlock. A job id held by another tenant's job reads as missing, as in
/// `get_job`: that request alone gets `NotFound`.
pub(super) async fn create_pending(
    db: &Db,
    records: &[JobRecord],
) -> Result<Vec<Result<(JobRecord, bool), StoreError>>, StoreError> {
    let mut order: Vec<usize> = (0..records.len()).collect();
    order.sort_by(|&x, &y| records[x].job_id.cmp(&records[y].job_id));
    let mut tx = db.begin().await?;
    let mut out: Vec<Option<Result<(JobRecord, bool), StoreError>>> =
        (0..records.len()).map(|_| None).collect();
    for &i in &order {
        let r = &records[i];
        let args: [Arg<'_>; 10] = [
            r.job_id.as_str().into(),
            r.tenant_id.as_str().into(),
            r.kind.as_str().into(),
            r.key.as_deref().into(),
            (&r.input).into(),
            r.status.as_str().into(),
            to_i32(r.max_attempts).into(),
            r.created_at.into(),
            r.run_at.into(),
            r.priority.as_str().into(),
        ];
        let inserted: Option<JobRow> = tx.fetch_optional(CREATE, &args).await?;
        let (row, created) = match inserted {
            Some(row) => (row, true),
            None => {
                let Some(row) = select(&mut tx, &r.tenant_id, &r.job_id).await? else {
                    out[i] = Some(Err(StoreError::NotFound("job")));
                    continue;
                };
                let (tenant, job, detail) = (&r.tenant_id, Some(&r.job_id), enqueue_detail(r));
                audit::append(&mut tx, tenant, job, "duplicate_enqueue", &detail, r.created_at).await?;
                (row, false)
            }
        };
        out[i] = Some(Ok((row.try_into()?, created)));
    }
    tx.commit().await?;
    Ok(out.into_iter().map(|o| o.unwrap_or(Err(StoreError::NotFound("job")))).collect())
}

/// Progress writes, then starts and completions, one statement each (and a `started` audit row for
/// each start applied), in order, in one transaction.
///
/// Returns, per progress write, whether it was applied, and per write the row it wrote.
pub(super) async fn write_batch(
    db: &Db,
    progress: &[ProgressWrite<'_>],
    writes: &[Write],
    now: DateTime<Utc>,
) -> Result<(Vec<bool>, Vec<Option<JobRow>>), StoreError> {
    let mut tx = db.begin().await?;
    let mut applied = Vec::with_capacity(progress.len());
    for (tenant, job, attempt, stage, percent) in progress {
        let args: [Arg<'_>; 6] = [
            job.as_str().into(),
            tenant.as_str().into(),
            to_i32(*attempt).into(),
            (*stage).into(),
            i32::from(percent.percent()).into(),
            now.into(),
        ];
        applied.push(tx.execute(PROGRESS, &args).await? == 1);
    }
    let mut rows = Vec::with_capacity(writes.len());
    for w in writes {
        let (tenant, job) = w.target();
        let row: Option<JobRow> = match w {
            Write::StartNext { lease, entry_attempt, .. } => {
                let args: [Arg<'_>; 6] = [
                    job.as_str().into(),
                    tenant.as_str().into(),
                    now.into(),
                    lease.entry.as_str().into(),
                    to_i32(lease.delivery).into(),
                    to_i32(*entry_attempt).into(),
                ];
                tx.fetch_optional(START_NEXT, &args).await?
            }
            Write::Complete { attempt, output, .. } => {
                let args: [Arg<'_>; 5] = [
                    job.as_str().into(),
                    tenant.as_str().into(),
                    to_i32(*attempt).into(),
                    output.into(),
                    now.into(),
                ];
                tx.fetch_optional(COMPLETE, &args).await?
            }
        };
        if let (Write::StartNext { .. }, Some(r)) = (w, &row) {
            audit::append(&mut tx, tenant, Some(job), "started", &json!({ "attempt": r.attempts }), now)
                .await?;
        }
        rows.push(row);
    }
    tx.commit().await?;
    Ok((applied, rows))
}
