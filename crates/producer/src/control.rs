//! An operator's operations, shared by the operator API ([`crate::admin`]) and the CLI, and the
//! JSON views both print: the bulk retry of failed jobs (bounded per request, with a cursor for
//! the rest; store batches, each enqueued before the next), the queues' overview (backlog from Redis, pauses from storage), pauses and limits of the
//! registry's queues and kinds, and dead letters (found in a queue or one of its partitions,
//! replayed — a stalled job through storage, an undecodable entry as it was — and purged). Every
//! change is audited with who asked (`operator:<name>`).

use chrono::{DateTime, Utc};
use longhaul_core::{JobId, JobRecord, JobStatus, Registry, TenantId};
use longhaul_queue::{DeadLetter, Queue, QueueError};
use longhaul_store::{FailedFilter, Limit, Pause, PauseScope, Store, StoreError};
use serde::Serialize;
use serde_json::json;

use crate::{Queues, Retry, restore};

/// Failed jobs a bulk retry puts back per store transaction (and enqueues before the next).
pub const BULK_RETRY_BATCH: u32 = 100;

/// Failed jobs one bulk retry request takes unless it says otherwise (its `limit`).
pub const DEFAULT_BULK_RETRY_LIMIT: u32 = 1_000;

/// The most failed jobs one bulk retry request takes: each request is bounded, well within the
/// request timeout; the caller passes `next` back as `after` for the rest.
pub const MAX_BULK_RETRY_LIMIT: u32 = 10_000;

/// Who asked, as audit rows say it: `operator:<name>`.
pub fn operator_by(name: &str) -> String {
    format!("operator:{name}")
}

/// What a bulk retry request does ([`bulk_retry`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkMode {
    /// Count every failed job matching the filter; change nothing.
    DryRun,
    /// Put back up to `limit` (1..=[`MAX_BULK_RETRY_LIMIT`]) failed jobs matching the filter,
    /// those created after cursor `after` (0 to start; else a previous answer's `next`).
    Retry {
        /// The cursor: 0, or the `next` of the previous request.
        after: i64,
        /// At most this many jobs.
        limit: u32,
    },
}

/// What a bulk retry request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct BulkRetry {
    /// Failed jobs matching the filter (on a dry run: all of them, now; else: those this
    /// request's batches found).
    pub matched: u64,
    /// Those put back in the queue (none on a dry run).
    pub retried: u64,
    /// Of those, how many this producer did not enqueue: the queue did not take them (Redis
    /// unavailable), or their kind is one this producer does not know. Their records are
    /// `queued`, and a reconciler (of a service that knows the kind) enqueues them.
    pub not_enqueued: u64,
    /// Whether this was a dry run (nothing changed).
    pub dry_run: bool,
    /// Pass back as `after` for the rest of the matching jobs; `null` when there are no more
    /// (and always on a dry run).
    #[schema(required = true)]
    pub next: Option<i64>,
}

/// Retries failed jobs matching `filter` at `by`'s request — with [`BulkMode::Retry`], up to
/// `limit` of them created after `after`, [`BULK_RETRY_BATCH`] per transaction, enqueueing each
/// batch's jobs before the next: each with a fresh budget (its kind's, else `default_budget`). The
/// answer's `next` is where the next request starts. A dry run ([`BulkMode::DryRun`]) only counts
/// every match. Once the queue fails to take one, the rest are left to the reconciler (each
/// attempt could wait out Redis's timeout).
///
/// # Errors
/// Storage errors; batches already retried stay retried.
pub async fn bulk_retry(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    filter: &FailedFilter,
    mode: BulkMode,
    default_budget: u32,
    by: &str,
) -> Result<BulkRetry, StoreError> {
    let (mut after, limit) = match mode {
        BulkMode::DryRun => {
            let matched = store.count_failed(filter).await?;
            return Ok(BulkRetry { matched, retried: 0, not_enqueued: 0, dry_run: true, next: None });
        }
        BulkMode::Retry { after, limit } => (after.max(0), limit.clamp(1, MAX_BULK_RETRY_LIMIT)),
    };
    let budget = |kind: &str| registry.options(kind).and_then(|o| o.max_attempts).unwrap_or(default_budget);
    let mut out = BulkRetry { matched: 0, retried: 0, not_enqueued: 0, dry_run: false, next: None };
    let mut left = limit;
    let mut queue_down = false;
    loop {
        let batch = store.retry_failed_batch(filter, after, left.min(BULK_RETRY_BATCH), budget, by).await?;
        out.matched += batch.matched;
        out.retried += batch.retried.len() as u64;
        left = left.saturating_sub(u32::try_from(batch.matched).unwrap_or(u32::MAX));
        for record in &batch.retried {
            // A kind this producer does not know (the reconciler of a service that does enqueues
            // it), or the queue is down (the reconciler enqueues it): not enqueued here.
            let Some(queue) = queues.of_kind(registry, &record.kind).filter(|_| !queue_down) else {
                out.not_enqueued += 1;
                continue;
            };
            if let Err(e) = restore(queue, record).await {
                tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e),
                    "bulk retry: the queue did not take a retried job; the reconciler will");
                queue_down = true;
                out.not_enqueued += 1;
            }
        }
        match batch.next {
            Some(next) if left > 0 => after = next,
            next => {
                out.next = next;
                break;
            }
        }
    }
    tracing::info!(
        matched = out.matched,
        retried = out.retried,
        not_enqueued = out.not_enqueued,
        next = out.next,
        by,
        "bulk retry of failed jobs"
    );
    Ok(out)
}

