//! The console's live updates: server-sent events that keep a page's `data-live` parts current
//! without a reload. One route per live page, behind the session like every page:
//!
//! - `GET /console/live/queues` and `GET /console/live/tenants` re-render the page's tables every
//!   second ([`TABLE_EVERY`]) from the same data and functions as the page ([`pages::queues`],
//!   [`pages::tenants`]);
//! - `GET /console/live/jobs/{id}` reads the job's record every `--events-poll` (one indexed read,
//!   as the tenants' events stream does) and, only when its version (`updated_at`) or status
//!   changed, reads its audit and operation logs and re-renders the job page's parts; once the job
//!   is terminal it sends them a last time and an `end` event, and the stream closes.
//!
//! Each `swap` event carries a JSON object `{"<live part>": "<html>"}` with only the parts whose
//! HTML changed since the last event (the first event carries them all, so a page rendered a
//! moment ago catches up); the script patches them in place. A read that fails is a `problem`
//! event (its text shown on the page; an empty one clears it) and the stream goes on.
//!
//! Bounded, so a forgotten tab costs little: a stream lives at most `--events-max-lifetime` (the
//! browser's `EventSource` then reconnects, which checks the session again — an expired one ends
//! it; and every [`SESSION_CHECK`] an open stream checks its session, and ends once it is not),
//! at most [`MAX_PER_OPERATOR`] are open per operator and [`MAX_TOTAL`] in all (one more is a
//! `429`), every read is bounded by `--request-timeout`, the tables' data is read once for every
//! stream of a table (about once a second however many are open) and the throughput once every
//! few seconds ([`ConsoleState::throughput`]), a storage outage is one warning and one event per
//! stream (and one more when reads work again),
//! and the producer's shutdown ends them all ([`crate::events::EventStreams::close_all`]).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use longhaul_core::{JobId, JobStatus, TenantId};
use tokio_util::sync::CancellationToken;

use super::auth::Session;
use super::pages::{self, job::JobData, queues::QueuesData, tenants::TenantsData};
use super::{ConsoleState, Shared, view};
use crate::AppState;

/// How often the queues and tenants tables are re-rendered.
pub const TABLE_EVERY: Duration = Duration::from_secs(1);

/// Live streams one operator may have open at once.
pub const MAX_PER_OPERATOR: u32 = 16;

/// Live streams one producer serves at once, all operators together.
pub const MAX_TOTAL: u32 = 256;

/// How long the queues and tenants tables' data, once read, serves every stream of that table:
/// a little under [`TABLE_EVERY`], so each tick of a stream sees data at most a second old and
/// the streams of a table together read it about once a second, however many are open.
const TABLE_SHARED_FOR: Duration = Duration::from_millis(900);

/// How long the browser waits before it reconnects a stream that ended.
const RECONNECT: Duration = Duration::from_secs(2);

/// How often an open stream checks that its session is still valid (logged out, expired, or its
/// operator revoked: the stream ends).
pub const SESSION_CHECK: Duration = Duration::from_secs(30);

/// One open live stream of an operator, counted until dropped (with its stream).
#[derive(Debug)]
struct Slot {
    shared: Arc<Shared>,
    operator: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.shared.live.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.operator) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.operator);
            }
        }
    }
}

impl ConsoleState {
    /// A slot for one more live stream of `operator`, unless it has [`MAX_PER_OPERATOR`] open.
    fn acquire(&self, operator: &str) -> Option<Slot> {
        let mut open = self.inner.live.lock().unwrap_or_else(PoisonError::into_inner);
        if open.values().sum::<u32>() >= MAX_TOTAL {
            return None;
        }
        let count = open.entry(operator.to_owned()).or_insert(0);
        if *count >= MAX_PER_OPERATOR {
            return None;
        }
        *count += 1;
        Some(Slot { shared: Arc::clone(&self.inner), operator: operator.to_owned() })
    }

    /// How many live streams `operator` has open.
    pub fn open(&self, operator: &str) -> u32 {
        self.inner.live.lock().unwrap_or_else(PoisonError::into_inner).get(operator).copied().unwrap_or(0)
    }
}

