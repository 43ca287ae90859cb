//! Redis Cluster specifics: each queue lives whole in one slot, so queues of different names
//! spread over the primaries and work side by side; keyless checks go to the queue's primary.

use std::time::Duration;

use longhaul_queue::{Event, EventKind, EvictionCheck, KeySpace, Queue, QueueConfig, QueueError, now_ms};
use longhaul_testkit::{TestQueue, cluster::cluster_url, random_hex};
use redis::{AsyncCommands, Value};

use crate::harness::entry;

/// `CLUSTER SLOTS` as (first slot, last slot, primary address).
async fn slot_map(q: &TestQueue) -> Vec<(u16, u16, String)> {
    let mut conn = q.raw().await;
    let reply: Value =
        redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await.expect("cluster slots");
    let Value::Array(ranges) = reply else { panic!("CLUSTER SLOTS returned {reply:?}") };
    ranges
        .into_iter()
        .map(|r| {
            let Value::Array(parts) = r else { panic!("slot range {r:?}") };
            let int = |v: &Value| match v {
                Value::Int(n) => u16::try_from(*n).expect("slot"),
                other => panic!("slot bound {other:?}"),
            };
            let Value::Array(primary) = &parts[2] else { panic!("primary {:?}", parts[2]) };
            let host: String = redis::from_redis_value(primary[0].clone()).expect("host");
            let port: u16 = redis::from_redis_value(primary[1].clone()).expect("port");
            (int(&parts[0]), int(&parts[1]), format!("{host}:{port}"))
        })
        .collect()
}

fn owner(map: &[(u16, u16, String)], slot: u16) -> String {
    map.iter()
        .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
        .map(|(_, _, a)| a.clone())
        .expect("slot covered")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_different_names_live_on_different_primaries_and_both_work() {
    let probe = TestQueue::cluster(|_| {}).await;
    let map = slot_map(&probe).await;
    // The first two partition names whose hash tags map to different primaries.
    let mut names: Vec<(String, String)> = Vec::new();
    for i in 0..64 {
        let name = format!("part-{i}");
        let node = owner(&map, KeySpace::new("p", &name).expect("keys").slot());
        if names.iter().all(|(_, n)| *n != node) {
            names.push((name, node));
        }
        if names.len() == 2 {
            break;
        }
    }
    assert_eq!(names.len(), 2, "two partitions on different primaries among 64 names: {map:?}");

    for (name, node) in &names {
        let q = TestQueue::cluster(|c| c.queue = name.clone()).await;
        assert!(q.enqueue(&entry("T-1")).await.expect("enqueue"));
        assert!(q.enqueue(&entry("T-2")).await.expect("enqueue"));
        // Every key of the queue is on the primary owning its slot: ask that node directly.
        let client = redis::Client::open(format!("redis://{node}")).expect("node client");
        let mut direct = client.get_multiplexed_async_connection().await.expect("node connection");
        let len: u64 = direct.xlen(q.keys().jobs()).await.expect("xlen on the owning node");
        assert_eq!(len, 2, "{name} on {node}");
        let present: u64 = direct.exists(q.keys().job(entry("T-1").job_id.as_str())).await.expect("exists");
        assert_eq!(present, 1, "the presence key shares the slot");

        let mut c = q.consumer("w").expect("consumer");
        let got = c.fetch(10, Duration::from_millis(1)).await.expect("fetch");
        assert_eq!(got.len(), 2);
        for d in &got {
            let ev = Event::new(EventKind::Completed, d.entry.job_id.as_str(), "acme", 1, now_ms());
            assert!(q.finish(d, &ev).await.expect("finish"));
        }
        let stats = q.stats().await.expect("stats");
        assert_eq!((stats.stream_length, stats.pending, stats.events_length), (0, 0, 2), "{name}");
    }
}

#[tokio::test]
async fn keyless_checks_go_to_the_queues_primary() {
    let q = TestQueue::cluster(|_| {}).await;
    assert!(q.is_cluster());
    q.ping().await.expect("ping the queue's primary");
    let check = q.eviction_policy().await.expect("eviction check");
    assert!(matches!(check, EvictionCheck::Safe | EvictionCheck::Unsafe(_)), "policy read: {check:?}");
}

#[tokio::test]
async fn cluster_urls_are_checked_up_front() {
    let config = || QueueConfig { prefix: format!("lhtest-{}", random_hex()), ..QueueConfig::default() };
    for bad in ["redis+cluster://", "redis+cluster://127.0.0.1:7101/2", "redis+cluster://127.0.0.1:x"] {
        let err = Queue::new(bad, config()).expect_err(bad);
        assert!(matches!(err, QueueError::InvalidUrl { .. }), "{bad}: {err:?}");
        assert!(err.to_string().starts_with("invalid Redis URL"), "{bad}: {err}");
    }
    assert!(Queue::new(&cluster_url(), config()).expect("the test cluster's URL").is_cluster());
}

#[tokio::test]
async fn an_unreachable_cluster_errors_within_the_bound() {
    let config = QueueConfig {
        prefix: format!("lhtest-{}", random_hex()),
        op_timeout: Duration::from_millis(500),
        ..QueueConfig::default()
    };
    let q = Queue::new("redis+cluster://127.0.0.1:1,127.0.0.1:2", config).expect("lazy queue");
    let started = std::time::Instant::now();
    let err = q.enqueue(&entry("T-1")).await.expect_err("nothing listens");
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn a_plain_url_to_a_cluster_node_is_a_clear_configuration_error() {
    // "triage" hashes to one slot; every seed that does not own it answers MOVED.
    let url = cluster_url();
    let seeds = url.strip_prefix("redis+cluster://").expect("the test cluster URL is redis+cluster://");
    let mut moved = 0;
    for seed in seeds.split(',') {
        let config = QueueConfig { prefix: format!("lhtest-{}", random_hex()), ..QueueConfig::default() };
        let q = Queue::new(&format!("redis://{seed}"), config).expect("plain queue");
        match q.enqueue(&entry("T-1")).await {
            Ok(_) => {
                // The seed owning the slot accepts it; clean up this test's key.
                let mut conn = redis::Client::open(format!("redis://{seed}"))
                    .expect("client")
                    .get_multiplexed_async_connection()
                    .await
                    .expect("connection");
                let _: u64 = conn
                    .del(&[q.keys().jobs(), q.keys().job(entry("T-1").job_id.as_str())])
                    .await
                    .expect("del");
            }
            Err(e) => {
                assert!(matches!(&e, QueueError::ClusterNode { reply } if reply == "MOVED"), "{e:?}");
                assert!(!e.is_retryable(), "{e:?}");
                assert!(e.to_string().contains("use a redis+cluster://"), "{e}");
                moved += 1;
            }
        }
    }
    assert!(moved >= 1, "at least one of {seeds} does not own the slot");
}