/// A pause, as the views show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PauseView {
    /// `queue` or `kind`.
    pub scope: &'static str,
    /// The queue or kind.
    pub name: String,
    /// Whether it is paused now.
    pub paused: bool,
    /// Who paused it (when paused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// When (when paused).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
}

impl PauseView {
    /// `scope` `name` as `paused` (a pause of it, if any) shows it.
    fn of(scope: PauseScope, name: &str, paused: &[Pause]) -> Self {
        let pause = paused.iter().find(|p| p.scope == scope && p.name == name);
        Self {
            scope: scope.as_str(),
            name: name.to_owned(),
            paused: pause.is_some(),
            paused_by: pause.map(|p| p.paused_by.clone()),
            paused_at: pause.map(|p| p.paused_at),
        }
    }
}

/// The backlog of one queue (summed over its partitions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StatsView {
    /// Entries waiting for admission (outside the stream, in the wait lists).
    pub waiting: u64,
    /// Entries in the stream not yet delivered to a worker.
    pub backlog: u64,
    /// Entries delivered and not yet finished.
    pub pending: u64,
    /// Retries and scheduled jobs waiting for their time.
    pub delayed: u64,
    /// Dead letters.
    pub dead_letters: u64,
}

/// One queue of the registry, as `GET /admin/v1/queues` and `producer queues list` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QueueView {
    /// The queue.
    pub queue: String,
    /// How many partitions it is split into (1: not split).
    pub partitions: u32,
    /// Whether the queue is paused, and by whom.
    pub paused: bool,
    /// Who paused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_by: Option<String>,
    /// When.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Its kinds, each with its pause.
    pub kinds: Vec<PauseView>,
    /// Its backlog; `null` when Redis could not be asked (see `stats_error`).
    #[schema(required = true)]
    pub stats: Option<StatsView>,
    /// Why there are no stats.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats_error: Option<String>,
}

/// The backlog of `queue` over its partitions.
async fn stats(queue: &Queue) -> Result<StatsView, QueueError> {
    let mut total = StatsView::default();
    for partition in queue.partitions()? {
        let s = partition.stats().await?;
        total.waiting += s.waiting;
        total.backlog += s.lag.unwrap_or_else(|| s.stream_length.saturating_sub(s.pending));
        total.pending += s.pending;
        total.delayed += s.delayed;
        total.dead_letters += s.dead_letters;
    }
    Ok(total)
}

/// Every queue of `registry`: its pause and its kinds' (from storage), its backlog (from Redis,
/// when it answers).
///
/// # Errors
/// Storage errors.
pub async fn queue_overview(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
) -> Result<Vec<QueueView>, StoreError> {
    let paused = store.paused().await?;
    let mut out = Vec::new();
    for name in registry.queues() {
        let pause = PauseView::of(PauseScope::Queue, name, &paused);
        let kinds =
            registry.kinds_of_queue(name).map(|k| PauseView::of(PauseScope::Kind, k, &paused)).collect();
        let (stats, stats_error, partitions) = match queues.get(name) {
            Some(queue) => match self::stats(queue).await {
                Ok(s) => (Some(s), None, queue.config().partitions.max(1)),
                Err(e) => {
                    (None, Some(longhaul_core::Report(&e).to_string()), queue.config().partitions.max(1))
                }
            },
            None => (None, Some("this producer has no handle on the queue".to_owned()), 1),
        };
        out.push(QueueView {
            queue: name.to_owned(),
            partitions,
            paused: pause.paused,
            paused_by: pause.paused_by,
            paused_at: pause.paused_at,
            kinds,
            stats,
            stats_error,
        });
    }
    Ok(out)
}

