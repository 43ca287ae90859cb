//! The job record — the user-facing truth about one job — and its status machine.
//!
//! ```text
//!            start(1)               complete(n)
//!   queued ───────────▶ running ───────────────▶ completed
//!     ▲                 │  │ ▲
//!     │ retry(n)        │  │ │ start(n+1): a new attempt takes over a stalled one
//!     └─────────────────┘  │ └─┘
//!                          │ fail(n)
//!                          └───────────────────▶ failed
//! ```
//!
//! `attempts` counts attempts started. A writer owns attempt `n` and every write it makes is
//! *fenced* by `n`:
//!
//! * **start(n)** — allowed from `queued` or `running` when `attempts == n − 1` and
//!   `n ≤ max_attempts`; sets `running`, `attempts = n`. Starting from `running` is how a reclaimed
//!   job's new attempt fences out the worker that stalled.
//! * **start by a delivery** ([`JobRecord::start_delivery`]) — the worker's start: the next
//!   attempt, fenced by the queue [`Lease`] that asks for it. A later delivery of the entry that
//!   started the current attempt may take over (its worker stopped heart-beating); an earlier or
//!   equal one, or an entry enqueued for an attempt already started, never does.
//! * **progress / complete / retry (n)** — allowed only in `running` with `attempts == n`.
//! * **fail(n)** — allowed when the writer owns attempt `n` (`running`, `attempts == n`) or is
//!   about to start it (`queued` or `running`, `attempts == n − 1`): a job found invalid, or
//!   stalled too often, fails without running.
//! * `completed` and `failed` are terminal: nothing moves them again.
//!
//! A write from an older attempt therefore changes nothing and reports [`TransitionError`]. The
//! store applies the same guards in SQL so they hold across processes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ErrorClass, JobId, TenantId, TicketId};

/// Where a job stands, as its user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    /// Recorded and waiting for a worker (first run or a scheduled retry).
    Queued,
    /// A worker is running an attempt.
    Running,
    /// Finished with output. Terminal.
    Completed,
    /// Finished without output; `error_class` and `error_message` say why. Terminal.
    Failed,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 4] = [Self::Queued, Self::Running, Self::Completed, Self::Failed];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    /// Parses a stored or user-supplied name.
    ///
    /// # Errors
    /// A message naming the valid statuses.
    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}; expected queued, running, completed or failed"))
    }

    /// Whether nothing can change this status any more.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed)
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A percentage, 0 to 100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Progress(u8);

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
    /// The stable job id ([`JobId::for_ticket`] or [`JobId::for_idempotency_key`]).
    pub job_id: JobId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The ticket to triage.
    pub ticket_id: TicketId,
    /// The ticket revision the job was requested for.
    pub ticket_revision: u64,
    /// Attempts allowed in all.
    pub max_attempts: u32,
}

/// The durable, user-facing record of one job (the guide's `TicketJobRecord`, extended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// The stable job id.
    pub job_id: JobId,
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// The ticket being triaged.
    pub ticket_id: TicketId,
    /// The ticket revision the job was requested for.
    pub ticket_revision: u64,
    /// Where the job stands.
    pub status: JobStatus,
    /// The pipeline stage last reported, if any.
    pub stage: Option<String>,
    /// Progress of the current attempt.
    pub progress: Progress,
    /// Attempts started so far.
    pub attempts: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When a scheduled retry is due (set while `queued` for a retry).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The result, once `completed`.
    pub output: Option<serde_json::Value>,
    /// The last failure's message (kept while a retry is scheduled, and when `failed`).
    pub error_message: Option<String>,
    /// The last failure's class.
    pub error_class: Option<ErrorClass>,
    /// When the record was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// When the latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub finished_at: Option<DateTime<Utc>>,
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

