//! Cancellation on both backends: a queued job (also a retry waiting) is cancelled at once and
//! never starts; a running one keeps running with `cancel_requested_at` until its worker ends it,
//! and is not retried meanwhile; a finished job is refused; each step is audited.

use longhaul_core::{ErrorClass, JobStatus, TransitionError};
use longhaul_store::{AttemptFailure, Store, WriteOutcome};

use crate::harness::{applied, conformance, lease, setup_job};

fn refused(outcome: WriteOutcome) -> TransitionError {
    match outcome {
        WriteOutcome::Refused { reason, .. } => reason,
        WriteOutcome::Applied(r) => panic!("applied: {r:?}"),
    }
}

conformance!(a_queued_job_is_cancelled_at_once_and_never_starts, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-q", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    let cancelled = applied(store.cancel(&t, &j, "tenant").await.expect("cancel"));
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.finished_at.is_some() && cancelled.cancel_requested_at.is_none());
    // Its entry, delivered later, cannot start it.
    let reason = refused(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    assert_eq!(reason, TransitionError::Terminal { status: JobStatus::Cancelled });
    // Cancelling again, or a finished job, is refused as terminal.
    let reason = refused(store.cancel(&t, &j, "tenant").await.expect("again"));
    assert_eq!(reason, TransitionError::Terminal { status: JobStatus::Cancelled });
    let actions: Vec<_> = store
        .job_audit(&t, &j)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.detail["by"].clone()))
        .collect();
    assert_eq!(actions[1], ("cancelled".to_owned(), serde_json::json!("tenant")));
});

conformance!(a_running_job_is_ended_by_its_worker_and_not_retried, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-r", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    let requested = applied(store.cancel(&t, &j, "operator").await.expect("cancel"));
    assert_eq!(requested.status, JobStatus::Running);
    let first = requested.cancel_requested_at.expect("requested");
    // A second request keeps the first time.
    let again = applied(store.cancel(&t, &j, "tenant").await.expect("again"));
    assert_eq!(again.cancel_requested_at, Some(first));
    // ... and changes nothing: not the record's age (the reconciler's test), not the audit.
    assert_eq!(again.updated_at, requested.updated_at);
    let asked = store.cancel_requested(std::slice::from_ref(&j)).await.expect("query");
    assert_eq!(asked.as_slice(), std::slice::from_ref(&j));
    // A failure of the attempt is not retried once a cancel is requested.
    let failure = AttemptFailure::new(1, ErrorClass::Retryable, "provider timed out");
    let reason = refused(store.schedule_retry(&t, &j, failure, chrono::Utc::now()).await.expect("retry"));
    assert_eq!(reason, TransitionError::CancelRequested);
    // Another attempt's worker cannot end it; its own can.
    let stale = refused(store.end_cancelled(&t, &j, 2).await.expect("stale"));
    assert!(matches!(stale, TransitionError::StaleAttempt { .. }), "{stale:?}");
    let ended = applied(store.end_cancelled(&t, &j, 1).await.expect("end"));
    assert_eq!((ended.status, ended.attempts), (JobStatus::Cancelled, 1));
    assert!(store.cancel_requested(std::slice::from_ref(&j)).await.expect("query").is_empty());
    let actions: Vec<_> =
        store.job_audit(&t, &j).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["enqueued", "started", "cancel_requested", "cancelled"]);
});

conformance!(a_retry_waiting_is_cancelled_and_a_finished_job_is_refused, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-w", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    let failure = AttemptFailure::new(1, ErrorClass::Retryable, "slow");
    applied(store.schedule_retry(&t, &j, failure, chrono::Utc::now()).await.expect("retry"));
    let cancelled = applied(store.cancel(&t, &j, "tenant").await.expect("cancel"));
    assert_eq!((cancelled.status, cancelled.next_attempt_at), (JobStatus::Cancelled, None));
    let reason = refused(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    assert_eq!(reason, TransitionError::Terminal { status: JobStatus::Cancelled });

    let done = setup_job(&store, "acme", "T-done", 3).await;
    let (t2, j2) = (done.tenant_id.clone(), done.job_id.clone());
    store.create_pending(done).await.expect("create");
    applied(store.start_next(&t2, &j2, lease("3-0", 1), 1).await.expect("start"));
    applied(store.complete(&t2, &j2, 1, &serde_json::json!({})).await.expect("complete"));
    let reason = refused(store.cancel(&t2, &j2, "tenant").await.expect("cancel"));
    assert_eq!(reason, TransitionError::Terminal { status: JobStatus::Completed });
    // Another tenant's job is not found.
    let other = longhaul_core::TenantId::parse("globex").expect("tenant");
    assert!(matches!(
        store.cancel(&other, &j2, "tenant").await,
        Err(longhaul_store::StoreError::NotFound(_))
    ));
});

conformance!(a_failed_or_cancelled_job_is_requeued_with_a_fresh_budget, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-again", 2).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    applied(store.fail(&t, &j, AttemptFailure::new(1, ErrorClass::Invalid, "bad")).await.expect("fail"));
    let again = applied(store.requeue(&t, &j, 3, "tenant").await.expect("requeue"));
    assert_eq!((again.status, again.attempts, again.max_attempts), (JobStatus::Queued, 1, 4));
    assert_eq!((again.error_class, again.finished_at), (None, None));
    // Only a failed or cancelled job: a second request finds it queued.
    let reason = refused(store.requeue(&t, &j, 3, "tenant").await.expect("again"));
    assert_eq!(reason, TransitionError::NotRetryable { status: JobStatus::Queued });
    // The next attempt starts from an entry enqueued for attempt 2, and may complete.
    applied(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    applied(store.complete(&t, &j, 2, &serde_json::json!({"ok": true})).await.expect("complete"));
    let reason = refused(store.requeue(&t, &j, 3, "tenant").await.expect("completed"));
    assert_eq!(reason, TransitionError::NotRetryable { status: JobStatus::Completed });
    let actions: Vec<_> =
        store.job_audit(&t, &j).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["enqueued", "started", "failed", "retried", "started", "completed"]);
    // A cancelled one too.
    let other = setup_job(&store, "acme", "T-c", 2).await;
    let (t2, j2) = (other.tenant_id.clone(), other.job_id.clone());
    store.create_pending(other).await.expect("create");
    applied(store.cancel(&t2, &j2, "tenant").await.expect("cancel"));
    let back = applied(store.requeue(&t2, &j2, 2, "operator").await.expect("requeue"));
    assert_eq!((back.status, back.max_attempts), (JobStatus::Queued, 2));
});
