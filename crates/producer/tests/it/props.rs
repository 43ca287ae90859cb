//! Property-based tests of the API surface: arbitrary (mostly hostile) bodies, headers, path
//! segments, query strings and methods through the real router, over a real store — each property
//! on SQLite and on PostgreSQL, which refuses some text SQLite stores — and a real Redis queue.
//! Every answer is a 2xx for a valid request or a 4xx problem document — never a 5xx, never a
//! panic — and a rejected request records and enqueues nothing.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};
use sqlx::{PgPool, SqlitePool};
use tower::ServiceExt;

use crate::harness::*;

/// Cases per property: enough to find shallow bugs, few enough for CI seconds. `PROPTEST_CASES`
/// raises it for a deeper run.
const CASES: u32 = 96;

/// A request as generated.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    uri: String,
    /// `None`: no Authorization header; `Some(Ok(()))`: the tenant's valid key; `Some(Err(v))`: raw bytes.
    auth: Option<Result<(), Vec<u8>>>,
    content_type: Option<Vec<u8>>,
    idempotency_key: Option<Vec<u8>>,
    body: Vec<u8>,
}

/// A pool of its own on the test database, to count rows behind the API's back.
enum Counts {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Counts {
    async fn count(&self, sql: &'static str) -> i64 {
        match self {
            Self::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            Self::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("count")
    }
}

struct Fixture {
    rt: tokio::runtime::Runtime,
    app: TestApp,
    router: Router,
    counts: Counts,
}

impl Fixture {
    fn new(backend: Backend) -> Arc<Self> {
        let rt =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
        let (app, counts) = rt.block_on(async {
            let app = TestApp::new(backend).await;
            app.ticket(&app.key, "T-1").await;
            let counts = match backend {
                Backend::Sqlite => {
                    Counts::Sqlite(SqlitePool::connect(&app.db.url).await.expect("sqlite pool"))
                }
                Backend::Postgres => Counts::Postgres(PgPool::connect(&app.db.url).await.expect("pg pool")),
            };
            (app, counts)
        });
        let router = app.router.clone();
        Arc::new(Self { rt, app, router, counts })
    }

    /// What a request may leave behind.
    async fn footprint(&self) -> Footprint {
        Footprint {
            tickets: self.counts.count("SELECT COUNT(*) FROM tickets").await,
            jobs: self.counts.count("SELECT COUNT(*) FROM jobs").await,
            triage_entries: self.app.stream_len().await,
            summarize_entries: self.app.summarize_len().await,
        }
    }

    /// Sends `req`; checks the universal contract and that a rejected request changed nothing.
    /// Returns the status.
    fn check(&self, req: &Req) -> Result<StatusCode, TestCaseError> {
        self.send(req).map(|c| c.status)
    }