/// Why a transition was refused. The record is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// The job already reached a terminal status.
    #[error("job is already {status}; terminal statuses are final")]
    Terminal {
        /// The terminal status.
        status: JobStatus,
    },
    /// The writer's attempt is not the current one (a stale worker, or a duplicate delivery).
    #[error("attempt {attempt} is stale: the job is {status} with {attempts} attempt(s) started")]
    StaleAttempt {
        /// The attempt the writer claimed.
        attempt: u32,
        /// The record's status.
        status: JobStatus,
        /// The record's attempts.
        attempts: u32,
    },
    /// Starting attempt `attempt` would exceed `max_attempts`.
    #[error("attempt {attempt} exceeds the limit of {max_attempts} attempts")]
    AttemptsExhausted {
        /// The attempt that was to start.
        attempt: u32,
        /// The limit.
        max_attempts: u32,
    },
    /// A newer delivery started the current attempt, or the entry was enqueued for an attempt
    /// that has already started: this delivery is stale and must change nothing.
    #[error(
        "delivery {delivery} of entry {entry} (enqueued for attempt {entry_attempt}) is superseded: \
         the job is {status} with {attempts} attempt(s) started"
    )]
    Superseded {
        /// The stale delivery's entry.
        entry: String,
        /// Its delivery count.
        delivery: u32,
        /// The attempt its entry was enqueued for.
        entry_attempt: u32,
        /// The record's status.
        status: JobStatus,
        /// The record's attempts.
        attempts: u32,
    },
    /// A retry was requested but no attempt remains.
    #[error("no attempt left to retry: {attempts} of {max_attempts} used")]
    NoAttemptsLeft {
        /// Attempts used.
        attempts: u32,
        /// The limit.
        max_attempts: u32,
    },
}

impl JobRecord {
    /// The `queued` record written before anything reaches the queue.
    pub fn pending(job: NewJob, now: DateTime<Utc>) -> Self {
        Self {
            job_id: job.job_id,
            tenant_id: job.tenant_id,
            ticket_id: job.ticket_id,
            ticket_revision: job.ticket_revision,
            status: JobStatus::Queued,
            stage: None,
            progress: Progress::ZERO,
            attempts: 0,
            max_attempts: job.max_attempts,
            next_attempt_at: None,
            output: None,
            error_message: None,
            error_class: None,
            created_at: now,
            updated_at: now,
            started_at: None,
            finished_at: None,
            lease: None,
        }
    }

    fn check_not_terminal(&self) -> Result<(), TransitionError> {
        if self.status.is_terminal() {
            Err(TransitionError::Terminal { status: self.status })
        } else {
            Ok(())
        }
    }

    fn stale(&self, attempt: u32) -> TransitionError {
        TransitionError::StaleAttempt { attempt, status: self.status, attempts: self.attempts }
    }

    /// Whether the writer of `attempt` owns the running attempt.
    fn owns(&self, attempt: u32) -> bool {
        self.status == JobStatus::Running && self.attempts == attempt
    }

    /// Whether `attempt` is the next one to start.
    fn is_next(&self, attempt: u32) -> bool {
        !self.status.is_terminal() && attempt >= 1 && self.attempts == attempt - 1
    }

    /// Starts attempt `attempt` (1-based): `queued|running → running`.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`], [`TransitionError::StaleAttempt`] unless
    /// `attempts == attempt − 1`, [`TransitionError::AttemptsExhausted`] past `max_attempts`.
    pub fn start(&self, attempt: u32, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.is_next(attempt) {
            return Err(self.stale(attempt));
        }
        if attempt > self.max_attempts {
            return Err(TransitionError::AttemptsExhausted { attempt, max_attempts: self.max_attempts });
        }
        Ok(Self {
            status: JobStatus::Running,
            attempts: attempt,
            stage: None,
            progress: Progress::ZERO,
            next_attempt_at: None,
            started_at: Some(now),
            updated_at: now,
            lease: None,
            ..self.clone()
        })
    }

