//! The recorder: the one way the executors write job records. One task takes every write —
//! starts, progress, completions, failures, retries and cancellations — in the order sent, so a
//! job's writes land in the order its executor made them: its progress (and `progress` events) no
//! later than its outcome, whatever that outcome is.
//!
//! Starts, progress and completions of whatever has queued up are written in one transaction per
//! batch (group commit; on PostgreSQL at most three multi-row statements per batch, each write on
//! its own if the batch fails — [`all_or_each`] — unless the connection failed, when every write
//! gets a retryable error at once and its executor holds its delivery until storage is back). Failures, retries and cancellations have no
//! batched form in storage: each is its own transaction, begun once the batch it arrived with has
//! committed, and run beside the next batches. An executor waits for each of its writes to be
//! committed before it goes on, so nothing is acknowledged that storage does not hold, but
//! concurrent jobs share one commit instead of paying one each.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobContext, JobId, Progress, TenantId};
use longhaul_queue::{Event, EventKind, Queue, now_ms};
use longhaul_service::batch::{Fallback, all_or_each};
use longhaul_store::{AttemptFailure, ProgressWrite, Store, StoreError, Write, WriteOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::progress::Throttle;

/// A write to a job's record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordWrite {
    /// A start or completion, written in the batch's transaction.
    Batched(Write),
    /// [`Store::fail`]: fails the job for good.
    Fail {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The attempt failed under.
        attempt: u32,
        /// The failure's class.
        class: ErrorClass,
        /// What went wrong.
        message: String,
    },
    /// [`Store::schedule_retry`]: queues the next attempt after `attempt` failed.
    Retry {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The attempt that failed.
        attempt: u32,
        /// The failure's class.
        class: ErrorClass,
        /// What went wrong.
        message: String,
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// [`Store::end_cancelled`]: ends running attempt `attempt`, whose cancel was requested, as
    /// cancelled.
    Cancelled {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The running attempt.
        attempt: u32,
    },
}

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

/// A message to the recorder.
#[derive(Debug)]
pub enum Request {
    /// A write, answered once committed.
    Write(RecordWrite, Reply),
    /// A stage event of a running attempt (persisted if the throttle lets it; never answered).
    Progress {
        /// The attempt.
        ctx: JobContext,
        /// The stage.
        stage: String,
        /// Overall progress.
        progress: Progress,
    },
}

/// Largest batch in one transaction.
const MAX_BATCH: usize = 256;

/// The recorder task. Runs until `stop`, then handles what is already queued and waits for the
/// failures, retries and cancellations it began.
pub(crate) async fn run(
    store: Store,
    queue: Queue,
    progress_interval: Duration,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stop: CancellationToken,
) {
    let mut recorder = Recorder { store, queue, progress_interval, throttle: Throttle::default() };
    let singles = TaskTracker::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            () = stop.cancelled() => {
                while let Ok(request) = rx.try_recv() {
                    batch.push(request);
                }
                recorder.write(std::mem::take(&mut batch), &singles).await;
                break;
            }
        }
        recorder.write(std::mem::take(&mut batch), &singles).await;
    }
    singles.close();
    singles.wait().await;
}

struct Recorder {
    store: Store,
    queue: Queue,
    progress_interval: Duration,
    throttle: Throttle,
}

impl Recorder {
    /// Writes one batch of requests: the batched writes and due progress in one transaction, then
    /// begins the failures, retries and cancellations.
    async fn write(&mut self, batch: Vec<Request>, singles: &TaskTracker) {
        let mut progress: Vec<(JobContext, String, Progress)> = Vec::new();
        let (mut writes, mut replies, mut later) = (Vec::new(), Vec::new(), Vec::new());
        let now = Instant::now();
        for request in batch {
            match request {
                Request::Write(write, reply) => {
                    if let Some((job, attempt)) = ended(&write) {
                        self.throttle.end(job.as_str(), attempt);
                    }
                    match write {
                        RecordWrite::Batched(write) => {
                            writes.push(write);
                            replies.push(reply);
                        }
                        single => later.push((single, reply)),
                    }
                }
                Request::Progress { ctx, stage, progress: p } => {
                    if self.throttle.due(&ctx, &stage, self.progress_interval, now) {
                        progress.push((ctx, stage, p));
                    }
                }
            }
        }
        let group = Group { store: &self.store, queue: &self.queue, progress: &progress };
        let outcomes = all_or_each(&group, &writes).await;
        for (reply, outcome) in replies.into_iter().zip(outcomes) {
            let _ = reply.send(outcome);
        }
        for (write, reply) in later {
            let store = self.store.clone();
            singles.spawn(async move {
                let _ = reply.send(single(&store, &write).await);
            });
        }
    }
}

