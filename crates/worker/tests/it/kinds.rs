//! Job kinds through a running worker: one lane per queue (a slow kind never holds up a fast one),
//! a kind's stage timeout and deadline, a record of a kind the worker has no pipeline for (retried), durable
//! steps across a retry, the input a pipeline runs with (the record's), and the summarize kind
//! delivering to its tenant's stored webhook.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use longhaul_core::{
    Ctx, ErrorClass, FailureCase, JobError, JobId, JobKind, JobStatus, KindOptions, NewJob, OperationId,
    OperationState, Pipeline, Registry, Stage,
};
use longhaul_providers::HttpWebhook;
use longhaul_queue::EventKind;
use longhaul_summarize::{Summarize, SummarizeInput, SummarizePipeline};
use longhaul_worker::Lane;
use longhaul_worker::startup::StoredTenantWebhooks;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::harness::*;

/// The one stage of the test kinds here.
const WORK: &str = "work";
const ONE_STAGE: &[Stage] = &[Stage::new(WORK, 1)];

/// A test kind's input: `{"n": <number>}`, so that every job tells which it is.
fn nth(n: usize) -> Value {
    json!({ "n": n })
}

/// Declares a test kind `$kind` named `$name` with input `$input` and options `$options`.
macro_rules! test_kind {
    ($kind:ident, $name:literal, $input:ty, $options:expr) => {
        struct $kind;

        impl JobKind for $kind {
            const NAME: &'static str = $name;
            type Input = $input;
            type Output = Value;

            fn options() -> KindOptions {
                $options
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Lanes

test_kind!(Slow, "slow", Value, KindOptions::new("slow-lane", ONE_STAGE));
test_kind!(Fast, "fast", Value, KindOptions::new("fast-lane", ONE_STAGE));

/// Holds every job at a gate (one permit lets one job through), counting the jobs it holds at
/// once.
struct SlowPipeline {
    gate: Arc<Semaphore>,
    held: Arc<AtomicU32>,
    most_held: Arc<AtomicU32>,
}

impl Pipeline for SlowPipeline {
    type Kind = Slow;
    async fn run(&self, ctx: &Ctx, input: Value) -> Result<Value, JobError> {
        ctx.stage(WORK, async {
            let now = self.held.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_held.fetch_max(now, Ordering::SeqCst);
            self.gate.acquire().await.expect("the gate is never closed").forget();
            self.held.fetch_sub(1, Ordering::SeqCst);
            Ok(input)
        })
        .await
    }
}

/// Returns at once.
struct FastPipeline;

impl Pipeline for FastPipeline {
    type Kind = Fast;
    async fn run(&self, ctx: &Ctx, input: Value) -> Result<Value, JobError> {
        ctx.stage(WORK, async { Ok(input) }).await
    }
}

both_backends!(a_slow_kind_never_holds_up_a_fast_one, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let slow_q = q.sibling(Slow::options().queue).expect("slow queue");
    let fast_q = q.sibling(Fast::options().queue).expect("fast queue");
    let mut slow = Vec::new();
    for n in 0..3 {
        slow.push(submit_kind::<Slow>(&db, &slow_q, &nth(n), 5).await);
    }
    let (gate, held, most_held) = (Arc::new(Semaphore::new(0)), Arc::default(), Arc::new(AtomicU32::new(0)));
    let registry = Registry::new()
        .pipeline(SlowPipeline { gate: gate.clone(), held, most_held: most_held.clone() })
        .and_then(|r| r.pipeline(FastPipeline))
        .expect("registry");
    let lanes =
        vec![Lane { queue: slow_q.clone(), concurrency: 1 }, Lane { queue: fast_q.clone(), concurrency: 2 }];
    let worker = spawn_lanes(&db, lanes, registry, settings("w"));
    // The slow lane is full: its first job is held at the gate, the others wait in its queue.
    wait_status(&db, &slow[0], JobStatus::Running).await;

    let mut fast = Vec::new();
    for n in 0..5 {
        fast.push(submit_kind::<Fast>(&db, &fast_q, &nth(n), 5).await);
    }
    for (n, job) in fast.iter().enumerate() {
        let done = wait_status(&db, job, JobStatus::Completed).await;
        assert_eq!(done.output, Some(nth(n)));
    }
    // Every fast job is done while the slow lane still holds its first job, one at a time.
    let first = db.get_job(&tenant(), &slow[0]).await.expect("read").expect("slow job");
    assert_eq!((first.status, first.attempts), (JobStatus::Running, 1), "{first:?}");
    for job in &slow[1..] {
        let waiting = db.get_job(&tenant(), job).await.expect("read").expect("slow job");
        assert_eq!((waiting.status, waiting.attempts), (JobStatus::Queued, 0), "{waiting:?}");
    }

    gate.add_permits(slow.len());
    for (n, job) in slow.iter().enumerate() {
        let done = wait_status(&db, job, JobStatus::Completed).await;
        assert_eq!((done.attempts, done.output), (1, Some(nth(n))));
    }
    worker.shutdown().await.expect("shutdown");
    assert_eq!(most_held.load(Ordering::SeqCst), 1, "the slow lane ran more than one job at once");
    for lane in [&slow_q, &fast_q] {
        let s = lane.stats().await.expect("stats");
        assert_eq!((s.stream_length, s.pending), (0, 0), "queue {}", lane.name());
    }
});

// ---------------------------------------------------------------------------------------------
// Stage timeout

const STAGE_TIMEOUT: Duration = Duration::from_millis(300);

test_kind!(Sleepy, "sleepy", Value, KindOptions::new("sleepy", ONE_STAGE).with_stage_timeout(STAGE_TIMEOUT));

/// Its stage hangs on attempt 1 and returns at once on later attempts.
struct HangsOnce;

impl Pipeline for HangsOnce {
    type Kind = Sleepy;
    async fn run(&self, ctx: &Ctx, _input: Value) -> Result<Value, JobError> {
        ctx.stage(WORK, async {
            if ctx.attempt() == 1 {
                std::future::pending::<()>().await;
            }
            Ok(json!({ "attempt": ctx.attempt() }))
        })
        .await
    }
}

both_backends!(a_stage_past_its_timeout_is_retried, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit_kind::<Sleepy>(&db, &q, &nth(1), 5).await;
    let worker = spawn_worker(&db, &q, HangsOnce, settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, done.output), (2, Some(json!({ "attempt": 2 }))));
    assert_eq!((done.error_class, done.error_message), (None, None));
    let audit = db.job_audit(&tenant(), &job).await.expect("audit");
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["enqueued", "started", "retry_scheduled", "started", "completed"]);
    let retry = &audit[2].detail;
    assert_eq!((retry["attempt"].as_u64(), retry["class"].as_str()), (Some(1), Some("retryable")), "{retry}");
    assert_eq!(retry["message"], format!("stage {WORK} ran longer than its timeout of {STAGE_TIMEOUT:?}"));
});

