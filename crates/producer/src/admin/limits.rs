//! The operator's limit routes: overrides of the configured defaults, kept in storage (workers
//! mirror them into Redis and admission applies them) — a tenant's cap on jobs running at once
//! (`max_running`, a whole number ≥ 1) and starts per second, a kind's starts per second (a
//! number from 0.001 to 1 000 000: pause the kind or queue to stop starts). A `PUT` sets the whole
//! limit (a value left out or `null` goes back to the default); a value out of range is `422`
//! naming the field; an unknown tenant or kind is `404`.

use std::num::NonZeroU32;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use longhaul_core::TenantId;
use longhaul_store::{LimitScope, Rate};
use serde::Serialize;
use serde_json::{Map, Value};

use super::Operator;
use super::queues::KindPath;
use crate::AppState;
use crate::api::ApiJson;
use crate::control::LimitView;
use crate::error::{ApiError, FieldError};
use crate::openapi::{
    BadRequest, Forbidden, Internal, NotFound, OperatorUnauthorized, PayloadTooLarge, Unavailable,
    Unprocessable,
};

/// `GET /admin/v1/limits` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LimitList {
    /// Every limit set, tenants first.
    limits: Vec<LimitView>,
}

/// A tenant's id in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TenantPath {
    /// The tenant (`404` when there is none).
    #[param(rename = "tenant", value_type = TenantId)]
    _tenant: String,
}

/// `PUT /admin/v1/limits/tenants/{tenant}` body, as documented: the handler reads the body field by
/// field (`max_running`, `starts_per_second`, unknown fields refused), for a `422` naming each.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "documents the body the handler reads field by field")]
#[schema(
    description = "A tenant's whole limit: a value left out or `null` is the default; at least one must be \
        set."
)]
pub struct TenantLimitRequest {
    /// Jobs of the tenant running at once, at most: 1 to 2147483647 (`null` or absent: the default).
    #[schema(minimum = 1, maximum = 2_147_483_647)]
    max_running: Option<u32>,
    /// Starts per second, at most: 0.001 to 1000000 (`null` or absent: the default).
    #[schema(minimum = 0.001, maximum = 1_000_000)]
    starts_per_second: Option<f64>,
}

/// `PUT /admin/v1/limits/kinds/{kind}` body, as documented (read as [`TenantLimitRequest`] is).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "documents the body the handler reads field by field")]
#[schema(description = "A kind's limit.")]
pub struct KindLimitRequest {
    /// Starts per second of the kind, at most: 0.001 to 1000000.
    #[schema(minimum = 0.001, maximum = 1_000_000)]
    starts_per_second: f64,
}

/// `GET /admin/v1/limits`: every limit set, tenants first.
#[utoipa::path(
    get,
    path = "/admin/v1/limits",
    tag = "operator",
    operation_id = "admin_list_limits",
    summary = "List the limits set",
    description = "Every limit set (tenants first); what is not set is the workers' default.",
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The limits.", body = LimitList),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn list(State(state): State<AppState>, _operator: Operator) -> Result<Json<LimitList>, ApiError> {
    let limits = state.store.limits().await?.into_iter().map(LimitView::from).collect();
    Ok(Json(LimitList { limits }))
}

/// A `DELETE` answer: whether a limit was set.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Cleared {
    /// `tenant` or `kind`.
    #[schema(example = "tenant")]
    scope: &'static str,
    /// The tenant or kind.
    name: String,
    /// Whether a limit was set (and is cleared now).
    cleared: bool,
}

/// The tenant of a path, which must exist; else `404`.
async fn tenant(state: &AppState, path: Result<Path<String>, PathRejection>) -> Result<TenantId, ApiError> {
    let Ok(Path(id)) = path else { return Err(ApiError::NotFound("tenant")) };
    let tenant = TenantId::parse(id).map_err(|_| ApiError::NotFound("tenant"))?;
    match state.store.get_tenant(&tenant).await? {
        Some(_) => Ok(tenant),
        None => Err(ApiError::NotFound("tenant")),
    }
}

