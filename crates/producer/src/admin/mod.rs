//! The operator API, `/admin/v1/...`, authenticated by operator keys (`Authorization: Bearer
//! <operator key>`, issued by `producer operators create`): no key or an unknown one is `401`; a
//! tenant's API key is `403` (it is a key, but not an operator's). Every route acts across
//! tenants, and every change is audited with `operator:<name>`.
//!
//! - [`jobs`] — `GET /admin/v1/jobs`, `GET /admin/v1/jobs/{id}`, `POST …/{id}/cancel`,
//!   `POST …/{id}/retry`, and the bulk `POST /admin/v1/jobs/retry` (bounded per request, with a
//!   cursor for the rest, and a dry run);
//! - [`queues`] — `GET /admin/v1/queues` (backlog and pauses), `POST /admin/v1/queues/{queue}/pause`
//!   and `…/resume`, `POST /admin/v1/kinds/{kind}/pause` and `…/resume`;
//! - [`limits`] — `GET /admin/v1/limits`, and `GET`/`PUT`/`DELETE` of
//!   `/admin/v1/limits/tenants/{tenant}` and `/admin/v1/limits/kinds/{kind}`;
//! - [`dead`] — `GET /admin/v1/dead-letters?queue=…`, `GET`/`DELETE`
//!   `/admin/v1/dead-letters/{queue}/{id}`, `POST …/{id}/replay`, `DELETE
//!   /admin/v1/dead-letters/{queue}` (purge all).
//!
//! The work itself is in [`crate::control`], shared with the CLI.

pub mod dead;
pub mod jobs;
pub mod limits;
pub mod queues;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::{ApiError, FieldError};

/// The operator behind the request's bearer key: its name.
pub struct Operator(pub String);

impl Operator {
    /// Who asked, as audit rows say it: `operator:<name>`.
    pub fn by(&self) -> String {
        crate::control::operator_by(&self.0)
    }
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or(ApiError::OperatorUnauthorized)?;
        if let Some(name) = state.store.authenticate_operator(key).await? {
            return Ok(Self(name));
        }
        if state.store.authenticate(key).await?.is_some() {
            return Err(ApiError::Forbidden(
                "this is a tenant's API key: the operator API (/admin/v1) takes an operator key \
                 (issued by `producer operators create`)"
                    .into(),
            ));
        }
        Err(ApiError::OperatorUnauthorized)
    }
}

/// The operator API's routes, on the producer's state, each with its OpenAPI operation (tag
/// `operator`, security `operator_key`).
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(jobs::list))
        .routes(routes!(jobs::bulk_retry))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .routes(routes!(jobs::retry))
        .routes(routes!(queues::list))
        .routes(routes!(queues::pause_queue))
        .routes(routes!(queues::resume_queue))
        .routes(routes!(queues::pause_kind))
        .routes(routes!(queues::resume_kind))
        .routes(routes!(limits::list))
        .routes(routes!(limits::get_tenant, limits::put_tenant, limits::delete_tenant))
        .routes(routes!(limits::get_kind, limits::put_kind, limits::delete_kind))
        .routes(routes!(dead::list))
        .routes(routes!(dead::purge_all))
        .routes(routes!(dead::get, dead::purge))
        .routes(routes!(dead::replay))
}

/// An RFC 3339 time from parameter `field` (empty: none); a bad one joins `errors`.
pub(crate) fn time_param(
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

/// A parsed optional parameter `field` (empty: none); a bad one joins `errors`.
pub(crate) fn parsed<T, E: std::fmt::Display>(
    field: &'static str,
    value: Option<&str>,
    parse: impl FnOnce(&str) -> Result<T, E>,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = value.filter(|v| !v.is_empty())?;
    parse(value).map_err(|e| errors.push(FieldError::new(field, e.to_string()))).ok()
}

/// A query string's rejection as a `400`.
pub(crate) fn bad_query(e: &axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::BadRequest(format!("invalid query: {}", e.body_text()), Vec::new())
}
