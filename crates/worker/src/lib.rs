//! `longhaul-worker`: consumes jobs from the Redis Streams queue, runs the pipeline, and records
//! status, progress and output in application storage — acknowledging an entry only after its
//! outcome is stored.
//!
//! Roles, each a task:
//! - **fetcher** ([`Worker::run`]) — takes all free capacity, reclaims entries whose workers died
//!   (first, when a reclaim is due) and reads new ones with the rest, and spawns one executor per
//!   delivery at once: a worker never holds an entry it does not run and heart-beat;
//! - **executor** ([`executor`]) — fences the record by attempt, runs the pipeline (a panic is
//!   caught), classifies failures and writes the outcome to storage;
//! - **completer** ([`completer`]) — acks/deletes finished entries and appends their events in
//!   batches (taking new entries for the freed capacity in the same call), schedules retries;
//! - **recorder** — writes the starts, throttled progress ([`progress`]) and completions of
//!   concurrent jobs in one transaction (group commit), emits the `progress` events, and answers
//!   each executor after the commit;
//! - **ticket store** ([`tickets`]) — the pipeline's ticket reads and writes, each batched across
//!   concurrent jobs;
//! - **heartbeat** and **promoter** — keep in-flight entries leased; move due retries back into the
//!   stream;
//! - **reclaim ticker** — marks a reclaim due every `reclaim_every` (the completer then stops
//!   handing freed capacity to new entries until the fetcher has reclaimed), and hands back entries
//!   this consumer owns but is not running (stranded by a lost reply).

pub mod startup;
pub mod completer;
pub mod executor;
pub mod progress;
pub mod recorder;
pub mod tickets;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use longhaul_core::Pipeline;
use longhaul_queue::{Delivery, Queue};
use longhaul_store::Store;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

/// How the worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This process's name in the consumer group; keep it stable across restarts of one pod.
    pub consumer: String,
    /// Jobs run at once.
    pub concurrency: usize,
    /// How often in-flight entries are heart-beaten (well below the queue's lease).
    pub heartbeat: Duration,
    /// How often entries of dead workers are looked for.
    pub reclaim_every: Duration,
    /// Longest blocking read.
    pub block: Duration,
    /// Cap on attempts, whatever a record asks for.
    pub max_attempts: u32,
    /// Backoff base delay.
    pub backoff_base: Duration,
    /// Backoff cap.
    pub backoff_cap: Duration,
    /// On shutdown, how long in-flight jobs may run on before they are left for reclaim.
    pub shutdown_grace: Duration,
    /// Least time between two progress writes of one job within a stage.
    pub progress_interval: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            consumer: "worker".into(),
            concurrency: 16,
            heartbeat: Duration::from_secs(10),
            reclaim_every: Duration::from_secs(15),
            block: Duration::from_secs(2),
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(25),
            progress_interval: Duration::from_millis(250),
        }
    }
}

/// What every task of one worker shares.
pub(crate) struct Shared<P> {
    pub store: Store,
    pub queue: Queue,
    pub pipeline: Arc<P>,
    pub settings: WorkerSettings,
    /// Entries being worked on by this process (heart-beaten), by entry id.
    pub inflight: Mutex<HashMap<String, InFlight>>,
    pub done_tx: mpsc::UnboundedSender<completer::Done>,
    pub recorder_tx: mpsc::UnboundedSender<recorder::Request>,
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
    pub reclaim_hold: Mutex<Instant>,
}

/// One delivery running in this process.
#[derive(Debug, Clone)]
pub struct InFlight {
    /// Its delivery count.
    pub deliveries: u64,
    /// Cancelled when the delivery is superseded (another consumer took its entry over) or the
    /// shutdown grace period ends: the executor abandons the job.
    pub cancel: CancellationToken,
}