    /// [`Fixture::check`], returning the answer and the footprint before and after.
    fn send(&self, req: &Req) -> Result<Checked, TestCaseError> {
        self.rt.block_on(async {
            let mut builder = Request::builder().method(req.method.clone()).uri(&req.uri);
            match &req.auth {
                None => {}
                Some(Ok(())) => builder = builder.header("authorization", format!("Bearer {}", self.app.key)),
                Some(Err(raw)) => {
                    if let Ok(v) = HeaderValue::from_bytes(raw) {
                        builder = builder.header("authorization", v);
                    }
                }
            }
            if let Some(ct) = req.content_type.as_ref().and_then(|c| HeaderValue::from_bytes(c).ok()) {
                builder = builder.header("content-type", ct);
            }
            if let Some(key) = req.idempotency_key.as_ref().and_then(|c| HeaderValue::from_bytes(c).ok()) {
                builder = builder.header("idempotency-key", key);
            }
            let request = builder
                .body(Body::from(req.body.clone()))
                .map_err(|e| TestCaseError::reject(format!("not a representable request: {e}")))?;
            let before = self.footprint().await;
            let response = self.router.clone().oneshot(request).await.expect("the router is infallible");
            let status = response.status();
            let content_type =
                response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
            let text = String::from_utf8_lossy(&bytes);
            prop_assert!(
                status.is_success() || status.is_client_error(),
                "{} {} answered {status}: {text}",
                req.method,
                req.uri
            );
            let json: Value = serde_json::from_slice(&bytes)
                .map_err(|e| TestCaseError::fail(format!("{status} body is not JSON ({e}): {text}")))?;
            if status.is_client_error() {
                prop_assert_eq!(content_type.as_deref(), Some("application/problem+json"), "{}", text);
                prop_assert_eq!(&json["status"], &json!(status.as_u16()));
                prop_assert_eq!(&json["retryable"], &json!(false));
                prop_assert!(
                    json["type"].is_string() && json["title"].is_string() && json["detail"].is_string()
                );
                let after = self.footprint().await;
                prop_assert_eq!(before, after, "a rejected request left a trace: {}", text);
            } else {
                prop_assert_eq!(content_type.as_deref(), Some("application/json"), "{}", text);
            }
            let after = self.footprint().await;
            Ok(Checked { status, json, before, after })
        })
    }
}

/// Rows and queue entries at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Footprint {
    tickets: i64,
    jobs: i64,
    triage_entries: u64,
    summarize_entries: u64,
}

impl Footprint {
    /// Queue entries in every kind's queue.
    fn entries(self) -> u64 {
        self.triage_entries + self.summarize_entries
    }
}

/// One request's answer, and the footprint around it.
struct Checked {
    status: StatusCode,
    json: Value,
    before: Footprint,
    after: Footprint,
}

fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(CASES);
    TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() })
}

/// Arbitrary JSON, a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(any::<String>(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Strings that probe the validators: valid ids, unicode, controls, near and over the limits.
fn field_string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z0-9][A-Za-z0-9._:-]{0,20}",
        any::<String>(),
        "\\PC{0,40}",
        Just(String::new()),
        Just("  \t\n ".to_owned()),
        Just("\u{0}\u{1b}[31m\u{202e}".to_owned()),
        (0usize..3).prop_map(|i| ["é", "🦀", "\u{10FFFF}"][i].repeat(600)),
        (490usize..520).prop_map(|n| "x".repeat(n)),
        (32_700usize..32_800).prop_map(|n| "b".repeat(n)),
        (60_000usize..70_000).prop_map(|n| "h".repeat(n)),
    ]
}

/// A field value: usually a string, sometimes a value of the wrong type.
fn field() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        6 => field_string().prop_map(|s| Some(Value::from(s))),
        2 => json_value().prop_map(Some),
        1 => Just(None),
    ]
}

/// `POST /v1/tickets` bodies: ticket-shaped objects with hostile fields, arbitrary JSON, garbage
/// bytes, truncated JSON and pathological nesting.
fn ticket_body() -> impl Strategy<Value = Vec<u8>> {
    let shaped = (field(), field(), field(), proptest::option::of((any::<String>(), json_value()))).prop_map(
        |(ticket_id, subject, body, extra)| {
            let mut o = serde_json::Map::new();
            for (k, v) in [("ticket_id", ticket_id), ("subject", subject), ("body", body)] {
                if let Some(v) = v {
                    o.insert(k.to_owned(), v);
                }
            }
            if let Some((k, v)) = extra {
                o.insert(k, v);
            }
            Value::Object(o).to_string().into_bytes()
        },
    );
    prop_oneof![
        6 => shaped,
        2 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..256),
        1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, i)| {
            let s = v.to_string().into_bytes();
            let cut = if s.is_empty() { 0 } else { i.index(s.len()) };
            s[..cut].to_vec()
        }),
        1 => (1usize..5000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
    ]
}

/// An object of `fields` that are present.
fn object(fields: Vec<(&str, Option<Value>)>, extra: Option<(String, Value)>) -> Value {
    let mut o = serde_json::Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            o.insert(k.to_owned(), v);
        }
    }
    if let Some((k, v)) = extra {
        o.insert(k, v);
    }
    Value::Object(o)
}

