//! The triage kind's own routes: its tickets (`POST /v1/tickets`, `GET /v1/tickets/{id}`), stored
//! by the triage crate ([`longhaul_triage::storage`]), and `POST /v1/tickets/{id}/triage`, a thin
//! form of the generic submit that reads the ticket's current revision and submits a `triage` job
//! for it. Mounted only when the registry has the triage kind ([`routes()`]).

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use longhaul_core::{JobRecord, TicketId};
use longhaul_triage::storage::{self, Ticket};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::AppState;
use crate::api::{
    Answer, ApiJson, IdempotencyKeyHeader, Tenant, idempotency_key, job_response, prepare, submit_prepared,
};
use crate::error::{ApiError, FieldError};
use crate::openapi::{
    BadRequest, Internal, NotFound, PayloadTooLarge, Unauthorized, Unavailable, Unprocessable,
};

/// The ticket routes, each with its OpenAPI operation (tag `tickets`, security `tenant_key`).
pub fn routes() -> utoipa_axum::router::OpenApiRouter<AppState> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::default()
        .routes(routes!(upsert_ticket))
        .routes(routes!(get_ticket))
        .routes(routes!(triage))
}

/// Longest ticket subject, in characters.
pub const MAX_SUBJECT_LEN: usize = 500;
/// Longest ticket body, in characters.
pub const MAX_TICKET_BODY_LEN: usize = 32_768;

/// Why text with NUL is refused — on both backends alike, although SQLite could store it, so a
/// request valid in development is valid in production.
const NUL_MESSAGE: &str = "must not contain NUL (\\u0000): the database cannot store it";

/// `POST /v1/tickets`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TicketInput {
    /// The ticket's id, the tenant's own.
    #[schema(value_type = TicketId)]
    ticket_id: String,
    /// Its subject: not blank, at most 500 characters, no NUL.
    #[schema(min_length = 1, max_length = 500)]
    subject: String,
    /// Its body: at most 32 768 characters, no NUL (default empty).
    #[serde(default)]
    #[schema(max_length = 32_768)]
    body: String,
}

/// A ticket as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TicketOutput {
    /// The ticket's id.
    ticket_id: TicketId,
    /// Its revision: 1 when created, one more at each update.
    revision: u64,
    /// Its subject.
    subject: String,
    /// Its body.
    body: String,
    /// The last triage's result, once a triage job has applied one.
    #[schema(required = true)]
    triage: Option<serde_json::Value>,
    /// When it was created.
    created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    updated_at: chrono::DateTime<chrono::Utc>,
}

/// A ticket's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TicketPath {
    /// The ticket's id.
    #[param(rename = "ticket_id", value_type = TicketId)]
    _ticket_id: String,
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
#[utoipa::path(
    post,
    path = "/v1/tickets",
    tag = "tickets",
    operation_id = "upsert_ticket",
    summary = "Create or update a ticket",
    description = "Creates the ticket (revision 1), or updates it and bumps its revision.",
    request_body(content = TicketInput, content_type = "application/json"),
    security(("tenant_key" = [])),
    responses(
        (status = 201, description = "Created.", body = TicketOutput),
        (status = 200, description = "Updated: a new revision.", body = TicketOutput),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
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
    let ticket =
        storage::upsert_ticket(&state.store, &tenant, &ticket_id, &input.subject, &input.body).await?;
    let status = if ticket.revision == 1 { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(TicketOutput::from(ticket))).into_response())
}

/// `GET /v1/tickets/{ticket_id}`.
#[utoipa::path(
    get,
    path = "/v1/tickets/{ticket_id}",
    tag = "tickets",
    operation_id = "get_ticket",
    summary = "Read a ticket",
    description = "The ticket at its current revision, with its last triage.",
    params(TicketPath),
    security(("tenant_key" = [])),
    responses(
        (status = 200, description = "The ticket.", body = TicketOutput),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get_ticket(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    ticket_id: Result<Path<String>, PathRejection>,
) -> Result<Json<TicketOutput>, ApiError> {
    let Ok(Path(ticket_id)) = ticket_id else { return Err(ApiError::NotFound("ticket")) };
    let ticket_id = TicketId::parse(ticket_id).map_err(|_| ApiError::NotFound("ticket"))?;
    let ticket =
        storage::get_ticket(&state.store, &tenant, &ticket_id).await?.ok_or(ApiError::NotFound("ticket"))?;
    Ok(Json(ticket.into()))
}

/// `POST /v1/tickets/{ticket_id}/triage`: a `triage` job for the ticket's current revision —
/// `202` with a new job, `200` with the existing one.
#[utoipa::path(
    post,
    path = "/v1/tickets/{ticket_id}/triage",
    tag = "tickets",
    operation_id = "triage_ticket",
    summary = "Triage a ticket",
    description = "Submits a `triage` job for the ticket's current revision: the generic submit \
        (`POST /v1/jobs`) in the ticket's terms. The same revision again is the same job.",
    params(TicketPath, IdempotencyKeyHeader),
    security(("tenant_key" = [])),
    responses(
        (status = 202, description = "A new triage job.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 200, description = "The job this request made before.", body = JobRecord,
            headers(("Location" = String, description = "The job: `/v1/jobs/{job_id}`."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
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
    let input = json!({ "ticket_id": ticket_id, "revision": ticket.revision });
    let schedule = crate::schedule::Schedule::default();
    let (prepared, job) = prepare(&state, &tenant, longhaul_triage::KIND, input, key, schedule)
        .map_err(|e| ApiError::Unprocessable("the triage request is invalid".into(), vec![e]))?;
    // The worker's spans become children of this request's span.
    let traceparent = longhaul_service::trace::traceparent(&tracing::Span::current());
    // A repeat under the same key is the same request if it is for the same ticket (the ticket may
    // have moved to a newer revision since: the client gets the job its key first made).
    let same = |r: &longhaul_core::JobRecord| {
        r.kind == longhaul_triage::KIND
            && r.input.get("ticket_id").and_then(|t| t.as_str()) == Some(ticket_id.as_str())
    };
    match submit_prepared(&state, &prepared, job, traceparent, same).await {
        Answer::Job(status, record) => Ok(job_response(status, record)),
        // The same key for another ticket (or revision) is the generic mismatch, said in the
        // ticket's terms.
        Answer::Error(ApiError::Unprocessable(_, errors))
            if errors.iter().any(|e| e.field == "Idempotency-Key") =>
        {
            Err(ApiError::Unprocessable(
                "this Idempotency-Key was already used for another ticket".into(),
                vec![FieldError::new("Idempotency-Key", "already used for another ticket")],
            ))
        }
        Answer::Error(e) => Err(e),
    }
}
