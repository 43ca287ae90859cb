//! `longhaul-bench`: the product benchmark. Starts the real producer, two workers (by default, at
//! the worker's default concurrency of 64 each) and queue-events — release builds from this binary's directory — against local
//! Redis and a fresh PostgreSQL database, and prints one JSON line per scenario:
//!
//! - `product`: `BENCH_N` (default 20 000) triage requests from `CALLERS` (32) concurrent HTTP
//!   callers, the three-stage pipeline with the rule-based classifier, progress per stage, completed
//!   record with output;
//! - `paced`: `PACED_RATE` (100) jobs/s for `PACED_SECONDS` (30) — latency under normal load;
//! - `summarize`: `SUMMARIZE_N` (2 000) `summarize` jobs through `POST /v1/jobs`, each a document
//!   of `SUMMARIZE_CHUNKS` (4) chunks — a durable step per chunk, the combine step, the extractive
//!   summariser — so a job is several operation-log writes, not one.
//!
//! - `fairness` / `unfair`: tenant A's burst of `FAIR_A_N` (20 000) jobs, then tenant B's `FAIR_B_N`
//!   (20): B's start latency and A's drain rate, with admission on and off (module `fairness`);
//! - `pruning`: `product` with the workers pruning finished records older than a second as it runs.
//!
//! `BENCH_WORKERS` (2), `WORKER_CONCURRENCY` (64 per worker, the worker's default) and `BENCH_PARTITIONS` (1) shape the
//! system for the scaling figure; `BENCH_LOGS=<dir>` keeps each process's log there.
//!
//! Every run verifies its results (every record completed, one `completed` event per job) before
//! printing. Figures: jobs/s end to end, enqueue latency p50/p99 (the triage request), enqueue →
//! completed p50/p99 (from the records' own timestamps) split into its wait for a start
//! (`to_start`) and its run (`running`), Redis commands per job (`INFO
//! commandstats`), SQL statements and commits per job (`pg_stat_statements`,
//! `pg_stat_database`), each process's peak RSS, and CPU milliseconds per job of every process
//! on the path (ours, PostgreSQL's, redis-server, the load generator) — what limits the run.
//!
//! Tickets are created before the clock starts: a job is one triage request, as in the peer's
//! workload (one status row and one queue add per job).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use longhaul_testkit::procs::{Binaries, Launcher, Output, Proc, free_port, stop_all, wait_ready};
use serde_json::json;
use sqlx::{Connection as _, PgConnection};

mod fairness;
mod measure;

use measure::{cpu_ms_per_job, cpu_snapshot, pct, redis_calls, redis_cpu_ticks, sql_counts};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn random_hex() -> String {
    let mut b = [0u8; 5];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

struct System {
    procs: Vec<Proc>,
    api: String,
    key: String,
    /// A second tenant's key (the fairness scenario's tenant B).
    key_b: String,
    db_url: String,
    admin_url: String,
    db_name: String,
    prefix: String,
    redis_url: String,
}

impl System {
    fn stop(&mut self) {
        stop_all(&mut self.procs, Duration::from_secs(30));
        self.procs.clear();
    }

    /// Peak resident memory of every process, in MiB.
    fn peak_rss(&self) -> HashMap<String, f64> {
        self.procs
            .iter()
            .filter_map(|p| {
                let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).ok()?;
                let kb: f64 = status
                    .lines()
                    .find(|l| l.starts_with("VmHWM:"))?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                Some((p.name.clone(), (kb / 1024.0 * 10.0).round() / 10.0))
            })
            .collect()
    }
}