/// What a stream renders.
enum Source {
    Queues,
    Tenants,
    Job { owner: TenantId, job: JobId },
}

/// What one read gave: the live parts, and whether nothing more will change.
struct Snapshot {
    parts: Vec<(&'static str, String)>,
    last: bool,
}

/// One stream's state.
struct Live {
    state: AppState,
    console: ConsoleState,
    session: Session,
    source: Source,
    every: Duration,
    ends_at: tokio::time::Instant,
    stop: CancellationToken,
    /// The HTML of each part as last sent.
    sent: HashMap<&'static str, String>,
    /// The job's version and status as last rendered (job streams only).
    seen: Option<(u64, JobStatus)>,
    /// The problem shown on the page, if any.
    troubled: Option<String>,
    /// Events to send before reading again.
    pending: VecDeque<Event>,
    first: bool,
    done: bool,
    /// When the session is checked next.
    check_at: tokio::time::Instant,
    _slot: Slot,
}

impl Live {
    async fn step(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            if !self.first {
                tokio::select! {
                    () = self.stop.cancelled() => return None,
                    () = tokio::time::sleep_until(self.ends_at) => return None,
                    () = tokio::time::sleep(self.every) => {}
                }
            }
            if tokio::time::Instant::now() >= self.check_at {
                self.check_at = tokio::time::Instant::now() + SESSION_CHECK;
                if let Ok(false) = self.session.still_valid(&self.state.store).await {
                    let ended = "Your session has ended: log in again to resume live updates.";
                    self.pending.push_back(Event::default().event("problem").data(ended));
                    self.pending.push_back(Event::default().event("end").data("the session has ended"));
                    self.done = true;
                    continue;
                }
            }
            self.read().await;
            self.first = false;
        }
    }

    /// Reads and renders; queues what changed.
    async fn read(&mut self) {
        let timeout = self.state.settings.request_timeout;
        let snapshot = match tokio::time::timeout(timeout, self.snapshot()).await {
            Ok(Ok(snapshot)) => snapshot,
            Ok(Err(problem)) => return self.problem(&problem),
            Err(_) => return self.problem("the console's read timed out; retrying"),
        };
        // Any read that worked clears the problem shown, whether or not the page changed.
        if self.troubled.take().is_some() {
            tracing::info!(operator = %self.session.operator, "console live view: reads work again");
            self.pending.push_back(Event::default().event("problem").data(""));
        }
        let Some(snapshot) = snapshot else { return };
        let mut changed = serde_json::Map::new();
        for (name, html) in snapshot.parts {
            if self.sent.get(name) != Some(&html) {
                changed.insert(name.to_owned(), serde_json::Value::String(html.clone()));
                self.sent.insert(name, html);
            }
        }
        if !changed.is_empty() || self.first {
            let mut event =
                Event::default().event("swap").data(serde_json::Value::Object(changed).to_string());
            if self.first {
                event = event.retry(RECONNECT);
            }
            self.pending.push_back(event);
        }
        if snapshot.last {
            self.pending.push_back(Event::default().event("end").data("the job has finished"));
            self.done = true;
        }
    }

    /// A `problem` event (logged), unless the same is shown already: an outage is one warning
    /// and one event per stream, not one per tick.
    fn problem(&mut self, text: &str) {
        if self.troubled.as_deref() == Some(text) {
            return;
        }
        tracing::warn!(operator = %self.session.operator, problem = text, "console live view");
        self.troubled = Some(text.to_owned());
        self.pending
            .push_back(Event::default().event("problem").data(format!("Live updates paused: {text}.")));
    }

