//! The worker's background upkeep, each a task: the **heartbeat** keeps in-flight entries leased
//! (and cancels runs whose entries another worker took over), the **promoter** moves due retries
//! back into the stream, and the **reclaim ticker** marks a reclaim due every `reclaim_every` and
//! hands back entries this consumer owns but is not running.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// Every `heartbeat`: extends the lease of every entry running here.
pub(crate) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.settings.heartbeat);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ids = shared.inflight_ids();
        if ids.is_empty() {
            continue;
        }
        match shared.queue.heartbeat_owners(&shared.settings.consumer, &ids).await {
            Ok(lost) => {
                if !lost.taken.is_empty() {
                    // Its new owner runs the job (a newer delivery): stop ours, which would only
                    // repeat effects and have its writes refused.
                    tracing::warn!(entries = ?lost.taken, "lease lost: another worker took these entries over; abandoning them here");
                    shared.superseded(&lost.taken);
                }
                if !lost.gone.is_empty() {
                    // Nobody else has them (Redis lost them, or they were acknowledged): the runs
                    // go on and record their outcomes; the reconciler restores lost entries.
                    tracing::warn!(entries = ?lost.gone, "entries no longer pending in Redis");
                }
            }
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "heartbeat failed");
                shared.redis_trouble();
            }
        }
    }
}

/// Moves due retries from the delayed set into the stream, as they fall due.
pub(crate) async fn promoter(shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let now = longhaul_queue::now_ms();
        let wait = match shared.queue.promote_due(now, 500).await {
            Ok(p) if p.count >= 500 => Duration::ZERO,
            Ok(p) => p
                .next_due_ms
                .map_or(Duration::from_secs(1), |due| Duration::from_millis(due.saturating_sub(now))),
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot promote due retries");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
        }
    }
}

/// Every `reclaim_every`: marks a reclaim due (the completer then stops handing freed capacity to
/// new entries until the fetcher has reclaimed), and hands back entries this consumer owns without
/// running them — stranded when a reply carrying them was lost (a read cut short, a call a cluster
/// client re-sent). Such an entry is idle: in-flight entries are in the in-flight map, and new ones
/// are added there the moment they arrive.
pub(crate) async fn reclaim_ticker(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.settings.reclaim_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stranded_after = (shared.queue.config().lease / 2).max(Duration::from_secs(1));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        shared.reclaim_due.store(true, Ordering::Release);
        let inflight: HashSet<String> = shared.inflight_ids().into_iter().collect();
        match shared.queue.idle_owned(&shared.settings.consumer, stranded_after, 100).await {
            Ok(ids) => {
                let stranded: Vec<String> = ids.into_iter().filter(|id| !inflight.contains(id)).collect();
                shared.hand_back(stranded, stranded_after).await;
            }
            Err(e) => {
                tracing::debug!(error = %longhaul_core::Report(&e), "cannot list this consumer's idle entries")
            }
        }
    }
}
