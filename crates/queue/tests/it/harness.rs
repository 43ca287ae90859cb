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

/// A raw connection to the current test's Redis, for inspecting keys directly.
pub async fn raw() -> longhaul_queue::RedisConnection {
    longhaul_testkit::raw_connection()
}

/// Defines each test twice: `single` on one Redis server and `cluster` on the 3-primary test
/// Redis Cluster (started on first use). The body runs unchanged on both.
macro_rules! on_both_redis {
    ($( $(#[$attr:meta])* async fn $name:ident() $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$attr])*
            async fn single() {
                longhaul_testkit::on_redis(longhaul_testkit::RedisKind::Single, async move $body).await
            }

            $(#[$attr])*
            async fn cluster() {
                longhaul_testkit::on_redis(longhaul_testkit::RedisKind::Cluster, async move $body).await
            }
        }
    )*};
}
pub(crate) use on_both_redis;
