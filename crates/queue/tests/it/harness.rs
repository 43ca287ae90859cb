//! A queue on a private key prefix, a deadline-based poller, and job-entry builders.

use std::time::{Duration, Instant};

use longhaul_core::{JobId, TenantId, TicketId};
use longhaul_queue::{JobEntry, Queue, QueueConfig};

/// The Redis the tests use (`LONGHAUL_TEST_REDIS_URL`, default the local server).
pub fn redis_url() -> String {
    std::env::var("LONGHAUL_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string())
}

/// A queue whose keys live under a prefix of its own; deletes them when dropped.
pub struct TestQueue {
    pub queue: Queue,
    prefix: String,
}

impl std::ops::Deref for TestQueue {
    type Target = Queue;
    fn deref(&self) -> &Queue {
        &self.queue
    }
}

impl Drop for TestQueue {
    fn drop(&mut self) {
        // Synchronous client: Drop cannot await.
        let Ok(client) = redis::Client::open(redis_url()) else { return };
        let Ok(mut conn) = client.get_connection() else { return };
        let pattern = format!("{}:*", self.prefix);
        let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query(&mut conn).unwrap_or_default();
        if !keys.is_empty() {
            let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(keys).query(&mut conn);
        }
    }
}

pub fn random_hex() -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).expect("random");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A prepared queue (groups created) with `config` adjusted by `tweak`.
pub async fn test_queue(tweak: impl FnOnce(&mut QueueConfig)) -> TestQueue {
    let prefix = format!("lhtest-{}", random_hex());
    let mut config = QueueConfig { prefix: prefix.clone(), ..QueueConfig::default() };
    tweak(&mut config);
    let queue = Queue::new(&redis_url(), config).expect("queue");
    queue.prepare(Some("queue-events")).await.expect("prepare");
    TestQueue { queue, prefix }
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

/// Polls `check` until it returns `Some`, or panics at `timeout` with the last state seen.
pub async fn wait_until<T, S: std::fmt::Debug>(
    timeout: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Result<T, S>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => {
                panic!("timed out waiting for {what}; last state: {last:?}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// A raw connection for inspecting keys directly.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connection")
}
