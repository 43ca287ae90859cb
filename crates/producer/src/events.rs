//! `GET /v1/jobs/{job_id}/events`: a tenant's job as server-sent events (`text/event-stream`) —
//! its current state first, then each change the producer sees by reading the record every
//! `--events-poll`, until the job is terminal (`completed`, `failed`, `cancelled`): that state is
//! sent, and the stream closes.
//!
//! - Each `job` event carries the job record, as `GET /v1/jobs/{job_id}` answers it, and as its
//!   `id` the record's version: its `updated_at` in microseconds since the epoch — raised past the
//!   last id sent when a change kept the same time, so the ids of a stream only increase.
//! - `Last-Event-ID` equal to the current version: the current state is not sent again, the
//!   stream waits for the next change; for a terminal job the answer is `204 No Content` — nothing
//!   more will come, and an `EventSource` stops reconnecting on a 204. Any other value (older,
//!   newer, unparsable) gets the current state first.
//! - Keep-alive comments every `--events-keep-alive`; at most `--events-max-per-tenant` streams per
//!   tenant at once — one more is a `429` with `Retry-After`. A stream's `Slot` lives inside the
//!   stream, so it is released when the stream ends or the client goes away (hyper notices at the
//!   next write at the latest, a keep-alive included).
//! - A stream lives at most `--events-max-lifetime` (10 min), then ends: the client reconnects
//!   with `Last-Event-ID` (an `EventSource` does so by itself), which checks its key again and
//!   bounds the reads spent on a job that waits for long.
//! - A failed read mid-stream is an `error` event (`{detail, retryable}`) and the end of the
//!   stream: the client reconnects with `Last-Event-ID`. The producer's shutdown ends every stream
//!   ([`EventStreams::close_all`]), so a graceful stop does not wait for jobs to finish.
//! - The request timeout (tower-http's `Timeout`, around every route) bounds only the time to the
//!   response's head — the auth and the first read here — not the body, so it never cuts a stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use longhaul_core::{JobId, JobRecord, TenantId};
use longhaul_store::Store;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::AppState;
use crate::api::{JobPath, Tenant};
use crate::error::ApiError;
use crate::openapi::{Internal, NotFound, TooManyRequests, Unauthorized, Unavailable};

/// The open event streams of every tenant, and the switch that ends them all.
#[derive(Debug, Clone)]
pub struct EventStreams {
    inner: Arc<Streams>,
}

#[derive(Debug)]
struct Streams {
    max_per_tenant: u32,
    open: Mutex<HashMap<TenantId, u32>>,
    stop: CancellationToken,
}

impl EventStreams {
    /// No stream open yet; at most `max_per_tenant` per tenant at once.
    pub fn new(max_per_tenant: u32) -> Self {
        Self {
            inner: Arc::new(Streams {
                max_per_tenant,
                open: Mutex::new(HashMap::new()),
                stop: CancellationToken::new(),
            }),
        }
    }

    /// How many streams `tenant` has open.
    pub fn open(&self, tenant: &TenantId) -> u32 {
        self.inner.open.lock().unwrap_or_else(PoisonError::into_inner).get(tenant).copied().unwrap_or(0)
    }

    /// Ends every open stream (each at its next step) and every stream opened from now on after
    /// its first event: the producer is stopping, clients reconnect to another replica.
    pub fn close_all(&self) {
        self.inner.stop.cancel();
    }

    /// A token cancelled by [`EventStreams::close_all`]: the producer's other streams (the
    /// console's live views) end on it too.
    pub fn closing(&self) -> CancellationToken {
        self.inner.stop.clone()
    }

    /// A slot for one more stream of `tenant`, unless it has the most allowed open.
    fn acquire(&self, tenant: &TenantId) -> Option<Slot> {
        let mut open = self.inner.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(tenant.clone()).or_insert(0);
        if *count >= self.inner.max_per_tenant {
            return None;
        }
        *count += 1;
        Some(Slot { streams: Arc::clone(&self.inner), tenant: tenant.clone() })
    }
}

