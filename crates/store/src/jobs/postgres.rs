//! PostgreSQL's forms of the batched job writes: each kind of write — pending records, progress,
//! starts, completions — is one statement for any number of rows (`UNNEST` arrays), and writes no
//! audit row: a pending record's `enqueued`, each attempt's `started` (kept in `attempt_starts`)
//! and a completion's `completed` are read from the record (see [`crate::audit`]). A single write
//! runs the same statement with one row.
//!
//! The statements that find a batch's rows in `jobs` — the progress writes, starts, completions,
//! and the read of duplicates — are planned on every call for the batch they carry
//! (`persistent(false)`: an unnamed statement). A cached generic plan is made at a statement's
//! sixth call and kept until the table's statistics change; made while `jobs` was new and small it
//! scans the whole table, and went on scanning it on every call as the table grew — half of
//! PostgreSQL's time in a 10 000-job benchmark. Planned per call, each reaches its rows through the
//! `job_id` index once the table is past a few pages; the planning costs less than the scans it
//! saved (BENCHMARKS.md, "Plans per call").

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use longhaul_core::JobRecord;
use sqlx::types::Json;
use sqlx::{PgPool, Postgres};

use super::row::{JobRow, to_i32};
use super::{ProgressWrite, Write, enqueue_detail};
use crate::StoreError;
use crate::backend::Handle;

/// `$1` jobs, `$2` tenants, `$3` kinds, `$4` keys, `$5` inputs, `$6` max attempts, `$7` time,
/// `$8` statuses, `$9` run_at, `$10` priorities.
const CREATE_MANY: &str = include_str!("../../sql/postgres/jobs/create_many.sql");
/// `$1` job ids.
const SELECT_MANY: &str = include_str!("../../sql/postgres/jobs/select_many.sql");
/// `$1` tenants, `$2` jobs, `$3` details, `$4` time.
const AUDIT_DUPLICATES: &str = include_str!("../../sql/postgres/jobs/audit_duplicates.sql");
/// `$1` jobs, `$2` tenants, `$3` attempts, `$4` stages, `$5` percents, `$6` time, `$7` advisory.
const PROGRESS_MANY: &str = include_str!("../../sql/postgres/jobs/progress_many.sql");
/// `$1` jobs, `$2` tenants, `$3` entry ids, `$4` delivery counts, `$5` entry attempts, `$6` time.
const START_NEXT_MANY: &str = include_str!("../../sql/postgres/jobs/start_next_many.sql");
/// `$1` jobs, `$2` tenants, `$3` attempts, `$4` outputs, `$5` time, `$6` stages (NULL: unchanged).
const COMPLETE_MANY: &str = include_str!("../../sql/postgres/jobs/complete_many.sql");

