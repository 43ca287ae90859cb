//! `longhaul-producer`: the HTTP API (and the library behind the CLI) that validates a request
//! against its job kind, writes the pending job record, and only then enqueues into the kind's
//! queue — plus the reconciler that enqueues again any live record the queue has lost.
//!
//! - [`app`] — the axum router (tests drive it with `oneshot`, `main` serves it), from
//!   [`routes()`]: each route declared once, with its OpenAPI operation;
//! - [`openapi`] — the OpenAPI 3.1 document of the API, generated from [`routes()`] and the
//!   registry's kinds (`GET /openapi.json`, `producer openapi`, `docs/openapi.json`);
//! - [`console`] — the operator console: HTML pages at `/console` (operator login, live updates),
//!   outside the API's document;
//! - [`admin`] — the operator API (`/admin/v1/...`, operator keys), and [`control`] — the
//!   operator's operations it shares with the CLI;
//! - [`api`] — the job routes and the extractors (bearer auth, problem-document JSON rejections);
//! - [`events`] — a job's status and progress as server-sent events (`GET /v1/jobs/{id}/events`);
//! - [`schedule`] — a submission's `run_at` and `priority`, checked alike for the API and the CLI;
//! - [`tickets`] — the triage kind's own routes (tickets, and a ticket's triage as a thin form
//!   of the generic submit), mounted when the registry has the triage kind;
//! - [`cli`] — the `producer` command line, for the shipped binary and a user's own;
//! - [`error`] — [`error::ApiError`] → `application/problem+json` with `retryable`;
//! - [`cancel`] — a tenant's or an operator's cancel (the API's and the CLI's); [`retry`] — a
//!   failed or cancelled job back in the queue under the same id;
//! - [`reconcile_once`] / [`run_reconciler`] — no leader needed: enqueue is idempotent by job id;
//! - [`startup`] — `producer serve` from flags: build (connect, migrate, bind, wire), then run.

pub mod admin;
pub mod api;
pub mod cli;
pub mod console;
pub mod control;
pub mod error;
pub mod events;
pub mod openapi;
pub mod schedule;
pub mod startup;
pub mod tickets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use longhaul_core::{JobId, JobRecord, JobStatus, NewJob, Registry, TenantId};
use longhaul_queue::{Event, EventKind, JobEntry, Queue, QueueError};
use longhaul_service::batch::Fallback;
use longhaul_service::{Batcher, health};
use longhaul_store::{Store, StoreError, WriteOutcome};
use longhaul_triage::storage::TicketReader;
use tokio_util::sync::CancellationToken;
use tower_http::timeout::TimeoutLayer;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt as _};
use utoipa_axum::routes;

/// Largest accepted request body, except on the job routes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Largest accepted body of `POST /v1/jobs` (one job's input).
pub const MAX_JOB_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Largest accepted body of `POST /v1/jobs/batch`.
pub const MAX_BATCH_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Most jobs in one `POST /v1/jobs/batch`.
pub const MAX_BATCH_JOBS: usize = 1000;

/// API behaviour.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Attempts each new job is allowed, unless its kind sets its own.
    pub max_attempts: u32,
    /// `Retry-After` sent with 503 answers, and with a 429 beyond a tenant's events streams.
    pub retry_after: Duration,
    /// Upper bound on every request (on an events stream: on its opening and on each read).
    pub request_timeout: Duration,
    /// How often an events stream reads its job's record.
    pub events_poll: Duration,
    /// Time between keep-alive comments on a quiet events stream.
    pub events_keep_alive: Duration,
    /// Longest life of one events stream (the client then reconnects with `Last-Event-ID`).
    pub events_max_lifetime: Duration,
    /// Events streams a tenant may have open at once.
    pub events_max_per_tenant: u32,
    /// The operator console's settings.
    pub console: console::ConsoleSettings,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            retry_after: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            events_poll: Duration::from_millis(250),
            events_keep_alive: Duration::from_secs(15),
            events_max_lifetime: Duration::from_secs(600),
            events_max_per_tenant: 16,
            console: console::ConsoleSettings::default(),
        }
    }
}

