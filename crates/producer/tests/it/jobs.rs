//! `POST /v1/jobs`: a job of any registered kind, validated against its kind (422 naming the
//! field, nothing written), recorded, then enqueued into its kind's queue; stable ids from the
//! kind's key or the client's `Idempotency-Key`; concurrent submissions of one job.

use axum::http::{Method, StatusCode};
use longhaul_core::kind::{JobKey, JobKind as _};
use longhaul_core::{IdempotencyKey, JobId, TenantId, TicketId};
use longhaul_summarize::{Summarize, SummarizeInput};
use serde_json::{Value, json};

use crate::harness::*;

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// A summarize input for document `doc` with `text`.
pub fn summary_input(doc: &str, text: &str) -> Value {
    json!({"document_id": doc, "text": text})
}

/// The id the summarize kind derives for `input` (document id and the text's hash) of `acme`.
pub fn summarize_id(input: &Value) -> JobId {
    let typed: SummarizeInput = serde_json::from_value(input.clone()).expect("a summarize input");
    let key = Summarize::key(&typed).expect("summarize derives its key");
    JobId::derive(&acme(), "summarize", &JobKey::Derived(key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_each_kind_is_recorded_then_enqueued_into_its_kinds_queue() {
    both(async |backend| {
        let t = TestApp::new(backend).await;

        // summarize: 202 with the record and its Location; the entry is in the summarize stream.
        let input = json!({"document_id": "doc-1", "text": "The order shipped late. The customer wants a refund.", "chunk_chars": 500});
        let first = t.submit("summarize", input.clone(), &[]).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        let job = &first.json;
        let id = summarize_id(&input);
        assert_eq!(job["job_id"], id.as_str(), "the id derives from the document and its text");
        assert_eq!((&job["kind"], &job["input"], &job["status"]), (&json!("summarize"), &input, &json!("queued")));
        assert_eq!(job["tenant_id"], "acme");
        assert!(job["key"].as_str().is_some_and(|k| k.starts_with("doc-1:") && k.len() == "doc-1:".len() + 64));
        assert_eq!(job["max_attempts"], longhaul_summarize::kind::MAX_ATTEMPTS, "the kind's own allowance");
        assert_eq!((&job["attempts"], &job["progress"]), (&json!(0), &json!(0)));
        let location = format!("/v1/jobs/{id}");
        assert_eq!(first.headers.get("location").and_then(|v| v.to_str().ok()), Some(location.as_str()));
        let read = t.call(Method::GET, &location, Some(&t.key), None).await;
        assert_eq!((read.status, &read.json), (StatusCode::OK, job));
        assert_eq!((t.summarize_len().await, t.stream_len().await), (1, 0));
        assert!(t.summarize.has_trace(&id).await.expect("trace"));

        // The same submission again: 200, the same job, no second entry.
        let again = t.submit("summarize", input.clone(), &[]).await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(again.json, first.json);
        assert_eq!(again.headers.get("location").and_then(|v| v.to_str().ok()), Some(location.as_str()));
        // Another text of the same document is another job.
        let edited = t.submit("summarize", summary_input("doc-1", "The order shipped on time."), &[]).await;
        assert_eq!(edited.status, StatusCode::ACCEPTED, "{edited:?}");
        assert_ne!(edited.json["job_id"], first.json["job_id"]);
        assert_eq!(t.summarize_len().await, 2);

        // triage: the same ids as the ticket route; the entry is in the triage stream.
        t.ticket(&t.key, "T-1").await;
        let input = json!({"ticket_id": "T-1", "revision": 1});
        let triage = t.submit("triage", input.clone(), &[]).await;
        assert_eq!(triage.status, StatusCode::ACCEPTED, "{triage:?}");
        let id = longhaul_triage::job_id_for_ticket(&acme(), &TicketId::parse("T-1").expect("ticket"), 1);
        assert_eq!(triage.json["job_id"], id.as_str());
        assert_eq!((&triage.json["kind"], &triage.json["input"]), (&json!("triage"), &input));
        assert_eq!((&triage.json["key"], &triage.json["max_attempts"]), (&json!("T-1@1"), &json!(5)));
        assert_eq!(
            triage.headers.get("location").and_then(|v| v.to_str().ok()),
            Some(format!("/v1/jobs/{id}").as_str())
        );
        let again = t.submit("triage", input, &[]).await;
        assert_eq!((again.status, &again.json["job_id"]), (StatusCode::OK, &json!(id.as_str())));
        let by_ticket = t.call(Method::POST, "/v1/tickets/T-1/triage", Some(&t.key), None).await;
        assert_eq!((by_ticket.status, &by_ticket.json["job_id"]), (StatusCode::OK, &json!(id.as_str())));
        assert_eq!((t.stream_len().await, t.summarize_len().await), (1, 2), "one entry per job, in its kind's queue");
        assert!(t.queue.has_trace(&id).await.expect("trace"));
        assert_eq!(t.job_rows().await, 3);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_invalid_submission_is_refused_naming_the_field_and_writes_nothing() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let doc = |extra: Value| {
            let mut input = json!({"document_id": "doc-1", "text": "Some text."});
            input.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            input
        };
        let cases = [
            ("translate", doc(json!({})), "kind"),
            ("", doc(json!({})), "kind"),
            ("triage", json!({"ticket_id": "T-1", "revision": "one"}), "input.revision"),
            ("triage", json!({"ticket_id": "T-1", "revision": -1}), "input.revision"),
            ("triage", json!({"ticket_id": "T-1", "revision": 0}), "input.revision"),
            ("triage", json!({"ticket_id": "bad id", "revision": 1}), "input.ticket_id"),
            ("triage", json!({"ticket_id": "T-\u{0}1", "revision": 1}), "input.ticket_id"),
            ("summarize", doc(json!({"extra": true})), "input.extra"),
            ("summarize", doc(json!({"text": ""})), "input.text"),
            ("summarize", doc(json!({"text": " \n\t "})), "input.text"),
            ("summarize", doc(json!({"text": 7})), "input.text"),
            ("summarize", doc(json!({"text": "a\u{0}b"})), "input.text"),
            ("summarize", doc(json!({"document_id": "doc 1"})), "input.document_id"),
            ("summarize", doc(json!({"chunk_chars": 10})), "input.chunk_chars"),
            // Where results go is the tenant's configuration: an input naming a URL is refused,
            // whatever the URL.
            ("summarize", doc(json!({"webhook_url": "https://hooks.example.com/x"})), "input.webhook_url"),
            ("summarize", doc(json!({"webhook_url": "http://169.254.169.254/latest"})), "input.webhook_url"),
            ("summarize", doc(json!({"webhook_url": "http://example.com/a\u{0}b"})), "input.webhook_url"),
            ("summarize", doc(json!({"webhook_url": null})), "input.webhook_url"),
            ("summarize", json!("just text"), "input"),
            ("summarize", json!(null), "input"),
        ];
        for (kind, input, field) in cases {
            let r = t.submit(kind, input.clone(), &[]).await;
            let p = problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(p["retryable"], false);
            assert_eq!(p["errors"][0]["field"], field, "{kind} {input}: {p}");
            assert!(p["errors"][0]["message"].as_str().is_some_and(|m| !m.is_empty()), "{p}");
            // (An unknown field is refused as such before its value is looked at.)
            if kind == "summarize" && field != "input.webhook_url" && input.to_string().contains("\\u0000") {
                assert!(p["errors"][0]["message"].as_str().is_some_and(|m| m.contains("NUL")), "{p}");
            }
        }
        // A malformed body (not the job's values) is a 400.
        for body in [
            json!({"input": {}}),
            json!({"kind": "summarize"}),
            json!({"kind": 5, "input": {}}),
            json!({"kind": "summarize", "input": doc(json!({})), "urgency": "high"}),
            json!([{"kind": "summarize"}]),
        ] {
            let r = t.call(Method::POST, "/v1/jobs", Some(&t.key), Some(body.clone())).await;
            assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["retryable"], false, "{body}");
        }
        // The key goes in the header on a single submit.
        let body = json!({"kind": "summarize", "input": doc(json!({})), "idempotency_key": "k-1"});
        let r = t.call(Method::POST, "/v1/jobs", Some(&t.key), Some(body)).await;
        assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["errors"][0]["field"], "idempotency_key");
        let r = t.submit("summarize", doc(json!({})), &[("idempotency-key", "has space")]).await;
        assert_eq!(problem(&r, StatusCode::BAD_REQUEST)["errors"][0]["field"], "Idempotency-Key");
        let r = t
            .call(Method::POST, "/v1/jobs", None, Some(json!({"kind": "summarize", "input": doc(json!({}))})))
            .await;
        problem(&r, StatusCode::UNAUTHORIZED);

        assert_eq!(t.job_rows().await, 0, "no record");
        assert_eq!((t.stream_len().await, t.summarize_len().await), (0, 0), "no queue entry");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_names_one_request() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let key = [("idempotency-key", "req-7f3c")];
        let input = summary_input("doc-1", "First text.");
        let first = t.submit("summarize", input.clone(), &key).await;
        assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
        let client = JobKey::Client(IdempotencyKey::parse("req-7f3c").expect("key"));
        let id = JobId::derive(&acme(), "summarize", &client);
        assert_eq!((&first.json["job_id"], &first.json["key"]), (&json!(id.as_str()), &json!("req-7f3c")));
        assert_ne!(id, summarize_id(&input), "the client's key names the job, not the derived one");

        // Same key, same body: the same job.
        let again = t.submit("summarize", input.clone(), &key).await;
        assert_eq!((again.status, &again.json), (StatusCode::OK, &first.json));

        // Same key, other input: refused, naming the header; nothing written or enqueued.
        let other = t.submit("summarize", summary_input("doc-1", "Second text."), &key).await;
        let p = problem(&other, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!((&p["errors"][0]["field"], &p["retryable"]), (&json!("Idempotency-Key"), &json!(false)));
        let other = t.submit("summarize", json!({"document_id": "doc-2", "text": "First text."}), &key).await;
        assert_eq!(
            problem(&other, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"],
            "Idempotency-Key"
        );
        assert_eq!(t.job_rows().await, 1);
        assert_eq!(t.summarize_len().await, 1);
        let stored = t.call(Method::GET, &format!("/v1/jobs/{id}"), Some(&t.key), None).await;
        assert_eq!(stored.json["input"], input, "the first request's input is kept");

        // A key is the tenant's own: another tenant's same key is another job.
        let globex = t.key_for("globex").await;
        let body = json!({"kind": "summarize", "input": summary_input("doc-1", "Second text.")});
        let theirs = call(&t.router, Method::POST, "/v1/jobs", Some(&globex), Some(body), &key).await;
        assert_eq!(theirs.status, StatusCode::ACCEPTED, "{theirs:?}");
        assert_ne!(theirs.json["job_id"], first.json["job_id"]);
        assert_eq!(t.summarize_len().await, 2);
    })
    .await;
}

/// Concurrent submissions of one job: one record, one entry, one `202`; under one key with
/// different inputs, exactly one input wins and the others are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_of_one_job_make_one_record_and_one_entry() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let input = summary_input("doc-1", "One text, submitted fifty times at once.");
        let replies =
            futures::future::join_all((0..50).map(|_| t.submit("summarize", input.clone(), &[]))).await;
        let statuses: Vec<_> = replies.iter().map(|r| r.status).collect();
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count(), 1, "{statuses:?}");
        assert_eq!(statuses.iter().filter(|s| **s == StatusCode::OK).count(), 49, "{statuses:?}");
        assert!(replies.iter().all(|r| r.json["job_id"] == summarize_id(&input).as_str()));
        assert_eq!((t.job_rows().await, t.summarize_len().await), (1, 1));

        // Ten inputs, five copies each, all under one key.
        let key = [("idempotency-key", "race")];
        let calls = (0..50)
            .map(|i| t.submit("summarize", summary_input("doc-2", &format!("Text {}.", i % 10)), &key));
        let replies = futures::future::join_all(calls).await;
        let accepted: Vec<_> = replies.iter().filter(|r| r.status == StatusCode::ACCEPTED).collect();
        assert_eq!(accepted.len(), 1, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
        let winner = accepted[0].json.clone();
        for r in &replies {
            if r.json["job_id"] == winner["job_id"] {
                assert_eq!(r.json["input"], winner["input"], "{r:?}");
                assert!(matches!(r.status, StatusCode::ACCEPTED | StatusCode::OK));
            } else {
                assert_eq!(
                    problem(r, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"],
                    "Idempotency-Key"
                );
            }
        }
        assert_eq!(replies.iter().filter(|r| r.status == StatusCode::OK).count(), 4, "the winner's copies");
        assert_eq!((t.job_rows().await, t.summarize_len().await), (2, 2));
    })
    .await;
}

/// A kind that checks nothing: any note text, NUL included, passes its own validation.
struct Note;

impl longhaul_core::kind::JobKind for Note {
    const NAME: &'static str = "note";
    type Input = Value;
    type Output = Value;

    fn options() -> longhaul_core::kind::KindOptions {
        const STAGES: &[longhaul_core::kind::Stage] = &[longhaul_core::kind::Stage::new("write", 1)];
        longhaul_core::kind::KindOptions::new("notes", STAGES)
    }
}

/// A NUL that a kind's own checks let through is still refused, on both backends: PostgreSQL
/// cannot store it, and SQLite is held to the same rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_a_kind_lets_through_is_still_refused() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let registry = longhaul_producer::startup::builtin()
            .and_then(|r| r.kind::<Note>())
            .expect("the shipped kinds and the note kind");
        let args = [
            "serve",
            "--database-url",
            &t.db.url,
            "--redis-url",
            &t.queue.url,
            "--queue-prefix",
            &t.queue.prefix,
            "--listen",
            "127.0.0.1:0",
        ];
        let config =
            <longhaul_producer::startup::Config as clap::Parser>::try_parse_from(args).expect("flags");
        let app = longhaul_producer::startup::Application::build(config, registry).await.expect("build");
        let router = app.router();
        let submit = async |input: Value| {
            let body = json!({"kind": "note", "input": input});
            call(&router, Method::POST, "/v1/jobs", Some(&t.key), Some(body), &[]).await
        };
        let r = submit(json!({"lines": ["fine", "a\u{0}b"]})).await;
        let p = problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(p["errors"][0]["field"], "input.lines[1]", "{p}");
        assert!(p["errors"][0]["message"].as_str().is_some_and(|m| m.contains("NUL")), "{p}");
        assert_eq!(t.job_rows().await, 0, "no record");
        // The same note without the NUL is recorded.
        let r = submit(json!({"lines": ["fine", "ab"]})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!(t.job_rows().await, 1);
    })
    .await;
}

