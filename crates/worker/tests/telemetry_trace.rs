//! One trace from the HTTP request through every pipeline stage (a test binary of its own).

#[allow(dead_code, reason = "shared by the telemetry test binaries")]
#[path = "common/telemetry.rs"]
mod common;
#[allow(
    dead_code,
    unused_macros,
    unused_imports,
    reason = "shared with the `it` test binary; not every helper is used here"
)]
#[path = "it/harness.rs"]
mod harness;

use common::*;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};

#[test]
fn one_trace_runs_from_the_request_through_every_stage() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder().with_simple_exporter(exporter.clone()).build();
    let subscriber =
        longhaul_service::telemetry::subscriber(false, std::io::sink, Some(provider.tracer("test")));
    let _guard = tracing::subscriber::set_default(subscriber);
    runtime().block_on(request_and_run());
    // A span is exported when its last handle drops, which may be a moment after the job's task
    // ended and on another thread (a database driver's connection task may hold a clone of the
    // span current when it was given a command): wait for it, with a deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let spans = loop {
        provider.force_flush().expect("flush");
        let spans = exporter.get_finished_spans().expect("spans");
        if spans.iter().any(|s| s.name == "job") || std::time::Instant::now() > deadline {
            break spans;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
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