impl Drop for System {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts the system; `worker_env` is added to both workers' environment.
async fn start(bins: &Binaries, shape: Shape, worker_env: &[(&str, &str)]) -> anyhow::Result<System> {
    // Without TLS by default, as the peer's PostgreSQL client (node-postgres) connects: both sides
    // of the comparison use the same transport. Set BENCH_PG_URL to measure with TLS.
    let admin_url = std::env::var("BENCH_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable".into());
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let db_name = format!("longhaul_bench_{}", random_hex());
    let mut admin = PgConnection::connect(&admin_url).await.context("PostgreSQL")?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db_name}"))).execute(&mut admin).await?;
    // The benchmark database on the same server, with the same options (e.g. `?sslmode=disable`).
    let (without_query, query) = admin_url.split_once('?').map_or((admin_url.as_str(), ""), |(u, q)| (u, q));
    let base =
        without_query.rsplit_once('/').map(|(b, _)| b).context("BENCH_PG_URL needs a database path")?;
    let db_url =
        if query.is_empty() { format!("{base}/{db_name}") } else { format!("{base}/{db_name}?{query}") };
    let prefix = format!("lhbench-{}", random_hex());
    let port = free_port()?;
    let env: Vec<(&str, String)> = vec![
        ("DATABASE_URL", db_url.clone()),
        ("REDIS_URL", redis_url.clone()),
        ("LONGHAUL_QUEUE_PREFIX", prefix.clone()),
        ("LONGHAUL_LOG_FORMAT", "json".into()),
        ("RUST_LOG", "warn".into()),
        ("LONGHAUL_LISTEN", format!("127.0.0.1:{port}")),
        ("LONGHAUL_ADMIN_ADDR", "127.0.0.1:0".into()),
        ("LONGHAUL_DB_POOL", "20".into()),
    ];
    let logs = match std::env::var_os("BENCH_LOGS") {
        Some(dir) => {
            static SYSTEMS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = SYSTEMS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            let dir = std::path::Path::new(&dir).join(format!("system-{n}-{db_name}"));
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("BENCH_LOGS: cannot create {}", dir.display()))?;
            Some(dir)
        }
        None => None,
    };
    let launcher = Launcher::new(bins.clone(), env);
    let key =
        launcher.create_tenant(&["bench"], &[]).map_err(|e| anyhow::anyhow!("tenant create failed: {e}"))?;
    let key_b = launcher
        .create_tenant(&["bench-b"], &[])
        .map_err(|e| anyhow::anyhow!("tenant create failed: {e}"))?;
    let mut procs = Vec::new();
    let mut spawn = |name: &str, bin: &str, args: &[&str], extra: &[(&str, &str)]| -> anyhow::Result<()> {
        // BENCH_LOGS=<dir> keeps every process's log (warnings: slow requests and batches), each
        // system's in a directory of its own.
        let output = match &logs {
            Some(dir) => Output::LogFile(dir.join(format!("{name}.log"))),
            None => Output::StderrOnly,
        };
        procs.push(launcher.spawn(name, bin, args, extra, output)?);
        Ok(())
    };
    let partitions = shape.partitions.to_string();
    let (worker_queues, queues) = (shape.queues(true), shape.queues(false));
    let mut shaped: Vec<(&str, &str)> = Vec::new();
    let mut events_shaped: Vec<(&str, &str)> = Vec::new();
    if shape.partitions > 1 {
        shaped.push(("LONGHAUL_QUEUES", worker_queues.as_str()));
        events_shaped.push(("LONGHAUL_QUEUES", queues.as_str()));
    }
    spawn(
        "producer",
        "producer",
        &["serve", "--skip-migrations"],
        &[("LONGHAUL_QUEUE_PARTITIONS", partitions.as_str())],
    )?;
    let concurrency = shape.concurrency.to_string();
    for w in 1..=shape.workers {
        let consumer = format!("bench-w{w}");
        let mut env = vec![
            ("LONGHAUL_CONSUMER_NAME", consumer.as_str()),
            ("LONGHAUL_CONCURRENCY", concurrency.as_str()),
        ];
        env.extend_from_slice(&shaped);
        env.extend_from_slice(worker_env);
        spawn(&format!("worker-{w}"), "worker", &["--skip-migrations"], &env)?;
    }
    let mut env = vec![("LONGHAUL_CONSUMER_NAME", "bench-qe")];
    env.extend_from_slice(&events_shaped);
    spawn("queue-events", "queue-events", &[], &env)?;
    let system = System {
        procs,
        api: format!("http://127.0.0.1:{port}"),
        key,
        key_b,
        db_url,
        admin_url,
        db_name,
        prefix,
        redis_url,
    };
    if wait_ready(&system.api, Duration::from_secs(30)).await.is_err() {
        bail!("the producer did not become ready");
    }
    Ok(system)
}

