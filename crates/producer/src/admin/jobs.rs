//! The operator's job routes: every tenant's jobs listed and read, one job cancelled or retried
//! under its owner (through the tenant routes' paths, audited `operator:<name>`), and the bulk
//! retry of failed jobs matching a filter — bounded per request, with a cursor for the rest —
//! with a dry run that only counts.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, Priority, TenantId};
use longhaul_store::{AdminJobFilter, FailedFilter, MAX_PAGE_SIZE, StoreError};
use serde::Deserialize;
use serde_json::Value;

use super::{Operator, bad_query, parsed, time_param};
use crate::api::{ApiJson, JobList, JobPath};
use crate::control::{
    BulkMode, BulkRetry, DEFAULT_BULK_RETRY_LIMIT, MAX_BULK_RETRY_LIMIT, bulk_retry as run_bulk_retry,
};
use crate::error::{ApiError, FieldError};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, OperatorUnauthorized, PayloadTooLarge, Unavailable,
    Unprocessable,
};
use crate::{AppState, Cancel, Retry};

/// `GET /admin/v1/jobs` query. An unknown parameter is `400`; an empty one is as if absent.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only this tenant's jobs.
    #[param(value_type = TenantId, required = false)]
    tenant: Option<String>,
    /// Only jobs of this kind.
    kind: Option<String>,
    /// Only jobs in this status.
    #[param(value_type = JobStatus, required = false)]
    status: Option<String>,
    /// Only jobs whose last failure is of this class (failed jobs, and those waiting for a retry).
    #[param(value_type = ErrorClass, required = false)]
    error_class: Option<String>,
    /// Only jobs of this priority.
    #[param(value_type = Priority, required = false)]
    priority: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[param(value_type = chrono::DateTime<chrono::Utc>, required = false)]
    created_after: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[param(value_type = chrono::DateTime<chrono::Utc>, required = false)]
    created_before: Option<String>,
    /// Only jobs recorded under this key (exact match; up to 1024 bytes). Unlike the other
    /// parameters, an empty key is refused (`400`) rather than read as "every key".
    key: Option<String>,
    /// Jobs per page: 1 to 100 (default 20).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// Where the page starts: the `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn error_class(s: &str) -> Result<ErrorClass, String> {
    ErrorClass::parse(s).map_err(|e| format!("{e}; expected retryable, invalid or alert"))
}

fn kind_name(s: &str) -> Result<String, String> {
    longhaul_core::kind::validate_kind_name(s).map(|()| s.to_owned())
}

/// `GET /admin/v1/jobs?tenant=&kind=&status=&error_class=&priority=&created_after=&created_before=&key=&limit=&cursor=`:
/// the jobs of every tenant (or of `tenant`), newest first, with a stable cursor. An empty
/// parameter is no filter, except `key`: an empty key is refused (`400`) rather than read as
/// "every key", so a lookup whose key went missing does not list everything.
#[utoipa::path(
    get,
    path = "/admin/v1/jobs",
    tag = "operator",
    operation_id = "admin_list_jobs",
    summary = "List every tenant's jobs",
    description = "The jobs of every tenant (or of `tenant`) matching the filters, newest first, a page \
        at a time: pass `next_cursor` back as `cursor` for the next page.",
    params(ListQuery),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "A page of jobs.", body = JobList),
        (status = 400, response = BadRequest),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    _operator: Operator,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let mut errors = Vec::new();
    let filter = AdminJobFilter {
        tenant: parsed("tenant", q.tenant.as_deref(), |t| TenantId::parse(t), &mut errors),
        kind: parsed("kind", q.kind.as_deref(), kind_name, &mut errors),
        status: parsed("status", q.status.as_deref(), JobStatus::parse, &mut errors),
        error_class: parsed("error_class", q.error_class.as_deref(), error_class, &mut errors),
        priority: parsed("priority", q.priority.as_deref(), Priority::parse, &mut errors),
        created_after: time_param("created_after", q.created_after.as_deref(), &mut errors),
        created_before: time_param("created_before", q.created_before.as_deref(), &mut errors),
        key: q.key.and_then(|k| match AdminJobFilter::check_key(&k) {
            Ok(()) => Some(k),
            Err(e) => {
                errors.push(FieldError::new("key", e));
                None
            }
        }),
    };
    let limit = parsed(
        "limit",
        q.limit.as_deref(),
        |l| {
            l.parse::<u32>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or(format!("must be a whole number from 1 to {MAX_PAGE_SIZE}"))
        },
        &mut errors,
    )
    .unwrap_or(20);
    if let Some(c) = q.cursor.as_deref().filter(|c| c.len() > 20 || c.parse::<u64>().is_err()) {
        errors.push(FieldError::new("cursor", format!("{c:?} is not a cursor this API issued")));
    }
    if !errors.is_empty() {
        return Err(ApiError::BadRequest("invalid query parameters".into(), errors));
    }
    let page =
        state.store.list_jobs_admin(&filter, limit, q.cursor.as_deref()).await.map_err(|e| match e {
            e @ StoreError::InvalidCursor(_) => ApiError::BadRequest(e.to_string(), Vec::new()),
            other => other.into(),
        })?;
    Ok(Json(JobList { jobs: page.jobs, next_cursor: page.next_cursor }))
}

