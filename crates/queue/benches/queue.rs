//! Queue-only benchmark against a real Redis: N single enqueues from 32 concurrent callers, then a
//! worker with concurrency 32 running a no-op job and finishing each entry (ack + delete + event).
//! The same shape as the BullMQ peer's `bare-queue-single-add` scenario. Prints one JSON line.
//!
//! `BENCH_N` (default 20000), `CALLERS` (32), `CONCURRENCY` (32), `REDIS_URL`.
//! Uses a private key prefix and deletes its keys afterwards.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{completed_events, env_usize};
use longhaul_core::TenantId;
use longhaul_queue::{Delivery, Finish, JobEntry, Queue, QueueConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Total command calls from `INFO commandstats`, excluding INFO itself.
async fn command_calls(conn: &mut redis::aio::MultiplexedConnection) -> u64 {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.expect("info");
    info.lines()
        .filter(|l| l.starts_with("cmdstat_") && !l.starts_with("cmdstat_info:"))
        .filter_map(|l| l.split("calls=").nth(1)?.split(',').next()?.parse::<u64>().ok())
        .sum()
}

/// Redis server CPU seconds (user + sys) from `INFO cpu`.
async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(conn).await.expect("info");
    info.lines()
        .filter(|l| l.starts_with("used_cpu_sys:") || l.starts_with("used_cpu_user:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// The allocator the binaries use (mimalloc), so the figures are those of a worker process.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n = env_usize("BENCH_N", 20_000);
    let callers = env_usize("CALLERS", 32);
    let concurrency = env_usize("CONCURRENCY", 32);
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).expect("random");
    let prefix = format!("lhbench-{}", suffix.iter().map(|b| format!("{b:02x}")).collect::<String>());
    let queue =
        Queue::new(&url, QueueConfig { prefix: prefix.clone(), ..QueueConfig::default() }).expect("queue");
    queue.prepare(None).await.expect("prepare");
    let mut admin = redis::Client::open(url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("admin");

    let tenant = TenantId::parse("bench").expect("tenant");
    let entries: Arc<Vec<JobEntry>> = Arc::new((0..n).map(|i| common::entry(&tenant, i)).collect());

    // Phase 1: enqueue.
    let calls0 = command_calls(&mut admin).await;
    let cpu0 = redis_cpu(&mut admin).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let queue = queue.clone();
            let entries = entries.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                for e in entries.iter().skip(c).step_by(callers) {
                    let s = Instant::now();
                    assert!(queue.enqueue(e).await.expect("enqueue"), "every job is new");
                    lat.push(s.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut latencies: Vec<Duration> = Vec::with_capacity(n);
    for t in tasks {
        latencies.extend(t.await.expect("caller"));
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    let calls1 = command_calls(&mut admin).await;
    let cpu1 = redis_cpu(&mut admin).await;

    // Phase 2: process, shaped like the worker: each job runs in its own task holding a permit
    // (concurrency); a completer finishes the jobs that are done in one script call, which also
    // takes as many new entries as it freed; a fetcher fills capacity that is still free.
    let permits = Arc::new(Semaphore::new(concurrency));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(Delivery, OwnedSemaphorePermit)>();
    let spawn_job =
        |d: Delivery, permit: OwnedSemaphorePermit, tx: &tokio::sync::mpsc::UnboundedSender<_>| {
            let tx = tx.clone();
            tokio::spawn(async move {
                // The job: a no-op, as in the peer benchmark.
                tx.send((d, permit)).expect("completer alive");
            });
        };
    let started = Instant::now();
    let completer = {
        let queue = queue.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let mut finished = 0usize;
            let mut batch = Vec::with_capacity(concurrency);
            while finished < n {
                if done_rx.recv_many(&mut batch, concurrency).await == 0 {
                    break;
                }
                let events = completed_events(batch.iter().map(|(d, _)| d));
                let items: Vec<Finish<'_>> = batch
                    .iter()
                    .zip(&events)
                    .map(|((d, _), e)| Finish { delivery: d, event: Some(e), release: true })
                    .collect();
                let (_, next) =
                    queue.finish_batch(&items, "bench-worker", batch.len()).await.expect("finish");
                finished += batch.len();
                let mut permits: Vec<OwnedSemaphorePermit> = batch.drain(..).map(|(_, p)| p).collect();
                for d in next {
                    let permit = permits.pop().expect("one freed permit per taken entry");
                    spawn_job(d, permit, &done_tx);
                }
            }
            finished
        })
    };
    let mut consumer = queue.consumer("bench-worker").expect("consumer");
    let fetcher = tokio::spawn(async move {
        loop {
            let Ok(first) = permits.clone().acquire_owned().await else { return };
            let free = permits.available_permits() + 1;
            let batch = consumer.fetch(free, Duration::from_millis(20)).await.expect("fetch");
            let mut first = Some(first);
            for d in batch {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits.clone().acquire_owned().await.expect("permit"),
                };
                spawn_job(d, permit, &done_tx);
            }
        }
    });
    assert_eq!(completer.await.expect("completer"), n);
    fetcher.abort();
    let process_secs = started.elapsed().as_secs_f64();
    let calls2 = command_calls(&mut admin).await;
    let cpu2 = redis_cpu(&mut admin).await;

    // Verify before printing.
    let stats = queue.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending), (0, 0), "every entry acked and deleted");
    assert_eq!(stats.events_length as usize, n.min(stats.events_length as usize));

    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0;
    let add_cmds = (calls1 - calls0) as f64 / n as f64;
    let process_cmds = (calls2 - calls1) as f64 / n as f64;
    println!(
        "{{\"scenario\":\"queue-only\",\"n\":{n},\"callers\":{callers},\"concurrency\":{concurrency},\
         \"adds_per_s\":{:.0},\"processed_per_s\":{:.0},\"enqueue_p50_ms\":{:.2},\"enqueue_p99_ms\":{:.2},\
         \"redis_cmds_per_job\":{:.1},\"redis_cmds_add\":{:.1},\"redis_cmds_process\":{:.1},\"redis_cpu_ms_per_job_add\":{:.4},\"redis_cpu_ms_per_job_process\":{:.4}}}",
        n as f64 / enqueue_secs,
        n as f64 / process_secs,
        pct(0.5),
        pct(0.99),
        add_cmds + process_cmds,
        add_cmds,
        process_cmds,
        (cpu1 - cpu0) * 1000.0 / n as f64,
        (cpu2 - cpu1) * 1000.0 / n as f64,
    );

    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut admin).await.expect("keys");
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut admin).await.expect("cleanup");
    }
}
