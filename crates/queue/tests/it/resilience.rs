//! Outages: every call returns within its bound; bad configuration is refused up front.

use std::time::{Duration, Instant};

use longhaul_queue::{EvictionCheck, NameKind, Queue, QueueConfig, QueueError};

use crate::harness::{entry, on_both_redis, random_hex, test_queue};

fn config(op_timeout: Duration) -> QueueConfig {
    QueueConfig { prefix: format!("lhtest-{}", random_hex()), op_timeout, ..QueueConfig::default() }
}

#[tokio::test]
async fn nothing_listening_errors_within_the_bound() {
    let q = Queue::new("redis://127.0.0.1:1", config(Duration::from_millis(500))).expect("lazy queue");
    let started = Instant::now();
    let err = q.enqueue(&entry("T-1")).await.expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_within_the_bound() {
    // Accepts connections and never replies: the hang a paused or overloaded Redis causes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let q =
        Queue::new(&format!("redis://127.0.0.1:{port}"), config(Duration::from_millis(400))).expect("queue");
    for call in 0..2 {
        let started = Instant::now();
        let err = q.enqueue(&entry("T-1")).await.expect_err("no answer");
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "call {call} took {took:?}");
        assert!(err.is_retryable(), "{err:?}");
    }
    let mut consumer = q.consumer("w").expect("consumer");
    let started = Instant::now();
    consumer.fetch(1, Duration::from_millis(100)).await.expect_err("blocking read bounded too");
    assert!(started.elapsed() < Duration::from_millis(1500), "fetch took {:?}", started.elapsed());
    hold.abort();
}

#[tokio::test]
async fn bad_configuration_is_refused_with_a_clear_message() {
    let err = Queue::new("http://127.0.0.1:6379", config(Duration::from_secs(1))).expect_err("bad scheme");
    assert!(matches!(err, QueueError::InvalidUrl { .. }), "{err:?}");
    assert!(err.to_string().starts_with("invalid Redis URL"), "{err}");
    let err = Queue::new(
        "redis://127.0.0.1",
        QueueConfig { queue: "a{b}".into(), ..config(Duration::from_secs(1)) },
    )
    .expect_err("brace in name");
    assert!(
        matches!(&err, QueueError::InvalidName { kind: NameKind::Queue, name } if name == "a{b}"),
        "{err:?}"
    );
    assert!(err.to_string().contains("queue name \"a{b}\""), "{err}");
    let err = Queue::new("redis://127.0.0.1", config(Duration::ZERO)).expect_err("zero timeout");
    assert!(matches!(err, QueueError::InvalidSetting { setting: "op_timeout", .. }), "{err:?}");
    assert!(err.to_string().contains("op_timeout"), "{err}");
    let err = Queue::new(
        "redis://127.0.0.1",
        QueueConfig { group: String::new(), ..config(Duration::from_secs(1)) },
    )
    .expect_err("empty group");
    assert!(matches!(err, QueueError::InvalidName { kind: NameKind::Group, .. }), "{err:?}");
    let err =
        Queue::new("redis://127.0.0.1", QueueConfig { partitions: 0, ..config(Duration::from_secs(1)) })
            .expect_err("zero partitions");
    assert!(matches!(err, QueueError::InvalidSetting { setting: "partitions", .. }), "{err:?}");
    assert!(err.to_string().contains("partitions must be between 1 and 1024"), "{err}");
    let long = QueueConfig { queue: "q".repeat(63), partitions: 10, ..config(Duration::from_secs(1)) };
    let err = Queue::new("redis://127.0.0.1", long).expect_err("partition names too long");
    assert!(matches!(err, QueueError::InvalidName { kind: NameKind::Queue, .. }), "{err:?}");
    assert!(err.to_string().contains("1–64 characters"), "{err}");
    let q = Queue::new("redis://127.0.0.1", config(Duration::from_secs(1))).expect("queue");
    let err = q.consumer("").expect_err("empty consumer name");
    assert!(matches!(err, QueueError::InvalidName { kind: NameKind::Consumer, .. }), "{err:?}");
}

on_both_redis! {
#[tokio::test]
async fn eviction_policy_is_checked() {
    let q = test_queue(|_| {}).await;
    let mut conn = crate::harness::raw().await;
    let policy: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").query_async(&mut conn).await.expect("config");
    let expected = if policy[1] == "noeviction" {
        EvictionCheck::Safe
    } else {
        EvictionCheck::Unsafe(policy[1].clone())
    };
    assert_eq!(q.eviction_policy().await.expect("check"), expected);
}
}

on_both_redis! {
#[tokio::test]
async fn readers_recreate_a_consumer_group_redis_lost() {
    // Redis restarted without its data: the jobs stream, its group and the events stream are gone.
    let q = test_queue(|_| {}).await;
    let mut consumer = q.consumer("w1").expect("consumer");
    let mut events = q.event_reader("queue-events", "qe-1").expect("reader");
    q.prepare(Some("queue-events")).await.expect("prepare");
    let mut conn = crate::harness::raw().await;
    let _: u64 = redis::cmd("DEL").arg(q.keys().jobs()).query_async(&mut conn).await.expect("del jobs");
    let _: u64 = redis::cmd("DEL").arg(q.keys().events()).query_async(&mut conn).await.expect("del events");
    // What the reconciler puts back lands on a stream without a group; the next read makes one
    // from the stream's first entry, so the entry is delivered, not skipped.
    assert!(q.enqueue(&entry("T-lost")).await.expect("enqueue"), "a new entry");
    let got = consumer.fetch(10, Duration::from_millis(100)).await.expect("fetch after NOGROUP");
    assert_eq!(got.len(), 1, "the re-enqueued entry is delivered");
    assert_eq!(got[0].entry.job_id, longhaul_testkit::test_job_id("T-lost"));
    let read = events.read(10, Duration::from_millis(100)).await.expect("read after NOGROUP");
    assert!(read.is_empty(), "no events yet, and no error");
}
}