/// The kind of a path, which the registry must have; else `404`.
fn kind(state: &AppState, path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    let Ok(Path(kind)) = path else { return Err(ApiError::NotFound("kind")) };
    if state.registry.options(&kind).is_none() {
        return Err(ApiError::NotFound("kind"));
    }
    Ok(kind)
}

async fn get(state: &AppState, scope: LimitScope, name: &str) -> Result<Json<LimitView>, ApiError> {
    state.store.limit(scope, name).await?.map(|l| Json(l.into())).ok_or(ApiError::NotFound("limit"))
}

/// `GET /admin/v1/limits/tenants/{tenant}`: the tenant's limit, `404` when none is set.
#[utoipa::path(
    get,
    path = "/admin/v1/limits/tenants/{tenant}",
    tag = "operator",
    operation_id = "admin_get_tenant_limit",
    summary = "Read a tenant's limit",
    description = "The tenant's limit; `404` when none is set (or no such tenant).",
    params(TenantPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The limit.", body = LimitView),
        (status = 404, response = NotFound),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    _operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LimitView>, ApiError> {
    let tenant = tenant(&state, path).await?;
    get(&state, LimitScope::Tenant, tenant.as_str()).await
}

/// `GET /admin/v1/limits/kinds/{kind}`: the kind's limit, `404` when none is set.
#[utoipa::path(
    get,
    path = "/admin/v1/limits/kinds/{kind}",
    tag = "operator",
    operation_id = "admin_get_kind_limit",
    summary = "Read a kind's limit",
    description = "The kind's limit; `404` when none is set (or no such kind).",
    params(KindPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The limit.", body = LimitView),
        (status = 404, response = NotFound),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get_kind(
    State(state): State<AppState>,
    _operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<LimitView>, ApiError> {
    let kind = kind(&state, path)?;
    get(&state, LimitScope::Kind, &kind).await
}

/// `max_running` of a body: a whole number from 1 to 2³¹ − 1, or `null`.
pub(crate) fn max_running(value: Option<&Value>) -> Result<Option<NonZeroU32>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| *n <= i32::MAX as u64)
            .and_then(|n| NonZeroU32::new(u32::try_from(n).ok()?))
            .map(Some)
            .ok_or_else(|| {
                FieldError::new(
                    "max_running",
                    format!("must be a whole number from 1 to {}, or null; got {v}", i32::MAX),
                )
            }),
    }
}

/// `starts_per_second` of a body: a number from [`Rate::MIN`] to [`Rate::MAX`], or `null`.
pub(crate) fn starts_per_second(value: Option<&Value>) -> Result<Option<Rate>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().and_then(|n| Rate::new(n).ok()).map(Some).ok_or_else(|| {
            FieldError::new(
                "starts_per_second",
                format!("must be a number from 0.001 to 1000000, or null; got {v}"),
            )
        }),
    }
}

/// The fields of `body` outside `allowed`, as errors.
fn unknown_fields(body: &Map<String, Value>, allowed: &[&str], says: &str) -> Vec<FieldError> {
    body.keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| FieldError::new(k.clone(), format!("unknown field: {says}")))
        .collect()
}