/// The queues of a registry's kinds, all over one connection.
#[derive(Debug, Clone)]
pub struct Queues {
    by_name: Arc<BTreeMap<String, Queue>>,
}

impl Queues {
    /// Every queue of `registry`'s kinds, as siblings of `base` (same Redis, same settings).
    ///
    /// # Errors
    /// A kind's queue name that Redis keys cannot hold.
    pub fn new(base: &Queue, registry: &Registry) -> Result<Self, QueueError> {
        let mut by_name = BTreeMap::new();
        for name in registry.queues() {
            by_name.insert(name.to_owned(), base.sibling(name)?);
        }
        Ok(Self { by_name: Arc::new(by_name) })
    }

    /// Queue `name`.
    pub fn get(&self, name: &str) -> Option<&Queue> {
        self.by_name.get(name)
    }

    /// The queue of kind `kind`.
    pub fn of_kind(&self, registry: &Registry, kind: &str) -> Option<&Queue> {
        self.get(registry.options(kind)?.queue)
    }

    /// Every queue.
    pub fn all(&self) -> impl Iterator<Item = &Queue> {
        self.by_name.values()
    }
}

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Application storage.
    pub store: Store,
    /// The kinds submissions are validated against.
    pub registry: Registry,
    /// Their queues.
    pub queues: Queues,
    /// Behaviour.
    pub settings: ApiSettings,
    /// Records concurrent requests' pending jobs together (group commit).
    pub pending: PendingWriter,
    /// Reads concurrent triage requests' tickets together.
    pub tickets: TicketReader,
    /// The open events streams (`GET /v1/jobs/{job_id}/events`), counted per tenant.
    pub events: events::EventStreams,
    /// The API's OpenAPI document for `registry`'s kinds, as `GET /openapi.json` serves it.
    pub openapi: Bytes,
}

impl AppState {
    /// The state for `store`, the kinds of `registry` and their `queues`; starts the
    /// pending-record writer and the ticket reader (needs a Tokio runtime).
    pub fn new(store: Store, registry: Registry, queues: Queues, settings: ApiSettings) -> Self {
        let pending = PendingWriter::spawn(store.clone());
        let tickets = TicketReader::spawn(store.clone());
        let events = events::EventStreams::new(settings.events_max_per_tenant);
        let openapi = Bytes::from(openapi::pretty(&registry));
        Self { store, registry, queues, settings, pending, tickets, events, openapi }
    }
}

/// Writes the pending records of concurrent requests together (group commit, see
/// [`Store::create_pending_many`]); each request waits for its own commit. The task ends when the
/// last handle is dropped.
#[derive(Debug, Clone)]
pub struct PendingWriter {
    batcher: Batcher<NewJob, Result<(JobRecord, bool), StoreError>>,
}

/// Pending records of many requests in one call; one by one if it fails as a whole ([`Fallback`]).
struct PendingRecords(Store);

impl Fallback<NewJob> for PendingRecords {
    type Item = (JobRecord, bool);
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "pending records"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, jobs: &[NewJob]) -> Result<Vec<Result<(JobRecord, bool), StoreError>>, StoreError> {
        self.0.create_pending_many(jobs.to_vec()).await
    }

    async fn one(&self, job: &NewJob) -> Result<(JobRecord, bool), StoreError> {
        self.0.create_pending(job.clone()).await
    }
}

impl PendingWriter {
    /// Starts the writer task.
    pub fn spawn(store: Store) -> Self {
        Self { batcher: Batcher::spawn_with_fallback(64, PendingRecords(store)) }
    }

    /// Records `job` (or finds the existing record), after the batch it joined has committed.
    ///
    /// # Errors
    /// As [`Store::create_pending`].
    pub async fn create(&self, job: NewJob) -> Result<(JobRecord, bool), StoreError> {
        self.batcher.call(job).await.unwrap_or(Err(StoreError::Stopped("pending-record writer")))
    }
}

