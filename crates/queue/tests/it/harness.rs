//! Queue-specific fixtures; the shared ones come from `longhaul-testkit`.

use longhaul_queue::QueueConfig;
pub use longhaul_testkit::{TestQueue, job_entry as entry, random_hex, wait_until};

/// A prepared queue on a private prefix, with `tweak` applied to its configuration — admitting
/// one entry per flow per turn (`admit_turn = 1`), so tests see the round robin entry by entry
/// unless they ask for more.
pub async fn test_queue(tweak: impl FnOnce(&mut QueueConfig)) -> TestQueue {
    TestQueue::new(|c| {
        c.admit_turn = 1;
        tweak(c);
    })
    .await
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