impl<P: Pipeline + 'static> Shared<P> {
    /// Starts an executor for `delivery`, holding `permit` until its outcome is handled.
    pub(crate) fn spawn_executor(
        self: &Arc<Self>,
        delivery: Delivery,
        permit: OwnedSemaphorePermit,
        stalled: bool,
    ) {
        // The same entry can come back while it runs here: a re-read of this consumer's own
        // pending entries, or a reclaim of its own entry whose heartbeat came late. It already has
        // an executor; a second would take over its attempt. (A run whose entry another worker
        // took over is cancelled and forgotten by the heartbeat, so a later reclaim starts anew.)
        let cancel = self.hard_stop.child_token();
        {
            let Ok(mut map) = self.inflight.lock() else { return };
            if map.contains_key(&delivery.id) {
                tracing::debug!(entry_id = %delivery.id, "entry already running here; not starting it twice");
                return;
            }
            map.insert(
                delivery.id.clone(),
                InFlight { deliveries: delivery.deliveries, cancel: cancel.clone() },
            );
        }
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
        let shared = self.clone();
        self.tracker.spawn(
            async move {
                let outcome = executor::execute(&shared, &delivery, stalled, &cancel).await;
                let _ = shared.done_tx.send(completer::Done { delivery, outcome, permit });
            }
            .instrument(span),
        );
    }

    /// Writes `write` through the recorder (group commit) and waits until it is committed.
    pub(crate) async fn record(
        &self,
        write: longhaul_store::Write,
    ) -> Result<longhaul_store::WriteOutcome, longhaul_store::StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.recorder_tx.send(recorder::Request::Write(write, tx)).is_err() {
            return Err(longhaul_store::StoreError::Stopped("recorder"));
        }
        // The recorder dropped the reply: it ended before answering.
        rx.await.unwrap_or(Err(longhaul_store::StoreError::Stopped("recorder")))
    }

    /// Forgets `delivery` (unless a newer delivery of its entry replaced it here).
    pub(crate) fn inflight_remove(&self, delivery: &Delivery) {
        if let Ok(mut map) = self.inflight.lock()
            && map.get(&delivery.id).is_some_and(|r| r.deliveries == delivery.deliveries)
        {
            map.remove(&delivery.id);
        }
    }

    fn inflight_ids(&self) -> Vec<String> {
        self.inflight.lock().map(|m| m.keys().cloned().collect()).unwrap_or_default()
    }

    /// Another consumer owns these entries now: their runs here are superseded.
    fn superseded(&self, ids: &[String]) {
        if let Ok(mut map) = self.inflight.lock() {
            for id in ids {
                if let Some(run) = map.remove(id) {
                    run.cancel.cancel();
                }
            }
        }
    }

    /// A Redis call failed: hold reclaims until every worker had a heartbeat after it.
    fn redis_trouble(&self) {
        if let Ok(mut hold) = self.reclaim_hold.lock() {
            *hold = Instant::now() + self.settings.heartbeat * 2;
        }
    }

    fn may_reclaim(&self) -> bool {
        self.reclaim_due.load(Ordering::Acquire)
            && !self.stopping.is_cancelled()
            && self.reclaim_hold.lock().is_ok_and(|hold| Instant::now() >= *hold)
    }
}

/// A worker: build it, then [`Worker::run`] it until its shutdown token is cancelled.
pub struct Worker<P> {
    store: Store,
    queue: Queue,
    pipeline: Arc<P>,
    settings: WorkerSettings,
}

