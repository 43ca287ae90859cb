//! `POST /v1/jobs/{job_id}/cancel` and `producer jobs cancel`: a queued job is cancelled at once
//! (`200`, audited, a `cancelled` event on its kind's queue); a running one gets
//! `cancel_requested_at` (`202`) for its worker to end; a cancelled one is `200` as it is; a
//! completed or failed one is `409` and unchanged; another tenant's is `404` like a missing one;
//! storage down is `503`, Redis down only loses the event.

use std::collections::HashMap;
use std::process::Output;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use longhaul_core::{ErrorClass, JobId, JobStatus, Lease, TenantId};
use longhaul_queue::{Event, EventKind, Queue};
use longhaul_store::{AttemptFailure, JobFilter, WriteOutcome};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::summary_input;

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// A new summarize job of `acme` for document `doc`: its id.
async fn queued(t: &TestApp, doc: &str) -> JobId {
    let r = t.submit("summarize", summary_input(doc, &format!("The text of {doc}.")), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id")
}

/// A summarize job of `acme` whose attempt 1 a worker has started: its id.
async fn running(t: &TestApp, doc: &str) -> JobId {
    let job = queued(t, doc).await;
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    match t.db.start_next(&acme(), &job, lease, 1).await.expect("start") {
        WriteOutcome::Applied(r) => assert_eq!(r.status, JobStatus::Running),
        other => panic!("not started: {other:?}"),
    }
    job
}

async fn cancel_as(t: &TestApp, key: &str, job: &str) -> Reply {
    t.call(Method::POST, &format!("/v1/jobs/{job}/cancel"), Some(key), None).await
}

async fn cancel(t: &TestApp, job: &JobId) -> Reply {
    cancel_as(t, &t.key, job.as_str()).await
}

async fn get(t: &TestApp, job: &JobId) -> Value {
    let r = t.call(Method::GET, &format!("/v1/jobs/{job}"), Some(&t.key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json
}

/// `(action, detail.by)` of every audit row of `acme`'s job `job`, oldest first.
async fn audit(t: &TestApp, job: &JobId) -> Vec<(String, Value)> {
    t.db.job_audit(&acme(), job)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.detail["by"].clone()))
        .collect()
}

/// Every event on `queue`'s events stream, oldest first.
async fn events(t: &TestApp, queue: &Queue) -> Vec<Event> {
    let mut conn = t.queue.raw().await;
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(queue.keys().events())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    entries.into_iter().map(|(_, fields)| Event::from_fields(&fields).expect("an event")).collect()
}

/// The location header of `r`.
fn location(r: &Reply) -> Option<&str> {
    r.headers.get("location").and_then(|v| v.to_str().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_job_is_cancelled_at_once_audited_and_announced() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let job = queued(&t, "doc-q").await;
        let other = queued(&t, "doc-other").await;

        let r = cancel(&t, &job).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!((&r.json["job_id"], &r.json["status"]), (&json!(job.as_str()), &json!("cancelled")));
        assert!(r.json["finished_at"].is_string(), "{r:?}");
        assert!(
            r.json.get("cancel_requested_at").is_none(),
            "only a running job's cancel is a request: {r:?}"
        );
        assert_eq!(location(&r), Some(format!("/v1/jobs/{job}").as_str()));
        assert_eq!(get(&t, &job).await, r.json, "the answer is the stored record");
        assert_eq!(
            audit(&t, &job).await,
            [("enqueued".to_owned(), Value::Null), ("cancelled".to_owned(), json!("tenant"))]
        );

        // One `cancelled` event on the summarize queue's events stream; none on triage's.
        let published = events(&t, &t.summarize).await;
        assert_eq!(published.len(), 1, "{published:?}");
        let e = &published[0];
        assert_eq!(
            (e.kind, e.job_id.as_str(), e.tenant_id.as_str(), e.attempt),
            (EventKind::Cancelled, job.as_str(), "acme", 0)
        );
        assert!(e.total_ms.is_some(), "{e:?}");
        assert!(events(&t, &t.queue).await.is_empty());

        // Again: the same record, 200, nothing written, no second event.
        let again = cancel(&t, &job).await;
        assert_eq!((again.status, &again.json), (StatusCode::OK, &r.json));
        assert_eq!(audit(&t, &job).await.len(), 2);
        assert_eq!(events(&t, &t.summarize).await.len(), 1);

        // The other job is untouched; the list filters by the new status.
        assert_eq!(get(&t, &other).await["status"], "queued");
        let list = t.call(Method::GET, "/v1/jobs?status=cancelled", Some(&t.key), None).await;
        assert_eq!(list.status, StatusCode::OK, "{list:?}");
        let ids: Vec<&Value> =
            list.json["jobs"].as_array().expect("jobs").iter().map(|j| &j["job_id"]).collect();
        assert_eq!(ids, [&json!(job.as_str())]);
        let filter = JobFilter { status: Some(JobStatus::Queued), ..JobFilter::default() };
        let queued: Vec<JobId> = t.jobs(&filter).await.into_iter().map(|r| r.job_id).collect();
        assert_eq!(queued, [other]);
        let bad = t.call(Method::GET, "/v1/jobs?status=stopped", Some(&t.key), None).await;
        let p = problem(&bad, StatusCode::BAD_REQUEST);
        assert!(p["errors"][0]["message"].as_str().is_some_and(|m| m.contains("cancelled")), "{p}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_job_gets_its_cancel_requested_and_its_worker_ends_it() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let job = running(&t, "doc-r").await;

        let r = cancel(&t, &job).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!((&r.json["status"], &r.json["attempts"]), (&json!("running"), &json!(1)));
        let requested = r.json["cancel_requested_at"].clone();
        assert!(requested.is_string(), "{r:?}");
        assert!(r.json["finished_at"].is_null(), "{r:?}");
        assert_eq!(location(&r), Some(format!("/v1/jobs/{job}").as_str()));
        assert_eq!(get(&t, &job).await, r.json);
        // A request again: still 202, the first request's time kept.
        let again = cancel(&t, &job).await;
        assert_eq!((again.status, &again.json["cancel_requested_at"]), (StatusCode::ACCEPTED, &requested));
        assert_eq!(
            audit(&t, &job).await,
            [
                ("enqueued".to_owned(), Value::Null),
                ("started".to_owned(), Value::Null),
                // One row: the repeated request changed nothing.
                ("cancel_requested".to_owned(), json!("tenant")),
            ]
        );
        assert!(events(&t, &t.summarize).await.is_empty(), "the worker announces the end, not the API");

        // Its worker ends it; a cancel now is 200 with the cancelled record, and changes nothing.
        match t.db.end_cancelled(&acme(), &job, 1).await.expect("end") {
            WriteOutcome::Applied(r) => assert_eq!(r.status, JobStatus::Cancelled),
            other => panic!("not ended: {other:?}"),
        }
        let ended = get(&t, &job).await;
        let last = cancel(&t, &job).await;
        assert_eq!((last.status, &last.json), (StatusCode::OK, &ended));
        assert_eq!((&ended["status"], &ended["cancel_requested_at"]), (&json!("cancelled"), &requested));
        assert_eq!(audit(&t, &job).await.len(), 4, "enqueued, started, cancel_requested, cancelled");
        assert!(events(&t, &t.summarize).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_finished_job_is_a_409_and_nothing_changes() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let completed = running(&t, "doc-c").await;
        t.db.complete(&acme(), &completed, 1, &json!({"summary": "done"})).await.expect("complete");
        let failed = running(&t, "doc-f").await;
        let failure = AttemptFailure::new(1, ErrorClass::Invalid, "not a document");
        t.db.fail(&acme(), &failed, failure).await.expect("fail");

        for (job, status) in [(&completed, "completed"), (&failed, "failed")] {
            let before = get(&t, job).await;
            assert_eq!(before["status"], status);
            let rows = audit(&t, job).await;
            let r = cancel(&t, job).await;
            let p = problem(&r, StatusCode::CONFLICT);
            assert_eq!((&p["type"], &p["title"]), (&json!("/problems/conflict"), &json!("Conflict")), "{p}");
            assert_eq!(p["retryable"], false, "{p}");
            assert_eq!(
                p["detail"],
                format!(
                    "job {job} is already {status}: only a scheduled, queued or running job can be cancelled"
                ),
            );
            assert!(location(&r).is_none());
            assert_eq!(get(&t, job).await, before, "the record is unchanged");
            assert_eq!(audit(&t, job).await, rows, "nothing audited");
        }
        assert!(events(&t, &t.summarize).await.is_empty(), "no event");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_job_is_not_found_like_a_missing_one() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let job = queued(&t, "doc-mine").await;
        let globex = t.key_for("globex").await;

        let theirs = cancel_as(&t, &globex, job.as_str()).await;
        let never = longhaul_core::IdempotencyKey::parse("never-submitted").expect("key");
        let missing_id = JobId::for_idempotency_key(&acme(), &never);
        let missing = cancel_as(&t, &t.key, missing_id.as_str()).await;
        let invalid = cancel_as(&t, &t.key, "not%20an%20id").await;
        for r in [&theirs, &missing, &invalid] {
            let p = problem(r, StatusCode::NOT_FOUND);
            assert_eq!((&p["detail"], &p["retryable"]), (&json!("job not found"), &json!(false)), "{p}");
        }
        assert_eq!(theirs.json, missing.json, "another tenant's job answers exactly as a missing one");

        // Without a key: 401. The job is untouched.
        let anonymous = t.call(Method::POST, &format!("/v1/jobs/{job}/cancel"), None, None).await;
        problem(&anonymous, StatusCode::UNAUTHORIZED);
        assert_eq!(get(&t, &job).await["status"], "queued");
        assert_eq!(audit(&t, &job).await.len(), 1);
        assert!(events(&t, &t.summarize).await.is_empty());
        // Only POST.
        let r = t.call(Method::GET, &format!("/v1/jobs/{job}/cancel"), Some(&t.key), None).await;
        problem(&r, StatusCode::METHOD_NOT_ALLOWED);
    })
    .await;
}

/// Redis down: the record is cancelled all the same (200); only the event is lost, and logged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_still_cancels_the_record() {
    let t = TestApp::new(Backend::Sqlite).await;
    let job = queued(&t, "doc-redis").await;
    let down = t.with_redis("redis://127.0.0.1:1", &[]).await;
    let started = Instant::now();
    let r = call(&down, Method::POST, &format!("/v1/jobs/{job}/cancel"), Some(&t.key), None, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    assert_eq!((r.status, &r.json["status"]), (StatusCode::OK, &json!("cancelled")), "{r:?}");
    assert_eq!(get(&t, &job).await["status"], "cancelled");
    assert!(events(&t, &t.summarize).await.is_empty());
}

/// The database down: `503` with `Retry-After`, as every route answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storage_down_is_a_503() {
    use sqlx::Connection as _;
    let t = TestApp::new(Backend::Postgres).await;
    let job = queued(&t, "doc-db").await; // the key is authenticated (and cached) now
    let name = t.db.url.rsplit('/').next().expect("db name").to_owned();
    let mut admin = sqlx::PgConnection::connect(&longhaul_testkit::pg_admin_url()).await.expect("admin");
    let set = |on: bool| sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {on}"));
    sqlx::raw_sql(set(false)).execute(&mut admin).await.expect("block");
    let kill = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(kill)).execute(&mut admin).await.expect("terminate");

    let r = cancel(&t, &job).await;
    assert_eq!(problem(&r, StatusCode::SERVICE_UNAVAILABLE)["retryable"], true);
    assert!(r.headers.get("retry-after").is_some());
    assert!(events(&t, &t.summarize).await.is_empty());

    sqlx::raw_sql(set(true)).execute(&mut admin).await.expect("unblock");
    let r = wait_until(Duration::from_secs(10), "the database back", async || {
        let r = cancel(&t, &job).await;
        if r.status == StatusCode::OK { Ok(r) } else { Err(r.status) }
    })
    .await;
    assert_eq!(r.json["status"], "cancelled");
    assert_eq!(events(&t, &t.summarize).await.len(), 1);
}