// ---------------------------------------------------------------------------------------------
// Deadline

const DEADLINE: Duration = Duration::from_secs(1);

test_kind!(Bounded, "bounded", Value, KindOptions::new("bounded", ONE_STAGE).with_deadline(DEADLINE));

/// Hangs in its stage for ever; counts its runs.
struct Hangs {
    runs: Arc<AtomicU32>,
}

impl Pipeline for Hangs {
    type Kind = Bounded;
    async fn run(&self, ctx: &Ctx, _input: Value) -> Result<Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ctx.stage(WORK, std::future::pending()).await
    }
}

both_backends!(a_job_running_past_its_deadline_fails_for_good, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let submitted = Instant::now();
    let job = submit_kind::<Bounded>(&db, &q, &nth(1), 5).await;
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, Hangs { runs: runs.clone() }, settings("w"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    let took = submitted.elapsed();
    worker.shutdown().await.expect("shutdown");
    assert!(took < DEADLINE + Duration::from_secs(4), "failed {took:?} after submission");
    let ran = (failed.finished_at.expect("finished") - failed.created_at).to_std().expect("after creation");
    assert!(ran >= DEADLINE, "failed before its deadline: {ran:?}");
    assert_eq!((failed.attempts, failed.error_class), (1, Some(ErrorClass::Invalid)));
    assert_eq!(
        failed.error_message.as_deref(),
        Some(format!("the job ran past its deadline of {DEADLINE:?} after submission").as_str())
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "never retried");
    assert_eq!(audit_actions(&db, &job).await, ["enqueued", "started", "failed"]);
    let s = q.stats().await.expect("stats");
    assert_eq!((s.stream_length, s.pending, s.delayed), (0, 0, 0));
});

