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

/// `GET /admin/v1/queues` answer.
#[derive(Debug, Serialize)]
pub struct QueueList {
    queues: Vec<QueueView>,
}

/// `GET /admin/v1/queues`: each queue of the registry with its backlog (`waiting`, `backlog`,
/// `pending`, `delayed`, `dead_letters`; `stats: null` with `stats_error` when Redis does not
/// answer) and pause, and its kinds' pauses.
pub async fn list(State(state): State<AppState>, _operator: Operator) -> Result<Json<QueueList>, ApiError> {
    let queues = queue_overview(&state.store, &state.registry, &state.queues).await?;
    Ok(Json(QueueList { queues }))
}

/// A pause or resume answer: the state after, and whether the call changed it.
#[derive(Debug, Serialize)]
pub struct PauseAnswer {
    #[serde(flatten)]
    state: PauseView,
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
pub async fn pause_queue(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Queue, path, true).await
}

/// `POST /admin/v1/queues/{queue}/resume`.
pub async fn resume_queue(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Queue, path, false).await
}

/// `POST /admin/v1/kinds/{kind}/pause`: as a queue's pause, for one kind's jobs.
pub async fn pause_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Kind, path, true).await
}

/// `POST /admin/v1/kinds/{kind}/resume`.
pub async fn resume_kind(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<PauseAnswer>, ApiError> {
    set(&state, &operator, PauseScope::Kind, path, false).await
}
