//! The batched job writes production runs — pending records of many requests, and the worker's
//! progress, starts and completions of many jobs — each fenced like its single form.

use longhaul_core::{JobStatus, NewJob, Progress, TransitionError};
use longhaul_store::{JobFilter, Store, WriteOutcome};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job};

conformance!(progress_of_many_jobs_in_one_transaction, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-pa", 3).await;
    let b = setup_job(&store, "acme", "T-pb", 3).await;
    for j in [&a, &b] {
        store.create_pending(j.clone()).await.expect("create");
        applied(store.start_next(&j.tenant_id, &j.job_id, lease("1-0", 1), 1).await.expect("start"));
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
    applied(store.start_next(&b.tenant_id, &b.job_id, lease("1-0", 1), 1).await.expect("start b"));
    let start = |j: &longhaul_core::NewJob, delivery| Write::StartNext {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        lease: lease("1-0", delivery),
        entry_attempt: 1,
    };
    let writes = [
        start(&a, 1),
        Write::Complete {
            tenant: b.tenant_id.clone(),
            job: b.job_id.clone(),
            attempt: 1,
            output: json!({"ok": 1}),
        },
        // Written after b's completion (the batch names b twice, so it is written in order): a
        // later delivery of b's entry finds it finished.
        start(&b, 2),
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

conformance!(pending_records_of_many_requests_in_one_batch, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-ma", 3).await;
    let b = setup_job(&store, "acme", "T-mb", 3).await;
    store.create_pending(b.clone()).await.expect("b exists already");
    // Out of id order, b a duplicate of an existing record, a twice in one batch.
    let results: Vec<_> = store
        .create_pending_many(vec![b.clone(), a.clone(), a.clone()])
        .await
        .expect("batch")
        .into_iter()
        .map(|r| r.expect("each"))
        .collect();
    let summary: Vec<_> = results.iter().map(|(r, created)| (r.job_id.clone(), *created)).collect();
    assert_eq!(summary, [(b.job_id.clone(), false), (a.job_id.clone(), true), (a.job_id.clone(), false)]);
    assert_eq!(
        store.list_jobs(&a.tenant_id, &JobFilter::default(), 10, None).await.expect("list").jobs.len(),
        2
    );
});

conformance!(a_job_id_of_another_tenant_in_a_batch_fails_that_request_alone, |store: Store| async move {
    let theirs = setup_job(&store, "other", "T-theirs", 3).await;
    store.create_pending(theirs.clone()).await.expect("their job");
    let mine = setup_job(&store, "acme", "T-mine", 3).await;
    // A request of acme's naming the other tenant's job id, beside a new job of acme's.
    let clash = NewJob { job_id: theirs.job_id.clone(), ..setup_job(&store, "acme", "T-clash", 3).await };
    let results = store.create_pending_many(vec![clash, mine.clone()]).await.expect("batch");
    assert!(matches!(results[0], Err(longhaul_store::StoreError::NotFound("job"))), "{:?}", results[0]);
    let (record, created) = results[1].as_ref().expect("the new job");
    assert_eq!((&record.job_id, *created), (&mine.job_id, true));
    assert!(store.get_job(&mine.tenant_id, &mine.job_id).await.expect("get").is_some(), "recorded");
    let theirs_now = store.get_job(&theirs.tenant_id, &theirs.job_id).await.expect("get").expect("theirs");
    assert_eq!(theirs_now.key.as_deref(), Some("T-theirs"), "their record is untouched");
    // Audit rows are written under the requesting tenant: neither acme's nor theirs may hold one.
    for t in [&mine.tenant_id, &theirs.tenant_id] {
        let audit = store.job_audit(t, &theirs.job_id).await.expect("audit");
        let duplicate = audit.iter().any(|e| e.action == "duplicate_enqueue");
        assert!(!duplicate, "no duplicate audit row for {t}: {audit:?}");
    }
});

conformance!(two_tenants_naming_one_job_id_in_a_batch_each_get_their_own_answer, |store: Store| async move {
    use longhaul_core::JobId;
    let theirs = setup_job(&store, "other", "T-o", 3).await;
    let mine = setup_job(&store, "acme", "T-m", 3).await;
    store.create_pending(theirs.clone()).await.expect("their job");
    let clash = NewJob { job_id: theirs.job_id.clone(), ..mine.clone() };
    // An existing id: the owner's request is a duplicate, the other tenant's reads as missing,
    // in either order.
    for batch in [vec![clash.clone(), theirs.clone()], vec![theirs.clone(), clash.clone()]] {
        let results = store.create_pending_many(batch.clone()).await.expect("batch");
        assert_eq!(results.len(), batch.len(), "one answer per request");
        for (request, result) in batch.iter().zip(&results) {
            if request.tenant_id == theirs.tenant_id {
                let (record, created) = result.as_ref().expect("the owner's duplicate");
                assert_eq!((&record.tenant_id, *created), (&theirs.tenant_id, false));
            } else {
                assert!(matches!(result, Err(longhaul_store::StoreError::NotFound("job"))), "{result:?}");
            }
        }
    }
    // A new id asked for by one tenant, then another, then the first again: the first creates it,
    // the second reads it as missing, the third is a duplicate of the first's.
    let id = JobId::derive(&mine.tenant_id, "test", &longhaul_core::JobKey::Derived("fresh".into()));
    let ours = NewJob { job_id: id.clone(), ..mine.clone() };
    let other = NewJob { job_id: id.clone(), ..theirs.clone() };
    let results = store.create_pending_many(vec![ours.clone(), other, ours]).await.expect("batch");
    let (first, created) = results[0].as_ref().expect("creator");
    assert_eq!((&first.tenant_id, *created), (&mine.tenant_id, true));
    assert!(matches!(results[1], Err(longhaul_store::StoreError::NotFound("job"))), "{:?}", results[1]);
    let (third, created) = results[2].as_ref().expect("duplicate");
    assert_eq!((&third.tenant_id, *created), (&mine.tenant_id, false));
});

/// A duplicate whose audit row fails (here a trigger refuses it) costs that request alone: the
/// batch's new job is recorded by then (its insert committed on its own) and answered as created,
/// the other duplicate gets its record and its audit row. On the previous form (one transaction)
/// the whole batch failed and every request was retried on its own.
#[tokio::test]
async fn postgres_a_duplicate_whose_audit_row_fails_leaves_the_new_job_created() {
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let (old, bad) = (setup_job(&db, "acme", "T-old", 3).await, setup_job(&db, "acme", "T-bad", 3).await);
    for j in [&old, &bad] {
        db.create_pending(j.clone()).await.expect("existing");
    }
    let refused = format!(
        "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.job_id = '{}' AND NEW.action = 'duplicate_enqueue' THEN RAISE EXCEPTION 'refused'; END IF; \
           RETURN NEW; END $$; \
         CREATE TRIGGER refuse BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse();",
        bad.job_id
    );
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.expect("connect");
    sqlx::raw_sql(sqlx::AssertSqlSafe(refused)).execute(&mut conn).await.expect("trigger");
    let new = setup_job(&db, "acme", "T-new", 3).await;
    let results = db.create_pending_many(vec![bad.clone(), new.clone(), old.clone()]).await.expect("batch");
    assert!(matches!(results[0], Err(longhaul_store::StoreError::Database(_))), "{:?}", results[0]);
    let (record, created) = results[1].as_ref().expect("the new job");
    assert_eq!((&record.job_id, *created), (&new.job_id, true));
    let (record, created) = results[2].as_ref().expect("the other duplicate");
    assert_eq!((&record.job_id, *created), (&old.job_id, false));
    let actions =
        |audit: Vec<longhaul_store::AuditEntry>| audit.into_iter().map(|e| e.action).collect::<Vec<_>>();
    assert_eq!(
        actions(db.job_audit(&old.tenant_id, &old.job_id).await.expect("audit")),
        ["enqueued", "duplicate_enqueue"]
    );
    assert_eq!(actions(db.job_audit(&bad.tenant_id, &bad.job_id).await.expect("audit")), ["enqueued"]);
    assert!(db.get_job(&new.tenant_id, &new.job_id).await.expect("get").is_some(), "the new job is recorded");
}

/// The connection lost after the insert, in the duplicates' transaction (here a trigger ends its
/// own backend at a duplicate's audit row, after their read): the insert had committed, so the new
/// job is answered as created and recorded; each duplicate gets the retryable `BatchFailed` at
/// once, with no audit row, instead of each being tried again against a database that may be down.
#[tokio::test]
async fn postgres_duplicates_whose_connection_is_lost_are_retryable_and_the_new_job_stands() {
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let (one, two) = (setup_job(&db, "acme", "T-one", 3).await, setup_job(&db, "acme", "T-two", 3).await);
    for j in [&one, &two] {
        db.create_pending(j.clone()).await.expect("existing");
    }
    let new = setup_job(&db, "acme", "T-new", 3).await;
    db.cut_connections_at_audit("duplicate_enqueue", true).await;
    let results = db.create_pending_many(vec![one.clone(), new.clone(), two.clone()]).await.expect("batch");
    assert_eq!(results.len(), 3);
    for i in [0, 2] {
        assert!(
            matches!(results[i], Err(longhaul_store::StoreError::BatchFailed(_))),
            "{i}: {:?}",
            results[i]
        );
    }
    let (record, created) = results[1].as_ref().expect("the new job");
    assert_eq!((&record.job_id, *created), (&new.job_id, true));
    db.cut_connections_at_audit("duplicate_enqueue", false).await;
    assert!(db.get_job(&new.tenant_id, &new.job_id).await.expect("get").is_some(), "the new job is recorded");
    for j in [&one, &two] {
        let audit = db.job_audit(&j.tenant_id, &j.job_id).await.expect("audit");
        assert_eq!(audit.into_iter().map(|e| e.action).collect::<Vec<_>>(), ["enqueued"], "{}", j.job_id);
    }
}

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
    // Started by deliveries of entries "0-…"; d's attempt 1 taken over by a later delivery.
    let first = |j: &longhaul_core::NewJob, delivery| lease(&format!("0-{}", j.key), delivery);
    for j in [b, c, d, e, f] {
        applied(store.start_next(&j.tenant_id, &j.job_id, first(j, 1), 1).await.expect("start 1"));
    }
    applied(store.start_next(&d.tenant_id, &d.job_id, first(d, 2), 1).await.expect("start 2"));
    applied(store.complete(&e.tenant_id, &e.job_id, 1, &json!({"done": true})).await.expect("complete"));
    let missing = setup_job(&store, "acme", "T-missing", 3).await;
    // Deliveries of each job's entry "1-…"; b's is an entry enqueued after its attempt 1 started.
    let next = |j: &longhaul_core::NewJob, entry_attempt| Write::StartNext {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        lease: lease(&format!("1-{}", j.key), 1),
        entry_attempt,
    };
    let complete = |j: &longhaul_core::NewJob, attempt| Write::Complete {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        attempt,
        output: json!({"job": j.key}),
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
            ("enqueued".to_owned(), json!({"kind": "test", "key": "T-ba"})),
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
    applied(store.start_next(&a.tenant_id, &a.job_id, lease("1-0", 1), 1).await.expect("start"));
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
    applied(store.start_next(&a.tenant_id, &a.job_id, lease("0-0", 1), 1).await.expect("start"));
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
        use longhaul_core::{IdempotencyKey, JobId};
        // Requests sharing an idempotency key share a job id, whatever input they carry. Mixed with
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
        let results: Vec<_> = store
            .create_pending_many(batch.clone())
            .await
            .expect("batch")
            .into_iter()
            .map(|r| r.expect("each"))
            .collect();
        for (request, (record, created)) in batch.iter().zip(&results) {
            let first_for_id = batch.iter().position(|r| r.job_id == request.job_id).expect("present");
            let creator = &batch[first_for_id];
            assert_eq!(*created, std::ptr::eq(request, creator), "{}", request.key);
            assert_eq!(
                (&record.key, &record.input),
                (&Some(creator.key.clone()), &creator.input),
                "the stored record is the creator's request"
            );
        }
    }
);

conformance!(a_stale_attempts_progress_in_a_batch_does_not_displace_the_owners, |store: Store| async move {
    let a = setup_job(&store, "acme", "T-px", 3).await;
    store.create_pending(a.clone()).await.expect("create");
    applied(store.start_next(&a.tenant_id, &a.job_id, lease("1-0", 1), 1).await.expect("start 1"));
    applied(store.start_next(&a.tenant_id, &a.job_id, lease("1-0", 2), 1).await.expect("takeover"));
    let (p33, p66) = (Progress::new(33).expect("p"), Progress::new(66).expect("p"));
    // The owner's write first, then a late one from the attempt it took over.
    let writes = [(&a.tenant_id, &a.job_id, 2, "classify", p66), (&a.tenant_id, &a.job_id, 1, "load", p33)];
    assert_eq!(store.record_progress_many(&writes).await.expect("batch"), [true, false]);
    let r = store.get_job(&a.tenant_id, &a.job_id).await.expect("get").expect("a");
    assert_eq!((r.attempts, r.stage.as_deref(), r.progress.percent()), (2, Some("classify"), 66));
});

/// A record started before starts carried their delivery (no lease stored) is taken over by any
/// delivery of the next attempt's start — the branch of the start's fence that only such rows
/// reach. With the lease stored, the same start from another entry is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_record_without_a_lease_is_taken_over_by_any_delivery() {
    for kind in [crate::harness::Kind::Sqlite, crate::harness::Kind::Postgres] {
        let db = longhaul_testkit::TestDb::new(kind).await;
        let store = db.store.clone();
        let a = setup_job(&store, "acme", "T-nl", 3).await;
        store.create_pending(a.clone()).await.expect("create");
        applied(store.start_next(&a.tenant_id, &a.job_id, lease("5-0", 3), 1).await.expect("start"));
        let other = store.start_next(&a.tenant_id, &a.job_id, lease("1-0", 1), 1).await.expect("other");
        assert!(
            matches!(&other, WriteOutcome::Refused { reason: TransitionError::Superseded { .. }, .. }),
            "{kind:?}: {other:?}"
        );
        let forget = "UPDATE jobs SET lease_entry = NULL, lease_delivery = NULL WHERE job_id = $1";
        let rows = match kind {
            crate::harness::Kind::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
                let r = sqlx::query(forget).bind(a.job_id.as_str()).execute(&pool).await.expect("forget");
                pool.close().await;
                r.rows_affected()
            }
            crate::harness::Kind::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
                let r = sqlx::query(forget).bind(a.job_id.as_str()).execute(&pool).await.expect("forget");
                pool.close().await;
                r.rows_affected()
            }
        };
        assert_eq!(rows, 1);
        let r =
            applied(store.start_next(&a.tenant_id, &a.job_id, lease("1-0", 1), 1).await.expect("takeover"));
        assert_eq!(
            (r.status, r.attempts, r.lease),
            (JobStatus::Running, 2, Some(lease("1-0", 1))),
            "{kind:?}"
        );
        store.close().await;
    }
}