/// A field of a job's input: usually `valid`, sometimes a hostile string or a value of the
/// wrong type, rarely missing.
fn input_field(valid: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        12 => valid.prop_map(Some),
        3 => field_string().prop_map(|s| Some(Value::from(s))),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

/// An optional field of a job's input: usually absent.
fn optional_field(valid: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![6 => Just(None), 2 => valid.prop_map(Some), 1 => json_value().prop_map(Some)].boxed()
}

/// Rarely, a field no kind declares.
fn extra_field() -> BoxedStrategy<Option<(String, Value)>> {
    proptest::option::weighted(0.05, (any::<String>(), json_value())).boxed()
}

/// A job's `kind` and `input`: a summarize or a triage input — mostly valid, with hostile fields
/// mixed in — under its kind, sometimes under the other kind, or anything under any kind.
fn job_kind_and_input() -> BoxedStrategy<(Option<Value>, Value)> {
    let id = || "[A-Za-z0-9][A-Za-z0-9._:-]{0,20}".prop_map(Value::from).boxed();
    let text = prop_oneof![
        4 => "\\PC{1,200}".prop_map(Value::from),
        1 => Just(Value::from("a\u{0}b")),
        1 => (1usize..20_000).prop_map(|n| Value::from("word. ".repeat(n))),
    ]
    .boxed();
    let chunk_chars = prop_oneof![(150u32..17_000).prop_map(Value::from), any::<i64>().prop_map(Value::from)];
    // A field the kind no longer has (results go to the tenant's configured webhook): a client
    // naming where workers should send requests is always refused.
    let webhook = prop_oneof![
        3 => Just(Value::from("https://example.com/hook")),
        1 => Just(Value::from("http://169.254.169.254/latest/meta-data/")),
        1 => Just(Value::from("http://example.com/a\u{0}b")),
        1 => field_string().prop_map(Value::from),
    ];
    let summarize = (
        input_field(id()),
        input_field(text),
        optional_field(chunk_chars.boxed()),
        proptest::option::weighted(0.1, webhook).boxed(),
        extra_field(),
    )
        .prop_map(|(document_id, text, chunk_chars, webhook_url, extra)| {
            object(
                vec![
                    ("document_id", document_id),
                    ("text", text),
                    ("chunk_chars", chunk_chars),
                    ("webhook_url", webhook_url),
                ],
                extra,
            )
        });
    let revision = prop_oneof![
        6 => (0u64..4).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ];
    let triage = (input_field(id()), input_field(revision.boxed()), extra_field()).prop_map(
        |(ticket_id, revision, extra)| object(vec![("ticket_id", ticket_id), ("revision", revision)], extra),
    );
    let named = |kind: &'static str| Some(Value::from(kind));
    prop_oneof![
        12 => summarize.clone().prop_map(move |i| (named("summarize"), i)),
        8 => triage.clone().prop_map(move |i| (named("triage"), i)),
        1 => summarize.prop_map(move |i| (named("triage"), i)),
        1 => triage.prop_map(move |i| (named("summarize"), i)),
        2 => (job_kind(), json_value()),
    ]
    .boxed()
}

/// Any `kind`: a registered one, an unknown one, or not a string (a malformed body).
fn job_kind() -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        1 => Just(Some(Value::from("summarize"))),
        1 => Just(Some(Value::from("triage"))),
        1 => "[a-z-]{0,12}".prop_map(|k| Some(Value::from(k))),
        1 => any::<String>().prop_map(|k| Some(Value::from(k))),
        1 => json_value().prop_map(Some),
    ]
    .boxed()
}

