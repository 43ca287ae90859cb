//! A job's log lines carry its identity (a test binary of its own).

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
