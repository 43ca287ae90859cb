//! Success, retries, failures, alerts and progress, through a running worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use longhaul_core::{Ctx, ErrorClass, FailureCase, JobError, JobStatus, Pipeline, Progress, TicketId};
use longhaul_queue::EventKind;
use longhaul_triage::{RuleClassifier, TriageInput};
use tokio::sync::Notify;

use crate::harness::*;

both_backends!(success_writes_completed_status_and_output, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-1", "Refund please", "I was charged twice for my subscription", 5).await;
    let worker = spawn_worker(&db, &q, triage(&db, RuleClassifier), settings("w1"));

    let done = wait_status(&db, &job, JobStatus::Completed).await;
    let output = done.output.clone().expect("output");
    assert_eq!(output["classification"]["category"], "billing");
    assert_eq!(output["classification"]["priority"], "high");
    assert_eq!((done.attempts, done.progress, done.error_message.clone()), (1, Progress::DONE, None));
    assert!(done.started_at.is_some() && done.finished_at.is_some());
    let ticket_id: TicketId = serde_json::from_value(done.input["ticket_id"].clone()).expect("ticket id");
    assert_eq!(ticket_id.as_str(), "SUP-1");
    let ticket = longhaul_triage::storage::get_ticket(&db, &tenant(), &ticket_id)
        .await
        .expect("ticket")
        .expect("exists");
    assert_eq!(ticket.triage.expect("triage applied")["classification"]["category"], "billing");
    let audit: Vec<_> =
        db.job_audit(&tenant(), &job).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(audit, ["enqueued", "started", "completed"]);

    worker.shutdown().await.expect("clean shutdown");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending), (0, 0), "acked and deleted");
    let kinds: Vec<_> = events_of(&q, &job).await.into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds.last(), Some(&EventKind::Completed));
});

both_backends!(retryable_failures_back_off_then_succeed, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-2", "App crash", "It crashes", 5).await;
    let classifier = FlakyClassifier::new(2, FailureCase::ProviderTimeout);
    let mut s = settings("w1");
    s.backoff_base = Duration::from_millis(400);
    s.backoff_cap = Duration::from_millis(400);
    let worker = spawn_worker(&db, &q, triage(&db, classifier.clone()), s);

    // Between attempts the record says queued, with attempts, next_attempt_at and the last error.
    let waiting = wait_until(Duration::from_secs(10), "a scheduled retry", async || {
        let r = db.get_job(&tenant(), &job).await.expect("read").expect("exists");
        if r.status == JobStatus::Queued && r.attempts >= 1 { Ok(r) } else { Err((r.status, r.attempts)) }
    })
    .await;
    assert!(waiting.next_attempt_at.is_some(), "{waiting:?}");
    assert_eq!(waiting.error_class, Some(ErrorClass::Retryable));
    assert!(waiting.error_message.as_deref().unwrap_or_default().contains("ProviderTimeout"), "{waiting:?}");

    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.attempts, 3);
    assert_eq!((done.error_message, done.next_attempt_at), (None, None));
    assert_eq!(classifier.calls.load(Ordering::SeqCst), 3);
    let audit: Vec<_> =
        db.job_audit(&tenant(), &job).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(
        audit,
        ["enqueued", "started", "retry_scheduled", "started", "retry_scheduled", "started", "completed"]
    );
    worker.shutdown().await.expect("shutdown");
    let kinds: Vec<_> =
        events_of(&q, &job).await.into_iter().map(|e| e.kind).filter(|k| *k != EventKind::Progress).collect();
    assert_eq!(kinds, [EventKind::Retrying, EventKind::Retrying, EventKind::Completed]);
});

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn retryable_failures_give_up_after_max_attempts() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-3", "Down", "Everything is down", 2).await;
    let classifier = FlakyClassifier::new(100, FailureCase::ProviderUnavailable);
    let worker = spawn_worker(&db, &q, triage(&db, classifier.clone()), settings("w1"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    assert_eq!((failed.attempts, failed.error_class), (2, Some(ErrorClass::Retryable)));
    assert!(
        failed.error_message.as_deref().unwrap_or_default().contains("gave up after 2 attempts"),
        "{failed:?}"
    );
    worker.shutdown().await.expect("shutdown");
    assert_eq!(classifier.calls.load(Ordering::SeqCst), 2);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending, stats.delayed), (0, 0, 0));
}

both_backends!(invalid_job_fails_at_once_and_is_never_retried, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let (job, ticket) = orphan_job("SUP-404");
    submit_job(&db, &q, &job, &ticket, 1, 5).await;
    let classifier = FlakyClassifier::new(0, FailureCase::ProviderTimeout);
    let worker = spawn_worker(&db, &q, triage(&db, classifier.clone()), settings("w1"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    assert_eq!((failed.attempts, failed.error_class), (1, Some(ErrorClass::Invalid)));
    assert_eq!(failed.error_message.as_deref(), Some("ticket SUP-404 does not exist"));
    worker.shutdown().await.expect("shutdown");
    assert_eq!(classifier.calls.load(Ordering::SeqCst), 0, "never reached the provider");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.delayed, stats.pending, stats.stream_length), (0, 0, 0), "not re-enqueued");
    let audit: Vec<_> =
        db.job_audit(&tenant(), &job).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(audit, ["enqueued", "started", "failed"]);
});

/// Answers every ticket with a permission failure.
struct DeniedClassifier;

