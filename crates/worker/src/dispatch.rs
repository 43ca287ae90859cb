//! The dispatcher: owns the worker's capacity (one [`Slot`] per job run at once) and starts every
//! executor. The fetcher and the completer take entries from Redis only with slots reserved here
//! first, and hand whatever arrives straight back to [`Dispatcher::start`], which starts each
//! delivery at once on a slot of its own (so a worker never holds an entry it does not run and
//! heart-beat), refuses an entry already running here, and hands back what arrives while the
//! worker is stopping, and puts a fresh entry of a paused queue or kind back to wait in its flow.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use longhaul_queue::Delivery;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::completer::Done;
use crate::executor::{Attempt, Outcome};
use crate::shared::Shared;

/// Room for one job: held by its executor until the completer has handled its entry; dropping it
/// frees the room.
#[derive(Debug)]
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Slots reserved for entries about to be taken: one per entry.
#[derive(Debug, Default)]
pub(crate) struct Slots(Vec<Slot>);

impl Slots {
    /// How many entries may be taken.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no entry may be taken.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds a slot (freed by a finished entry).
    pub(crate) fn push(&mut self, slot: Slot) {
        self.0.push(slot);
    }
}

/// Starts executors on reserved capacity. Cheap to clone.
pub(crate) struct Dispatcher {
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
}

impl Clone for Dispatcher {
    fn clone(&self) -> Self {
        Self { shared: self.shared.clone(), permits: self.permits.clone() }
    }
}

impl Dispatcher {
    /// A dispatcher running at most `settings.concurrency` jobs at once.
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let permits = Arc::new(Semaphore::new(shared.settings.concurrency.max(1)));
        Self { shared, permits }
    }

    /// Waits for a free slot, then reserves every free one — all free capacity at once, so every
    /// entry taken with them starts (and is heart-beaten) at once, none waits for a slot while its
    /// lease runs out. `None` once `stop` is cancelled.
    pub(crate) async fn reserve(&self, stop: &CancellationToken) -> Option<Slots> {
        let first = tokio::select! {
            biased;
            () = stop.cancelled() => return None,
            permit = self.permits.clone().acquire_owned() => permit.ok()?,
        };
        let mut slots = Slots(vec![Slot { _permit: first }]);
        while let Ok(p) = self.permits.clone().try_acquire_owned() {
            slots.push(Slot { _permit: p });
        }
        Some(slots)
    }

    /// How many of `freed` slots may take new entries at once: none while stopping, or while a
    /// reclaim is due (freed capacity then goes back to the fetcher, which reclaims first).
    pub(crate) fn refill(&self, freed: usize) -> usize {
        if self.shared.stopping.is_cancelled()
            || self.shared.reclaim_due.load(Ordering::Acquire)
            || !self.shared.queue_runs()
        {
            0
        } else {
            freed
        }
    }

    /// Starts one executor per delivery (`true`: it stalled; fail it unrun), each on a slot taken
    /// from `slots`. While the worker is stopping, hands them back instead (taken before shutdown
    /// began, answered after: nobody would run them) and returns `false` — all but those whose
    /// entry runs here already (a reclaim can return this worker's own running entry): handing
    /// one of those back would make it look abandoned to every other worker while it still runs.
    pub(crate) async fn start(&self, deliveries: Vec<(Delivery, bool)>, slots: &mut Slots) -> bool {
        if self.shared.stopping.is_cancelled() {
            let running = self.shared.inflight_ids();
            let ids: Vec<String> =
                deliveries.into_iter().map(|(d, _)| d.id).filter(|id| !running.contains(id)).collect();
            if !ids.is_empty() {
                self.shared.hand_back(ids, Duration::ZERO).await;
            }
            return false;
        }
        let mut extra = Vec::new();
        let mut held = Vec::new();
        for (delivery, stalled) in deliveries {
            // A fresh entry of a paused queue or kind waits again in its flow, its attempt and
            // delivery unspent. One delivered before (taken over from a worker that died while
            // running it) is finished, as pausing lets running jobs finish.
            if !stalled && delivery.deliveries <= 1 && self.shared.held(delivery.entry.kind.as_deref()) {
                held.push(delivery);
                continue;
            }
            match slots.0.pop() {
                Some(slot) => self.spawn(delivery, slot, stalled),
                None => extra.push(delivery.id),
            }
        }
        // Back to the front of their flows in reverse, so entries of one flow keep their order.
        for delivery in held.into_iter().rev() {
            match self.shared.queue.defer(&self.shared.settings.consumer, &delivery).await {
                Ok(_) => tracing::debug!(job_id = %delivery.entry.job_id, "paused: the entry waits again"),
                Err(e) => {
                    tracing::warn!(job_id = %delivery.entry.job_id, error = %longhaul_core::Report(&e), "cannot put a paused entry back to wait; handing it back");
                    extra.push(delivery.id);
                }
            }
        }
        if !extra.is_empty() {
            // Redis returns no more entries than asked for; should it, they are not held unrun.
            tracing::warn!(entries = ?extra, "more entries arrived than there is room for");
            self.shared.hand_back(extra, Duration::ZERO).await;
        }
        true
    }

    /// Starts an executor for `delivery`, holding `slot` until its outcome is handled — unless its
    /// entry already runs here.
    fn spawn(&self, delivery: Delivery, slot: Slot, stalled: bool) {
        let Some(tokens) = self.shared.inflight_insert(&delivery) else {
            tracing::debug!(entry_id = %delivery.id, "entry already running here; not starting it twice");
            return;
        };
        let span = tracing::info_span!(
            "job",
            job_id = %delivery.entry.job_id,
            tenant_id = %delivery.entry.tenant_id,
            attempt = tracing::field::Empty,
            entry_id = %delivery.id,
        );
        if let Some(parent) = &delivery.entry.traceparent {
            longhaul_service::trace::set_parent(&span, parent);
        }
        let shared = self.shared.clone();
        self.shared.tracker.spawn(
            async move {
                // A panic outside the pipeline's own task (which catches its own) is a bug in the
                // executor: leave the entry for a reclaim rather than strand it here, heart-beaten
                // and never finished.
                let attempt = Attempt::new(&shared, &delivery, &tokens);
                let run = std::panic::AssertUnwindSafe(attempt.execute(stalled));
                let outcome = match futures::FutureExt::catch_unwind(run).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        tracing::error!(
                            "the executor panicked; leaving the entry for another worker to reclaim"
                        );
                        Outcome::Leave
                    }
                };
                let _ = shared.done_tx.send(Done { delivery, outcome, slot });
            }
            .instrument(span),
        );
    }
}