/// The job id of a path, or `404`.
fn job_id(path: Result<Path<String>, PathRejection>) -> Result<JobId, ApiError> {
    let Ok(Path(id)) = path else { return Err(ApiError::NotFound("job")) };
    JobId::parse(id).map_err(|_| ApiError::NotFound("job"))
}

/// A job answer with `status` and its `Location` under the operator API.
fn job_response(status: StatusCode, record: JobRecord) -> Response {
    let location = format!("/admin/v1/jobs/{}", record.job_id);
    let mut response = (status, Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /admin/v1/jobs/{job_id}`: any tenant's job.
#[utoipa::path(
    get,
    path = "/admin/v1/jobs/{job_id}",
    tag = "operator",
    operation_id = "admin_get_job",
    summary = "Read any tenant's job",
    params(JobPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The job.", body = JobRecord),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<JobRecord>, ApiError> {
    let job = job_id(path)?;
    state.store.get_job_admin(&job).await?.map(Json).ok_or(ApiError::NotFound("job"))
}

/// The tenant owning `job`, or `404`.
async fn owner(state: &AppState, job: &JobId) -> Result<TenantId, ApiError> {
    state.store.job_owner(job).await?.ok_or(ApiError::NotFound("job"))
}

fn not_found_job(e: StoreError) -> ApiError {
    match e {
        StoreError::NotFound(_) => ApiError::NotFound("job"),
        other => other.into(),
    }
}

/// `POST /admin/v1/jobs/{job_id}/cancel`: as the tenant route (`200` cancelled, `202` requested,
/// `409` finished), for any tenant's job, audited `operator:<name>`.
#[utoipa::path(
    post,
    path = "/admin/v1/jobs/{job_id}/cancel",
    tag = "operator",
    operation_id = "admin_cancel_job",
    summary = "Cancel any tenant's job",
    description = "As the tenant's cancel (`POST /v1/jobs/{job_id}/cancel`), for any tenant's job; \
        audited `operator:<name>`.",
    params(JobPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "Cancelled (now, or before).", body = JobRecord,
            headers(("Location" = String, description = "The job: `/admin/v1/jobs/{job_id}`."))),
        (status = 202, description = "Running: the cancel is requested; its worker ends it.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/admin/v1/jobs/{job_id}`."))),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn cancel(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let job = job_id(path)?;
    let tenant = owner(&state, &job).await?;
    let outcome = crate::cancel(&state.store, &state.registry, &state.queues, &tenant, &job, &operator.by())
        .await
        .map_err(not_found_job)?;
    match outcome {
        Cancel::Cancelled(record) | Cancel::AlreadyCancelled(record) => {
            Ok(job_response(StatusCode::OK, record))
        }
        Cancel::Requested(record) => Ok(job_response(StatusCode::ACCEPTED, record)),
        Cancel::Finished(record) => Err(ApiError::Conflict(format!(
            "job {} is already {}: only a scheduled, queued or running job can be cancelled",
            record.job_id, record.status
        ))),
    }
}

/// `POST /admin/v1/jobs/{job_id}/retry`: as the tenant route (`202` with the `queued` record,
/// `409` for a job that is not failed or cancelled, `503` when the queue did not take it), for any
/// tenant's job, audited `operator:<name>`.
#[utoipa::path(
    post,
    path = "/admin/v1/jobs/{job_id}/retry",
    tag = "operator",
    operation_id = "admin_retry_job",
    summary = "Retry any tenant's failed or cancelled job",
    description = "As the tenant's retry (`POST /v1/jobs/{job_id}/retry`), for any tenant's job; \
        audited `operator:<name>`.",
    params(JobPath),
    security(("operator_key" = [])),
    responses(
        (status = 202, description = "Back in the queue: the record, `queued`.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/admin/v1/jobs/{job_id}`."))),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn retry(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let job = job_id(path)?;
    let tenant = owner(&state, &job).await?;
    let budget = state.settings.max_attempts;
    let by = operator.by();
    let outcome = crate::retry(&state.store, &state.registry, &state.queues, &tenant, &job, budget, &by)
        .await
        .map_err(not_found_job)?;
    match outcome {
        Retry::Requeued { record, enqueued: Ok(()) } => Ok(job_response(StatusCode::ACCEPTED, record)),
        Retry::Requeued { record, enqueued: Err(e) } => {
            tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e),
                "enqueue failed; the record stays queued for the reconciler");
            Err(ApiError::Unavailable("the queue", state.settings.retry_after))
        }
        Retry::NotRetryable(record) => Err(ApiError::Conflict(format!(
            "job {} is {}: only a failed or cancelled job can be retried",
            record.job_id, record.status
        ))),
    }
}

