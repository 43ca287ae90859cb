//! An API on a test database and queue — built by the production start-up path
//! ([`Application::build`] from flags) — and a small request helper.

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use clap::Parser as _;
use longhaul_core::TenantId;
use longhaul_producer::startup::{Application, Config};
pub use longhaul_testkit::{Backend, TestDb, TestQueue, wait_until};
use serde_json::Value;
use tower::ServiceExt;

pub struct TestApp {
    pub db: TestDb,
    pub queue: TestQueue,
    pub router: Router,
    /// API key of tenant `acme`.
    pub key: String,
}

impl TestApp {
    pub async fn new(backend: Backend) -> Self {
        let db = TestDb::new(backend).await;
        let queue = TestQueue::new(|_| {}).await;
        let (_, key) =
            db.create_tenant(&TenantId::parse("acme").expect("tenant"), "Acme", None).await.expect("tenant");
        let router = build(&db, &queue.url, &queue.prefix, &[]).await.router();
        Self { db, queue, router, key: key.expose().to_owned() }
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

    pub async fn stream_len(&self) -> u64 {
        self.queue.stats().await.expect("stats").stream_length
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

/// `producer serve` on `db`, Redis at `redis_url` under key prefix `prefix`, listening on a port
/// of its own, with `flags` added — built, not running.
pub async fn build(db: &TestDb, redis_url: &str, prefix: &str, flags: &[&str]) -> Application {
    let mut args =
        vec!["serve", "--database-url", &db.url, "--redis-url", redis_url, "--queue-prefix", prefix];
    args.extend(["--listen", "127.0.0.1:0"]);
    args.extend(flags);
    let config = Config::try_parse_from(&args).unwrap_or_else(|e| panic!("flags {args:?}: {e}"));
    Application::build(config).await.expect("build the producer")
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
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
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
