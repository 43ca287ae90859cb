//! The job routes and the extractors every route uses. Order of every write: validate (the kind,
//! its input) → write the pending record → enqueue into the kind's queue. Invalid input creates
//! neither a record nor a queue entry. A cancel, likewise, writes the record first and only then
//! publishes its event. Each handler carries its OpenAPI operation (`#[utoipa::path]`, see
//! [`crate::openapi`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longhaul_core::kind::{InputError, Prepared};
use longhaul_core::{ErrorClass, IdempotencyKey, JobId, JobRecord, JobStatus, NewJob, Priority, TenantId};
use longhaul_store::{JobFilter, MAX_PAGE_SIZE, StoreError};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{ApiError, ApiProblem, FieldError};
use crate::openapi::{
    BadRequest, Conflict, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
};
use crate::schedule::Schedule;
use crate::{AppState, Cancel, MAX_BATCH_BODY_BYTES, MAX_BATCH_JOBS, MAX_BODY_BYTES, MAX_JOB_BODY_BYTES};

/// The tenant behind the request's bearer key.
pub struct Tenant(pub TenantId);

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or(ApiError::Unauthorized)?;
        match state.store.authenticate(key).await? {
            Some(tenant) => Ok(Self(tenant)),
            None => Err(ApiError::Unauthorized),
        }
    }
}

/// A JSON body whose rejections are problem documents.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = match req.uri().path() {
            "/v1/jobs/batch" => MAX_BATCH_BODY_BYTES,
            "/v1/jobs" => MAX_JOB_BODY_BYTES,
            _ => MAX_BODY_BYTES,
        };
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) if !v.is_object() => {
                Err(ApiError::BadRequest("the JSON body must be an object".into(), Vec::new()))
            }
            Ok(Json(v)) => serde_json::from_value(v)
                .map(Self)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}"), Vec::new())),
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge(limit))
            }
            Err(JsonRejection::BytesRejection(e)) => {
                Err(ApiError::BadRequest(format!("cannot read the body: {}", e.body_text()), Vec::new()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "expected a JSON body: Content-Type: application/json".into(),
                Vec::new(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text()), Vec::new())),
        }
    }
}

/// The request's `Idempotency-Key`, if it sent one.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(raw) = headers.get("idempotency-key") else { return Ok(None) };
    let invalid = |message: String| {
        ApiError::BadRequest(
            "invalid Idempotency-Key header".into(),
            vec![FieldError::new("Idempotency-Key", message)],
        )
    };
    let text = raw.to_str().map_err(|_| invalid("must be visible ASCII".into()))?;
    IdempotencyKey::parse(text).map(Some).map_err(|e| invalid(e.to_string()))
}

