//! The HTTP handlers and their extractors. Order of every write: validate → write the pending
//! record → enqueue. Invalid input creates neither a record nor a queue entry.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longhaul_core::{IdempotencyKey, JobId, JobRecord, JobStatus, NewJob, TenantId, TicketId};
use longhaul_store::{MAX_PAGE_SIZE, StoreError, Ticket};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{ApiError, FieldError};
use crate::{AppState, MAX_BODY_BYTES};

/// Longest ticket subject, in characters.
pub const MAX_SUBJECT_LEN: usize = 500;
/// Longest ticket body, in characters.
pub const MAX_TICKET_BODY_LEN: usize = 32_768;

/// Why text with NUL is refused — on both backends alike, although SQLite could store it, so a
/// request valid in development is valid in production.
const NUL_MESSAGE: &str = "must not contain NUL (\\u0000): the database cannot store it";

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
        match Json::<serde_json::Value>::from_request(req, state).await {
            Ok(Json(v)) if !v.is_object() => {
                Err(ApiError::BadRequest("the JSON body must be an object".into(), Vec::new()))
            }
            Ok(Json(v)) => serde_json::from_value(v)
                .map(Self)
                .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}"), Vec::new())),
            Err(JsonRejection::BytesRejection(_)) => Err(ApiError::PayloadTooLarge(MAX_BODY_BYTES)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "expected a JSON body: Content-Type: application/json".into(),
                Vec::new(),
            )),
            Err(e) => Err(ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text()), Vec::new())),
        }
    }
}

/// `POST /v1/tickets`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    ticket_id: String,
    subject: String,
    #[serde(default)]
    body: String,
}

/// A ticket as the API shows it.
#[derive(Debug, Serialize)]
pub struct TicketOutput {
    ticket_id: TicketId,
    revision: u64,
    subject: String,
    body: String,
    triage: Option<serde_json::Value>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl From<Ticket> for TicketOutput {
    fn from(t: Ticket) -> Self {
        Self {
            ticket_id: t.ticket_id,
            revision: t.revision,
            subject: t.subject,
            body: t.body,
            triage: t.triage,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// `POST /v1/tickets`: create a ticket, or update it and bump its revision.
pub async fn upsert_ticket(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ApiJson(input): ApiJson<TicketInput>,
) -> Result<Response, ApiError> {
    let mut errors = Vec::new();
    let ticket_id = TicketId::parse(&input.ticket_id)
        .map_err(|e| errors.push(FieldError::new("ticket_id", e.to_string())))
        .ok();
    let subject_len = input.subject.trim().chars().count();
    if subject_len == 0 {
        errors.push(FieldError::new("subject", "must not be empty"));
    } else if input.subject.chars().count() > MAX_SUBJECT_LEN {
        errors.push(FieldError::new("subject", format!("must be at most {MAX_SUBJECT_LEN} characters")));
    } else if input.subject.contains('\0') {
        errors.push(FieldError::new("subject", NUL_MESSAGE));
    }
    if input.body.chars().count() > MAX_TICKET_BODY_LEN {
        errors.push(FieldError::new("body", format!("must be at most {MAX_TICKET_BODY_LEN} characters")));
    } else if input.body.contains('\0') {
        errors.push(FieldError::new("body", NUL_MESSAGE));
    }
    let (Some(ticket_id), true) = (ticket_id, errors.is_empty()) else {
        return Err(ApiError::Unprocessable("the ticket is invalid".into(), errors));
    };
    let ticket = state.store.upsert_ticket(&tenant, &ticket_id, &input.subject, &input.body).await?;
    let status = if ticket.revision == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(TicketOutput::from(ticket))).into_response())
}

/// `GET /v1/tickets/{ticket_id}`.
pub async fn get_ticket(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ticket_id: Result<Path<String>, PathRejection>,
) -> Result<Json<TicketOutput>, ApiError> {
    let Ok(Path(ticket_id)) = ticket_id else { return Err(ApiError::NotFound("ticket")) };
    let ticket_id = TicketId::parse(ticket_id).map_err(|_| ApiError::NotFound("ticket"))?;
    let ticket = state.store.get_ticket(&tenant, &ticket_id).await?.ok_or(ApiError::NotFound("ticket"))?;
    Ok(Json(ticket.into()))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
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

fn job_response(status: StatusCode, record: JobRecord) -> Response {
    let location = format!("/v1/jobs/{}", record.job_id);
    let mut response = (status, Json(record)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `POST /v1/tickets/{ticket_id}/triage`: `202` with a new job, `200` with the existing one.
pub async fn triage(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ticket_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(ticket_id) = ticket_id.map_err(|_| {
        ApiError::BadRequest(
            "invalid ticket id".into(),
            vec![FieldError::new("ticket_id", "must be UTF-8 text")],
        )
    })?;
    let ticket_id = TicketId::parse(ticket_id).map_err(|e| {
        ApiError::BadRequest("invalid ticket id".into(), vec![FieldError::new("ticket_id", e.to_string())])
    })?;
    let key = idempotency_key(&headers)?;
    let ticket = state.tickets.get(&tenant, &ticket_id).await?.ok_or(ApiError::NotFound("ticket"))?;
    let job_id = match &key {
        Some(key) => JobId::for_idempotency_key(&tenant, key),
        None => JobId::for_ticket(&tenant, &ticket_id, ticket.revision),
    };
    let new_job = NewJob {
        job_id: job_id.clone(),
        tenant_id: tenant.clone(),
        ticket_id: ticket_id.clone(),
        ticket_revision: ticket.revision,
        max_attempts: state.settings.max_attempts,
    };
    // The record first, then — only for a new job — the queue entry. The worker's spans become
    // children of this request's span.
    let traceparent = longhaul_service::trace::traceparent(&tracing::Span::current());
    let submitted =
        crate::submit(&state.store, Some(&state.pending), &state.queue, new_job, traceparent).await?;
    let record = submitted.record;
    if !submitted.created {
        if record.ticket_id != ticket_id {
            return Err(ApiError::Unprocessable(
                "this Idempotency-Key was already used for another ticket".into(),
                vec![FieldError::new(
                    "Idempotency-Key",
                    format!("already used for ticket {}", record.ticket_id),
                )],
            ));
        }
        if let Err(e) = submitted.enqueued {
            // A live job the queue does not hold, and Redis is still out: the client retries again.
            tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e), "re-enqueue failed; the record stays queued for the reconciler");
            return Err(ApiError::Unavailable("the queue", state.settings.retry_after));
        }
        return Ok(job_response(StatusCode::OK, record));
    }
    if let Err(e) = submitted.enqueued {
        // The record stays queued; the reconciler enqueues it once Redis is back.
        tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e), "enqueue failed; the record stays queued for the reconciler");
        return Err(ApiError::Unavailable("the queue", state.settings.retry_after));
    }
    Ok(job_response(StatusCode::ACCEPTED, record))
}

/// `GET /v1/jobs/{job_id}`.
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

/// `GET /v1/jobs` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// A page of jobs.
#[derive(Debug, Serialize)]
pub struct JobList {
    jobs: Vec<JobRecord>,
    next_cursor: Option<String>,
}

/// `GET /v1/jobs?status=&limit=&cursor=`: the tenant's jobs, newest first.
pub async fn list_jobs(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<JobList>, ApiError> {
    let Query(q) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text()), Vec::new()))?;
    let mut errors = Vec::new();
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => JobStatus::parse(s).map_err(|e| errors.push(FieldError::new("status", e))).ok(),
    };
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
    let page =
        state.store.list_jobs(&tenant, status, limit, q.cursor.as_deref()).await.map_err(|e| match e {
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
