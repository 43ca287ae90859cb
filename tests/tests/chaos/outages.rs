//! Outages: Redis down when a retry is asked for, Redis losing its data, PostgreSQL refusing
//! connections.

use longhaul_e2e::PrivateRedis;
use longhaul_testkit::procs::free_port;

use super::*;

/// Issue 14, item 8, with the real binaries: Redis is down when a triage is asked for (503 with
/// Retry-After; the record is written); once it is back, the client's retry enqueues the job and it
/// completes at once — the reconciler (set to an hour here) plays no part.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_redis_outage_runs_the_job_at_once() {
    let started = Instant::now();
    let port = free_port().expect("a free port");
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
    let mut redis = PrivateRedis::start(free_port().expect("a free port")).await;
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
    redis.kill();
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