/// On a partitioned queue the event goes to the job's partition, whose queue-events tails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_goes_to_the_jobs_partition() {
    let t = TestApp::new(Backend::Sqlite).await;
    let router = t.with_redis(&t.queue.url, &["--queue-partitions", "3"]).await;
    let body = json!({"kind": "summarize", "input": summary_input("doc-p", "Partitioned text.")});
    let r = call(&router, Method::POST, "/v1/jobs", Some(&t.key), Some(body), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let job = JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id");
    let r = call(&router, Method::POST, &format!("/v1/jobs/{job}/cancel"), Some(&t.key), None, &[]).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let mut config = t.summarize.config().clone();
    config.partitions = 3;
    let partitioned = Queue::new(&t.queue.url, config).expect("the partitioned queue");
    let mine = partitioned.route(job.as_str()).expect("route");
    for p in partitioned.partitions().expect("partitions") {
        let got = events(&t, &p).await;
        if p.config().queue == mine.config().queue {
            assert_eq!(got.len(), 1, "{}: {got:?}", p.config().queue);
            assert_eq!((got[0].kind, got[0].job_id.as_str()), (EventKind::Cancelled, job.as_str()));
        } else {
            assert!(got.is_empty(), "{}: {got:?}", p.config().queue);
        }
    }
    assert!(events(&t, &t.summarize).await.is_empty(), "nothing on the unsplit queue");
}

