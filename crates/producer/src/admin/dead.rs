//! The operator's dead-letter routes: the dead stream of a queue (or of one partition of a split
//! queue, `<queue>-<k>`) listed oldest first, one dead letter read, replayed (a stalled job
//! through storage — retried with a fresh budget, enqueued, then the dead letter purged; an
//! undecodable entry put back as it was) or purged, and all of them purged. Replays and purges are
//! audited under `*` with `operator:<name>`.

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use longhaul_queue::{MAX_DEAD_LETTER_PAGE, Queue, QueueError};
use longhaul_store::StoreError;
use serde::{Deserialize, Serialize};

use super::{Operator, bad_query};
use crate::AppState;
use crate::control::{
    DeadLetterView, DeadQueueError, ReplayError, Replayed, dead_letter_queue, purge_dead_letters,
    replay_dead_letter,
};
use crate::error::{ApiError, FieldError};
use crate::openapi::{
    BadRequest, Conflict, Forbidden, Internal, NotFound, OperatorUnauthorized, Unavailable, Unprocessable,
};

/// The queue (or partition) named `name`: `404` for none, `422` for a split queue named whole.
fn queue(state: &AppState, field: &'static str, name: &str) -> Result<Queue, ApiError> {
    dead_letter_queue(&state.queues, name).map_err(|e| match e {
        DeadQueueError::Unknown => ApiError::NotFound("queue"),
        e @ DeadQueueError::Split { .. } => {
            ApiError::Unprocessable("name a partition".into(), vec![FieldError::new(field, e.to_string())])
        }
    })
}

/// Whether `id` is a stream entry id (`<ms>-<seq>` or `<ms>`, each part a u64, as Redis takes
/// them); any other is no dead letter's.
fn entry_id(id: &str) -> bool {
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok();
    match id.split_once('-') {
        Some((ms, seq)) => number(ms) && number(seq),
        None => number(id),
    }
}

/// The queue and dead-letter id of a path, or `404`.
fn target(
    state: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<(Queue, String), ApiError> {
    let Ok(Path((name, id))) = path else { return Err(ApiError::NotFound("dead letter")) };
    let queue = queue(state, "queue", &name)?;
    if !entry_id(&id) {
        return Err(ApiError::NotFound("dead letter"));
    }
    Ok((queue, id))
}

fn queue_error(e: QueueError) -> ApiError {
    match e {
        // An id the checks above let through that Redis still refuses, or a dead letter with
        // nothing to replay: the operator's to resolve (purge it).
        e @ QueueError::DeadLetter { .. } => ApiError::Conflict(e.to_string()),
        other => other.into(),
    }
}

/// `GET /admin/v1/dead-letters` query. An unknown parameter is `400`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// The queue, or one partition (`<queue>-<k>`) of a split queue (required).
    #[param(required = true)]
    queue: Option<String>,
    /// Where the page starts: after this dead letter (the `next_after` of the previous page).
    #[param(example = "1767261600123-0")]
    after: Option<String>,
    /// Dead letters per page: 1 to 1000 (default 100).
    #[param(value_type = u32, required = false, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// A page of dead letters.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeadLetterList {
    /// The queue (or partition).
    queue: String,
    /// Its dead letters, oldest first.
    dead_letters: Vec<DeadLetterView>,
    /// Pass as `after` for the next page; `null` on the last.
    #[schema(required = true)]
    next_after: Option<String>,
}

/// A queue's dead stream in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeadQueuePath {
    /// The queue, or one partition (`<queue>-<k>`) of a split queue.
    #[param(rename = "queue")]
    _queue: String,
}

/// A dead letter in a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct DeadLetterPath {
    /// The queue, or one partition (`<queue>-<k>`) of a split queue.
    #[param(rename = "queue")]
    _queue: String,
    /// The dead letter's id (`<ms>-<seq>`).
    #[param(rename = "id", example = "1767261600123-0")]
    _id: String,
}

