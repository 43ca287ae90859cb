//! Throughput versus shard count on Redis Cluster. The queue is split into P partitions
//! (`<base>-0` … `<base>-<P-1>`, one hash tag — one slot — each, on P different primaries);
//! producers send each job to `partition_name(base, P, job id)`; one worker loop per partition
//! takes, finishes (ack + delete + `completed` event) and takes again in one script call per batch.
//! Producers and workers run at the same time; the clock stops when every job is finished. Prints
//! one JSON line per partition count: jobs/s, this process's and each primary's CPU seconds, where
//! the partitions lived, and `busiest_primary_cap_jobs_per_s` — jobs divided by the busiest
//! primary's CPU seconds, the ceiling if every primary had a core of its own.
//!
//! `BENCH_N` (jobs per run, default 30000), `PARTITIONS` (default `1,2,3`), `CALLERS` (concurrent
//! enqueuers in total, default 32), `CONCURRENCY` (batch size per partition worker, default 32),
//! `REDIS_URL` (a `redis+cluster://` URL; default: the test cluster on 127.0.0.1:7101–7103, started
//! if needed). Uses private key prefixes and deletes its keys afterwards.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{completed_events, env_usize};
use longhaul_core::TenantId;
use longhaul_queue::{
    Delivery, Finish, JobEntry, KeySpace, Queue, QueueConfig, RedisConnection, partition_name,
};
use redis::Value;

/// `CLUSTER SLOTS` as (first slot, last slot, primary `host:port`).
async fn slot_map(conn: &mut RedisConnection) -> Vec<(u16, u16, String)> {
    let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await.expect("cluster slots");
    let Value::Array(ranges) = reply else { panic!("CLUSTER SLOTS returned {reply:?}") };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(parts) = r else { continue };
        let (Some(Value::Int(lo)), Some(Value::Int(hi)), Some(Value::Array(primary))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host: String = redis::from_redis_value(primary[0].clone()).expect("host");
        let port: u16 = redis::from_redis_value(primary[1].clone()).expect("port");
        out.push((*lo as u16, *hi as u16, format!("{host}:{port}")));
    }
    out
}

fn owner(map: &[(u16, u16, String)], base: &str) -> String {
    let slot = KeySpace::new("x", base).expect("name").slot();
    map.iter().find(|(lo, hi, _)| (*lo..=*hi).contains(&slot)).map(|(_, _, a)| a.clone()).expect("covered")
}

/// Redis server CPU seconds (user + sys) of the node at `addr`.
async fn node_cpu(addr: &str) -> f64 {
    let client = redis::Client::open(format!("redis://{addr}")).expect("node client");
    let mut conn = client.get_multiplexed_async_connection().await.expect("node connection");
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut conn).await.expect("info");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// This process's CPU seconds (user + system), from `/proc/self/stat` (USER_HZ = 100); 0 elsewhere.
fn own_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// A base name whose first `p` partitions sit on `p` different primaries.
fn spread_base(map: &[(u16, u16, String)], p: usize) -> String {
    (0..10_000)
        .map(|i| format!("bench{i}"))
        .find(|base| {
            let mut nodes: Vec<String> = (0..p).map(|k| owner(map, &format!("{base}-{k}"))).collect();
            nodes.sort();
            nodes.dedup();
            nodes.len() == p
        })
        .expect("a base name spreading over the primaries (fewer primaries than partitions?)")
}

async fn worker(queue: Queue, expected: usize, concurrency: usize) {
    let mut consumer = queue.consumer("bench-worker").expect("consumer");
    let mut done = 0;
    let mut in_hand: Vec<Delivery> = Vec::new();
    while done < expected {
        if in_hand.is_empty() {
            in_hand = consumer.fetch(concurrency, Duration::from_millis(50)).await.expect("fetch");
            continue;
        }
        let events = completed_events(&in_hand);
        let items: Vec<Finish<'_>> = in_hand
            .iter()
            .zip(&events)
            .map(|(d, e)| Finish { delivery: d, event: Some(e), release: true })
            .collect();
        let take = concurrency.min(expected - done - in_hand.len());
        let (_, next) = queue.finish_batch(&items, "bench-worker", take).await.expect("finish");
        done += in_hand.len();
        in_hand = next;
    }
}

