//! Progress: the pipeline observer hands stage events to one writer task, which persists them
//! (throttled: a stage's first event always, then at most one per `progress_interval` per job)
//! and emits `progress` events. Writes are fenced by attempt, so a late write after completion
//! changes nothing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use longhaul_core::{JobContext, Pipeline, PipelineObserver, Progress, StageEvent};
use longhaul_queue::{Event, EventKind, now_ms};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// A message to the progress writer.
#[derive(Debug)]
pub enum Message {
    /// A stage event of a running attempt.
    Update {
        /// The attempt.
        ctx: JobContext,
        /// The stage.
        stage: String,
        /// Overall progress.
        progress: Progress,
    },
    /// Answer once everything sent before has been written.
    Flush(oneshot::Sender<()>),
}

/// The observer the executor gives the pipeline.
pub struct Observer {
    tx: mpsc::UnboundedSender<Message>,
}

impl Observer {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Message>) -> Self {
        Self { tx }
    }
}

impl PipelineObserver for Observer {
    fn on_event(&self, ctx: &JobContext, event: StageEvent<'_>) {
        let _ = self.tx.send(Message::Update {
            ctx: ctx.clone(),
            stage: event.stage().to_owned(),
            progress: event.progress(),
        });
    }
}

/// Waits until every progress update sent so far is written.
pub(crate) async fn flush<P>(shared: &Shared<P>) {
    let (tx, rx) = oneshot::channel();
    if shared.progress_tx.send(Message::Flush(tx)).is_ok() {
        let _ = rx.await;
    }
}

/// The writer task.
pub(crate) async fn run<P: Pipeline + 'static>(
    shared: Arc<Shared<P>>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    stop: CancellationToken,
) {
    let mut last: HashMap<(String, u32), (String, Instant)> = HashMap::new();
    let mut batch = Vec::with_capacity(256);
    let mut due: Vec<(JobContext, String, Progress)> = Vec::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            n = rx.recv_many(&mut batch, 256) => if n == 0 { return },
        }
        for message in batch.drain(..) {
            match message {
                Message::Flush(done) => {
                    // Everything sent before the flush is written before it is answered.
                    write(&shared, std::mem::take(&mut due)).await;
                    let _ = done.send(());
                }
                Message::Update { ctx, stage, progress } => {
                    let key = (ctx.job_id.to_string(), ctx.attempt);
                    let is_due = match last.get(&key) {
                        Some((s, at)) => *s != stage || at.elapsed() >= shared.settings.progress_interval,
                        None => true,
                    };
                    if is_due {
                        last.insert(key, (stage.clone(), Instant::now()));
                        due.push((ctx, stage, progress));
                    }
                }
            }
        }
        write(&shared, std::mem::take(&mut due)).await;
        if last.len() > 10_000 {
            last.retain(|_, (_, at)| at.elapsed().as_secs() < 600);
        }
    }
}

/// Writes a batch of progress updates in one transaction, then publishes their events in one
/// round trip. Progress is best effort: a failure is logged, and the job's outcome still lands.
async fn write<P>(shared: &Shared<P>, updates: Vec<(JobContext, String, Progress)>) {
    if updates.is_empty() {
        return;
    }
    let writes: Vec<_> = updates
        .iter()
        .map(|(ctx, stage, p)| (&ctx.tenant_id, &ctx.job_id, ctx.attempt, stage.as_str(), *p))
        .collect();
    let applied = match shared.store.record_progress_many(&writes).await {
        Ok(applied) => applied,
        Err(e) => {
            tracing::warn!(error = %e, updates = updates.len(), "cannot record progress");
            return;
        }
    };
    let events: Vec<Event> = updates
        .iter()
        .zip(applied)
        .filter(|(_, applied)| *applied)
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
    if let Err(e) = shared.queue.publish_many(&events).await {
        tracing::warn!(error = %e, events = events.len(), "cannot publish progress events");
    }
}