#[cfg(test)]
mod tests {
    use longhaul_core::Registry;
    use longhaul_testkit::{Backend, TestDb, TestQueue, job_entry as entry};

    use super::*;
    use crate::WorkerSettings;

    /// Shutdown begins while a reclaim is under way, and the reclaim returns this worker's own
    /// running entry (its heartbeat came late) beside an entry it does not run. The second is handed
    /// back; the first stays this worker's — handing it back would let another worker take it over
    /// at once and run it again while it still runs here.
    #[tokio::test]
    async fn while_stopping_an_entry_running_here_is_not_handed_back() {
        let db = TestDb::new(Backend::Sqlite).await;
        let q = TestQueue::new(|c| c.lease = Duration::from_secs(60)).await;
        for ticket in ["T-1", "T-2"] {
            q.queue.enqueue(&entry(ticket)).await.expect("enqueue");
        }
        let settings = WorkerSettings { consumer: "w".into(), ..WorkerSettings::default() };
        let mut consumer = q.queue.consumer("w").expect("consumer");
        let taken = consumer.fetch(2, Duration::from_millis(1)).await.expect("fetch");
        assert_eq!(taken.len(), 2);
        let stopping = CancellationToken::new();
        let (shared, _done, _recorder) =
            Shared::new(db.store.clone(), q.queue.clone(), Registry::new(), settings, stopping.clone());
        let shared = Arc::new(shared);
        assert!(shared.inflight_insert(&taken[0]).is_some(), "the first entry runs here");
        let dispatcher = Dispatcher::new(shared);
        stopping.cancel();
        let mut slots = Slots::default();
        let started = dispatcher.start(taken.iter().map(|d| (d.clone(), false)).collect(), &mut slots).await;
        assert!(!started, "a stopping dispatcher starts nothing");
        // Handing back keeps the owner and makes the entry idle for the whole lease, so any worker's
        // next reclaim takes it at once.
        let running = q.pending_entry(&taken[0].id).await.expect("still pending");
        let handed = q.pending_entry(&taken[1].id).await.expect("still pending");
        assert!(running.idle_ms < 60_000, "the running entry is not handed back: {running:?}");
        assert!(handed.idle_ms >= 60_000, "the entry nobody runs is handed back: {handed:?}");
    }
}