/// Pending records: one statement inserts every new record, committed on its own (one round trip,
/// no `BEGIN`/`COMMIT`); only duplicates (rare) cost more — a read of their records and their
/// `duplicate_enqueue` audit rows, in a transaction after it. `Err` when the insert failed, or
/// its answer was lost after it committed: then no request is answered as created, and a client's
/// retry (a duplicate of a live job with no queue trace) or the reconciler enqueues what it wrote.
/// A duplicate whose read or audit row fails gets its own error; the batch's new jobs stay
/// recorded and answered as created — unless a created row cannot be read back (`Corrupt`): that
/// request gets the error, its record stays for the reconciler.
pub(super) async fn create_pending(
    pool: &PgPool,
    records: &[JobRecord],
    now: DateTime<Utc>,
) -> Result<Vec<Result<(JobRecord, bool), StoreError>>, StoreError> {
    let column = |f: fn(&JobRecord) -> &str| records.iter().map(f).collect::<Vec<&str>>();
    let inserted: Vec<JobRow> = sqlx::query_as(CREATE_MANY)
        .bind(column(|r| r.job_id.as_str()))
        .bind(column(|r| r.tenant_id.as_str()))
        .bind(column(|r| r.kind.as_str()))
        .bind(records.iter().map(|r| r.key.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| Json(&r.input)).collect::<Vec<_>>())
        .bind(records.iter().map(|r| to_i32(r.max_attempts)).collect::<Vec<_>>())
        .bind(now)
        .bind(column(|r| r.status.as_str()))
        .bind(records.iter().map(|r| r.run_at).collect::<Vec<_>>())
        .bind(column(|r| r.priority.as_str()))
        .fetch_all(pool)
        .await?;
    // Committed: from here on every failure is one request's own.
    let mut created: HashMap<String, Result<JobRecord, StoreError>> =
        inserted.into_iter().map(|row| (row.job_id.clone(), JobRecord::try_from(row))).collect();
    // The first request for a created id is its creator; every other request is a duplicate.
    let mut seen = HashSet::new();
    let creator: Vec<bool> = records
        .iter()
        .map(|r| created.contains_key(r.job_id.as_str()) && seen.insert(r.job_id.as_str()))
        .collect();
    let duplicates: Vec<&JobRecord> =
        records.iter().zip(&creator).filter(|&(_, &c)| !c).map(|(r, _)| r).collect();
    // One result per duplicate request, in order.
    let found: Vec<Result<Option<JobRecord>, StoreError>> = if duplicates.is_empty() {
        Vec::new()
    } else {
        match record_duplicates(pool, &duplicates, now).await {
            Ok(found) => found.into_iter().map(Ok).collect(),
            // The connection failed: every duplicate is answered with it (retryable).
            Err(e) if e.for_each_item().is_some() => {
                duplicates.iter().map(|_| Err(StoreError::BatchFailed(e.report()))).collect()
            }
            // A lone duplicate's own failure.
            Err(e) if duplicates.len() == 1 => vec![Err(e)],
            // Something one duplicate may have caused: each on its own finds out.
            Err(e) => {
                let (error, n) = (e.report(), duplicates.len());
                let what = "a batch's duplicate requests failed; reading each on its own";
                tracing::warn!(error, duplicates = n, "{what}");
                let mut each = Vec::with_capacity(duplicates.len());
                for r in &duplicates {
                    each.push(record_duplicates(pool, &[r], now).await.map(|mut one| one.pop().flatten()));
                }
                each
            }
        }
    };
    let mut found = found.into_iter();
    Ok(records
        .iter()
        .zip(creator)
        .map(|(r, creator)| {
            if creator {
                let record = created.remove(r.job_id.as_str()).unwrap_or(Err(StoreError::NotFound("job")));
                return record.map(|c| (c, true));
            }
            match found.next() {
                Some(Ok(Some(existing))) => Ok((existing, false)),
                Some(Err(e)) => Err(e),
                // Another tenant's job reads as missing, as in `get_job`.
                Some(Ok(None)) | None => Err(StoreError::NotFound("job")),
            }
        })
        .collect())
}

