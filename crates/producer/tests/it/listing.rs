//! `GET /v1/jobs` filters: kind, status, error class, creation time (RFC 3339), combined, and
//! pages with a stable cursor under a filter.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, SecondsFormat, Utc};
use longhaul_core::{ErrorClass, JobId, JobRecord, Lease, TenantId};
use longhaul_store::AttemptFailure;
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::summary_input;

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

/// The ids of a listing's jobs, in order.
fn ids(r: &Reply) -> Vec<String> {
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["job_id"].as_str().expect("id").to_owned())
        .collect()
}

/// A time as a query value: RFC 3339, percent-encoded.
fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true).replace('+', "%2B").replace(':', "%3A")
}

/// Submits a job, then waits until the store's clock has moved past its creation, so the next
/// job is created strictly later.
async fn submitted(t: &TestApp, kind: &str, input: Value) -> JobRecord {
    let r = t.submit(kind, input, &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let record: JobRecord = serde_json::from_value(r.json).expect("a job record");
    wait_until(Duration::from_secs(2), "the clock to move on", async || {
        if longhaul_store::now() > record.created_at { Ok(()) } else { Err(record.created_at) }
    })
    .await;
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_are_listed_by_kind_status_error_class_and_creation_time() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let tenant = TenantId::parse("acme").expect("tenant");
        t.ticket(&t.key, "T-1").await;
        t.ticket(&t.key, "T-2").await;
        let lease = |n: u8| Lease { entry: format!("0-{n}"), delivery: 1 };

        // a: triage, queued.
        let a = submitted(&t, "triage", json!({"ticket_id": "T-1", "revision": 1})).await;
        // b: summarize, failed as invalid before it ran.
        let b = submitted(&t, "summarize", summary_input("doc-b", "Beta.")).await;
        let failure = AttemptFailure::new(1, ErrorClass::Invalid, "bad document");
        t.db.fail(&tenant, &b.job_id, failure).await.expect("fail").applied().expect("failed");
        // c: summarize, queued for a retry after a retryable failure.
        let c = submitted(&t, "summarize", summary_input("doc-c", "Gamma.")).await;
        t.db.start_next(&tenant, &c.job_id, lease(1), 1).await.expect("start").applied().expect("started");
        let failure = AttemptFailure::new(1, ErrorClass::Retryable, "provider 503");
        let due = Utc::now() + chrono::Duration::hours(1);
        t.db.schedule_retry(&tenant, &c.job_id, failure, due).await.expect("retry").applied().expect("retry");
        // d: summarize, completed.
        let d = submitted(&t, "summarize", summary_input("doc-d", "Delta.")).await;
        t.db.start_next(&tenant, &d.job_id, lease(2), 1).await.expect("start").applied().expect("started");
        t.db.complete(&tenant, &d.job_id, 1, &json!({"summary": "D"})).await.expect("complete");
        // e: triage, queued.
        let e = submitted(&t, "triage", json!({"ticket_id": "T-2", "revision": 1})).await;

        let list = async |query: &str| {
            ids(&t.call(Method::GET, &format!("/v1/jobs?{query}"), Some(&t.key), None).await)
        };
        let want = |jobs: &[&JobRecord]| jobs.iter().map(|j| j.job_id.to_string()).collect::<Vec<_>>();
        assert_eq!(list("").await, want(&[&e, &d, &c, &b, &a]), "newest first");
        assert_eq!(list("kind=summarize").await, want(&[&d, &c, &b]));
        assert_eq!(list("kind=triage").await, want(&[&e, &a]));
        assert_eq!(list("kind=enrich-contact").await, want(&[]), "a kind with no jobs");
        assert_eq!(list("status=queued").await, want(&[&e, &c, &a]));
        assert_eq!(list("status=failed").await, want(&[&b]));
        assert_eq!(list("status=completed").await, want(&[&d]));
        assert_eq!(list("status=running").await, want(&[]));
        assert_eq!(list("error_class=invalid").await, want(&[&b]));
        assert_eq!(list("error_class=retryable").await, want(&[&c]));
        assert_eq!(list("error_class=alert").await, want(&[]));
        // Creation time: `created_after` is inclusive, `created_before` exclusive.
        assert_eq!(list(&format!("created_after={}", time(c.created_at))).await, want(&[&e, &d, &c]));
        assert_eq!(list(&format!("created_before={}", time(c.created_at))).await, want(&[&b, &a]));
        let window = format!("created_after={}&created_before={}", time(b.created_at), time(d.created_at));
        assert_eq!(list(&window).await, want(&[&c, &b]));
        // The same instant at another offset.
        let plus_two = c.created_at.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).expect("offset"));
        let query = format!(
            "created_after={}",
            plus_two.to_rfc3339_opts(SecondsFormat::AutoSi, true).replace('+', "%2B")
        );
        assert_eq!(list(&query).await, want(&[&e, &d, &c]), "{query}");
        // Combined.
        assert_eq!(list("kind=summarize&status=queued").await, want(&[&c]));
        assert_eq!(list("kind=triage&status=failed").await, want(&[]));
        let all = format!(
            "kind=summarize&status=queued&error_class=retryable&created_after={}",
            time(a.created_at)
        );
        assert_eq!(list(&all).await, want(&[&c]));
        assert_eq!(list(&format!("kind=summarize&created_after={}", time(d.created_at))).await, want(&[&d]));
        // Empty values are no filter.
        assert_eq!(list("kind=&status=&error_class=&created_after=&created_before=").await.len(), 5);

        // The listing shows what the records hold.
        let r = t.call(Method::GET, "/v1/jobs?error_class=retryable", Some(&t.key), None).await;
        let job = &r.json["jobs"][0];
        assert_eq!(
            (&job["kind"], &job["status"], &job["error_class"]),
            (&json!("summarize"), &json!("queued"), &json!("retryable"))
        );
        assert_eq!(job["input"], summary_input("doc-c", "Gamma."));

        // Bad values: 400 naming each field.
        for (query, fields) in [
            ("created_after=yesterday", vec!["created_after"]),
            ("created_before=2024-13-01T00%3A00%3A00Z", vec!["created_before"]),
            ("created_after=2024-01-01", vec!["created_after"]),
            // An unencoded `+` is a space in a query string.
            ("created_after=2024-01-01T00:00:00+02:00", vec!["created_after"]),
            ("kind=bad%20kind", vec!["kind"]),
            ("status=done", vec!["status"]),
            ("error_class=fatal", vec!["error_class"]),
            (
                "status=x&error_class=y&created_after=z&created_before=w",
                vec!["status", "error_class", "created_after", "created_before"],
            ),
        ] {
            let r = t.call(Method::GET, &format!("/v1/jobs?{query}"), Some(&t.key), None).await;
            let p = problem(&r, StatusCode::BAD_REQUEST);
            let got: Vec<_> = p["errors"]
                .as_array()
                .expect("errors")
                .iter()
                .map(|e| e["field"].as_str().expect("field"))
                .collect();
            assert_eq!(got, fields, "{query}: {p}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_filtered_listing_pages_with_a_stable_cursor() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        t.ticket(&t.key, "T-1").await;
        let mut summaries = Vec::new();
        for i in 0..5 {
            summaries
                .push(submitted(&t, "summarize", summary_input(&format!("doc-{i}"), "Text.")).await.job_id);
            if i == 2 {
                submitted(&t, "triage", json!({"ticket_id": "T-1", "revision": 1})).await;
            }
        }
        summaries.reverse(); // newest first
        let page = async |query: String| {
            let r = t.call(Method::GET, &format!("/v1/jobs?{query}"), Some(&t.key), None).await;
            let cursor = r.json["next_cursor"].as_str().map(str::to_owned);
            (ids(&r), cursor)
        };
        let (first, cursor) = page("kind=summarize&limit=2".into()).await;
        assert_eq!(first, summaries[..2].iter().map(JobId::to_string).collect::<Vec<_>>());
        let cursor = cursor.expect("a next page");
        // Jobs created meanwhile do not shift the pages that follow.
        submitted(&t, "summarize", summary_input("doc-new", "Newer.")).await;
        let (second, cursor) = page(format!("kind=summarize&limit=2&cursor={cursor}")).await;
        assert_eq!(second, summaries[2..4].iter().map(JobId::to_string).collect::<Vec<_>>());
        let (third, cursor) =
            page(format!("kind=summarize&limit=2&cursor={}", cursor.expect("a next page"))).await;
        assert_eq!(third, summaries[4..].iter().map(JobId::to_string).collect::<Vec<_>>());
        assert_eq!(cursor, None, "the last page");
        // A fresh first page starts with the new job.
        let (fresh, _) = page("kind=summarize&limit=2".into()).await;
        assert_ne!(fresh[0], summaries[0].to_string());
        assert_eq!(fresh[1], summaries[0].to_string());
        // A cursor the API did not issue.
        for cursor in ["0", "-1", "abc", "99999999999999999999999"] {
            let r = t
                .call(Method::GET, &format!("/v1/jobs?kind=summarize&cursor={cursor}"), Some(&t.key), None)
                .await;
            problem(&r, StatusCode::BAD_REQUEST);
        }
    })
    .await;
}
