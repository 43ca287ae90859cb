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
