//! Workers that die: churn over a run, and one killed under a backlog.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_churn_loses_nothing_and_runs_no_effect_twice() {
    let n = size(300, 5000);
    // A SIGKILL every few seconds; CHAOS_KILL_EVERY_MS overrides it.
    let every_ms = std::env::var("CHAOS_KILL_EVERY_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000);
    let every = Duration::from_millis(every_ms);
    let started = Instant::now();
    // Each job spends a while at the provider, so kills land on jobs in every stage.
    let (concurrency, provider) = if full() { ("16", 100) } else { ("4", 300) };
    let mut system = System::start(
        Mode::Slow(Duration::from_millis(provider)),
        // The default --max-deliveries and --max-attempts-cap: a killed worker's jobs are reclaimed
        // by a worker with room to run them, so they neither wait nor stall. The lease leaves
        // room for a CPU-starved CI machine's late heartbeats.
        &[("LONGHAUL_LEASE", "2s"), ("LONGHAUL_HEARTBEAT", "400ms"), ("LONGHAUL_CONCURRENCY", concurrency)],
    )
    .await;
    let pool = pool(&system).await;
    let mut slots = [system.worker("churn-a-0"), system.worker("churn-b-0")];
    let (jobs, _, _) = submit(&system, "churn", n, 16).await;
    let mut kills = 0;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let deadline = Instant::now() + Duration::from_secs(if full() { 900 } else { 180 });
    loop {
        let (done, _) = counts(&pool).await.expect("counts");
        if done == n as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "churn: only {done} of {n} completed: {}", summary(&pool).await);
        tick.tick().await;
        // SIGKILL one worker (alternating) and start a new one in its place, as a Deployment would.
        let slot = kills % slots.len();
        system.procs[slots[slot]].kill();
        kills += 1;
        slots[slot] = system.worker(&format!("churn-{slot}-{kills}"));
    }
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["workers_killed"] = json!(kills);
    report("worker_churn", started, figures);
}

/// Worker churn with both built-in kinds at once: every worker serves both queues, and a SIGKILL
/// lands on summarize jobs between their chunk steps as often as on triage jobs. Nothing is lost,
/// no webhook goes out under two operation ids, no job completes twice, and every summary is whole
/// (one per chunk, combined).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn worker_churn_over_both_kinds_loses_nothing_and_runs_no_effect_twice() {
    let n = size(100, 1000);
    let every = Duration::from_millis(2000);
    let started = Instant::now();
    let mut system = System::start(
        Mode::Slow(Duration::from_millis(if full() { 50 } else { 150 })),
        &[("LONGHAUL_LEASE", "2s"), ("LONGHAUL_HEARTBEAT", "400ms"), ("LONGHAUL_CONCURRENCY", "4")],
    )
    .await;
    let pool = pool(&system).await;
    let mut slots = [system.worker("mixed-a-0"), system.worker("mixed-b-0")];
    let ((mut jobs, _, _), (documents, _, _)) = tokio::join!(
        submit_kind(&system, Kind::Triage, "mixed-t", n / 2, 8),
        submit_kind(&system, Kind::Summarize, "mixed-s", n - n / 2, 8),
    );
    let mut kills = 0;
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let deadline = Instant::now() + Duration::from_secs(if full() { 900 } else { 180 });
    loop {
        let (done, _) = counts(&pool).await.expect("counts");
        if done == n as i64 {
            break;
        }
        assert!(Instant::now() < deadline, "churn: only {done} of {n} completed: {}", summary(&pool).await);
        tick.tick().await;
        let slot = kills % slots.len();
        system.procs[slots[slot]].kill();
        kills += 1;
        slots[slot] = system.worker(&format!("mixed-{slot}-{kills}"));
    }
    let outputs: Vec<(String, Value)> =
        sqlx::query_as("SELECT job_id, output FROM jobs WHERE kind = 'summarize'")
            .fetch_all(&pool)
            .await
            .expect("outputs");
    assert_eq!(outputs.len(), documents.len());
    for (job, output) in &outputs {
        let document = output["document_id"].as_str().unwrap_or_else(|| panic!("{job}: {output}"));
        let partials: Vec<String> = paragraphs(document).iter().map(|p| chunk_summary(p)).collect();
        assert_eq!(output["chunks"], 3, "{job}: {output}");
        assert_eq!(output["summary"], combined_summary(&partials).as_str(), "{job}: {output}");
    }
    jobs.extend(documents);
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["workers_killed"] = json!(kills);
    figures["summarize_jobs"] = json!(outputs.len());
    report("worker_churn_both_kinds", started, figures);
}

