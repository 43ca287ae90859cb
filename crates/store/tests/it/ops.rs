//! The operation log, through the core `OperationLog` trait the pipeline uses, and connection
//! errors.

use std::time::{Duration, Instant};

use longhaul_core::{JobContext, OperationId, OperationLog, OperationState};
use longhaul_store::{Store, StoreError, StoreOptions};
use serde_json::json;

use crate::harness::{conformance, setup_job};

conformance!(operations_run_once_and_keep_results, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-op", 3).await;
    store.create_pending(job.clone()).await.expect("create");
    let mut ctx = JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        ticket_id: job.ticket_id.clone(),
        ticket_revision: 1,
        attempt: 1,
    };
    let op = OperationId::derive(&job.job_id, "apply", "webhook");

    assert_eq!(OperationLog::begin(&store, &ctx, &op, "apply", "webhook").await.expect("begin"), None);
    // Attempt 1 dies mid-effect; attempt 2 finds it started and must run it again.
    ctx.attempt = 2;
    assert_eq!(
        OperationLog::begin(&store, &ctx, &op, "apply", "webhook").await.expect("begin"),
        Some(OperationState::Started { attempt: 1 })
    );
    let result = json!({"status": 200, "delivery": "d-1"});
    OperationLog::finish(&store, &ctx, &op, &result).await.expect("finish");
    // Attempt 3 finds it done and reuses the result.
    ctx.attempt = 3;
    assert_eq!(
        OperationLog::begin(&store, &ctx, &op, "apply", "webhook").await.expect("begin"),
        Some(OperationState::Done { result: result.clone() })
    );
    // Finishing again keeps the first result.
    OperationLog::finish(&store, &ctx, &op, &json!({"status": 500})).await.expect("finish again");
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Done { result })
    );

    // Unknown operations and other tenants' operations are not found.
    let unknown = OperationId::derive(&job.job_id, "apply", "ticket-update");
    assert!(matches!(
        store.finish_operation(&job.tenant_id, &unknown, &json!(1)).await,
        Err(StoreError::NotFound("operation"))
    ));
    let other = longhaul_core::TenantId::parse("other").expect("tenant");
    assert_eq!(store.get_operation(&other, &op).await.expect("get"), None);
});

#[tokio::test]
async fn unsupported_url_scheme_is_a_clear_config_error() {
    let err = Store::connect(Some("mysql://root@127.0.0.1/test"), &StoreOptions::default())
        .await
        .expect_err("mysql is not a backend");
    assert_eq!(err.to_string(), "unsupported database URL scheme \"mysql\": use postgres://… or sqlite://…");
    let err = Store::connect(Some("postgres://[::1"), &StoreOptions::default()).await.expect_err("bad url");
    assert!(err.to_string().starts_with("invalid PostgreSQL URL"), "{err}");
}

#[tokio::test]
async fn unreachable_database_fails_fast_and_retryable() {
    let options = StoreOptions { max_connections: 2, acquire_timeout: Duration::from_secs(1) };
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = Store::connect(Some("postgres://postgres@127.0.0.1:1/postgres"), &options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn sqlite_file_is_created_on_first_use() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fresh.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect_and_migrate(Some(&url), &StoreOptions::default()).await.expect("store");
    store.migrate().await.expect("migrating twice is a no-op");
    store.ping().await.expect("ping");
    assert!(path.exists());
    store.close().await;
}

conformance!(ticket_triage_is_written_once_with_its_operation, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-tri", 3).await;
    store.upsert_ticket(&job.tenant_id, &job.ticket_id, "s", "b").await.expect("ticket");
    let ctx = JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        ticket_id: job.ticket_id.clone(),
        ticket_revision: 1,
        attempt: 1,
    };
    let op = OperationId::derive(&job.job_id, "apply", "ticket-update");
    let first = store.write_ticket_triage(&ctx, &op, &json!({"category": "bug"})).await.expect("write");
    // A retried attempt writes again: nothing changes, the stored result comes back.
    let again = store.write_ticket_triage(&ctx, &op, &json!({"category": "billing"})).await.expect("again");
    assert_eq!(first, again);
    let ticket = store.get_ticket(&job.tenant_id, &job.ticket_id).await.expect("get").expect("exists");
    assert_eq!(ticket.triage, Some(json!({"category": "bug"})));
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("op"),
        Some(OperationState::Done { result: first })
    );
    // A missing ticket writes neither the ticket nor the operation.
    let ghost = JobContext { ticket_id: longhaul_core::TicketId::parse("T-ghost").expect("id"), ..ctx };
    let op2 = OperationId::derive(&job.job_id, "apply", "ghost");
    assert!(matches!(
        store.write_ticket_triage(&ghost, &op2, &json!({})).await,
        Err(StoreError::NotFound("ticket"))
    ));
    assert_eq!(store.get_operation(&job.tenant_id, &op2).await.expect("op"), None);
});