/// The batched progress statement (PostgreSQL) turns `synchronous_commit` off for its own
/// transaction when told it is advisory (a batch of progress alone), and leaves it alone otherwise:
/// the setting is read at commit, so the advisory batch commits without waiting for its flush.
/// (The commit itself is measured in BENCHMARKS.md: fewer WAL syncs per job at a paced load.)
#[tokio::test]
async fn postgres_advisory_progress_turns_off_synchronous_commit_for_its_own_transaction() {
    use sqlx::Connection as _;
    const PROGRESS_MANY: &str = include_str!("../../sql/postgres/jobs/progress_many.sql");
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let j = setup_job(&db, "acme", "T-adv", 3).await;
    db.create_pending(j.clone()).await.expect("create");
    applied(db.start_next(&j.tenant_id, &j.job_id, lease("1-0", 1), 1).await.expect("start"));
    let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connect");
    async fn setting(conn: &mut sqlx::PgConnection) -> String {
        let (s,): (String,) = sqlx::query_as("SELECT current_setting('synchronous_commit')")
            .fetch_one(conn)
            .await
            .expect("show");
        s
    }
    sqlx::query("SET synchronous_commit = on").execute(&mut conn).await.expect("set");
    let before = setting(&mut conn).await;
    for (advisory, percent) in [(true, 40), (false, 50)] {
        let mut tx = conn.begin().await.expect("begin");
        let written: Vec<(String,)> = sqlx::query_as(PROGRESS_MANY)
            .bind(vec![j.job_id.as_str()])
            .bind(vec![j.tenant_id.as_str()])
            .bind(vec![1_i32])
            .bind(vec!["classify"])
            .bind(vec![percent])
            .bind(chrono::Utc::now())
            .bind(advisory)
            .fetch_all(&mut *tx)
            .await
            .expect("progress");
        assert_eq!(written, [(j.job_id.as_str().to_owned(),)], "the running attempt's progress is written");
        let during = setting(&mut tx).await;
        assert_eq!(during, if advisory { "off".to_owned() } else { before.clone() }, "advisory {advisory}");
        tx.commit().await.expect("commit");
        assert_eq!(setting(&mut conn).await, before, "only its own transaction commits asynchronously");
        let r = db.get_job(&j.tenant_id, &j.job_id).await.expect("get").expect("job");
        assert_eq!(r.progress.percent(), u8::try_from(percent).expect("percent"));
    }
    // The store's own batch of progress alone goes through the same statement and is applied.
    let p = Progress::new(60).expect("p");
    assert_eq!(
        db.record_progress_many(&[(&j.tenant_id, &j.job_id, 1, "apply", p)]).await.expect("batch"),
        [true]
    );
    let r = db.get_job(&j.tenant_id, &j.job_id).await.expect("get").expect("job");
    assert_eq!((r.stage.as_deref(), r.progress.percent()), (Some("apply"), 60));
    conn.close().await.expect("close");
}