/// Sets job `job`'s submission time to `ago` before now, directly in the database.
async fn backdate(db: &TestDb, job: &JobId, ago: Duration) {
    let at = chrono::Utc::now() - chrono::Duration::from_std(ago).expect("duration");
    let sql = "UPDATE jobs SET created_at = $1 WHERE job_id = $2";
    let changed = db.db().execute(sql, &[at.into(), job.as_str().into()]).await.expect("backdate");
    assert_eq!(changed, 1);
    let record = db.get_job(&tenant(), job).await.expect("read").expect("job");
    assert!((record.created_at - at).num_milliseconds().abs() < 1000, "{record:?}");
}

both_backends!(a_job_already_past_its_deadline_never_runs, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    // Queued for an hour (no worker served its queue), then picked up.
    let job = submit_kind::<Bounded>(&db, &q, &nth(1), 5).await;
    backdate(&db, &job, Duration::from_secs(3600)).await;
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, Hangs { runs: runs.clone() }, settings("w"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(runs.load(Ordering::SeqCst), 0, "ran past its deadline");
    assert_eq!(failed.error_class, Some(ErrorClass::Invalid));
    let message = failed.error_message.unwrap_or_default();
    assert!(message.starts_with(&format!("the job is past its deadline of {DEADLINE:?}")), "{message}");
    let s = q.stats().await.expect("stats");
    assert_eq!((s.stream_length, s.pending, s.delayed), (0, 0, 0));
});

const RETRY_DEADLINE: Duration = Duration::from_secs(20);

test_kind!(
    BoundedRetry,
    "bounded-retry",
    Value,
    KindOptions::new("bounded", ONE_STAGE).with_deadline(RETRY_DEADLINE)
);

/// Fails attempt 1 with a retryable error asking for the input's delay (`{"retry_after_ms": n}`;
/// none: the backoff's); completes later ones.
struct FailsOnceAfter {
    runs: Arc<AtomicU32>,
}

impl Pipeline for FailsOnceAfter {
    type Kind = BoundedRetry;
    async fn run(&self, ctx: &Ctx, input: Value) -> Result<Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        ctx.stage(WORK, async {
            if ctx.attempt() == 1 {
                let error = JobError::new(FailureCase::ProviderTimeout, "provider timed out");
                return Err(match input["retry_after_ms"].as_u64() {
                    Some(ms) => error.with_retry_after(Duration::from_millis(ms)),
                    None => error,
                });
            }
            Ok(json!({ "attempt": ctx.attempt() }))
        })
        .await
    }
}

both_backends!(a_retry_that_would_start_past_the_deadline_fails_instead, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let late = submit_kind::<BoundedRetry>(&db, &q, &json!({ "retry_after_ms": 60_000 }), 5).await;
    let soon = submit_kind::<BoundedRetry>(&db, &q, &json!({}), 5).await;
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, FailsOnceAfter { runs: runs.clone() }, settings("w"));
    let failed = wait_status(&db, &late, JobStatus::Failed).await;
    // A retry within the deadline still runs.
    let done = wait_status(&db, &soon, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, done.output), (2, Some(json!({ "attempt": 2 }))));
    assert_eq!((failed.attempts, failed.error_class), (1, Some(ErrorClass::Invalid)));
    assert_eq!(
        failed.error_message.as_deref(),
        Some(
            format!(
                "provider timed out (no retry: the next attempt would start past the job's deadline of {RETRY_DEADLINE:?})"
            )
            .as_str()
        )
    );
    assert_eq!(audit_actions(&db, &late).await, ["enqueued", "started", "failed"]);
    assert_eq!(runs.load(Ordering::SeqCst), 3, "the late job ran once, the other twice");
    let s = q.stats().await.expect("stats");
    assert_eq!((s.stream_length, s.pending, s.delayed), (0, 0, 0), "no retry left scheduled");
});

