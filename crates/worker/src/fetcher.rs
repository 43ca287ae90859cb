//! The fetcher: waits while its queue is paused, reserves all free capacity, reclaims entries whose workers died (first, when a
//! reclaim is due) and reads new ones with the rest, and hands what it took to the dispatcher.
//! Redis outages are waited out with a backoff.

use std::sync::atomic::Ordering;
use std::time::Duration;

use longhaul_queue::Consumer;
use tokio_util::sync::CancellationToken;

use crate::dispatch::{Dispatcher, Slots};
use crate::shared::Shared;

/// Takes entries until `shutdown` is cancelled.
pub(crate) async fn run(
    shared: &Shared,
    dispatcher: &Dispatcher,
    mut consumer: Consumer,
    shutdown: &CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        // A paused queue (or one whose control was not read yet) is not read at all.
        if !shared.queue_runs() {
            if !shared.wait_until_running(shutdown).await {
                break;
            }
            tracing::info!(queue = shared.queue.name(), "queue running: taking entries");
        }
        let Some(mut slots) = dispatcher.reserve(shutdown).await else { break };
        if shared.may_reclaim() {
            if !reclaim(shared, dispatcher, &mut consumer, &mut slots).await {
                break;
            }
            if slots.is_empty() {
                continue;
            }
        }
        // Not cut short by shutdown: Redis may hand this consumer an entry even as the read is
        // dropped, and nobody would run it until its lease ran out. What arrives while stopping is
        // handed back instead.
        match consumer.fetch(slots.len(), shared.settings.block).await {
            Ok(deliveries) => {
                backoff = Duration::from_millis(100);
                if !dispatcher.start(deliveries.into_iter().map(|d| (d, false)).collect(), &mut slots).await {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), retry_in = ?backoff, "cannot read the queue; retrying");
                shared.redis_trouble();
                drop(slots);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Takes over abandoned entries, at most one per reserved slot, and starts them at once. `false`
/// when the worker began stopping meanwhile (they were handed back).
async fn reclaim(
    shared: &Shared,
    dispatcher: &Dispatcher,
    consumer: &mut Consumer,
    slots: &mut Slots,
) -> bool {
    match consumer.reclaim(slots.len()).await {
        Ok(r) => {
            if r.scan_done {
                shared.reclaim_due.store(false, Ordering::Release);
            }
            if !r.deleted.is_empty() {
                tracing::warn!(entries = ?r.deleted, "pending entries were deleted from the stream; the reconciler restores their jobs");
            }
            let taken: Vec<_> = r
                .deliveries
                .into_iter()
                .map(|d| (d, false))
                .chain(r.stalled.into_iter().map(|d| (d, true)))
                .collect();
            for (d, stalled) in &taken {
                if *stalled {
                    tracing::warn!(job_id = %d.entry.job_id, deliveries = d.deliveries, "entry stalled too often");
                } else {
                    tracing::info!(job_id = %d.entry.job_id, deliveries = d.deliveries, "reclaimed an abandoned entry");
                }
            }
            dispatcher.start(taken, slots).await
        }
        Err(e) => {
            tracing::warn!(error = %longhaul_core::Report(&e), "cannot reclaim abandoned entries");
            shared.reclaim_due.store(false, Ordering::Release);
            shared.redis_trouble();
            true
        }
    }
}
