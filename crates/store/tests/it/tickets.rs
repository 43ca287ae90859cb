//! Tickets and their revisions, the pipeline's reads of them, and the triage written onto them
//! with its operation record.

use longhaul_core::{JobContext, OperationId, OperationState};
use longhaul_store::{Store, StoreError, TriageWrite};
use serde_json::{Value, json};

use crate::harness::{conformance, setup_job, tenant, ticket};

/// The names the pipeline records its ticket update under (the store takes them from the caller).
const STAGE: &str = "apply";
const EFFECT: &str = "ticket-update";

/// The ticket update of `ctx` under operation `op`.
fn write<'a>(ctx: &'a JobContext, op: &'a OperationId, triage: &'a Value) -> TriageWrite<'a> {
    TriageWrite { ctx, op, stage: STAGE, effect: EFFECT, triage }
}

conformance!(ticket_revisions_bump_and_stay_in_tenant, |store: Store| async move {
    store.create_tenant(&tenant("acme"), "Acme", None).await.expect("acme");
    store.create_tenant(&tenant("globex"), "Globex", None).await.expect("globex");
    let t1 = store
        .upsert_ticket(&tenant("acme"), &ticket("SUP-1"), "Refund", "Charged twice")
        .await
        .expect("create");
    assert_eq!((t1.revision, t1.subject.as_str()), (1, "Refund"));
    let t2 = store
        .upsert_ticket(&tenant("acme"), &ticket("SUP-1"), "Refund!", "Charged 3x")
        .await
        .expect("update");
    assert_eq!((t2.revision, t2.body.as_str()), (2, "Charged 3x"));
    assert_eq!(t2.created_at, t1.created_at);
    assert_eq!(store.get_ticket(&tenant("acme"), &ticket("SUP-1")).await.expect("get"), Some(t2));
    assert_eq!(store.get_ticket(&tenant("globex"), &ticket("SUP-1")).await.expect("get"), None);
    // A ticket for an unknown tenant is refused by the foreign key.
    let err = store.upsert_ticket(&tenant("nobody"), &ticket("SUP-1"), "s", "b").await.expect_err("fk");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
});

conformance!(the_pipeline_reads_a_ticket_with_its_tenants_webhook_in_one_query, |store: Store| async move {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    store.create_tenant(&acme, "Acme", Some("http://127.0.0.1:9/hook")).await.expect("acme");
    store.create_tenant(&globex, "Globex", None).await.expect("globex");
    store.upsert_ticket(&acme, &ticket("T-1"), "s1", "b1").await.expect("ticket");
    store.upsert_ticket(&acme, &ticket("T-1"), "s2", "b2").await.expect("revision 2");
    store.upsert_ticket(&globex, &ticket("T-2"), "s", "b").await.expect("ticket");

    let view = store.load_ticket_view(&acme, &ticket("T-1")).await.expect("load").expect("exists");
    assert_eq!((view.revision, view.subject.as_str(), view.body.as_str()), (2, "s2", "b2"));
    assert_eq!(view.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    let view = store.load_ticket_view(&globex, &ticket("T-2")).await.expect("load").expect("exists");
    assert_eq!((view.tenant_id, view.webhook_url), (globex.clone(), None));
    assert_eq!(
        store.load_ticket_view(&globex, &ticket("T-1")).await.expect("load"),
        None,
        "scoped by tenant"
    );
});

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
    let first =
        store.write_ticket_triage(write(&ctx, &op, &json!({"category": "bug"}))).await.expect("write");
    // A retried attempt writes again: nothing changes, the stored result comes back.
    let again =
        store.write_ticket_triage(write(&ctx, &op, &json!({"category": "billing"}))).await.expect("again");
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
        store.write_ticket_triage(write(&ghost, &op2, &json!({}))).await,
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
    let first_b = store.write_ticket_triage(write(&cb, &ob, &json!({"category": "bug"}))).await.expect("b");
    let (ta, tb, tc, tg) =
        (json!({"category": "billing"}), json!({"category": "other"}), json!({"n": 3}), json!({}));
    let writes = [write(&ca, &oa, &ta), write(&cb, &ob, &tb), write(&cg, &og, &tg), write(&cc, &oc, &tc)];
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
    let out = store
        .write_ticket_triage_many(&[write(&ca1, &oa1, &t1), write(&ca2, &oa2, &t2)])
        .await
        .expect("same ticket");
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
    assert_eq!(store.write_ticket_triage(write(&a2, &op(&a2), &triage(2))).await.expect("r2"), written(2));
    assert_eq!(store.write_ticket_triage(write(&a1, &op(&a1), &triage(1))).await.expect("r1"), skipped(2, 1));
    assert_eq!(stored(&a).await, Some(triage(2)));
    assert_eq!(
        store.get_operation(&a.tenant_id, &op(&a1)).await.expect("op"),
        Some(OperationState::Done { result: skipped(2, 1) }),
        "the skipped write is recorded"
    );
    assert_eq!(
        store.write_ticket_triage(write(&a1, &op(&a1), &triage(1))).await.expect("again"),
        skipped(2, 1)
    );

    // The batch form (one statement on PostgreSQL): b is written, a late revision of a is not.
    let (a3, b1) = (ctx(&a, 3), ctx(&b, 1));
    store.write_ticket_triage(write(&a3, &op(&a3), &triage(3))).await.expect("r3");
    let (ta, tb) = (triage(2), triage(1));
    let late =
        JobContext { job_id: longhaul_core::JobId::for_ticket(&a.tenant_id, &a.ticket_id, 9), ..ctx(&a, 2) };
    let out = store
        .write_ticket_triage_many(&[write(&late, &op(&late), &ta), write(&b1, &op(&b1), &tb)])
        .await
        .expect("batch");
    assert_eq!(out[0].as_ref().expect("a"), &skipped(3, 2));
    assert_eq!(out[1].as_ref().expect("b"), &written(1));
    assert_eq!((stored(&a).await, stored(&b).await), (Some(triage(3)), Some(triage(1))));

    // Concurrent writers of one ticket, in any order: the newest revision is what stays.
    let writes = (1..=8u64).rev().map(|revision| {
        let (store, c) = (store.clone(), ctx(&b, 10 + revision));
        tokio::spawn(
            async move { store.write_ticket_triage(write(&c, &op(&c), &triage(10 + revision))).await },
        )
    });
    for w in futures::future::join_all(writes).await {
        w.expect("task").expect("write");
    }
    assert_eq!(stored(&b).await, Some(triage(18)));
});