/// How many worker processes, at what concurrency each, over how many queue partitions: the
/// scaling figure's knobs (`BENCH_WORKERS`, default 2; `WORKER_CONCURRENCY`, 64;
/// `BENCH_PARTITIONS`, 1).
#[derive(Debug, Clone, Copy)]
struct Shape {
    workers: usize,
    concurrency: usize,
    partitions: usize,
}

impl Shape {
    fn from_env() -> anyhow::Result<Self> {
        let knob = |name: &str, default: usize| -> anyhow::Result<usize> {
            match std::env::var(name) {
                Ok(v) => {
                    v.trim().parse().with_context(|| format!("{name} must be a whole number, got {v:?}"))
                }
                Err(_) => Ok(default),
            }
        };
        let shape = Self {
            workers: knob("BENCH_WORKERS", 2)?,
            concurrency: knob("WORKER_CONCURRENCY", 64)?,
            partitions: knob("BENCH_PARTITIONS", 1)?,
        };
        if !(1..=16).contains(&shape.workers) || !(1..=256).contains(&shape.concurrency) {
            bail!("BENCH_WORKERS must be 1..=16 and WORKER_CONCURRENCY 1..=256, got {shape:?}");
        }
        if !(1..=64).contains(&shape.partitions) || !shape.concurrency.is_multiple_of(shape.partitions) {
            bail!(
                "BENCH_PARTITIONS must be 1..=64 and divide WORKER_CONCURRENCY ({}), got {}",
                shape.concurrency,
                shape.partitions
            );
        }
        Ok(shape)
    }

    /// `LONGHAUL_QUEUES` for a partitioned run: every partition of both benchmarked queues — for a
    /// worker (`with_concurrency`), each with its share of the worker's concurrency.
    fn queues(self, with_concurrency: bool) -> String {
        let each = self.concurrency / self.partitions;
        ["triage", "summarize"]
            .iter()
            .flat_map(|q| {
                (0..self.partitions).map(move |p| {
                    if with_concurrency { format!("{q}-{p}={each}") } else { format!("{q}-{p}") }
                })
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The events streams of `queue`'s partitions.
    fn events_streams(self, prefix: &str, queue: &str) -> Vec<String> {
        if self.partitions == 1 {
            return vec![format!("{prefix}:{{{queue}}}:events")];
        }
        (0..self.partitions).map(|p| format!("{prefix}:{{{queue}-{p}}}:events")).collect()
    }
}

/// The query whether any job is live, through the live-jobs index of the schema the binaries
/// migrated to — `phase = 'live'` since migration 0009, the status predicate before it — so that
/// polling it costs PostgreSQL next to nothing (and binaries of an older commit can be measured).
pub(crate) async fn any_live_sql(db: &mut PgConnection) -> anyhow::Result<&'static str> {
    let phase: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_name = 'jobs' AND column_name = 'phase')",
    )
    .fetch_one(&mut *db)
    .await?;
    Ok(if phase {
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE phase = 'live')"
    } else {
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE status IN ('scheduled', 'queued', 'running'))"
    })
}

/// What a scenario's jobs are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Workload {
    /// A triage request per job (`POST /v1/tickets/{id}/triage`), tickets created untimed first.
    Triage,
    /// A `summarize` job per job (`POST /v1/jobs`), a document of this many chunks.
    Summarize(usize),
}

