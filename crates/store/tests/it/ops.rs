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
