//! Retry classification and the retry policy.
//!
//! Every failure a job can meet is a [`FailureCase`] — the rows of the guide's retry table — and each
//! case maps onto one [`ErrorClass`]:
//!
//! | case | class | behaviour |
//! |---|---|---|
//! | provider timeout, 429, 5xx, connection error | retryable | backoff, up to `max_attempts` |
//! | temporary Redis or database error | retryable | backoff, up to `max_attempts` |
//! | panic inside a stage | retryable | retried once, then failed |
//! | a stage past its kind's stage timeout | retryable | backoff, up to `max_attempts` |
//! | invalid job data (decode, validation, missing ticket, bad provider output) | invalid | fail now, never re-enqueued |
//! | the job past its kind's deadline | invalid | fail now, never re-enqueued |
//! | permission or tenant mismatch | alert | fail now, audit row, error log, alert event |
//!
//! Non-idempotent side effects are not a failure case: they only run through the operation log
//! ([`crate::OperationLog`]), so retrying a job that performed them is safe.
//!
//! [`RetryPolicy::decide`] turns (case, attempt, now, a random number) into a [`Decision`]. It is a
//! pure function: the caller supplies the clock and the randomness, so every rule is table-tested.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How the system reacts to a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(description = "How a failure is handled: `retryable` (tried again with backoff while attempts \
    remain), `invalid` (the job itself is wrong: failed at once) or `alert` (a permission or tenancy \
    violation: failed at once, an operator alerted).")]
pub enum ErrorClass {
    /// Transient: try again later with backoff, while attempts remain.
    Retryable,
    /// The job itself is wrong: fail now, never re-enqueue.
    Invalid,
    /// A permission or tenancy violation: fail now and alert an operator.
    Alert,
}

impl ErrorClass {
    /// The stored and logged name: `retryable`, `invalid` or `alert`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Invalid => "invalid",
            Self::Alert => "alert",
        }
    }

    /// Parses a stored name.
    ///
    /// # Errors
    /// The unknown name, quoted, when `s` is not one of the three classes.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "retryable" => Ok(Self::Retryable),
            "invalid" => Ok(Self::Invalid),
            "alert" => Ok(Self::Alert),
            other => Err(format!("unknown error class {other:?}")),
        }
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The failure cases of the guide's retry table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCase {
    /// A provider did not answer within its timeout.
    ProviderTimeout,
    /// A provider could not be reached (connection refused, reset, DNS).
    ProviderUnreachable,
    /// A provider answered 429 Too Many Requests.
    ProviderRateLimited,
    /// A provider answered 5xx.
    ProviderUnavailable,
    /// Redis or the database failed transiently.
    TemporaryInfrastructure,
    /// The job's data cannot be decoded or fails validation, or its ticket does not exist.
    InvalidJobData,
    /// A provider answered something outside its contract (4xx other than 429, unparsable output).
    ProviderRejected,
    /// The job's tenant does not own what it touches, or lacks the permission.
    PermissionDenied,
    /// A pipeline stage panicked.
    StagePanicked,
    /// A stage ran past its kind's stage timeout.
    StageTimeout,
    /// The job ran past its kind's deadline: it fails for good.
    DeadlineExceeded,
}

impl FailureCase {
    /// The class this case belongs to.
    ///
    /// ```
    /// use longhaul_core::{ErrorClass, FailureCase};
    /// assert_eq!(FailureCase::ProviderTimeout.class(), ErrorClass::Retryable);
    /// assert_eq!(FailureCase::InvalidJobData.class(), ErrorClass::Invalid);
    /// assert_eq!(FailureCase::PermissionDenied.class(), ErrorClass::Alert);
    /// ```
    pub fn class(self) -> ErrorClass {
        match self {
            Self::ProviderTimeout
            | Self::ProviderUnreachable
            | Self::ProviderRateLimited
            | Self::ProviderUnavailable
            | Self::TemporaryInfrastructure
            | Self::StagePanicked
            | Self::StageTimeout => ErrorClass::Retryable,
            Self::InvalidJobData | Self::ProviderRejected | Self::DeadlineExceeded => ErrorClass::Invalid,
            Self::PermissionDenied => ErrorClass::Alert,
        }
    }

    /// The most attempts this case allows, whatever the policy says: a panic is retried once.
    fn attempt_cap(self) -> u32 {
        match self {
            Self::StagePanicked => 2,
            _ => u32::MAX,
        }
    }
}

/// A classified failure of one attempt, as a pipeline stage reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct JobError {
    /// Which row of the retry table this is.
    pub case: FailureCase,
    /// A message for the job record and the logs; never contains secrets, nor NUL (see
    /// [`JobError::new`]).
    pub message: String,
    /// A minimum delay before the next attempt (a provider's `Retry-After`).
    pub retry_after: Option<Duration>,
}

impl JobError {
    /// A failure of the given case. A NUL in `message` is written `\0`: the message becomes the
    /// job record's `error_message`, and PostgreSQL text cannot hold NUL — a provider echoing one
    /// back would otherwise make the failure itself unrecordable.
    pub fn new(case: FailureCase, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.contains('\0') {
            message = message.replace('\0', "\\0");
        }
        Self { case, message, retry_after: None }
    }

