//! Tickets and their revisions, the pipeline's reads of them, and the triage written onto them
//! with its operation record in the store's operation log; the triage migrations.

use longhaul_core::{ErrorClass, JobContext, JobError, OperationId, OperationState, TenantId, TicketId};
use longhaul_store::{BackendKind, Store, StoreError};
use longhaul_triage::storage::{self, TriageWrite};
use serde_json::{Value, json};

use crate::{conformance, ensure_tenant, job_id, tenant, ticket};

/// The names the pipeline records its ticket update under (storage takes them from the caller).
const STAGE: &str = "apply";
const EFFECT: &str = "ticket-update";

/// The ticket update of `ctx` onto `ticket` under operation `op`.
fn write<'a>(
    ctx: &'a JobContext,
    ticket: &'a TicketId,
    op: &'a OperationId,
    triage: &'a Value,
) -> TriageWrite<'a> {
    TriageWrite { ctx, ticket, op, stage: STAGE, effect: EFFECT, triage }
}

/// Attempt 1 of the triage job of revision `revision` of `ticket`.
fn ctx(tenant: &TenantId, ticket: &TicketId, revision: u64) -> JobContext {
    JobContext {
        job_id: job_id(tenant, ticket, revision),
        tenant_id: tenant.clone(),
        kind: "triage".to_owned(),
        attempt: 1,
    }
}

fn op(c: &JobContext) -> OperationId {
    OperationId::derive(&c.job_id, STAGE, EFFECT)
}

/// The triage ticket `k` of `t` holds.
async fn stored(store: &Store, t: &TenantId, k: &TicketId) -> Option<Value> {
    storage::get_ticket(store, t, k).await.expect("get").expect("ticket").triage
}

conformance!(ticket_revisions_bump_and_stay_in_tenant, |store: Store| async move {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    ensure_tenant(&store, &acme).await;
    ensure_tenant(&store, &globex).await;
    let t1 = storage::upsert_ticket(&store, &acme, &ticket("SUP-1"), "Refund", "Charged twice")
        .await
        .expect("create");
    assert_eq!((t1.revision, t1.subject.as_str()), (1, "Refund"));
    let t2 = storage::upsert_ticket(&store, &acme, &ticket("SUP-1"), "Refund!", "Charged 3x")
        .await
        .expect("update");
    assert_eq!((t2.revision, t2.body.as_str()), (2, "Charged 3x"));
    assert_eq!(t2.created_at, t1.created_at);
    assert_eq!(storage::get_ticket(&store, &acme, &ticket("SUP-1")).await.expect("get"), Some(t2));
    assert_eq!(storage::get_ticket(&store, &globex, &ticket("SUP-1")).await.expect("get"), None);
    // A ticket for an unknown tenant is refused by the foreign key.
    let err =
        storage::upsert_ticket(&store, &tenant("nobody"), &ticket("SUP-1"), "s", "b").await.expect_err("fk");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
});