/// A job answer: `status`, the record, and its `Location`.
pub(crate) fn job_response(status: StatusCode, record: JobRecord) -> Response {
    let location = format!("/v1/jobs/{}", record.job_id);
    let mut response = (status, Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /v1/jobs` body, and one item of `POST /v1/jobs/batch`. `run_at` and `priority` are
/// checked by [`Schedule`]. Its OpenAPI schema is the template of each kind's submission (see
/// [`crate::openapi::document`]).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "A job to submit: its kind, that kind's input, and when and how urgently it may \
    run. One variant per job kind, told apart by `kind`.")]
pub struct JobRequest {
    /// The job's kind: one of the kinds this producer accepts.
    kind: String,
    /// The job's input, as its kind takes it.
    input: serde_json::Value,
    /// In a batch item only: the item's own idempotency key (a single submit sends the
    /// `Idempotency-Key` header instead, and is refused with this field).
    #[serde(default)]
    #[schema(value_type = Option<IdempotencyKey>)]
    idempotency_key: Option<String>,
    /// When the job may start, RFC 3339, at most 366 days ahead: the job is `scheduled` until then
    /// (absent, now or in the past: it is `queued` at once).
    #[serde(default)]
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    run_at: Option<serde_json::Value>,
    /// `high`, `normal` (the default) or `low`: its place among the waiting jobs of its queue.
    #[serde(default)]
    #[schema(value_type = Option<Priority>)]
    priority: Option<serde_json::Value>,
}

impl JobRequest {
    /// The request's schedule, judged now.
    fn schedule(&self) -> Result<Schedule, Vec<FieldError>> {
        Schedule::from_body(self.run_at.as_ref(), self.priority.as_ref(), chrono::Utc::now())
    }
}

/// Validates a submission of `kind` with `input` for `tenant` against the registry: the job's id,
/// key, queue and the record to write, with `schedule`. A rejection names the field (`kind`,
/// `input.…`).
pub(crate) fn prepare(
    state: &AppState,
    tenant: &TenantId,
    kind: &str,
    input: serde_json::Value,
    key: Option<IdempotencyKey>,
    schedule: Schedule,
) -> Result<(Prepared, NewJob), FieldError> {
    let prepared = state
        .registry
        .prepare(tenant, kind, input, key, longhaul_core::kind::random_key)
        .map_err(|InputError { field, message }| FieldError::new(field, message))?;
    if let Err(e) = reject_nul(&prepared.input) {
        return Err(FieldError::new(
            format!("input{e}"),
            "must not contain NUL (\\u0000): the database cannot store it",
        ));
    }
    let job = NewJob {
        job_id: prepared.job_id.clone(),
        tenant_id: tenant.clone(),
        kind: prepared.kind.to_owned(),
        key: prepared.key.as_str().to_owned(),
        input: prepared.input.clone(),
        max_attempts: prepared.max_attempts.unwrap_or(state.settings.max_attempts),
        run_at: schedule.run_at,
        priority: schedule.priority,
    };
    Ok((prepared, job))
}

/// `Err(path)` when a string in `value` holds NUL: refused on both backends alike, although
/// SQLite could store it, so a request valid in development is valid in production.
pub(crate) fn reject_nul(value: &serde_json::Value) -> Result<(), String> {
    match value {
        serde_json::Value::String(s) if s.contains('\0') => Err(String::new()),
        serde_json::Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| reject_nul(v).map_err(|p| format!("[{i}]{p}")))
        }
        serde_json::Value::Object(map) => {
            map.iter().try_for_each(|(k, v)| reject_nul(v).map_err(|p| format!(".{k}{p}")))
        }
        _ => Ok(()),
    }
}

/// What one submission came to.
#[allow(clippy::large_enum_variant)] // one per submission, moved straight into the response
pub(crate) enum Answer {
    /// `202` (new) or `200` (existing), with the record.
    Job(StatusCode, JobRecord),
    /// An error answer.
    Error(ApiError),
}

impl Answer {
    /// The answer with its field errors renamed by `rename` (a batch item's fields under `jobs[i]`).
    fn map_fields(self, rename: impl Fn(FieldError) -> FieldError) -> Self {
        match self {
            Self::Error(ApiError::Unprocessable(detail, errors))
                if errors.iter().any(|e| !e.field.starts_with("jobs[")) =>
            {
                let errors = errors
                    .into_iter()
                    .map(|e| if e.field.starts_with("jobs[") { e } else { rename(e) })
                    .collect();
                Self::Error(ApiError::Unprocessable(detail, errors))
            }
            other => other,
        }
    }
}

/// Records and enqueues a prepared job; a duplicate of an earlier request under the same key (the
/// client's, or the one the kind derived) must be the same request (`same_request` of the existing
/// record), else `422`.
pub(crate) async fn submit_prepared(
    state: &AppState,
    prepared: &Prepared,
    job: NewJob,
    traceparent: Option<String>,
    same_request: impl FnOnce(&JobRecord) -> bool,
) -> Answer {
    let Some(queue) = state.queues.get(prepared.queue) else {
        tracing::error!(kind = prepared.kind, queue = prepared.queue, "a registered kind has no queue");
        return Answer::Error(ApiError::Internal);
    };
    let submitted = match crate::submit(&state.store, Some(&state.pending), queue, job, traceparent).await {
        Ok(s) => s,
        Err(e) => return Answer::Error(e.into()),
    };
    let record = submitted.record;
    if !submitted.created && !same_request(&record) {
        return Answer::Error(match prepared.key {
            longhaul_core::JobKey::Client(_) => ApiError::Unprocessable(
                "this Idempotency-Key was already used for another request".into(),
                vec![FieldError::new(
                    "Idempotency-Key",
                    format!(
                        "already used for job {} of kind {} with other input",
                        record.job_id, record.kind
                    ),
                )],
            ),
            // The kind derived the same key from other input: the job it names is not this
            // request's (e.g. the same document with another chunk size).
            _ => ApiError::Unprocessable(
                "a job with this input's key exists with other input".into(),
                vec![FieldError::new(
                    "input",
                    format!(
                        "job {} has the same key ({}) but other input; send an Idempotency-Key to make a new job",
                        record.job_id,
                        prepared.key.as_str()
                    ),
                )],
            ),
        });
    }
    if let Err(e) = submitted.enqueued {
        // The record stays queued; the reconciler enqueues it once Redis is back (a repeated
        // request enqueues it at once).
        tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e), "enqueue failed; the record stays queued for the reconciler");
        // Whatever the cause, the job is recorded and will run once the queue takes it (the
        // reconciler, or this client's retry): "try again later" is the truthful answer.
        return Answer::Error(ApiError::Unavailable("the queue", state.settings.retry_after));
    }
    Answer::Job(if submitted.created { StatusCode::ACCEPTED } else { StatusCode::OK }, record)
}

/// Validates a whole submission — its schedule, then its kind and input — naming every bad field:
/// the job to record, or the `422`.
fn prepare_request(
    state: &AppState,
    tenant: &TenantId,
    request: JobRequest,
    key: Option<IdempotencyKey>,
) -> Result<(Prepared, NewJob), Vec<FieldError>> {
    let (schedule, mut errors) = match request.schedule() {
        Ok(schedule) => (schedule, Vec::new()),
        Err(errors) => (Schedule::default(), errors),
    };
    match prepare(state, tenant, &request.kind, request.input, key, schedule) {
        Ok(prepared) if errors.is_empty() => Ok(prepared),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.insert(0, e);
            Err(errors)
        }
    }
}

/// `POST /v1/jobs` `{kind, input, run_at?, priority?}` with an optional `Idempotency-Key`: `202`
/// with a new job (`scheduled` when `run_at` is in the future, else `queued`), `200` with the
/// existing one (unchanged, whatever this request's schedule); `422` naming the field for an
/// unknown kind, invalid input, a bad `run_at` (not RFC 3339, more than 366 days ahead) or
/// `priority` (nothing written, nothing enqueued).
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "submit_job",
    summary = "Submit a job",
    description = "Validates the submission against its kind, records the job, then enqueues it. The \
        same request again (the same `Idempotency-Key`, or — without one — the key the kind derives \
        from the input) finds the job it made: `200` with it, unchanged. Nothing is written for a \
        request that is refused.",
    params(IdempotencyKeyHeader),
    request_body(content = JobRequest, content_type = "application/json"),
    security(("tenant_key" = [])),
    responses(
        (status = 202, description = "A new job: `queued`, or `scheduled` when `run_at` is in the future.",
            body = JobRecord, headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 200, description = "The job this request made before (unchanged, whatever this \
            request's schedule).",
            body = JobRecord, headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn submit_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(request): ApiJson<JobRequest>,
) -> Result<Response, ApiError> {
    let key = idempotency_key(&headers)?;
    if request.idempotency_key.is_some() {
        return Err(ApiError::BadRequest(
            "send the key in the Idempotency-Key header".into(),
            vec![FieldError::new("idempotency_key", "only batch items carry their key in the body")],
        ));
    }
    let (prepared, job) = prepare_request(&state, &tenant, request, key)
        .map_err(|errors| ApiError::Unprocessable("the job is invalid".into(), errors))?;
    let traceparent = longhaul_service::trace::traceparent(&tracing::Span::current());
    let same = |r: &JobRecord| r.kind == prepared.kind && r.input == prepared.input;
    match submit_prepared(&state, &prepared, job, traceparent, same).await {
        Answer::Job(status, record) => Ok(job_response(status, record)),
        Answer::Error(e) => Err(e),
    }
}

/// `POST /v1/jobs/batch` body.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The jobs, 1 to 1000, each with its own `idempotency_key` if it has one.
    // Decoded item by item, so one malformed item is that item's `422`.
    #[schema(value_type = Vec<JobRequest>, min_items = 1, max_items = 1000)]
    jobs: Vec<serde_json::Value>,
}

/// One item's result in a batch answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchItem {
    /// The HTTP status this item would have had on its own.
    #[schema(example = 202)]
    status: u16,
    /// The job, for `202` and `200`.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<JobRecord>,
    /// The problem, otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<ApiProblem>)]
    error: Option<serde_json::Value>,
}

/// `POST /v1/jobs/batch` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BatchResponse {
    /// One result per submitted item, in order.
    results: Vec<BatchItem>,
}

/// The `Idempotency-Key` request header.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// The client's key for this request: the same key again (with the same request) finds the job
    /// it made instead of making another. 1–255 visible ASCII characters.
    #[param(rename = "Idempotency-Key", value_type = IdempotencyKey, required = false)]
    _key: Option<String>,
}

/// `POST /v1/jobs/batch` `{jobs: [{kind, input, idempotency_key?, run_at?, priority?}, …]}`: up to
/// 1 000 jobs, each idempotent on its own and answered on its own (`results[i]` for `jobs[i]`); one bad item does
/// not reject the others. `200` with the results, unless the batch itself is malformed.
#[utoipa::path(
    post,
    path = "/v1/jobs/batch",
    tag = "jobs",
    operation_id = "submit_batch",
    summary = "Submit up to 1000 jobs",
    description = "Each item is a submission of its own — validated, recorded, enqueued, idempotent by \
        its own `idempotency_key` (or the key its kind derives) — and answered on its own: \
        `results[i]` for `jobs[i]`, with the status it would have had alone. One bad item does not \
        refuse the others. The batch takes no `Idempotency-Key` header (`400`).",
    request_body(content = BatchRequest, content_type = "application/json"),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "One result per item, in order.", body = BatchResponse),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn submit_batch(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    headers: HeaderMap,
    ApiJson(request): ApiJson<BatchRequest>,
) -> Result<Json<BatchResponse>, ApiError> {
    // A batch has no key of its own: each item carries its own. A retried batch whose items have
    // no key would create them all again, so a header that looks like it protects the batch is
    // refused rather than ignored.
    if headers.contains_key("idempotency-key") {
        return Err(ApiError::BadRequest(
            "a batch takes no Idempotency-Key header".into(),
            vec![FieldError::new("Idempotency-Key", "give each item its own idempotency_key instead")],
        ));
    }
    if request.jobs.is_empty() || request.jobs.len() > MAX_BATCH_JOBS {
        return Err(ApiError::Unprocessable(
            "the batch is invalid".into(),
            vec![FieldError::new(
                "jobs",
                format!("must hold 1 to {MAX_BATCH_JOBS} jobs, got {}", request.jobs.len()),
            )],
        ));
    }
    let traceparent = longhaul_service::trace::traceparent(&tracing::Span::current());
    // Every item at once: their pending records join the same group commits.
    let items = request.jobs.into_iter().enumerate().map(|(i, item)| {
        let (state, tenant, traceparent) = (&state, &tenant, traceparent.clone());
        async move {
            let field = |e: FieldError| {
                let name = if e.field == "Idempotency-Key" { "idempotency_key".to_owned() } else { e.field };
                FieldError::new(format!("jobs[{i}].{name}"), e.message)
            };
            let mut item: JobRequest = match serde_path_to_error::deserialize(item) {
                Ok(item) => item,
                Err(e) => {
                    let path = e.path().to_string();
                    let name = if path == "." { format!("jobs[{i}]") } else { format!("jobs[{i}].{path}") };
                    let e = FieldError::new(name, e.into_inner().to_string());
                    return Answer::Error(ApiError::Unprocessable("the job is invalid".into(), vec![e]));
                }
            };
            let key = match item.idempotency_key.take().map(IdempotencyKey::parse).transpose() {
                Ok(key) => key,
                Err(e) => {
                    let e = FieldError::new("idempotency_key", e.to_string());
                    return Answer::Error(ApiError::Unprocessable(
                        "the job is invalid".into(),
                        vec![field(e)],
                    ));
                }
            };
            match prepare_request(state, tenant, item, key) {
                Ok((prepared, job)) => {
                    let same = |r: &JobRecord| r.kind == prepared.kind && r.input == prepared.input;
                    submit_prepared(state, &prepared, job, traceparent, same).await
                }
                Err(errors) => Answer::Error(ApiError::Unprocessable(
                    "the job is invalid".into(),
                    errors.into_iter().map(field).collect(),
                )),
            }
            .map_fields(field)
        }
    });
    let results = futures::future::join_all(items)
        .await
        .into_iter()
        .map(|answer| match answer {
            Answer::Job(status, record) => {
                BatchItem { status: status.as_u16(), job: Some(record), error: None }
            }
            Answer::Error(e) => {
                let (status, problem) = e.problem();
                BatchItem { status: status.as_u16(), job: None, error: Some(problem) }
            }
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

/// `GET /v1/jobs/{job_id}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{job_id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "Read a job",
    description = "The job's record: status, stage, progress, attempts, output or error.",
    params(JobPath),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The job.", body = JobRecord),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let Ok(Path(job_id)) = job_id else { return Err(ApiError::NotFound("job")) };
    let job_id = JobId::parse(job_id).map_err(|_| ApiError::NotFound("job"))?;
    let record = state.store.get_job(&tenant, &job_id).await?.ok_or(ApiError::NotFound("job"))?;
    Ok(Json(record))
}

/// `POST /v1/jobs/{job_id}/cancel`: a scheduled or queued job is cancelled at once (`200` with the
/// cancelled record; it never starts); a running job's cancel is requested (`202` with the record, still
/// `running`, with `cancel_requested_at`: its worker ends it); a cancelled job is `200` as it is
/// (idempotent); a completed or failed one is `409`, unchanged. Another tenant's job is `404`,
/// like a missing one.
#[utoipa::path(
    post,
    path = "/v1/jobs/{job_id}/cancel",
    tag = "jobs",
    operation_id = "cancel_job",
    summary = "Cancel a job",
    description = "A scheduled or queued job is cancelled at once and never starts; a running job's \
        cancel is requested, and its worker ends it (`cancel_requested_at` is set, the status stays \
        `running` until then). Cancelling a cancelled job changes nothing.",
    params(JobPath),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "Cancelled (now, or before).", body = JobRecord,
            headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 202, description = "Running: the cancel is requested; its worker ends it.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn cancel_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(job_id)) = job_id else { return Err(ApiError::NotFound("job")) };
    let job_id = JobId::parse(job_id).map_err(|_| ApiError::NotFound("job"))?;
    let outcome = crate::cancel(&state.store, &state.registry, &state.queues, &tenant, &job_id, "tenant")
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => ApiError::NotFound("job"),
            other => other.into(),
        })?;
    Ok(match outcome {
        Cancel::Cancelled(record) | Cancel::AlreadyCancelled(record) => job_response(StatusCode::OK, record),
        Cancel::Requested(record) => job_response(StatusCode::ACCEPTED, record),
        Cancel::Finished(record) => {
            return Err(ApiError::Conflict(format!(
                "job {} is already {}: only a scheduled, queued or running job can be cancelled",
                record.job_id, record.status
            )));
        }
    })
}