/// The attempt whose outcome `write` is (a completion, failure, retry or cancellation), if any.
fn ended(write: &RecordWrite) -> Option<(&JobId, u32)> {
    match write {
        RecordWrite::Batched(Write::Complete { job, attempt, .. })
        | RecordWrite::Fail { job, attempt, .. }
        | RecordWrite::Retry { job, attempt, .. }
        | RecordWrite::Cancelled { job, attempt, .. } => Some((job, *attempt)),
        RecordWrite::Batched(Write::StartNext { .. }) => None,
    }
}

/// A failure, retry or cancellation, in its own transaction.
async fn single(store: &Store, write: &RecordWrite) -> Result<WriteOutcome, StoreError> {
    match write {
        RecordWrite::Batched(write) => one(store, write).await,
        RecordWrite::Fail { tenant, job, attempt, class, message } => {
            store.fail(tenant, job, AttemptFailure::new(*attempt, *class, message)).await
        }
        RecordWrite::Retry { tenant, job, attempt, class, message, at } => {
            store.schedule_retry(tenant, job, AttemptFailure::new(*attempt, *class, message), *at).await
        }
        RecordWrite::Cancelled { tenant, job, attempt } => store.end_cancelled(tenant, job, *attempt).await,
    }
}

/// A batched write on its own.
async fn one(store: &Store, write: &Write) -> Result<WriteOutcome, StoreError> {
    match store.write_many(std::slice::from_ref(write)).await {
        Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::NotFound("job"))),
        Err(e) => Err(e),
    }
}

/// One batch's starts and completions with its progress: one transaction; each write on its own
/// if that fails (progress is best effort: it is dropped).
struct Group<'a> {
    store: &'a Store,
    queue: &'a Queue,
    progress: &'a [(JobContext, String, Progress)],
}

impl Fallback<Write> for Group<'_> {
    type Item = WriteOutcome;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "job record writes"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, writes: &[Write]) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        let progress_writes: Vec<ProgressWrite<'_>> = self
            .progress
            .iter()
            .map(|(ctx, stage, p)| (&ctx.tenant_id, &ctx.job_id, ctx.attempt, stage.as_str(), *p))
            .collect();
        match self.store.write_batch(&progress_writes, writes).await {
            Ok((applied, outcomes)) => {
                // The progress events go out before any executor hears of its outcome, so a job's
                // events stay in order.
                publish_progress(self.queue, self.progress, &applied).await;
                Ok(outcomes)
            }
            Err(e) => {
                if !self.progress.is_empty() {
                    tracing::warn!(error = %longhaul_core::Report(&e), progress = self.progress.len(), "batched write failed; progress dropped");
                }
                Err(e)
            }
        }
    }

    async fn one(&self, write: &Write) -> Result<WriteOutcome, StoreError> {
        one(self.store, write).await
    }

    /// A lone write is answered with the batch's error only when nothing else was in the batch
    /// (progress could have been what failed it).
    fn shared_blame(&self, writes: &[Write]) -> bool {
        writes.len() > 1 || !self.progress.is_empty()
    }
}

/// Emits the `progress` events of the applied progress writes, in one round trip.
async fn publish_progress(queue: &Queue, progress: &[(JobContext, String, Progress)], applied: &[bool]) {
    let events: Vec<Event> = progress
        .iter()
        .zip(applied)
        .filter(|(_, applied)| **applied)
        .map(|((ctx, stage, progress), _)| {
            let mut event = Event::new(
                EventKind::Progress,
                ctx.job_id.as_str(),
                ctx.tenant_id.as_str(),
                ctx.attempt,
                now_ms(),
            );
            event.stage = Some(stage.clone());
            event.progress = Some(progress.percent());
            event
        })
        .collect();
    if events.is_empty() {
        return;
    }
    if let Err(e) = queue.publish_many(&events).await {
        tracing::warn!(error = %longhaul_core::Report(&e), events = events.len(), "cannot publish progress events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_core::{JobKey, Lease};
    use serde_json::Value;

    #[test]
    fn every_outcome_ends_its_attempt_and_a_start_does_not() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let job = JobId::derive(&tenant, "test", &JobKey::Derived("T-1".into()));
        let (t, j) = (tenant.clone(), job.clone());
        let outcomes = [
            RecordWrite::Batched(Write::Complete {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                output: Value::Null,
            }),
            RecordWrite::Fail {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                class: ErrorClass::Invalid,
                message: "bad".into(),
            },
            RecordWrite::Retry {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                class: ErrorClass::Retryable,
                message: "later".into(),
                at: Utc::now(),
            },
            RecordWrite::Cancelled { tenant: t.clone(), job: j.clone(), attempt: 2 },
        ];
        for write in &outcomes {
            assert_eq!(ended(write), Some((&job, 2)), "{write:?}");
        }
        let start = RecordWrite::Batched(Write::StartNext {
            tenant: t,
            job: j,
            lease: Lease { entry: "1-0".into(), delivery: 1 },
            entry_attempt: 1,
        });
        assert_eq!(ended(&start), None);
    }
}