conformance!(ticket_triage_of_many_jobs_in_one_batch, |store: Store| async move {
    let ctx = |job: &longhaul_core::NewJob| JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        ticket_id: job.ticket_id.clone(),
        ticket_revision: 1,
        attempt: 1,
    };
    let [a, b, c, ghost] = [
        setup_job(&store, "acme", "T-ma", 3).await,
        setup_job(&store, "acme", "T-mb", 3).await,
        setup_job(&store, "acme", "T-mc", 3).await,
        setup_job(&store, "acme", "T-ghost", 3).await,
    ];
    for j in [&a, &b, &c] {
        store.upsert_ticket(&j.tenant_id, &j.ticket_id, "s", "b").await.expect("ticket");
    }
    let op = |j: &longhaul_core::NewJob| OperationId::derive(&j.job_id, "apply", "ticket-update");
    let (ca, cb, cc, cg) = (ctx(&a), ctx(&b), ctx(&c), ctx(&ghost));
    let (oa, ob, oc, og) = (op(&a), op(&b), op(&c), op(&ghost));
    // b was written by an earlier attempt: the batch returns its stored result and leaves it.
    let first_b = store.write_ticket_triage(&cb, &ob, &json!({"category": "bug"})).await.expect("b");
    let (ta, tb, tc, tg) =
        (json!({"category": "billing"}), json!({"category": "other"}), json!({"n": 3}), json!({}));
    let writes = [(&ca, &oa, &ta), (&cb, &ob, &tb), (&cg, &og, &tg), (&cc, &oc, &tc)];
    let out = store.write_ticket_triage_many(&writes).await.expect("batch");
    assert_eq!(out[0].as_ref().expect("a"), &json!({"written": true, "triage": ta}));
    assert_eq!(out[1].as_ref().expect("b"), &first_b);
    assert_eq!(first_b, json!({"written": true, "triage": {"category": "bug"}}), "b's first write");
    assert!(matches!(out[2], Err(StoreError::NotFound("ticket"))), "{:?}", out[2]);
    assert_eq!(out[3].as_ref().expect("c"), &json!({"written": true, "triage": tc}));
    let triage = |j: &longhaul_core::NewJob| {
        let (store, t, k) = (store.clone(), j.tenant_id.clone(), j.ticket_id.clone());
        async move { store.get_ticket(&t, &k).await.expect("get").expect("ticket").triage }
    };
    assert_eq!(triage(&a).await, Some(ta));
    assert_eq!(triage(&b).await, Some(json!({"category": "bug"})), "written once");
    assert_eq!(triage(&c).await, Some(tc));
    assert_eq!(
        store.get_operation(&ghost.tenant_id, &og).await.expect("op"),
        None,
        "nothing for a missing ticket"
    );

    // Two jobs of one ticket in one batch are written in order: the later write is the one kept.
    let later = longhaul_core::JobId::for_ticket(&a.tenant_id, &a.ticket_id, 2);
    let ca2 = JobContext { job_id: later.clone(), ticket_revision: 2, ..ctx(&a) };
    let oa2 = OperationId::derive(&later, "apply", "ticket-update");
    let (t1, t2) = (json!({"v": 1}), json!({"v": 2}));
    let (oa1, ca1) = (OperationId::derive(&a.job_id, "apply", "again"), ctx(&a));
    let out =
        store.write_ticket_triage_many(&[(&ca1, &oa1, &t1), (&ca2, &oa2, &t2)]).await.expect("same ticket");
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(triage(&a).await, Some(t2));
    assert!(store.write_ticket_triage_many(&[]).await.expect("empty").is_empty());
});