// ---------------------------------------------------------------------------------------------
// A kind without a pipeline here

/// Counts its runs.
struct CountingTriage {
    runs: Arc<AtomicU32>,
}

impl Pipeline for CountingTriage {
    type Kind = TestTriage;
    async fn run(&self, _ctx: &Ctx, _input: longhaul_triage::TriageInput) -> Result<Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(json!({ "ran": true }))
    }
}

both_backends!(a_job_of_a_kind_this_worker_does_not_run_is_retried_then_fails, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    ensure_tenant(&db, None).await;
    let mystery = JobId::derive(&tenant(), "mystery", &longhaul_core::JobKey::Derived("m-1".into()));
    let new = NewJob {
        job_id: mystery.clone(),
        tenant_id: tenant(),
        kind: "mystery".into(),
        key: "m-1".into(),
        input: json!({ "x": 1 }),
        max_attempts: 3,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    };
    db.create_pending(new).await.expect("record");
    q.enqueue(&entry_of(&mystery, "mystery")).await.expect("enqueue");
    // A job the worker does run, on the same queue, after it.
    let known = submit(&db, &q, "SUP-40", "s", "b", 5).await;
    let runs = Arc::new(AtomicU32::new(0));
    let worker = spawn_worker(&db, &q, CountingTriage { runs: runs.clone() }, settings("w"));
    let failed = wait_status(&db, &mystery, JobStatus::Failed).await;
    wait_status(&db, &known, JobStatus::Completed).await;
    // The failed job's entry is acknowledged and deleted, not left pending.
    wait_until(Duration::from_secs(10), "both entries acknowledged", async || {
        let s = q.stats().await.expect("stats");
        if (s.stream_length, s.pending, s.delayed) == (0, 0, 0) { Ok(()) } else { Err(s) }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    // Retried with backoff (a worker that runs the kind could have taken it), then failed once
    // its attempts were used up, naming the kind.
    assert_eq!((failed.attempts, failed.error_class), (3, Some(ErrorClass::Retryable)));
    let message = failed.error_message.unwrap_or_default();
    assert!(message.contains("no worker here runs kind \"mystery\""), "{message}");
    assert!(message.contains("gave up after 3 attempts"), "{message}");
    assert_eq!(runs.load(Ordering::SeqCst), 1, "only the known job ran");
    let events = events_of(&q, &mystery).await;
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::Retrying, EventKind::Retrying, EventKind::Failed], "{events:?}");
    assert!(!q.has_trace(&mystery).await.expect("trace"), "the job's presence key is released");
});

// ---------------------------------------------------------------------------------------------
// Durable steps across a retry

const STEPS: usize = 5;

test_kind!(Steps, "steps", Value, KindOptions::new("steps", ONE_STAGE));

/// Runs five durable steps, each counting its runs and returning `10 * step + attempt`; step 3
/// fails retryably on attempt 1 after its side effect.
struct FiveSteps {
    runs: Arc<[AtomicU32; STEPS]>,
}

impl Pipeline for FiveSteps {
    type Kind = Steps;
    async fn run(&self, ctx: &Ctx, _input: Value) -> Result<Value, JobError> {
        ctx.stage(WORK, async {
            let mut results = Vec::new();
            for step in 1..=STEPS {
                let runs = &self.runs[step - 1];
                let result: u32 = ctx
                    .effect(&format!("step-{step}"), |_op| async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        if step == 3 && ctx.attempt() == 1 {
                            return Err(JobError::new(FailureCase::ProviderUnavailable, "step 3 failed"));
                        }
                        Ok(10 * step as u32 + ctx.attempt())
                    })
                    .await?;
                results.push(result);
            }
            Ok(json!({ "results": results }))
        })
        .await
    }
}

