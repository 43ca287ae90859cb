//! `longhaul-worker`: consumes jobs from Redis Streams queues, runs each job's pipeline (found by
//! its kind in a [`Registry`]), and records status, progress and output in application storage —
//! acknowledging an entry only after its outcome is stored.
//!
//! A worker serves a set of queues, each a **lane** with its own concurrency, so a slow kind never
//! holds up a fast one. Roles of one lane, each a task (modules in brackets):
//! - **fetcher** (`fetcher`) — reserves all free capacity, reclaims entries whose workers died
//!   (first, when a reclaim is due) and reads new ones with the rest;
//! - **dispatcher** (`dispatch`) — owns the capacity (one slot per job run at once) and starts
//!   one executor per delivery the fetcher or completer took, at once: a worker never holds an
//!   entry it does not run and heart-beat; an entry already running here is not started twice;
//!   what arrives while stopping is handed back;
//! - **executor** (`executor`) — fences the record by attempt, runs the pipeline (a panic is
//!   caught), classifies failures and writes the outcome to storage; stops a run whose job's
//!   cancel was requested and ends the job as cancelled;
//! - **completer** (`completer`) — acks/deletes finished entries and appends their events in
//!   batches (taking new entries for the freed capacity in the same call), schedules retries;
//! - **recorder** (`recorder`) — the one way job records are written: starts, throttled progress
//!   (`progress`), completions, failures, retries and cancellations, in the order sent; starts,
//!   progress and completions of concurrent jobs in one transaction (group commit); emits the
//!   `progress` events, and answers each executor after the commit;
//! - **heartbeat**, **promoter** and **reclaim ticker** (`upkeep`) — keep in-flight entries
//!   leased and ask storage which of their jobs have a cancel requested; move due retries back
//!   into the stream; mark a reclaim due every `reclaim_every` and hand back entries this consumer
//!   owns but is not running (stranded by a lost reply).
//!
//! What they share (the in-flight map, shutdown tokens, reclaim flags) is in `shared`.
//!
//! Beside the lanes, one per process: the **pruner** (`retention`), which deletes old finished
//! jobs, their audit rows and old operations while it holds the `pruner` task lease.
//!
//! # Cancellation
//!
//! A job is cancelled in storage (`Store::cancel`, at a tenant's or an operator's request). A
//! queued job is cancelled there and then: its entry, when delivered, has its start refused as
//! terminal and is acknowledged and dropped without running. A running job only gets a cancel
//! request, and its worker ends it within about one `heartbeat`: every tick the heartbeat asks
//! storage (one query) which of the jobs running here have one; for each, the executor aborts the
//! pipeline's task — the provider call in flight is dropped and no later step starts; steps that
//! finished stay done — then writes the job `cancelled` (after its progress, held through storage
//! outages) and acknowledges the entry with a `cancelled` event. A run that finished first keeps
//! its outcome if it completed; a failure is not retried once a cancel was requested: the job ends
//! as cancelled. While storage cannot be asked, nothing is cancelled; the next tick asks again.

mod completer;
mod control;
mod dispatch;
mod executor;
mod fetcher;
mod ops;
mod progress;
mod recorder;
mod retention;
mod shared;
pub mod startup;
mod upkeep;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use longhaul_core::Registry;
use longhaul_queue::Queue;
use longhaul_store::Store;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::control::ControlSettings;
use crate::control::ControlView;
use crate::dispatch::Dispatcher;
pub use crate::retention::{PRUNER_LEASE, Retention, RetentionArgs};
use crate::shared::Shared;

/// How the worker behaves.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// This process's name in the consumer group; keep it stable across restarts of one pod.
    pub consumer: String,
    /// Jobs run at once (per lane, in [`Worker::new`]).
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
    /// Admission defaults and how often pauses and limits are read.
    pub control: ControlSettings,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            consumer: "worker".into(),
            concurrency: 64,
            heartbeat: Duration::from_secs(10),
            reclaim_every: Duration::from_secs(15),
            block: Duration::from_secs(2),
            max_attempts: 10,
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(25),
            progress_interval: Duration::from_millis(250),
            control: ControlSettings::default(),
        }
    }
}

/// One queue a worker serves, with the jobs it runs from it at once.
#[derive(Debug, Clone)]
pub struct Lane {
    /// The queue (or one partition of it).
    pub queue: Queue,
    /// Jobs of this queue run at once.
    pub concurrency: usize,
}

/// A worker: build it, then [`Worker::run`] it until its shutdown token is cancelled.
pub struct Worker {
    store: Store,
    lanes: Vec<Lane>,
    registry: Registry,
    settings: WorkerSettings,
    retention: Option<Retention>,
}

