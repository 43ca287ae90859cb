//! `POST /v1/jobs/batch`: each item validated, recorded and enqueued on its own (one bad item does
//! not reject the others), answered in order; idempotent per item; bounded in items and bytes.

use axum::http::{Method, StatusCode};
use longhaul_producer::{MAX_BATCH_BODY_BYTES, MAX_BATCH_JOBS};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::{summarize_id, summary_input};

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

async fn batch(t: &TestApp, jobs: Value) -> Reply {
    t.call(Method::POST, "/v1/jobs/batch", Some(&t.key), Some(json!({ "jobs": jobs }))).await
}

fn statuses(r: &Reply) -> Vec<u64> {
    r.json["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|i| i["status"].as_u64().expect("status"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_mixed_batch_is_answered_item_by_item_and_resubmits_idempotently() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        t.ticket(&t.key, "T-1").await;
        let a = summary_input("doc-a", "Alpha text.");
        let b = summary_input("doc-b", "Beta text.");
        let jobs = json!([
            {"kind": "summarize", "input": a},
            {"kind": "translate", "input": {}},
            {"kind": "triage", "input": {"ticket_id": "T-1", "revision": 1}},
            {"kind": "summarize", "input": {"document_id": "doc-c", "text": ""}},
            {"kind": "summarize", "input": a, "idempotency_key": "has space"},
            {"kind": "summarize", "input": b, "idempotency_key": "k-1"},
            {"kind": "summarize", "input": {"document_id": "doc-d", "text": "x", "extra": 1}},
        ]);
        let first = batch(&t, jobs.clone()).await;
        assert_eq!(first.status, StatusCode::OK, "{first:?}");
        assert_eq!(statuses(&first), [202, 422, 202, 422, 422, 202, 422]);
        let results = first.json["results"].as_array().expect("results");
        let field = |i: usize| results[i]["error"]["errors"][0]["field"].clone();
        assert_eq!(
            [field(1), field(3), field(4), field(6)],
            [
                json!("jobs[1].kind"),
                json!("jobs[3].input.text"),
                json!("jobs[4].idempotency_key"),
                json!("jobs[6].input.extra")
            ]
        );
        for i in [1, 3, 4, 6] {
            assert!(results[i].get("job").is_none(), "{}", results[i]);
            assert_eq!(results[i]["error"]["status"], 422);
        }
        // The accepted items, in order, each with its record.
        assert_eq!((&results[0]["job"]["kind"], &results[0]["job"]["input"]), (&json!("summarize"), &a));
        assert_eq!(results[0]["job"]["job_id"], summarize_id(&a).as_str());
        assert_eq!(results[0]["job"]["status"], "queued");
        assert_eq!(results[2]["job"]["kind"], "triage");
        assert_eq!(results[2]["job"]["input"], json!({"ticket_id": "T-1", "revision": 1}));
        assert_eq!((&results[5]["job"]["input"], &results[5]["job"]["key"]), (&b, &json!("k-1")));
        assert!(results.iter().all(|r| r.get("error").is_none() || r.get("job").is_none()));
        assert_eq!(t.job_rows().await, 3);
        assert_eq!((t.summarize_len().await, t.stream_len().await), (2, 1));

        // The same batch again: the same jobs (200), the same refusals, nothing new.
        let again = batch(&t, jobs).await;
        assert_eq!(statuses(&again), [200, 422, 200, 422, 422, 200, 422]);
        for i in [0, 2, 5] {
            assert_eq!(again.json["results"][i]["job"], first.json["results"][i]["job"], "item {i}");
        }
        assert_eq!(t.job_rows().await, 3);
        assert_eq!((t.summarize_len().await, t.stream_len().await), (2, 1));

        // An item's key names the same job as the header does on a single submit.
        let single = t.submit("summarize", b.clone(), &[("idempotency-key", "k-1")]).await;
        assert_eq!((single.status, &single.json), (StatusCode::OK, &first.json["results"][5]["job"]));
        // The item's key with other input is refused on that item only.
        let reused = batch(&t, json!([
            {"kind": "summarize", "input": summary_input("doc-b", "Other text."), "idempotency_key": "k-1"},
            {"kind": "summarize", "input": summary_input("doc-e", "Epsilon text.")},
        ]))
        .await;
        assert_eq!(statuses(&reused), [422, 202]);
        let field =
            reused.json["results"][0]["error"]["errors"][0]["field"].as_str().expect("field").to_owned();
        assert!(field.to_ascii_lowercase().contains("idempotency"), "{field}");
        assert_eq!(t.job_rows().await, 4);
        assert_eq!(t.summarize_len().await, 3);
    })
    .await;
}