/// Whether `registry` has queue or kind `name`.
pub fn known(registry: &Registry, scope: PauseScope, name: &str) -> bool {
    match scope {
        PauseScope::Queue => registry.queues().contains(name),
        PauseScope::Kind => registry.options(name).is_some(),
    }
}

/// Pauses (`pause`) or resumes queue or kind `name` at `by`'s request; returns its state after,
/// and whether this call changed it. The caller checks that the name is known ([`known`]).
///
/// # Errors
/// Storage errors.
pub async fn set_paused(
    store: &Store,
    scope: PauseScope,
    name: &str,
    pause: bool,
    by: &str,
) -> Result<(PauseView, bool), StoreError> {
    let changed =
        if pause { store.pause(scope, name, by).await? } else { store.resume(scope, name, by).await? };
    tracing::info!(scope = scope.as_str(), name, paused = pause, changed, by, "pause state set");
    let paused = store.paused().await?;
    Ok((PauseView::of(scope, name, &paused), changed))
}

/// A limit, as the views show it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LimitView {
    /// `tenant` or `kind`.
    pub scope: &'static str,
    /// The tenant or kind.
    pub name: String,
    /// Jobs running at once, at most (`null`: the default).
    #[schema(required = true)]
    pub max_running: Option<u32>,
    /// Starts per second, at most (`null`: the default).
    #[schema(required = true)]
    pub starts_per_second: Option<f64>,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
}

impl From<Limit> for LimitView {
    fn from(l: Limit) -> Self {
        Self {
            scope: l.scope.as_str(),
            name: l.name,
            max_running: l.max_running,
            starts_per_second: l.starts_per_second,
            updated_at: l.updated_at,
        }
    }
}

/// The queue (or partition) whose dead stream is named `name`: a queue of the registry that is not
/// split, or one partition (`<queue>-<k>`) of a split one.
///
/// # Errors
/// A message for a split queue named as a whole (naming its partitions), or a name no queue has.
pub fn dead_letter_queue(queues: &Queues, name: &str) -> Result<Queue, DeadQueueError> {
    for queue in queues.all() {
        let partitions = queue.config().partitions;
        if partitions <= 1 {
            if queue.name() == name {
                return Ok(queue.clone());
            }
            continue;
        }
        if queue.name() == name {
            return Err(DeadQueueError::Split { queue: name.to_owned(), partitions });
        }
        if let Some(p) = queue.partitions().ok().and_then(|ps| ps.into_iter().find(|p| p.name() == name)) {
            return Ok(p);
        }
    }
    Err(DeadQueueError::Unknown)
}

/// Why [`dead_letter_queue`] found no dead stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadQueueError {
    /// No queue or partition has the name.
    #[error("no queue or partition has this name")]
    Unknown,
    /// The queue is split: its dead letters are in its partitions' streams.
    #[error("queue {queue} is split into {partitions} partitions: name one, {queue}-0 … {queue}-{}", partitions - 1)]
    Split {
        /// The queue.
        queue: String,
        /// Its partitions.
        partitions: u32,
    },
}

/// What a dead letter's replay did.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Replayed {
    /// The dead letter.
    pub id: String,
    /// Its queue (or partition).
    pub queue: String,
    /// `retried` (a failed or cancelled job put back through storage with a fresh budget),
    /// `restored` (a live job enqueued again), or `raw` (the entry's fields put back as they were).
    pub replayed: &'static str,
    /// The job, when the entry names one storage has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRecord>,
}