conformance!(the_pipeline_reads_a_ticket_with_its_tenants_webhook_in_one_query, |store: Store| async move {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    store.create_tenant(&acme, "Acme", Some("http://127.0.0.1:9/hook")).await.expect("acme");
    store.create_tenant(&globex, "Globex", None).await.expect("globex");
    storage::upsert_ticket(&store, &acme, &ticket("T-1"), "s1", "b1").await.expect("ticket");
    storage::upsert_ticket(&store, &acme, &ticket("T-1"), "s2", "b2").await.expect("revision 2");
    storage::upsert_ticket(&store, &globex, &ticket("T-2"), "s", "b").await.expect("ticket");

    let view = storage::load_ticket_view(&store, &acme, &ticket("T-1")).await.expect("load").expect("exists");
    assert_eq!((view.revision, view.subject.as_str(), view.body.as_str()), (2, "s2", "b2"));
    assert_eq!(view.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    let other =
        storage::load_ticket_view(&store, &globex, &ticket("T-2")).await.expect("load").expect("exists");
    assert_eq!((&other.tenant_id, &other.webhook_url), (&globex, &None));
    assert_eq!(
        storage::load_ticket_view(&store, &globex, &ticket("T-1")).await.expect("load"),
        None,
        "scoped by tenant"
    );
    // The batched read (one query on PostgreSQL) answers the same, in order.
    let (t1, t2, t3) = (ticket("T-1"), ticket("T-2"), ticket("T-3"));
    let keys = [(&globex, &t2), (&acme, &t3), (&globex, &t1), (&acme, &t1)];
    let views = storage::load_ticket_views(&store, &keys).await.expect("load many");
    assert_eq!(views, [Some(other), None, None, Some(view.clone())]);
    assert_eq!(storage::load_ticket_views(&store, &keys[3..]).await.expect("one"), [Some(view)]);
    assert!(storage::load_ticket_views(&store, &[]).await.expect("none").is_empty());
});

conformance!(ticket_triage_is_written_once_with_its_operation, |store: Store| async move {
    let (acme, k) = (tenant("acme"), ticket("T-tri"));
    ensure_tenant(&store, &acme).await;
    storage::upsert_ticket(&store, &acme, &k, "s", "b").await.expect("ticket");
    let c = ctx(&acme, &k, 1);
    let first = storage::write_ticket_triage(&store, write(&c, &k, &op(&c), &json!({"category": "bug"})))
        .await
        .expect("write");
    assert_eq!(first, json!({"written": true, "triage": {"category": "bug"}}));
    // A retried attempt writes again: nothing changes, the stored result comes back.
    let retried = JobContext { attempt: 2, ..c.clone() };
    let again =
        storage::write_ticket_triage(&store, write(&retried, &k, &op(&c), &json!({"category": "billing"})))
            .await
            .expect("again");
    assert_eq!(first, again);
    assert_eq!(stored(&store, &acme, &k).await, Some(json!({"category": "bug"})));
    // The operation is in the store's operation log, as any durable step's.
    assert_eq!(
        store.get_operation(&acme, &op(&c)).await.expect("op"),
        Some(OperationState::Done { result: first.clone() })
    );
    let log: &dyn longhaul_core::OperationLog = &store;
    assert_eq!(
        log.begin(&retried, &op(&c), STAGE, EFFECT).await.expect("begin"),
        Some(OperationState::Done { result: first })
    );
    // A missing ticket writes neither the ticket nor the operation.
    let ghost = ticket("T-ghost");
    let op2 = OperationId::derive(&c.job_id, STAGE, "ghost");
    assert!(matches!(
        storage::write_ticket_triage(&store, write(&c, &ghost, &op2, &json!({}))).await,
        Err(StoreError::NotFound("ticket"))
    ));
    assert_eq!(store.get_operation(&acme, &op2).await.expect("op"), None);
    // Another tenant's ticket of the same id is not written either.
    let globex = tenant("globex");
    ensure_tenant(&store, &globex).await;
    storage::upsert_ticket(&store, &globex, &ticket("T-g"), "s", "b").await.expect("ticket");
    let op3 = OperationId::derive(&c.job_id, STAGE, "cross");
    assert!(matches!(
        storage::write_ticket_triage(&store, write(&c, &ticket("T-g"), &op3, &json!({}))).await,
        Err(StoreError::NotFound("ticket"))
    ));
    assert_eq!(stored(&store, &globex, &ticket("T-g")).await, None);
});

conformance!(ticket_triage_of_many_jobs_in_one_batch, |store: Store| async move {
    let acme = tenant("acme");
    ensure_tenant(&store, &acme).await;
    let [ka, kb, kc, kg] = ["T-ma", "T-mb", "T-mc", "T-ghost"].map(ticket);
    for k in [&ka, &kb, &kc] {
        storage::upsert_ticket(&store, &acme, k, "s", "b").await.expect("ticket");
    }
    let (ca, cb, cc, cg) = (ctx(&acme, &ka, 1), ctx(&acme, &kb, 1), ctx(&acme, &kc, 1), ctx(&acme, &kg, 1));
    let (oa, ob, oc, og) = (op(&ca), op(&cb), op(&cc), op(&cg));
    // b was written by an earlier attempt: the batch returns its stored result and leaves it.
    let first_b = storage::write_ticket_triage(&store, write(&cb, &kb, &ob, &json!({"category": "bug"})))
        .await
        .expect("b");
    let (ta, tb, tc, tg) =
        (json!({"category": "billing"}), json!({"category": "other"}), json!({"n": 3}), json!({}));
    let writes = [
        write(&ca, &ka, &oa, &ta),
        write(&cb, &kb, &ob, &tb),
        write(&cg, &kg, &og, &tg),
        write(&cc, &kc, &oc, &tc),
    ];
    let out = storage::write_ticket_triage_many(&store, &writes).await.expect("batch");
    assert_eq!(out[0].as_ref().expect("a"), &json!({"written": true, "triage": ta}));
    assert_eq!(out[1].as_ref().expect("b"), &first_b);
    assert_eq!(first_b, json!({"written": true, "triage": {"category": "bug"}}), "b's first write");
    assert!(matches!(out[2], Err(StoreError::NotFound("ticket"))), "{:?}", out[2]);
    assert_eq!(out[3].as_ref().expect("c"), &json!({"written": true, "triage": tc}));
    assert_eq!(stored(&store, &acme, &ka).await, Some(ta));
    assert_eq!(stored(&store, &acme, &kb).await, Some(json!({"category": "bug"})), "written once");
    assert_eq!(stored(&store, &acme, &kc).await, Some(tc));
    assert_eq!(store.get_operation(&acme, &og).await.expect("op"), None, "nothing for a missing ticket");

    // Two jobs of one ticket in one batch are written in order: the later write is the one kept.
    let ca2 = ctx(&acme, &ka, 2);
    let oa2 = op(&ca2);
    let (t1, t2) = (json!({"v": 1}), json!({"v": 2}));
    let oa1 = OperationId::derive(&ca.job_id, STAGE, "again");
    let out =
        storage::write_ticket_triage_many(&store, &[write(&ca, &ka, &oa1, &t1), write(&ca2, &ka, &oa2, &t2)])
            .await
            .expect("same ticket");
    assert!(out.iter().all(Result::is_ok), "{out:?}");
    assert_eq!(stored(&store, &acme, &ka).await, Some(t2));
    assert!(storage::write_ticket_triage_many(&store, &[]).await.expect("empty").is_empty());
});

conformance!(an_older_revisions_triage_never_replaces_a_newer_one, |store: Store| async move {
    let acme = tenant("acme");
    ensure_tenant(&store, &acme).await;
    let (ka, kb) = (ticket("T-ra"), ticket("T-rb"));
    for k in [&ka, &kb] {
        storage::upsert_ticket(&store, &acme, k, "s", "b").await.expect("ticket");
    }
    let triage = |revision: u64| json!({ "revision": revision, "labels": [format!("r{revision}")] });
    let written = |revision: u64| json!({ "written": true, "triage": triage(revision) });
    let skipped =
        |by: u64, revision: u64| json!({ "written": false, "superseded_by": by, "triage": triage(revision) });

    // One write at a time: revision 2, then a late revision 1.
    let (a2, a1) = (ctx(&acme, &ka, 2), ctx(&acme, &ka, 1));
    let w = |c: &JobContext, k: &TicketId, t: &Value| {
        let (store, c, k, t) = (store.clone(), c.clone(), k.clone(), t.clone());
        async move { storage::write_ticket_triage(&store, write(&c, &k, &op(&c), &t)).await }
    };
    assert_eq!(w(&a2, &ka, &triage(2)).await.expect("r2"), written(2));
    assert_eq!(w(&a1, &ka, &triage(1)).await.expect("r1"), skipped(2, 1));
    assert_eq!(stored(&store, &acme, &ka).await, Some(triage(2)));
    assert_eq!(
        store.get_operation(&acme, &op(&a1)).await.expect("op"),
        Some(OperationState::Done { result: skipped(2, 1) }),
        "the skipped write is recorded"
    );
    assert_eq!(w(&a1, &ka, &triage(1)).await.expect("again"), skipped(2, 1));

    // The batch form (one statement on PostgreSQL): b is written, a late revision of a is not.
    let (a3, b1) = (ctx(&acme, &ka, 3), ctx(&acme, &kb, 1));
    w(&a3, &ka, &triage(3)).await.expect("r3");
    let (ta, tb) = (triage(2), triage(1));
    let late = JobContext { job_id: job_id(&acme, &ka, 9), ..ctx(&acme, &ka, 2) };
    let out = storage::write_ticket_triage_many(
        &store,
        &[write(&late, &ka, &op(&late), &ta), write(&b1, &kb, &op(&b1), &tb)],
    )
    .await
    .expect("batch");
    assert_eq!(out[0].as_ref().expect("a"), &skipped(3, 2));
    assert_eq!(out[1].as_ref().expect("b"), &written(1));
    assert_eq!(
        (stored(&store, &acme, &ka).await, stored(&store, &acme, &kb).await),
        (Some(triage(3)), Some(triage(1)))
    );

    // Concurrent writers of one ticket, in any order: the newest revision is what stays.
    let writes = (1..=8u64).rev().map(|revision| {
        let c = ctx(&acme, &kb, 10 + revision);
        let job = w(&c, &kb, &triage(10 + revision));
        tokio::spawn(job)
    });
    for done in futures::future::join_all(writes).await {
        done.expect("task").expect("write");
    }
    assert_eq!(stored(&store, &acme, &kb).await, Some(triage(18)));
});

conformance!(ticket_text_the_database_cannot_hold_is_refused_for_good, |store: Store| async move {
    let acme = tenant("acme");
    ensure_tenant(&store, &acme).await;
    let stored = storage::upsert_ticket(&store, &acme, &ticket("SUP-0"), "a\u{0}b", "b").await;
    match store.kind() {
        // SQLite holds NUL; the API refuses it on both backends all the same.
        BackendKind::Sqlite => assert_eq!(stored.expect("sqlite stores NUL").subject, "a\u{0}b"),
        // PostgreSQL text cannot: a permanent error about the input, not an outage.
        BackendKind::Postgres => {
            let err = stored.expect_err("PostgreSQL text cannot hold NUL");
            assert!(err.is_unstorable(), "{err:?}");
            assert!(!err.is_retryable(), "retrying cannot help: {err:?}");
            assert_eq!(JobError::from(err).class(), ErrorClass::Invalid);
        }
    }
});

conformance!(triage_migrations_keep_a_history_of_their_own, |store: Store| async move {
    // Migrated by the store, then by triage (the harness): each history lists its own migrations.
    let store_versions = "SELECT version FROM _sqlx_migrations ORDER BY version";
    let triage_versions = "SELECT version FROM _longhaul_triage_migrations ORDER BY version";
    let versions = |sql: &'static str| {
        let store = store.clone();
        async move {
            let rows: Vec<(i64,)> = store.db().fetch_all(sql, &[]).await.expect("versions");
            rows.into_iter().map(|(v,)| v).collect::<Vec<_>>()
        }
    };
    assert_eq!(storage::MIGRATIONS_TABLE, "_longhaul_triage_migrations");
    assert_eq!(versions(store_versions).await, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert_eq!(versions(triage_versions).await, [1, 2]);
    // Either may run again, in any order, without finding the other's versions unknown.
    storage::migrate(&store).await.expect("triage again");
    store.migrate().await.expect("store again");
    storage::migrate(&store).await.expect("triage once more");
    assert_eq!(versions(triage_versions).await, [1, 2]);

    // Where the store's history no longer creates the table, triage's migration does, with the
    // schema its statements need.
    store.db().execute("DROP TABLE tickets", &[]).await.expect("drop tickets");
    store.db().execute("DELETE FROM _longhaul_triage_migrations", &[]).await.expect("forget");
    storage::migrate(&store).await.expect("create tickets");
    let acme = tenant("acme");
    ensure_tenant(&store, &acme).await;
    let t = storage::upsert_ticket(&store, &acme, &ticket("T-1"), "s", "b").await.expect("ticket");
    assert_eq!(
        storage::upsert_ticket(&store, &acme, &ticket("T-1"), "s", "b").await.expect("again").revision,
        2
    );
    let c = ctx(&acme, &t.ticket_id, 2);
    let result =
        storage::write_ticket_triage(&store, write(&c, &t.ticket_id, &op(&c), &json!({"revision": 2})))
            .await
            .expect("triage");
    assert_eq!(result["written"], true);
    let bad = storage::upsert_ticket(&store, &tenant("nobody"), &ticket("T-1"), "s", "b").await;
    assert!(bad.is_err(), "the foreign key to tenants is there");
});

/// Sequential scans of `tickets` so far, once the statistics show at least `updates` updates of
/// it (a backend reports both counts of a table together).
async fn ticket_seq_scans_by(store: &Store, updates: i64) -> i64 {
    let what = format!("the statistics of {updates} updates of tickets");
    longhaul_testkit::wait_until(std::time::Duration::from_secs(30), &what, async || {
        let (n, scans): (i64, i64) = store
            .db()
            .fetch_optional(
                "SELECT n_tup_upd, seq_scan FROM pg_stat_user_tables WHERE relname = 'tickets'",
                &[],
            )
            .await
            .expect("statistics")
            .expect("tickets");
        if n >= updates { Ok(scans) } else { Err(n) }
    })
    .await
}

/// A plan cached while `tickets` was small must not go on scanning the whole table once it is
/// large: batches of triage writes, run many times on a new table, then once on a table of
/// thousands of tickets, reach their tickets through the primary key.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_batched_triage_writes_use_the_key_once_tickets_is_large() {
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    storage::migrate(&db).await.expect("triage migrations");
    let acme = tenant("acme");
    ensure_tenant(&db, &acme).await;
    // One connection from here on: it runs each statement often enough for a plan to be cached
    // (at the sixth call), and it is the only backend whose statistics can still arrive — the
    // setup's connections send theirs as they close.
    db.store.close().await;
    let one = longhaul_store::StoreOptions { max_connections: 1, ..longhaul_store::StoreOptions::default() };
    let store = &Store::connect(Some(&db.url), &one).await.expect("one-connection store");
    // A round: two new tickets, triaged in one batch (2 updates).
    let round = async |tag: String| {
        let keys = [ticket(&format!("T-{tag}-a")), ticket(&format!("T-{tag}-b"))];
        for k in &keys {
            storage::upsert_ticket(store, &acme, k, "s", "b").await.expect("ticket");
        }
        let ctxs = keys.each_ref().map(|k| ctx(&acme, k, 1));
        let ops = ctxs.each_ref().map(op);
        let triage = json!({"category": "billing"});
        let writes: Vec<_> = (0..2).map(|i| write(&ctxs[i], &keys[i], &ops[i], &triage)).collect();
        let out = storage::write_ticket_triage_many(store, &writes).await.expect("batch");
        assert!(out.iter().all(Result::is_ok), "round {tag}: {out:?}");
    };
    let rounds = 20;
    for i in 0..rounds {
        round(format!("small-{i}")).await;
    }
    let longhaul_store::backend::Db::Postgres(pool) = store.db() else { panic!("PostgreSQL") };
    sqlx::query(
        "INSERT INTO tickets (tenant_id, ticket_id, revision, subject, body, created_at, updated_at)
         SELECT $1, 'T-bulk-' || i, 1, 's', 'b', now(), now() FROM generate_series(1, 4000) i",
    )
    .bind(acme.as_str())
    .execute(pool)
    .await
    .expect("bulk tickets");
    let before = ticket_seq_scans_by(store, 2 * rounds).await;
    round("large".to_owned()).await;
    let after = ticket_seq_scans_by(store, 2 * rounds + 2).await;
    assert_eq!(after, before, "the batched triage write on a table of 4 000 tickets scanned it whole");
}

