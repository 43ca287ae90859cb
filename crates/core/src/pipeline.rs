//! The `Pipeline` and `PipelineObserver` traits, and the operation-log trait through which a
//! pipeline performs side effects.
//!
//! A pipeline is plain async code: it receives a [`JobContext`] and an observer, and returns an
//! output or a classified [`JobError`]. Nothing here knows about Redis or a database, so a pipeline
//! runs directly in a unit test with an observer that records events.

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::{JobError, JobId, OperationId, Progress, TenantId, TicketId};

/// What one attempt of one job runs with. Every log line and span of the attempt carries these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobContext {
    /// The job.
    pub job_id: JobId,
    /// Its tenant: every read and write of the attempt is scoped to it.
    pub tenant_id: TenantId,
    /// The ticket to triage.
    pub ticket_id: TicketId,
    /// The ticket revision requested.
    pub ticket_revision: u64,
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

/// A multi-stage job.
pub trait Pipeline: Send + Sync {
    /// What a successful run produces; stored as the record's `output`.
    type Output: Serialize + Send;

    /// Runs one attempt.
    ///
    /// # Errors
    /// A [`JobError`] whose case decides whether the job is retried, failed or alerted on.
    fn run(
        &self,
        ctx: &JobContext,
        observer: &dyn PipelineObserver,
    ) -> impl Future<Output = Result<Self::Output, JobError>> + Send;
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
/// operation id and a retried job reuses the stored result.
pub trait OperationLog: Send + Sync {
    /// Records that attempt `ctx.attempt` is about to run `op`, and returns the state it was in
    /// before: `None` for a first run, `Started` for a run interrupted earlier, `Done` when the
    /// effect must not run again.
    ///
    /// # Errors
    /// A retryable [`JobError`] when the log cannot be reached.
    fn begin(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> impl Future<Output = Result<Option<OperationState>, JobError>> + Send;

    /// Records that `op` finished with `result`.
    ///
    /// # Errors
    /// A retryable [`JobError`] when the log cannot be reached.
    fn finish(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        result: &serde_json::Value,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// A ticket as a pipeline sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketView {
    /// The owning tenant, as stored.
    pub tenant_id: TenantId,
    /// The ticket.
    pub ticket_id: TicketId,
    /// Its current revision.
    pub revision: u64,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// The owning tenant's webhook URL when the ticket was loaded, if one is configured: where
    /// results are delivered. Read with the ticket, so a job needs one read for both.
    #[serde(default)]
    pub webhook_url: Option<String>,
}

/// How a pipeline reaches tickets (with their tenant's webhook) in application storage. Every
/// call is scoped by tenant.
pub trait TicketStore: Send + Sync {
    /// Loads ticket `ticket` of `tenant` with the tenant's webhook URL; `None` when it does not
    /// exist for that tenant.
    ///
    /// # Errors
    /// A retryable [`JobError`] when storage cannot be reached.
    fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> impl Future<Output = Result<Option<TicketView>, JobError>> + Send;

    /// Writes the triage result onto the ticket (its `triage` field) at most once per operation id,
    /// in one transaction with the operation's record (kept under `stage` and `effect`, as
    /// [`OperationLog::begin`] keeps it): a local effect needs no separate begin/finish. Returns the
    /// stored result (the first write's, on a repeat).
    ///
    /// The result carries the triage the first write was about, so a repeat learns what was
    /// applied: `{"written": true, "triage": …}`. A stored triage is never replaced by one of an
    /// older ticket revision (the triage's `revision` field): then the ticket is left alone, the
    /// operation is recorded as done all the same, and the result is
    /// `{"written": false, "superseded_by": <stored revision>, "triage": …}`.
    ///
    /// # Errors
    /// A retryable [`JobError`] when storage cannot be reached; an invalid one when the ticket is gone.
    fn write_triage(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send;
}

/// Runs side effect `effect` of stage `stage` at most once per operation id: if the operation log
/// says it is done, returns the stored result without running `effect`; otherwise runs it with the
/// operation id (to pass on as the receiver's idempotency key) and records its result.
///
/// # Errors
/// The effect's [`JobError`], or the log's.
pub async fn run_effect<L, F, Fut>(
    log: &L,
    ctx: &JobContext,
    stage: &str,
    effect: &str,
    run: F,
) -> Result<serde_json::Value, JobError>
where
    L: OperationLog + ?Sized,
    F: FnOnce(OperationId) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, JobError>>,
{
    let op = OperationId::derive(&ctx.job_id, stage, effect);
    if let Some(OperationState::Done { result }) = log.begin(ctx, &op, stage, effect).await? {
        return Ok(result);
    }
    let result = run(op.clone()).await?;
    log.finish(ctx, &op, &result).await?;
    Ok(result)
}

impl<T: TicketStore + ?Sized> TicketStore for &T {
    fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> impl Future<Output = Result<Option<TicketView>, JobError>> + Send {
        (**self).load_ticket(tenant, ticket)
    }

    fn write_triage(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &serde_json::Value,
    ) -> impl Future<Output = Result<serde_json::Value, JobError>> + Send {
        (**self).write_triage(ctx, op, stage, effect, triage)
    }
}

impl<T: OperationLog + ?Sized> OperationLog for &T {
    fn begin(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> impl Future<Output = Result<Option<OperationState>, JobError>> + Send {
        (**self).begin(ctx, op, stage, effect)
    }

    fn finish(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        result: &serde_json::Value,
    ) -> impl Future<Output = Result<(), JobError>> + Send {
        (**self).finish(ctx, op, result)
    }
}