both_backends!(durable_steps_run_once_across_a_retry, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit_kind::<Steps>(&db, &q, &nth(1), 5).await;
    let runs: Arc<[AtomicU32; STEPS]> = Arc::new(Default::default());
    let worker = spawn_worker(&db, &q, FiveSteps { runs: runs.clone() }, settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!(done.attempts, 2);
    let counts: Vec<u32> = runs.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert_eq!(counts, [1, 1, 2, 1, 1], "each step's side effect ran once, the failed one twice");
    // Steps 1 and 2 kept attempt 1's results; 3 to 5 ran in attempt 2.
    let results = [11, 21, 32, 42, 52];
    assert_eq!(done.output, Some(json!({ "results": results })));
    for (i, result) in results.iter().enumerate() {
        let op = OperationId::derive(&job, WORK, &format!("step-{}", i + 1));
        let state = db.get_operation(&tenant(), &op).await.expect("operation");
        assert_eq!(state, Some(OperationState::Done { result: json!(result) }), "step {}", i + 1);
    }
});

// ---------------------------------------------------------------------------------------------
// The input a pipeline runs with

test_kind!(Echo, "echo", SummarizeInput, KindOptions::new("echo", ONE_STAGE));
test_kind!(Decoy, "decoy", Value, KindOptions::new("echo", ONE_STAGE));

/// Returns what it ran with.
struct EchoPipeline;

impl Pipeline for EchoPipeline {
    type Kind = Echo;
    async fn run(&self, ctx: &Ctx, input: SummarizeInput) -> Result<Value, JobError> {
        ctx.stage(WORK, async {
            Ok(json!({
                "input": input,
                "key": ctx.key(),
                "job_id": ctx.job_id(),
                "tenant_id": ctx.tenant_id(),
                "kind": ctx.job().kind,
            }))
        })
        .await
    }
}

/// Counts its runs.
struct DecoyPipeline {
    runs: Arc<AtomicU32>,
}

impl Pipeline for DecoyPipeline {
    type Kind = Decoy;
    async fn run(&self, _ctx: &Ctx, _input: Value) -> Result<Value, JobError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Ok(json!({ "decoy": true }))
    }
}

both_backends!(a_pipeline_runs_with_the_input_and_kind_of_the_record, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let a = SummarizeInput {
        document_id: "doc-1".into(),
        text: "Quarterly report: revenue grew 12 % — “strong” demand in the EU.".into(),
        chunk_chars: Some(400),
    };
    let b = SummarizeInput { document_id: "doc-2".into(), text: "Minutes.".into(), chunk_chars: None };
    let job_a = submit_kind::<Echo>(&db, &q, &a, 5).await;
    // Job b's entry names another kind the worker runs: the record's kind is what runs.
    let job_b = record_kind::<Echo>(&db, &b, 5).await;
    q.enqueue(&entry_of(&job_b, Decoy::NAME)).await.expect("enqueue");
    let decoy_runs = Arc::new(AtomicU32::new(0));
    let registry = Registry::new()
        .pipeline(EchoPipeline)
        .and_then(|r| r.pipeline(DecoyPipeline { runs: decoy_runs.clone() }))
        .expect("registry");
    let worker = spawn_registry(&db, &q, registry, settings("w"));
    for (job, input) in [(&job_a, &a), (&job_b, &b)] {
        let done = wait_status(&db, job, JobStatus::Completed).await;
        let output = done.output.clone().expect("output");
        assert_eq!(output["input"], done.input, "the record's input");
        assert_eq!(output["input"], serde_json::to_value(input).expect("json"));
        assert_eq!(output["key"].as_str(), done.key.as_deref(), "the record's key");
        assert_eq!(
            (output["job_id"].as_str(), output["tenant_id"].as_str()),
            (Some(job.as_str()), Some("acme"))
        );
        assert_eq!(output["kind"], Echo::NAME);
    }
    worker.shutdown().await.expect("shutdown");
    assert_eq!(decoy_runs.load(Ordering::SeqCst), 0, "the entry's kind ran");
});