/// The jobs whose entries consumer `name` holds (delivered, not acknowledged).
async fn held_jobs(system: &System, name: &str) -> Vec<String> {
    let keys = system.queue.keys().clone();
    let mut conn = system.queue.raw().await;
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(keys.jobs())
        .arg(&system.queue.config().group)
        .arg("-")
        .arg("+")
        .arg(100)
        .arg(name)
        .query_async(&mut conn)
        .await
        .expect("xpending");
    let mut jobs = Vec::new();
    for (id, ..) in rows {
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(keys.jobs())
            .arg(&id)
            .arg(&id)
            .query_async(&mut conn)
            .await
            .expect("xrange");
        jobs.extend(entries.into_iter().flat_map(|(_, f)| f).filter(|(k, _)| k == "j").map(|(_, v)| v));
    }
    jobs
}

/// Issue 14, item 1: a worker killed while a backlog waits. Its jobs are reclaimed by workers with
/// room to run them, so they finish within a few leases — not after the backlog — with the
/// default `--max-deliveries`; none fails, and only its own in-flight jobs may see their webhook
/// again (same key: the at-least-once window of a kill).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_workers_jobs_finish_within_leases_under_a_backlog() {
    let n = size(300, 3000);
    let lease = Duration::from_secs(2);
    let started = Instant::now();
    let mut system = System::start(
        Mode::Slow(Duration::from_millis(300)),
        &[("LONGHAUL_LEASE", "2s"), ("LONGHAUL_HEARTBEAT", "400ms"), ("LONGHAUL_CONCURRENCY", "2")],
    )
    .await;
    let pool = pool(&system).await;
    let victim = system.worker("backlog-victim");
    system.worker("backlog-a");
    system.worker("backlog-b");
    let (jobs, _, _) = submit(&system, "backlog", n, 16).await;
    // Once the victim holds two entries, with most of the backlog still waiting.
    let held = wait_until(Duration::from_secs(60), "the victim holds entries", async || {
        let held = held_jobs(&system, "backlog-victim").await;
        if held.len() == 2 { Ok(held) } else { Err(held) }
    })
    .await;
    system.procs[victim].kill();
    let killed = Instant::now();
    let (finished_after, backlog_left) =
        wait_until(Duration::from_secs(120), "the killed worker's jobs completed", async || {
            let done: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM jobs WHERE job_id = ANY($1) AND status = 'completed'",
            )
            .bind(&held)
            .fetch_one(&pool)
            .await
            .map_err(|e| e.to_string())?;
            if done < held.len() as i64 {
                return Err(format!("{done} of {} done", held.len()));
            }
            let (all_done, _) = counts(&pool).await.map_err(|e| e.to_string())?;
            Ok((killed.elapsed(), n as i64 - all_done))
        })
        .await;
    assert!(backlog_left > 0, "the killed worker's jobs waited for the whole backlog");
    assert!(finished_after < lease * 10, "took {finished_after:?}, more than ten leases");
    all_completed(&pool, n, Duration::from_secs(600)).await;
    let mut figures = verify(&system, &pool, &jobs).await;
    // Same-key redeliveries only for the jobs the victim held when it died.
    let seen = system.fake.deliveries.lock().expect("lock").clone();
    let mut per_job: HashMap<&str, usize> = HashMap::new();
    for (job, _) in &seen {
        *per_job.entry(job.as_str()).or_default() += 1;
    }
    for (job, count) in per_job {
        assert!(
            count == 1 || held.iter().any(|h| h == job),
            "{job} delivered {count} times; the victim held {held:?}"
        );
    }
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'failed'")
        .fetch_one(&pool)
        .await
        .expect("failed");
    assert_eq!(failed, 0);
    figures["victim_jobs"] = json!(held.len());
    figures["victim_jobs_done_after_ms"] = json!(finished_after.as_millis());
    figures["backlog_left_then"] = json!(backlog_left);
    figures["lease_ms"] = json!(lease.as_millis());
    report("killed_worker_under_backlog", started, figures);
}