/// `POST /v1/jobs/{job_id}/retry`: a failed or cancelled job back in the queue under the same id
/// with a fresh attempt budget — `202` with the `queued` record; `409` for a job that is queued,
/// running or completed; `404` for another tenant's job; `503` when the queue could not take it
/// (the record is queued: the reconciler enqueues it).
#[utoipa::path(
    post,
    path = "/v1/jobs/{job_id}/retry",
    tag = "jobs",
    operation_id = "retry_job",
    summary = "Retry a failed or cancelled job",
    description = "Puts the job back in its queue under the same id, with a fresh budget of attempts. \
        Durable steps that finished stay done: the next attempt reuses their results. Only a failed \
        or cancelled job can be retried (`409` otherwise).",
    params(JobPath),
    security(("tenant_key" = [])),
    responses(
        (status = 202, description = "Back in the queue: the record, `queued`.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn retry_job(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    job_id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Ok(Path(job_id)) = job_id else { return Err(ApiError::NotFound("job")) };
    let job_id = JobId::parse(job_id).map_err(|_| ApiError::NotFound("job"))?;
    let budget = state.settings.max_attempts;
    let outcome =
        crate::retry(&state.store, &state.registry, &state.queues, &tenant, &job_id, budget, "tenant")
            .await
            .map_err(|e| match e {
                StoreError::NotFound(_) => ApiError::NotFound("job"),
                other => other.into(),
            })?;
    match outcome {
        crate::Retry::Requeued { record, enqueued: Ok(()) } => Ok(job_response(StatusCode::ACCEPTED, record)),
        crate::Retry::Requeued { record, enqueued: Err(e) } => {
            tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e), "enqueue failed; the record stays queued for the reconciler");
            Err(ApiError::Unavailable("the queue", state.settings.retry_after))
        }
        crate::Retry::NotRetryable(record) => Err(ApiError::Conflict(format!(
            "job {} is {}: only a failed or cancelled job can be retried",
            record.job_id, record.status
        ))),
    }
}

