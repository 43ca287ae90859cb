//! Queue-specific fixtures; the shared ones come from `longhaul-testkit`.

use longhaul_core::{JobId, TenantId, TicketId};
use longhaul_queue::{JobEntry, QueueConfig};
pub use longhaul_testkit::{TestQueue, random_hex, wait_until};

/// A prepared queue on a private prefix, with `tweak` applied to its configuration.
pub async fn test_queue(tweak: impl FnOnce(&mut QueueConfig)) -> TestQueue {
    TestQueue::new(tweak).await
}

/// A first-attempt entry for ticket `ticket` of tenant `acme`.
pub fn entry(ticket: &str) -> JobEntry {
    let tenant = TenantId::parse("acme").expect("tenant");
    let ticket = TicketId::parse(ticket).expect("ticket");
    JobEntry {
        job_id: JobId::for_ticket(&tenant, &ticket, 1),
        tenant_id: tenant,
        ticket_id: ticket,
        ticket_revision: 1,
        attempt: 1,
        enqueued_at_ms: longhaul_queue::now_ms(),
        traceparent: None,
    }
}

/// A raw connection for inspecting keys directly.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(longhaul_testkit::redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}