/// One `{kind, input}` object (with a key in the body when `keyed`); rarely malformed.
fn job_object(keyed: bool) -> BoxedStrategy<Value> {
    let key = prop_oneof![
        6 => Just(None),
        3 => "[a-z]{1,2}".prop_map(|k| Some(Value::from(k))),
        1 => "[!-~]{1,20}".prop_map(|k| Some(Value::from(k))),
        1 => any::<String>().prop_map(|k| Some(Value::from(k))),
    ];
    let shape = prop_oneof![
        40 => Just(None),
        1 => Just(Some("no kind")),
        1 => Just(Some("no input")),
        1 => Just(Some("extra")),
    ];
    (job_kind_and_input(), key, shape, any::<String>())
        .prop_map(move |((kind, input), key, shape, extra)| {
            let key = if keyed { key } else { None };
            let mut job =
                object(vec![("kind", kind), ("input", Some(input)), ("idempotency_key", key)], None);
            let o = job.as_object_mut().expect("an object");
            match shape {
                Some("no kind") => drop(o.remove("kind")),
                Some("no input") => drop(o.remove("input")),
                Some(_) => drop(o.insert(format!("x-{extra}"), Value::Null)),
                None => {}
            }
            job
        })
        .boxed()
}

/// `POST /v1/jobs` bodies: job-shaped objects with hostile fields, arbitrary JSON, garbage bytes.
fn job_body() -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        8 => job_object(false).prop_map(|v| v.to_string().into_bytes()),
        1 => job_object(true).prop_map(|v| v.to_string().into_bytes()),
        1 => json_value().prop_map(|v| v.to_string().into_bytes()),
        1 => vec(any::<u8>(), 0..256),
    ]
    .boxed()
}

/// `POST /v1/jobs/batch` bodies: mostly batches of job-shaped items, some repeated.
fn batch_body() -> BoxedStrategy<Vec<u8>> {
    let items = vec(job_object(true), 0..8).prop_flat_map(|items| {
        let n = items.len();
        (Just(items), vec(any::<prop::sample::Index>(), 0..3)).prop_map(move |(mut items, repeats)| {
            // Repeat some items: the same job twice in one batch.
            for i in repeats {
                if n > 0 {
                    let item = items[i.index(n)].clone();
                    items.push(item);
                }
            }
            items
        })
    });
    prop_oneof![
        8 => items.prop_map(|jobs| json!({ "jobs": jobs }).to_string().into_bytes()),
        1 => json_value().prop_map(|v| json!({ "jobs": v }).to_string().into_bytes()),
        1 => job_body(),
    ]
    .boxed()
}

/// Authorization header values: usually the valid key, otherwise hostile.
fn auth() -> impl Strategy<Value = Option<Result<(), Vec<u8>>>> {
    prop_oneof![
        6 => Just(Some(Ok(()))),
        1 => Just(None),
        1 => vec(any::<u8>(), 0..300).prop_map(|b| Some(Err(b))),
        1 => "(Bearer|bearer|Basic|Bearer  |Token) ?\\PC{0,300}".prop_map(|s| Some(Err(s.into_bytes()))),
        1 => (250usize..600).prop_map(|n| Some(Err(format!("Bearer lh_{}", "a".repeat(n)).into_bytes()))),
    ]
}

fn content_type() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        6 => Just(Some(b"application/json".to_vec())),
        1 => Just(Some(b"application/json; charset=utf-8".to_vec())),
        1 => Just(None),
        1 => "[a-z/+;= -]{0,40}".prop_map(|s| Some(s.into_bytes())),
        1 => vec(any::<u8>(), 0..40).prop_map(Some),
    ]
}

/// A path segment: valid ids, percent-encoded arbitrary bytes (invalid UTF-8, NUL, `/`), dot
/// segments, very long ones.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("T-1".to_owned()),
        2 => "[A-Za-z0-9._~-]{0,40}",
        2 => vec(any::<u8>(), 0..40).prop_map(|b| b.iter().map(|x| format!("%{x:02X}")).collect()),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("job_00000000000000000000000000000000".to_owned()),
        1 => "job_[0-9a-fA-F]{30,34}",
        1 => (100usize..5000).prop_map(|n| "a".repeat(n)),
    ]
}

