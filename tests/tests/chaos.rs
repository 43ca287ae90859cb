//! The fault suite: the real binaries against PostgreSQL and Redis while workers are killed, Redis
//! loses its data, PostgreSQL refuses connections, poison entries arrive, and under load. Every
//! scenario checks that nothing is lost and no effect is applied twice, and prints one JSON line of
//! figures (`cargo test -p longhaul-e2e --test chaos -- --nocapture`).
//!
//! CI runs the short version. `just chaos` runs the full one (`LONGHAUL_CHAOS=full`: 5 000 jobs under
//! worker churn, 50 000 under load, a 10 s database outage); RELIABILITY.md records its figures.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use longhaul_e2e::{Mode, System};
use longhaul_testkit::wait_until;
use serde_json::{Value, json};

/// Whether the full-size suite was asked for.
fn full() -> bool {
    std::env::var("LONGHAUL_CHAOS").is_ok_and(|v| v == "full")
}

/// `short` in CI, `full` under `just chaos`.
fn size(short: usize, full_size: usize) -> usize {
    if full() { full_size } else { short }
}

/// Submits tickets `{tag}-0..n` and their triage through the API with `callers` concurrent
/// callers, retrying a 503 after its `Retry-After`. Returns the job ids, and how many 503 answers
/// were seen with the slowest one's latency.
async fn submit(system: &System, tag: &str, n: usize, callers: usize) -> (Vec<String>, usize, Duration) {
    let http = system.http();
    let results: Vec<(String, usize, Duration)> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let id = format!("{tag}-{i}");
                let mut unavailable = 0;
                let mut slowest = Duration::ZERO;
                let deadline = Instant::now() + Duration::from_secs(120);
                let body = json!({"ticket_id": id, "subject": "App crashes", "body": "It crashes on start"});
                let mut ticket_done = false;
                loop {
                    assert!(Instant::now() < deadline, "ticket {id} not accepted within 120 s");
                    let started = Instant::now();
                    let request = if ticket_done {
                        http.post(format!("{}/v1/tickets/{id}/triage", system.api))
                    } else {
                        http.post(format!("{}/v1/tickets", system.api)).json(&body)
                    };
                    let r = request.bearer_auth(&system.key).send().await.expect("the API answers");
                    let status = r.status().as_u16();
                    if status == 503 {
                        slowest = slowest.max(started.elapsed());
                        unavailable += 1;
                        let retry_after = r.headers().get("retry-after").and_then(|v| v.to_str().ok());
                        let secs: u64 =
                            retry_after.and_then(|v| v.parse().ok()).expect("503 carries Retry-After");
                        let kind = r.headers().get("content-type").cloned();
                        assert_eq!(
                            kind.as_ref().map(|v| v.as_bytes()),
                            Some(&b"application/problem+json"[..])
                        );
                        tokio::time::sleep(Duration::from_secs(secs.min(1))).await;
                        continue;
                    }
                    assert!(status < 300, "{id}: {status} {:?}", r.text().await);
                    if ticket_done {
                        let job: Value = r.json().await.expect("job json");
                        let job_id = job["job_id"].as_str().expect("job_id").to_owned();
                        return (job_id, unavailable, slowest);
                    }
                    ticket_done = true;
                }
            }
        })
        .buffer_unordered(callers)
        .collect()
        .await;
    let unavailable = results.iter().map(|r| r.1).sum();
    let slowest = results.iter().map(|r| r.2).max().unwrap_or_default();
    (results.into_iter().map(|r| r.0).collect(), unavailable, slowest)
}

/// A connection pool on the system's own database, for the checks.
async fn pool(system: &System) -> sqlx::PgPool {
    sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&system.db.url).await.expect("pg")
}

/// `(completed, all)` job counts.
async fn counts(pool: &sqlx::PgPool) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as("SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FROM jobs")
        .fetch_one(pool)
        .await
}

/// Jobs per status, and a few errors of failed ones: what a timeout message shows.
async fn summary(pool: &sqlx::PgPool) -> String {
    let by_status: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
            .unwrap_or_default();
    let errors: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT status, error_message FROM jobs WHERE status <> 'completed' ORDER BY seq LIMIT 3",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    format!("{by_status:?} e.g. {errors:?}")
}

/// Waits until all `n` jobs are completed.
async fn all_completed(pool: &sqlx::PgPool, n: usize, timeout: Duration) {
    wait_until(timeout, "every job completed", async || match counts(pool).await {
        Ok((done, _)) if done == n as i64 => Ok(()),
        _ => Err(summary(pool).await),
    })
    .await;
}