impl<P: Pipeline + 'static> Worker<P> {
    /// A worker running `pipeline` on jobs from `queue`, recording them in `store`.
    pub fn new(store: Store, queue: Queue, pipeline: P, settings: WorkerSettings) -> Self {
        Self { store, queue, pipeline: Arc::new(pipeline), settings }
    }

    /// Runs until `shutdown` is cancelled, then stops reading, lets in-flight jobs finish within
    /// the grace period, leaves the rest pending for reclaim, and returns.
    ///
    /// # Errors
    /// Only when the consumer cannot be created (invalid name); outages are waited out.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        let concurrency = settings.concurrency.max(1);
        wait_for_queue(&self.queue, &shutdown).await;
        let mut consumer =
            self.queue.consumer(&settings.consumer).context("failed to create the consumer")?;

        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (recorder_tx, recorder_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            store: self.store,
            queue: self.queue,
            pipeline: self.pipeline,
            settings: settings.clone(),
            inflight: Mutex::new(HashMap::new()),
            done_tx,
            recorder_tx,
            tracker: TaskTracker::new(),
            hard_stop: CancellationToken::new(),
            stopping: shutdown.clone(),
            reclaim_due: AtomicBool::new(true),
            reclaim_hold: Mutex::new(Instant::now()),
        });
        let background = TaskTracker::new();
        let bg_stop = CancellationToken::new();
        background.spawn(completer::run(shared.clone(), done_rx, bg_stop.clone()));
        background.spawn(recorder::run(shared.clone(), recorder_rx, bg_stop.clone()));
        background.spawn(heartbeat(shared.clone(), bg_stop.clone()));
        background.spawn(promoter(shared.clone(), shutdown.clone()));
        background.spawn(reclaim_ticker(shared.clone(), shutdown.clone()));
        tracing::info!(consumer = %settings.consumer, concurrency, "worker started");

        let permits = Arc::new(Semaphore::new(concurrency));
        let mut backoff = Duration::from_millis(100);
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            // All free capacity at once: every entry taken below starts (and is heart-beaten) at
            // once, none waits for a slot while its lease runs out.
            let mut held = vec![first];
            while let Ok(p) = permits.clone().try_acquire_owned() {
                held.push(p);
            }
            if shared.may_reclaim() {
                reclaim(&shared, &mut consumer, &mut held).await;
                if held.is_empty() {
                    continue;
                }
            }
            // Not cut short by shutdown: Redis may hand this consumer an entry even as the read is
            // dropped, and nobody would run it until its lease ran out. What arrives while
            // stopping is handed back instead.
            match consumer.fetch(held.len(), settings.block).await {
                Ok(deliveries) => {
                    backoff = Duration::from_millis(100);
                    if shutdown.is_cancelled() {
                        hand_back(&shared, deliveries.iter().map(|d| d.id.clone()).collect(), Duration::ZERO)
                            .await;
                        break;
                    }
                    for d in deliveries {
                        let Some(p) = held.pop() else { break };
                        shared.spawn_executor(d, p, false);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "cannot read the queue; retrying");
                    shared.redis_trouble();
                    drop(held);
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }

        tracing::info!(in_flight = shared.inflight_ids().len(), grace = ?settings.shutdown_grace, "worker stopping");
        shared.tracker.close();
        if tokio::time::timeout(settings.shutdown_grace, shared.tracker.wait()).await.is_err() {
            tracing::warn!(
                "grace period over: leaving unfinished jobs pending for another worker to reclaim"
            );
            shared.hard_stop.cancel();
            shared.tracker.wait().await;
        }
        bg_stop.cancel();
        background.close();
        background.wait().await;
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Takes over abandoned entries, at most one per held permit, and starts them at once.
async fn reclaim<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    consumer: &mut longhaul_queue::Consumer,
    held: &mut Vec<OwnedSemaphorePermit>,
) {
    match consumer.reclaim(held.len()).await {
        Ok(r) => {
            if r.scan_done {
                shared.reclaim_due.store(false, Ordering::Release);
            }
            if !r.deleted.is_empty() {
                tracing::warn!(entries = ?r.deleted, "pending entries were deleted from the stream; the reconciler restores their jobs");
            }
            let taken =
                r.deliveries.into_iter().map(|d| (d, false)).chain(r.stalled.into_iter().map(|d| (d, true)));
            for (d, stalled) in taken {
                if stalled {
                    tracing::warn!(job_id = %d.entry.job_id, deliveries = d.deliveries, "entry stalled too often");
                } else {
                    tracing::info!(job_id = %d.entry.job_id, deliveries = d.deliveries, "reclaimed an abandoned entry");
                }
                let Some(p) = held.pop() else { break };
                shared.spawn_executor(d, p, stalled);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot reclaim abandoned entries");
            shared.reclaim_due.store(false, Ordering::Release);
            shared.redis_trouble();
        }
    }
}

/// Hands entries this consumer will not run, idle at least `min_idle`, back to the group
/// (reclaimable by anyone at once).
pub(crate) async fn hand_back<P>(shared: &Shared<P>, ids: Vec<String>, min_idle: Duration) {
    if ids.is_empty() {
        return;
    }
    match shared.queue.hand_back(&shared.settings.consumer, &ids, min_idle).await {
        Ok(n) => {
            tracing::info!(entries = ?ids, handed_back = n, "handed back entries this worker will not run")
        }
        Err(e) => {
            tracing::warn!(error = %e, entries = ?ids, "cannot hand entries back; they are reclaimed once their lease runs out")
        }
    }
}

/// Every `reclaim_every`: marks a reclaim due, and hands back entries this consumer owns without
/// running them — stranded when a reply carrying them was lost (a read cut short, a call a cluster
/// client re-sent). Such an entry is idle: in-flight entries are in `inflight`, and new ones are
/// added there the moment they arrive.
async fn reclaim_ticker<P: Pipeline + 'static>(shared: Arc<Shared<P>>, stop: CancellationToken) {
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
                hand_back(&shared, stranded, stranded_after).await;
            }
            Err(e) => tracing::debug!(error = %e, "cannot list this consumer's idle entries"),
        }
    }
}

/// Creates the consumer group, retrying while Redis is unreachable.
async fn wait_for_queue(queue: &Queue, shutdown: &CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match queue.prepare(None).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, retry_in = ?backoff, "Redis is not available yet"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

async fn heartbeat<P: Pipeline + 'static>(shared: Arc<Shared<P>>, stop: CancellationToken) {
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
                tracing::warn!(error = %e, "heartbeat failed");
                shared.redis_trouble();
            }
        }
    }
}

async fn promoter<P: Pipeline + 'static>(shared: Arc<Shared<P>>, stop: CancellationToken) {
    loop {
        let now = longhaul_queue::now_ms();
        let wait = match shared.queue.promote_due(now, 500).await {
            Ok(p) if p.count >= 500 => Duration::ZERO,
            Ok(p) => p
                .next_due_ms
                .map_or(Duration::from_secs(1), |due| Duration::from_millis(due.saturating_sub(now))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot promote due retries");
                Duration::from_secs(1)
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(wait.min(Duration::from_secs(1))) => {}
        }
    }
}

/// A random number in `[0, 1)` for backoff jitter.
pub(crate) fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
