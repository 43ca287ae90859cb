//! Poison entries, and a large run that must leave no residue in Redis.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_entries_are_dead_lettered_and_workers_carry_on() {
    let started = Instant::now();
    let mut system = System::start(Mode::Ok, &[]).await;
    let pool = pool(&system).await;
    let worker = system.worker("poison-a");
    let keys = system.queue.keys().clone();
    let mut conn = system.queue.raw().await;
    let poison: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![("garbage", b"1".to_vec())],
        vec![("job_id", b"job_0".to_vec()), ("tenant_id", b"acme".to_vec())],
        vec![("v", b"1".to_vec()), ("job_id", vec![0xff, 0xfe, 0x00]), ("tenant_id", b"acme".to_vec())],
        vec![("payload", vec![b'{'; 70_000])],
    ];
    for fields in &poison {
        let mut cmd = redis::cmd("XADD");
        cmd.arg(keys.jobs()).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(v.as_slice());
        }
        let _: String = cmd.query_async(&mut conn).await.expect("xadd");
    }
    let (jobs, _, _) = submit(&system, "poison", 20, 4).await;
    all_completed(&pool, jobs.len(), Duration::from_secs(60)).await;
    let dead = wait_until(Duration::from_secs(30), "poison dead-lettered", async || {
        let len: usize =
            redis::cmd("XLEN").arg(keys.dead()).query_async(&mut conn).await.map_err(|e| e.to_string())?;
        if len >= poison.len() { Ok(len) } else { Err(format!("{len} dead letters")) }
    })
    .await;
    assert_eq!(dead, poison.len(), "exactly the poison entries are dead letters");
    assert!(system.procs[worker].wait_exit(Duration::ZERO).is_none(), "the worker is still running");
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["poison_entries"] = json!(poison.len());
    figures["dead_letters"] = json!(dead);
    report("poison", started, figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn load_completes_everything_and_leaves_no_residue_in_redis() {
    let n = size(1000, 50_000);
    let started = Instant::now();
    let mut system = System::start(Mode::Ok, &[]).await;
    let pool = pool(&system).await;
    for i in 0..4 {
        system.worker(&format!("load-{i}"));
    }
    let events = system.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", "qe-load")]);
    let memory_before = used_memory(&system).await;
    let (jobs, _, _) = submit(&system, "load", n, 32).await;
    let submitted_at = started.elapsed();
    all_completed(&pool, n, Duration::from_secs(if full() { 1800 } else { 300 })).await;
    let finished_at = started.elapsed();
    // queue-events logs one `completed` line per job: the operators' view must count every job once.
    let logged = wait_until(Duration::from_secs(60), "queue-events logged every completion", async || {
        let lines = system.log_lines(events);
        let completed: HashSet<String> = lines
            .iter()
            .filter(|l| l["message"] == "job completed")
            .filter_map(|l| l["job_id"].as_str().map(str::to_owned))
            .collect();
        let all = lines.iter().filter(|l| l["message"] == "job completed").count();
        if completed.len() >= n { Ok((completed.len(), all)) } else { Err(completed.len()) }
    })
    .await;
    assert_eq!(logged, (n, n), "each completion logged exactly once");
    // Nothing is left behind: acked entries deleted, job keys dropped, nothing pending or delayed.
    let keys = system.queue.keys().clone();
    let mut conn = system.queue.raw().await;
    wait_until(Duration::from_secs(30), "no residue", async || {
        let jobs_len: u64 =
            redis::cmd("XLEN").arg(keys.jobs()).query_async(&mut conn).await.map_err(|e| e.to_string())?;
        let delayed: u64 = redis::cmd("ZCARD")
            .arg(keys.delayed())
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let summary: Vec<redis::Value> = redis::cmd("XPENDING")
            .arg(keys.jobs())
            .arg(&system.queue.config().group)
            .query_async(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
        let pel = match summary.first() {
            Some(redis::Value::Int(n)) => *n,
            other => return Err(format!("{other:?}")),
        };
        let job_keys: Vec<String> =
            redis::cmd("KEYS").arg(keys.job("*")).query_async(&mut conn).await.map_err(|e| e.to_string())?;
        if jobs_len == 0 && delayed == 0 && pel == 0 && job_keys.is_empty() {
            Ok(())
        } else {
            Err(format!("stream {jobs_len}, delayed {delayed}, pending {pel}, job keys {}", job_keys.len()))
        }
    })
    .await;
    // queue-events has acknowledged everything it read; the events stream is capped by its MAXLEN.
    let events_pending: Vec<redis::Value> = redis::cmd("XPENDING")
        .arg(keys.events())
        .arg("queue-events")
        .query_async(&mut conn)
        .await
        .expect("xpending events");
    assert_eq!(events_pending.first(), Some(&redis::Value::Int(0)), "queue-events left entries pending");
    let events_len: u64 = redis::cmd("XLEN").arg(keys.events()).query_async(&mut conn).await.expect("xlen");
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["redis_used_memory_before"] = json!(memory_before);
    figures["redis_used_memory_after"] = json!(used_memory(&system).await);
    figures["events_stream_len"] = json!(events_len);
    figures["workers"] = json!(4);
    figures["submit_seconds"] = json!(submitted_at.as_secs());
    figures["complete_seconds"] = json!(finished_at.as_secs());
    figures["jobs_per_second"] = json!((n as f64 / finished_at.as_secs_f64()).round());
    report("load", started, figures);
}

/// Redis `used_memory` (the whole server: other tests' keys count too when run in parallel).
async fn used_memory(system: &System) -> u64 {
    let mut conn = system.queue.raw().await;
    let info: String = redis::cmd("INFO").arg("memory").query_async(&mut conn).await.expect("info");
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory in INFO")
}
