//! Job records: creation under concurrency, fenced writes, tenancy, pagination, and agreement of
//! the SQL guards with the core status machine.

use chrono::Utc;
use longhaul_core::{ErrorClass, JobRecord, JobStatus, Progress, TransitionError};
use longhaul_store::{Store, WriteOutcome};
use serde_json::json;

use crate::harness::{conformance, setup_job, tenant};

fn applied(outcome: WriteOutcome) -> JobRecord {
    match outcome {
        WriteOutcome::Applied(r) => r,
        WriteOutcome::Refused { reason, .. } => panic!("write refused: {reason}"),
    }
}

conformance!(create_pending_returns_existing, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-1", 3).await;
    let (first, created) = store.create_pending(job.clone()).await.expect("create");
    assert!(created);
    assert_eq!(first.status, JobStatus::Queued);
    assert_eq!((first.attempts, first.max_attempts, first.progress), (0, 3, Progress::ZERO));

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
    let page = store.list_jobs(&job.tenant_id, None, 100, None).await.expect("list");
    assert_eq!(page.jobs.len(), 1, "one row in storage");
    let audit = store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit");
    assert_eq!(audit.iter().filter(|a| a.action == "enqueued").count(), 1);
    assert_eq!(audit.iter().filter(|a| a.action == "duplicate_enqueue").count(), 49);
});

conformance!(stale_attempt_changes_nothing, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-stale", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    applied(store.start(&t, &j, 1).await.expect("start 1"));
    // Attempt 1 stalls; attempt 2 takes over.
    applied(store.start(&t, &j, 2).await.expect("takeover"));
    let before = store.get_job(&t, &j).await.expect("get").expect("present");

    // The stalled worker comes back and tries every write it could make.
    let outcomes = [
        store.record_progress(&t, &j, 1, "classify", Progress::new(50).expect("p")).await,
        store.complete(&t, &j, 1, &json!({"from": "stale"})).await,
        store.schedule_retry(&t, &j, 1, ErrorClass::Retryable, "stale", Utc::now()).await,
        store.fail(&t, &j, 1, ErrorClass::Invalid, "stale").await,
        store.start(&t, &j, 1).await,
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
    assert_eq!(store.get_job(&t, &j).await.expect("get").expect("present"), before, "record unchanged");
});

conformance!(lifecycle_with_retry, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-life", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");

    let r = applied(store.start(&t, &j, 1).await.expect("start"));
    assert_eq!((r.status, r.attempts), (JobStatus::Running, 1));
    assert!(r.started_at.is_some());
    let r =
        applied(store.record_progress(&t, &j, 1, "load", Progress::new(33).expect("p")).await.expect("p"));
    assert_eq!((r.stage.as_deref(), r.progress.percent()), (Some("load"), 33));

    let due = Utc::now() + chrono::Duration::seconds(30);
    let r = applied(
        store
            .schedule_retry(&t, &j, 1, ErrorClass::Retryable, "provider timed out", due)
            .await
            .expect("retry"),
    );
    assert_eq!(r.status, JobStatus::Queued);
    assert_eq!(r.error_message.as_deref(), Some("provider timed out"));
    assert_eq!(r.error_class, Some(ErrorClass::Retryable));
    let stored_due = r.next_attempt_at.expect("due");
    assert!((stored_due - due).num_milliseconds().abs() < 1, "{stored_due} vs {due}");

    applied(store.start(&t, &j, 2).await.expect("start 2"));
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
    match store.start(&t, &j, 3).await.expect("write") {
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
                1,
                ErrorClass::Invalid,
                "ticket T-invalid does not exist",
            )
            .await
            .expect("fail"),
    );
    assert_eq!((r.status, r.attempts, r.error_class), (JobStatus::Failed, 1, Some(ErrorClass::Invalid)));

    let alert = setup_job(&store, "acme", "T-alert", 3).await;
    store.create_pending(alert.clone()).await.expect("create");
    applied(store.start(&alert.tenant_id, &alert.job_id, 1).await.expect("start"));
    applied(
        store
            .fail(&alert.tenant_id, &alert.job_id, 1, ErrorClass::Alert, "tenant mismatch")
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
    applied(store.start(&one.tenant_id, &one.job_id, 1).await.expect("start"));
    match store.schedule_retry(&one.tenant_id, &one.job_id, 1, ErrorClass::Retryable, "x", Utc::now()).await {
        Ok(WriteOutcome::Refused { reason: TransitionError::NoAttemptsLeft { .. }, .. }) => {}
        other => panic!("retry past max_attempts: {other:?}"),
    }
    match store.start(&one.tenant_id, &one.job_id, 2).await {
        Ok(WriteOutcome::Refused { reason: TransitionError::AttemptsExhausted { .. }, .. }) => {}
        other => panic!("start past max_attempts: {other:?}"),
    }
});