    /// Sets the minimum delay before the next attempt.
    #[must_use]
    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        self.case.class()
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Schedule the next attempt at `at`.
    Retry {
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// Fail the job for good.
    Fail {
        /// The class written to the record.
        class: ErrorClass,
        /// Whether an operator must be alerted (class [`ErrorClass::Alert`]).
        alert: bool,
        /// Whether the job failed because its attempts ran out (rather than its class).
        exhausted: bool,
    },
}

/// Why a retry policy was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `max_attempts` is zero.
    #[error("max attempts must be at least 1")]
    NoAttempts,
    /// The base delay is zero.
    #[error("the base backoff delay must be greater than zero")]
    ZeroBase,
    /// The cap is below the base delay.
    #[error("the backoff cap ({cap:?}) must not be below the base delay ({base:?})")]
    CapBelowBase {
        /// The base delay.
        base: Duration,
        /// The cap.
        cap: Duration,
    },
}

/// Exponential backoff with full jitter, capped, and a limit on attempts.
///
/// The ceiling for attempt `n` (1-based, the attempt that just failed) is
/// `min(cap, base × 2^(n−1))`; the delay is a uniformly random fraction of it ("full jitter"),
/// so many jobs failing together do not retry together.
///
/// ```
/// use std::time::Duration;
/// use longhaul_core::RetryPolicy;
/// let p = RetryPolicy::new(5, Duration::from_secs(1), Duration::from_secs(60)).unwrap();
/// assert_eq!(p.ceiling(1), Duration::from_secs(1));
/// assert_eq!(p.ceiling(4), Duration::from_secs(8));
/// assert_eq!(p.ceiling(30), Duration::from_secs(60));
/// assert_eq!(p.delay(4, 0.5), Duration::from_secs(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    max_attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Default for RetryPolicy {
    /// 5 attempts, 1 s base, 5 min cap.
    fn default() -> Self {
        Self { max_attempts: 5, base: Duration::from_secs(1), cap: Duration::from_secs(300) }
    }
}

impl RetryPolicy {
    /// A policy allowing `max_attempts` attempts in all.
    ///
    /// # Errors
    /// [`PolicyError`] when there are no attempts, the base is zero, or the cap is below the base.
    pub fn new(max_attempts: u32, base: Duration, cap: Duration) -> Result<Self, PolicyError> {
        if max_attempts == 0 {
            return Err(PolicyError::NoAttempts);
        }
        if base.is_zero() {
            return Err(PolicyError::ZeroBase);
        }
        if cap < base {
            return Err(PolicyError::CapBelowBase { base, cap });
        }
        Ok(Self { max_attempts, base, cap })
    }

    /// Attempts allowed in all (the first run included).
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The largest delay after attempt `attempt` failed: `min(cap, base × 2^(attempt−1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << exp;
        let base_ms = u64::try_from(self.base.as_millis()).unwrap_or(u64::MAX);
        let ms = base_ms.saturating_mul(factor);
        Duration::from_millis(ms).min(self.cap)
    }

    /// The delay after attempt `attempt` failed, given `unit`, a random number in `[0, 1)`
    /// (values outside are clamped). Rounded to whole milliseconds.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() { 0.0 } else { unit.clamp(0.0, 1.0) };
        let ceiling_ms = self.ceiling(attempt).as_millis() as f64;
        Duration::from_millis((ceiling_ms * unit).floor() as u64)
    }

    /// Decides what follows failed attempt `attempt` (1-based) of a job.
    ///
    /// Retryable failures retry while attempts remain (a panic at most once); the delay is the
    /// jittered backoff, but never shorter than the error's `retry_after`. Invalid and alert
    /// failures fail at once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use chrono::{TimeZone, Utc};
    /// use longhaul_core::{Decision, FailureCase, JobError, RetryPolicy};
    /// let policy = RetryPolicy::new(3, Duration::from_secs(2), Duration::from_secs(60)).unwrap();
    /// let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    /// let timeout = JobError::new(FailureCase::ProviderTimeout, "classifier timed out");
    /// assert_eq!(
    ///     policy.decide(&timeout, 1, now, 0.5),
    ///     Decision::Retry { at: now + Duration::from_secs(1) },
    /// );
    /// assert!(matches!(policy.decide(&timeout, 3, now, 0.5), Decision::Fail { exhausted: true, .. }));
    /// ```
    pub fn decide(&self, error: &JobError, attempt: u32, now: DateTime<Utc>, unit: f64) -> Decision {
        let class = error.class();
        match class {
            ErrorClass::Invalid | ErrorClass::Alert => {
                Decision::Fail { class, alert: class == ErrorClass::Alert, exhausted: false }
            }
            ErrorClass::Retryable => {
                let allowed = self.max_attempts.min(error.case.attempt_cap());
                if attempt >= allowed {
                    return Decision::Fail { class, alert: false, exhausted: true };
                }
                let delay = self.delay(attempt, unit).max(error.retry_after.unwrap_or_default());
                let delay = chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
                let at = now.checked_add_signed(delay).unwrap_or(DateTime::<Utc>::MAX_UTC);
                Decision::Retry { at }
            }
        }
    }
}

#[cfg(test)]
mod tests;