impl longhaul_triage::Classifier for DeniedClassifier {
    async fn classify(
        &self,
        _t: &longhaul_triage::TicketView,
    ) -> Result<longhaul_triage::Classification, JobError> {
        Err(JobError::new(FailureCase::PermissionDenied, "tenant acme may not use this provider"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn permission_failure_fails_alerts_and_audits() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-5", "Hello", "Thanks", 5).await;
    let worker = spawn_worker(&db, &q, triage(&db, DeniedClassifier), settings("w1"));
    let failed = wait_status(&db, &job, JobStatus::Failed).await;
    assert_eq!((failed.attempts, failed.error_class), (1, Some(ErrorClass::Alert)));
    worker.shutdown().await.expect("shutdown");
    let audit = db.job_audit(&tenant(), &job).await.expect("audit");
    let alert = audit.last().expect("audit rows");
    assert_eq!(alert.action, "alert");
    assert_eq!(alert.detail["message"], "tenant acme may not use this provider");
    let events = events_of(&q, &job).await;
    let last = events.last().expect("events");
    assert_eq!((last.kind, last.class.as_deref()), (EventKind::Alert, Some("alert")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_claiming_another_tenant_alerts_and_touches_nothing() {
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    let ticket = TicketId::parse("SUP-6").expect("ticket");
    let (job, revision) = store_ticket(&db, &ticket, "s", "b").await;
    record_job(&db, &job, &ticket, revision, 5).await;
    // A forged entry: the job of acme, claimed by globex.
    let mut forged = entry(&job);
    forged.tenant_id = longhaul_core::TenantId::parse("globex").expect("tenant");
    q.enqueue(&forged).await.expect("enqueue");
    let worker = spawn_worker(&db, &q, triage(&db, RuleClassifier), settings("w1"));
    let audit = wait_until(Duration::from_secs(10), "alert audit row", async || {
        let audit = db.job_audit(&tenant(), &job).await.expect("audit");
        if audit.iter().any(|a| a.action == "alert") { Ok(audit) } else { Err(audit.len()) }
    })
    .await;
    let alert = audit.iter().find(|a| a.action == "alert").expect("alert");
    assert_eq!(alert.detail["claimed_tenant"], "globex");
    worker.shutdown().await.expect("shutdown");
    let record = db.get_job(&tenant(), &job).await.expect("read").expect("exists");
    assert_eq!((record.status, record.attempts), (JobStatus::Queued, 0), "the real job is untouched");
    let events = events_of(&q, &job).await;
    assert_eq!(events.iter().map(|e| e.kind).collect::<Vec<_>>(), [EventKind::Alert]);
}

/// Reports progress within and across its stages, waiting for the test between steps: load
/// starts (0 %), reports half its work (16 %) and ends (33 %); classify starts (33 %) and ends
/// (66 %).
struct SteppedPipeline {
    step: Arc<Notify>,
}

impl Pipeline for SteppedPipeline {
    type Kind = TestTriage;
    async fn run(&self, ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        ctx.stage("load", async {
            self.step.notified().await;
            ctx.progress(1, 2);
            self.step.notified().await;
            Ok(())
        })
        .await?;
        self.step.notified().await;
        ctx.stage("classify", async {
            self.step.notified().await;
            Ok(())
        })
        .await?;
        Ok(serde_json::json!({ "steps": 4 }))
    }
}

both_backends!(progress_updates_land_in_the_record_in_order, |backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-7", "s", "b", 5).await;
    let step = Arc::new(Notify::new());
    let worker = spawn_worker(&db, &q, SteppedPipeline { step: step.clone() }, settings("w1"));
    for (stage, percent) in [("load", 0), ("load", 16), ("load", 33), ("classify", 33)] {
        let r = wait_until(Duration::from_secs(10), &format!("{stage} {percent}%"), async || {
            let r = db.get_job(&tenant(), &job).await.expect("read").expect("exists");
            if r.progress.percent() == percent && r.stage.as_deref() == Some(stage) {
                Ok(r)
            } else {
                Err((r.status, r.stage, r.progress))
            }
        })
        .await;
        assert_eq!(r.status, JobStatus::Running);
        step.notify_one();
    }
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.progress, Progress::DONE);
    worker.shutdown().await.expect("shutdown");
    let seen: Vec<_> = events_of(&q, &job).await.into_iter().map(|e| (e.kind, e.stage, e.progress)).collect();
    let progress = |stage: &str, p| (EventKind::Progress, Some(stage.to_owned()), Some(p));
    assert_eq!(
        seen,
        [
            progress("load", 0),
            progress("load", 16),
            progress("load", 33),
            progress("classify", 33),
            progress("classify", 66),
            (EventKind::Completed, None, None),
        ]
    );
});

/// Panics on its first run, succeeds after.
struct PanicOnce {
    runs: AtomicU32,
}

impl Pipeline for PanicOnce {
    type Kind = TestTriage;
    async fn run(&self, _ctx: &Ctx, _input: TriageInput) -> Result<serde_json::Value, JobError> {
        if self.runs.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("index out of bounds in stage classify");
        }
        Ok(serde_json::json!({ "ok": true }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panicking_stage_counts_as_a_failed_attempt() {
    let db = test_db(Backend::Sqlite).await;
    let q = TestQueue::new(fast_queue).await;
    let job = submit(&db, &q, "SUP-8", "s", "b", 5).await;
    let worker = spawn_worker(&db, &q, PanicOnce { runs: AtomicU32::new(0) }, settings("w1"));
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.attempts, 2);
    worker.shutdown().await.expect("worker survives the panic and stops cleanly");
    let audit = db.job_audit(&tenant(), &job).await.expect("audit");
    let retry = audit.iter().find(|a| a.action == "retry_scheduled").expect("a retry after the panic");
    assert!(
        retry.detail["message"].as_str().unwrap_or_default().contains("stage panicked: index out of bounds"),
        "{retry:?}"
    );
}