// ---------------------------------------------------------------------------------------------
// Summarize delivers to the tenant's stored webhook

/// The summarize pipeline as the shipped worker builds it: offline summarizer, HTTP webhook, the
/// tenants' webhooks read from `store`.
fn stored_summarize(store: &longhaul_store::Store) -> Registry {
    let webhook = HttpWebhook::new(Duration::from_secs(5)).expect("webhook");
    let pipeline = SummarizePipeline::new(
        longhaul_summarize::Provider::default(),
        webhook,
        StoredTenantWebhooks(store.clone()),
    );
    Registry::new().pipeline(pipeline).expect("registry")
}

fn minutes(id: &str) -> SummarizeInput {
    SummarizeInput {
        document_id: id.into(),
        text: "The board met on Monday. The budget was approved. The next meeting is in May.".into(),
        chunk_chars: None,
    }
}

both_backends!(a_summary_is_delivered_to_the_webhook_stored_for_its_tenant, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/tenant-hook"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&receiver)
        .await;
    ensure_tenant(&db, Some(&format!("{}/tenant-hook", receiver.uri()))).await;
    let job = submit_kind::<Summarize>(&db, &q, &minutes("minutes-1"), 5).await;
    let worker = spawn_registry(&db, &q, stored_summarize(&db), settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");

    let output = done.output.expect("output");
    assert_eq!(output["webhook"], json!({"delivered": true, "response_bytes": 0}), "{output}");
    let requests = receiver.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "delivered once, to the tenant's URL");
    let op = OperationId::derive(&job, "deliver", "webhook");
    assert_eq!(
        requests[0].headers.get("idempotency-key").map(|v| v.to_str().expect("ascii")),
        Some(op.as_str())
    );
    let body: Value = requests[0].body_json().expect("json");
    assert_eq!(
        (
            body["event"].as_str(),
            body["tenant_id"].as_str(),
            body["job_id"].as_str(),
            body["document_id"].as_str()
        ),
        (Some("document.summarized"), Some("acme"), Some(job.as_str()), Some("minutes-1"))
    );
    assert_eq!(body["summary"], output["summary"]);
});

both_backends!(a_tenant_without_a_stored_webhook_gets_no_delivery, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    ensure_tenant(&db, None).await;
    let job = submit_kind::<Summarize>(&db, &q, &minutes("minutes-2"), 5).await;
    let worker = spawn_registry(&db, &q, stored_summarize(&db), settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    let output = done.output.expect("output");
    assert_eq!(output["webhook"], Value::Null, "{output}");
    assert_eq!(output["summary"], "The board met on Monday.", "summarized all the same: {output}");
    let op = OperationId::derive(&job, "deliver", "webhook");
    assert!(
        db.get_operation(&tenant(), &op).await.expect("read operation").is_none(),
        "no webhook step was begun"
    );
});

// ---------------------------------------------------------------------------------------------
// A deadline past what a timestamp holds: no deadline (it once panicked the executor, leaving the
// job running for ever)

test_kind!(
    Unbounded,
    "unbounded",
    Value,
    KindOptions::new("unbounded", ONE_STAGE).with_deadline(Duration::MAX)
);

/// Fails attempt 1 retryably, completes later ones.
struct FailsOnce;

impl Pipeline for FailsOnce {
    type Kind = Unbounded;
    async fn run(&self, ctx: &Ctx, _input: Value) -> Result<Value, JobError> {
        ctx.stage(WORK, async {
            if ctx.attempt() == 1 {
                return Err(JobError::new(FailureCase::ProviderTimeout, "provider timed out"));
            }
            Ok(json!({ "attempt": ctx.attempt() }))
        })
        .await
    }
}

both_backends!(a_deadline_too_far_to_reach_is_no_deadline, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit_kind::<Unbounded>(&db, &q, &nth(1), 5).await;
    let worker = spawn_worker(&db, &q, FailsOnce, settings("w"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    worker.shutdown().await.expect("shutdown");
    assert_eq!((done.attempts, done.output), (2, Some(json!({ "attempt": 2 }))));
});
