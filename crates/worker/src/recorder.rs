//! The recorder: one task writes what the executors did — starts, progress, completions — in one
//! transaction per batch of whatever has queued up (group commit; on PostgreSQL at most three
//! multi-row statements per batch). An executor waits for its start or completion to be committed
//! before it goes on, so nothing is acknowledged that storage does not hold, but concurrent jobs
//! share one commit instead of paying one each. Requests are handled in the order sent, so a job's
//! progress is written (and its `progress` events emitted) no later than its completion.

use std::sync::Arc;
use std::time::Instant;

use longhaul_core::{JobContext, Pipeline, Progress};
use longhaul_queue::{Event, EventKind, now_ms};
use longhaul_store::{ProgressWrite, StoreError, Write, WriteOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::progress::Throttle;

/// A message to the recorder.
#[derive(Debug)]
pub enum Request {
    /// A start or completion, answered once committed.
    Write(Write, oneshot::Sender<Result<WriteOutcome, StoreError>>),
    /// A stage event of a running attempt (persisted if the throttle lets it; never answered).
    Progress {
        /// The attempt.
        ctx: JobContext,
        /// The stage.
        stage: String,
        /// Overall progress.
        progress: Progress,
    },
    /// Answered once everything sent before has been written.
    Flush(oneshot::Sender<()>),
}

/// Largest batch in one transaction.
const MAX_BATCH: usize = 256;

/// The recorder task. Runs until `stop`, then handles what is already queued.
pub(crate) async fn run<P: Pipeline + 'static>(
    shared: Arc<Shared<P>>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut throttle = Throttle::default();
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { return },
            () = stop.cancelled() => {
                while let Ok(request) = rx.try_recv() {
                    batch.push(request);
                }
                write(&shared, std::mem::take(&mut batch), &mut throttle).await;
                return;
            }
        }
        write(&shared, std::mem::take(&mut batch), &mut throttle).await;
    }
}

/// Waits until every request sent so far is written.
pub(crate) async fn flush<P>(shared: &Shared<P>) {
    let (tx, rx) = oneshot::channel();
    if shared.recorder_tx.send(Request::Flush(tx)).is_ok() {
        let _ = rx.await;
    }
}

async fn write<P>(shared: &Shared<P>, batch: Vec<Request>, throttle: &mut Throttle) {
    let mut progress: Vec<(JobContext, String, Progress)> = Vec::new();
    let (mut writes, mut replies, mut flushes) = (Vec::new(), Vec::new(), Vec::new());
    let now = Instant::now();
    for request in batch {
        match request {
            Request::Write(write, reply) => {
                writes.push(write);
                replies.push(reply);
            }
            Request::Progress { ctx, stage, progress: p } => {
                if throttle.due(&ctx, &stage, shared.settings.progress_interval, now) {
                    progress.push((ctx, stage, p));
                }
            }
            Request::Flush(done) => flushes.push(done),
        }
    }
    let progress_writes: Vec<ProgressWrite<'_>> = progress
        .iter()
        .map(|(ctx, stage, p)| (&ctx.tenant_id, &ctx.job_id, ctx.attempt, stage.as_str(), *p))
        .collect();
    match shared.store.write_batch(&progress_writes, &writes).await {
        Ok((applied, outcomes)) => {
            // The progress events go out before any executor hears of its completion, so a job's
            // events stay in order.
            publish_progress(shared, &progress, &applied).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(e) => {
            // Progress is best effort: it is dropped. One bad write must not fail the others:
            // write them one by one.
            tracing::warn!(error = %e, writes = writes.len(), progress = progress.len(),
                "batched write failed; progress dropped, writes retried one by one");
            // A lone write is answered with the error only when nothing else was in the batch
            // (progress could have been what failed it).
            if writes.len() == 1 && progress.is_empty() {
                if let Some(reply) = replies.pop() {
                    let _ = reply.send(Err(e));
                }
            } else {
                for (write, reply) in writes.into_iter().zip(replies) {
                    let result = match shared.store.write_many(std::slice::from_ref(&write)).await {
                        Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::NotFound("job"))),
                        Err(e) => Err(e),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    }
    for done in flushes {
        let _ = done.send(());
    }
}

/// Emits the `progress` events of the applied progress writes, in one round trip.
async fn publish_progress<P>(
    shared: &Shared<P>,
    progress: &[(JobContext, String, Progress)],
    applied: &[bool],
) {
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
    if let Err(e) = shared.queue.publish_many(&events).await {
        tracing::warn!(error = %e, events = events.len(), "cannot publish progress events");
    }
}
