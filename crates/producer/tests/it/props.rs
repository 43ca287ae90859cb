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

    /// (tickets, jobs, stream entries).
    async fn footprint(&self) -> (i64, i64, u64) {
        let tickets = self.counts.count("SELECT COUNT(*) FROM tickets").await;
        let jobs = self.counts.count("SELECT COUNT(*) FROM jobs").await;
        (tickets, jobs, self.app.stream_len().await)
    }

    /// Sends `req`; checks the universal contract and that a rejected request changed nothing.
    /// Returns the status.
    fn check(&self, req: &Req) -> Result<StatusCode, TestCaseError> {
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
            Ok(status)
        })
    }
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