/// The pipeline's batched ticket reads and writes wait through a storage outage and are answered
/// once it is over — the attempt that made them is not failed — while the producer's reader
/// answers at once with a retryable error (its caller gets a 503).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_batched_tickets_wait_through_an_outage() {
    use longhaul_triage::TicketStore as _;
    use longhaul_triage::storage::{BatchedTickets, TicketReader};
    use std::time::{Duration, Instant};

    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    storage::migrate(&db).await.expect("triage migrations");
    let (acme, k) = (tenant("acme"), ticket("SUP-1"));
    ensure_tenant(&db, &acme).await;
    storage::upsert_ticket(&db, &acme, &k, "Refund", "Charged twice").await.expect("create");
    let tickets = BatchedTickets::spawn(&db.store);
    let reader = TicketReader::spawn(db.store.clone());
    let c = ctx(&acme, &k, 1);
    let triage = json!({"category": "billing"});

    db.set_reachable(false).await;
    let err = reader.get(&acme, &k).await.expect_err("storage is down");
    assert!(err.is_retryable(), "the producer's read is answered as unavailable: {err}");
    let load = tokio::spawn({
        let (tickets, acme, k) = (tickets.clone(), acme.clone(), k.clone());
        async move { tickets.load_ticket(&acme, &k).await }
    });
    let write = tokio::spawn({
        let (tickets, c, k, triage) = (tickets.clone(), c.clone(), k.clone(), triage.clone());
        async move { tickets.write_triage(&c, &k, &op(&c), STAGE, EFFECT, &triage).await }
    });
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        assert!(!load.is_finished(), "the read was answered during the outage");
        assert!(!write.is_finished(), "the write was answered during the outage");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    db.set_reachable(true).await;

    let view = load.await.expect("load task").expect("read once storage is back").expect("ticket");
    assert_eq!((view.subject.as_str(), view.revision), ("Refund", 1));
    let written = write.await.expect("write task").expect("written once storage is back");
    assert_eq!(written, json!({"written": true, "triage": triage}));
    assert_eq!(stored(&db, &acme, &k).await, Some(triage.clone()));
    let state = db.get_operation(&acme, &op(&c)).await.expect("operation");
    assert!(matches!(state, Some(OperationState::Done { .. })), "{state:?}");
}