    /// Starts the next attempt (`attempts + 1`) on behalf of queue delivery `lease` of an entry
    /// enqueued for attempt `entry_attempt`: `queued|running → running`, recording `lease`.
    ///
    /// The delivery must be newer than the one that started the running attempt: a later delivery
    /// of the same entry (the previous holder's lease ran out), or an entry enqueued for an attempt
    /// not started yet (a scheduled retry, a re-enqueue after Redis lost the job). A running attempt
    /// started without a recorded delivery may be taken over by any delivery. The lease is kept
    /// while a retry waits (it names the entry that ran the failed attempt).
    ///
    /// # Errors
    /// [`TransitionError::Terminal`], [`TransitionError::Superseded`] for a stale delivery,
    /// [`TransitionError::AttemptsExhausted`] past `max_attempts`.
    pub fn start_delivery(
        &self,
        lease: &Lease,
        entry_attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        let newer = match (self.status, &self.lease) {
            // The running attempt's worker stopped heart-beating: a later delivery of its entry.
            (JobStatus::Running, Some(current)) if current.entry == lease.entry => {
                lease.delivery > current.delivery
            }
            // Started without a delivery (before deliveries were recorded, or by hand): any
            // delivery may take it over, as a reclaim always could.
            (JobStatus::Running, None) => true,
            // Another entry, or a retry waiting: only an entry enqueued for a later attempt.
            _ => entry_attempt > self.attempts,
        };
        if !newer {
            return Err(TransitionError::Superseded {
                entry: lease.entry.clone(),
                delivery: lease.delivery,
                entry_attempt,
                status: self.status,
                attempts: self.attempts,
            });
        }
        let attempt = self.attempts + 1;
        if attempt > self.max_attempts {
            return Err(TransitionError::AttemptsExhausted { attempt, max_attempts: self.max_attempts });
        }
        Ok(Self { lease: Some(lease.clone()), ..self.start(attempt, now)? })
    }

    /// Records progress of the running attempt.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`] or [`TransitionError::StaleAttempt`].
    pub fn progress(
        &self,
        attempt: u32,
        stage: &str,
        progress: Progress,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.owns(attempt) {
            return Err(self.stale(attempt));
        }
        Ok(Self { stage: Some(stage.to_owned()), progress, updated_at: now, ..self.clone() })
    }

    /// Completes the running attempt with `output`: `running → completed`.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`] or [`TransitionError::StaleAttempt`].
    pub fn complete(
        &self,
        attempt: u32,
        output: serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.owns(attempt) {
            return Err(self.stale(attempt));
        }
        Ok(Self {
            status: JobStatus::Completed,
            progress: Progress::DONE,
            output: Some(output),
            error_message: None,
            error_class: None,
            next_attempt_at: None,
            updated_at: now,
            finished_at: Some(now),
            ..self.clone()
        })
    }

    /// Fails the job for good: `queued|running → failed`.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`], or [`TransitionError::StaleAttempt`] unless the writer owns
    /// attempt `attempt` or it is the next attempt to start.
    pub fn fail(
        &self,
        attempt: u32,
        class: ErrorClass,
        message: &str,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.owns(attempt) && !self.is_next(attempt) {
            return Err(self.stale(attempt));
        }
        Ok(Self {
            status: JobStatus::Failed,
            attempts: attempt,
            error_message: Some(message.to_owned()),
            error_class: Some(class),
            next_attempt_at: None,
            updated_at: now,
            finished_at: Some(now),
            ..self.clone()
        })
    }