/// The API's routes — the tenant API, the operator API ([`admin::routes`]), the triage kind's
/// ticket routes when `registry` has it ([`tickets::routes`]), and `GET /openapi.json` — each
/// declared once, with its handler's OpenAPI operation: [`app`] serves the router, [`openapi`]
/// documents the paths.
pub fn routes(registry: &Registry) -> OpenApiRouter<AppState> {
    let mut routes = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(api::list_jobs, api::submit_job).layer(DefaultBodyLimit::max(MAX_JOB_BODY_BYTES)))
        .routes(routes!(api::submit_batch).layer(DefaultBodyLimit::max(MAX_BATCH_BODY_BYTES)))
        .routes(routes!(api::get_job))
        .routes(routes!(api::cancel_job))
        .routes(routes!(api::retry_job))
        .routes(routes!(events::job_events))
        .merge(admin::routes())
        .routes(routes!(openapi::openapi_json));
    if registry.options(longhaul_triage::KIND).is_some() {
        routes = routes.merge(tickets::routes());
    }
    routes
}

/// The API router, health endpoints included.
pub fn app(state: AppState) -> Router {
    let queues: Vec<Queue> = state.queues.all().cloned().collect();
    let ready = health::dependencies(Some(&state.store), &queues);
    let timeout = state.settings.request_timeout;
    let (routes, _) = routes(&state.registry).split_for_parts();
    let routes = routes.merge(console::routes());
    routes
        .fallback(api::not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state)
        .layer(axum::middleware::from_fn(trace_request))
        .merge(health::router(ready))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // Bounds the time to a response's head, not its body: an events stream, whose handler
        // answers once it has read the job, is not cut (see `events`).
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout))
}

/// What [`submit`] did.
#[derive(Debug)]
pub struct Submitted {
    /// The job record (new, or the existing one for a duplicate).
    pub record: JobRecord,
    /// Whether this call created it.
    pub created: bool,
    /// Whether the queue holds the job: for a created job, whether it took the entry; for an
    /// existing live job, whether its entry is there or could be put back (a first request's
    /// enqueue failed, and the client retried as told). `Err` leaves the record for the reconciler.
    pub enqueued: Result<(), longhaul_queue::QueueError>,
}

