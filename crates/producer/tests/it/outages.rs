//! Outages: Redis down, database down, and the reconciler restoring what the queue lost.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use longhaul_core::{JobId, JobStatus, TenantId};
use longhaul_store::JobFilter;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_outage_answers_503_fast_and_the_record_is_reconciled_later() {
    let t = TestApp::new(Backend::Postgres).await;
    t.ticket(&t.key, "T-1").await;
    // The same API, its queue pointing where nothing listens.
    let router = t.with_redis("redis://127.0.0.1:1", &[]).await;
    let started = Instant::now();
    let r = call(&router, Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None, &[]).await;
    assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
    let p = problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(p["retryable"], true);
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));

    // The pending record was written before the enqueue was tried; no entry exists.
    let jobs = t.jobs(&JobFilter::default()).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!((jobs[0].status, jobs[0].attempts), (JobStatus::Queued, 0));
    assert_eq!(t.stream_len().await, 0);

    // Redis is back: the reconciler enqueues it, once, however often it runs.
    assert_eq!(t.reconcile(Duration::ZERO).await, 1);
    assert_eq!(t.reconcile(Duration::ZERO).await, 0);
    assert_eq!(t.stream_len().await, 1);
    // A retried request now sees the existing job.
    let again = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
    assert_eq!(
        (again.status, again.json["job_id"].clone()),
        (StatusCode::OK, serde_json::json!(jobs[0].job_id))
    );
}

/// A 503 tells the client to retry after `--retry-after` (`LONGHAUL_RETRY_AFTER`), in seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_503_carries_the_configured_retry_after() {
    let t = TestApp::new(Backend::Sqlite).await;
    t.ticket(&t.key, "T-9").await;
    let down = t.with_redis("redis://127.0.0.1:1", &["--retry-after", "7s"]).await;
    let r = call(&down, Method::POST, "/v1/tickets/T-9/triage", Some(&t.key), None, &[]).await;
    problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("7"));
}

