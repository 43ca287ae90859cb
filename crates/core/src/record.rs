//! The job record — the user-facing truth about one job — and its status machine.
//!
//! ```text
//!   scheduled ──start(1)──┐
//!                         ▼
//!            start(1)               complete(n)
//!   queued ───────────▶ running ───────────────▶ completed
//!     ▲                 │  │ ▲
//!     │ retry(n)        │  │ │ start(n+1): a new attempt takes over a stalled one
//!     └─────────────────┘  │ └─┘
//!                          │ fail(n)
//!                          └───────────────────▶ failed
//!
//!   scheduled|queued ──cancel──▶ cancelled ◀──cancelled(n)── running (cancel_requested_at set)
//! ```
//!
//! A job submitted with a `run_at` in the future is recorded `scheduled`; its queue entry waits in
//! the delayed set until then. It starts like a `queued` job (a start does not look at `run_at`:
//! the queue holds the entry back), is cancelled at once like one, and nothing ever moves a job
//! back to `scheduled` (a retry waits as `queued` with `next_attempt_at`).
//!
//! `attempts` counts attempts started. A writer owns attempt `n` and every write it makes is
//! *fenced* by `n`:
//!
//! * **start(n)** — allowed from `scheduled`, `queued` or `running` when `attempts == n − 1` and
//!   `n ≤ max_attempts`; sets `running`, `attempts = n`. Starting from `running` is how a reclaimed
//!   job's new attempt fences out the worker that stalled.
//! * **start by a delivery** ([`JobRecord::start_delivery`]) — the worker's start: the next
//!   attempt, fenced by the queue [`Lease`] that asks for it. A later delivery of the entry that
//!   started the current attempt may take over (its worker stopped heart-beating); an earlier or
//!   equal one, or an entry enqueued for an attempt already started, never does.
//! * **progress / complete / retry (n)** — allowed only in `running` with `attempts == n`.
//! * **fail(n)** — allowed when the writer owns attempt `n` (`running`, `attempts == n`) or is
//!   about to start it (`scheduled`, `queued` or `running`, `attempts == n − 1`): a job found
//!   invalid, or stalled too often, fails without running.
//! * **cancel** — the tenant's or an operator's request: a `scheduled` or `queued` job becomes
//!   `cancelled` at once (it never starts: a start is refused like any start of a terminal job); a
//!   `running` job gets `cancel_requested_at`, and its worker ends it; a terminal job is refused.
//! * **cancelled(n)** — the worker of attempt `n` ends a job whose cancel was requested:
//!   `running → cancelled`. Once a cancel is requested, a failure is no longer retried.
//! * `completed`, `failed` and `cancelled` are terminal: nothing moves them again.
//!
//! A write from an older attempt therefore changes nothing and reports [`TransitionError`]. The
//! store applies the same guards in SQL so they hold across processes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ErrorClass, JobId, TenantId};

/// Where a job stands, as its user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Recorded with a `run_at` in the future, and waiting for it (its queue entry is held back
    /// until then); a worker then starts it as a queued one.
    Scheduled,
    /// Recorded and waiting for a worker (first run or a scheduled retry).
    Queued,
    /// A worker is running an attempt.
    Running,
    /// Finished with output. Terminal.
    Completed,
    /// Finished without output; `error_class` and `error_message` say why. Terminal.
    Failed,
    /// Stopped at a tenant's or an operator's request. Terminal.
    Cancelled,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] =
        [Self::Scheduled, Self::Queued, Self::Running, Self::Completed, Self::Failed, Self::Cancelled];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or user-supplied name.
    ///
    /// # Errors
    /// A message naming the valid statuses.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL.into_iter().find(|status| status.as_str() == s).ok_or_else(|| {
            format!(
                "unknown status {s:?}; expected scheduled, queued, running, completed, failed or cancelled"
            )
        })
    }

    /// Whether nothing can change this status any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a job stands among the waiting jobs of its queue. Under backlog, higher priorities start
/// first, but not exclusively: the queue's admission gives each lower priority a fixed share of
/// the starts (see `longhaul-queue`), so no priority starves.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[schema(description = "Where a job stands among the waiting jobs of its queue: under backlog, higher \
    priorities start first, but each lower one keeps a fixed share of the starts (none starves).")]
pub enum Priority {
    /// Starts first.
    High,
    /// The default.
    #[default]
    Normal,
    /// Starts last.
    Low,
}