/// Why a replay did nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The dead letter is not there (purged, or replayed already).
    #[error("no such dead letter")]
    NotFound,
    /// Its job has completed: there is nothing to run again (purge the dead letter).
    #[error("job {} is completed: there is nothing to replay; purge the dead letter", .0.job_id)]
    Completed(Box<JobRecord>),
    /// The entry names a job of another tenant than the job's: a forged or corrupted entry (a
    /// worker would refuse it). Nothing is replayed, and the dead letter stays for inspection.
    #[error(
        "the dead letter names job {job} of tenant {entry_tenant}, but job {job} is tenant \
         {job_tenant}'s: nothing replayed (inspect the dead letter, then purge it)"
    )]
    TenantMismatch {
        /// The job.
        job: JobId,
        /// The tenant the entry names.
        entry_tenant: TenantId,
        /// The job's tenant, as storage has it.
        job_tenant: TenantId,
    },
    /// Its job was deleted (pruned) while the replay ran.
    #[error("job {0} is gone (pruned): nothing to replay; purge the dead letter")]
    JobGone(JobId),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Redis failed, or refused the dead letter (see [`QueueError::DeadLetter`]).
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Replays dead letter `id` of `queue` (a queue or partition of `queues`) at `by`'s request. An
/// entry that decodes and names a job storage has goes back through storage: a failed or
/// cancelled job is retried (a fresh budget: its kind's, else `default_budget`) and enqueued; a
/// live one is enqueued again unless the queue holds it; then the dead letter is purged. Any other
/// entry (undecodable, or naming no recorded job) is put back as it was ([`Queue::replay_dead`]):
/// the worker judges it again. An entry naming a recorded job under another tenant than the job's
/// is refused ([`ReplayError::TenantMismatch`]) and kept. Audited as `dead_letter_replayed` under
/// `*`.
///
/// # Errors
/// [`ReplayError`].
pub async fn replay_dead_letter(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    queue: &Queue,
    id: &str,
    default_budget: u32,
    by: &str,
) -> Result<Replayed, ReplayError> {
    let letter = queue.dead_letter(id).await?.ok_or(ReplayError::NotFound)?;
    let record = match letter.entry() {
        Ok(entry) => match store.get_job_admin(&entry.job_id).await? {
            Some(record) if record.tenant_id != entry.tenant_id => {
                return Err(ReplayError::TenantMismatch {
                    job: record.job_id,
                    entry_tenant: entry.tenant_id,
                    job_tenant: record.tenant_id,
                });
            }
            record => record,
        },
        Err(_) => None,
    };
    let (replayed, job) = match record {
        Some(record) if record.status == JobStatus::Completed => {
            return Err(ReplayError::Completed(Box::new(record)));
        }
        Some(record) if matches!(record.status, JobStatus::Failed | JobStatus::Cancelled) => {
            let retried =
                crate::retry(store, registry, queues, &record.tenant_id, &record.job_id, default_budget, by)
                    .await
                    .map_err(|e| match e {
                        StoreError::NotFound(_) => ReplayError::JobGone(record.job_id.clone()),
                        other => other.into(),
                    })?;
            match retried {
                Retry::Requeued { record, enqueued } => {
                    enqueued?;
                    ("retried", Some(record))
                }
                // Changed meanwhile (another retry won): it is live now; enqueue it below.
                Retry::NotRetryable(current) => restored(store, registry, queues, current).await?,
            }
        }
        Some(record) => restored(store, registry, queues, record).await?,
        None => {
            if !queue.replay_dead(&letter.id).await? {
                return Err(ReplayError::NotFound);
            }
            ("raw", None)
        }
    };
    if replayed != "raw" {
        queue.purge_dead(std::slice::from_ref(&letter.id)).await?;
    }
    let detail = json!({
        "by": by,
        "queue": queue.name(),
        "id": letter.id,
        "replayed": replayed,
        "job_id": job.as_ref().map(|j| j.job_id.as_str()).or(letter.job_id.as_deref()),
    });
    store.append_control_audit("dead_letter_replayed", &detail).await?;
    tracing::info!(queue = queue.name(), id = %letter.id, replayed, by, "dead letter replayed");
    Ok(Replayed { id: letter.id, queue: queue.name().to_owned(), replayed, job })
}

/// A live (or just retried) `record` enqueued again unless its queue holds it.
async fn restored(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    record: JobRecord,
) -> Result<(&'static str, Option<JobRecord>), ReplayError> {
    if let Some(q) = queues.of_kind(registry, &record.kind) {
        restore(q, &record).await?;
    }
    // Read back: what the job is now.
    let now = store.get_job(&record.tenant_id, &record.job_id).await?.unwrap_or(record);
    Ok(("restored", Some(now)))
}

/// Purges dead letters `ids` of `queue` (all of them when `None`) at `by`'s request; returns how
/// many there were. Audited as `dead_letters_purged` under `*`.
///
/// # Errors
/// Redis failures, [`QueueError::DeadLetter`] for an id that is no stream entry id; storage errors
/// (the audit row).
pub async fn purge_dead_letters(
    store: &Store,
    queue: &Queue,
    ids: Option<&[String]>,
    by: &str,
) -> Result<u64, ReplayError> {
    let purged = match ids {
        Some(ids) => queue.purge_dead(ids).await?,
        None => queue.purge_all_dead().await?,
    };
    if purged > 0 {
        let detail = json!({ "by": by, "queue": queue.name(), "ids": ids, "purged": purged });
        store.append_control_audit("dead_letters_purged", &detail).await?;
    }
    tracing::info!(queue = queue.name(), purged, by, "dead letters purged");
    Ok(purged)
}

/// A dead letter, as the views show it: the queue's entry with its queue's name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct DeadLetterView {
    /// Its queue (or partition).
    pub queue: String,
    /// The dead letter.
    #[serde(flatten)]
    pub letter: DeadLetter,
}