/// The existing records of `duplicates`, one per request in order, with a `duplicate_enqueue`
/// audit row for each request whose tenant's job it is, in one transaction. A job id held by
/// another tenant's job reads as missing (`None`), as in `get_job`, and gets no audit row.
async fn record_duplicates(
    pool: &PgPool,
    duplicates: &[&JobRecord],
    now: DateTime<Utc>,
) -> Result<Vec<Option<JobRecord>>, StoreError> {
    let mut tx = pool.begin().await?;
    let ids: Vec<&str> = duplicates.iter().map(|r| r.job_id.as_str()).collect();
    let rows: Vec<JobRow> =
        sqlx::query_as(SELECT_MANY).persistent(false).bind(&ids).fetch_all(&mut *tx).await?;
    let mut existing = HashMap::with_capacity(rows.len());
    for row in rows {
        let record = JobRecord::try_from(row)?;
        existing.insert(record.job_id.clone(), record);
    }
    // Job ids are unique across tenants: the row found is the request's only if its tenant's.
    let found: Vec<Option<JobRecord>> = duplicates
        .iter()
        .map(|r| existing.get(&r.job_id).filter(|e| e.tenant_id == r.tenant_id).cloned())
        .collect();
    let own: Vec<&JobRecord> =
        duplicates.iter().zip(&found).filter(|(_, f)| f.is_some()).map(|(r, _)| *r).collect();
    if !own.is_empty() {
        sqlx::query(AUDIT_DUPLICATES)
            .bind(own.iter().map(|r| r.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(own.iter().map(|r| r.job_id.as_str()).collect::<Vec<_>>())
            .bind(own.iter().map(|r| Json(enqueue_detail(r))).collect::<Vec<_>>())
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(found)
}

/// Progress writes, then starts and completions: the progress writes in one statement, the starts
/// in one and the completions in one — unless a start names a job that another start or completion
/// of the batch names too; then each start or completion is a statement of its own, in order. In
/// one transaction when there is more than one statement. A job's progress write that its
/// completion in the batch supersedes is not written on its own: the completion records its stage
/// ([`folded_progress`]).
///
/// Returns, per progress write, whether it was applied, and per write the row it wrote.
pub(super) async fn write_batch(
    pool: &PgPool,
    progress: &[ProgressWrite<'_>],
    writes: &[Write],
    now: DateTime<Utc>,
) -> Result<(Vec<bool>, Vec<Option<JobRow>>), StoreError> {
    let last = last_progress(progress);
    let (groups, batched) = groups(writes);
    // Written one by one, a start of a job could come between its progress and its completion.
    let folded = if batched { folded_progress(progress, &last, writes) } else { HashMap::new() };
    let own: HashMap<&str, usize> = last
        .iter()
        .filter(|&(&job, &i)| !folded.contains_key(&(job, progress[i].2)))
        .map(|(&job, &i)| (job, i))
        .collect();
    let mut db = Handle::<Postgres>::open(pool, usize::from(!own.is_empty()) + groups.len() > 1).await?;
    // Progress alone is advisory: its transaction commits without waiting for the WAL flush.
    let advisory = writes.is_empty();
    let mut updated: HashSet<String> = if own.is_empty() {
        HashSet::new()
    } else {
        write_progress(&mut db, progress, &own, now, advisory).await?
    };
    let mut rows: Vec<Option<JobRow>> = writes.iter().map(|_| None).collect();
    for group in &groups {
        let ws: Vec<&Write> = group.iter().map(|&i| &writes[i]).collect();
        let written = match ws[0] {
            Write::StartNext { .. } => starts(&ws, now).fetch_all(db.connection()).await?,
            Write::Complete { .. } => completes(&ws, &folded, now).fetch_all(db.connection()).await?,
        };
        let mut by_job: HashMap<String, JobRow> =
            written.into_iter().map(|r| (r.job_id.clone(), r)).collect();
        for &i in group {
            rows[i] = by_job.remove(writes[i].target().1.as_str());
        }
    }
    db.commit().await?;
    // A folded progress write was applied with its completion.
    for (w, row) in writes.iter().zip(&rows) {
        if let (Write::Complete { job, attempt, .. }, Some(_)) = (w, row)
            && folded.contains_key(&(job.as_str(), *attempt))
        {
            updated.insert(job.as_str().to_owned());
        }
    }
    let applied = progress
        .iter()
        .map(|(_, job, attempt, ..)| {
            updated.contains(job.as_str())
                && last.get(job.as_str()).is_some_and(|&i| progress[i].2 == *attempt)
        })
        .collect();
    Ok((applied, rows))
}

/// The progress writes a completion of the same attempt in the batch supersedes, as the stage the
/// completion records, by job id and attempt — for a batch written as multi-row statements (no job
/// both started and completed in it). Both would be written in one transaction, the progress
/// first, with nothing between them that could change the row, so no reader could see the progress
/// row on its own: the completion writes the stage (its progress is 100), and the job's row is
/// updated once instead of twice.
fn folded_progress<'a>(
    progress: &[ProgressWrite<'a>],
    last: &HashMap<&'a str, usize>,
    writes: &[Write],
) -> HashMap<(&'a str, u32), &'a str> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Complete { job, attempt, .. } => {
                let &i = last.get(job.as_str())?;
                let (_, job, progress_attempt, stage, _) = progress[i];
                (progress_attempt == *attempt).then_some(((job.as_str(), progress_attempt), stage))
            }
            Write::StartNext { .. } => None,
        })
        .collect()
}

/// The progress write kept per job, by job id: the last of its newest attempt (a statement cannot
/// update a row twice, and an older attempt's write would be refused anyway).
fn last_progress<'a>(progress: &[ProgressWrite<'a>]) -> HashMap<&'a str, usize> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(progress.len());
    for (i, (_, job, attempt, ..)) in progress.iter().enumerate() {
        if last.get(job.as_str()).is_none_or(|&j| *attempt >= progress[j].2) {
            last.insert(job.as_str(), i);
        }
    }
    last
}