impl Worker {
    /// A worker running the kinds of `registry` on jobs from `queue` (`settings.concurrency` at
    /// once), recording them in `store`.
    pub fn new(store: Store, queue: Queue, registry: Registry, settings: WorkerSettings) -> Self {
        let lanes = vec![Lane { queue, concurrency: settings.concurrency }];
        Self::with_lanes(store, lanes, registry, settings)
    }

    /// A worker serving every lane of `lanes`.
    pub fn with_lanes(store: Store, lanes: Vec<Lane>, registry: Registry, settings: WorkerSettings) -> Self {
        Self { store, lanes, registry, settings, retention: None }
    }

    /// This worker also runs the pruner (one per process, whatever its lanes; see `retention`).
    #[must_use]
    pub fn with_retention(mut self, retention: Option<Retention>) -> Self {
        self.retention = retention;
        self
    }

    /// Runs until `shutdown` is cancelled, then stops reading, lets in-flight jobs finish within
    /// the grace period, leaves the rest pending for reclaim, and returns.
    ///
    /// # Errors
    /// Only when a consumer cannot be created (invalid name); outages are waited out.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let prune_stop = shutdown.child_token();
        let pruner = self.retention.clone().map(|r| {
            let (store, consumer) = (self.store.clone(), self.settings.consumer.clone());
            tokio::spawn(retention::run(store, r, consumer, prune_stop.clone()))
        });
        let (control_tx, control) = tokio::sync::watch::channel(None);
        let control_stop = CancellationToken::new();
        let queues = self.lanes.iter().map(|l| l.queue.clone()).collect();
        let sync = tokio::spawn(control::sync(
            self.store.clone(),
            queues,
            self.settings.control.clone(),
            control_tx,
            control_stop.clone(),
        ));
        let mut lanes = tokio::task::JoinSet::new();
        for lane in self.lanes {
            let settings = WorkerSettings { concurrency: lane.concurrency, ..self.settings.clone() };
            let (store, registry, shutdown) = (self.store.clone(), self.registry.clone(), shutdown.clone());
            lanes.spawn(run_lane(store, lane.queue, registry, settings, control.clone(), shutdown));
        }
        let mut result = Ok(());
        while let Some(joined) = lanes.join_next().await {
            let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = outcome {
                // One lane that cannot run stops the others: the process is misconfigured.
                shutdown.cancel();
                result = result.and(Err(e));
            }
        }
        control_stop.cancel();
        let _ = sync.await;
        prune_stop.cancel();
        if let Some(pruner) = pruner {
            let _ = pruner.await;
        }
        result
    }
}

/// Runs one lane until `shutdown` (see [`Worker::run`]).
async fn run_lane(
    store: Store,
    queue: Queue,
    registry: Registry,
    settings: WorkerSettings,
    control: ControlView,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let concurrency = settings.concurrency.max(1);
    wait_for_queue(&queue, &shutdown).await;
    let name = queue.name().to_owned();
    let consumer = queue.consumer(&settings.consumer).context("failed to create the consumer")?;

    let (mut shared, done_rx, recorder_rx) =
        Shared::new(store, queue, registry, settings.clone(), shutdown.clone());
    shared.control = control;
    let shared = Arc::new(shared);
    let dispatcher = Dispatcher::new(shared.clone());
    let background = TaskTracker::new();
    let bg_stop = CancellationToken::new();
    background.spawn(completer::run(shared.clone(), dispatcher.clone(), done_rx, bg_stop.clone()));
    background.spawn(recorder::run(
        shared.store.clone(),
        shared.queue.clone(),
        settings.progress_interval,
        recorder_rx,
        bg_stop.clone(),
    ));
    background.spawn(upkeep::heartbeat(shared.clone(), bg_stop.clone()));
    background.spawn(upkeep::promoter(shared.clone(), shutdown.clone()));
    background.spawn(upkeep::admitter(shared.clone(), shutdown.clone()));
    background.spawn(upkeep::reclaim_ticker(shared.clone(), shutdown.clone()));
    tracing::info!(consumer = %settings.consumer, queue = %name, concurrency, "worker lane started");

    fetcher::run(&shared, &dispatcher, consumer, &shutdown).await;

    tracing::info!(queue = %name, in_flight = shared.inflight_ids().len(), grace = ?settings.shutdown_grace, "worker lane stopping");
    shared.tracker.close();
    if tokio::time::timeout(settings.shutdown_grace, shared.tracker.wait()).await.is_err() {
        tracing::warn!(
            queue = %name,
            "grace period over: leaving unfinished jobs pending for another worker to reclaim"
        );
        shared.hard_stop.cancel();
        shared.tracker.wait().await;
    }
    bg_stop.cancel();
    background.close();
    background.wait().await;
    tracing::info!(queue = %name, "worker lane stopped");
    Ok(())
}

/// Creates the consumer group, retrying while Redis is unreachable.
async fn wait_for_queue(queue: &Queue, shutdown: &CancellationToken) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match queue.prepare(None).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), retry_in = ?backoff, "Redis is not available yet")
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
