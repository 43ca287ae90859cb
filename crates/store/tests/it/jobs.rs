//! Job records: creation under concurrency, fenced single writes, tenancy, pagination and the
//! reconciler's scan. The batched forms are in `batches`, their agreement with the core in `model`.

use chrono::Utc;
use longhaul_core::{ErrorClass, JobStatus, Progress, TransitionError};
use longhaul_store::{AttemptFailure, JobFilter, Store, WriteOutcome};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job, tenant};

conformance!(create_pending_returns_existing, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-1", 3).await;
    let (first, created) = store.create_pending(job.clone()).await.expect("create");
    assert!(created);
    assert_eq!(first.status, JobStatus::Queued);
    assert_eq!((first.attempts, first.max_attempts, first.progress), (0, 3, Progress::ZERO));
    // The kind, key and input come back as the producer gave them.
    assert_eq!((first.kind.as_str(), first.key.as_deref(), &first.input), ("test", Some("T-1"), &job.input));

    let (again, created) = store.create_pending(job.clone()).await.expect("duplicate");
    assert!(!created);
    assert_eq!(again, first);

    let fetched = store.get_job(&job.tenant_id, &job.job_id).await.expect("get").expect("present");
    assert_eq!(fetched, first);

    let audit = store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit");
    let actions: Vec<_> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions, ["enqueued", "duplicate_enqueue"]);
});

conformance!(fifty_concurrent_creates_make_one_row, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-race", 3).await;
    let calls = (0..50).map(|_| {
        let store = store.clone();
        let job = job.clone();
        tokio::spawn(async move { store.create_pending(job).await })
    });
    let results = futures::future::join_all(calls).await;
    let mut created = 0;
    let mut records = Vec::new();
    for r in results {
        let (record, was_new) = r.expect("task").expect("create");
        created += usize::from(was_new);
        records.push(record);
    }
    assert_eq!(created, 1, "exactly one caller creates the row");
    assert!(records.iter().all(|r| r == &records[0]), "every caller gets the same record");
    let page = store.list_jobs(&job.tenant_id, &JobFilter::default(), 100, None).await.expect("list");
    assert_eq!(page.jobs.len(), 1, "one row in storage");
    let audit = store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit");
    assert_eq!(audit.iter().filter(|a| a.action == "enqueued").count(), 1);
    assert_eq!(audit.iter().filter(|a| a.action == "duplicate_enqueue").count(), 49);
});

conformance!(stale_attempt_changes_nothing, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-stale", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start 1"));
    // Attempt 1 stalls; a later delivery of its entry takes over as attempt 2.
    applied(store.start_next(&t, &j, lease("1-0", 2), 1).await.expect("takeover"));
    let before = store.get_job(&t, &j).await.expect("get").expect("present");

    // The stalled worker comes back and tries every write it could make.
    let outcomes = [
        store.record_progress(&t, &j, 1, "classify", Progress::new(50).expect("p")).await,
        store.complete(&t, &j, 1, &json!({"from": "stale"})).await,
        store
            .schedule_retry(&t, &j, AttemptFailure::new(1, ErrorClass::Retryable, "stale"), Utc::now())
            .await,
        store.fail(&t, &j, AttemptFailure::new(1, ErrorClass::Invalid, "stale")).await,
    ];
    for outcome in outcomes {
        match outcome.expect("write") {
            WriteOutcome::Refused { current, reason } => {
                assert_eq!(current, before);
                assert!(
                    matches!(reason, TransitionError::StaleAttempt { attempt: 1, attempts: 2, .. }),
                    "{reason}"
                );
            }
            WriteOutcome::Applied(r) => panic!("stale write applied: {r:?}"),
        }
    }
    // And its delivery again: superseded by the one that took over.
    match store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("write") {
        WriteOutcome::Refused {
            current,
            reason: TransitionError::Superseded { delivery: 1, attempts: 2, .. },
        } => {
            assert_eq!(current, before);
        }
        other => panic!("stale start: {other:?}"),
    }
    assert_eq!(store.get_job(&t, &j).await.expect("get").expect("present"), before, "record unchanged");
});