/// The guide's order for one submission: write the pending record (or find the existing one
/// with the same job id), and only if it is new, enqueue it into `queue` (its kind's) — into the
/// job's partition when the queue is partitioned ([`Queue::route`]) — with its priority; a job
/// recorded `scheduled` (its `run_at` in the future) goes to the delayed set, which releases it at
/// `run_at`. An existing job that is still live but has no trace in the queue (its first request's
/// enqueue failed) is enqueued again, idempotently, so a client's retry after a `503` runs it at
/// once (a scheduled one: at its `run_at`) instead of after the reconciler's delay; the existing
/// record is returned unchanged, whatever this request's schedule. Used by the API and the CLI.
///
/// # Errors
/// When the record cannot be written; an enqueue failure is reported in [`Submitted::enqueued`].
pub async fn submit(
    store: &Store,
    pending: Option<&PendingWriter>,
    queue: &Queue,
    job: NewJob,
    traceparent: Option<String>,
) -> Result<Submitted, StoreError> {
    let mut entry = JobEntry {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        kind: Some(job.kind.clone()),
        attempt: 1,
        enqueued_at_ms: longhaul_queue::now_ms(),
        traceparent,
        priority: job.priority,
    };
    let (record, created) = match pending {
        Some(writer) => writer.create(job).await?,
        None => store.create_pending(job).await?,
    };
    let enqueued = if created {
        let due = scheduled_due(&record);
        if let Some(due) = due {
            entry.enqueued_at_ms = due;
        }
        // Due already (the time passed while the record was written): at once.
        match (queue.route(entry.job_id.as_str()), due.filter(|due| *due > longhaul_queue::now_ms())) {
            (Ok(partition), None) => partition.enqueue(&entry).await.map(|_| ()),
            (Ok(partition), Some(due)) => partition.enqueue_at(&entry, due).await.map(|_| ()),
            (Err(e), _) => Err(e),
        }
    } else if record.status.is_terminal() {
        Ok(())
    } else {
        match restore(queue, &record).await {
            Ok(true) => {
                tracing::info!(job_id = %record.job_id, "a repeated request enqueued a job the queue did not hold");
                Ok(())
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        }
    };
    Ok(Submitted { record, created, enqueued })
}

/// What a retry request came to ([`retry`]).
#[derive(Debug)]
pub enum Retry {
    /// Back in the queue (`queued`, a fresh budget); `enqueued` says whether the queue took the
    /// entry (if not, the reconciler enqueues it).
    Requeued {
        /// The record.
        record: JobRecord,
        /// Whether the queue holds the job.
        enqueued: Result<(), QueueError>,
    },
    /// Not failed or cancelled: nothing changed.
    NotRetryable(JobRecord),
}

/// Puts failed or cancelled job `job` of `tenant` back in the queue under the same id at `by`'s
/// request: a fresh budget of attempts (its kind's, else `default_budget`), the record `queued`,
/// then the entry for the next attempt enqueued into its kind's queue. Durable steps that
/// finished stay done: the next attempt reuses their results. Used by the API and the CLI.
///
/// # Errors
/// [`StoreError::NotFound`] for a job the tenant does not have; storage errors.
pub async fn retry(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    tenant: &longhaul_core::TenantId,
    job: &longhaul_core::JobId,
    default_budget: u32,
    by: &str,
) -> Result<Retry, StoreError> {
    let current = store.get_job(tenant, job).await?.ok_or(StoreError::NotFound("job"))?;
    let budget = registry.options(&current.kind).and_then(|o| o.max_attempts).unwrap_or(default_budget);
    match store.requeue(tenant, job, budget, by).await? {
        longhaul_store::WriteOutcome::Applied(record) => {
            let enqueued = match queues.of_kind(registry, &record.kind) {
                Some(queue) => restore(queue, &record).await.map(|_| ()),
                // A kind this producer does not know: the reconciler of one that does enqueues it.
                None => Ok(()),
            };
            tracing::info!(job_id = %record.job_id, tenant_id = %record.tenant_id, by, "job put back in the queue");
            Ok(Retry::Requeued { record, enqueued })
        }
        longhaul_store::WriteOutcome::Refused { current, .. } => Ok(Retry::NotRetryable(current)),
    }
}

/// What a cancel request came to ([`cancel`]).
#[derive(Debug)]
pub enum Cancel {
    /// The job was scheduled or queued (a retry waiting included): it is `cancelled` now and never
    /// starts.
    Cancelled(JobRecord),
    /// The job is running: its cancel is requested (`cancel_requested_at`), its worker ends it.
    Requested(JobRecord),
    /// The job was cancelled already: nothing changed.
    AlreadyCancelled(JobRecord),
    /// The job has finished otherwise (`completed` or `failed`): nothing changed.
    Finished(JobRecord),
}

/// Cancels `tenant`'s job `job` at `by`'s request (`tenant`, `operator`; audited with it): a
/// scheduled or queued job is cancelled at once, and a `cancelled` event goes to its kind's queue's events
/// stream (its partition's) — a publish failure is logged, not returned: the record is the truth;
/// a running job's cancel is requested; a finished job is left as it is. Used by the API and the
/// CLI.
///
/// # Errors
/// [`StoreError::NotFound`] when the tenant has no such job (another tenant's included); storage
/// errors.
pub async fn cancel(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    tenant: &TenantId,
    job: &JobId,
    by: &str,
) -> Result<Cancel, StoreError> {
    let mut outcome = store.cancel(tenant, job, by).await?;
    if let WriteOutcome::Refused { current, .. } = &outcome
        && !current.status.is_terminal()
    {
        // The job did not exist when the write looked, and did when the store read it back (it
        // was being created): cancel what is there now.
        outcome = store.cancel(tenant, job, by).await?;
    }
    Ok(match outcome {
        WriteOutcome::Applied(record) if record.status == JobStatus::Cancelled => {
            tracing::info!(job_id = %record.job_id, tenant_id = %record.tenant_id, by, "job cancelled");
            unschedule(registry, queues, &record).await;
            publish_cancelled(registry, queues, &record).await;
            Cancel::Cancelled(record)
        }
        WriteOutcome::Applied(record) => {
            tracing::info!(job_id = %record.job_id, tenant_id = %record.tenant_id, by,
                "cancel requested; the job's worker ends it");
            Cancel::Requested(record)
        }
        WriteOutcome::Refused { current, .. } if current.status == JobStatus::Cancelled => {
            Cancel::AlreadyCancelled(current)
        }
        WriteOutcome::Refused { current, .. } => Cancel::Finished(current),
    })
}

/// Drops the delayed entry of `record`, a job cancelled before it ever started, if it was
/// scheduled (a `run_at` and no attempt): otherwise that entry would stay until its `run_at` and
/// make a retry or a resubmission of the job look like a duplicate. A failure is logged: the entry
/// then fires at its `run_at`, and its delivery drops the cancelled job.
async fn unschedule(registry: &Registry, queues: &Queues, record: &JobRecord) {
    let (Some(run_at), 0) = (record.run_at, record.attempts) else { return };
    let Some(queue) = queues.of_kind(registry, &record.kind) else { return };
    let Ok(due) = u64::try_from(run_at.timestamp_millis()) else { return };
    let dropped = match queue.route(record.job_id.as_str()) {
        Ok(partition) => partition.unschedule(&record.job_id, 1, due).await,
        Err(e) => Err(e),
    };
    if let Err(e) = dropped {
        tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e),
            "the job is cancelled, but its scheduled entry could not be dropped; its delivery drops it");
    }
}