/// `GET /admin/v1/dead-letters?queue=&after=&limit=`: up to `limit` (1–1000, default 100) dead
/// letters of `queue` (required), oldest first, after dead letter `after`.
#[utoipa::path(
    get,
    path = "/admin/v1/dead-letters",
    tag = "operator",
    operation_id = "admin_list_dead_letters",
    summary = "List a queue's dead letters",
    description = "The dead letters of `queue` (a split queue's are in its partitions: name one), oldest \
        first, a page at a time.",
    params(ListQuery),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "A page of dead letters.", body = DeadLetterList),
        (status = 400, response = BadRequest),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
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
) -> Result<Json<DeadLetterList>, ApiError> {
    let Query(q) = query.map_err(|e| bad_query(&e))?;
    let mut errors = Vec::new();
    let name = q.queue.filter(|n| !n.is_empty());
    if name.is_none() {
        let known: Vec<_> = state.registry.queues().into_iter().collect();
        errors.push(FieldError::new("queue", format!("required: one of {}", known.join(", "))));
    }
    let after = q.after.filter(|a| !a.is_empty());
    if let Some(a) = after.as_deref().filter(|a| !entry_id(a)) {
        errors.push(FieldError::new(
            "after",
            format!("{a:?} is not a dead letter id (such as 1700000000000-0)"),
        ));
    }
    let limit = match q.limit.as_deref() {
        None | Some("") => 100,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_DEAD_LETTER_PAGE).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "limit",
                    format!("must be a whole number from 1 to {MAX_DEAD_LETTER_PAGE}"),
                ));
                100
            }
        },
    };
    let Some(name) = name.filter(|_| errors.is_empty()) else {
        return Err(ApiError::BadRequest("invalid query parameters".into(), errors));
    };
    let queue = queue(&state, "queue", &name)?;
    let letters = queue.dead_letters(after.as_deref(), limit).await.map_err(queue_error)?;
    let next_after = if letters.len() == limit { letters.last().map(|l| l.id.clone()) } else { None };
    let dead_letters =
        letters.into_iter().map(|letter| DeadLetterView { queue: queue.name().to_owned(), letter }).collect();
    Ok(Json(DeadLetterList { queue: queue.name().to_owned(), dead_letters, next_after }))
}

