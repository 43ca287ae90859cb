//! One trace from the HTTP request through every pipeline stage, and job log lines that carry the
//! job's identity. Each test runs on a current-thread runtime of its own, so a thread-local
//! subscriber sees every task. A test binary of its own: `tracing` caches per call site whether
//! anyone listens, and threads of other tests running without a subscriber must not share that
//! cache with these.

#[allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with the `it` test binary; not every helper is used here"
)]
#[path = "it/harness.rs"]
mod harness;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::Request;
use longhaul_core::{JobId, JobStatus, TicketId};
use longhaul_producer::{ApiSettings, AppState, app};
use longhaul_triage::RuleClassifier;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tower::ServiceExt as _;

use harness::*;

/// Collects everything written to it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

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
    fn lines(&self) -> Vec<serde_json::Value> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8_lossy(&bytes).lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// Submits a triage request through the real API (with a caller's `traceparent`) and runs a worker
/// until the job completes. Returns the job id.
async fn request_and_run() -> JobId {
    let db = TestDb::new(Backend::Sqlite).await;
    let q = TestQueue::new(fast_queue).await;
    ensure_tenant(&db, None).await;
    let (_, key) = db
        .create_tenant(&longhaul_core::TenantId::parse("tracer").expect("t"), "T", None)
        .await
        .expect("tenant");
    let tenant = longhaul_core::TenantId::parse("tracer").expect("t");
    db.upsert_ticket(&tenant, &TicketId::parse("SUP-T").expect("t"), "Crash", "The app crashes")
        .await
        .expect("ticket");
    let api = app(AppState::new(db.store.clone(), q.queue.clone(), ApiSettings::default()));
    let request = Request::builder()
        .method("POST")
        .uri("/v1/tickets/SUP-T/triage")
        .header("authorization", format!("Bearer {}", key.expose()))
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .body(Body::empty())
        .expect("request");
    let response = api.oneshot(request).await.expect("call");
    assert_eq!(response.status(), 202);
    let job = JobId::for_ticket(&tenant, &TicketId::parse("SUP-T").expect("t"), 1);
    let worker = spawn_worker(&db, &q, triage(&db, RuleClassifier), settings("w1"));
    wait_until(Duration::from_secs(15), "completion", async || {
        let r = db.get_job(&tenant, &job).await.expect("read").expect("exists");
        if r.status == JobStatus::Completed { Ok(()) } else { Err(r.status) }
    })
    .await;
    worker.shutdown().await.expect("shutdown");
    job
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

#[test]
fn one_trace_runs_from_the_request_through_every_stage() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        longhaul_service::telemetry::subscriber(false, std::io::sink, Some(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    runtime().block_on(request_and_run());
    provider.force_flush().expect("flush");
    let spans = exporter.get_finished_spans().expect("spans");
    let find = |name: &str| spans.iter().filter(move |s| s.name == name).collect::<Vec<_>>();

    let request = find("http.request");
    assert_eq!(request.len(), 1, "{:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let request = request[0];
    assert_eq!(request.span_context.trace_id().to_string(), TRACE_ID, "continues the caller's trace");
    assert_eq!(request.parent_span_id.to_string(), CALLER_SPAN);

    let jobs = find("job");
    assert_eq!(jobs.len(), 1);
    let job = jobs[0];
    assert_eq!(job.span_context.trace_id().to_string(), TRACE_ID, "the worker joined the request's trace");
    assert_eq!(
        job.parent_span_id,
        request.span_context.span_id(),
        "the job span's parent is the request span"
    );

    let stages: Vec<_> = find("stage");
    assert_eq!(stages.len(), 3, "load, classify, apply");
    for stage in stages {
        assert_eq!(stage.span_context.trace_id().to_string(), TRACE_ID);
        assert_eq!(stage.parent_span_id, job.span_context.span_id());
    }
}

#[test]
fn a_jobs_log_lines_carry_its_identity() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = longhaul_service::telemetry::subscriber(true, move || writer.clone(), None);
    let _guard = tracing::subscriber::set_default(subscriber);
    let job = runtime().block_on(request_and_run());
    let lines = captured.lines();
    let of_job: Vec<_> = lines.iter().filter(|l| l["span"]["job_id"] == job.as_str()).collect();
    let messages: Vec<_> = of_job.iter().filter_map(|l| l["message"].as_str()).collect();
    assert!(messages.contains(&"job started") && messages.contains(&"job completed"), "{messages:?}");
    for line in &of_job {
        assert_eq!(line["span"]["tenant_id"], "tracer", "{line}");
        assert_eq!(line["span"]["attempt"], 1, "{line}");
    }
}