/// A job's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    /// The job's id (`job_…`). Any other text is a job that does not exist (`404`).
    #[param(rename = "job_id", value_type = JobId)]
    _job_id: String,
}

/// `GET /v1/jobs` query. An unknown parameter is `400`; an empty one is as if absent.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only jobs of this kind.
    kind: Option<String>,
    /// Only jobs in this status.
    #[param(value_type = JobStatus, required = false)]
    status: Option<String>,
    /// Only jobs whose last failure is of this class (failed jobs, and those waiting for a retry).
    #[param(value_type = ErrorClass, required = false)]
    error_class: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = chrono::DateTime<chrono::Utc>, required = false)]
    created_after: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = chrono::DateTime<chrono::Utc>, required = false)]
    created_before: Option<String>,
    /// Only jobs of this priority.
    #[param(value_type = Priority, required = false)]
    priority: Option<String>,
    /// Jobs per page: 1 to 100 (default 20).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Where the page starts: the `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct JobList {
    /// The jobs, newest first.
    pub(crate) jobs: Vec<JobRecord>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub(crate) next_cursor: Option<String>,
}

/// An RFC 3339 time from query parameter `field`.
fn time_param(
    field: &'static str,
    value: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let value = value.filter(|v| !v.is_empty())?;
    match chrono::DateTime::parse_from_rfc3339(value) {
        Ok(t) => Some(t.with_timezone(&chrono::Utc)),
        Err(e) => {
            errors.push(FieldError::new(field, format!("{value:?} is not an RFC 3339 time: {e}")));
            None
        }
    }
}