    /// The page's live parts now; `None` when nothing changed (a job whose record did not).
    async fn snapshot(&mut self) -> Result<Option<Snapshot>, String> {
        let storage = |e: longhaul_store::StoreError| {
            tracing::debug!(error = %e.report(), "console live view: storage");
            "application storage is unavailable; retrying".to_owned()
        };
        match &self.source {
            Source::Queues => {
                let read = QueuesData::read(&self.state, &self.console);
                let data = self.console.inner.queues.get(TABLE_SHARED_FOR, read).await.map_err(storage)?;
                let parts = pages::queues::fragments(&data, &self.state.registry, &self.session);
                Ok(Some(Snapshot { parts, last: false }))
            }
            Source::Tenants => {
                let read = TenantsData::read(&self.state);
                let data = self.console.inner.tenants.get(TABLE_SHARED_FOR, read).await.map_err(storage)?;
                Ok(Some(Snapshot { parts: pages::tenants::fragments(&data), last: false }))
            }
            Source::Job { owner, job } => {
                let Some(record) = self.state.store.get_job(owner, job).await.map_err(storage)? else {
                    self.done = true;
                    return Err("the job no longer exists".to_owned());
                };
                let seen = (crate::events::version(&record), record.status);
                if self.seen == Some(seen) {
                    return Ok(None);
                }
                let last = record.status.is_terminal();
                let data = JobData::complete(&self.state.store, record).await.map_err(storage)?;
                self.seen = Some(seen);
                Ok(Some(Snapshot { parts: pages::job::fragments(&data, &self.session), last }))
            }
        }
    }
}

/// A stream of `source` for `session`, or the `429` page of one too many.
fn open(
    state: AppState,
    console: ConsoleState,
    session: Session,
    source: Source,
    every: Duration,
) -> Response {
    let Some(slot) = console.acquire(&session.operator) else {
        let lines = [format!(
            "Too many live views are open (at most {MAX_PER_OPERATOR} per operator, {MAX_TOTAL} in all): \
             close some tabs, or reload this page later."
        )];
        return view::problem_page(
            Some(&session),
            StatusCode::TOO_MANY_REQUESTS,
            "Too many live views",
            &lines,
        );
    };
    let live = Live {
        every,
        ends_at: tokio::time::Instant::now() + state.settings.events_max_lifetime,
        stop: state.events.closing(),
        state,
        console,
        session,
        source,
        sent: HashMap::new(),
        seen: None,
        troubled: None,
        pending: VecDeque::new(),
        first: true,
        done: false,
        check_at: tokio::time::Instant::now() + SESSION_CHECK,
        _slot: slot,
    };
    let keep_alive = KeepAlive::new().interval(live.state.settings.events_keep_alive).text("keep-alive");
    let stream = futures::stream::unfold(live, Live::step);
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    let headers = response.headers_mut();
    headers.insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    headers.insert(axum::http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `GET /console/live/queues`: the queues page's tables.
pub async fn queues(
    State(state): State<AppState>,
    Extension(console): Extension<ConsoleState>,
    session: Session,
) -> Response {
    open(state, console, session, Source::Queues, TABLE_EVERY)
}

/// `GET /console/live/tenants`: the tenants page's table.
pub async fn tenants(
    State(state): State<AppState>,
    Extension(console): Extension<ConsoleState>,
    session: Session,
) -> Response {
    open(state, console, session, Source::Tenants, TABLE_EVERY)
}

/// `GET /console/live/jobs/{job_id}`: the job page's parts, until the job is terminal. A job that
/// is terminal already still gets its parts once, then `end`: the page may have been rendered
/// while it ran (right after a cancel, say), and must not stay at `running`.
pub async fn job(
    State(state): State<AppState>,
    Extension(console): Extension<ConsoleState>,
    session: Session,
    path: Result<Path<String>, PathRejection>,
) -> Response {
    let Some(job) = pages::job::job_id(path) else { return view::not_found(Some(&session), "job") };
    let record = match state.store.get_job_admin(&job).await {
        Ok(Some(record)) => record,
        Ok(None) => return view::not_found(Some(&session), "job"),
        Err(e) => return view::store_failed(Some(&session), &e),
    };
    let every = state.settings.events_poll.max(Duration::from_millis(100));
    let source = Source::Job { owner: record.tenant_id, job };
    open(state, console, session, source, every)
}
