//! Deliveries that must not take over, stall or strand a job (issue 14, items 1 and 7): a full
//! worker claims nothing it cannot start, a stale entry never takes over a running attempt, an
//! exhausted job stays at its attempt limit, entries read while stopping are handed back, a deleted
//! entry is restored, and a retry recorded in storage but lost before Redis got it still runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use longhaul_core::{Ctx, ErrorClass, JobError, JobStatus, Lease, Pipeline, Registry, TicketId};
use longhaul_queue::QueueConfig;
use longhaul_store::AttemptFailure;
use longhaul_triage::TriageInput;
use longhaul_worker::WorkerSettings;
use tokio::sync::Notify;

use crate::harness::*;

/// Counts its runs; waits for the gate when the ticket is `GATED`.
struct Probe {
    runs: Arc<AtomicU32>,
    gate: Arc<Notify>,
}

impl Probe {
    fn new() -> (Self, Arc<AtomicU32>, Arc<Notify>) {
        let (runs, gate) = (Arc::new(AtomicU32::new(0)), Arc::new(Notify::new()));
        (Self { runs: runs.clone(), gate: gate.clone() }, runs, gate)
    }
}

impl Pipeline for Probe {
    type Kind = TestTriage;
    async fn run(&self, ctx: &Ctx, input: TriageInput) -> Result<serde_json::Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if input.ticket_id.as_str() == "GATED" {
            self.gate.notified().await;
        }
        Ok(serde_json::json!({ "attempt": ctx.attempt() }))
    }
}

/// Who holds `id` in the workers' group, and how often it was delivered.
async fn owner(q: &TestQueue, id: &str) -> Option<(String, u64)> {
    q.pending_entry(id).await.map(|p| (p.consumer, p.deliveries))
}

