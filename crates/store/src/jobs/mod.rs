//! Job records of every kind: create-pending-or-return-existing, the fenced status writes of the
//! core status machine, and tenant-scoped reads with filtered keyset pagination. A record carries
//! its kind, key and input as the producer recorded them; the store reads none of them.
//!
//! Each status write is one guarded statement whose `WHERE` clause is the core rule for that
//! transition (see `longhaul_core::record`; each `.sql` file names its rule), plus its audit row in
//! the same transaction — except creation and completion, whose `enqueued` and `completed` audit
//! entries are read from the record itself (see [`crate::audit`]). When the guard refuses, nothing
//! changes, and the caller gets [`WriteOutcome::Refused`] with the record as it stands and the
//! reason the core rule gives for it: a refusal is explained by reading the record back and asking
//! the core.
//!
//! The worker's start ([`Write::StartNext`]) is fenced by the queue delivery asking for it (the
//! stream entry id and its delivery count, kept in `lease_entry`/`lease_delivery`; the core rule is
//! `JobRecord::start_delivery`), so a stale copy of an entry never takes over a newer attempt.
//!
//! Each rule is written once per backend. The writes the worker batches — starts, completions,
//! progress — and the producer's pending records have a PostgreSQL form that writes many rows in
//! one statement (`… FROM UNNEST(…)`; a start keeps the attempt's start in the record rather than
//! an audit row; `postgres`), which a single write runs with one row, and a SQLite single-row form
//! run once per row inside one transaction (`sqlite`). Failing and scheduling a retry, never
//! batched, have one form both backends run.
//!
//! Inside: `row` (the record's columns and their decoding), `read` (reads and pagination), `admin`
//! (an operator's reads across tenants and bulk retry), `cancel` (cancel requests and their end),
//! `write` (the writes, and the explanation of refusals), `postgres` and `sqlite` (each backend's
//! batched forms).

mod admin;
mod cancel;
mod postgres;
mod read;
mod row;
mod sqlite;
mod write;

pub use admin::{
    AdminJobFilter, FailedBatch, FailedFilter, FailedJob, MAX_KEY_FILTER_LEN, MAX_RETRY_BATCH, RetriedBatch,
};
pub use write::AttemptFailure;

pub(crate) use read::select_record;

use chrono::{DateTime, Utc};
use longhaul_core::{
    ErrorClass, JobId, JobRecord, JobStatus, Lease, Priority, Progress, TenantId, TransitionError,
};
use serde_json::{Value, json};

/// The largest page [`Store::list_jobs`](crate::Store::list_jobs) returns, and so the largest the
/// API's `GET /v1/jobs` accepts.
pub const MAX_PAGE_SIZE: u32 = 100;

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

/// Which of a tenant's jobs [`Store::list_jobs`](crate::Store::list_jobs) lists: those matching
/// every filter set (`None`: any). The default lists them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobFilter {
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// Only jobs in this status.
    pub status: Option<JobStatus>,
    /// Only jobs whose last failure is of this class (a failed job, or one waiting for a retry).
    pub error_class: Option<ErrorClass>,
    /// Only jobs created at or after this time.
    pub created_after: Option<DateTime<Utc>>,
    /// Only jobs created before this time.
    pub created_before: Option<DateTime<Utc>>,
    /// Only jobs of this priority.
    pub priority: Option<Priority>,
}

/// One page of [`Store::list_jobs`](crate::Store::list_jobs), newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPage {
    /// The records.
    pub jobs: Vec<JobRecord>,
    /// Pass back as `cursor` for the next page; `None` on the last page.
    pub next_cursor: Option<String>,
}

/// A write [`Store::write_many`](crate::Store::write_many) can batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// [`Store::start_next`](crate::Store::start_next): the worker's start, which needs no read of
    /// the record first.
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
    /// [`Store::complete`](crate::Store::complete).
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
            Self::StartNext { tenant, job, .. } | Self::Complete { tenant, job, .. } => (tenant, job),
        }
    }

    /// The attempt named, if any (a [`Write::StartNext`] starts whichever is next).
    fn attempt(&self) -> Option<u32> {
        match self {
            Self::Complete { attempt, .. } => Some(*attempt),
            Self::StartNext { .. } => None,
        }
    }

    /// The core rule the write's SQL guard is: what it makes of `record` at `now`.
    fn rule(&self, record: &JobRecord, now: DateTime<Utc>) -> Result<JobRecord, TransitionError> {
        match self {
            Self::StartNext { lease, entry_attempt, .. } => record.start_delivery(lease, *entry_attempt, now),
            Self::Complete { attempt, output, .. } => record.complete(*attempt, output.clone(), now),
        }
    }
}

/// The detail of a job's `enqueued` audit entry (read from its record) and of a request's
/// `duplicate_enqueue` audit row: the kind and key (the record holds the input), and the `run_at`
/// and `priority` when set.
pub(crate) fn enqueue_detail(r: &JobRecord) -> Value {
    let mut detail = json!({ "kind": r.kind, "key": r.key });
    if let Some(at) = r.run_at {
        detail["run_at"] = json!(at);
    }
    if r.priority != Priority::Normal {
        detail["priority"] = json!(r.priority);
    }
    detail
}
