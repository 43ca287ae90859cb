//! Cancellation (issue 17): a running job whose cancel was requested is stopped and ended as
//! `cancelled` within about a heartbeat; a job cancelled while queued never runs; a failure after a
//! cancel request is not retried; a run that completed first stays completed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use longhaul_core::{Ctx, FailureCase, JobError, JobId, JobRecord, JobStatus, Lease, Pipeline, TicketId};
use longhaul_queue::{EventKind, QueueConfig};
use longhaul_store::{Store, WriteOutcome};
use longhaul_triage::{STAGE_APPLY, STAGE_CLASSIFY, STAGE_LOAD, TriageInput};
use longhaul_worker::WorkerSettings;
use tokio::sync::Semaphore;

use crate::harness::*;

/// What a [`Stepped`] pipeline did, shared with the test.
#[derive(Clone)]
struct Probe {
    /// Runs begun.
    runs: Arc<AtomicU32>,
    /// Runs waiting at the gate (in stage `classify`).
    at_gate: Arc<AtomicU32>,
    /// One permit lets one run past the gate.
    gate: Arc<Semaphore>,
    /// Set when the `classify` step's future is dropped (finished or not).
    dropped: Arc<AtomicU32>,
    /// Runs that went past the gate.
    past_gate: Arc<AtomicU32>,
    /// Runs whose `apply` stage began: the step after the gate.
    applied: Arc<AtomicU32>,
}

impl Probe {
    fn new() -> Self {
        Self {
            runs: Arc::default(),
            at_gate: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            dropped: Arc::default(),
            past_gate: Arc::default(),
            applied: Arc::default(),
        }
    }

    fn count(counter: &AtomicU32) -> u32 {
        counter.load(Ordering::SeqCst)
    }

    /// Waits until a run waits at the gate.
    async fn wait_at_gate(&self) {
        wait_until(Duration::from_secs(10), "a run waiting at the gate", async || {
            match Self::count(&self.at_gate) {
                0 => Err("not yet"),
                _ => Ok(()),
            }
        })
        .await;
    }

    /// A pipeline of three steps whose second waits at the gate; past it, the run fails (retryably)
    /// if `fail`, else goes on to the third step and completes.
    fn pipeline(&self, fail: bool) -> Stepped {
        Stepped { probe: self.clone(), fail }
    }
}

