//! Shared by the queue benchmarks: settings from the environment, and the `completed` events a
//! benchmark worker appends when it finishes a batch.

use longhaul_queue::{Delivery, Event, EventKind, now_ms};

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
