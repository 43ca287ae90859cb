//! [`ApiError`]: every error answer is `application/problem+json` with a `retryable` flag. Client
//! errors explain themselves field by field; server errors say little to the client and everything
//! to the log. [`ApiProblem`] is that document, and its OpenAPI schema.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use longhaul_queue::QueueError;
use longhaul_store::StoreError;
use serde::Serialize;

/// One invalid field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field (JSON name, `path.ticket_id`, or a header name).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// An error on `field`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An API error.
#[derive(Debug)]
pub enum ApiError {
    /// The request is malformed (unparsable body, bad header, bad query).
    BadRequest(String, Vec<FieldError>),
    /// The request is well-formed but its values are not acceptable.
    Unprocessable(String, Vec<FieldError>),
    /// No valid API key.
    Unauthorized,
    /// No valid operator key (the operator API, `/admin/v1`).
    OperatorUnauthorized,
    /// Authenticated, but not allowed here (a tenant's key on the operator API).
    Forbidden(String),
    /// Missing — or another tenant's, which is answered the same way.
    NotFound(&'static str),
    /// The path exists, but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the resource's state (cancelling a finished job); repeating it
    /// changes nothing.
    Conflict(String),
    /// The body is larger than allowed.
    PayloadTooLarge(usize),
    /// Too many requests of this kind at once (the detail names the limit); try again after the
    /// given delay.
    TooManyRequests(String, Duration),
    /// A dependency is down; try again after the given delay.
    Unavailable(&'static str, Duration),
    /// A bug or an unexpected failure.
    Internal,
}

/// An error answer: an RFC 9457 problem document (`application/problem+json`) with `retryable`,
/// and the fields at fault.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(description = "An error answer (RFC 9457 problem details), served as `application/problem+json`. \
    `retryable` says whether the same request may succeed later (after `Retry-After`, when sent).")]
pub struct ApiProblem {
    /// The problem's type: `/problems/<slug>` (`bad-request`, `validation`, `unauthorized`,
    /// `forbidden`, `not-found`, `method-not-allowed`, `conflict`, `too-large`,
    /// `too-many-requests`, `unavailable`, `internal`).
    #[serde(rename = "type")]
    #[schema(example = "/problems/validation")]
    kind: String,
    /// A short, fixed summary of the type.
    #[schema(example = "Invalid request")]
    title: &'static str,
    /// The HTTP status.
    #[schema(example = 422)]
    status: u16,
    /// What went wrong with this request.
    #[schema(example = "the job is invalid")]
    detail: String,
    /// Whether repeating the same request may succeed (`429`, `503`).
    retryable: bool,
    /// The fields at fault, each with what is wrong (left out when none is named).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            Self::BadRequest(d, _) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request", d.clone()),
            Self::Unprocessable(d, _) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request", d.clone())
            }
            Self::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "a valid API key is required: Authorization: Bearer <key>".into(),
            ),
            Self::OperatorUnauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Unauthorized",
                "a valid operator key is required: Authorization: Bearer <operator key> \
                 (issued by `producer operators create`)"
                    .into(),
            ),
            Self::Forbidden(d) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden", d.clone()),
            Self::NotFound(what) => {
                (StatusCode::NOT_FOUND, "not-found", "Not found", format!("{what} not found"))
            }
            Self::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "Method not allowed",
                "this path does not accept this method".into(),
            ),
            Self::Conflict(d) => (StatusCode::CONFLICT, "conflict", "Conflict", d.clone()),
            Self::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "Payload too large",
                format!("the request body exceeds {limit} bytes"),
            ),
            Self::TooManyRequests(d, _) => {
                (StatusCode::TOO_MANY_REQUESTS, "too-many-requests", "Too many requests", d.clone())
            }
            Self::Unavailable(what, _) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
                format!("{what} is unavailable; retry later"),
            ),
            Self::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
                "an unexpected error occurred; it has been logged".into(),
            ),
        }
    }
}

impl ApiError {
    /// The status and the problem document, as a batch item carries them.
    pub fn problem(&self) -> (StatusCode, serde_json::Value) {
        let (status, slug, title, detail) = self.parts();
        let retryable = matches!(self, Self::Unavailable(..) | Self::TooManyRequests(..));
        let errors = match self {
            Self::BadRequest(_, e) | Self::Unprocessable(_, e) => e.clone(),
            _ => Vec::new(),
        };
        let problem = ApiProblem {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail,
            retryable,
            errors,
        };
        (status, serde_json::to_value(&problem).unwrap_or_default())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, problem) = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Self::Unavailable(_, after) | Self::TooManyRequests(_, after) = self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(after.as_secs().max(1)));
        }
        if matches!(status, StatusCode::UNAUTHORIZED) {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        if e.is_unstorable() {
            // The handlers validate what they store; this is the second line of defence.
            tracing::warn!(error = %e.report(), "the database refused a value of the request");
            Self::Unprocessable("the request holds text the database cannot store (NUL)".into(), Vec::new())
        } else if e.is_retryable() || matches!(e, StoreError::Stopped(_)) {
            // A stopped writer means this process is stopping: another one can take the request.
            tracing::warn!(error = %e.report(), "application storage unavailable");
            Self::Unavailable("application storage", Duration::from_secs(2))
        } else {
            tracing::error!(error = %e.report(), "application storage failed");
            Self::Internal
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        if e.is_retryable() {
            tracing::warn!(error = %longhaul_core::Report(&e), "queue unavailable");
            Self::Unavailable("the queue", Duration::from_secs(2))
        } else {
            tracing::error!(error = %longhaul_core::Report(&e), "queue failed");
            Self::Internal
        }
    }
}