/// Writes the chosen progress writes (`last`) in job-id order, so concurrent batches lock rows in
/// the same order. Returns the jobs written. `advisory`: nothing else is in the transaction, which
/// then commits without waiting for its WAL flush (see `progress_many.sql`).
async fn write_progress(
    db: &mut Handle<Postgres>,
    progress: &[ProgressWrite<'_>],
    last: &HashMap<&str, usize>,
    now: DateTime<Utc>,
    advisory: bool,
) -> Result<HashSet<String>, StoreError> {
    let mut chosen: Vec<&ProgressWrite<'_>> = last.values().map(|&i| &progress[i]).collect();
    chosen.sort_unstable_by_key(|(_, job, ..)| job.as_str());
    let updated: Vec<(String,)> = sqlx::query_as(PROGRESS_MANY)
        .persistent(false)
        .bind(chosen.iter().map(|(_, job, ..)| job.as_str()).collect::<Vec<_>>())
        .bind(chosen.iter().map(|(tenant, ..)| tenant.as_str()).collect::<Vec<_>>())
        .bind(chosen.iter().map(|(_, _, attempt, ..)| to_i32(*attempt)).collect::<Vec<_>>())
        .bind(chosen.iter().map(|(.., stage, _)| *stage).collect::<Vec<_>>())
        .bind(chosen.iter().map(|(.., percent)| i32::from(percent.percent())).collect::<Vec<_>>())
        .bind(now)
        .bind(advisory)
        .fetch_all(db.connection())
        .await?;
    Ok(updated.into_iter().map(|(job,)| job).collect())
}

/// The statements of `writes`, as indices into it, and whether they are batched: the starts and
/// the completions, each in job-id order (so concurrent batches lock rows in the same order) — or,
/// when a start names a job that another write names too, each write alone, in order (one
/// statement cannot write a row twice, and the later write must see the earlier one).
fn groups(writes: &[Write]) -> (Vec<Vec<usize>>, bool) {
    let mut started = HashSet::new();
    let mut completed = HashSet::new();
    let batchable = writes.iter().all(|w| match w {
        Write::Complete { job, .. } => completed.insert(job) && !started.contains(job),
        Write::StartNext { job, .. } => started.insert(job) && !completed.contains(job),
    });
    if !batchable {
        return ((0..writes.len()).map(|i| vec![i]).collect(), false);
    }
    let kind = |complete: bool| {
        let mut group: Vec<usize> =
            (0..writes.len()).filter(|&i| matches!(writes[i], Write::Complete { .. }) == complete).collect();
        group.sort_unstable_by_key(|&i| writes[i].target().1.as_str());
        group
    };
    ([kind(false), kind(true)].into_iter().filter(|g| !g.is_empty()).collect(), true)
}

type RowsQuery<'q> = sqlx::query::QueryAs<'q, Postgres, JobRow, sqlx::postgres::PgArguments>;

fn ids<'a>(writes: &[&'a Write]) -> [Vec<&'a str>; 2] {
    [
        writes.iter().map(|w| w.target().1.as_str()).collect(),
        writes.iter().map(|w| w.target().0.as_str()).collect(),
    ]
}

/// The statement of starts `writes` (all [`Write::StartNext`]).
fn starts<'q>(writes: &[&'q Write], now: DateTime<Utc>) -> RowsQuery<'q> {
    let (mut entries, mut deliveries, mut entry_attempts) = (Vec::new(), Vec::new(), Vec::new());
    for w in writes {
        if let Write::StartNext { lease, entry_attempt, .. } = w {
            entries.push(lease.entry.as_str());
            deliveries.push(to_i32(lease.delivery));
            entry_attempts.push(to_i32(*entry_attempt));
        }
    }
    let [jobs, tenants] = ids(writes);
    sqlx::query_as(START_NEXT_MANY)
        .persistent(false)
        .bind(jobs)
        .bind(tenants)
        .bind(entries)
        .bind(deliveries)
        .bind(entry_attempts)
        .bind(now)
}

/// The statement of completions `writes` (all [`Write::Complete`]), each with the stage of the
/// progress write it supersedes, if any (`folded`, by job id and attempt).
fn completes<'q>(
    writes: &[&'q Write],
    folded: &HashMap<(&str, u32), &'q str>,
    now: DateTime<Utc>,
) -> RowsQuery<'q> {
    let (mut attempts, mut outputs, mut stages) = (Vec::new(), Vec::new(), Vec::new());
    for w in writes {
        if let Write::Complete { job, attempt, output, .. } = w {
            attempts.push(to_i32(*attempt));
            outputs.push(Json(output));
            stages.push(folded.get(&(job.as_str(), *attempt)).copied());
        }
    }
    let [jobs, tenants] = ids(writes);
    sqlx::query_as(COMPLETE_MANY)
        .persistent(false)
        .bind(jobs)
        .bind(tenants)
        .bind(attempts)
        .bind(outputs)
        .bind(now)
        .bind(stages)
}