/// One open stream of a tenant, counted until dropped (with its stream).
#[derive(Debug)]
struct Slot {
    streams: Arc<Streams>,
    tenant: TenantId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.tenant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.tenant);
            }
        }
    }
}

/// The version of `record` its events carry as their `id`: `updated_at` in microseconds since the
/// epoch (0 before it).
pub fn version(record: &JobRecord) -> u64 {
    u64::try_from(record.updated_at.timestamp_micros()).unwrap_or(0)
}

/// The `Last-Event-ID` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct LastEventIdHeader {
    /// The `id` of the last event the client has: when it is the job's current version, the
    /// current state is not sent again (for a terminal job: `204`). Any other value: the current
    /// state first.
    #[param(rename = "Last-Event-ID", value_type = String, required = false)]
    _last_event_id: Option<String>,
}

/// The request's `Last-Event-ID`, when it is a version (anything else: as if absent).
fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers.get("last-event-id")?.to_str().ok()?.trim().parse().ok()
}

/// `GET /v1/jobs/{job_id}/events`: the tenant's job as `text/event-stream` (see the module
/// documentation). `404` for a job the tenant does not have (another tenant's included), `204`
/// for a terminal job whose current version the client has (`Last-Event-ID`), `429` beyond the
/// tenant's open streams, `503` when storage does not answer — all before the stream opens.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}/events",
    tag = "jobs",
    operation_id = "job_events",
    summary = "Follow a job as server-sent events",
    description = "The job's state as `text/event-stream`: its current record first, then each change, \
        until the job is terminal (`completed`, `failed`, `cancelled`) — that state is sent, and the \
        stream closes.\n\n\
        - `event: job` — `data` is the job record (as `GET /v1/jobs/{job_id}` answers it, `JobRecord`), \
        `id` its version (microseconds; the ids of a stream only increase).\n\
        - `event: error` — `data` is `{\"detail\": …, \"retryable\": …}`; the stream ends. Reconnect \
        with `Last-Event-ID` when `retryable`.\n\
        - `: keep-alive` comments on a quiet stream.\n\n\
        A stream ends after its maximum lifetime (10 minutes by default) or when the producer stops: \
        reconnect with `Last-Event-ID` (an `EventSource` does so by itself). A tenant may have a \
        bounded number of streams open at once (`429` beyond).",
    params(JobPath, LastEventIdHeader),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The stream: `job` events (data: `JobRecord`), then its end.",
            content_type = "text/event-stream", body = String,
            example = "event: job\nid: 1767261600123456\n\
                data: {\"job_id\":\"job_…\",\"status\":\"queued\",…}\n\n"),
        (status = 204, description = "The job is terminal and `Last-Event-ID` is its current version: \
            nothing more will come (an `EventSource` stops reconnecting)."),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn job_events(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    job_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Ok(Path(job_id)) = job_id else { return Err(ApiError::NotFound("job")) };
    let job_id = JobId::parse(job_id).map_err(|_| ApiError::NotFound("job"))?;
    let record = state.store.get_job(&tenant, &job_id).await?.ok_or(ApiError::NotFound("job"))?;
    let current = version(&record);
    let resumed = last_event_id(&headers) == Some(current);
    if resumed && record.status.is_terminal() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let max = state.settings.events_max_per_tenant;
    let Some(slot) = state.events.acquire(&tenant) else {
        return Err(ApiError::TooManyRequests(
            format!(
                "at most {max} event streams may be open at once per tenant; \
                 close one, or retry later"
            ),
            state.settings.retry_after,
        ));
    };
    let shown = serde_json::to_value(&record).map_err(|e| {
        tracing::error!(error = %e, job_id = %job_id, "cannot serialise a job record");
        ApiError::Internal
    })?;
    let first = (!resumed).then(|| job_event(&shown, current));
    let watch = Watch {
        store: state.store.clone(),
        tenant,
        job: job_id,
        poll: state.settings.events_poll,
        read_timeout: state.settings.request_timeout,
        stop: state.events.inner.stop.clone(),
        ends_at: tokio::time::Instant::now() + state.settings.events_max_lifetime,
        shown,
        version: current,
        next: first,
        // A terminal job: its state, then the end (as when a stream sees it become terminal).
        done: record.status.is_terminal(),
        _slot: slot,
    };
    let stream = futures::stream::unfold(watch, Watch::step);
    let keep_alive = KeepAlive::new().interval(state.settings.events_keep_alive).text("keep-alive");
    let mut response = Sse::new(stream).keep_alive(keep_alive).into_response();
    // Ask buffering proxies (nginx) to pass events on as they come.
    response
        .headers_mut()
        .insert(HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no"));
    Ok(response)
}

/// A `job` event: the record `shown` at `version`.
fn job_event(shown: &Value, version: u64) -> Event {
    Event::default().event("job").id(version.to_string()).data(shown.to_string())
}

/// An `error` event: what went wrong, and whether reconnecting may help.
fn error_event(detail: &str, retryable: bool) -> Event {
    Event::default().event("error").data(json!({"detail": detail, "retryable": retryable}).to_string())
}

/// One stream's state: what the client has, what to send next.
struct Watch {
    store: Store,
    tenant: TenantId,
    job: JobId,
    poll: Duration,
    /// Bound on each read of the record.
    read_timeout: Duration,
    stop: CancellationToken,
    /// When the stream ends whatever its job does (`--events-max-lifetime`).
    ends_at: tokio::time::Instant,
    /// The record as the client has it (sent, or named by `Last-Event-ID`), and its version.
    shown: Value,
    version: u64,
    /// The event to send before anything else.
    next: Option<Event>,
    /// Nothing after `next`: the job is terminal, or the stream failed.
    done: bool,
    /// Counts this stream against its tenant's limit until the stream is dropped.
    _slot: Slot,
}

impl Watch {
    /// The next event, once there is one; `None` ends the stream.
    async fn step(mut self) -> Option<(Result<Event, Infallible>, Self)> {
        loop {
            if let Some(event) = self.next.take() {
                return Some((Ok(event), self));
            }
            if self.done {
                return None;
            }
            tokio::select! {
                () = self.stop.cancelled() => return None,
                () = tokio::time::sleep_until(self.ends_at) => return None,
                () = tokio::time::sleep(self.poll) => {}
            }
            self.read().await;
        }
    }

    /// Reads the record: the next event when it changed, or an error event that ends the stream.
    async fn read(&mut self) {
        let read = tokio::time::timeout(self.read_timeout, self.store.get_job(&self.tenant, &self.job)).await;
        let record = match read {
            Ok(Ok(Some(record))) => record,
            Ok(Ok(None)) => return self.fail("job not found: it no longer exists", false),
            Ok(Err(e)) => {
                tracing::warn!(job_id = %self.job, error = %e.report(), "an events stream cannot read its job");
                return self.fail("application storage is unavailable; reconnect with Last-Event-ID", true);
            }
            Err(_) => {
                tracing::warn!(job_id = %self.job, timeout = ?self.read_timeout,
                    "an events stream's read of its job timed out");
                return self.fail("application storage is unavailable; reconnect with Last-Event-ID", true);
            }
        };
        let shown = match serde_json::to_value(&record) {
            Ok(shown) => shown,
            Err(e) => {
                tracing::error!(job_id = %self.job, error = %e, "cannot serialise a job record");
                return self.fail("an unexpected error occurred; it has been logged", false);
            }
        };
        if shown == self.shown {
            return;
        }
        self.version = version(&record).max(self.version.saturating_add(1));
        self.next = Some(job_event(&shown, self.version));
        self.shown = shown;
        self.done = record.status.is_terminal();
    }

    /// Ends the stream with an `error` event.
    fn fail(&mut self, detail: &str, retryable: bool) {
        self.next = Some(error_event(detail, retryable));
        self.done = true;
    }
}
