//! The operation log, through the core `OperationLog` trait object a pipeline's context holds.

use longhaul_core::{JobContext, OperationId, OperationLog, OperationState};
use longhaul_store::{Store, StoreError};
use serde_json::json;

use crate::harness::{conformance, setup_job};

conformance!(operations_run_once_and_keep_results, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-op", 3).await;
    store.create_pending(job.clone()).await.expect("create");
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
        store.finish_operation(&job.tenant_id, &unknown, &json!(1)).await,
        Err(StoreError::NotFound("operation"))
    ));
    let other = longhaul_core::TenantId::parse("other").expect("tenant");
    assert_eq!(store.get_operation(&other, &op).await.expect("get"), None);
});

conformance!(batched_operations_answer_as_one_item_calls_in_order, |store: Store| async move {
    use longhaul_store::{OperationBegin, OperationFinish};
    let job = setup_job(&store, "acme", "T-ops", 3).await;
    store.create_pending(job.clone()).await.expect("create");
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
    store.finish_operation(&job.tenant_id, &op("done"), &json!({"first": true})).await.expect("finish");
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

    let finish =
        |effect: &str, result| OperationFinish { tenant: job.tenant_id.clone(), op: op(effect), result };
    let finished = store
        .finish_operations(&[
            finish("new", json!({"n": 1})),
            // The first finish of an operation keeps its result, in the batch as across calls.
            finish("twice", json!({"n": 2})),
            finish("twice", json!({"n": 3})),
            finish("done", json!({"first": false})),
            finish("never", json!(0)),
            // Another tenant cannot finish acme's operation.
            OperationFinish {
                tenant: other_tenant.tenant_id.clone(),
                op: op("started"),
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