conformance!(lifecycle_with_retry, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-life", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");

    let r = applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    assert_eq!((r.status, r.attempts), (JobStatus::Running, 1));
    assert!(r.started_at.is_some());
    let r =
        applied(store.record_progress(&t, &j, 1, "load", Progress::new(33).expect("p")).await.expect("p"));
    assert_eq!((r.stage.as_deref(), r.progress.percent()), (Some("load"), 33));

    let due = Utc::now() + chrono::Duration::seconds(30);
    let r = applied(
        store
            .schedule_retry(&t, &j, AttemptFailure::new(1, ErrorClass::Retryable, "provider timed out"), due)
            .await
            .expect("retry"),
    );
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.error_message.as_deref(), Some("provider timed out"));
    assert_eq!(r.error_class, Some(ErrorClass::Retryable));
    let stored_due = r.next_attempt_at.expect("due");
    assert!((stored_due - due).num_milliseconds().abs() < 1, "{stored_due} vs {due}");

    // The retry's entry, enqueued for attempt 2.
    applied(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    let output = json!({"category": "billing", "priority": "high", "labels": ["refund"]});
    let done = applied(store.complete(&t, &j, 2, &output).await.expect("complete"));
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.output, Some(output));
    assert_eq!(
        (done.progress, done.error_message.clone(), done.next_attempt_at),
        (Progress::DONE, None, None)
    );
    assert!(done.finished_at.is_some());

    // Terminal is final.
    match store.start_next(&t, &j, lease("3-0", 1), 3).await.expect("write") {
        WriteOutcome::Refused {
            reason: TransitionError::Terminal { status: JobStatus::Completed }, ..
        } => {}
        other => panic!("terminal record moved: {other:?}"),
    }
    let actions: Vec<_> =
        store.job_audit(&t, &j).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["enqueued", "started", "retry_scheduled", "started", "completed"]);
});

conformance!(fail_paths_and_alert_audit, |store: Store| async move {
    let invalid = setup_job(&store, "acme", "T-invalid", 3).await;
    store.create_pending(invalid.clone()).await.expect("create");
    // Found invalid before running: fails from queued as attempt 1.
    let r = applied(
        store
            .fail(
                &invalid.tenant_id,
                &invalid.job_id,
                AttemptFailure::new(1, ErrorClass::Invalid, "the input names no document"),
            )
            .await
            .expect("fail"),
    );
    assert_eq!((r.status, r.attempts, r.error_class), (JobStatus::Failed, 1, Some(ErrorClass::Invalid)));

    let alert = setup_job(&store, "acme", "T-alert", 3).await;
    store.create_pending(alert.clone()).await.expect("create");
    applied(store.start_next(&alert.tenant_id, &alert.job_id, lease("1-0", 1), 1).await.expect("start"));
    applied(
        store
            .fail(
                &alert.tenant_id,
                &alert.job_id,
                AttemptFailure::new(1, ErrorClass::Alert, "tenant mismatch"),
            )
            .await
            .expect("fail"),
    );
    let audit = store.job_audit(&alert.tenant_id, &alert.job_id).await.expect("audit");
    let last = audit.last().expect("audit rows");
    assert_eq!(last.action, "alert");
    assert_eq!(last.detail["message"], "tenant mismatch");

    // Retry with no attempts left is refused; max_attempts bounds start too.
    let one = setup_job(&store, "acme", "T-one", 1).await;
    store.create_pending(one.clone()).await.expect("create");
    applied(store.start_next(&one.tenant_id, &one.job_id, lease("1-0", 1), 1).await.expect("start"));
    match store
        .schedule_retry(
            &one.tenant_id,
            &one.job_id,
            AttemptFailure::new(1, ErrorClass::Retryable, "x"),
            Utc::now(),
        )
        .await
    {
        Ok(WriteOutcome::Refused { reason: TransitionError::NoAttemptsLeft { .. }, .. }) => {}
        other => panic!("retry past max_attempts: {other:?}"),
    }
    // A later delivery of its entry would take over as attempt 2.
    match store.start_next(&one.tenant_id, &one.job_id, lease("1-0", 2), 1).await {
        Ok(WriteOutcome::Refused { reason: TransitionError::AttemptsExhausted { .. }, .. }) => {}
        other => panic!("start past max_attempts: {other:?}"),
    }
});