/// Adds one to its counter when dropped.
struct DropFlag(Arc<AtomicU32>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

struct Stepped {
    probe: Probe,
    fail: bool,
}

impl Pipeline for Stepped {
    type Kind = TestTriage;
    async fn run(&self, ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        let p = &self.probe;
        p.runs.fetch_add(1, Ordering::SeqCst);
        ctx.stage(STAGE_LOAD, async { Ok(()) }).await?;
        ctx.stage(STAGE_CLASSIFY, async {
            let _flag = DropFlag(p.dropped.clone());
            p.at_gate.fetch_add(1, Ordering::SeqCst);
            p.gate.acquire().await.expect("the gate is never closed").forget();
            p.past_gate.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await?;
        if self.fail {
            return Err(JobError::new(FailureCase::ProviderTimeout, "provider timed out (scripted)"));
        }
        ctx.stage(STAGE_APPLY, async {
            p.applied.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({ "attempt": ctx.attempt() }))
    }
}

/// The job's record now.
async fn record(store: &Store, job: &JobId) -> JobRecord {
    store.get_job(&tenant(), job).await.expect("read record").expect("record exists")
}

/// Asks storage to cancel `job` (as an operator would); it must be running, and now carries the
/// request.
async fn request_cancel_of_running(store: &Store, job: &JobId) {
    match store.cancel(&tenant(), job, "operator").await.expect("cancel") {
        WriteOutcome::Applied(r) if r.status == JobStatus::Running && r.cancel_requested_at.is_some() => {}
        other => panic!("expected a cancel request on a running job, got {other:?}"),
    }
}

/// Waits until the queue holds nothing for the job: no entry in the stream, none pending, no retry
/// waiting.
async fn wait_queue_empty(q: &TestQueue) {
    wait_until(Duration::from_secs(10), "the entry acknowledged and nothing scheduled", async || {
        let s = q.stats().await.expect("stats");
        if (s.stream_length, s.pending, s.delayed) == (0, 0, 0) { Ok(()) } else { Err(s) }
    })
    .await;
}

/// A queue whose lease outlives the test, served by workers whose heartbeat comes once at start
/// and then not for a minute: a cancel request is only known to the executor from what storage
/// answers its writes.
fn without_heartbeat(consumer: &str) -> (impl FnOnce(&mut QueueConfig), WorkerSettings) {
    let queue = |c: &mut QueueConfig| c.lease = Duration::from_secs(120);
    (queue, WorkerSettings { heartbeat: Duration::from_secs(60), ..settings(consumer) })
}

both_backends!(a_running_job_is_stopped_and_cancelled_within_a_bound, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-40", "s", "b", 5).await;
    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(false), settings("w"));
    probe.wait_at_gate().await;

    let asked = Instant::now();
    request_cancel_of_running(&db, &job).await;
    // The heartbeat (every 100 ms) notices: well within a few seconds.
    let cancelled = wait_until(Duration::from_secs(3), "the job cancelled", async || {
        let r = record(&db, &job).await;
        if r.status == JobStatus::Cancelled { Ok(r) } else { Err((r.status, r.stage)) }
    })
    .await;
    let took = asked.elapsed();
    // The run had stopped before the job was written cancelled: its step was dropped mid-way, and
    // nothing ran after it.
    assert_eq!(Probe::count(&probe.dropped), 1, "the pipeline's run was not dropped (took {took:?})");
    assert_eq!(Probe::count(&probe.past_gate), 0, "the step went on");
    assert_eq!(Probe::count(&probe.applied), 0, "a step started after the cancel");
    assert_eq!(cancelled.attempts, 1);
    assert_eq!(cancelled.stage.as_deref(), Some(STAGE_CLASSIFY), "the progress made is kept");
    assert!(cancelled.cancel_requested_at.is_some() && cancelled.finished_at.is_some());
    assert_eq!((&cancelled.output, cancelled.error_class), (&None, None));

    wait_queue_empty(&q).await;
    let events = events_of(&q, &job).await;
    let last = events.last().expect("events");
    assert_eq!((last.kind, last.attempt), (EventKind::Cancelled, 1), "events: {events:?}");
    let audit = audit_actions(&db, &job).await;
    assert!(audit.ends_with(&["cancel_requested".to_owned(), "cancelled".to_owned()]), "audit: {audit:?}");

    // The run is gone: opening the gate lets nothing through.
    probe.gate.add_permits(1);
    worker.shutdown().await.expect("shutdown");
    assert_eq!((Probe::count(&probe.runs), Probe::count(&probe.past_gate)), (1, 0));
    assert_eq!(record(&db, &job).await, cancelled, "the record changed after it was cancelled");
});

both_backends!(a_job_cancelled_while_queued_never_runs, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let ticket = TicketId::parse("SUP-41").expect("ticket");
    let (job, revision) = store_ticket(&db, &ticket, "s", "b").await;
    record_job(&db, &job, &ticket, revision, 5).await;
    match db.cancel(&tenant(), &job, "operator").await.expect("cancel") {
        WriteOutcome::Applied(r) if r.status == JobStatus::Cancelled => {}
        other => panic!("a queued job is cancelled at once, got {other:?}"),
    }
    // Its entry was already on its way (enqueued before the cancel reached storage).
    q.enqueue(&entry(&job)).await.expect("enqueue");

    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(false), settings("w"));
    wait_queue_empty(&q).await;
    worker.shutdown().await.expect("shutdown");

    assert_eq!(Probe::count(&probe.runs), 0, "a cancelled job ran");
    let after = record(&db, &job).await;
    assert_eq!((after.status, after.attempts, after.started_at), (JobStatus::Cancelled, 0, None));
    let audit = audit_actions(&db, &job).await;
    assert!(!audit.iter().any(|a| a == "started"), "audit: {audit:?}");
    assert_eq!(audit.last().map(String::as_str), Some("cancelled"), "audit: {audit:?}");
    assert_eq!(events_of(&q, &job).await, Vec::new(), "the worker reported on a job it never ran");
});

both_backends!(a_failure_after_a_cancel_request_is_cancelled_not_retried, |backend| async move {
    let db = test_db(backend).await;
    let (queue, settings) = without_heartbeat("w");
    let q = TestQueue::new(queue).await;
    let job = submit(&db, &q, "SUP-42", "s", "b", 5).await;
    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(true), settings);
    probe.wait_at_gate().await;
    request_cancel_of_running(&db, &job).await;
    // The run fails retryably before the worker hears of the cancel: storage refuses the retry.
    probe.gate.add_permits(1);

    let cancelled = wait_status(&db, &job, JobStatus::Cancelled).await;
    wait_queue_empty(&q).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((Probe::count(&probe.runs), Probe::count(&probe.past_gate)), (1, 1));
    assert_eq!((cancelled.attempts, cancelled.next_attempt_at), (1, None));
    let audit = audit_actions(&db, &job).await;
    assert!(!audit.iter().any(|a| a == "retry_scheduled"), "audit: {audit:?}");
    assert!(audit.ends_with(&["cancel_requested".to_owned(), "cancelled".to_owned()]), "audit: {audit:?}");
    let kinds: Vec<EventKind> = events_of(&q, &job).await.into_iter().map(|e| e.kind).collect();
    assert!(!kinds.contains(&EventKind::Retrying), "events: {kinds:?}");
    assert_eq!(kinds.last(), Some(&EventKind::Cancelled), "events: {kinds:?}");
});