fn idempotency_key() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        4 => Just(None),
        2 => "[!-~]{1,40}".prop_map(|s| Some(s.into_bytes())),
        1 => (250usize..300).prop_map(|n| Some("k".repeat(n).into_bytes())),
        1 => vec(any::<u8>(), 0..300).prop_map(Some),
        1 => "\\PC{0,20}".prop_map(|s| Some(s.into_bytes())),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        8 => Just(Method::POST),
        1 => Just(Method::GET),
        1 => Just(Method::PUT),
        1 => Just(Method::DELETE),
        1 => Just(Method::PATCH),
    ]
}

/// Runs each property on both backends: `name_sqlite` and `name_postgres`.
macro_rules! on_both_backends {
    ($property:ident: $sqlite:ident, $postgres:ident) => {
        #[test]
        fn $sqlite() {
            $property(Backend::Sqlite);
        }

        #[test]
        fn $postgres() {
            $property(Backend::Postgres);
        }
    };
}

on_both_backends!(create_ticket: create_ticket_answers_2xx_or_a_4xx_problem_sqlite, create_ticket_answers_2xx_or_a_4xx_problem_postgres);
on_both_backends!(triage: triage_answers_2xx_or_a_4xx_problem_sqlite, triage_answers_2xx_or_a_4xx_problem_postgres);
on_both_backends!(job_reads: job_reads_and_listing_answer_2xx_or_a_4xx_problem_sqlite, job_reads_and_listing_answer_2xx_or_a_4xx_problem_postgres);
on_both_backends!(submit_job: submit_job_answers_2xx_or_a_4xx_problem_sqlite, submit_job_answers_2xx_or_a_4xx_problem_postgres);
on_both_backends!(submit_batch: submit_batch_answers_item_by_item_sqlite, submit_batch_answers_item_by_item_postgres);

/// `POST /v1/tickets` answers 2xx or a 4xx problem.
fn create_ticket(backend: Backend) {
    let fx = Fixture::new(backend);
    let strategy = (method(), auth(), content_type(), ticket_body()).prop_map(|(method, auth, ct, body)| {
        Req { method, uri: "/v1/tickets".into(), auth, content_type: ct, idempotency_key: None, body }
    });
    runner()
        .run(&strategy, |req| {
            let status = fx.check(&req)?;
            if status.is_success() {
                prop_assert!(req.method == Method::POST && matches!(req.auth, Some(Ok(()))));
            }
            Ok(())
        })
        .expect("property");
}

/// `POST /v1/tickets/{id}/triage` answers 2xx or a 4xx problem.
fn triage(backend: Backend) {
    let fx = Fixture::new(backend);
    let strategy = (method(), auth(), segment(), idempotency_key(), ticket_body()).prop_map(
        |(method, auth, segment, key, body)| Req {
            method,
            uri: format!("/v1/tickets/{segment}/triage"),
            auth,
            content_type: Some(b"application/json".to_vec()),
            idempotency_key: key,
            body,
        },
    );
    runner()
        .run(&strategy, |req| {
            let status = fx.check(&req)?;
            if status.is_success() {
                prop_assert!(req.uri == "/v1/tickets/T-1/triage", "{} accepted", req.uri);
            }
            Ok(())
        })
        .expect("property");
}

/// Job reads, listings and ticket reads answer 2xx or a 4xx problem.
fn job_reads(backend: Backend) {
    let fx = Fixture::new(backend);
    let query = prop_oneof![
        Just(String::new()),
        "[a-z=&%0-9A-F]{0,60}".prop_map(|q| format!("?{q}")),
        (prop_oneof![Just("status"), Just("limit"), Just("cursor"), Just("colour")], vec(any::<u8>(), 0..30))
            .prop_map(|(k, v)| format!("?{k}={}", v.iter().map(|x| format!("%{x:02X}")).collect::<String>())),
        "(limit=-?[0-9]{1,25}|cursor=[0-9]{1,30}|status=(queued|running|completed|failed|x))"
            .prop_map(|q| format!("?{q}")),
    ];
    let uri = prop_oneof![
        query.prop_map(|q| format!("/v1/jobs{q}")),
        segment().prop_map(|s| format!("/v1/jobs/{s}")),
        segment().prop_map(|s| format!("/v1/tickets/{s}")),
        (segment(), segment()).prop_map(|(a, b)| format!("/v1/{a}/{b}")),
    ];
    let method = prop_oneof![4 => Just(Method::GET), 1 => method()];
    let strategy = (method, auth(), uri).prop_map(|(method, auth, uri)| Req {
        method,
        uri,
        auth,
        content_type: None,
        idempotency_key: None,
        body: Vec::new(),
    });
    runner()
        .run(&strategy, |req| {
            fx.check(&req)?;
            Ok(())
        })
        .expect("property");
}