/// Issue 14, item 8: the client's retry after a 503, as told, enqueues the job itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_after_a_503_enqueues_the_recorded_job_at_once() {
    let t = TestApp::new(Backend::Postgres).await;
    t.ticket(&t.key, "T-8").await;
    let down = t.with_redis("redis://127.0.0.1:1", &[]).await;
    let r = call(&down, Method::POST, "/v1/tickets/T-8/triage", Some(&t.key), None, &[]).await;
    problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    // Still down: the retry is told to retry again (the job is recorded, but not in the queue).
    let r = call(&down, Method::POST, "/v1/tickets/T-8/triage", Some(&t.key), None, &[]).await;
    problem(&r, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(t.stream_len().await, 0);

    // Redis is back: the retry gets the existing job, and its entry is in the queue now — no
    // reconciler involved.
    let again = t.call(Method::POST, "/v1/tickets/T-8/triage", Some(&t.key), None).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(t.stream_len().await, 1);
    let job = JobId::parse(again.json["job_id"].as_str().expect("job id")).expect("job id");
    assert!(t.queue.has_trace(&job).await.expect("trace"));
    // Further repeats are idempotent: still one entry, and the reconciler finds nothing to do.
    for _ in 0..3 {
        assert_eq!(
            t.call(Method::POST, "/v1/tickets/T-8/triage", Some(&t.key), None).await.status,
            StatusCode::OK
        );
    }
    assert_eq!(t.stream_len().await, 1);
    assert_eq!(t.reconcile(Duration::ZERO).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reconciler_restores_jobs_after_redis_loses_the_queue() {
    let t = TestApp::new(Backend::Sqlite).await;
    for i in 0..3 {
        t.ticket(&t.key, &format!("T-{i}")).await;
        assert_eq!(
            t.call(Method::POST, &format!("/v1/tickets/T-{i}/triage"), Some(&t.key), None).await.status,
            StatusCode::ACCEPTED
        );
    }
    // Redis loses this queue's keys (only this test's prefix).
    let mut conn = t.queue.raw().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", t.queue.prefix)).query_async(&mut conn).await.expect("keys");
    let _: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("del");
    t.queue.prepare(None).await.expect("group back");
    // Recent records are left alone (their enqueue may be in flight) ...
    assert_eq!(t.reconcile(Duration::from_secs(3600)).await, 0);
    // ... older ones are restored, each once, even with several reconcilers at once.
    let runs = (0..4).map(|_| t.reconcile(Duration::ZERO));
    let restored: usize = futures::future::join_all(runs).await.into_iter().sum();
    assert_eq!(restored, 3);
    assert_eq!(t.stream_len().await, 3);
    for i in 0..3 {
        let job = longhaul_triage::job_id_for_ticket(
            &TenantId::parse("acme").expect("t"),
            &longhaul_core::TicketId::parse(format!("T-{i}")).expect("t"),
            1,
        );
        assert!(t.queue.has_trace(&job).await.expect("trace"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_answers_503_and_enqueues_nothing() {
    use sqlx::Connection as _;
    let t = TestApp::new(Backend::Postgres).await;
    t.ticket(&t.key, "T-1").await;
    let name = t.db.url.rsplit('/').next().expect("db name").to_owned();
    let mut admin = sqlx::PgConnection::connect(&longhaul_testkit::pg_admin_url()).await.expect("admin");
    let set = |on: bool| sqlx::AssertSqlSafe(format!("ALTER DATABASE {name} ALLOW_CONNECTIONS {on}"));
    sqlx::raw_sql(set(false)).execute(&mut admin).await.expect("block");
    let kill = format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
    sqlx::raw_sql(sqlx::AssertSqlSafe(kill)).execute(&mut admin).await.expect("terminate");

    let started = Instant::now();
    let r = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    assert_eq!(problem(&r, StatusCode::SERVICE_UNAVAILABLE)["retryable"], true);
    assert!(r.headers.get("retry-after").is_some());
    assert_eq!(t.stream_len().await, 0, "nothing enqueued");

    sqlx::raw_sql(set(true)).execute(&mut admin).await.expect("unblock");
    let r = wait_until(Duration::from_secs(10), "the database back", async || {
        let r = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
        if r.status == StatusCode::ACCEPTED { Ok(r) } else { Err(r.status) }
    })
    .await;
    assert_eq!(r.json["status"], "queued");
    assert_eq!(t.stream_len().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_retry_is_restored_with_its_backoff() {
    let t = TestApp::new(Backend::Postgres).await;
    t.ticket(&t.key, "T-1").await;
    let r = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let tenant = TenantId::parse("acme").expect("tenant");
    let job =
        longhaul_triage::job_id_for_ticket(&tenant, &longhaul_core::TicketId::parse("T-1").expect("t"), 1);
    // Attempt 1 failed and its retry is due in an hour; then Redis loses the queue's keys.
    let due = chrono::Utc::now() + chrono::Duration::hours(1);
    let due = due - chrono::Duration::nanoseconds(i64::from(due.timestamp_subsec_nanos() % 1_000_000));
    let lease = longhaul_core::Lease { entry: "0-1".to_owned(), delivery: 1 };
    t.db.start_next(&tenant, &job, lease, 1).await.expect("start");
    let retry =
        t.db.schedule_retry(
            &tenant,
            &job,
            longhaul_store::AttemptFailure::new(1, longhaul_core::ErrorClass::Retryable, "provider 503"),
            due,
        )
        .await
        .expect("retry");
    assert!(matches!(retry, longhaul_store::WriteOutcome::Applied(_)), "{retry:?}");
    let mut conn = t.queue.raw().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", t.queue.prefix)).query_async(&mut conn).await.expect("keys");
    let _: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("del");
    t.queue.prepare(None).await.expect("group back");

    assert_eq!(t.reconcile(Duration::ZERO).await, 1);
    assert_eq!(t.reconcile(Duration::ZERO).await, 0, "once");
    // Not in the stream (that would skip the backoff) but in the delayed set, due when the record says.
    assert_eq!(t.stream_len().await, 0);
    let delayed: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(t.queue.keys().delayed())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("zrange");
    assert_eq!(delayed.len(), 1);
    assert_eq!(delayed[0].1 as i64, due.timestamp_millis());
    let fields: Vec<String> = serde_json::from_str(&delayed[0].0).expect("entry fields");
    let field = |name: &str| fields.chunks(2).find(|kv| kv[0] == name).map(|kv| kv[1].clone());
    assert_eq!((field("j"), field("a")), (Some(job.to_string()), Some("2".to_owned())), "{fields:?}");
}

/// `POST /v1/jobs` while Redis is down: 503 with `Retry-After`, the record stays queued, and the
/// reconciler enqueues it into its kind's queue once Redis is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_submitted_while_redis_is_down_is_reconciled_into_its_kinds_queue() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let t = TestApp::new(backend).await;
        let down = t.with_redis("redis://127.0.0.1:1", &[]).await;
        let input = serde_json::json!({"document_id": "doc-1", "text": "Queued while Redis was down."});
        let body = serde_json::json!({"kind": "summarize", "input": input});
        let started = Instant::now();
        let r = call(&down, Method::POST, "/v1/jobs", Some(&t.key), Some(body.clone()), &[]).await;
        assert!(started.elapsed() < Duration::from_secs(3), "answered in {:?}", started.elapsed());
        assert_eq!(problem(&r, StatusCode::SERVICE_UNAVAILABLE)["retryable"], true);
        assert_eq!(r.headers.get("retry-after").and_then(|v| v.to_str().ok()), Some("2"));
        // A batch item is told the same, and its record is kept too.
        let other = serde_json::json!({"document_id": "doc-2", "text": "Also queued while Redis was down."});
        let batch = serde_json::json!({"jobs": [{"kind": "summarize", "input": other}]});
        let r = call(&down, Method::POST, "/v1/jobs/batch", Some(&t.key), Some(batch), &[]).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let item = &r.json["results"][0];
        assert_eq!(
            (&item["status"], &item["error"]["retryable"]),
            (&serde_json::json!(503), &serde_json::json!(true))
        );

        let jobs = t.jobs(&JobFilter::default()).await;
        assert_eq!(jobs.len(), 2);
        for job in &jobs {
            assert_eq!((job.kind.as_str(), job.status, job.attempts), ("summarize", JobStatus::Queued, 0));
        }
        assert_eq!((t.summarize_len().await, t.stream_len().await), (0, 0));

        // Redis is back: each is enqueued once, into the summarize stream.
        assert_eq!(t.reconcile(Duration::ZERO).await, 2);
        assert_eq!(t.reconcile(Duration::ZERO).await, 0);
        assert_eq!((t.summarize_len().await, t.stream_len().await), (2, 0));
        for job in &jobs {
            assert!(t.summarize.has_trace(&job.job_id).await.expect("trace"));
            assert!(!t.queue.has_trace(&job.job_id).await.expect("trace"), "not in the triage queue");
        }
        // The client's retry finds the job.
        let again = call(&t.router, Method::POST, "/v1/jobs", Some(&t.key), Some(body), &[]).await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert!(jobs.iter().any(|j| again.json["job_id"] == j.job_id.as_str()));
        assert_eq!(t.summarize_len().await, 2);
    }
}