#[tokio::main]
async fn main() {
    let n = env_usize("BENCH_N", 30_000);
    let callers = env_usize("CALLERS", 32);
    let concurrency = env_usize("CONCURRENCY", 32);
    let counts: Vec<usize> = std::env::var("PARTITIONS")
        .unwrap_or_else(|_| "1,2,3".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .filter(|p| *p >= 1)
        .collect();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| longhaul_testkit::cluster::cluster_url());
    let mut admin = RedisConnection::open(&url, Duration::from_secs(5)).expect("REDIS_URL");
    let map = slot_map(&mut admin).await;
    let mut primaries: Vec<String> = map.iter().map(|(_, _, a)| a.clone()).collect();
    primaries.sort();
    primaries.dedup();

    let tenant = TenantId::parse("bench").expect("tenant");
    for p in counts {
        let base = spread_base(&map, p);
        let prefix = format!("lhbench-{}", longhaul_testkit::random_hex());
        let mut queues: BTreeMap<String, Queue> = BTreeMap::new();
        for k in 0..p {
            let name = if p == 1 { base.clone() } else { format!("{base}-{k}") };
            let config =
                QueueConfig { prefix: prefix.clone(), queue: name.clone(), ..QueueConfig::default() };
            let queue = Queue::new(&url, config).expect("queue");
            queue.prepare(None).await.expect("prepare");
            queues.insert(name, queue);
        }
        let queues = Arc::new(queues);
        let jobs: Vec<(String, JobEntry)> = (0..n)
            .map(|i| {
                let entry = common::entry(&tenant, i);
                (partition_name(&base, p as u32, entry.job_id.as_str()), entry)
            })
            .collect();
        let mut per_partition: BTreeMap<String, usize> = BTreeMap::new();
        for (name, _) in &jobs {
            *per_partition.entry(name.clone()).or_default() += 1;
        }
        let jobs = Arc::new(jobs);
        let cpu0: Vec<f64> = futures::future::join_all(primaries.iter().map(|a| node_cpu(a))).await;

        let own0 = own_cpu();
        let started = Instant::now();
        let workers: Vec<_> = per_partition
            .iter()
            .map(|(name, expected)| tokio::spawn(worker(queues[name].clone(), *expected, concurrency)))
            .collect();
        let producers: Vec<_> = (0..callers)
            .map(|c| {
                let (queues, jobs) = (queues.clone(), jobs.clone());
                tokio::spawn(async move {
                    for (name, entry) in jobs.iter().skip(c).step_by(callers) {
                        assert!(queues[name].enqueue(entry).await.expect("enqueue"), "every job is new");
                    }
                })
            })
            .collect();
        for t in producers.into_iter().chain(workers) {
            t.await.expect("task");
        }
        let secs = started.elapsed().as_secs_f64();
        let own = own_cpu() - own0;
        let cpu1: Vec<f64> = futures::future::join_all(primaries.iter().map(|a| node_cpu(a))).await;

        for (name, queue) in queues.iter() {
            let stats = queue.stats().await.expect("stats");
            assert_eq!((stats.stream_length, stats.pending), (0, 0), "{name}: every entry acked and deleted");
        }
        let placement: Vec<String> = per_partition
            .iter()
            .map(|(name, jobs)| format!("\"{name}@{}\":{jobs}", owner(&map, name)))
            .collect();
        // If every primary had a core of its own, the busiest one would cap throughput here.
        let busiest = cpu0.iter().zip(&cpu1).map(|(c0, c1)| c1 - c0).fold(0.0_f64, f64::max);
        let cpu: Vec<String> = primaries
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|(a, (c0, c1))| format!("\"{a}\":{:.2}", c1 - c0))
            .collect();
        println!(
            "{{\"scenario\":\"partitions\",\"partitions\":{p},\"n\":{n},\"callers\":{callers},\"concurrency\":{concurrency},\
             \"jobs_per_s\":{:.0},\"seconds\":{secs:.2},\"busiest_primary_cap_jobs_per_s\":{:.0},\"client_cpu_s\":{own:.2},\"jobs_per_partition\":{{{}}},\"redis_cpu_s\":{{{}}}}}",
            n as f64 / secs,
            n as f64 / busiest.max(0.001),
            placement.join(","),
            cpu.join(","),
        );

        let keys: Vec<String> =
            redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut admin).await.expect("keys");
        for chunk in keys.chunks(1000) {
            let _: u64 = redis::cmd("DEL").arg(chunk).query_async(&mut admin).await.expect("cleanup");
        }
    }
}
