//! What every task of one worker lane (one queue) shares: storage, the queue, the registry of
//! kinds and settings, the map of deliveries running in this process (which the heartbeat leases
//! and asks storage about cancel requests for, and the dispatcher guards against duplicates), the
//! shutdown tokens, and the reclaim flags.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use longhaul_core::{JobId, Registry};
use longhaul_queue::{Delivery, Queue};
use longhaul_store::{Store, StoreError, WriteOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::control::{self, ControlView};
use crate::recorder::{self, RecordWrite};
use crate::{WorkerSettings, completer};

/// What every task of one worker shares.
pub(crate) struct Shared {
    pub store: Store,
    pub queue: Queue,
    /// The kinds this worker runs.
    pub registry: Registry,
    pub settings: WorkerSettings,
    /// Entries being worked on by this process (heart-beaten), by entry id.
    inflight: Mutex<HashMap<String, InFlight>>,
    pub done_tx: mpsc::UnboundedSender<completer::Done>,
    pub recorder_tx: mpsc::UnboundedSender<recorder::Request>,
    /// The executors.
    pub tracker: TaskTracker,
    /// Cancelled when the grace period ends: executors abandon their jobs.
    pub hard_stop: CancellationToken,
    /// Cancelled when shutdown begins: nothing new is taken.
    pub stopping: CancellationToken,
    /// Set by the reclaim ticker until the fetcher has scanned for abandoned entries: meanwhile
    /// freed capacity is not handed to new entries, so a dead worker's jobs do not wait for the
    /// backlog to drain.
    pub reclaim_due: AtomicBool,
    /// No reclaim before this instant: set after a Redis error, so that when Redis is back every
    /// worker heart-beats its entries before anyone takes them over as abandoned.
    reclaim_hold: Mutex<Instant>,
    /// Paused queues and kinds, as the control task last read them (`None` before its first read).
    pub control: ControlView,
    /// Wakes the admitter: capacity was freed (entries finished), so waiting entries may fit.
    pub admit_wake: tokio::sync::Notify,
    /// The operation log the executors give their pipelines (batched across this lane's jobs).
    pub ops: std::sync::Arc<crate::ops::BatchedOps>,
}

/// One delivery running in this process.
#[derive(Debug, Clone)]
struct InFlight {
    /// Its delivery count.
    deliveries: u64,
    /// The job its entry names.
    job: JobId,
    /// Cancelled when the delivery is superseded (another consumer took its entry over) or the
    /// shutdown grace period ends: the executor abandons the job.
    cancel: CancellationToken,
    /// Cancelled when storage shows a cancel requested for the job: the executor stops the run
    /// and ends the job as cancelled.
    cancel_requested: CancellationToken,
}

/// The tokens of one delivery's run (see [`Shared::inflight_insert`]).
#[derive(Debug, Clone)]
pub(crate) struct RunTokens {
    /// Abandon the run: leave the job and its entry as they are.
    pub abandon: CancellationToken,
    /// A cancel was requested: stop the run and end the job as cancelled.
    pub cancel_requested: CancellationToken,
}

impl Shared {
    /// Whether this lane may start jobs: control has been read and its queue is not paused.
    pub(crate) fn queue_runs(&self) -> bool {
        self.control.borrow().as_ref().is_some_and(|p| !p.queue(self.queue.name()))
    }

    /// Whether a fresh entry of `kind` must wait instead of starting: its queue or its kind is
    /// paused (or control was never read).
    pub(crate) fn held(&self, kind: Option<&str>) -> bool {
        match self.control.borrow().as_ref() {
            None => true,
            Some(p) => p.queue(self.queue.name()) || kind.is_some_and(|k| p.kind(k)),
        }
    }

    /// Waits until [`Shared::queue_runs`] (logging once that the queue is paused, when it is);
    /// `false` when `stop` came first.
    pub(crate) async fn wait_until_running(&self, stop: &CancellationToken) -> bool {
        let mut rx = self.control.clone();
        let mut told = false;
        loop {
            match rx.borrow_and_update().as_ref() {
                Some(p) if !p.queue(self.queue.name()) => return true,
                Some(_) if !told => {
                    tracing::info!(queue = self.queue.name(), "queue paused: taking nothing new");
                    told = true;
                }
                _ => {}
            }
            tokio::select! {
                () = stop.cancelled() => return false,
                changed = rx.changed() => if changed.is_err() { return false },
            }
        }
    }

    /// The state of a worker that stops taking entries when `stopping` is cancelled, with the
    /// receiving ends of its completer's and recorder's channels.
    pub(crate) fn new(
        store: Store,
        queue: Queue,
        registry: Registry,
        settings: WorkerSettings,
        stopping: CancellationToken,
    ) -> (Self, mpsc::UnboundedReceiver<completer::Done>, mpsc::UnboundedReceiver<recorder::Request>) {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (recorder_tx, recorder_rx) = mpsc::unbounded_channel();
        let ops = std::sync::Arc::new(crate::ops::BatchedOps::spawn(store.clone()));
        let shared = Self {
            store,
            queue,
            registry,
            settings,
            inflight: Mutex::new(HashMap::new()),
            done_tx,
            recorder_tx,
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            stopping,
            reclaim_due: AtomicBool::new(true),
            reclaim_hold: Mutex::new(Instant::now()),
            control: control::uncontrolled(),
            admit_wake: tokio::sync::Notify::new(),
            ops,
        };
        (shared, done_rx, recorder_rx)
    }

    /// Writes `write` through the recorder, in order after everything this job sent before, and
    /// waits until it is committed.
    pub(crate) async fn record(&self, write: RecordWrite) -> Result<WriteOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.recorder_tx.send(recorder::Request::Write(write, tx)).is_err() {
            return Err(StoreError::Stopped("recorder"));
        }
        rx.await.unwrap_or(Err(StoreError::Stopped("recorder")))
    }

    /// Notes `delivery` as running here and returns the tokens that abandon its run and that say a
    /// cancel was requested — or `None` when its entry already runs here. (The same entry can come
    /// back while it runs: a re-read of this consumer's own pending entries, or a reclaim of its
    /// own entry whose heartbeat came late. It already has an executor; a second would take over
    /// its attempt. A run whose entry another worker took over is abandoned and forgotten by the
    /// heartbeat, so a later reclaim starts anew.)
    pub(crate) fn inflight_insert(&self, delivery: &Delivery) -> Option<RunTokens> {
        let mut map = self.inflight.lock().ok()?;
        if map.contains_key(&delivery.id) {
            return None;
        }
        let tokens =
            RunTokens { abandon: self.hard_stop.child_token(), cancel_requested: CancellationToken::new() };
        map.insert(
            delivery.id.clone(),
            InFlight {
                deliveries: delivery.deliveries,
                job: delivery.entry.job_id.clone(),
                cancel: tokens.abandon.clone(),
                cancel_requested: tokens.cancel_requested.clone(),
            },
        );
        Some(tokens)
    }

    /// Forgets `delivery` (unless a newer delivery of its entry replaced it here).
    pub(crate) fn inflight_remove(&self, delivery: &Delivery) {
        if let Ok(mut map) = self.inflight.lock()
            && map.get(&delivery.id).is_some_and(|r| r.deliveries == delivery.deliveries)
        {
            map.remove(&delivery.id);
        }
    }

    /// The entries running here.
    pub(crate) fn inflight_ids(&self) -> Vec<String> {
        self.inflight.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// The jobs running here (one each, though several entries may name one job).
    pub(crate) fn inflight_jobs(&self) -> Vec<JobId> {
        let Ok(map) = self.inflight.lock() else {
            return Vec::new();
        };
        let mut jobs: Vec<JobId> = map.values().map(|r| r.job.clone()).collect();
        jobs.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        jobs.dedup();
        jobs
    }

    /// Storage shows a cancel requested for these jobs: every run of them here stops and ends its
    /// job as cancelled (a run whose attempt is not the job's current one has that write refused,
    /// and leaves its entry to the worker that runs the current attempt). Returns how many runs
    /// were told.
    pub(crate) fn cancel_requested(&self, jobs: &[JobId]) -> usize {
        let Ok(map) = self.inflight.lock() else {
            return 0;
        };
        let mut told = 0;
        for run in map.values().filter(|r| jobs.contains(&r.job)) {
            if !run.cancel_requested.is_cancelled() {
                run.cancel_requested.cancel();
                told += 1;
            }
        }
        told
    }

    /// Another consumer owns these entries now: their runs here are superseded.
    pub(crate) fn superseded(&self, ids: &[String]) {
        if let Ok(mut map) = self.inflight.lock() {
            for id in ids {
                if let Some(run) = map.remove(id) {
                    run.cancel.cancel();
                }
            }
        }
    }

    /// A Redis call failed: hold reclaims until every worker had a heartbeat after it.
    pub(crate) fn redis_trouble(&self) {
        if let Ok(mut hold) = self.reclaim_hold.lock() {
            *hold = Instant::now() + self.settings.heartbeat * 2;
        }
    }

    /// Whether the fetcher should reclaim abandoned entries now.
    pub(crate) fn may_reclaim(&self) -> bool {
        self.reclaim_due.load(Ordering::Acquire)
            && !self.stopping.is_cancelled()
            && self.reclaim_hold.lock().is_ok_and(|hold| Instant::now() >= *hold)
    }

    /// Hands entries this consumer will not run, idle at least `min_idle`, back to the group
    /// (reclaimable by anyone at once).
    pub(crate) async fn hand_back(&self, ids: Vec<String>, min_idle: Duration) {
        if ids.is_empty() {
            return;
        }
        match self.queue.hand_back(&self.settings.consumer, &ids, min_idle).await {
            Ok(n) => {
                tracing::info!(entries = ?ids, handed_back = n, "handed back entries this worker will not run")
            }
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), entries = ?ids, "cannot hand entries back; they are reclaimed once their lease runs out")
            }
        }
    }
}