/// Runs `producer jobs cancel` on the app's database and Redis with `args` after the subcommand.
async fn cli_cancel(t: &TestApp, args: &[&str]) -> Output {
    cli_jobs(t, "cancel", args).await
}

async fn cli_jobs(t: &TestApp, command_name: &str, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"));
    command
        .args(["--database-url", &t.db.url, "jobs", command_name, "--redis-url", &t.queue.url])
        .args(["--queue-prefix", &t.queue.prefix])
        .args(args)
        // The record as JSON (a table otherwise).
        .arg("--json")
        .kill_on_drop(true);
    for var in [
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "REDIS_URL",
        "REDIS_URL_FILE",
        "LONGHAUL_QUEUES",
        "LONGHAUL_QUEUE_PREFIX",
        "LONGHAUL_QUEUE_PARTITIONS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("producer jobs cancel within 60 s")
        .expect("run producer")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_cancels_as_the_api_does() {
    let t = TestApp::new(Backend::Sqlite).await;
    let job = queued(&t, "doc-cli").await;
    let out = cli_cancel(&t, &["--tenant", "acme", job.as_str()]).await;
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON record ({e}): {}", text(&out.stdout)));
    assert_eq!((&record["job_id"], &record["status"]), (&json!(job.as_str()), &json!("cancelled")));
    assert_eq!(get(&t, &job).await, record);
    assert_eq!(audit(&t, &job).await.last(), Some(&("cancelled".to_owned(), json!("operator"))));
    let published = events(&t, &t.summarize).await;
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!((published[0].kind, published[0].job_id.as_str()), (EventKind::Cancelled, job.as_str()));
    // Again: the same record, exit 0, nothing more.
    let out = cli_cancel(&t, &["--tenant", "acme", job.as_str()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).expect("json"), record);
    assert_eq!(events(&t, &t.summarize).await.len(), 1);

    // A running job: its cancel is requested.
    let run = running(&t, "doc-cli-run").await;
    let out = cli_cancel(&t, &["--tenant", "acme", run.as_str()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(record["status"], "running");
    assert!(record["cancel_requested_at"].is_string(), "{record}");

    // A completed job, another tenant's, an id that is none: exit 1, a message, nothing printed.
    let done = running(&t, "doc-cli-done").await;
    t.db.complete(&acme(), &done, 1, &json!({})).await.expect("complete");
    t.key_for("globex").await;
    for (args, says) in [
        (
            vec!["--tenant", "acme", done.as_str()],
            "already completed: only a scheduled, queued or running job can be cancelled",
        ),
        (vec!["--tenant", "globex", job.as_str()], "has no job"),
        (vec!["--tenant", "acme", "bad id"], "JOB_ID"),
    ] {
        let out = cli_cancel(&t, &args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: the message says {says:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", text(&out.stdout));
    }
    assert_eq!(get(&t, &done).await["status"], "completed");
    assert_eq!(events(&t, &t.summarize).await.len(), 1);
}

async fn retry(t: &TestApp, job: &JobId) -> Reply {
    t.call(Method::POST, &format!("/v1/jobs/{job}/retry"), Some(&t.key), None).await
}

/// `POST /v1/jobs/{id}/retry`: a failed or cancelled job is `queued` again under the same id with
/// a fresh budget and enqueued into its kind's queue (`202`, audited `retried`); a queued, running
/// or completed one is `409` and unchanged; another tenant's is `404`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_or_cancelled_job_is_retried_under_the_same_id() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        // Failed: attempt 1 ran and failed for good.
        let job = running(&t, "doc-failed").await;
        let failure = AttemptFailure::new(1, ErrorClass::Invalid, "bad answer");
        assert!(matches!(t.db.fail(&acme(), &job, failure).await.expect("fail"), WriteOutcome::Applied(_)));
        // As a worker leaves a failed job: its entry acknowledged and deleted, its trace released.
        let mut conn = t.queue.raw().await;
        let keys = t.summarize.keys();
        let _: () = redis::cmd("DEL")
            .arg(keys.jobs())
            .arg(keys.job(job.as_str()))
            .query_async(&mut conn)
            .await
            .expect("DEL");
        let entries = t.summarize_len().await;
        assert_eq!(entries, 0);
        let r = retry(&t, &job).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!(
            (r.json["job_id"].as_str(), r.json["status"].as_str()),
            (Some(job.as_str()), Some("queued"))
        );
        assert_eq!((r.json["attempts"].as_u64(), r.json["max_attempts"].as_u64()), (Some(1), Some(9)));
        assert!(r.json.get("error_class").is_none_or(Value::is_null), "{}", r.json);
        assert_eq!(t.summarize_len().await, entries + 1, "the next attempt's entry is enqueued");
        assert!(t.summarize.has_trace(&job).await.expect("trace"));
        assert_eq!(
            audit(&t, &job).await.last().map(|(a, by)| (a.as_str(), by.clone())),
            Some(("retried", json!("tenant")))
        );
        // Queued now: a second retry is a 409 and changes nothing.
        let again = retry(&t, &job).await;
        assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
        assert!(again.json["detail"].as_str().unwrap_or_default().contains("queued"), "{again:?}");
        assert_eq!(t.summarize_len().await, entries + 1);

        // Cancelled while queued: back in the queue too.
        let cancelled = queued(&t, "doc-cancelled").await;
        assert_eq!(cancel(&t, &cancelled).await.status, StatusCode::OK);
        let r = retry(&t, &cancelled).await;
        assert_eq!((r.status, r.json["status"].as_str()), (StatusCode::ACCEPTED, Some("queued")), "{r:?}");

        // Running or completed: 409; another tenant's: 404.
        let live = running(&t, "doc-running").await;
        assert_eq!(retry(&t, &live).await.status, StatusCode::CONFLICT);
        let other = t.key_for("globex").await;
        let r = t.call(Method::POST, &format!("/v1/jobs/{job}/retry"), Some(&other), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    })
    .await;
}

/// `producer jobs retry` puts a cancelled job back as the API does (audited as the operator's) and
/// refuses a queued one (exit 1, a message).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_retries_as_the_api_does() {
    let t = TestApp::new(Backend::Sqlite).await;
    let job = queued(&t, "doc-cli-retry").await;
    assert_eq!(cancel(&t, &job).await.status, StatusCode::OK);
    let out = cli_jobs(&t, "retry", &["--tenant", "acme", job.as_str()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let record: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!((&record["job_id"], &record["status"]), (&json!(job.as_str()), &json!("queued")));
    assert_eq!(audit(&t, &job).await.last(), Some(&("retried".to_owned(), json!("operator"))));
    let out = cli_jobs(&t, "retry", &["--tenant", "acme", job.as_str()]).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("only a failed or cancelled job can be retried"),
        "{}",
        text(&out.stderr)
    );
    assert!(out.stdout.is_empty());
}