/// Two items of one job in one batch join the same group commit: one record, one entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_job_twice_in_a_batch_is_recorded_once() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let a = summary_input("doc-a", "Alpha text.");
        let r =
            batch(&t, json!([{"kind": "summarize", "input": a}, {"kind": "summarize", "input": a}])).await;
        let mut got = statuses(&r);
        got.sort_unstable();
        assert_eq!(got, [200, 202], "{r:?}");
        assert_eq!(r.json["results"][0]["job"]["job_id"], r.json["results"][1]["job"]["job_id"]);
        assert_eq!((t.job_rows().await, t.summarize_len().await), (1, 1));
    })
    .await;
}

/// Duplicates whose transaction loses its connection (a trigger ends its own backend at their
/// audit row) beside a new job: the new job is answered 202 and enqueued, each duplicate 503 with
/// `retryable`, and nothing is lost or doubled — the same batch sent again answers 200 for all
/// three, with one entry per job. The items usually share one store batch; however the batcher
/// splits them the answers are the same (the store's test pins the shared batch).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_duplicates_that_lose_their_connection_are_retryable_beside_a_new_job() {
    let t = TestApp::new(Backend::Postgres).await;
    let item = |doc: &str| json!({"kind": "summarize", "input": summary_input(doc, "Some text.")});
    let first = batch(&t, json!([item("doc-a"), item("doc-b")])).await;
    assert_eq!(statuses(&first), [202, 202], "{first:?}");
    t.db.cut_connections_at_audit("duplicate_enqueue", true).await;
    let jobs = json!([item("doc-a"), item("doc-c"), item("doc-b")]);
    let cut = batch(&t, jobs.clone()).await;
    assert_eq!(statuses(&cut), [503, 202, 503], "{cut:?}");
    for i in [0, 2] {
        assert_eq!(cut.json["results"][i]["error"]["retryable"], true, "{}", cut.json["results"][i]);
    }
    assert_eq!(cut.json["results"][1]["job"]["status"], "queued");
    assert_eq!((t.job_rows().await, t.summarize_len().await), (3, 3));

    t.db.cut_connections_at_audit("duplicate_enqueue", false).await;
    let again = batch(&t, jobs).await;
    assert_eq!(statuses(&again), [200, 200, 200], "{again:?}");
    assert_eq!(again.json["results"][1]["job"], cut.json["results"][1]["job"]);
    for i in [0, 1] {
        assert_eq!(again.json["results"][2 * i]["job"], first.json["results"][i]["job"], "item {}", 2 * i);
    }
    assert_eq!((t.job_rows().await, t.summarize_len().await), (3, 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_is_bounded_in_items_and_bytes() {
    let t = TestApp::new(Backend::Postgres).await;
    // No item, and one item too many: 422 on `jobs`.
    let p = problem(&batch(&t, json!([])).await, StatusCode::UNPROCESSABLE_ENTITY).clone();
    assert_eq!(p["errors"][0]["field"], "jobs");
    let many: Vec<Value> = (0..=MAX_BATCH_JOBS)
        .map(|i| json!({"kind": "summarize", "input": summary_input(&format!("doc-{i}"), "Text.")}))
        .collect();
    let p = problem(&batch(&t, Value::Array(many.clone())).await, StatusCode::UNPROCESSABLE_ENTITY).clone();
    assert_eq!(p["errors"][0]["field"], "jobs");
    assert_eq!((t.job_rows().await, t.summarize_len().await), (0, 0));
    // Malformed batches: 400.
    for body in [json!({}), json!({"jobs": {}}), json!({"jobs": [], "extra": 1})] {
        let r = t.call(Method::POST, "/v1/jobs/batch", Some(&t.key), Some(body.clone())).await;
        problem(&r, StatusCode::BAD_REQUEST);
    }

    // Over the byte limit: 413, nothing written.
    let text = "a".repeat(1 << 20);
    let n = MAX_BATCH_BODY_BYTES / text.len() + 1;
    let big: Vec<Value> = (0..n)
        .map(|i| json!({"kind": "summarize", "input": summary_input(&format!("doc-{i}"), &text)}))
        .collect();
    let r = batch(&t, Value::Array(big)).await;
    assert_eq!(problem(&r, StatusCode::PAYLOAD_TOO_LARGE)["retryable"], false);
    assert_eq!((t.job_rows().await, t.summarize_len().await), (0, 0));

    // The most items a batch may hold are taken, each recorded and enqueued once; the single
    // route's byte limit does not apply to a batch.
    let max = Value::Array(many[..MAX_BATCH_JOBS].to_vec());
    let r = batch(&t, max).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(statuses(&r).iter().all(|s| *s == 202), "{:?}", statuses(&r));
    assert_eq!(t.job_rows().await, MAX_BATCH_JOBS as i64);
    assert_eq!(t.summarize_len().await, MAX_BATCH_JOBS as u64);
    let under: Vec<Value> = (0..3)
        .map(|i| {
            let input = json!({"document_id": format!("big-{i}"), "text": text, "chunk_chars": 16_000});
            json!({"kind": "summarize", "input": input})
        })
        .collect();
    let r = batch(&t, Value::Array(under)).await;
    assert_eq!(statuses(&r), [202, 202, 202], "3 MiB is over a single job's limit, not a batch's");
}

/// A malformed item (not an object, no kind, an unknown field) is that item's `422`, named under
/// `jobs[i]`; a key reused with other input is refused on the item's own key field; the other items
/// are recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_malformed_item_is_refused_alone() {
    let t = TestApp::new(Backend::Sqlite).await;
    let a = summary_input("doc-a", "Alpha text.");
    let b = summary_input("doc-b", "Beta text.");
    let jobs = json!([
        null,
        {"input": a},
        {"kind": "summarize", "input": a, "urgency": "high"},
        {"kind": "summarize", "input": a, "idempotency_key": "k-1"},
        {"kind": "summarize", "input": b, "idempotency_key": "k-1"},
        {"kind": "summarize", "input": b},
    ]);
    let r = batch(&t, jobs).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let results = r.json["results"].as_array().expect("results");
    let field = |i: usize| results[i]["error"]["errors"][0]["field"].as_str().unwrap_or_default().to_owned();
    assert_eq!(statuses(&r)[..3], [422, 422, 422]);
    assert_eq!([field(0), field(2)], ["jobs[0]", "jobs[2].urgency"]);
    assert!(field(1).starts_with("jobs[1]"), "{}", field(1));
    // Items 3 and 4 race for key k-1 with different input: one wins, the other is refused on its
    // own key field.
    let mut keyed = [statuses(&r)[3], statuses(&r)[4]];
    keyed.sort_unstable();
    assert_eq!(keyed, [202, 422]);
    let loser = if statuses(&r)[3] == 422 { 3 } else { 4 };
    assert_eq!(field(loser), format!("jobs[{loser}].idempotency_key"));
    assert_eq!(statuses(&r)[5], 202);
    assert_eq!(t.job_rows().await, 2);
}

/// The same derived key from other input (summarize: the same document with another chunk size)
/// names a job that is not this request's: `422` on `input`, nothing written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_derived_key_from_other_input_is_refused() {
    let t = TestApp::new(Backend::Sqlite).await;
    let a = summary_input("doc-a", "Alpha text.");
    let mut other = a.clone();
    other["chunk_chars"] = json!(500);
    let jobs = |input: &Value| json!([{"kind": "summarize", "input": input}]);
    assert_eq!(statuses(&batch(&t, jobs(&a)).await), [202]);
    let r = batch(&t, jobs(&other)).await;
    assert_eq!(statuses(&r), [422], "{r:?}");
    assert_eq!(r.json["results"][0]["error"]["errors"][0]["field"], "jobs[0].input");
    assert_eq!(statuses(&batch(&t, jobs(&a)).await), [200], "the same input is the same job");
    assert_eq!(t.job_rows().await, 1);
}

/// An `Idempotency-Key` header on a batch would look like it protects the batch; it does not (each
/// item carries its own key), so it is refused, naming the header, and nothing is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_refuses_an_idempotency_key_header() {
    let t = TestApp::new(Backend::Sqlite).await;
    let body = json!({ "jobs": [{"kind": "summarize", "input": summary_input("doc-a", "Alpha text.")}] });
    let headers = [("idempotency-key", "k-1")];
    let r = call(&t.router, Method::POST, "/v1/jobs/batch", Some(&t.key), Some(body), &headers).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(r.json["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(t.job_rows().await, 0);
}
