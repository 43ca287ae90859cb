//! What a running job reports and logs through: its identity ([`JobContext`]), stage events
//! ([`PipelineObserver`]) and the operation log of its side effects ([`OperationLog`]). The
//! pipeline a user writes and the context it runs with are in [`crate::job`].
//!
//! Nothing here knows about Redis or a database, so a pipeline runs directly in a unit test with an
//! observer that records events and an operation log in memory.

use serde::{Deserialize, Serialize};

use crate::job::BoxFuture;
use crate::{JobError, JobId, OperationId, Progress, TenantId};

/// Who one attempt runs for. Every log line and span of the attempt carries these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job.
    pub job_id: JobId,
    /// Its tenant: every read and write of the attempt is scoped to it.
    pub tenant_id: TenantId,
    /// Its kind.
    pub kind: String,
    /// The attempt being run (1-based); every record write is fenced by it.
    pub attempt: u32,
}

/// A stage event reported by a running pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StageEvent<'a> {
    /// A stage began; `progress` is the job's overall progress at that point.
    Started {
        /// The stage name.
        stage: &'a str,
        /// Overall progress.
        progress: Progress,
    },
    /// Progress inside a stage.
    Progress {
        /// The stage name.
        stage: &'a str,
        /// Overall progress.
        progress: Progress,
    },
    /// A stage finished.
    Finished {
        /// The stage name.
        stage: &'a str,
        /// Overall progress.
        progress: Progress,
    },
}

impl StageEvent<'_> {
    /// The stage this event is about.
    pub fn stage(&self) -> &str {
        match self {
            Self::Started { stage, .. } | Self::Progress { stage, .. } | Self::Finished { stage, .. } => {
                stage
            }
        }
    }

    /// The overall progress reported.
    pub fn progress(&self) -> Progress {
        match self {
            Self::Started { progress, .. }
            | Self::Progress { progress, .. }
            | Self::Finished { progress, .. } => *progress,
        }
    }
}

/// Receives stage events. Called synchronously from the pipeline; an implementation that persists
/// them hands them to a task instead of blocking.
pub trait PipelineObserver: Send + Sync {
    /// One stage event of the attempt `ctx`.
    fn on_event(&self, ctx: &JobContext, event: StageEvent<'_>);
}

/// An observer that ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl PipelineObserver for NoopObserver {
    fn on_event(&self, _ctx: &JobContext, _event: StageEvent<'_>) {}
}

/// The state of one side effect in the operation log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum OperationState {
    /// Begun by attempt `attempt`, not known to have finished: the effect may or may not have
    /// reached its receiver, so it is run again with the same operation id as its idempotency key.
    Started {
        /// The attempt that began it most recently.
        attempt: u32,
    },
    /// Finished; `result` is what the effect returned, reused by any later attempt.
    Done {
        /// The stored result.
        result: serde_json::Value,
    },
}

/// The operation log: side effects keyed by [`OperationId`], so each runs at most once per
/// operation id and a retried job reuses the stored result. Object-safe: a [`crate::job::Ctx`]
/// holds one behind an `Arc`.
pub trait OperationLog: Send + Sync {
    /// Records that attempt `ctx.attempt` is about to run `op` (step `effect` of stage `stage`),
    /// and returns the state it was in before: `None` for a first run, `Started` for a run
    /// interrupted earlier, `Done` when the effect must not run again.
    ///
    /// # Errors
    /// A retryable [`JobError`] when the log cannot be reached, or when a newer attempt of the
    /// job has begun `op` since (this attempt was taken over: it must not run the step).
    fn begin<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        stage: &'a str,
        effect: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, JobError>>;

    /// Records that `op` finished with `result` (the first finish is kept; a finish by an attempt
    /// that a newer one has since taken the operation from changes nothing and is an error).
    ///
    /// # Errors
    /// A retryable [`JobError`] when the log cannot be reached.
    fn finish<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        result: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), JobError>>;
}
