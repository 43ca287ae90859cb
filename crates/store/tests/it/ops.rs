//! The operation log, through the core `OperationLog` trait object a pipeline's context holds.

use longhaul_core::{JobContext, OperationId, OperationLog, OperationState};
use longhaul_store::{Store, StoreError};
use serde_json::json;

use crate::harness::{conformance, setup_job};

conformance!(operations_run_once_and_keep_results, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-op", 3).await;
    store.create_pending(job.clone()).await.expect("create");
    started_attempts(&store, &job, 3).await;
    let mut ctx = JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        kind: job.kind.clone(),
        attempt: 1,
    };
    let op = OperationId::derive(&job.job_id, "apply", "webhook");
    // As `longhaul_core::Ctx` holds it.
    let log: std::sync::Arc<dyn OperationLog> = std::sync::Arc::new(store.clone());

    assert_eq!(log.begin(&ctx, &op, "apply", "webhook").await.expect("begin"), None);
    // Attempt 1 dies mid-effect; attempt 2 finds it started and must run it again.
    ctx.attempt = 2;
    assert_eq!(
        log.begin(&ctx, &op, "apply", "webhook").await.expect("begin"),
        Some(OperationState::Started { attempt: 1 })
    );
    // Attempt 1 was only superseded, not dead: its late finish is refused and left to attempt 2,
    // so the result kept is the one attempt 2 goes on with.
    let superseded = JobContext { attempt: 1, ..ctx.clone() };
    let late = log.finish(&superseded, &op, &json!({"status": 200, "delivery": "d-0"})).await;
    let late = late.expect_err("attempt 1 was taken over");
    assert!(late.to_string().contains("taken over by attempt 2"), "{late}");
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Started { attempt: 2 })
    );
    let result = json!({"status": 200, "delivery": "d-1"});
    log.finish(&ctx, &op, &result).await.expect("finish");
    // Attempt 3 finds it done and reuses the result.
    ctx.attempt = 3;
    assert_eq!(
        log.begin(&ctx, &op, "apply", "webhook").await.expect("begin"),
        Some(OperationState::Done { result: result.clone() })
    );
    // Finishing again keeps the first result.
    log.finish(&ctx, &op, &json!({"status": 500})).await.expect("finish again");
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Done { result })
    );

    // Unknown operations and other tenants' operations are not found.
    let unknown = OperationId::derive(&job.job_id, "apply", "notify");
    assert!(matches!(
        store.finish_operation(&job.tenant_id, &unknown, 3, &json!(1)).await,
        Err(StoreError::NotFound("operation"))
    ));
    let other = longhaul_core::TenantId::parse("other").expect("tenant");
    assert_eq!(store.get_operation(&other, &op).await.expect("get"), None);
});

/// Records that `job`'s record has started `n` attempts, as the worker's start does before a run.
async fn started_attempts(store: &Store, job: &longhaul_core::NewJob, n: i32) {
    let args: [longhaul_store::backend::Arg<'_>; 2] = [n.into(), job.job_id.as_str().into()];
    let changed =
        store.db().execute("UPDATE jobs SET attempts = $1 WHERE job_id = $2", &args).await.expect("attempts");
    assert_eq!(changed, 1);
}

conformance!(a_superseded_attempt_cannot_take_an_operation_back, |store: Store| async move {
    use longhaul_store::{OperationBegin, OperationFinish};
    let job = setup_job(&store, "acme", "T-late", 3).await;
    store.create_pending(job.clone()).await.expect("create");
    started_attempts(&store, &job, 3).await;
    let ctx = |attempt| JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        kind: job.kind.clone(),
        attempt,
    };
    // One item at a time: attempt 2 (which took over) begins the step first, then the superseded
    // attempt 1 begins it too and is told to stop; attempt 2's finish is the one recorded,
    // attempt 1's is refused and changes nothing.
    let op = OperationId::derive(&job.job_id, "apply", "one");
    assert_eq!(store.begin_operation(&ctx(2), &op, "apply", "one").await.expect("begin"), None);
    assert!(matches!(
        store.begin_operation(&ctx(1), &op, "apply", "one").await,
        Err(StoreError::Superseded(2))
    ));
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Started { attempt: 2 }),
        "still attempt 2's"
    );
    store.finish_operation(&job.tenant_id, &op, 2, &json!({"by": 2})).await.expect("finish");
    // Done by attempt 2 now: attempt 1's late finish is told it was taken over (so it stops
    // instead of going on to a step attempt 2 has not begun yet), and changes nothing.
    assert!(matches!(
        store.finish_operation(&job.tenant_id, &op, 1, &json!({"by": 1})).await,
        Err(StoreError::Superseded(2))
    ));
    // Attempt 2 repeating its finish is a repeat: first kept.
    store.finish_operation(&job.tenant_id, &op, 2, &json!({"again": 2})).await.expect("repeat");
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Done { result: json!({"by": 2}) })
    );

    // The same in batches: a batch where attempt 3 begins before attempt 2, then both finish.
    let op = OperationId::derive(&job.job_id, "apply", "many");
    let begin = |attempt| OperationBegin {
        ctx: ctx(attempt),
        op: op.clone(),
        stage: "apply".into(),
        effect: "many".into(),
    };
    let began = store.begin_operations(&[begin(3), begin(2)]).await.expect("the batch");
    let began: Vec<_> = began.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(began, vec![Ok(None), Err(StoreError::Superseded(3).to_string())]);
    let finish = |attempt| OperationFinish {
        tenant: job.tenant_id.clone(),
        op: op.clone(),
        attempt,
        result: json!({ "by": attempt }),
    };
    let finished = store.finish_operations(&[finish(2), finish(3)]).await.expect("the batch");
    let finished: Vec<_> = finished.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(finished, vec![Err(StoreError::Superseded(3).to_string()), Ok(())]);
    assert_eq!(
        store.get_operation(&job.tenant_id, &op).await.expect("get"),
        Some(OperationState::Done { result: json!({"by": 3}) })
    );
});

