//! The operator's queue routes: every queue's backlog and pause state (and its kinds'), and
//! pausing or resuming a queue or a kind (idempotent; a name the registry does not have is `404`).
//! Pauses are written to storage; workers mirror them into Redis and act on them.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use longhaul_store::PauseScope;
use serde::Serialize;

use super::Operator;
use crate::AppState;
use crate::control::{PauseView, QueueView, known, queue_overview, set_paused};
use crate::error::ApiError;
use crate::openapi::{Forbidden, Internal, NotFound, OperatorUnauthorized, Unavailable};

/// `GET /admin/v1/queues` answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct QueueList {
    /// Every queue of the producer's kinds.
    queues: Vec<QueueView>,
}

/// A queue's name in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct QueuePath {
    /// The queue: one of the producer's kinds' queues (`404` otherwise).
    #[param(rename = "queue")]
    _queue: String,
}

/// A kind's name in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct KindPath {
    /// The kind: one the producer has (`404` otherwise).
    #[param(rename = "kind")]
    _kind: String,
}

/// `GET /admin/v1/queues`: each queue of the registry with its backlog (`waiting`, `backlog`,
/// `pending`, `delayed`, `dead_letters`; `stats: null` with `stats_error` when Redis does not
/// answer) and pause, and its kinds' pauses.
#[utoipa::path(
    get,
    path = "/admin/v1/queues",
    tag = "operator",
    operation_id = "admin_list_queues",
    summary = "Queues: backlog and pauses",
    description = "Each queue of the producer's kinds with its backlog (`stats`; `null` with \
        `stats_error` when Redis does not answer) and pause, and its kinds' pauses.",
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The queues.", body = QueueList),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn list(State(state): State<AppState>, _operator: Operator) -> Result<Json<QueueList>, ApiError> {
    let queues = queue_overview(&state.store, &state.registry, &state.queues).await?;
    Ok(Json(QueueList { queues }))
}

/// A pause or resume answer: the state after, and whether the call changed it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PauseAnswer {
    /// The pause after the call.
    #[serde(flatten)]
    state: PauseView,
    /// Whether the call changed it (pausing a paused queue changes nothing).
    changed: bool,
}

async fn set(
    state: &AppState,
    operator: &Operator,
    scope: PauseScope,
    path: Result<Path<String>, PathRejection>,
    pause: bool,
) -> Result<Json<PauseAnswer>, ApiError> {
    let what = match scope {
        PauseScope::Queue => "queue",
        PauseScope::Kind => "kind",
    };
    let Ok(Path(name)) = path else { return Err(ApiError::NotFound(what)) };
    if !known(&state.registry, scope, &name) {
        return Err(ApiError::NotFound(what));
    }
    let (view, changed) = set_paused(&state.store, scope, &name, pause, &operator.by()).await?;
    Ok(Json(PauseAnswer { state: view, changed }))
}

/// `POST /admin/v1/queues/{queue}/pause`: workers finish what they run of the queue and start
/// nothing more of it until resumed; submits still record and enqueue. `200` with the pause.
#[utoipa::path(
    post,
    path = "/admin/v1/queues/{queue}/pause",
    tag = "operator",
    operation_id = "admin_pause_queue",
    summary = "Pause a queue",
    description = "Workers finish what they run of the queue and start nothing more of it until it is \
        resumed; submissions are still recorded and enqueued. Idempotent; audited `operator:<name>`.",
    params(QueuePath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The pause after the call.", body = PauseAnswer),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn pause_queue(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Queue, path, true).await
}

/// `POST /admin/v1/queues/{queue}/resume`.
#[utoipa::path(
    post,
    path = "/admin/v1/queues/{queue}/resume",
    tag = "operator",
    operation_id = "admin_resume_queue",
    summary = "Resume a queue",
    description = "Workers start the queue's jobs again. Idempotent; audited `operator:<name>`.",
    params(QueuePath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The pause after the call.", body = PauseAnswer),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn resume_queue(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Queue, path, false).await
}

/// `POST /admin/v1/kinds/{kind}/pause`: as a queue's pause, for one kind's jobs.
#[utoipa::path(
    post,
    path = "/admin/v1/kinds/{kind}/pause",
    tag = "operator",
    operation_id = "admin_pause_kind",
    summary = "Pause a kind",
    description = "As a queue's pause, for one kind's jobs. Idempotent; audited `operator:<name>`.",
    params(KindPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The pause after the call.", body = PauseAnswer),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn pause_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Kind, path, true).await
}

/// `POST /admin/v1/kinds/{kind}/resume`.
#[utoipa::path(
    post,
    path = "/admin/v1/kinds/{kind}/resume",
    tag = "operator",
    operation_id = "admin_resume_kind",
    summary = "Resume a kind",
    description = "Workers start the kind's jobs again. Idempotent; audited `operator:<name>`.",
    params(KindPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The pause after the call.", body = PauseAnswer),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn resume_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Kind, path, false).await
}
