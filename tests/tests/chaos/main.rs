//! The fault suite: the real binaries against PostgreSQL and Redis while workers are killed, Redis
//! loses its data, PostgreSQL refuses connections, poison entries arrive, and under load. Every
//! scenario checks that nothing is lost and no effect is applied twice, and prints one JSON line of
//! figures (`cargo test -p longhaul-e2e --test chaos -- --nocapture`).
//!
//! CI runs the short version. `just chaos` runs the full one (`LONGHAUL_CHAOS=full`: 5 000 jobs under
//! worker churn, 50 000 under load, a 10 s database outage); RELIABILITY.md records its figures.
//!
//! This file holds what the scenarios share (submitting, counting, verifying, reporting); the
//! scenarios are in [`workers`] (churn over triage jobs and over both kinds, a killed worker), [`outages`] (Redis and PostgreSQL
//! outages, Redis losing its data) and [`load`] (poison entries, a large run).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use longhaul_e2e::{Mode, System, chunk_summary, combined_summary};
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

/// What the scenarios submit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A ticket (`POST /v1/tickets`), then its triage (`POST /v1/tickets/{id}/triage`).
    Triage,
    /// A three-paragraph document to summarize (`POST /v1/jobs`), delivered to the tenant's
    /// webhook (the stand-in's): three chunks, each a durable step, then a combined summary.
    Summarize,
}

/// Submits tickets `{tag}-0..n` and their triage through the API with `callers` concurrent
/// callers, retrying a 503 after its `Retry-After`. Returns the job ids, and how many 503 answers
/// were seen with the slowest one's latency.
async fn submit(system: &System, tag: &str, n: usize, callers: usize) -> (Vec<String>, usize, Duration) {
    submit_kind(system, Kind::Triage, tag, n, callers).await
}

/// The paragraphs of summarize document `id`: with chunks of 200 characters, one chunk each.
fn paragraphs(id: &str) -> Vec<String> {
    (0..3)
        .map(|k| {
            format!(
                "Section {k} of {id} is about one thing. It says it at some length, so that a chunk \
                 holds only this paragraph and the next one starts a chunk of its own."
            )
        })
        .collect()
}

/// The requests that make job `id` of `kind`, in order: `(path, body)`.
fn requests(kind: Kind, id: &str) -> Vec<(String, Option<Value>)> {
    match kind {
        Kind::Triage => vec![
            (
                "/v1/tickets".into(),
                Some(json!({"ticket_id": id, "subject": "App crashes", "body": "It crashes on start"})),
            ),
            (format!("/v1/tickets/{id}/triage"), None),
        ],
        Kind::Summarize => {
            let text = paragraphs(id).join("\n\n");
            let input = json!({"document_id": id, "text": text, "chunk_chars": 200});
            vec![("/v1/jobs".into(), Some(json!({"kind": "summarize", "input": input})))]
        }
    }
}

/// Submits jobs `{tag}-0..n` of `kind` through the API with `callers` concurrent callers,
/// retrying a 503 after its `Retry-After`. Returns the job ids, and how many 503 answers were seen
/// with the slowest one's latency.
async fn submit_kind(
    system: &System,
    kind: Kind,
    tag: &str,
    n: usize,
    callers: usize,
) -> (Vec<String>, usize, Duration) {
    let http = system.http();
    let results: Vec<(String, usize, Duration)> = futures::stream::iter(0..n)
        .map(|i| {
            let http = http.clone();
            async move {
                let id = format!("{tag}-{i}");
                let mut unavailable = 0;
                let mut slowest = Duration::ZERO;
                let deadline = Instant::now() + Duration::from_secs(120);
                let steps = requests(kind, &id);
                let mut step = 0;
                loop {
                    assert!(Instant::now() < deadline, "{id} not accepted within 120 s");
                    let started = Instant::now();
                    let (path, body) = &steps[step];
                    let mut request = http.post(format!("{}{path}", system.api));
                    if let Some(body) = body {
                        request = request.json(body);
                    }
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
                    if step + 1 == steps.len() {
                        let job: Value = r.json().await.expect("job json");
                        let job_id = job["job_id"].as_str().expect("job_id").to_owned();
                        return (job_id, unavailable, slowest);
                    }
                    step += 1;
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
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(2).connect(&system.db.url).await.expect("pg");
    // Every write that sets a record's status to completed leaves a row here: a job completed
    // twice has two (see `completed_twice`). Test instrumentation of this test's own database.
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS chaos_completions (job_id TEXT NOT NULL);
         CREATE OR REPLACE FUNCTION chaos_completion() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO chaos_completions (job_id) VALUES (NEW.job_id); RETURN NULL; END $$;
         CREATE OR REPLACE TRIGGER chaos_completion AFTER UPDATE OF status ON jobs FOR EACH ROW
             WHEN (NEW.status = 'completed') EXECUTE FUNCTION chaos_completion();",
    )
    .execute(&pool)
    .await
    .expect("the completion trigger");
    pool
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

/// Jobs recorded as completed more than once: more than one write set their status to completed
/// (the trigger `pool` installs counts each).
async fn completed_twice(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT job_id FROM chaos_completions \
         GROUP BY job_id HAVING count(*) > 1) AS twice",
    )
    .fetch_one(pool)
    .await
    .expect("completions")
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
    let seen: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT job_id) FROM chaos_completions WHERE job_id = ANY($1)")
            .bind(jobs)
            .fetch_one(pool)
            .await
            .expect("completions");
    assert_eq!(seen as usize, jobs.len(), "the trigger saw every job's completion");
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

mod load;
mod outages;
mod workers;