impl Workload {
    /// The queue its jobs go to.
    fn queue(self) -> &'static str {
        match self {
            Self::Triage => "triage",
            Self::Summarize(_) => "summarize",
        }
    }
}

/// A document of `chunks` chunks of about 1 800 characters each (the kind's default chunk size is
/// 2 000), different per job.
fn document(i: usize, chunks: usize) -> String {
    (0..chunks)
        .map(|c| {
            (0..12)
                .map(|s| {
                    format!(
                        "Document {i} part {c} sentence {s} says the export service timed out while the billing run waited for the ledger. "
                    )
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

async fn scenario(
    bins: &Binaries,
    name: &str,
    workload: Workload,
    n: usize,
    callers: usize,
    rate: Option<f64>,
    pruning: bool,
) -> anyhow::Result<serde_json::Value> {
    // With pruning on, finished records older than a second are deleted as the run goes: the run
    // is then verified by its completed events, and the records left say how many were pruned.
    let worker_env: &[(&str, &str)] = if pruning {
        &[
            ("LONGHAUL_RETAIN_FINISHED", "1s"),
            ("LONGHAUL_RETAIN_OPERATIONS", "1s"),
            ("LONGHAUL_PRUNE_EVERY", "1s"),
        ]
    } else {
        &[]
    };
    let shape = Shape::from_env()?;
    let mut sys = start(bins, shape, worker_env).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(callers).build()?;
    // Tickets first, untimed.
    let created = Arc::new(tokio::sync::Semaphore::new(64));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..if workload == Workload::Triage { n } else { 0 } {
        let (http, api, key, permit) =
            (http.clone(), sys.api.clone(), sys.key.clone(), created.clone().acquire_owned().await?);
        set.spawn(async move {
            let r = http
                .post(format!("{api}/v1/tickets"))
                .bearer_auth(&key)
                .json(&json!({"ticket_id": format!("T-{i}"), "subject": "App crashes on export", "body": "Since the update the app crashes. I was charged twice too."}))
                .send()
                .await;
            drop(permit);
            r.map(|r| r.status().is_success()).unwrap_or(false)
        });
    }
    while let Some(ok) = set.join_next().await {
        if !ok? {
            bail!("ticket creation failed");
        }
    }
    let mut redis_conn =
        redis::Client::open(sys.redis_url.as_str())?.get_multiplexed_async_connection().await?;
    let mut admin = PgConnection::connect(&sys.admin_url).await?;
    // Statement counts need pg_stat_statements preloaded (the peer's services.sh sets it up).
    let _ = sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&mut admin).await;
    let _ = sqlx::raw_sql("SELECT pg_stat_statements_reset()").execute(&mut admin).await;
    let calls0 = redis_calls(&mut redis_conn).await?;
    let (stmts0, commits0) = sql_counts(&mut admin, &sys.db_name).await?;
    let mut cpu0 = cpu_snapshot(&sys.procs);
    cpu0.insert("redis-server".into(), redis_cpu_ticks(&mut redis_conn).await?);

    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut callers_set = tokio::task::JoinSet::new();
    for _ in 0..callers {
        let (http, api, key, next) = (http.clone(), sys.api.clone(), sys.key.clone(), next.clone());
        callers_set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return Ok::<_, anyhow::Error>(lat);
                }
                if let Some(rate) = rate {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                let t = Instant::now();
                let request = match workload {
                    Workload::Triage => http.post(format!("{api}/v1/tickets/T-{i}/triage")),
                    Workload::Summarize(chunks) => http.post(format!("{api}/v1/jobs")).json(&json!({
                        "kind": "summarize",
                        "input": {"document_id": format!("D-{i}"), "text": document(i, chunks)},
                    })),
                };
                let r = request.bearer_auth(&key).send().await?;
                if r.status().as_u16() != 202 {
                    bail!("job {i} answered {}", r.status());
                }
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        });
    }
    let mut enqueue: Vec<f64> = Vec::with_capacity(n);
    while let Some(r) = callers_set.join_next().await {
        enqueue.extend(r??);
    }
    let enqueue_secs = started.elapsed().as_secs_f64();
    let mut db = PgConnection::connect(&sys.db_url).await?;
    let deadline = Instant::now() + Duration::from_secs(600);
    let any_live = any_live_sql(&mut db).await?;
    loop {
        // Every record exists by now; the run is over when none is live.
        let live: bool = sqlx::query_scalar(any_live).fetch_one(&mut db).await?;
        if !live {
            break;
        }
        if Instant::now() > deadline {
            let done: i64 =
                sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status IN ('completed', 'failed')")
                    .fetch_one(&mut db)
                    .await?;
            bail!("only {done} of {n} jobs finished");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    let mut cpu1 = cpu_snapshot(&sys.procs);
    cpu1.insert("redis-server".into(), redis_cpu_ticks(&mut redis_conn).await?);
    let calls1 = redis_calls(&mut redis_conn).await?;
    let (stmts1, commits1) = sql_counts(&mut admin, &sys.db_name).await?;
    let rss = sys.peak_rss();

    // Verify: every record completed with output; one completed event per job reached queue-events.
    let completed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM jobs WHERE status = 'completed' AND output IS NOT NULL")
            .fetch_one(&mut db)
            .await?;
    if !pruning && completed as usize != n {
        bail!("{completed} of {n} jobs completed with output");
    }
    let remaining: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&mut db).await?;
    let mut e2e: Vec<f64> =
        sqlx::query_scalar("SELECT (extract(epoch FROM finished_at - created_at) * 1000)::float8 FROM jobs")
            .fetch_all(&mut db)
            .await?;
    e2e.sort_by(f64::total_cmp);
    // Where a job's enqueue → completed time goes: waiting for its start (the queue's hop and the
    // start's write) and running (the pipeline's stages, its writes, the hops between the
    // worker's tasks). `started_at` is the last attempt's start: a retried job's wait includes its
    // failed attempts and their backoff.
    let split: Vec<(f64, f64)> = sqlx::query_as(
        "SELECT (extract(epoch FROM started_at - created_at) * 1000)::float8, \
                (extract(epoch FROM finished_at - started_at) * 1000)::float8 \
         FROM jobs WHERE started_at IS NOT NULL AND finished_at IS NOT NULL",
    )
    .fetch_all(&mut db)
    .await?;
    let (mut to_start, mut running): (Vec<f64>, Vec<f64>) = split.into_iter().unzip();
    to_start.sort_by(f64::total_cmp);
    running.sort_by(f64::total_cmp);
    enqueue.sort_by(f64::total_cmp);
    let events_streams = shape.events_streams(&sys.prefix, workload.queue());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (mut completed_events, mut trimmed, mut lag_zero) = (0, false, true);
        for events_stream in &events_streams {
            // In pages: one reply of 100 000 entries can outlast the connection's response timeout.
            let mut events: Vec<(String, Vec<(String, String)>)> = Vec::new();
            let mut from = "-".to_owned();
            loop {
                let page: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
                    .arg(events_stream)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(5000)
                    .query_async(&mut redis_conn)
                    .await?;
                let Some((last, _)) = page.last() else { break };
                from = format!("({last}");
                events.extend(page);
            }
            completed_events +=
                events.iter().filter(|(_, f)| f.iter().any(|(k, v)| k == "type" && v == "completed")).count();
            // The events stream is trimmed at 100 000 entries: count only when it cannot have been.
            trimmed |= events.len() >= 100_000;
            let pending: Vec<redis::Value> = redis::cmd("XPENDING")
                .arg(events_stream)
                .arg("queue-events")
                .query_async(&mut redis_conn)
                .await?;
            lag_zero &= matches!(pending.first(), Some(redis::Value::Int(0)));
        }
        if !trimmed && completed_events != n {
            bail!("{completed_events} completed events for {n} jobs");
        }
        if lag_zero || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sys.stop();
    let per_job = |a: Option<i64>, b: Option<i64>| match (a, b) {
        (Some(a), Some(b)) => Some(((b - a) as f64 / n as f64 * 10.0).round() / 10.0),
        _ => None,
    };
    let out = json!({
        "scenario": name,
        "kind": match workload { Workload::Triage => "triage", Workload::Summarize(_) => "summarize" },
        "n": n,
        "callers": callers,
        "workers": shape.workers,
        "worker_concurrency": shape.workers * shape.concurrency,
        "partitions": shape.partitions,
        "offered_rate": rate,
        "pruning": pruning,
        "pruned": n as i64 - remaining,
        "jobs_per_s": (n as f64 / total_secs).round(),
        "enqueue_per_s": (n as f64 / enqueue_secs).round(),
        "enqueue_p50_ms": pct(&enqueue, 0.5),
        "enqueue_p99_ms": pct(&enqueue, 0.99),
        "e2e_p50_ms": pct(&e2e, 0.5),
        "e2e_p99_ms": pct(&e2e, 0.99),
        "to_start_p50_ms": pct(&to_start, 0.5),
        "to_start_p99_ms": pct(&to_start, 0.99),
        "running_p50_ms": pct(&running, 0.5),
        "running_p99_ms": pct(&running, 0.99),
        "redis_cmds_per_job": ((calls1 - calls0) as f64 / n as f64 * 10.0).round() / 10.0,
        "sql_statements_per_job": per_job(stmts0, stmts1),
        "sql_commits_per_job": per_job(Some(commits0), Some(commits1)),
        "peak_rss_mib": rss,
        "cpu_ms_per_job": cpu_ms_per_job(&cpu0, &cpu1, n),
        "verified": true,
    });
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", sys.db_name)))
        .execute(&mut admin)
        .await?;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", sys.prefix)).query_async(&mut redis_conn).await?;
    if !keys.is_empty() {
        let _: u64 = redis::cmd("DEL").arg(keys).query_async(&mut redis_conn).await?;
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bins = Binaries::beside_current_exe("cargo build --release --bins").map_err(anyhow::Error::msg)?;
    let scenarios = std::env::var("SCENARIOS")
        .unwrap_or_else(|_| "product paced summarize fairness unfair pruning".into());
    for s in scenarios.split_whitespace() {
        let out = match s {
            "product" => {
                let n = env_usize("BENCH_N", 20_000);
                scenario(&bins, "product", Workload::Triage, n, env_usize("CALLERS", 32), None, false).await?
            }
            "pruning" => {
                let n = env_usize("BENCH_N", 20_000);
                scenario(&bins, "pruning", Workload::Triage, n, env_usize("CALLERS", 32), None, true).await?
            }
            "fairness" => fairness::run(&bins, true).await?,
            "unfair" => fairness::run(&bins, false).await?,
            "paced" => {
                let rate = env_usize("PACED_RATE", 100);
                let n = rate * env_usize("PACED_SECONDS", 30);
                scenario(
                    &bins,
                    "paced",
                    Workload::Triage,
                    n,
                    env_usize("CALLERS", 32),
                    Some(rate as f64),
                    false,
                )
                .await?
            }
            "summarize" => {
                let workload = Workload::Summarize(env_usize("SUMMARIZE_CHUNKS", 4));
                let n = env_usize("SUMMARIZE_N", 2_000);
                scenario(&bins, "summarize", workload, n, env_usize("CALLERS", 32), None, false).await?
            }
            other => {
                bail!("unknown scenario {other:?} (product, paced, summarize, pruning, fairness, unfair)")
            }
        };
        println!("{out}");
    }
    Ok(())
}
