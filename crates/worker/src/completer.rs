//! The completer: turns executors' outcomes into queue operations, in batches. Finishing a batch
//! also takes as many new entries as it frees (one round trip per batch under load). A failed queue
//! call is logged and the entries are left pending: storage already holds the outcome, so the
//! redelivery that follows is acknowledged without running again.

use std::sync::Arc;

use longhaul_core::Pipeline;
use longhaul_queue::{Delivery, Finish};
use tokio::sync::{OwnedSemaphorePermit, mpsc};
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::executor::Outcome;

/// An executor's result, with the capacity it held.
#[derive(Debug)]
pub struct Done {
    /// The delivery.
    pub delivery: Delivery,
    /// What to do with its entry.
    pub outcome: Outcome,
    /// Released once the entry is handled.
    pub permit: OwnedSemaphorePermit,
}

/// The completer task. Runs until `stop`, then handles what is already queued.
pub(crate) async fn run<P: Pipeline + 'static>(
    shared: Arc<Shared<P>>,
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
                handle(&shared, std::mem::take(&mut batch)).await;
                return;
            }
        }
        handle(&shared, std::mem::take(&mut batch)).await;
    }
}

async fn handle<P: Pipeline + 'static>(shared: &Arc<Shared<P>>, batch: Vec<Done>) {
    let mut finishes = Vec::new();
    for done in batch {
        match done.outcome {
            Outcome::Leave => shared.inflight_remove(&done.delivery),
            Outcome::Retry { next, due_ms, event } => {
                if let Err(e) = shared.queue.retry(&done.delivery, &next, due_ms, &event).await {
                    tracing::warn!(job_id = %done.delivery.entry.job_id, error = %e,
                        "cannot schedule the retry in Redis; the entry stays pending and will be reclaimed");
                }
                shared.inflight_remove(&done.delivery);
            }
            Outcome::Finish { event, release } => finishes.push((done.delivery, event, release, done.permit)),
        }
    }
    if finishes.is_empty() {
        return;
    }
    let items: Vec<Finish<'_>> = finishes
        .iter()
        .map(|(delivery, event, release, _)| Finish { delivery, event: event.as_ref(), release: *release })
        .collect();
    // While a reclaim is due, freed capacity goes back to the fetcher, which reclaims first.
    let take =
        if shared.stopping.is_cancelled() || shared.reclaim_due.load(std::sync::atomic::Ordering::Acquire) {
            0
        } else {
            items.len()
        };
    let result = shared.queue.finish_batch(&items, &shared.settings.consumer, take).await;
    drop(items);
    let mut permits = Vec::with_capacity(finishes.len());
    for (delivery, _, _, permit) in finishes {
        shared.inflight_remove(&delivery);
        permits.push(permit);
    }
    match result {
        Ok((_, next)) if shared.stopping.is_cancelled() => {
            // Taken before shutdown began, answered after: nobody would run them.
            let ids = next.into_iter().map(|d| d.id).collect();
            crate::hand_back(shared, ids, std::time::Duration::ZERO).await;
        }
        Ok((_, next)) => {
            for delivery in next {
                match permits.pop() {
                    Some(permit) => shared.spawn_executor(delivery, permit, false),
                    None => break,
                }
            }
        }
        Err(e) => tracing::warn!(error = %e,
            "cannot acknowledge finished entries; they stay pending and are acknowledged when redelivered"),
    }
}