/// `PUT /admin/v1/limits/tenants/{tenant}` `{max_running?, starts_per_second?}`: sets the tenant's
/// whole limit (`200` with it); at least one of the two must be set (`DELETE` clears).
#[utoipa::path(
    put,
    path = "/admin/v1/limits/tenants/{tenant}",
    tag = "operator",
    operation_id = "admin_put_tenant_limit",
    summary = "Set a tenant's limit",
    description = "Sets the tenant's whole limit: a cap on its jobs running at once and on its starts per \
        second (a value left out or `null` goes back to the default; at least one must be set — `DELETE` \
        clears). Audited `operator:<name>`.",
    params(TenantPath),
    request_body(content = TenantLimitRequest, content_type = "application/json"),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The limit set.", body = LimitView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn put_tenant(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Json<LimitView>, ApiError> {
    let tenant = tenant(&state, path).await?;
    let mut errors = unknown_fields(
        &body,
        &["max_running", "starts_per_second"],
        "a tenant's limit has max_running and starts_per_second",
    );
    let cap = max_running(body.get("max_running")).map_err(|e| errors.push(e)).ok().flatten();
    let rate = starts_per_second(body.get("starts_per_second")).map_err(|e| errors.push(e)).ok().flatten();
    if errors.is_empty() && cap.is_none() && rate.is_none() {
        let message = "set max_running or starts_per_second (DELETE clears the limit)";
        errors.push(FieldError::new("max_running", message));
        errors.push(FieldError::new("starts_per_second", message));
    }
    if !errors.is_empty() {
        return Err(ApiError::Unprocessable("the limit is invalid".into(), errors));
    }
    let limit = state.store.set_tenant_limit(&tenant, cap, rate, &operator.by()).await?;
    limit.map(|l| Json(l.into())).ok_or(ApiError::Internal)
}

/// `PUT /admin/v1/limits/kinds/{kind}` `{starts_per_second}`: sets the kind's limit (`200` with
/// it).
#[utoipa::path(
    put,
    path = "/admin/v1/limits/kinds/{kind}",
    tag = "operator",
    operation_id = "admin_put_kind_limit",
    summary = "Set a kind's limit",
    description = "Sets the kind's starts per second (pause the kind or its queue to stop its starts). \
        Audited `operator:<name>`.",
    params(KindPath),
    request_body(content = KindLimitRequest, content_type = "application/json"),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The limit set.", body = LimitView),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn put_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<Json<LimitView>, ApiError> {
    let kind = kind(&state, path)?;
    let mut errors =
        unknown_fields(&body, &["starts_per_second"], "a kind's limit has starts_per_second only");
    let rate = match starts_per_second(body.get("starts_per_second")) {
        Ok(Some(rate)) => Some(rate),
        Ok(None) => {
            errors.push(FieldError::new(
                "starts_per_second",
                "required: a number from 0.001 to 1000000 (DELETE clears the limit)",
            ));
            None
        }
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let Some(rate) = rate.filter(|_| errors.is_empty()) else {
        return Err(ApiError::Unprocessable("the limit is invalid".into(), errors));
    };
    let limit = state.store.set_kind_limit(&kind, rate, &operator.by()).await?;
    Ok(Json(limit.into()))
}

/// `DELETE /admin/v1/limits/tenants/{tenant}`: back to the defaults; `200` with `cleared` (false
/// when none was set).
#[utoipa::path(
    delete,
    path = "/admin/v1/limits/tenants/{tenant}",
    tag = "operator",
    operation_id = "admin_delete_tenant_limit",
    summary = "Clear a tenant's limit",
    description = "Back to the defaults. Audited `operator:<name>`.",
    params(TenantPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "Whether a limit was set.", body = Cleared),
        (status = 404, response = NotFound),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn delete_tenant(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Cleared>, ApiError> {
    let tenant = tenant(&state, path).await?;
    let cleared = state.store.clear_limit(LimitScope::Tenant, tenant.as_str(), &operator.by()).await?;
    Ok(Json(Cleared { scope: "tenant", name: tenant.to_string(), cleared }))
}

/// `DELETE /admin/v1/limits/kinds/{kind}`: back to the default; `200` with `cleared`.
#[utoipa::path(
    delete,
    path = "/admin/v1/limits/kinds/{kind}",
    tag = "operator",
    operation_id = "admin_delete_kind_limit",
    summary = "Clear a kind's limit",
    description = "Back to the default. Audited `operator:<name>`.",
    params(KindPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "Whether a limit was set.", body = Cleared),
        (status = 404, response = NotFound),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn delete_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Cleared>, ApiError> {
    let kind = kind(&state, path)?;
    let cleared = state.store.clear_limit(LimitScope::Kind, &kind, &operator.by()).await?;
    Ok(Json(Cleared { scope: "kind", name: kind, cleared }))
}