/// `POST /v1/jobs` answers 2xx or a 4xx problem; a `202` recorded one job and enqueued it, a `200`
/// changed nothing.
fn submit_job(backend: Backend) {
    let fx = Fixture::new(backend);
    let strategy = (method(), auth(), content_type(), idempotency_key(), job_body()).prop_map(
        |(method, auth, content_type, idempotency_key, body)| Req {
            method,
            uri: "/v1/jobs".into(),
            auth,
            content_type,
            idempotency_key,
            body,
        },
    );
    runner()
        .run(&strategy, |req| {
            let c = fx.send(&req)?;
            let (before, after) = (c.before, c.after);
            if c.status == StatusCode::ACCEPTED {
                prop_assert_eq!(after.jobs, before.jobs + 1);
                prop_assert_eq!(after.entries(), before.entries() + 1);
                prop_assert_eq!(&c.json["status"], &json!("queued"));
            } else if c.status == StatusCode::OK && req.method == Method::POST {
                prop_assert_eq!(before, after, "a repeated submission changed something");
            }
            if c.status.is_success() && req.method == Method::POST {
                prop_assert!(matches!(req.auth, Some(Ok(()))));
                let kind = c.json["kind"].as_str().unwrap_or_default();
                prop_assert!(kind == "summarize" || kind == "triage", "{}", c.json);
                prop_assert!(
                    c.json["input"].get("webhook_url").is_none(),
                    "a URL from the input: {}",
                    c.json
                );
            }
            Ok(())
        })
        .expect("property");
}

/// `POST /v1/jobs/batch` answers 200 with one result per item, or a 4xx problem; each `202` item
/// recorded one job and enqueued it, nothing else was written.
fn submit_batch(backend: Backend) {
    let fx = Fixture::new(backend);
    let strategy = (auth(), batch_body()).prop_map(|(auth, body)| Req {
        method: Method::POST,
        uri: "/v1/jobs/batch".into(),
        auth,
        content_type: Some(b"application/json".to_vec()),
        idempotency_key: None,
        body,
    });
    runner()
        .run(&strategy, |req| {
            let c = fx.send(&req)?;
            if !c.status.is_success() {
                return Ok(());
            }
            prop_assert_eq!(c.status, StatusCode::OK);
            let sent: Value = serde_json::from_slice(&req.body).expect("a batch that was answered is JSON");
            let results = c.json["results"].as_array().expect("results");
            prop_assert_eq!(results.len(), sent["jobs"].as_array().expect("jobs").len());
            let mut created = 0;
            for (i, r) in results.iter().enumerate() {
                match r["status"].as_u64() {
                    Some(202) => created += 1,
                    Some(200) => {}
                    Some(422) => {
                        let field = r["error"]["errors"][0]["field"].as_str().unwrap_or_default();
                        prop_assert!(
                            field.starts_with(&format!("jobs[{i}].")) || field == format!("jobs[{i}]"),
                            "item {} refused on {:?}: {}",
                            i,
                            field,
                            r
                        );
                    }
                    other => prop_assert!(false, "item {} answered {:?}: {}", i, other, r),
                }
            }
            prop_assert_eq!(c.after.jobs, c.before.jobs + created);
            prop_assert_eq!(c.after.entries(), c.before.entries() + created as u64);
            prop_assert_eq!(c.after.tickets, c.before.tickets);
            Ok(())
        })
        .expect("property");
}