/// A job's body may be far larger than other routes' (a document), up to its own limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_job_route_takes_bodies_up_to_its_own_limit() {
    let t = TestApp::new(Backend::Postgres).await;
    let text = "word. ".repeat(longhaul_summarize::kind::MAX_TEXT_BYTES / 6);
    assert!(text.len() > 10 * longhaul_producer::MAX_BODY_BYTES);
    let input = json!({"document_id": "big", "text": text, "chunk_chars": 16_000});
    let r = t.submit("summarize", input, &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.json["errors"]);
    assert_eq!(r.json["input"]["text"].as_str().map(str::len), Some(text.len()));
    // Over the text's own limit: 422 on the field.
    let over = "a".repeat(longhaul_summarize::kind::MAX_TEXT_BYTES + 1);
    let r =
        t.submit("summarize", json!({"document_id": "over", "text": over, "chunk_chars": 16_000}), &[]).await;
    assert_eq!(problem(&r, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "input.text");
    // Over the route's limit: 413.
    let huge = "a".repeat(longhaul_producer::MAX_JOB_BODY_BYTES);
    let r = t.submit("summarize", summary_input("huge", &huge), &[]).await;
    assert_eq!(problem(&r, StatusCode::PAYLOAD_TOO_LARGE)["retryable"], false);
    assert_eq!((t.job_rows().await, t.summarize_len().await), (1, 1));
}
