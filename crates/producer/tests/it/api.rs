//! The API: validation before enqueueing, stable job ids, auth and tenancy, listing.

use axum::http::{Method, StatusCode};
use longhaul_core::{JobStatus, TenantId, TicketId};
use longhaul_store::JobFilter;
use serde_json::json;

use crate::harness::*;

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_input_is_rejected_before_anything_is_written() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let cases = [
            (json!({"ticket_id": "bad id", "subject": "s"}), StatusCode::UNPROCESSABLE_ENTITY, "ticket_id"),
            (json!({"ticket_id": "T-1", "subject": "  "}), StatusCode::UNPROCESSABLE_ENTITY, "subject"),
            (
                json!({"ticket_id": "T-1", "subject": "x".repeat(501)}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "subject",
            ),
            (
                json!({"ticket_id": "T-1", "subject": "s", "body": "b".repeat(32_769)}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "body",
            ),
            // PostgreSQL cannot store NUL; refused on both backends, naming the field.
            (json!({"ticket_id": "T-1", "subject": "a\u{0}b"}), StatusCode::UNPROCESSABLE_ENTITY, "subject"),
            (
                json!({"ticket_id": "T-1", "subject": "s", "body": "\u{0}"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "body",
            ),
            (json!({"ticket_id": "T-1"}), StatusCode::BAD_REQUEST, ""),
            (json!({"ticket_id": "T-1", "subject": "s", "priority": "high"}), StatusCode::BAD_REQUEST, ""),
            (json!(["not", "an", "object"]), StatusCode::BAD_REQUEST, ""),
        ];
        for (body, status, field) in cases {
            let r = t.call(Method::POST, "/v1/tickets", Some(&t.key), Some(body.clone())).await;
            let p = problem(&r, status);
            assert_eq!(p["retryable"], false);
            if !field.is_empty() {
                assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
            }
        }
        let huge = json!({"ticket_id": "T-1", "subject": "s", "body": "b".repeat(70_000)});
        problem(
            &t.call(Method::POST, "/v1/tickets", Some(&t.key), Some(huge)).await,
            StatusCode::PAYLOAD_TOO_LARGE,
        );

        // Triage requests with bad input: nothing recorded, nothing enqueued.
        let r = t.call(Method::POST, "/v1/tickets/bad%20id/triage", Some(&t.key), None).await;
        assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["errors"][0]["field"], "ticket_id");
        let r = t.call(Method::POST, "/v1/tickets/T-404/triage", Some(&t.key), None).await;
        problem(&r, StatusCode::NOT_FOUND);
        t.ticket(&t.key, "T-1").await;
        let r = call(
            &t.router,
            Method::POST,
            "/v1/tickets/T-1/triage",
            Some(&t.key),
            None,
            &[("idempotency-key", "has space")],
        )
        .await;
        assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["errors"][0]["field"], "Idempotency-Key");
        assert_eq!(t.job_rows().await, 0, "no record");
        assert_eq!(t.stream_len().await, 0, "no queue entry");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_requests_share_one_job_record_and_entry() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        t.ticket(&t.key, "T-1").await;
        let first = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        assert_eq!(first.json["status"], "queued");
        assert_eq!(first.json["kind"], "triage");
        assert_eq!(first.json["input"], json!({"ticket_id": "T-1", "revision": 1}));
        let job_id = first.json["job_id"].as_str().expect("job id").to_owned();
        let expected = longhaul_triage::job_id_for_ticket(
            &TenantId::parse("acme").expect("t"),
            &TicketId::parse("T-1").expect("t"),
            1,
        );
        assert_eq!(job_id, expected.as_str(), "stable id from (tenant, ticket, revision)");
        assert_eq!(
            first.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("/v1/jobs/{job_id}").as_str())
        );
        let again = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.json["job_id"], job_id.as_str());

        // 50 concurrent duplicates of a new revision.
        t.ticket(&t.key, "T-1").await; // revision 2
        let calls =
            (0..50).map(|_| call(&t.router, Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None, &[]));
        let replies = futures::future::join_all(calls).await;
        let accepted = replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).count();
        let ok = replies.iter().filter(|r| r.status == StatusCode::OK).count();
        assert_eq!((accepted, ok), (1, 49));
        let ids: std::collections::HashSet<_> =
            replies.iter().map(|r| r.json["job_id"].as_str().expect("id").to_owned()).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(t.jobs(&JobFilter::default()).await.len(), 2, "one record per revision");
        assert_eq!(t.stream_len().await, 2, "one entry per record");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idempotency_keys_name_jobs() {
    let t = TestApp::new(Backend::Postgres).await;
    t.ticket(&t.key, "T-1").await;
    t.ticket(&t.key, "T-2").await;
    let headers = [("idempotency-key", "req-7f3c")];
    let a = call(&t.router, Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None, &headers).await;
    let b = call(&t.router, Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None, &headers).await;
    assert_eq!((a.status, b.status), (StatusCode::ACCEPTED, StatusCode::OK));
    assert_eq!(a.json["job_id"], b.json["job_id"]);
    let reused = call(&t.router, Method::POST, "/v1/tickets/T-2/triage", Some(&t.key), None, &headers).await;
    assert_eq!(problem(&reused, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(t.stream_len().await, 1);
    assert_eq!(t.job_rows().await, 1, "nothing written for the refused request");
    // The keyed job is a triage job of the first ticket.
    let tenant = TenantId::parse("acme").expect("tenant");
    let key = longhaul_core::IdempotencyKey::parse("req-7f3c").expect("key");
    assert_eq!(a.json["job_id"], longhaul_core::JobId::for_idempotency_key(&tenant, &key).as_str());
    assert_eq!((&a.json["kind"], &a.json["key"]), (&json!("triage"), &json!("req-7f3c")));
    assert_eq!(a.json["input"], json!({"ticket_id": "T-1", "revision": 1}));
    // The ticket moves on: a repeat under the key is still the request it first made.
    t.ticket(&t.key, "T-1").await; // revision 2
    let later = call(&t.router, Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None, &headers).await;
    assert_eq!((later.status, &later.json["job_id"]), (StatusCode::OK, &a.json["job_id"]), "{later:?}");
    assert_eq!(later.json["input"]["revision"], 1);
    assert_eq!((t.job_rows().await, t.stream_len().await), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn auth_and_tenant_isolation() {
    let t = TestApp::new(Backend::Postgres).await;
    let other = t.key_for("globex").await;
    t.ticket(&t.key, "T-1").await;
    let job = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
    let job_id = job.json["job_id"].as_str().expect("id").to_owned();

    for key in [None, Some("lh_wrong"), Some("")] {
        let r = t.call(Method::GET, &format!("/v1/jobs/{job_id}"), key, None).await;
        problem(&r, StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    // Another tenant's job and ticket look exactly like missing ones.
    let theirs = t.call(Method::GET, &format!("/v1/jobs/{job_id}"), Some(&other), None).await;
    let missing =
        t.call(Method::GET, "/v1/jobs/job_00000000000000000000000000000000", Some(&other), None).await;
    assert_eq!(problem(&theirs, StatusCode::NOT_FOUND), problem(&missing, StatusCode::NOT_FOUND));
    problem(&t.call(Method::GET, "/v1/tickets/T-1", Some(&other), None).await, StatusCode::NOT_FOUND);
    problem(&t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&other), None).await, StatusCode::NOT_FOUND);
    let list = t.call(Method::GET, "/v1/jobs", Some(&other), None).await;
    assert_eq!(list.json["jobs"], json!([]));
    // The owner sees it.
    let mine = t.call(Method::GET, &format!("/v1/jobs/{job_id}"), Some(&t.key), None).await;
    assert_eq!((mine.status, mine.json["status"].clone()), (StatusCode::OK, json!("queued")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn listing_pages_filters_and_validates() {
    let t = TestApp::new(Backend::Sqlite).await;
    for i in 0..5 {
        t.ticket(&t.key, &format!("T-{i}")).await;
        assert_eq!(
            t.call(Method::POST, &format!("/v1/tickets/T-{i}/triage"), Some(&t.key), None).await.status,
            StatusCode::ACCEPTED
        );
    }
    let first = t.call(Method::GET, "/v1/jobs?limit=2", Some(&t.key), None).await;
    assert_eq!(first.json["jobs"].as_array().expect("jobs").len(), 2);
    assert_eq!(first.json["jobs"][0]["input"]["ticket_id"], "T-4", "newest first");
    let cursor = first.json["next_cursor"].as_str().expect("cursor").to_owned();
    let second = t.call(Method::GET, &format!("/v1/jobs?limit=2&cursor={cursor}"), Some(&t.key), None).await;
    assert_eq!(second.json["jobs"][0]["input"]["ticket_id"], "T-2");
    let queued = t.call(Method::GET, "/v1/jobs?status=queued&limit=100", Some(&t.key), None).await;
    assert_eq!(queued.json["jobs"].as_array().expect("jobs").len(), 5);
    assert_eq!(queued.json["next_cursor"], json!(null));
    for (query, field) in [
        ("status=done", "status"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=x", "limit"),
        ("cursor=abc", "cursor"),
    ] {
        let r = t.call(Method::GET, &format!("/v1/jobs?{query}"), Some(&t.key), None).await;
        assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["errors"][0]["field"], field, "{query}");
    }
    problem(&t.call(Method::GET, "/v1/jobs?colour=red", Some(&t.key), None).await, StatusCode::BAD_REQUEST);
    problem(&t.call(Method::GET, "/v2/nothing", Some(&t.key), None).await, StatusCode::NOT_FOUND);
    let status = JobStatus::Queued;
    assert_eq!(queued.json["jobs"][0]["status"], status.as_str());
}

/// The application as `producer serve` runs it: built from flags, serving on its own port until
/// the shutdown token, new jobs getting `--default-max-attempts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_api_answers_over_real_tcp() {
    let t = TestApp::new(Backend::Postgres).await;
    let app = build(&t.db, &t.queue.url, &t.queue.prefix, &["--default-max-attempts", "3"]).await;
    let addr = app.local_addr().expect("addr");
    let stop = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(app.run_until_stopped(stop.clone()));
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    let health = client.get(format!("{base}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{base}/readyz")).send().await.expect("readyz");
    assert_eq!(ready.status(), 200);
    let created = client
        .post(format!("{base}/v1/tickets"))
        .bearer_auth(&t.key)
        .json(&json!({"ticket_id": "T-tcp", "subject": "Login broken", "body": "Locked out"}))
        .send()
        .await
        .expect("create ticket");
    assert_eq!(created.status(), 201);
    let job = client
        .post(format!("{base}/v1/tickets/T-tcp/triage"))
        .bearer_auth(&t.key)
        .send()
        .await
        .expect("triage");
    assert_eq!(job.status(), 202);
    let body: serde_json::Value = job.json().await.expect("json");
    assert_eq!(body["status"], "queued");
    assert_eq!(body["max_attempts"], 3, "{body}");
    stop.cancel();
    server.await.expect("server task").expect("a clean stop");
}