/// `POST /admin/v1/jobs/retry` body: the filter (each field optional), how many to take and from
/// where, and whether to only count. `limit` and `after` are checked by hand, for a `422` naming
/// the field.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRetryRequest {
    /// Only this tenant's failed jobs.
    #[schema(value_type = Option<TenantId>)]
    tenant: Option<String>,
    /// Only failed jobs of this kind.
    kind: Option<String>,
    /// Only failed jobs of this error class.
    #[schema(value_type = Option<ErrorClass>)]
    error_class: Option<String>,
    /// Only jobs created at or after this time (RFC 3339).
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    created_after: Option<String>,
    /// Only jobs created before this time (RFC 3339).
    #[schema(value_type = Option<chrono::DateTime<chrono::Utc>>)]
    created_before: Option<String>,
    /// At most this many jobs this request: 1 to 10 000 (default 1 000).
    #[schema(value_type = Option<u32>, minimum = 1, maximum = 10_000)]
    limit: Option<Value>,
    /// Where to go on: the `next` of the previous answer (absent or `null`: the start). Not on a
    /// dry run.
    #[schema(value_type = Option<u64>)]
    after: Option<Value>,
    /// Only count the matching failed jobs; change nothing.
    #[serde(default)]
    dry_run: bool,
}

/// `limit` of a bulk retry: a whole number from 1 to [`MAX_BULK_RETRY_LIMIT`]; absent or `null`:
/// [`DEFAULT_BULK_RETRY_LIMIT`].
fn bulk_limit(value: Option<&Value>) -> Result<u32, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(DEFAULT_BULK_RETRY_LIMIT),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=MAX_BULK_RETRY_LIMIT).contains(n))
            .ok_or_else(|| {
                FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_BULK_RETRY_LIMIT}; got {v}"),
                )
            }),
    }
}

/// `after` of a bulk retry: the `next` of a previous answer (a whole number); absent or `null`:
/// the start.
fn bulk_after(value: Option<&Value>) -> Result<Option<i64>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().and_then(|n| i64::try_from(n).ok()).map(Some).ok_or_else(|| {
            FieldError::new(
                "after",
                format!("must be the `next` of a previous answer (a whole number), or null; got {v}"),
            )
        }),
    }
}

/// `POST /admin/v1/jobs/retry` `{tenant?, kind?, error_class?, created_after?, created_before?,
/// limit?, after?, dry_run?}`: up to `limit` (1–10 000, default 1 000) failed jobs matching the
/// filter back in the queue, in creation order from cursor `after` (a fresh budget each, in batches
/// of 100, each batch enqueued before the next) — `200` with `{matched, retried, not_enqueued,
/// dry_run, next}`: pass `next` back as `after` for the rest, until it is `null`. Each request is
/// bounded, so it ends well within the request timeout; repeating a request (after a timeout, say)
/// is safe: jobs already put back are no longer failed, and a batch put back whose enqueues a
/// timeout cut short is left `queued` for the reconciler. `not_enqueued` counts those put back that
/// this producer did not enqueue (the queue did not answer, or a kind it does not know): the
/// reconciler enqueues them. With `"dry_run": true`, `matched` counts every match and nothing
/// changes (`after` is refused: a dry run takes no cursor). `422` names a bad field.
#[utoipa::path(
    post,
    path = "/admin/v1/jobs/retry",
    tag = "operator",
    operation_id = "admin_bulk_retry",
    summary = "Retry failed jobs in bulk",
    description = "Puts up to `limit` failed jobs matching the filter back in the queue, in creation \
        order from `after`, each with a fresh budget; answers how many matched and were retried, and \
        `next`: pass it back as `after` for the rest, until it is `null`. Each request is bounded, \
        and repeating one is safe. `dry_run` only counts every match. Audited `operator:<name>`.",
    request_body(content = BulkRetryRequest, content_type = "application/json"),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "What was done.", body = BulkRetry),
        (status = 400, response = BadRequest),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn bulk_retry(
    State(state): State<AppState>,
    operator: Operator,
    ApiJson(request): ApiJson<BulkRetryRequest>,
) -> Result<Json<BulkRetry>, ApiError> {
    let mut errors = Vec::new();
    let filter = FailedFilter {
        tenant: parsed("tenant", request.tenant.as_deref(), |t| TenantId::parse(t), &mut errors),
        kind: parsed("kind", request.kind.as_deref(), kind_name, &mut errors),
        error_class: parsed("error_class", request.error_class.as_deref(), error_class, &mut errors),
        created_after: time_param("created_after", request.created_after.as_deref(), &mut errors),
        created_before: time_param("created_before", request.created_before.as_deref(), &mut errors),
    };
    let limit = bulk_limit(request.limit.as_ref()).map_err(|e| errors.push(e)).unwrap_or_default();
    let after = bulk_after(request.after.as_ref()).map_err(|e| errors.push(e)).ok().flatten();
    if request.dry_run && after.is_some() {
        errors.push(FieldError::new("after", "a dry run counts every match: it takes no cursor"));
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable("the bulk retry is invalid".into(), errors));
    }
    let mode =
        if request.dry_run { BulkMode::DryRun } else { BulkMode::Retry { after: after.unwrap_or(0), limit } };
    let done = run_bulk_retry(
        &state.store,
        &state.registry,
        &state.queues,
        &filter,
        mode,
        state.settings.max_attempts,
        &operator.by(),
    )
    .await?;
    Ok(Json(done))
}