/// Jobs recorded as completed more than once (the audit trail has a row per applied transition).
async fn completed_twice(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM audit_log WHERE action = 'completed' \
         GROUP BY job_id HAVING count(*) > 1) AS twice",
    )
    .fetch_one(pool)
    .await
    .expect("audit")
}

/// What the webhook receiver saw, per job.
struct Deliveries {
    /// Jobs without any delivery.
    lost: usize,
    /// Jobs whose webhook was delivered under more than one operation id (an effect run twice).
    duplicated: usize,
    /// Requests that repeated an operation id already delivered (the receiver deduplicates them
    /// by `Idempotency-Key`; they come from a worker killed between the send and its record).
    redelivered: usize,
    total: usize,
}

fn deliveries(system: &System, jobs: &[String]) -> Deliveries {
    let seen = system.fake.deliveries.lock().expect("lock").clone();
    let mut per_job: HashMap<&str, HashSet<&str>> = HashMap::new();
    for (job, key) in &seen {
        per_job.entry(job.as_str()).or_default().insert(key.as_str());
    }
    let distinct: usize = per_job.values().map(HashSet::len).sum();
    Deliveries {
        lost: jobs.iter().filter(|j| !per_job.contains_key(j.as_str())).count(),
        duplicated: per_job.values().filter(|keys| keys.len() > 1).count(),
        redelivered: seen.len() - distinct,
        total: seen.len(),
    }
}

/// Every completed job's record, its audit trail and the receiver agree: nothing lost, nothing
/// applied twice. Prints and returns the figures.
async fn verify(system: &System, pool: &sqlx::PgPool, jobs: &[String]) -> Value {
    let d = deliveries(system, jobs);
    let twice = completed_twice(pool).await;
    let unique: HashSet<&String> = jobs.iter().collect();
    assert_eq!(unique.len(), jobs.len(), "every submission made a job of its own");
    assert_eq!(d.lost, 0, "jobs without a webhook delivery");
    assert_eq!(d.duplicated, 0, "jobs whose effect ran under two operation ids");
    assert_eq!(twice, 0, "jobs completed twice");
    json!({"jobs": jobs.len(), "lost": d.lost, "duplicated": d.duplicated, "completed_twice": twice,
           "webhook_requests": d.total, "redelivered_same_key": d.redelivered})
}