/// `GET /v1/jobs?kind=&status=&error_class=&priority=&created_after=&created_before=&limit=&cursor=`:
/// the tenant's jobs, newest first, with a stable cursor.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "List the tenant's jobs",
    description = "The tenant's jobs matching the filters, newest first, a page at a time: pass \
        `next_cursor` back as `cursor` for the next page (stable while jobs are added).",
    params(ListQuery),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "A page of jobs.", body = JobList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn list_jobs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text()), Vec::new()))?;
    let mut errors = Vec::new();
    let kind = q.kind.filter(|k| !k.is_empty());
    if let Some(k) = kind.as_deref()
        && let Err(e) = longhaul_core::kind::validate_kind_name(k)
    {
        errors.push(FieldError::new("kind", e));
    }
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => JobStatus::parse(s).map_err(|e| errors.push(FieldError::new("status", e))).ok(),
    };
    let error_class = match q.error_class.as_deref() {
        None | Some("") => None,
        Some(s) => ErrorClass::parse(s)
            .map_err(|e| {
                errors.push(FieldError::new(
                    "error_class",
                    format!("{e}; expected retryable, invalid or alert"),
                ))
            })
            .ok(),
    };
    let priority = match q.priority.as_deref() {
        None | Some("") => None,
        Some(p) => Priority::parse(p).map_err(|e| errors.push(FieldError::new("priority", e))).ok(),
    };
    let created_after = time_param("created_after", q.created_after.as_deref(), &mut errors);
    let created_before = time_param("created_before", q.created_before.as_deref(), &mut errors);
    let limit = match q.limit.as_deref() {
        None | Some("") => 20,
        Some(l) => match l.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"),
                ));
                20
            }
        },
    };
    if let Some(c) = q.cursor.as_deref().filter(|c| c.len() > 20 || c.parse::<u64>().is_err()) {
        errors.push(FieldError::new("cursor", format!("{c:?} is not a cursor this API issued")));
    }
    if !errors.is_empty() {
        return Err(ApiError::BadRequest("invalid query parameters".into(), errors));
    }
    let filter = JobFilter { kind, status, error_class, created_after, created_before, priority };
    let page =
        state.store.list_jobs(&tenant, &filter, limit, q.cursor.as_deref()).await.map_err(|e| match e {
            // Only a cursor is the client's fault.
            e @ StoreError::InvalidCursor(_) => ApiError::BadRequest(e.to_string(), Vec::new()),
            other => other.into(),
        })?;
    Ok(Json(JobList { jobs: page.jobs, next_cursor: page.next_cursor }))
}

/// Any other path.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("route")
}

/// A known path with a method it does not accept.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
