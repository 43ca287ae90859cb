//! Workers that die or stop mid-job: nothing is lost, nothing is done twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use longhaul_core::{Ctx, JobError, JobKind, JobStatus, KindOptions, OperationId, Pipeline};
use longhaul_triage::{RuleClassifier, TriageInput};
use tokio::sync::Notify;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

/// Runs the inner pipeline; on attempt 1 it then hangs forever — the process dies after the side
/// effects and before the outcome is recorded or the entry acknowledged.
struct HangAfterFirstRun<P> {
    inner: P,
}

impl<P: Pipeline> Pipeline for HangAfterFirstRun<P> {
    type Kind = P::Kind;
    async fn run(
        &self,
        ctx: &Ctx,
        input: <P::Kind as JobKind>::Input,
    ) -> Result<<P::Kind as JobKind>::Output, JobError> {
        let out = self.inner.run(ctx, input).await?;
        if ctx.attempt() == 1 {
            std::future::pending::<()>().await;
        }
        Ok(out)
    }
}

both_backends!(side_effects_happen_once_when_a_worker_dies_before_the_ack, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(200)).mount(&receiver).await;
    ensure_tenant(&db, Some(&format!("{}/hooks/triage", receiver.uri()))).await;
    let job = submit(&db, &q, "SUP-10", "Refund", "Charged twice", 5).await;

    let first = spawn_killable(
        &db.url,
        &longhaul_testkit::redis_url(),
        q.config().clone(),
        |store| HangAfterFirstRun { inner: triage(&store, RuleClassifier) },
        settings("doomed"),
    );
    // Kill it once the delivery is recorded in the operation log (after the effect, before the
    // outcome and the ack). A kill between the receiver's answer and that record would make the
    // survivor deliver again with the same Idempotency-Key — the receiver's dedupe window, covered
    // by the end-to-end SIGKILL test.
    let op = OperationId::derive(&job, "apply", "webhook");
    wait_until(Duration::from_secs(10), "the webhook delivery recorded", async || {
        match db.get_operation(&tenant(), &op).await.expect("operation") {
            Some(longhaul_core::OperationState::Done { .. }) => Ok(()),
            other => Err(other),
        }
    })
    .await;
    first.kill();
    let before = db.get_job(&tenant(), &job).await.expect("read").expect("exists");
    assert_eq!((before.status, before.attempts), (JobStatus::Running, 1), "died mid-job");

    let survivor =
        spawn_worker(&db, &q, HangAfterFirstRun { inner: triage(&db, RuleClassifier) }, settings("survivor"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.attempts, 2, "the reclaimed job ran as attempt 2");
    survivor.shutdown().await.expect("shutdown");

    let requests = receiver.received_requests().await.expect("recorded requests");
    assert_eq!(requests.len(), 1, "exactly one delivery");
    let key = requests[0].headers.get("idempotency-key").expect("idempotency key").to_str().expect("ascii");
    assert_eq!(key, OperationId::derive(&job, "apply", "webhook").as_str());
    assert_eq!(done.output.expect("output")["webhook"]["delivered"], true, "the stored result was reused");
});

/// Hangs on attempt 1 before doing anything; completes later attempts.
struct HangFirstAttempt;

