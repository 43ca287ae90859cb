//! The operator console: server-rendered HTML pages at `/console`, for operators (logged in with
//! an operator key; see [`auth`]). It reads what the operator API reads and acts through the same
//! functions ([`crate::cancel`], [`crate::retry`], [`crate::control`]), so every action is audited
//! `operator:<name>` exactly as through `/admin/v1` or the CLI.
//!
//! Pages ([`pages`]): queues and kinds (backlog, running, throughput, the longest wait, pause and
//! resume), jobs (filtered, keyset-paginated, bulk retry with a dry-run count first), one job
//! (status, stage and progress moving live; its timeline from the audit log, attempts, input,
//! output, operation log; cancel and retry), tenants (running jobs against their caps), and dead
//! letters (replay, purge, purge all after a confirmation).
//!
//! Routes:
//!
//! | route | what |
//! |---|---|
//! | `GET /console` | `303` to the queues (or the login) |
//! | `GET`/`POST /console/login`, `POST /console/logout` | [`auth`] |
//! | `GET /console/assets/console.css`, `…/console.js` | the embedded assets (cached for an hour) |
//! | `GET /console/queues`; `POST /console/queues/{queue}/pause\|resume`, `POST /console/kinds/{kind}/pause\|resume` | [`pages::queues`] |
//! | `GET /console/jobs`; `POST /console/jobs/bulk-retry` | [`pages::jobs`] |
//! | `GET /console/jobs/{id}`; `POST /console/jobs/{id}/cancel\|retry` | [`pages::job`] |
//! | `GET /console/tenants` | [`pages::tenants`] |
//! | `GET /console/dead-letters?queue=`; `POST /console/dead-letters/{queue}/{id}/replay\|purge`, `POST /console/dead-letters/{queue}/purge` | [`pages::dead`] |
//! | `GET /console/live/queues`, `…/live/tenants`, `…/live/jobs/{id}` | [`live`]: server-sent events that update a page in place |
//!
//! No Node, no external fonts or scripts: one small CSS file and one small script, embedded with
//! `include_str!`. Without the script every page still works by reload; with it, the `data-live`
//! parts of the queues, tenants and job pages follow the system without one.
//!
//! Inside: [`auth`] (sessions, cookie, CSRF), [`view`] (layout and formatters), [`pages`], [`live`].

pub mod auth;
pub mod live;
pub mod pages;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use longhaul_store::KindThroughput;

use crate::AppState;

/// Where the stylesheet is served.
pub const CSS_PATH: &str = "/console/assets/console.css";
/// Where the script is served.
pub const JS_PATH: &str = "/console/assets/console.js";

const CSS: &str = include_str!("assets/console.css");
const JS: &str = include_str!("assets/console.js");

/// The console's settings (`--console-session-ttl`, `--console-secure-cookie`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSettings {
    /// How long a login lasts.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` whatever the request says (else: only when it came over
    /// TLS, `X-Forwarded-Proto: https`).
    pub secure_cookie: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { session_ttl: Duration::from_secs(12 * 3600), secure_cookie: false }
    }
}

/// What the console's handlers share beyond the producer's state: the open live streams per
/// operator, and the last throughput read (shared by every page and stream for a few seconds).
#[derive(Debug, Clone, Default)]
pub struct ConsoleState {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    live: Mutex<HashMap<String, u32>>,
    throughput: Cached<Vec<KindThroughput>>,
    queues: Cached<pages::queues::QueuesData>,
    tenants: Cached<pages::tenants::TenantsData>,
}

/// A value read at most once per period and shared by every reader meanwhile: one reader at a
/// time reads it (the others wait for that read), so many open pages cost one read.
struct Cached<T>(tokio::sync::Mutex<Option<(Instant, Arc<T>)>>);

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Self(tokio::sync::Mutex::new(None))
    }
}

impl<T> std::fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cached")
    }
}

impl<T> Cached<T> {
    /// The value read less than `ttl` ago, else what `read` gives now.
    async fn get<E>(&self, ttl: Duration, read: impl Future<Output = Result<T, E>>) -> Result<Arc<T>, E> {
        let mut cached = self.0.lock().await;
        if let Some((at, value)) = &*cached
            && at.elapsed() < ttl
        {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(read.await?);
        *cached = Some((Instant::now(), Arc::clone(&value)));
        Ok(value)
    }
}

/// How long one throughput read is reused: it counts whole minutes, so a few seconds change
/// little, and every open queues page would read it every second otherwise.
pub const THROUGHPUT_TTL: Duration = Duration::from_secs(5);

impl ConsoleState {
    /// The jobs finished per kind and minute, read at most every [`THROUGHPUT_TTL`].
    ///
    /// # Errors
    /// Storage errors.
    pub async fn throughput(
        &self,
        store: &longhaul_store::Store,
    ) -> Result<Arc<Vec<KindThroughput>>, longhaul_store::StoreError> {
        self.inner.throughput.get(THROUGHPUT_TTL, store.kind_throughput(chrono::Utc::now())).await
    }
}

/// The console's routes, on the producer's state.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/console", get(auth::home))
        .route("/console/", get(auth::home))
        .route("/console/login", get(auth::login_form).post(auth::login))
        .route("/console/logout", post(auth::logout))
        .route("/console/assets/console.css", get(css))
        .route("/console/assets/console.js", get(js))
        .route("/console/queues", get(pages::queues::page))
        .route("/console/queues/{queue}/{action}", post(pages::queues::queue_action))
        .route("/console/kinds/{kind}/{action}", post(pages::queues::kind_action))
        .route("/console/jobs", get(pages::jobs::page))
        .route("/console/jobs/bulk-retry", post(pages::jobs::bulk_retry))
        .route("/console/jobs/{job_id}", get(pages::job::page))
        .route("/console/jobs/{job_id}/{action}", post(pages::job::action))
        .route("/console/tenants", get(pages::tenants::page))
        .route("/console/dead-letters", get(pages::dead::page))
        .route("/console/dead-letters/{queue}/purge", post(pages::dead::purge_all))
        .route("/console/dead-letters/{queue}/{id}/{action}", post(pages::dead::action))
        .route("/console/live/queues", get(live::queues))
        .route("/console/live/tenants", get(live::tenants))
        .route("/console/live/jobs/{job_id}", get(live::job))
        .route("/console/{*rest}", get(auth::unknown))
        .layer(Extension(ConsoleState::default()))
}

/// An embedded asset, cached for an hour.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    response
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", JS)
}