fn queue_with(lease: Duration) -> impl FnOnce(&mut QueueConfig) {
    move |c| {
        c.lease = lease;
        c.max_deliveries = QueueConfig::default().max_deliveries;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_worker_claims_nothing_it_cannot_start() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(queue_with(Duration::from_millis(300))).await;
    let busy = submit(&db, &q, "GATED", "s", "b", 5).await;
    let (probe, _, gate) = Probe::new();
    let full = spawn_worker(&db, &q, probe, WorkerSettings { concurrency: 1, ..settings("full") });
    wait_status(&db, &busy, JobStatus::Running).await;
    // A worker that died holding an entry.
    let orphaned = submit(&db, &q, "SUP-20", "s", "b", 5).await;
    let mut ghost = q.consumer("ghost").expect("consumer");
    let held = ghost.fetch(1, Duration::from_millis(1)).await.expect("fetch").remove(0);
    // Its lease runs out many times over while the full worker ticks its reclaim every 100 ms:
    // the full worker must leave it for a worker with room.
    wait_until(Duration::from_secs(10), "the entry idle for five leases", async || {
        let idle = q.pending_entry(&held.id).await.map_or(0, |p| p.idle_ms);
        if idle >= 1500 { Ok(()) } else { Err(idle) }
    })
    .await;
    assert_eq!(owner(&q, &held.id).await, Some(("ghost".to_owned(), 1)), "a full worker claimed it");
    // A worker with room takes it and runs it while the full one is still busy.
    let (probe, _, _) = Probe::new();
    let spare = spawn_worker(&db, &q, probe, settings("spare"));
    let done = wait_status(&db, &orphaned, JobStatus::Completed).await;
    assert_eq!(done.attempts, 1);
    assert_eq!(db.get_job(&tenant(), &busy).await.expect("read").expect("busy").status, JobStatus::Running);
    gate.notify_waiters();
    wait_status(&db, &busy, JobStatus::Completed).await;
    full.shutdown().await.expect("shutdown");
    spare.shutdown().await.expect("shutdown");
}

both_backends!(a_stale_entry_never_takes_over_a_running_attempt, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(queue_with(Duration::from_secs(60))).await;
    let job = submit(&db, &q, "SUP-21", "s", "b", 5).await;
    // A live worker took the entry and started attempt 1.
    let mut alive = q.consumer("alive").expect("consumer");
    let current = alive.fetch(1, Duration::from_millis(1)).await.expect("fetch").remove(0);
    let lease = Lease { entry: current.id.clone(), delivery: 1 };
    let running = match db.start_next(&tenant(), &job, lease.clone(), 1).await.expect("start") {
        longhaul_store::WriteOutcome::Applied(r) => r,
        other => panic!("{other:?}"),
    };
    // An older copy of the job's entry turns up (replayed by hand, as a partial Redis restore would).
    let stale = entry(&job);
    let mut conn = longhaul_testkit::raw_connection();
    let mut xadd = redis::cmd("XADD");
    xadd.arg(q.keys().jobs()).arg("*");
    for (k, v) in stale.to_fields() {
        xadd.arg(k).arg(v);
    }
    let stale_id: String = xadd.query_async(&mut conn).await.expect("xadd");

    let (probe, runs, _) = Probe::new();
    let worker = spawn_worker(&db, &q, probe, settings("w"));
    // The stale entry is acknowledged without running; the entry the live worker holds is not.
    wait_until(Duration::from_secs(10), "the stale entry acknowledged", async || {
        match owner(&q, &stale_id).await {
            None => Ok(()),
            Some(o) => Err(o),
        }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "the stale entry ran");
    let after = db.get_job(&tenant(), &job).await.expect("read").expect("job");
    assert_eq!(after, running, "a refused start changed the job");
    assert_eq!(owner(&q, &current.id).await, Some(("alive".to_owned(), 1)));
});

both_backends!(a_job_out_of_attempts_fails_at_its_limit, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(queue_with(Duration::from_millis(400))).await;
    let ticket = TicketId::parse("SUP-22").expect("ticket");
    let (job, revision) = store_ticket(&db, &ticket, "s", "b").await;
    record_job(&db, &job, &ticket, revision, 2).await;
    // Both attempts were started by runs that never finished (the second a later delivery of the
    // entry that started the first); a newer entry arrives.
    let delivery = |n| Lease { entry: "0-1".to_owned(), delivery: n };
    db.start_next(&tenant(), &job, delivery(1), 1).await.expect("start 1");
    db.start_next(&tenant(), &job, delivery(2), 1).await.expect("start 2");
    q.enqueue(&longhaul_queue::JobEntry { attempt: 3, ..entry(&job) }).await.expect("enqueue");
    let (probe, runs, _) = Probe::new();
    let worker = spawn_worker(&db, &q, probe, settings("w"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((failed.attempts, failed.max_attempts), (2, 2), "shows more attempts than allowed");
    assert_eq!(failed.error_class, Some(ErrorClass::Retryable));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_read_while_stopping_is_handed_back() {
    let db = test_db(Backend::Postgres).await;
    // A long lease: an entry stranded with the stopped worker would wait a minute.
    let q = TestQueue::new(queue_with(Duration::from_secs(60))).await;
    ensure_tenant(&db, None).await;
    let (probe, _, _) = Probe::new();
    let stopping = spawn_worker(
        &db,
        &q,
        probe,
        WorkerSettings { block: Duration::from_secs(2), ..settings("stopping") },
    );
    // Wait until its blocking read is under way (the consumer exists once it has read).
    wait_until(Duration::from_secs(10), "the worker reading", async || {
        let mut conn = longhaul_testkit::raw_connection();
        let consumers: Vec<redis::Value> = redis::cmd("XINFO")
            .arg("CONSUMERS")
            .arg(q.keys().jobs())
            .arg(&q.config().group)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        if consumers.is_empty() { Err("no consumer yet".to_owned()) } else { Ok(()) }
    })
    .await;
    // Shutdown begins; a job arrives while the read may still be blocked in Redis.
    stopping.stop.cancel();
    let job = submit(&db, &q, "SUP-23", "s", "b", 5).await;
    stopping.handle.await.expect("task").expect("worker");
    let (probe, runs, _) = Probe::new();
    let next = spawn_worker(&db, &q, probe, settings("next"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    next.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, runs.load(Ordering::SeqCst)), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deleted_pending_entry_is_restored_by_the_reconciler() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(queue_with(Duration::from_millis(300))).await;
    let job = submit(&db, &q, "SUP-24", "s", "b", 5).await;
    let mut ghost = q.consumer("ghost").expect("consumer");
    let held = ghost.fetch(1, Duration::from_millis(1)).await.expect("fetch").remove(0);
    let mut conn = longhaul_testkit::raw_connection();
    let _: u64 =
        redis::cmd("XDEL").arg(q.keys().jobs()).arg(&held.id).query_async(&mut conn).await.expect("xdel");
    let (probe, _, _) = Probe::new();
    let worker = spawn_worker(&db, &q, probe, settings("w"));
    // The producer's view: the kind (on the test queue's name) and its queues.
    let registry = Registry::new().kind::<TestTriage>().expect("registry");
    let queues = longhaul_producer::Queues::new(&q, &registry).expect("queues");
    // The worker's reclaim finds the entry gone; the job key is no trace, so the reconciler
    // restores the job from storage.
    wait_until(Duration::from_secs(10), "the reconciler restores the job", async || {
        match longhaul_producer::reconcile_once(&db, &registry, &queues, Duration::ZERO).await {
            Ok(1) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(done.attempts, 1);
}

both_backends!(a_recorded_retry_the_queue_never_got_still_runs, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(queue_with(Duration::from_millis(300))).await;
    let job = submit(&db, &q, "SUP-25", "s", "b", 5).await;
    // A worker ran attempt 1, recorded its retry, and died before telling Redis.
    let mut ghost = q.consumer("ghost").expect("consumer");
    let held = ghost.fetch(1, Duration::from_millis(1)).await.expect("fetch").remove(0);
    // Its delivery 2 had taken over attempt 1 (whose worker stopped) as attempt 2.
    db.start_next(&tenant(), &job, Lease { entry: held.id.clone(), delivery: 1 }, 1).await.expect("start");
    db.start_next(&tenant(), &job, Lease { entry: held.id.clone(), delivery: 2 }, 1).await.expect("takeover");
    let due = chrono::Utc::now();
    db.schedule_retry(
        &tenant(),
        &job,
        AttemptFailure::new(2, ErrorClass::Retryable, "provider timed out"),
        due,
    )
    .await
    .expect("retry");
    let (probe, runs, _) = Probe::new();
    let worker = spawn_worker(&db, &q, probe, settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, runs.load(Ordering::SeqCst)), (3, 1));
    let s = q.stats().await.expect("stats");
    assert_eq!((s.stream_length, s.pending, s.delayed), (0, 0, 0));
});

/// Notes when the pipeline's run is dropped (abandoned) before it finished.
struct Abandonable {
    dropped: Arc<AtomicU32>,
}

struct DropFlag(Arc<AtomicU32>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Pipeline for Abandonable {
    type Kind = TestTriage;
    async fn run(&self, _ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        let _flag = DropFlag(self.dropped.clone());
        std::future::pending::<()>().await;
        Ok(serde_json::json!({}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_whose_entry_another_worker_took_over_is_abandoned() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(queue_with(Duration::from_secs(60))).await;
    let job = submit(&db, &q, "SUP-26", "s", "b", 5).await;
    let dropped = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, Abandonable { dropped: dropped.clone() }, settings("slow"));
    let running = wait_status(&db, &job, JobStatus::Running).await;
    let entry_id = running.lease.expect("started by a delivery").entry;
    // Another worker takes the entry over (as a reclaim after a stall would).
    let mut conn = longhaul_testkit::raw_connection();
    let _: redis::Value = redis::cmd("XCLAIM")
        .arg(q.keys().jobs())
        .arg(&q.config().group)
        .arg("thief")
        .arg(0)
        .arg(&entry_id)
        .arg("JUSTID")
        .query_async(&mut conn)
        .await
        .expect("xclaim");
    // The next heartbeat tells the worker; it abandons its run instead of running on.
    wait_until(Duration::from_secs(10), "the superseded run abandoned", async || {
        match dropped.load(Ordering::SeqCst) {
            0 => Err("still running"),
            _ => Ok(()),
        }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(owner(&q, &entry_id).await.map(|(c, _)| c).as_deref(), Some("thief"), "left to its new owner");
}
