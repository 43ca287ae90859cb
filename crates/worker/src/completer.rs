//! The completer: turns executors' outcomes into queue operations, in batches. Finishing a batch
//! also takes as many new entries as it frees (one round trip per batch under load), on the freed
//! slots, and hands them to the dispatcher. A failed queue call is logged and the entries are left
//! pending: storage already holds the outcome, so the redelivery that follows is acknowledged
//! without running again.

use std::sync::Arc;

use longhaul_queue::{Delivery, Finish};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatcher, Slot, Slots};
use crate::executor::Outcome;
use crate::shared::Shared;

/// An executor's result, with the capacity it held.
#[derive(Debug)]
pub(crate) struct Done {
    /// The delivery.
    pub delivery: Delivery,
    /// What to do with its entry.
    pub outcome: Outcome,
    /// Freed (or handed to a new entry) once the entry is handled.
    pub slot: Slot,
}

/// The completer task. Runs until `stop`, then handles what is already queued.
pub(crate) async fn run(
    shared: Arc<Shared>,
    dispatcher: Dispatcher,
    mut rx: mpsc::UnboundedReceiver<Done>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(shared.settings.concurrency.max(1));
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, shared.settings.concurrency.max(1)) => if n == 0 { return },
            () = stop.cancelled() => {
                while let Ok(done) = rx.try_recv() {
                    batch.push(done);
                }
                handle(&shared, &dispatcher, std::mem::take(&mut batch)).await;
                return;
            }
        }
        handle(&shared, &dispatcher, std::mem::take(&mut batch)).await;
    }
}

async fn handle(shared: &Shared, dispatcher: &Dispatcher, batch: Vec<Done>) {
    let mut finishes = Vec::new();
    for done in batch {
        match done.outcome {
            Outcome::Leave => shared.inflight_remove(&done.delivery),
            Outcome::Defer => {
                if let Err(e) = shared.queue.defer(&shared.settings.consumer, &done.delivery).await {
                    tracing::warn!(job_id = %done.delivery.entry.job_id, error = %longhaul_core::Report(&e),
                        "cannot put a paused entry back to wait; it stays pending and will be reclaimed");
                }
                shared.inflight_remove(&done.delivery);
            }
            Outcome::Retry { next, due_ms, event } => {
                if let Err(e) = shared.queue.retry(&done.delivery, &next, due_ms, &event).await {
                    tracing::warn!(job_id = %done.delivery.entry.job_id, error = %longhaul_core::Report(&e),
                        "cannot schedule the retry in Redis; the entry stays pending and will be reclaimed");
                }
                shared.inflight_remove(&done.delivery);
            }
            Outcome::Finish { event, release } => finishes.push((done.delivery, event, release, done.slot)),
        }
    }
    if finishes.is_empty() {
        return;
    }
    let items: Vec<Finish<'_>> = finishes
        .iter()
        .map(|(delivery, event, release, _)| Finish { delivery, event: event.as_ref(), release: *release })
        .collect();
    let take = dispatcher.refill(items.len());
    let result = shared.queue.finish_batch(&items, &shared.settings.consumer, take).await;
    drop(items);
    // Places freed in tenants' active sets and in the backlog window: let waiting entries in.
    shared.admit_wake.notify_one();
    let mut slots = Slots::default();
    for (delivery, _, _, slot) in finishes {
        shared.inflight_remove(&delivery);
        slots.push(slot);
    }
    match result {
        Ok((_, next)) => {
            dispatcher.start(next.into_iter().map(|d| (d, false)).collect(), &mut slots).await;
        }
        Err(e) => tracing::warn!(error = %longhaul_core::Report(&e),
            "cannot acknowledge finished entries; they stay pending and are acknowledged when redelivered"),
    }
}
