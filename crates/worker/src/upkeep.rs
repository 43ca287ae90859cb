//! The worker's background upkeep, each a task: the **heartbeat** keeps in-flight entries leased
//! (and abandons runs whose entries another worker took over), and asks storage which of the jobs
//! running here have a cancel requested (and stops them); the **promoter** moves due retries back
//! into their flows, the **admitter** moves waiting entries into the stream through admission,
//! and the **reclaim ticker** marks a reclaim due every `reclaim_every` and hands
//! back entries this consumer owns but is not running.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// How often, at most, the heartbeat warns that storage cannot say which jobs have a cancel
/// requested (it asks every tick; the rest go to the debug log).
const CANCEL_WARN_EVERY: Duration = Duration::from_secs(30);

/// Every `heartbeat`: extends the lease of every entry running here, and — in the same tick, one
/// query — asks storage which of their jobs have a cancel requested, and stops those runs (their
/// executors end the jobs as cancelled). The query is bounded by the heartbeat interval and runs
/// beside the Redis call, so a slow or unreachable database never delays a lease; when it fails,
/// nothing is cancelled and the next tick asks again.
pub(crate) async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(shared.settings.heartbeat);
    let mut next_cancel_warning = Instant::now();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ids = shared.inflight_ids();
        if ids.is_empty() {
            continue;
        }
        let jobs = shared.inflight_jobs();
        let asked = tokio::time::timeout(shared.settings.heartbeat, shared.store.cancel_requested(&jobs));
        let (leases, cancels) =
            tokio::join!(shared.queue.heartbeat_owners(&shared.settings.consumer, &ids), asked);
        match leases {
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
        // After the leases: a run another worker took over is forgotten here, and its new owner
        // ends the job.
        let error = match cancels {
            Ok(Ok(requested)) => {
                if !requested.is_empty() {
                    let told = shared.cancel_requested(&requested);
                    if told > 0 {
                        tracing::info!(jobs = ?requested, "cancel requested: stopping these jobs");
                    }
                }
                continue;
            }
            Ok(Err(e)) => longhaul_core::Report(&e).to_string(),
            Err(_) => format!("no answer within {:?}", shared.settings.heartbeat),
        };
        if Instant::now() >= next_cancel_warning {
            tracing::warn!(%error, "cannot ask storage for cancel requests; asking again next tick");
            next_cancel_warning = Instant::now() + CANCEL_WARN_EVERY;
        } else {
            tracing::debug!(%error, "cannot ask storage for cancel requests; asking again next tick");
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

/// Entries one admission call moves at most.
const ADMIT_BATCH: usize = 512;

/// The admitter's pause after admitting some entries, and its first pause when entries wait but
/// none could be admitted.
const ADMIT_SOON: Duration = Duration::from_millis(10);

/// The admitter's longest pause while entries wait that cannot be admitted.
const ADMIT_IDLE_MAX: Duration = Duration::from_millis(500);

/// The admitter's pause while nothing waits (an enqueue then goes straight into the stream).
const ADMIT_IDLE: Duration = Duration::from_millis(50);

/// How often the active sets are checked for members whose entries are gone.
const HEAL_EVERY: Duration = Duration::from_secs(30);

/// Moves waiting entries into the stream through the queue's admission (fair shares per tenant,
/// priorities, caps, rate limits, pauses) as the backlog allows: again at once after a full batch;
/// soon after admitting some; when entries wait but none could be admitted (caps, rates, pauses),
/// after a delay that doubles up to `ADMIT_IDLE_MAX` — or as soon as this lane finishes entries,
/// which frees places; when nothing waits, every `ADMIT_IDLE`. Every `HEAL_EVERY`, drops
/// active-set members whose entries are gone (so a lost finish never holds a cap) and re-rings
/// flows that lost their place.
pub(crate) async fn admitter(shared: Arc<Shared>, stop: CancellationToken) {
    let mut next_heal = Instant::now() + HEAL_EVERY;
    let mut blocked = ADMIT_SOON;
    loop {
        let wait = match shared.queue.admit(ADMIT_BATCH).await {
            Ok(a) if a.admitted as usize >= ADMIT_BATCH => Duration::ZERO,
            Ok(a) if a.admitted > 0 => {
                blocked = ADMIT_SOON;
                ADMIT_SOON
            }
            Ok(a) if a.waiting > 0 => {
                let wait = blocked;
                blocked = (blocked * 2).min(ADMIT_IDLE_MAX);
                wait
            }
            Ok(_) => {
                blocked = ADMIT_SOON;
                ADMIT_IDLE
            }
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot admit waiting entries in Redis");
                Duration::from_secs(1)
            }
        };
        if Instant::now() >= next_heal {
            next_heal = Instant::now() + HEAL_EVERY;
            match shared.queue.heal(1000).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    repaired = n,
                    "repaired admission state: active-set members whose entries were gone, or flows out of their ring"
                ),
                Err(e) => {
                    tracing::debug!(error = %longhaul_core::Report(&e), "cannot check the admission state")
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = shared.admit_wake.notified(), if !wait.is_zero() => {}
        }
    }
}