impl Priority {
    /// Every priority, highest first.
    pub const ALL: [Priority; 3] = [Self::High, Self::Normal, Self::Low];

    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::High => "high",
            Self::Normal => "normal",
            Self::Low => "low",
        }
    }

    /// Its rank, 0 (high) to 2 (low): how queue entries carry it.
    pub fn rank(self) -> u8 {
        match self {
            Self::High => 0,
            Self::Normal => 1,
            Self::Low => 2,
        }
    }

    /// The priority of rank `rank` ([`Priority::rank`]).
    pub fn from_rank(rank: u8) -> Option<Self> {
        Self::ALL.get(usize::from(rank)).copied()
    }

    /// Parses a stored or user-supplied name.
    ///
    /// # Errors
    /// A message naming the valid priorities.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown priority {s:?}; expected high, normal or low"))
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A percentage, 0 to 100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Progress(u8);

impl utoipa::PartialSchema for Progress {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .description(Some("Progress of the current attempt, in percent: 0 to 100."))
            .minimum(Some(0))
            .maximum(Some(100))
            .into()
    }
}

impl utoipa::ToSchema for Progress {}

impl Progress {
    /// 0 %.
    pub const ZERO: Progress = Progress(0);
    /// 100 %.
    pub const DONE: Progress = Progress(100);

    /// A progress of `percent`.
    ///
    /// # Errors
    /// When `percent` is above 100.
    pub fn new(percent: u8) -> Result<Self, String> {
        if percent > 100 {
            Err(format!("progress must be between 0 and 100, got {percent}"))
        } else {
            Ok(Self(percent))
        }
    }

    /// The percentage.
    pub fn percent(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for Progress {
    type Error = String;
    fn try_from(value: u8) -> Result<Self, String> {
        Self::new(value)
    }
}

impl From<Progress> for u8 {
    fn from(p: Progress) -> u8 {
        p.0
    }
}

/// What a producer supplies to record a new job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// The stable job id (see [`crate::kind::prepare`]).
    pub job_id: JobId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The job's kind.
    pub kind: String,
    /// The key the job id was derived from.
    pub key: String,
    /// The input, as the kind validated it.
    pub input: serde_json::Value,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When the job may start: in the future, the job is recorded `scheduled` and waits until
    /// then; `None`, now or in the past, it is `queued` and runs at once.
    pub run_at: Option<DateTime<Utc>>,
    /// Where it stands among the waiting jobs of its queue.
    pub priority: Priority,
}

/// The durable, user-facing record of one job (the guide's `TicketJobRecord`, generalised to
/// every kind).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(description = "A job's durable record: the truth about it, whatever happened to the queue.")]
pub struct JobRecord {
    /// The stable job id.
    pub job_id: JobId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The job's kind.
    pub kind: String,
    /// The key the job id was derived from: the client's `Idempotency-Key`, or one the kind
    /// derived from the input, or a generated one. Triage jobs recorded before kinds carry the key
    /// triage derives (`<ticket>@<revision>`), also those submitted with a client key (which was
    /// not kept then); `null` only where a database holds no key at all.
    #[schema(required = true)]
    pub key: Option<String>,
    /// What the job was submitted with.
    pub input: serde_json::Value,
    /// Where the job stands.
    pub status: JobStatus,
    /// The pipeline stage last reported, if any.
    #[schema(required = true)]
    pub stage: Option<String>,
    /// Progress of the current attempt.
    pub progress: Progress,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When a scheduled retry is due (set while `queued` for a retry).
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The result, once `completed`.
    #[schema(required = true)]
    pub output: Option<serde_json::Value>,
    /// The last failure's message (kept while a retry is scheduled, and when `failed`).
    #[schema(required = true)]
    pub error_message: Option<String>,
    /// The last failure's class.
    #[schema(required = true)]
    pub error_class: Option<ErrorClass>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the latest attempt started.
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    /// When a cancel was requested while it ran (its worker then ends it as `cancelled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_requested_at: Option<DateTime<Utc>>,
    /// When the job was to start, as submitted (`scheduled` until a worker starts it, when this
    /// was in the future at submission).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_at: Option<DateTime<Utc>>,
    /// Its priority among the waiting jobs of its queue.
    #[serde(default)]
    #[schema(required = true)]
    pub priority: Priority,
    /// The queue delivery that started the current attempt (internal: not part of the API).
    #[serde(default, skip_serializing)]
    pub lease: Option<Lease>,
}

/// A queue delivery asking to start a job: which stream entry, and how many times that entry has
/// been delivered (this delivery included). Starts are fenced by it, so a stale copy of an entry
/// never takes over an attempt a newer delivery started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The stream entry id.
    pub entry: String,
    /// The entry's delivery count at this delivery.
    pub delivery: u32,
}

mod transitions;

pub use transitions::TransitionError;

#[cfg(test)]
mod tests;
