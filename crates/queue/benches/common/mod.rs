//! Shared by the queue benchmarks: settings from the environment, the benchmark's job entries, and
//! the `completed` events a benchmark worker appends when it finishes a batch.

use longhaul_core::{JobId, JobKey, TenantId};
use longhaul_queue::{Delivery, Event, EventKind, JobEntry, now_ms};

/// The entry of job `T-<i>` of kind `bench` of `tenant`, first attempt, enqueued now.
pub fn entry(tenant: &TenantId, i: usize) -> JobEntry {
    JobEntry {
        job_id: JobId::derive(tenant, "bench", &JobKey::Derived(format!("T-{i}"))),
        tenant_id: tenant.clone(),
        kind: Some("bench".into()),
        attempt: 1,
        enqueued_at_ms: now_ms(),
        priority: Default::default(),
        traceparent: None,
    }
}

/// `name` from the environment as a number, or `default`.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// One `completed` event (attempt 1, now) per delivery, in order.
pub fn completed_events<'a>(deliveries: impl IntoIterator<Item = &'a Delivery>) -> Vec<Event> {
    deliveries
        .into_iter()
        .map(|d| {
            Event::new(EventKind::Completed, d.entry.job_id.as_str(), d.entry.tenant_id.as_str(), 1, now_ms())
        })
        .collect()
}