conformance!(tenants_never_see_each_other, |store: Store| async move {
    let a = setup_job(&store, "tenant-a", "T-1", 3).await;
    let b = setup_job(&store, "tenant-b", "T-1", 3).await;
    store.create_pending(a.clone()).await.expect("create a");
    assert_ne!(a.job_id, b.job_id, "same key, different tenants, different jobs");

    assert_eq!(store.get_job(&b.tenant_id, &a.job_id).await.expect("get"), None);
    assert!(
        store.list_jobs(&b.tenant_id, &JobFilter::default(), 10, None).await.expect("list").jobs.is_empty()
    );
    let err =
        store.start_next(&b.tenant_id, &a.job_id, lease("1-0", 1), 1).await.expect_err("cross-tenant write");
    assert!(matches!(err, longhaul_store::StoreError::NotFound("job")), "{err}");
    let untouched = store.get_job(&a.tenant_id, &a.job_id).await.expect("get").expect("present");
    assert_eq!(untouched.status, JobStatus::Queued);
    assert!(store.job_audit(&b.tenant_id, &a.job_id).await.expect("audit").is_empty());
});

conformance!(keyset_pagination, |store: Store| async move {
    let t = tenant("pager");
    let mut ids = Vec::new();
    for i in 0..7 {
        let job = setup_job(&store, "pager", &format!("T-{i}"), 3).await;
        ids.push(job.job_id.clone());
        store.create_pending(job).await.expect("create");
    }
    // Complete two so the status filter has something to separate.
    for id in &ids[..2] {
        applied(store.start_next(&t, id, lease("1-0", 1), 1).await.expect("start"));
        applied(store.complete(&t, id, 1, &json!({})).await.expect("complete"));
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut sizes = Vec::new();
    loop {
        let page = store.list_jobs(&t, &JobFilter::default(), 3, cursor.as_deref()).await.expect("page");
        sizes.push(page.jobs.len());
        seen.extend(page.jobs.into_iter().map(|j| j.job_id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(sizes, [3, 3, 1]);
    let newest_first: Vec<_> = ids.iter().rev().cloned().collect();
    assert_eq!(seen, newest_first);

    let status = |s| JobFilter { status: Some(s), ..JobFilter::default() };
    let queued = store.list_jobs(&t, &status(JobStatus::Queued), 100, None).await.expect("queued");
    assert_eq!(queued.jobs.len(), 5);
    assert!(queued.jobs.iter().all(|j| j.status == JobStatus::Queued));
    assert_eq!(queued.next_cursor, None);
    let completed = store.list_jobs(&t, &status(JobStatus::Completed), 100, None).await.expect("completed");
    assert_eq!(completed.jobs.len(), 2);

    for bad in ["abc", "-1", "0", ""] {
        let err = store.list_jobs(&t, &JobFilter::default(), 3, Some(bad)).await.expect_err("bad cursor");
        assert!(matches!(&err, longhaul_store::StoreError::InvalidCursor(c) if c == bad), "{err:?}");
        assert!(err.to_string().contains("invalid cursor"), "{err}");
    }
});

conformance!(stale_live_jobs_lists_only_old_unfinished_records, |store: Store| async move {
    let mut ids = Vec::new();
    for i in 0..4 {
        let job = setup_job(&store, if i % 2 == 0 { "acme" } else { "globex" }, &format!("T-{i}"), 3).await;
        ids.push((job.tenant_id.clone(), job.job_id.clone()));
        store.create_pending(job).await.expect("create");
    }
    // One running, one finished.
    applied(store.start_next(&ids[1].0, &ids[1].1, lease("1-0", 1), 1).await.expect("start"));
    applied(store.start_next(&ids[2].0, &ids[2].1, lease("1-0", 1), 1).await.expect("start"));
    applied(store.complete(&ids[2].0, &ids[2].1, 1, &json!({})).await.expect("complete"));
    let later = Utc::now() + chrono::Duration::seconds(1);
    let all = store.stale_live_jobs(later, 0, 100).await.expect("scan");
    let found: Vec<_> = all.iter().map(|(_, r)| r.job_id.clone()).collect();
    assert_eq!(
        found,
        [ids[0].1.clone(), ids[1].1.clone(), ids[3].1.clone()],
        "every tenant, live only, in order"
    );
    let page = store.stale_live_jobs(later, all[0].0, 1).await.expect("next page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].1.job_id, ids[1].1);
    let earlier = Utc::now() - chrono::Duration::seconds(60);
    assert!(
        store.stale_live_jobs(earlier, 0, 100).await.expect("scan").is_empty(),
        "recent records are left alone"
    );
});