fn report(scenario: &str, started: Instant, mut figures: Value) {
    figures["scenario"] = json!(scenario);
    figures["seconds"] = json!((started.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    println!("{figures}");
}

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

/// A private redis-server without persistence on `port`; killed on drop.
struct PrivateRedis {
    child: std::process::Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (install it or put it on PATH)");
        let url = format!("redis://127.0.0.1:{port}");
        wait_until(Duration::from_secs(10), "private redis-server up", async || {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())
        })
        .await;
        Self { child, port }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// Issue 14, item 8, with the real binaries: Redis is down when a triage is asked for (503 with
/// Retry-After; the record is written); once it is back, the client's retry enqueues the job and it
/// completes at once — the reconciler (set to an hour here) plays no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_redis_outage_runs_the_job_at_once() {
    let started = Instant::now();
    let port = free_port();
    let mut redis = PrivateRedis::start(port).await;
    let url = redis.url();
    let mut system = System::start(
        Mode::Ok,
        &[("REDIS_URL", &url), ("LONGHAUL_RECONCILE_EVERY", "1h"), ("LONGHAUL_RECONCILE_AFTER", "1h")],
    )
    .await;
    system.worker("retry-a");
    system.ticket("RETRY-1").await;
    drop(redis);
    let (status, body) = system.triage("RETRY-1").await;
    assert_eq!(status, 503, "{body}");
    redis = PrivateRedis::start(port).await;
    // The client retries as told until the API answers (the producer reconnects on its own).
    let (job, retried_at) = wait_until(Duration::from_secs(30), "the retry accepted", async || match system
        .triage("RETRY-1")
        .await
    {
        (200, body) => Ok((body["job_id"].as_str().expect("job id").to_owned(), Instant::now())),
        (status, body) => Err(format!("{status} {body}")),
    })
    .await;
    let done = system.wait_status(&job, "completed", Duration::from_secs(60)).await;
    let took = retried_at.elapsed();
    assert_eq!(done["attempts"], 1);
    assert!(took < Duration::from_secs(30), "completed {took:?} after the retry");
    drop(redis);
    report("retry_after_redis_outage", started, json!({"completed_after_retry_ms": took.as_millis()}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_losing_its_data_mid_run_is_repaired_from_storage() {
    let n = size(200, 2000);
    let started = Instant::now();
    let mut redis = PrivateRedis::start(free_port()).await;
    let url = redis.url();
    let mut system = System::start(
        Mode::Slow(Duration::from_millis(20)),
        &[("REDIS_URL", &url), ("LONGHAUL_RECONCILE_EVERY", "500ms"), ("LONGHAUL_RECONCILE_AFTER", "2s")],
    )
    .await;
    let pool = pool(&system).await;
    system.worker("loss-a");
    system.worker("loss-b");
    let (jobs, _, _) = submit(&system, "loss", n, 16).await;
    let before =
        wait_until(Duration::from_secs(120), "a quarter completed", async || match counts(&pool).await {
            Ok((done, _)) if done * 4 >= n as i64 => Ok(done),
            other => Err(format!("{other:?}")),
        })
        .await;
    // Redis dies and comes back empty: streams, consumer groups, job keys and delayed retries gone.
    let port = redis.port;
    let _ = redis.child.kill();
    let _ = redis.child.wait();
    redis = PrivateRedis::start(port).await;
    let restarted_at = Instant::now();
    all_completed(&pool, n, Duration::from_secs(if full() { 600 } else { 180 })).await;
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["completed_before_loss"] = json!(before);
    figures["recovery_seconds"] = json!((restarted_at.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    drop(system);
    drop(redis);
    report("redis_data_loss", started, figures);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_refusing_connections_gives_503_and_loses_nothing() {
    let n = size(200, 1000);
    // Many leases long (issue 14, item 2): workers hold their entries through it, so no delivery
    // is counted against --max-deliveries (the default) and no job fails.
    let outage = Duration::from_secs(if full() { 60 } else { 8 });
    let started = Instant::now();
    let mut system = System::start(
        Mode::Ok,
        &[
            ("LONGHAUL_DB_TIMEOUT", "2s"),
            ("LONGHAUL_REQUEST_TIMEOUT", "3s"),
            ("LONGHAUL_RECONCILE_AFTER", "5s"),
            ("LONGHAUL_LEASE", "1s"),
            ("LONGHAUL_HEARTBEAT", "300ms"),
        ],
    )
    .await;
    let pool = pool(&system).await;
    system.worker("pgout-a");
    system.worker("pgout-b");
    let name = system.db.url.rsplit('/').next().expect("database name").to_owned();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&longhaul_testkit::pg_admin_url())
        .await
        .expect("admin");
    // Half the jobs before the outage; the other half submitted while it lasts (answered 503 with
    // Retry-After, retried by the callers) — with the first half's jobs still in the workers.
    let (mut jobs, _, _) = submit(&system, "pgout-a", n / 2, 16).await;
    wait_until(Duration::from_secs(60), "some jobs completed", async || match counts(&pool).await {
        Ok((done, _)) if done >= 10 => Ok(()),
        other => Err(format!("{other:?}")),
    })
    .await;
    pool.close().await;
    set_allow_connections(&admin, &name, false).await;
    let down = Instant::now();
    let restore = async {
        tokio::time::sleep(outage).await;
        set_allow_connections(&admin, &name, true).await;
        down.elapsed()
    };
    let ((second, unavailable, slowest), down) =
        tokio::join!(submit(&system, "pgout-b", n - n / 2, 16), restore);
    jobs.extend(second);
    let pool = self::pool(&system).await;
    all_completed(&pool, n, Duration::from_secs(180)).await;
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'failed'")
        .fetch_one(&pool)
        .await
        .expect("failed");
    assert_eq!(failed, 0, "a job failed because of the outage");
    assert!(unavailable > 0, "submissions during the outage were answered 503");
    assert!(slowest < Duration::from_secs(4), "a 503 took {slowest:?} (bound: request timeout 3 s)");
    let mut figures = verify(&system, &pool, &jobs).await;
    figures["outage_seconds"] = json!(down.as_secs_f64().round());
    figures["answers_503"] = json!(unavailable);
    figures["slowest_503_ms"] = json!(slowest.as_millis());
    report("postgres_outage", started, figures);
}

async fn set_allow_connections(admin: &sqlx::PgPool, name: &str, allow: bool) {
    // Identifiers cannot be bound parameters; `name` is the test's own generated database name.
    assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{name}");
    let sql = format!("ALTER DATABASE {name} WITH ALLOW_CONNECTIONS {allow}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(admin).await.expect("alter database");
    if !allow {
        // Open connections survive ALLOW_CONNECTIONS; end them, so every pool must reconnect.
        sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .execute(admin)
            .await
            .expect("terminate backends");
    }
}

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