both_backends!(a_run_that_completes_before_the_cancel_is_noticed_stays_completed, |backend| async move {
    let db = test_db(backend).await;
    let (queue, settings) = without_heartbeat("w");
    let q = TestQueue::new(queue).await;
    let job = submit(&db, &q, "SUP-43", "s", "b", 5).await;
    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(false), settings);
    probe.wait_at_gate().await;
    request_cancel_of_running(&db, &job).await;
    probe.gate.add_permits(1);

    let done = wait_status(&db, &job, JobStatus::Completed).await;
    wait_queue_empty(&q).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, done.output), (1, Some(serde_json::json!({ "attempt": 1 }))));
    assert_eq!(Probe::count(&probe.applied), 1);
    assert_eq!(record(&db, &job).await.status, JobStatus::Completed, "the completion did not stand");
    let audit = audit_actions(&db, &job).await;
    assert!(!audit.iter().any(|a| a == "cancelled"), "audit: {audit:?}");
    assert!(audit.ends_with(&["cancel_requested".to_owned(), "completed".to_owned()]), "audit: {audit:?}");
    let kinds: Vec<EventKind> = events_of(&q, &job).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last(), Some(&EventKind::Completed), "events: {kinds:?}");
});

both_backends!(a_takeover_of_an_attempt_whose_cancel_was_requested_ends_it_unrun, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-44", "s", "b", 5).await;
    // A worker took the entry, started attempt 1, and died; then a cancel was requested.
    let mut ghost = q.consumer("ghost").expect("consumer");
    let held = ghost.fetch(1, Duration::from_millis(1)).await.expect("fetch").remove(0);
    db.start_next(&tenant(), &job, Lease { entry: held.id.clone(), delivery: 1 }, 1).await.expect("start");
    request_cancel_of_running(&db, &job).await;

    // A live worker reclaims the entry once its lease runs out: the takeover starts attempt 2,
    // which ends the job at once instead of running it.
    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(false), settings("w"));
    let cancelled = wait_status(&db, &job, JobStatus::Cancelled).await;
    wait_queue_empty(&q).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(Probe::count(&probe.runs), 0, "a job whose cancel was requested ran again");
    assert_eq!(cancelled.attempts, 2);
    let last = events_of(&q, &job).await.pop().expect("an event");
    assert_eq!((last.kind, last.attempt), (EventKind::Cancelled, 2));
});

/// Refuses new connections to database `name` and ends every session on it but the one whose
/// backend is `keep` (a PostgreSQL outage for everyone else); `None` ends the outage.
async fn outage(name: &str, keep: Option<i32>) {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(&longhaul_testkit::pg_admin_url()).await.expect("admin");
    let sql = format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {}", keep.is_none());
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut admin).await.expect("alter database");
    if let Some(keep) = keep {
        let kill = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> {keep}"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(kill)).execute(&mut admin).await.expect("terminate");
    }
}

/// A cancel request that reaches storage as it becomes unreachable to the worker: while the worker
/// cannot ask, nothing is cancelled and the entry is held (leased, delivered once); once storage is
/// back, the next heartbeat finds the request and the job is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancel_request_the_worker_cannot_see_during_an_outage_is_carried_out_after_it() {
    use sqlx::Connection as _;
    let db = test_db(Backend::Postgres).await;
    let name = db.url.rsplit('/').next().expect("database name").to_owned();
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-45", "s", "b", 5).await;
    let probe = Probe::new();
    let worker = spawn_worker(&db, &q, probe.pipeline(false), settings("w"));
    probe.wait_at_gate().await;

    // The operator's session survives the outage that cuts the worker off, and records the request.
    let mut operator = sqlx::PgConnection::connect(&db.url).await.expect("operator session");
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut operator).await.expect("pid");
    outage(&name, Some(pid)).await;
    let requested = sqlx::query(
        "UPDATE jobs SET cancel_requested_at = now(), updated_at = now() WHERE job_id = $1 AND status = 'running'",
    )
    .bind(job.as_str())
    .execute(&mut operator)
    .await
    .expect("request the cancel");
    assert_eq!(requested.rows_affected(), 1);

    // Ten leases of outage: the run goes on, the entry stays this worker's, delivered once.
    let deadline = Instant::now() + Duration::from_millis(400) * 10;
    while Instant::now() < deadline {
        assert_eq!(q.stats().await.expect("stats").stream_length, 1, "acknowledged during the outage");
        for p in q.pending("-", "+").await {
            assert_eq!((p.consumer.as_str(), p.deliveries), ("w", 1), "entry {} changed hands", p.id);
        }
        assert_eq!(Probe::count(&probe.dropped), 0, "stopped without storage saying so");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(operator);
    outage(&name, None).await;

    let cancelled = wait_status(&db, &job, JobStatus::Cancelled).await;
    wait_queue_empty(&q).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(cancelled.attempts, 1);
    assert_eq!(Probe::count(&probe.dropped), 1, "the run was not dropped");
    assert_eq!((Probe::count(&probe.past_gate), Probe::count(&probe.applied)), (0, 0));
    let last = events_of(&q, &job).await.pop().expect("an event");
    assert_eq!(last.kind, EventKind::Cancelled);
}