conformance!(an_older_revisions_triage_never_replaces_a_newer_one, |store: Store| async move {
    let [a, b] = [setup_job(&store, "acme", "T-ra", 3).await, setup_job(&store, "acme", "T-rb", 3).await];
    for j in [&a, &b] {
        store.upsert_ticket(&j.tenant_id, &j.ticket_id, "s", "b").await.expect("ticket");
    }
    let ctx = |j: &longhaul_core::NewJob, revision: u64| JobContext {
        job_id: longhaul_core::JobId::for_ticket(&j.tenant_id, &j.ticket_id, revision),
        tenant_id: j.tenant_id.clone(),
        ticket_id: j.ticket_id.clone(),
        ticket_revision: revision,
        attempt: 1,
    };
    let op = |c: &JobContext| OperationId::derive(&c.job_id, "apply", "ticket-update");
    let triage = |revision: u64| json!({ "revision": revision, "labels": [format!("r{revision}")] });
    let stored = |j: &longhaul_core::NewJob| {
        let (store, t, k) = (store.clone(), j.tenant_id.clone(), j.ticket_id.clone());
        async move { store.get_ticket(&t, &k).await.expect("get").expect("ticket").triage }
    };
    let written = |revision: u64| json!({ "written": true, "triage": triage(revision) });
    let skipped =
        |by: u64, revision: u64| json!({ "written": false, "superseded_by": by, "triage": triage(revision) });

    // One write at a time: revision 2, then a late revision 1.
    let (a2, a1) = (ctx(&a, 2), ctx(&a, 1));
    assert_eq!(store.write_ticket_triage(&a2, &op(&a2), &triage(2)).await.expect("r2"), written(2));
    assert_eq!(store.write_ticket_triage(&a1, &op(&a1), &triage(1)).await.expect("r1"), skipped(2, 1));
    assert_eq!(stored(&a).await, Some(triage(2)));
    assert_eq!(
        store.get_operation(&a.tenant_id, &op(&a1)).await.expect("op"),
        Some(OperationState::Done { result: skipped(2, 1) }),
        "the skipped write is recorded"
    );
    assert_eq!(store.write_ticket_triage(&a1, &op(&a1), &triage(1)).await.expect("again"), skipped(2, 1));

    // The batch form (one statement on PostgreSQL): b is written, a late revision of a is not.
    let (a3, b1) = (ctx(&a, 3), ctx(&b, 1));
    store.write_ticket_triage(&a3, &op(&a3), &triage(3)).await.expect("r3");
    let (ta, tb) = (triage(2), triage(1));
    let late =
        JobContext { job_id: longhaul_core::JobId::for_ticket(&a.tenant_id, &a.ticket_id, 9), ..ctx(&a, 2) };
    let out = store
        .write_ticket_triage_many(&[(&late, &op(&late), &ta), (&b1, &op(&b1), &tb)])
        .await
        .expect("batch");
    assert_eq!(out[0].as_ref().expect("a"), &skipped(3, 2));
    assert_eq!(out[1].as_ref().expect("b"), &written(1));
    assert_eq!((stored(&a).await, stored(&b).await), (Some(triage(3)), Some(triage(1))));

    // Concurrent writers of one ticket, in any order: the newest revision is what stays.
    let writes = (1..=8u64).rev().map(|revision| {
        let (store, c) = (store.clone(), ctx(&b, 10 + revision));
        tokio::spawn(async move { store.write_ticket_triage(&c, &op(&c), &triage(10 + revision)).await })
    });
    for w in futures::future::join_all(writes).await {
        w.expect("task").expect("write");
    }
    assert_eq!(stored(&b).await, Some(triage(18)));
});
