//! Shared by the two telemetry test binaries. Each telemetry test is a test binary (a process) of
//! its own: `tracing` caches per call site whether anyone listens, and tests running in parallel
//! threads with different thread-local subscribers must not share that cache. Each runs on a
//! current-thread runtime, so its thread-local subscriber sees every task.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use longhaul_core::{JobId, JobStatus, TicketId};
use longhaul_producer::{ApiSettings, AppState, Queues, app};
use longhaul_triage::RuleClassifier;
use tower::ServiceExt as _;

use crate::harness::*;

/// Collects everything written to it.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Submits a triage request through the real API (with a caller's `traceparent`) and runs a worker
/// until the job completes. Returns the job id.
pub async fn request_and_run() -> JobId {
    // PostgreSQL, the production store. With SQLite, sqlx's connection threads enter (and hold
    // clones of) the caller's span for each command, and in about 1 run in 20 the job span was
    // never closed, so never exported — see the issue 6 note.
    let db = test_db(Backend::Postgres).await;
    let q = TestQueue::new(fast_queue).await;
    ensure_tenant(&db, None).await;
    let (_, key) = db
        .create_tenant(&longhaul_core::TenantId::parse("tracer").expect("t"), "T", None)
        .await
        .expect("tenant");
    let tenant = longhaul_core::TenantId::parse("tracer").expect("t");
    let ticket = TicketId::parse("SUP-T").expect("t");
    longhaul_triage::storage::upsert_ticket(&db, &tenant, &ticket, "Crash", "The app crashes")
        .await
        .expect("ticket");
    let registry = longhaul_producer::startup::builtin().expect("registry");
    let queues = Queues::new(&q, &registry).expect("queues");
    let api = app(AppState::new(db.store.clone(), registry, queues, ApiSettings::default()));
    let request = Request::builder()
        .method("POST")
        .uri("/v1/tickets/SUP-T/triage")
        .header("authorization", format!("Bearer {}", key.expose()))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .body(Body::empty())
        .expect("request");
    let response = api.oneshot(request).await.expect("call");
    assert_eq!(response.status(), 202);
    let job = longhaul_triage::job_id_for_ticket(&tenant, &ticket, 1);
    let worker = spawn_worker(&db, &q, triage(&db, RuleClassifier), settings("w1"));
    wait_until(Duration::from_secs(15), "completion", async || {
        let r = db.get_job(&tenant, &job).await.expect("read").expect("exists");
        if r.status == JobStatus::Completed { Ok(()) } else { Err(r.status) }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    job
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}