conformance!(batched_operations_answer_as_one_item_calls_in_order, |store: Store| async move {
    use longhaul_store::{OperationBegin, OperationFinish};
    let job = setup_job(&store, "acme", "T-ops", 3).await;
    store.create_pending(job.clone()).await.expect("create");
    started_attempts(&store, &job, 3).await;
    let ctx = |attempt| JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        kind: job.kind.clone(),
        attempt,
    };
    let op = |effect: &str| OperationId::derive(&job.job_id, "apply", effect);
    let begin = |attempt, effect: &str| OperationBegin {
        ctx: ctx(attempt),
        op: op(effect),
        stage: "apply".into(),
        effect: effect.into(),
    };
    // Before the batch: "started" was begun by attempt 1 and never finished; "done" finished.
    store.begin_operation(&ctx(1), &op("started"), "apply", "started").await.expect("begin");
    store.begin_operation(&ctx(1), &op("done"), "apply", "done").await.expect("begin");
    store.finish_operation(&job.tenant_id, &op("done"), 1, &json!({"first": true})).await.expect("finish");
    let other_tenant = setup_job(&store, "other", "T-ops", 3).await;
    let theirs = JobContext {
        job_id: job.job_id.clone(),
        tenant_id: other_tenant.tenant_id.clone(),
        kind: job.kind.clone(),
        attempt: 2,
    };

    let began = store
        .begin_operations(&[
            begin(2, "new"),
            begin(2, "started"),
            begin(2, "done"),
            // The same new operation twice in one batch: the second finds the first's.
            begin(2, "twice"),
            begin(3, "twice"),
            // Another tenant's request for acme's operation id.
            OperationBegin { ctx: theirs, op: op("done"), stage: "apply".into(), effect: "done".into() },
        ])
        .await
        .expect("the batch");
    let began: Vec<_> = began.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(
        began,
        vec![
            Ok(None),
            Ok(Some(OperationState::Started { attempt: 1 })),
            Ok(Some(OperationState::Done { result: json!({"first": true}) })),
            Ok(None),
            Ok(Some(OperationState::Started { attempt: 2 })),
            Err(StoreError::NotFound("operation").to_string()),
        ]
    );
    // A repeat restarts the operation under the attempt that began it again, as one call would.
    assert_eq!(
        store.get_operation(&job.tenant_id, &op("started")).await.expect("get"),
        Some(OperationState::Started { attempt: 2 })
    );
    // Every begun operation is on disk once the batch has answered.
    for effect in ["new", "twice"] {
        assert!(
            matches!(
                store.get_operation(&job.tenant_id, &op(effect)).await.expect("get"),
                Some(OperationState::Started { .. })
            ),
            "{effect} is recorded as started"
        );
    }

    let finish = |attempt, effect: &str, result| OperationFinish {
        tenant: job.tenant_id.clone(),
        op: op(effect),
        attempt,
        result,
    };
    let finished = store
        .finish_operations(&[
            finish(2, "new", json!({"n": 1})),
            // Attempt 2 was superseded: attempt 3 began "twice" since. Its finish is left to 3.
            finish(2, "twice", json!({"n": 9})),
            // The first finish of an operation keeps its result, in the batch as across calls.
            finish(3, "twice", json!({"n": 2})),
            finish(3, "twice", json!({"n": 3})),
            finish(2, "done", json!({"first": false})),
            finish(2, "never", json!(0)),
            // Another tenant cannot finish acme's operation.
            OperationFinish {
                tenant: other_tenant.tenant_id.clone(),
                op: op("started"),
                attempt: 2,
                result: json!("theirs"),
            },
        ])
        .await
        .expect("the batch");
    let finished: Vec<_> = finished.into_iter().map(|r| r.map_err(|e| e.to_string())).collect();
    assert_eq!(
        finished,
        vec![
            Ok(()),
            Err(StoreError::Superseded(3).to_string()),
            Ok(()),
            Ok(()),
            Ok(()),
            Err(StoreError::NotFound("operation").to_string()),
            Err(StoreError::NotFound("operation").to_string()),
        ]
    );
    assert_eq!(
        store.get_operation(&job.tenant_id, &op("started")).await.expect("get"),
        Some(OperationState::Started { attempt: 2 }),
        "the other tenant's finish changed nothing"
    );
    for (effect, result) in
        [("new", json!({"n": 1})), ("twice", json!({"n": 2})), ("done", json!({"first": true}))]
    {
        assert_eq!(
            store.get_operation(&job.tenant_id, &op(effect)).await.expect("get"),
            Some(OperationState::Done { result }),
            "{effect}"
        );
    }
});