/// Publishes the `cancelled` event of `record`, a job cancelled while queued, on its kind's
/// queue (the job's partition); a failure is logged.
async fn publish_cancelled(registry: &Registry, queues: &Queues, record: &JobRecord) {
    let Some(queue) = queues.of_kind(registry, &record.kind) else {
        tracing::warn!(job_id = %record.job_id, kind = %record.kind,
            "a job of a kind this producer does not know was cancelled; no event published");
        return;
    };
    let now = longhaul_queue::now_ms();
    let mut event = Event::new(
        EventKind::Cancelled,
        record.job_id.as_str(),
        record.tenant_id.as_str(),
        record.attempts,
        now,
    );
    event.total_ms =
        u64::try_from(record.created_at.timestamp_millis()).ok().map(|at| now.saturating_sub(at));
    let published = match queue.route(record.job_id.as_str()) {
        Ok(partition) => partition.publish(&event).await,
        Err(e) => Err(e),
    };
    if let Err(e) = published {
        tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e),
            "the job is cancelled, but its event could not be published");
    }
}

/// One span per API request, continuing the caller's trace when it sends a `traceparent` header;
/// a slow one ([`SLOW_REQUEST`]) is logged.
async fn trace_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument as _;
    let span = tracing::info_span!(
        "http.request",
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    if let Some(parent) = request.headers().get("traceparent").and_then(|v| v.to_str().ok()) {
        longhaul_service::trace::set_parent(&span, parent);
    }
    let mut timing = RequestTiming {
        started: std::time::Instant::now(),
        request: Some((request.method().clone(), request.uri().clone())),
    };
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    let took = timing.started.elapsed();
    if let Some((method, uri)) = timing.request.take()
        && took >= SLOW_REQUEST
        && response.headers().get(header::CONTENT_TYPE).is_none_or(|t| t != "text/event-stream")
    {
        tracing::warn!(%method, path = uri.path(), status = response.status().as_u16(),
            took_ms = took.as_millis() as u64, "a slow request");
    }
    response
}

/// A request being answered: when it is dropped unanswered — the request timeout cut it (the
/// client gets a `503`) or the client left — after [`SLOW_REQUEST`] or more, that is logged too.
struct RequestTiming {
    started: std::time::Instant,
    /// Method and URI, until answered.
    request: Option<(axum::http::Method, axum::http::Uri)>,
}

impl Drop for RequestTiming {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        if let Some((method, uri)) = self.request.take()
            && took >= SLOW_REQUEST
        {
            tracing::warn!(%method, path = uri.path(), took_ms = took.as_millis() as u64,
                "a slow request ended unanswered (the request timeout, or the client left)");
        }
    }
}

