//! The status machine: [`JobRecord`]'s fenced transitions and [`TransitionError`], why one was
//! refused. The rules are listed in the [parent module's docs](super).

use chrono::{DateTime, Utc};

use super::{JobRecord, JobStatus, Lease, NewJob, Progress};
use crate::ErrorClass;

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
    /// A cancel was requested: the job is not retried, its worker ends it as cancelled.
    #[error("a cancel was requested: the job is not retried")]
    CancelRequested,
    /// Only a failed or cancelled job can be put back in the queue.
    #[error("job is {status}: only a failed or cancelled job can be retried")]
    NotRetryable {
        /// The job's status.
        status: JobStatus,
    },
}

impl JobRecord {
    /// The record written before anything reaches the queue: `scheduled` when the job's `run_at`
    /// is after `now`, else `queued`.
    pub fn pending(job: NewJob, now: DateTime<Utc>) -> Self {
        let status = match job.run_at {
            Some(at) if at > now => JobStatus::Scheduled,
            _ => JobStatus::Queued,
        };
        Self {
            job_id: job.job_id,
            tenant_id: job.tenant_id,
            kind: job.kind,
            key: Some(job.key),
            input: job.input,
            status,
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
            cancel_requested_at: None,
            run_at: job.run_at,
            priority: job.priority,
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

    /// Starts attempt `attempt` (1-based): `scheduled|queued|running → running`.
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
    /// enqueued for attempt `entry_attempt`: `scheduled|queued|running → running`, recording
    /// `lease`.
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

    /// Fails the job for good: `scheduled|queued|running → failed`.
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
        if self.cancel_requested_at.is_some() {
            return Err(TransitionError::CancelRequested);
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

    /// A cancel request: `scheduled|queued → cancelled` at once; `running` → the same record with
    /// `cancel_requested_at` (kept from the first request), for its worker to end.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`] for a finished job (a cancelled one included).
    pub fn cancel(&self, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        Ok(match self.status {
            JobStatus::Running => Self {
                cancel_requested_at: Some(self.cancel_requested_at.unwrap_or(now)),
                updated_at: now,
                ..self.clone()
            },
            _ => Self {
                status: JobStatus::Cancelled,
                next_attempt_at: None,
                updated_at: now,
                finished_at: Some(now),
                ..self.clone()
            },
        })
    }

    /// The worker of attempt `attempt` ends a job whose cancel was requested:
    /// `running → cancelled`.
    ///
    /// # Errors
    /// [`TransitionError::Terminal`] or [`TransitionError::StaleAttempt`].
    pub fn cancelled(&self, attempt: u32, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        self.check_not_terminal()?;
        if !self.owns(attempt) {
            return Err(self.stale(attempt));
        }
        Ok(Self { status: JobStatus::Cancelled, updated_at: now, finished_at: Some(now), ..self.clone() })
    }

    /// A retry asked for by a tenant or an operator: `failed|cancelled → queued` under the same id,
    /// with a fresh budget of `budget` attempts after those used (`max_attempts = attempts +
    /// budget`). The error, output and stage of the last run are cleared; the operation log is not
    /// (durable steps that finished stay done).
    ///
    /// # Errors
    /// [`TransitionError::NotRetryable`] unless the job is failed or cancelled.
    pub fn requeue(&self, budget: u32, now: DateTime<Utc>) -> Result<Self, TransitionError> {
        if !matches!(self.status, JobStatus::Failed | JobStatus::Cancelled) {
            return Err(TransitionError::NotRetryable { status: self.status });
        }
        Ok(Self {
            status: JobStatus::Queued,
            max_attempts: self.attempts.saturating_add(budget.max(1)),
            stage: None,
            progress: Progress::ZERO,
            next_attempt_at: None,
            output: None,
            error_message: None,
            error_class: None,
            updated_at: now,
            finished_at: None,
            cancel_requested_at: None,
            ..self.clone()
        })
    }
}
