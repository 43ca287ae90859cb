//! The fairness scenario: tenant A's burst must not starve tenant B.
//!
//! Two phases, each on a fresh system (by default two workers at the worker's default concurrency), `summarize` jobs of one
//! chunk:
//! 1. **A alone** — tenant A submits `FAIR_A_N` (20 000) jobs through `POST /v1/jobs/batch`; its
//!    drain rate is jobs over (last finish − first creation).
//! 2. **A then B** — A submits the same burst; once A's submission is in, tenant B submits
//!    `FAIR_B_N` (20) jobs one by one, one every 50 ms, while A's backlog drains. B's figure is the
//!    time from each B job's creation to its start (p50/p99/max); A's is its drain rate again,
//!    against the first phase's.
//!
//! `fairness` runs with the queue's admission on (the default); `unfair` sets
//! `LONGHAUL_ADMIT_AHEAD=0` on the workers — plain FIFO, as before admission existed — so the two
//! lines side by side show what admission buys.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use longhaul_testkit::procs::Binaries;
use serde_json::{Value, json};
use sqlx::{Connection as _, PgConnection};

use super::{Shape, any_live_sql, document, env_usize, start};
use crate::measure::pct;

/// Items per batch request.
const BATCH: usize = 500;

/// Runs the scenario; `fair` = admission on.
pub(crate) async fn run(bins: &Binaries, fair: bool) -> anyhow::Result<Value> {
    let n_a = env_usize("FAIR_A_N", 20_000);
    let n_b = env_usize("FAIR_B_N", 20);
    let shape = Shape::from_env()?;
    let worker_env: &[(&str, &str)] = if fair { &[] } else { &[("LONGHAUL_ADMIT_AHEAD", "0")] };
    // Each phase on a fresh system (database and prefix), so the second does not run on the
    // first's rows.
    let http = reqwest::Client::new();
    let (alone, _, _) = phase(bins, worker_env, &http, n_a, 0).await?;
    let (with_b, backlog_at_b, mut b_start) = phase(bins, worker_env, &http, n_a, n_b).await?;
    b_start.sort_by(f64::total_cmp);
    Ok(json!({
        "scenario": if fair { "fairness" } else { "unfair" },
        "admission": if fair { "on (default)" } else { "off (LONGHAUL_ADMIT_AHEAD=0: FIFO)" },
        "kind": "summarize",
        "a_jobs": n_a,
        "b_jobs": n_b,
        "worker_concurrency": shape.workers * shape.concurrency,
        "a_alone_jobs_per_s": alone.round(),
        "a_with_b_jobs_per_s": with_b.round(),
        "a_with_b_vs_alone": (with_b / alone * 1000.0).round() / 1000.0,
        "a_backlog_when_b_submitted": backlog_at_b,
        "b_start_p50_ms": pct(&b_start, 0.5),
        "b_start_p99_ms": pct(&b_start, 0.99),
        "b_start_max_ms": b_start.last().copied(),
        "verified": true,
    }))
}