/// A request whose response head took at least this long is logged (a warning with its method,
/// path, status and time), so a latency spike can be told apart from the records' own timings.
const SLOW_REQUEST: Duration = Duration::from_millis(200);

/// Enqueues again every live record (scheduled, queued or running) not updated for `older_than`
/// whose job has no trace in Redis (in its kind's queue, its partition) — the enqueue failed, or
/// Redis lost its data; a scheduled job goes back to the delayed set until its `run_at` (see
/// [`restore`]). Several replicas may run it at once: enqueue is idempotent by job id. A record of
/// a kind `registry` does not know is left alone (logged). Returns how many jobs were restored.
///
/// # Errors
/// When storage or Redis cannot be reached.
pub async fn reconcile_once(
    store: &Store,
    registry: &Registry,
    queues: &Queues,
    older_than: Duration,
) -> anyhow::Result<usize> {
    let cutoff =
        chrono::Utc::now() - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::zero());
    let mut after = 0;
    let mut restored = 0;
    loop {
        let batch =
            store.stale_live_jobs(cutoff, after, 500).await.map_err(|e: StoreError| anyhow::anyhow!(e))?;
        let Some((last, _)) = batch.last() else { break };
        after = *last;
        for (_, record) in batch {
            let Some(queue) = queues.of_kind(registry, &record.kind) else {
                tracing::warn!(job_id = %record.job_id, kind = %record.kind,
                    "reconciler skips a live job of a kind this producer does not know");
                continue;
            };
            if restore(queue, &record).await? {
                tracing::info!(job_id = %record.job_id, tenant_id = %record.tenant_id, status = %record.status,
                    "reconciler restored a job the queue had lost");
                restored += 1;
            }
        }
    }
    Ok(restored)
}

/// Enqueues live `record`'s job (into its partition of `queue`, its kind's, with its priority)
/// unless the queue holds a live trace of it — atomically, so concurrent callers add one entry. The
/// entry asks for the attempt after the last one started. A lost retry whose backoff has not run
/// out, and a scheduled job whose `run_at` has not come, wait in the delayed set until then.
/// Returns whether an entry was added.
///
/// # Errors
/// When Redis cannot be reached in time.
pub async fn restore(queue: &Queue, record: &JobRecord) -> Result<bool, longhaul_queue::QueueError> {
    let queue = queue.route(record.job_id.as_str())?;
    let scheduled = scheduled_due(record);
    let entry = JobEntry {
        job_id: record.job_id.clone(),
        tenant_id: record.tenant_id.clone(),
        kind: Some(record.kind.clone()),
        attempt: record.attempts + 1,
        enqueued_at_ms: scheduled
            .unwrap_or_else(|| u64::try_from(record.created_at.timestamp_millis()).unwrap_or(0)),
        traceparent: None,
        priority: record.priority,
    };
    let retry = record.next_attempt_at.filter(|at| *at > chrono::Utc::now()).map(epoch_ms);
    match scheduled.filter(|due| *due > longhaul_queue::now_ms()).or(retry) {
        Some(due) => queue.enqueue_at(&entry, due).await,
        None => queue.enqueue(&entry).await,
    }
}

/// When a `scheduled` record's entry is due (its `run_at`, ms since the epoch); `None` for any
/// other status. The entry of a scheduled job counts as enqueued then, so the latency figures
/// measure from the time it was due.
fn scheduled_due(record: &JobRecord) -> Option<u64> {
    (record.status == JobStatus::Scheduled).then_some(record.run_at).flatten().map(epoch_ms)
}

/// `at` in ms since the epoch (0 before it).
fn epoch_ms(at: chrono::DateTime<chrono::Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).unwrap_or(0)
}

/// Runs [`reconcile_once`] every `every` until `stop`.
pub async fn run_reconciler(
    store: Store,
    registry: Registry,
    queues: Queues,
    every: Duration,
    older_than: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match reconcile_once(&store, &registry, &queues, older_than).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(restored = n, "reconciler pass"),
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "reconciler pass failed; will retry"),
        }
    }
}
