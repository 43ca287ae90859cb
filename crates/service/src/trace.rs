//! W3C trace context across process boundaries: out of a span into a `traceparent` string (which
//! the producer puts in the queue entry), and back in as a span's parent (in the worker), so one
//! trace runs from the HTTP request through every pipeline stage.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The `traceparent` of `span`, if it is being traced.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// Makes the span described by `traceparent` the parent of `span`. Call before `span` is entered.
/// An invalid value is ignored (the span starts a new trace).
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let cx = TraceContextPropagator::new().extract(&carrier);
    if let Err(e) = span.set_parent(cx) {
        tracing::debug!(error = ?e, "cannot set the span's parent");
    }
}