    /// Schedules the next attempt after attempt `attempt` failed: `running → queued`.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`], [`TransitionError::StaleAttempt`], or
    /// [`TransitionError::NoAttemptsLeft`] when `attempts == max_attempts`.
    pub fn retry(
        &self,
        attempt: u32,
        class: ErrorClass,
        message: &str,
        next_attempt_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.owns(attempt) {
            return Err(self.stale(attempt));
        }
        if self.attempts >= self.max_attempts {
            return Err(TransitionError::NoAttemptsLeft {
                attempts: self.attempts,
                max_attempts: self.max_attempts,
            });
        }
        Ok(Self {
            status: JobStatus::Queued,
            stage: None,
            progress: Progress::ZERO,
            next_attempt_at: Some(next_attempt_at),
            error_message: Some(message.to_owned()),
            error_class: Some(class),
            updated_at: now,
            ..self.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use serde_json::json;

    use super::*;

    fn t(s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, s).single().expect("time")
    }

    fn record(status: JobStatus, attempts: u32) -> JobRecord {
        let tenant = TenantId::parse("acme").expect("tenant");
        let ticket = TicketId::parse("T-1").expect("ticket");
        let job = NewJob {
            job_id: JobId::for_ticket(&tenant, &ticket, 1),
            tenant_id: tenant,
            ticket_id: ticket,
            ticket_revision: 1,
            max_attempts: 3,
        };
        JobRecord { status, attempts, ..JobRecord::pending(job, t(0)) }
    }

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Start,
        Progress,
        Complete,
        Fail,
        Retry,
    }

    fn apply(r: &JobRecord, op: Op, attempt: u32) -> Result<JobRecord, TransitionError> {
        match op {
            Op::Start => r.start(attempt, t(1)),
            Op::Progress => r.progress(attempt, "classify", Progress::new(50).expect("p"), t(1)),
            Op::Complete => r.complete(attempt, json!({"ok": true}), t(1)),
            Op::Fail => r.fail(attempt, ErrorClass::Invalid, "bad", t(1)),
            Op::Retry => r.retry(attempt, ErrorClass::Retryable, "slow", t(9), t(1)),
        }
    }

    #[test]
    fn transition_table() {
        use JobStatus::*;
        use Op::*;
        // (status, attempts, op, attempt, Ok(new status) | Err(kind))
        type Row = (JobStatus, u32, Op, u32, Result<JobStatus, &'static str>);
        let table: &[Row] = &[
            (Queued, 0, Start, 1, Ok(Running)),
            (Queued, 0, Start, 2, Err("stale")),
            (Queued, 1, Start, 1, Err("stale")), // duplicate delivery of attempt 1
            (Queued, 1, Start, 2, Ok(Running)),  // after a scheduled retry
            (Running, 1, Start, 2, Ok(Running)), // takeover of a stalled attempt
            (Running, 1, Start, 1, Err("stale")),
            (Running, 3, Start, 4, Err("exhausted")),
            (Completed, 1, Start, 2, Err("terminal")),
            (Failed, 1, Start, 2, Err("terminal")),
            (Running, 1, Progress, 1, Ok(Running)),
            (Running, 2, Progress, 1, Err("stale")),
            (Queued, 1, Progress, 1, Err("stale")),
            (Running, 1, Complete, 1, Ok(Completed)),
            (Running, 2, Complete, 1, Err("stale")), // the stalled worker comes back late
            (Queued, 0, Complete, 1, Err("stale")),
            (Completed, 1, Complete, 1, Err("terminal")),
            (Failed, 1, Complete, 1, Err("terminal")),
            (Running, 1, Fail, 1, Ok(Failed)),
            (Queued, 0, Fail, 1, Ok(Failed)),  // invalid before running
            (Running, 3, Fail, 4, Ok(Failed)), // stalled too often
            (Running, 2, Fail, 1, Err("stale")),
            (Completed, 1, Fail, 1, Err("terminal")),
            (Running, 1, Retry, 1, Ok(Queued)),
            (Running, 3, Retry, 3, Err("no attempts left")),
            (Running, 2, Retry, 1, Err("stale")),
            (Queued, 1, Retry, 1, Err("stale")),
            (Failed, 1, Retry, 1, Err("terminal")),
        ];
        for (status, attempts, op, attempt, want) in table {
            let before = record(*status, *attempts);
            let got = apply(&before, *op, *attempt);
            match (want, &got) {
                (Ok(s), Ok(after)) => assert_eq!(after.status, *s, "{status} {attempts} {op:?}({attempt})"),
                (Err(kind), Err(e)) => {
                    let kind_of = match e {
                        TransitionError::Terminal { .. } => "terminal",
                        TransitionError::StaleAttempt { .. } => "stale",
                        TransitionError::AttemptsExhausted { .. } => "exhausted",
                        TransitionError::NoAttemptsLeft { .. } => "no attempts left",
                        TransitionError::Superseded { .. } => "superseded",
                    };
                    assert_eq!(kind_of, *kind, "{status} {attempts} {op:?}({attempt}): {e}");
                }
                _ => panic!("{status} {attempts} {op:?}({attempt}): want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn a_start_by_delivery_is_fenced_by_the_delivery() {
        let lease = |entry: &str, delivery| Lease { entry: entry.to_owned(), delivery };
        let kind = |r: Result<JobRecord, TransitionError>| match r {
            Ok(r) => format!("started {}", r.attempts),
            Err(TransitionError::Superseded { .. }) => "superseded".to_owned(),
            Err(TransitionError::AttemptsExhausted { .. }) => "exhausted".to_owned(),
            Err(TransitionError::Terminal { .. }) => "terminal".to_owned(),
            Err(e) => format!("{e}"),
        };
        let queued = record(JobStatus::Queued, 0);
        let first = queued.start_delivery(&lease("1-0", 1), 1, t(1)).expect("first");
        assert_eq!((first.attempts, first.lease.clone()), (1, Some(lease("1-0", 1))));
        // A later delivery of the same entry takes over; the same or an earlier one never does.
        assert_eq!(kind(first.start_delivery(&lease("1-0", 2), 1, t(2))), "started 2");
        assert_eq!(kind(first.start_delivery(&lease("1-0", 1), 1, t(2))), "superseded");
        // Another entry only when enqueued for an attempt not started yet.
        assert_eq!(kind(first.start_delivery(&lease("2-0", 1), 1, t(2))), "superseded");
        assert_eq!(kind(first.start_delivery(&lease("2-0", 1), 2, t(2))), "started 2");
        // A retry waiting: the entry that ran the failed attempt cannot start again, whatever its
        // delivery count; the retry's entry can.
        let waiting = first.retry(1, ErrorClass::Retryable, "slow", t(9), t(3)).expect("retry");
        assert_eq!(waiting.lease, Some(lease("1-0", 1)), "kept: it names the entry that ran");
        assert_eq!(kind(waiting.start_delivery(&lease("1-0", 5), 1, t(4))), "superseded");
        assert_eq!(kind(waiting.start_delivery(&lease("3-0", 1), 2, t(4))), "started 2");
        // Started without a delivery (by hand, or before deliveries were recorded): any delivery.
        let legacy = queued.start(1, t(1)).expect("start");
        assert_eq!(legacy.lease, None);
        assert_eq!(kind(legacy.start_delivery(&lease("1-0", 1), 1, t(2))), "started 2");
        // Out of attempts, and finished.
        let last = record(JobStatus::Running, 3);
        assert_eq!(kind(last.start_delivery(&lease("1-0", 1), 4, t(2))), "exhausted");
        assert_eq!(
            kind(record(JobStatus::Completed, 1).start_delivery(&lease("1-0", 9), 9, t(2))),
            "terminal"
        );
    }

    #[test]
    fn transitions_set_the_fields_users_see() {
        let r = record(JobStatus::Queued, 0).start(1, t(1)).expect("start");
        assert_eq!((r.attempts, r.started_at, r.updated_at), (1, Some(t(1)), t(1)));
        let p = r.progress(1, "load", Progress::new(33).expect("p"), t(2)).expect("progress");
        assert_eq!((p.stage.as_deref(), p.progress.percent()), (Some("load"), 33));

        let q = p.retry(1, ErrorClass::Retryable, "provider timeout", t(30), t(3)).expect("retry");
        assert_eq!(q.status, JobStatus::Queued);
        assert_eq!(q.next_attempt_at, Some(t(30)));
        assert_eq!(q.error_message.as_deref(), Some("provider timeout"));
        assert_eq!((q.progress, q.stage.clone()), (Progress::ZERO, None));

        let r2 = q.start(2, t(31)).expect("second attempt");
        assert_eq!(r2.next_attempt_at, None);
        let done = r2.complete(2, json!({"category": "billing"}), t(32)).expect("complete");
        assert_eq!(done.status, JobStatus::Completed);
        assert_eq!(done.progress, Progress::DONE);
        assert_eq!(done.output, Some(json!({"category": "billing"})));
        assert_eq!((done.error_message.clone(), done.error_class), (None, None));
        assert_eq!(done.finished_at, Some(t(32)));

        let failed = r2.fail(2, ErrorClass::Alert, "tenant mismatch", t(33)).expect("fail");
        assert_eq!(failed.error_class, Some(ErrorClass::Alert));
        assert_eq!(failed.finished_at, Some(t(33)));
    }

    #[test]
    fn refused_transitions_explain_themselves() {
        let done = record(JobStatus::Completed, 1);
        let e = done.start(2, t(1)).expect_err("terminal");
        assert_eq!(e.to_string(), "job is already completed; terminal statuses are final");
        let e = record(JobStatus::Running, 2).complete(1, json!(null), t(1)).expect_err("stale");
        assert_eq!(e.to_string(), "attempt 1 is stale: the job is running with 2 attempt(s) started");
    }

    #[test]
    fn status_and_progress_parsing() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()), Ok(s));
        }
        assert!(JobStatus::parse("done").expect_err("bad").contains("expected queued"));
        assert!(Progress::new(100).is_ok());
        assert_eq!(Progress::new(101), Err("progress must be between 0 and 100, got 101".into()));
        assert!(serde_json::from_str::<Progress>("150").is_err());
    }
}
