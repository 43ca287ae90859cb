//! An API on a test database and queue — built by the production start-up path
//! ([`Application::build`] from flags, with the shipped kinds of [`startup::builtin`]) — and a
//! small request helper.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use clap::Parser as _;
use longhaul_core::{JobRecord, Registry, TenantId};
use longhaul_producer::startup::{self, Application, Config};
use longhaul_producer::{Queues, reconcile_once};
use longhaul_queue::Queue;
use longhaul_store::JobFilter;
pub use longhaul_testkit::{Backend, TestDb, TestQueue, wait_until};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub db: TestDb,
    /// The `triage` queue (the fixture's own queue; its key prefix is the test's).
    pub queue: TestQueue,
    /// The `summarize` queue, under the same prefix.
    pub summarize: Queue,
    /// The shipped kinds.
    pub registry: Registry,
    /// Their queues, as the producer opens them.
    pub queues: Queues,
    pub router: Router,
    /// API key of tenant `acme`.
    pub key: String,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
        // Triage's own tables (the build migrates them too; this keeps the fixture usable without it).
        longhaul_triage::storage::migrate(&db).await.expect("migrate triage's tables");
        let queue = TestQueue::new(|_| {}).await;
        let (_, key) =
            db.create_tenant(&TenantId::parse("acme").expect("tenant"), "Acme", None).await.expect("tenant");
        let router = build(&db, &queue.url, &queue.prefix, &[]).await.router();
        let registry = startup::builtin().expect("the shipped kinds");
        let queues = Queues::new(&queue, &registry).expect("the kinds' queues");
        let summarize = queues.get("summarize").expect("the summarize queue").clone();
        Self { db, queue, summarize, registry, queues, router, key: key.expose().to_owned() }
    }

    /// The same API (database, key prefix) over the Redis at `redis_url` (e.g. one that is down),
    /// with `flags` added.
    pub async fn with_redis(&self, redis_url: &str, flags: &[&str]) -> Router {
        build(&self.db, redis_url, &self.queue.prefix, flags).await.router()
    }

    pub async fn key_for(&self, tenant: &str) -> String {
        let (_, key) = self
            .db
            .create_tenant(&TenantId::parse(tenant).expect("tenant"), tenant, None)
            .await
            .expect("tenant");
        key.expose().to_owned()
    }

    pub async fn call(&self, method: Method, uri: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        call(&self.router, method, uri, key, body, &[]).await
    }

    /// `POST /v1/jobs` `{kind, input}` as tenant `acme`, with `headers`.
    pub async fn submit(&self, kind: &str, input: Value, headers: &[(&str, &str)]) -> Reply {
        let body = serde_json::json!({"kind": kind, "input": input});
        call(&self.router, Method::POST, "/v1/jobs", Some(&self.key), Some(body), headers).await
    }

    /// Entries in the `triage` stream.
    pub async fn stream_len(&self) -> u64 {
        self.queue.stats().await.expect("stats").stream_length
    }

    /// Entries in the `summarize` stream.
    pub async fn summarize_len(&self) -> u64 {
        self.summarize.stats().await.expect("stats").stream_length
    }

    /// Job rows in the database, every tenant's.
    pub async fn job_rows(&self) -> i64 {
        count(&self.db, "SELECT COUNT(*) FROM jobs").await
    }

    /// Tenant `acme`'s jobs matching `filter`, newest first (up to 100).
    pub async fn jobs(&self, filter: &JobFilter) -> Vec<JobRecord> {
        let tenant = TenantId::parse("acme").expect("tenant");
        self.db.list_jobs(&tenant, filter, 100, None).await.expect("list").jobs
    }

    /// One reconciler pass over every kind's queue.
    pub async fn reconcile(&self, older_than: Duration) -> usize {
        reconcile_once(&self.db, &self.registry, &self.queues, older_than).await.expect("reconcile")
    }

    /// Creates ticket `id` of the key's tenant.
    pub async fn ticket(&self, key: &str, id: &str) {
        let r = self
            .call(
                Method::POST,
                "/v1/tickets",
                Some(key),
                Some(serde_json::json!({"ticket_id": id, "subject": "Refund", "body": "Charged twice"})),
            )
            .await;
        assert!(r.status.is_success(), "{r:?}");
    }
}

/// The single value of `sql` (a `COUNT(*)`) on the test database, behind the store's back.
pub async fn count(db: &TestDb, sql: &'static str) -> i64 {
    match db.db() {
        longhaul_store::backend::Db::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        longhaul_store::backend::Db::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
    }
    .expect("count")
}

/// `producer serve` on `db`, Redis at `redis_url` under key prefix `prefix`, listening on a port
/// of its own, with `flags` added — built with the shipped kinds, not running.
pub async fn build(db: &TestDb, redis_url: &str, prefix: &str, flags: &[&str]) -> Application {
    let mut args =
        vec!["serve", "--database-url", &db.url, "--redis-url", redis_url, "--queue-prefix", prefix];
    args.extend(["--listen", "127.0.0.1:0"]);
    args.extend(flags);
    let config = Config::try_parse_from(&args).unwrap_or_else(|e| panic!("flags {args:?}: {e}"));
    Application::build(config, startup::builtin().expect("the shipped kinds"))
        .await
        .expect("build the producer")
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: Value,
}

pub async fn call(
    router: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Option<Value>,
    extra: &[(&str, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    for (name, value) in extra {
        req = req.header(*name, *value);
    }
    let req = match body {
        Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())),
        None => req.body(Body::empty()),
    }
    .expect("request");
    let response = router.clone().oneshot(req).await.expect("infallible router");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20).await.expect("body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, headers, json }
}

/// Asserts a problem document with `status`, and returns it.
pub fn problem(r: &Reply, status: StatusCode) -> &Value {
    assert_eq!(r.status, status, "{r:?}");
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json"),
        "{r:?}"
    );
    assert_eq!(r.json["status"], status.as_u16());
    &r.json
}