/// One phase on a fresh system: tenant A's burst of `n_a`, then (when `n_b` > 0) B's jobs one
/// every 50 ms while A's backlog drains. Returns A's drain rate, A's backlog when B began, and B's
/// start latencies (ms).
async fn phase(
    bins: &Binaries,
    worker_env: &[(&str, &str)],
    http: &reqwest::Client,
    n_a: usize,
    n_b: usize,
) -> anyhow::Result<(f64, i64, Vec<f64>)> {
    let mut sys = start(bins, Shape::from_env()?, worker_env).await?;
    let mut db = PgConnection::connect(&sys.db_url).await?;
    let tenant_b: String = sqlx::query_scalar("SELECT tenant_id FROM tenants WHERE name = 'bench-b'")
        .fetch_one(&mut db)
        .await
        .context("tenant B")?;
    burst(http, &sys.api, &sys.key, "a", n_a).await?;
    let backlog_at_b: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('queued', 'running')")
            .fetch_one(&mut db)
            .await?;
    let started = Instant::now();
    for i in 0..n_b {
        tokio::time::sleep_until((started + Duration::from_millis(50 * i as u64)).into()).await;
        let r = http
            .post(format!("{}/v1/jobs", sys.api))
            .bearer_auth(&sys.key_b)
            .json(&json!({"kind": "summarize", "input": {"document_id": format!("B-{i}"), "text": document(i, 1)}}))
            .send()
            .await?;
        if r.status().as_u16() != 202 {
            bail!("B's job {i} answered {}", r.status());
        }
    }
    wait_idle(&mut db).await?;
    let rate = drain_rate(&mut db, &tenant_b).await?;
    let b_start: Vec<f64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM started_at - created_at) * 1000)::float8 FROM jobs \
         WHERE tenant_id = $1 AND status = 'completed'",
    )
    .bind(&tenant_b)
    .fetch_all(&mut db)
    .await?;
    if b_start.len() != n_b {
        bail!("{} of B's {n_b} jobs completed", b_start.len());
    }
    let unfinished: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status <> 'completed'")
        .fetch_one(&mut db)
        .await?;
    if unfinished != 0 {
        bail!("{unfinished} jobs did not complete");
    }
    drop(db);
    sys.stop();
    let mut admin = PgConnection::connect(&sys.admin_url).await?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sys.db_name)))
        .execute(&mut admin)
        .await?;
    let mut redis_conn =
        redis::Client::open(sys.redis_url.as_str())?.get_multiplexed_async_connection().await?;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", sys.prefix)).query_async(&mut redis_conn).await?;
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut redis_conn).await?;
    }
    Ok((rate, backlog_at_b, b_start))
}

/// Submits `n` one-chunk `summarize` jobs of tenant `key` in batches, four batches at a time.
async fn burst(http: &reqwest::Client, api: &str, key: &str, tag: &str, n: usize) -> anyhow::Result<()> {
    let mut set = tokio::task::JoinSet::new();
    let permits = std::sync::Arc::new(tokio::sync::Semaphore::new(4));
    for from in (0..n).step_by(BATCH) {
        let jobs: Vec<Value> = (from..(from + BATCH).min(n))
            .map(|i| json!({"kind": "summarize", "input": {"document_id": format!("A-{tag}-{i}"), "text": document(i, 1)}}))
            .collect();
        let (http, url, key) = (http.clone(), format!("{api}/v1/jobs/batch"), key.to_owned());
        let permit = permits.clone().acquire_owned().await?;
        set.spawn(async move {
            let r = http.post(url).bearer_auth(key).json(&json!({ "jobs": jobs })).send().await?;
            drop(permit);
            let status = r.status();
            let body: Value = r.json().await?;
            let accepted = body["results"]
                .as_array()
                .map_or(0, |rs| rs.iter().filter(|r| r["status"].as_u64() == Some(202)).count());
            if !status.is_success() || accepted != jobs.len() {
                bail!("a batch answered {status}, {accepted} of {} accepted: {body}", jobs.len());
            }
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r??;
    }
    Ok(())
}

/// Waits until no job is live (the live-jobs index answers without a scan: [`any_live_sql`]).
async fn wait_idle(db: &mut PgConnection) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    let any_live = any_live_sql(db).await?;
    loop {
        let live: bool = sqlx::query_scalar(any_live).fetch_one(&mut *db).await?;
        if !live {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("jobs still live after 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Tenant A's (every tenant but `tenant_b`) jobs per second, from the first creation to the last
/// finish.
async fn drain_rate(db: &mut PgConnection, tenant_b: &str) -> anyhow::Result<f64> {
    let (n, secs): (i64, f64) = sqlx::query_as(
        "SELECT count(*), extract(epoch FROM max(finished_at) - min(created_at))::float8 FROM jobs \
         WHERE tenant_id <> $1",
    )
    .bind(tenant_b)
    .fetch_one(&mut *db)
    .await?;
    if n == 0 || secs <= 0.0 {
        bail!("no jobs of tenant A to measure");
    }
    Ok(n as f64 / secs)
}