/// Attempt 2 begins a step started by attempt 1 while another transaction holds the row (so its
/// restart waits); that transaction runs `change` (`$1` the operation) and commits. Returns what
/// attempt 2's begin answered. PostgreSQL; the job's record has started `attempts`.
async fn begin_against(change: &'static str, attempts: i32) -> Result<Option<OperationState>, StoreError> {
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let store: Store = (*db).clone();
    let job = setup_job(&store, "acme", "T-race", 3).await;
    store.create_pending(job.clone()).await.expect("create");
    started_attempts(&store, &job, attempts).await;
    let ctx = |attempt| JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        kind: job.kind.clone(),
        attempt,
    };
    let op = OperationId::derive(&job.job_id, "apply", "webhook");
    assert_eq!(store.begin_operation(&ctx(1), &op, "apply", "webhook").await.expect("begin"), None);

    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    let mut other = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM operations WHERE operation_id = $1 FOR UPDATE")
        .bind(op.as_str())
        .execute(&mut *other)
        .await
        .expect("lock");
    // Attempt 2 begins: it reads `started` by attempt 1, and its restart waits for the row.
    let begin = tokio::spawn({
        let (store, ctx, op) = (store.clone(), ctx(2), op.clone());
        async move { store.begin_operation(&ctx, &op, "apply", "webhook").await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (waiting,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&pool)
        .await
        .expect("locks");
        if waiting > 0 {
            break;
        }
        assert!(!begin.is_finished(), "the begin did not wait for the row");
        assert!(std::time::Instant::now() < deadline, "the begin's restart never waited");
        tokio::task::yield_now().await;
    }
    sqlx::query(change).bind(op.as_str()).execute(&mut *other).await.expect("change");
    other.commit().await.expect("commit");
    let began = begin.await.expect("join");
    pool.close().await;
    began
}

/// A begin that finds the step started by an earlier attempt and then loses the row to that
/// attempt's finish before its restart lands answers `Done` with the finished result — not
/// `Started`, which would run the effect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_begin_that_loses_its_restart_to_a_finish_finds_the_step_done() {
    let finish = "UPDATE operations SET state = 'done', result = '{\"by\": 1}' WHERE operation_id = $1";
    let began = begin_against(finish, 2).await.expect("begin");
    assert_eq!(began, Some(OperationState::Done { result: json!({"by": 1}) }));
}

/// A begin that loses its restart to a newer attempt's is told it was taken over, not `Started`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_begin_that_loses_its_restart_to_a_newer_attempt_is_superseded() {
    let newer = "UPDATE operations SET attempt = 3 WHERE operation_id = $1";
    assert!(matches!(begin_against(newer, 3).await, Err(StoreError::Superseded(3))));
}