impl Pipeline for HangFirstAttempt {
    type Kind = TestTriage;
    async fn run(&self, ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        if ctx.attempt() == 1 {
            std::future::pending::<()>().await;
        }
        Ok(serde_json::json!({ "attempt": ctx.attempt() }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_a_dead_worker_is_reclaimed_and_completed() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-11", "s", "b", 5).await;
    let doomed = spawn_killable(
        &db.url,
        &longhaul_testkit::redis_url(),
        q.config().clone(),
        |_| HangFirstAttempt,
        settings("doomed"),
    );
    wait_status(&db, &job, JobStatus::Running).await;
    doomed.kill();
    let survivor = spawn_worker(&db, &q, HangFirstAttempt, settings("survivor"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.output, Some(serde_json::json!({ "attempt": 2 })));
    survivor.shutdown().await.expect("shutdown");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending), (0, 0));
}

/// Counts its runs.
struct Counting {
    runs: Arc<AtomicU32>,
}

impl Pipeline for Counting {
    type Kind = TestTriage;
    async fn run(&self, _ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(serde_json::json!({}))
    }
}

both_backends!(an_entry_of_a_finished_job_is_acked_without_running, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-12", "s", "b", 5).await;
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, Counting { runs: runs.clone() }, settings("w1"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    // Storage is written before the entry is acked: wait for the ack to drop the job's trace.
    wait_until(Duration::from_secs(10), "the entry acknowledged", async || {
        if q.has_trace(&job).await.expect("trace") { Err("trace") } else { Ok(()) }
    })
    .await;
    // A late duplicate entry (a reconciler race, a replayed enqueue).
    assert!(q.enqueue(&entry(&job)).await.expect("enqueue"));
    wait_until(Duration::from_secs(10), "the duplicate acknowledged", async || {
        let s = q.stats().await.expect("stats");
        if s.stream_length == 0 && s.pending == 0 { Ok(()) } else { Err(s) }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "ran once");
    assert_eq!(db.get_job(&tenant(), &job).await.expect("read"), Some(done), "record unchanged");
});

/// Waits for the test's signal before finishing.
struct Gated {
    gate: Arc<Notify>,
}

impl Pipeline for Gated {
    type Kind = TestTriage;
    async fn run(&self, _ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        self.gate.notified().await;
        Ok(serde_json::json!({ "gated": true }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_lets_in_flight_jobs_finish() {
    let db = test_db(Backend::Sqlite).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-13", "s", "b", 5).await;
    let gate = Arc::new(Notify::new());
    let worker = spawn_worker(&db, &q, Gated { gate: gate.clone() }, settings("w1"));
    wait_status(&db, &job, JobStatus::Running).await;
    worker.stop.cancel(); // SIGTERM
    gate.notify_one();
    worker.handle.await.expect("task").expect("clean exit");
    let done = db.get_job(&tenant(), &job).await.expect("read").expect("exists");
    assert_eq!(done.status, JobStatus::Completed);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_leaves_unfinished_jobs_pending_after_the_grace_period() {
    let db = test_db(Backend::Sqlite).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-14", "s", "b", 5).await;
    let mut s = settings("w1");
    s.shutdown_grace = Duration::from_millis(300);
    let gate = Arc::new(Notify::new());
    let worker = spawn_worker(&db, &q, Gated { gate: gate.clone() }, s);
    wait_status(&db, &job, JobStatus::Running).await;
    let started = Instant::now();
    worker.shutdown().await.expect("clean exit");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped within the grace period: {:?}",
        started.elapsed()
    );
    let stats = q.stats().await.expect("stats");
    assert_eq!(stats.pending, 1, "left pending for another worker");
    // Another worker picks it up after the lease and completes it.
    gate.notify_waiters();
    let next = spawn_worker(&db, &q, Counting { runs: Arc::new(AtomicU32::new(0)) }, settings("w2"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.attempts, 2);
    next.shutdown().await.expect("shutdown");
}

/// Waits for the gate on attempt 1 only.
struct GatedFirstAttempt {
    gate: Arc<Notify>,
}

impl Pipeline for GatedFirstAttempt {
    type Kind = TestTriage;
    async fn run(&self, ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        if ctx.attempt() == 1 {
            self.gate.notified().await;
        }
        Ok(serde_json::json!({ "attempt": ctx.attempt() }))
    }
}

/// Item 2 of the correctness issue: an outage of many leases costs no delivery and fails nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_of_many_leases_holds_entries_and_fails_nothing() {
    let db = test_db(Backend::Postgres).await;
    // The default delivery limit, and a lease of 400 ms: the outage below lasts ten leases.
    let q = TestQueue::new(fast_queue).await;
    assert_eq!(q.config().max_deliveries, longhaul_queue::QueueConfig::default().max_deliveries);
    let job = submit(&db, &q, "SUP-15", "s", "b", 5).await;
    let gate = Arc::new(Notify::new());
    let w1 = spawn_worker(&db, &q, GatedFirstAttempt { gate: gate.clone() }, settings("w1"));
    let w2 = spawn_worker(&db, &q, GatedFirstAttempt { gate: gate.clone() }, settings("w2"));
    wait_status(&db, &job, JobStatus::Running).await;
    // Two more jobs whose entries arrive while the database is down: their starts cannot be written.
    let later = [submit(&db, &q, "SUP-16", "s", "b", 5).await, submit(&db, &q, "SUP-17", "s", "b", 5).await];

    db.set_reachable(false).await;
    gate.notify_waiters(); // the running attempt finishes while its outcome cannot be written
    // Every entry stays pending, delivered once, for as long as the outage lasts.
    let outage = Duration::from_millis(400) * 10;
    let deadline = Instant::now() + outage;
    while Instant::now() < deadline {
        let s = q.stats().await.expect("stats");
        assert_eq!(s.stream_length, 3, "acked an outcome that was never recorded");
        for p in q.pending("-", "+").await {
            assert_eq!(p.deliveries, 1, "entry {} was delivered again during the outage", p.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.set_reachable(true).await;

    // Back: the held attempt's outcome is written, the held starts go through.
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!((done.attempts, done.output), (1, Some(serde_json::json!({ "attempt": 1 }))));
    for j in &later {
        let r = wait_status(&db, j, JobStatus::Completed).await;
        assert_eq!((r.attempts, r.error_message), (1, None), "no attempt or delivery was lost to the outage");
    }
    w1.shutdown().await.expect("shutdown");
    w2.shutdown().await.expect("shutdown");
    let s = q.stats().await.expect("stats");
    assert_eq!((s.stream_length, s.pending), (0, 0));
}

/// Runs one durable step in the load stage once the gate opens (attempt 1 waits for it), counting
/// the step's runs.
struct GatedStep<K = TestTriage> {
    gate: Arc<Notify>,
    runs: Arc<AtomicU32>,
    kind: std::marker::PhantomData<fn() -> K>,
}

impl<K> GatedStep<K> {
    fn new(gate: Arc<Notify>, runs: Arc<AtomicU32>) -> Self {
        Self { gate, runs, kind: std::marker::PhantomData }
    }
}

impl<K: JobKind<Input = TriageInput, Output = serde_json::Value>> Pipeline for GatedStep<K> {
    type Kind = K;
    async fn run(&self, ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        if ctx.attempt() == 1 {
            self.gate.notified().await;
        }
        ctx.stage(longhaul_triage::STAGE_LOAD, async {
            let n: u32 = ctx
                .effect("notify", |_op| async { Ok(self.runs.fetch_add(1, Ordering::SeqCst) + 1) })
                .await?;
            Ok(serde_json::json!({ "attempt": ctx.attempt(), "run": n }))
        })
        .await
    }
}

/// The triage kind with a stage timeout of one second: a quarter of the outage below.
struct ShortStages;

impl JobKind for ShortStages {
    const NAME: &'static str = longhaul_triage::KIND;
    type Input = TriageInput;
    type Output = serde_json::Value;

    fn options() -> KindOptions {
        longhaul_triage::Triage::options().with_stage_timeout(Duration::from_secs(1))
    }
}

/// A durable step whose operation-log write meets a storage outage waits for storage instead of
/// failing its attempt: the outage (ten leases) spends no attempt and no delivery, and the step's
/// effect runs once, after the outage, with its begin committed before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_durable_step_waits_through_an_outage_and_spends_no_attempt() {
    durable_step_through_an_outage::<TestTriage>().await;
}

/// As above with a stage timeout of a quarter of the outage: the stage's timer is paused while the
/// step waits for storage, so the outage still spends no attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_longer_than_the_stage_timeout_spends_no_attempt() {
    durable_step_through_an_outage::<ShortStages>().await;
}

async fn durable_step_through_an_outage<K: JobKind<Input = TriageInput, Output = serde_json::Value>>() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-18", "s", "b", 5).await;
    let gate = Arc::new(Notify::new());
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, GatedStep::<K>::new(gate.clone(), runs.clone()), settings("w1"));
    wait_status(&db, &job, JobStatus::Running).await;

    db.set_reachable(false).await;
    gate.notify_one(); // the step begins while its begin cannot be written (a permit, should it not wait yet)
    let outage = Duration::from_millis(400) * 10;
    let deadline = Instant::now() + outage;
    while Instant::now() < deadline {
        assert_eq!(runs.load(Ordering::SeqCst), 0, "the effect ran before its begin was committed");
        for p in q.pending("-", "+").await {
            assert_eq!(p.deliveries, 1, "entry {} was delivered again during the outage", p.id);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.set_reachable(true).await;

    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(
        (done.attempts, done.error_message, done.output),
        (1, None, Some(serde_json::json!({ "attempt": 1, "run": 1 }))),
        "the outage spent no attempt"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the effect ran once");
    let op = OperationId::derive(&job, longhaul_triage::STAGE_LOAD, "notify");
    let state = db.get_operation(&tenant(), &op).await.expect("operation");
    assert_eq!(state, Some(longhaul_core::OperationState::Done { result: serde_json::json!(1) }));
}