/// `GET /admin/v1/dead-letters/{queue}/{id}`: one dead letter, with its raw fields.
#[utoipa::path(
    get,
    path = "/admin/v1/dead-letters/{queue}/{id}",
    tag = "operator",
    operation_id = "admin_get_dead_letter",
    summary = "Read a dead letter",
    description = "One dead letter, with the entry's raw fields.",
    params(DeadLetterPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "The dead letter.", body = DeadLetterView),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn get(
    State(state): State<AppState>,
    _operator: Operator,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<DeadLetterView>, ApiError> {
    let (queue, id) = target(&state, path)?;
    let letter =
        queue.dead_letter(&id).await.map_err(queue_error)?.ok_or(ApiError::NotFound("dead letter"))?;
    Ok(Json(DeadLetterView { queue: queue.name().to_owned(), letter }))
}

/// `POST /admin/v1/dead-letters/{queue}/{id}/replay`: `200` with what was done — `retried` (a
/// failed or cancelled job put back through storage and enqueued), `restored` (a live job
/// enqueued again), `raw` (an entry naming no recorded job, put back as it was); `409` when its job
/// has completed (purge it instead), or when the entry names another tenant than its job's (a
/// forged or corrupted entry: nothing replayed, the dead letter kept); `404` when it is gone, or
/// its job was pruned meanwhile.
#[utoipa::path(
    post,
    path = "/admin/v1/dead-letters/{queue}/{id}/replay",
    tag = "operator",
    operation_id = "admin_replay_dead_letter",
    summary = "Replay a dead letter",
    description = "A stalled job goes back through storage: a failed or cancelled job is retried with a \
        fresh budget (`retried`), a live one enqueued again (`restored`); an entry naming no recorded job \
        is put back as it was (`raw`). Then the dead letter is purged. `409` when its job has completed \
        (purge it instead) or the entry names another tenant than its job's. Audited `operator:<name>`.",
    params(DeadLetterPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "What the replay did.", body = Replayed),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn replay(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Replayed>, ApiError> {
    let (queue, id) = target(&state, path)?;
    let by = operator.by();
    let budget = state.settings.max_attempts;
    replay_dead_letter(&state.store, &state.registry, &state.queues, &queue, &id, budget, &by)
        .await
        .map(Json)
        .map_err(replay_error)
}

/// A replay's (or a purge's) failure as an answer: `404` for a dead letter or a job that is gone
/// (pruned while the replay ran), `409` for one the operator must resolve (a completed job, an
/// entry naming another tenant than its job's).
fn replay_error(e: ReplayError) -> ApiError {
    match e {
        ReplayError::NotFound => ApiError::NotFound("dead letter"),
        ReplayError::JobGone(_) | ReplayError::Store(StoreError::NotFound(_)) => ApiError::NotFound("job"),
        e @ (ReplayError::Completed(_) | ReplayError::TenantMismatch { .. }) => {
            ApiError::Conflict(e.to_string())
        }
        ReplayError::Store(e) => e.into(),
        ReplayError::Queue(e) => queue_error(e),
    }
}

/// A purge answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Purged {
    /// The queue (or partition).
    queue: String,
    /// How many dead letters were purged (0 when they were gone).
    purged: u64,
}

/// `DELETE /admin/v1/dead-letters/{queue}/{id}`: `200` with `purged` (0 when it was gone).
#[utoipa::path(
    delete,
    path = "/admin/v1/dead-letters/{queue}/{id}",
    tag = "operator",
    operation_id = "admin_purge_dead_letter",
    summary = "Purge a dead letter",
    description = "Deletes the dead letter (`purged` is 0 when it was gone). Audited `operator:<name>`.",
    params(DeadLetterPath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "How many were purged.", body = Purged),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn purge(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<(String, String)>, PathRejection>,
) -> Result<Json<Purged>, ApiError> {
    let (queue, id) = target(&state, path)?;
    let purged =
        purge_dead_letters(&state.store, &queue, Some(&[id]), &operator.by()).await.map_err(replay_error)?;
    Ok(Json(Purged { queue: queue.name().to_owned(), purged }))
}

/// `DELETE /admin/v1/dead-letters/{queue}`: every dead letter of the queue; `200` with `purged`.
#[utoipa::path(
    delete,
    path = "/admin/v1/dead-letters/{queue}",
    tag = "operator",
    operation_id = "admin_purge_dead_letters",
    summary = "Purge a queue's dead letters",
    description = "Deletes every dead letter of the queue (or partition). Audited `operator:<name>`.",
    params(DeadQueuePath),
    security(("operator_key" = [])),
    responses(
        (status = 200, description = "How many were purged.", body = Purged),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = Unprocessable),
        (status = 401, response = OperatorUnauthorized),
        (status = 403, response = Forbidden),
        (status = 503, response = Unavailable),
        (status = 500, response = Internal),
    )
)]
pub async fn purge_all(
    State(state): State<AppState>,
    operator: Operator,
    path: Result<Path<String>, PathRejection>,
) -> Result<Json<Purged>, ApiError> {
    let Ok(Path(name)) = path else { return Err(ApiError::NotFound("queue")) };
    let queue = queue(&state, "queue", &name)?;
    let purged =
        purge_dead_letters(&state.store, &queue, None, &operator.by()).await.map_err(replay_error)?;
    Ok(Json(Purged { queue: queue.name().to_owned(), purged }))
}

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;

    #[test]
    fn entry_ids_are_those_redis_takes() {
        for good in ["1-0", "1700000000000-0", "18446744073709551615-18446744073709551615", "42"] {
            assert!(entry_id(good), "{good}");
        }
        for bad in ["", "-", "1-", "-1", "x-0", "1-0-0", "18446744073709551616-0", "1-99999999999999999999"] {
            assert!(!entry_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_job_gone_while_replaying_is_not_found_and_a_forged_entry_a_conflict() {
        let job = longhaul_core::JobId::parse(format!("job_{}", "0".repeat(32))).expect("id");
        let status = |e: ReplayError| replay_error(e).into_response().status();
        assert_eq!(status(ReplayError::JobGone(job.clone())), axum::http::StatusCode::NOT_FOUND);
        assert_eq!(
            status(ReplayError::Store(StoreError::NotFound("job"))),
            axum::http::StatusCode::NOT_FOUND
        );
        assert_eq!(status(ReplayError::NotFound), axum::http::StatusCode::NOT_FOUND);
        let tenant = |s: &str| longhaul_core::TenantId::parse(s).expect("tenant");
        let forged =
            ReplayError::TenantMismatch { job, entry_tenant: tenant("globex"), job_tenant: tenant("acme") };
        assert_eq!(status(forged), axum::http::StatusCode::CONFLICT);
    }
}