conformance!(tenants_never_see_each_other, |store: Store| async move {
    let a = setup_job(&store, "tenant-a", "T-1", 3).await;
    let b = setup_job(&store, "tenant-b", "T-1", 3).await;
    store.create_pending(a.clone()).await.expect("create a");
    assert_ne!(a.job_id, b.job_id, "same ticket id, different tenants, different jobs");

    assert_eq!(store.get_job(&b.tenant_id, &a.job_id).await.expect("get"), None);
    assert!(store.list_jobs(&b.tenant_id, None, 10, None).await.expect("list").jobs.is_empty());
    let err = store.start(&b.tenant_id, &a.job_id, 1).await.expect_err("cross-tenant write");
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
        applied(store.start(&t, id, 1).await.expect("start"));
        applied(store.complete(&t, id, 1, &json!({})).await.expect("complete"));
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut sizes = Vec::new();
    loop {
        let page = store.list_jobs(&t, None, 3, cursor.as_deref()).await.expect("page");
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

    let queued = store.list_jobs(&t, Some(JobStatus::Queued), 100, None).await.expect("queued");
    assert_eq!(queued.jobs.len(), 5);
    assert!(queued.jobs.iter().all(|j| j.status == JobStatus::Queued));
    assert_eq!(queued.next_cursor, None);
    let completed = store.list_jobs(&t, Some(JobStatus::Completed), 100, None).await.expect("completed");
    assert_eq!(completed.jobs.len(), 2);

    for bad in ["abc", "-1", "0", ""] {
        let err = store.list_jobs(&t, None, 3, Some(bad)).await.expect_err("bad cursor");
        assert!(err.to_string().contains("invalid cursor"), "{err}");
    }
});

conformance!(sql_guards_agree_with_core_rules, |store: Store| async move {
    // Drive random writes through both the store and the core status machine; they must agree on
    // every outcome and on the resulting record.
    let mut seed: u64 = 0x5eed_1234_abcd_9876;
    let mut next = move |n: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for j in 0..6 {
        let job = setup_job(&store, "model", &format!("T-{j}"), 3).await;
        let (t, id) = (job.tenant_id.clone(), job.job_id.clone());
        let (mut model, _) = store.create_pending(job).await.expect("create");
        for _ in 0..25 {
            let attempt = u32::try_from(next(5)).expect("small");
            let now = Utc::now();
            let (outcome, expected) = match next(6) {
                0 => (store.start(&t, &id, attempt).await, model.start(attempt, now)),
                // The worker's start, through the batched form production runs: a delivery of one
                // of two entries, enqueued for some attempt.
                5 => {
                    let l = lease(
                        ["1-0", "2-0"][usize::try_from(next(2)).expect("small")],
                        u32::try_from(next(3)).expect("small") + 1,
                    );
                    let write = longhaul_store::Write::StartNext {
                        tenant: t.clone(),
                        job: id.clone(),
                        lease: l.clone(),
                        entry_attempt: attempt,
                    };
                    let mut out = store.write_many(std::slice::from_ref(&write)).await.expect("batch");
                    (out.pop().expect("one outcome"), model.start_delivery(&l, attempt, now))
                }
                1 => {
                    let p = Progress::new(40).expect("p");
                    (
                        store.record_progress(&t, &id, attempt, "classify", p).await,
                        model.progress(attempt, "classify", p, now),
                    )
                }
                2 => (
                    store.complete(&t, &id, attempt, &json!({"n": attempt})).await,
                    model.complete(attempt, json!({"n": attempt}), now),
                ),
                3 => (
                    store.fail(&t, &id, attempt, ErrorClass::Invalid, "bad").await,
                    model.fail(attempt, ErrorClass::Invalid, "bad", now),
                ),
                _ => (
                    store.schedule_retry(&t, &id, attempt, ErrorClass::Retryable, "slow", now).await,
                    model.retry(attempt, ErrorClass::Retryable, "slow", now, now),
                ),
            };
            match (outcome.expect("write"), expected) {
                (WriteOutcome::Applied(got), Ok(want)) => {
                    assert_eq!(
                        (got.status, got.attempts, &got.stage, got.progress, &got.output, &got.error_class),
                        (
                            want.status,
                            want.attempts,
                            &want.stage,
                            want.progress,
                            &want.output,
                            &want.error_class
                        )
                    );
                    model = got;
                }
                (WriteOutcome::Refused { current, reason }, Err(want)) => {
                    assert_eq!(reason, want);
                    assert_eq!(current, model);
                }
                (got, want) => panic!("store and core disagree on {model:?}: store {got:?}, core {want:?}"),
            }
        }
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
    applied(store.start(&ids[1].0, &ids[1].1, 1).await.expect("start"));
    applied(store.start(&ids[2].0, &ids[2].1, 1).await.expect("start"));
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

conformance!(progress_of_many_jobs_in_one_transaction, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-pa", 3).await;
    let b = setup_job(&store, "acme", "T-pb", 3).await;
    for j in [&a, &b] {
        store.create_pending(j.clone()).await.expect("create");
        applied(store.start(&j.tenant_id, &j.job_id, 1).await.expect("start"));
    }
    let p = Progress::new(66).expect("p");
    // b's writer is stale (attempt 2 does not own the job): refused, a's applied.
    let writes = [(&a.tenant_id, &a.job_id, 1, "classify", p), (&b.tenant_id, &b.job_id, 2, "classify", p)];
    assert_eq!(store.record_progress_many(&writes).await.expect("batch"), [true, false]);
    let ra = store.get_job(&a.tenant_id, &a.job_id).await.expect("get").expect("a");
    let rb = store.get_job(&b.tenant_id, &b.job_id).await.expect("get").expect("b");
    assert_eq!((ra.stage.as_deref(), ra.progress.percent()), (Some("classify"), 66));
    assert_eq!((rb.stage, rb.progress.percent()), (None, 0));
    assert_eq!(store.record_progress_many(&[]).await.expect("empty"), Vec::<bool>::new());
});

conformance!(starts_and_completions_share_one_transaction, |store: Store| async move {
    use longhaul_store::Write;
    let a = setup_job(&store, "acme", "T-wa", 3).await;
    let b = setup_job(&store, "acme", "T-wb", 3).await;
    for j in [&a, &b] {
        store.create_pending(j.clone()).await.expect("create");
    }
    applied(store.start(&b.tenant_id, &b.job_id, 1).await.expect("start b"));
    let writes = [
        Write::Start { tenant: a.tenant_id.clone(), job: a.job_id.clone(), attempt: 1 },
        Write::Complete {
            tenant: b.tenant_id.clone(),
            job: b.job_id.clone(),
            attempt: 1,
            output: json!({"ok": 1}),
        },
        // Stale: b's attempt 1 is the running one, so a second start of attempt 1 is refused.
        Write::Start { tenant: b.tenant_id.clone(), job: b.job_id.clone(), attempt: 1 },
    ];
    let outcomes = store.write_many(&writes).await.expect("batch");
    assert!(matches!(&outcomes[0], Ok(WriteOutcome::Applied(r)) if r.status == JobStatus::Running));
    assert!(matches!(&outcomes[1], Ok(WriteOutcome::Applied(r)) if r.status == JobStatus::Completed));
    assert!(
        matches!(&outcomes[2], Ok(WriteOutcome::Refused { reason: TransitionError::Terminal { .. }, .. })),
        "{:?}",
        outcomes[2]
    );
    let audit_b: Vec<_> = store
        .job_audit(&b.tenant_id, &b.job_id)
        .await
        .expect("audit")
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(audit_b, ["enqueued", "started", "completed"]);
    assert!(store.write_many(&[]).await.expect("empty").is_empty());
});

conformance!(pending_records_of_many_requests_in_one_transaction, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-ma", 3).await;
    let b = setup_job(&store, "acme", "T-mb", 3).await;
    store.create_pending(b.clone()).await.expect("b exists already");
    // Out of id order, b a duplicate of an existing record, a twice in one batch.
    let results = store.create_pending_many(vec![b.clone(), a.clone(), a.clone()]).await.expect("batch");
    let summary: Vec<_> = results.iter().map(|(r, created)| (r.job_id.clone(), *created)).collect();
    assert_eq!(summary, [(b.job_id.clone(), false), (a.job_id.clone(), true), (a.job_id.clone(), false)]);
    assert_eq!(store.list_jobs(&a.tenant_id, None, 10, None).await.expect("list").jobs.len(), 2);
});

conformance!(a_batch_of_distinct_jobs_is_fenced_like_single_writes, |store: Store| async move {
    use longhaul_store::{StoreError, Write};
    let jobs = [
        setup_job(&store, "acme", "T-ba", 3).await, // queued: starts attempt 1
        setup_job(&store, "acme", "T-bb", 3).await, // running attempt 1: taken over by attempt 2
        setup_job(&store, "acme", "T-bc", 3).await, // running attempt 1: completes
        setup_job(&store, "acme", "T-bd", 3).await, // running attempt 2: a complete of 1 is stale
        setup_job(&store, "acme", "T-be", 3).await, // completed: a start is refused as terminal
        setup_job(&store, "acme", "T-bf", 1).await, // its only attempt started: none left
    ];
    let [a, b, c, d, e, f] = &jobs;
    for j in &jobs {
        store.create_pending(j.clone()).await.expect("create");
    }
    for j in [b, c, d, e, f] {
        applied(store.start(&j.tenant_id, &j.job_id, 1).await.expect("start 1"));
    }
    applied(store.start(&d.tenant_id, &d.job_id, 2).await.expect("start 2"));
    applied(store.complete(&e.tenant_id, &e.job_id, 1, &json!({"done": true})).await.expect("complete"));
    let missing = setup_job(&store, "acme", "T-missing", 3).await;
    // Deliveries of each job's first entry; b's is an entry enqueued after its attempt 1 started.
    let next = |j: &longhaul_core::NewJob, entry_attempt| Write::StartNext {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        lease: lease(&format!("1-{}", j.ticket_id), 1),
        entry_attempt,
    };
    let complete = |j: &longhaul_core::NewJob, attempt| Write::Complete {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        attempt,
        output: json!({"job": j.ticket_id}),
    };
    let writes =
        [next(a, 1), next(b, 2), complete(c, 1), complete(d, 1), next(e, 2), next(f, 2), next(&missing, 1)];
    let out = store.write_many(&writes).await.expect("batch");
    assert!(
        matches!(&out[0], Ok(WriteOutcome::Applied(r)) if (r.status, r.attempts) == (JobStatus::Running, 1)),
        "{:?}",
        out[0]
    );
    assert!(
        matches!(&out[1], Ok(WriteOutcome::Applied(r)) if (r.status, r.attempts) == (JobStatus::Running, 2)),
        "{:?}",
        out[1]
    );
    assert!(
        matches!(&out[2], Ok(WriteOutcome::Applied(r)) if r.status == JobStatus::Completed && r.output == Some(json!({"job": "T-bc"}))),
        "{:?}",
        out[2]
    );
    assert!(
        matches!(
            &out[3],
            Ok(WriteOutcome::Refused {
                reason: TransitionError::StaleAttempt { attempt: 1, attempts: 2, .. },
                ..
            })
        ),
        "{:?}",
        out[3]
    );
    assert!(
        matches!(&out[4], Ok(WriteOutcome::Refused { reason: TransitionError::Terminal { .. }, .. })),
        "{:?}",
        out[4]
    );
    assert!(
        matches!(
            &out[5],
            Ok(WriteOutcome::Refused {
                reason: TransitionError::AttemptsExhausted { attempt: 2, max_attempts: 1 },
                ..
            })
        ),
        "{:?}",
        out[5]
    );
    assert!(matches!(&out[6], Err(StoreError::NotFound("job"))), "{:?}", out[6]);
    // Applied writes are audited with their attempt; refused ones are not.
    let audit = |j: &longhaul_core::NewJob| {
        let store = store.clone();
        let (t, id) = (j.tenant_id.clone(), j.job_id.clone());
        async move {
            store
                .job_audit(&t, &id)
                .await
                .expect("audit")
                .into_iter()
                .map(|e| (e.action, e.detail))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        audit(a).await,
        [
            ("enqueued".to_owned(), json!({"ticket_id": "T-ba", "ticket_revision": 1})),
            ("started".to_owned(), json!({"attempt": 1}))
        ]
    );
    assert_eq!(audit(b).await.last(), Some(&("started".to_owned(), json!({"attempt": 2}))));
    assert_eq!(audit(c).await.last(), Some(&("completed".to_owned(), json!({"attempt": 1}))));
    assert_eq!(
        audit(d).await.last(),
        Some(&("started".to_owned(), json!({"attempt": 2}))),
        "refused: not audited"
    );
    let rd = store.get_job(&d.tenant_id, &d.job_id).await.expect("get").expect("d");
    assert_eq!((rd.status, rd.output), (JobStatus::Running, None));
    // The single form agrees.
    assert!(matches!(
        store.start_next(&missing.tenant_id, &missing.job_id, lease("1-0", 1), 1).await,
        Err(StoreError::NotFound("job"))
    ));
    // The same delivery again changes nothing; a later delivery of the entry takes over.
    let stale = store.start_next(&a.tenant_id, &a.job_id, lease("1-T-ba", 1), 1).await.expect("stale");
    assert!(
        matches!(&stale, WriteOutcome::Refused { reason: TransitionError::Superseded { .. }, .. }),
        "{stale:?}"
    );
    let r =
        applied(store.start_next(&a.tenant_id, &a.job_id, lease("1-T-ba", 2), 1).await.expect("takeover"));
    assert_eq!((r.attempts, r.lease), (2, Some(lease("1-T-ba", 2))));
});

conformance!(a_job_written_twice_in_one_progress_batch_keeps_the_last_write, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-pp", 3).await;
    store.create_pending(a.clone()).await.expect("create");
    applied(store.start(&a.tenant_id, &a.job_id, 1).await.expect("start"));
    let (p33, p66) = (Progress::new(33).expect("p"), Progress::new(66).expect("p"));
    let writes = [(&a.tenant_id, &a.job_id, 1, "load", p33), (&a.tenant_id, &a.job_id, 1, "classify", p66)];
    assert_eq!(store.record_progress_many(&writes).await.expect("batch"), [true, true]);
    let r = store.get_job(&a.tenant_id, &a.job_id).await.expect("get").expect("a");
    assert_eq!((r.stage.as_deref(), r.progress.percent()), (Some("classify"), 66));
});

conformance!(progress_and_the_completion_of_one_job_share_a_batch_in_order, |store: Store| async move {
    use longhaul_store::Write;
    let a = setup_job(&store, "acme", "T-pc", 3).await;
    let b = setup_job(&store, "acme", "T-pd", 3).await;
    for j in [&a, &b] {
        store.create_pending(j.clone()).await.expect("create");
    }
    applied(store.start(&a.tenant_id, &a.job_id, 1).await.expect("start"));
    let p = Progress::new(83).expect("p");
    let progress = [(&a.tenant_id, &a.job_id, 1, "apply", p)];
    let writes = [
        Write::Complete {
            tenant: a.tenant_id.clone(),
            job: a.job_id.clone(),
            attempt: 1,
            output: json!({"n": 1}),
        },
        Write::StartNext {
            tenant: b.tenant_id.clone(),
            job: b.job_id.clone(),
            lease: lease("1-0", 1),
            entry_attempt: 1,
        },
    ];
    let (applied_progress, outcomes) = store.write_batch(&progress, &writes).await.expect("batch");
    assert_eq!(applied_progress, [true], "progress is written before the completion");
    let done = match &outcomes[0] {
        Ok(WriteOutcome::Applied(r)) => r.clone(),
        other => panic!("completion: {other:?}"),
    };
    assert_eq!(
        (done.status, done.stage.as_deref(), done.progress),
        (JobStatus::Completed, Some("apply"), Progress::DONE)
    );
    assert!(matches!(&outcomes[1], Ok(WriteOutcome::Applied(r)) if r.attempts == 1));
    // The same progress again, after the completion, is refused.
    assert_eq!(store.write_batch(&progress, &[]).await.expect("late").0, [false]);
});

conformance!(
    in_a_batch_the_first_request_for_an_id_writes_the_record_it_is_told_it_created,
    |store: Store| async move {
        use longhaul_core::{IdempotencyKey, JobId, NewJob};
        // Requests sharing an idempotency key share a job id, whatever ticket they name. Mixed with
        // other requests in a batch large enough for the database to sort it, the creator (the first
        // request for the id) must get the record written from its own request.
        let mut batch = Vec::new();
        for i in 0..12 {
            batch.push(setup_job(&store, "acme", &format!("T-fill-{i}"), 3).await);
            let key = IdempotencyKey::parse(format!("key-{i}")).expect("key");
            let first = setup_job(&store, "acme", &format!("T-a-{i}"), 3).await;
            let second = setup_job(&store, "acme", &format!("T-b-{i}"), 3).await;
            let id = JobId::for_idempotency_key(&first.tenant_id, &key);
            batch.push(NewJob { job_id: id.clone(), ..first });
            batch.push(NewJob { job_id: id, ..second });
        }
        let results = store.create_pending_many(batch.clone()).await.expect("batch");
        for (request, (record, created)) in batch.iter().zip(&results) {
            let first_for_id = batch.iter().position(|r| r.job_id == request.job_id).expect("present");
            let creator = &batch[first_for_id];
            assert_eq!(*created, std::ptr::eq(request, creator), "{}", request.ticket_id);
            assert_eq!(record.ticket_id, creator.ticket_id, "the stored record is the creator's request");
        }
    }
);

conformance!(a_stale_attempts_progress_in_a_batch_does_not_displace_the_owners, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-px", 3).await;
    store.create_pending(a.clone()).await.expect("create");
    applied(store.start(&a.tenant_id, &a.job_id, 1).await.expect("start 1"));
    applied(store.start(&a.tenant_id, &a.job_id, 2).await.expect("takeover"));
    let (p33, p66) = (Progress::new(33).expect("p"), Progress::new(66).expect("p"));
    // The owner's write first, then a late one from the attempt it took over.
    let writes = [(&a.tenant_id, &a.job_id, 2, "classify", p66), (&a.tenant_id, &a.job_id, 1, "load", p33)];
    assert_eq!(store.record_progress_many(&writes).await.expect("batch"), [true, false]);
    let r = store.get_job(&a.tenant_id, &a.job_id).await.expect("get").expect("a");
    assert_eq!((r.attempts, r.stage.as_deref(), r.progress.percent()), (2, Some("classify"), 66));
});

fn lease(entry: &str, delivery: u32) -> longhaul_core::Lease {
    longhaul_core::Lease { entry: entry.to_owned(), delivery }
}
