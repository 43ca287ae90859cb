//! `GET /console/dead-letters?queue=<q>`: the dead letters of a queue (or of one partition of a
//! split queue), oldest first, 100 a page, with a queue selector. Each row replays
//! (`button.replay`) or purges (`button.purge`) its dead letter; `form#purge-all` asks for a
//! confirmation (`?confirm=purge-all`) whose form (`button#purge-all-confirm`) purges them all.
//! The actions go through [`crate::control::replay_dead_letter`] and
//! [`crate::control::purge_dead_letters`], audited `operator:<name>` under `*`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use longhaul_core::JobId;
use longhaul_queue::{DeadLetter, Queue, QueueError};
use longhaul_store::StoreError;
use maud::{Markup, html};

use super::action_button;
use crate::AppState;
use crate::console::auth::{ActionForm, Session, params};
use crate::console::view::{self, Flash, Page, dash, encode, num, query, when};
use crate::control::{
    DeadQueueError, ReplayError, dead_letter_queue, purge_dead_letters, replay_dead_letter,
};

/// Dead letters per page.
const PAGE_SIZE: usize = 100;

/// Every dead stream the selector offers: each queue, or each partition of a split one.
fn dead_streams(state: &AppState) -> Vec<String> {
    let mut out = Vec::new();
    for queue in state.queues.all() {
        if queue.config().partitions <= 1 {
            out.push(queue.name().to_owned());
        } else if let Ok(partitions) = queue.partitions() {
            out.extend(partitions.iter().map(|p| p.name().to_owned()));
        }
    }
    out
}

/// The queue (or partition) named `name`, or why not, for an operator to read.
fn dead_queue(state: &AppState, name: &str) -> Result<Queue, String> {
    dead_letter_queue(&state.queues, name).map_err(|e| match e {
        DeadQueueError::Unknown => {
            format!(
                "queue: no queue or partition is named {name:?}; one of {}",
                dead_streams(state).join(", ")
            )
        }
        e @ DeadQueueError::Split { .. } => format!("queue: {e}"),
    })
}

fn letters_table(session: &Session, queue: &str, letters: &[DeadLetter], now: DateTime<Utc>) -> Markup {
    html! {
        div class="table-wrap" {
            table id="dead-letters" class="data" {
                thead { tr {
                    th scope="col" { "Dead letter" }
                    th scope="col" { "When" }
                    th scope="col" { "Reason" }
                    th scope="col" { "Job" }
                    th scope="col" { "Tenant" }
                    th scope="col" { "Kind" }
                    th scope="col" { span class="sr" { "Actions" } }
                } }
                tbody {
                    @for l in letters {
                        @let base = format!("/console/dead-letters/{}/{}", encode(queue), encode(&l.id));
                        @let at = i64::try_from(l.at_ms).ok().and_then(DateTime::<Utc>::from_timestamp_millis);
                        tr data-entry=(l.id) {
                            th scope="row" class="mono" { (l.id) }
                            td { @match at { Some(at) => { (when(at, now)) } None => { (dash()) } } }
                            td class="reason" { (l.reason) }
                            td class="mono" {
                                @match &l.job_id {
                                    Some(job) if JobId::parse(job.as_str()).is_ok() => {
                                        a href={ "/console/jobs/" (encode(job)) } { (job) }
                                    }
                                    Some(job) => { (job) }
                                    None => { (dash()) }
                                }
                            }
                            td { @match &l.tenant_id { Some(t) => { (t) } None => { (dash()) } } }
                            td { @match &l.kind { Some(k) => { (k) } None => { (dash()) } } }
                            td class="actions" {
                                (action_button(session, &format!("{base}/replay"), None, None, "replay", "Replay"))
                                (action_button(session, &format!("{base}/purge"), None, None, "purge danger", "Purge"))
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/dead-letters?queue=&after=&confirm=`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    query_string: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let mut params = match params(&session, query_string) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let flash = Flash::from_params(&mut params);
    let streams = dead_streams(&state);
    let name = params.take_set("queue").or_else(|| streams.first().cloned()).unwrap_or_default();
    let after = params.take_set("after");
    let confirm = params.take_set("confirm");
    let mut errors = Vec::new();
    if let Some(c) = confirm.as_deref().filter(|c| *c != "purge-all") {
        errors.push(format!("confirm: {c:?} is not understood; expected purge-all"));
    }
    params.finish(&mut errors);
    let queue = match dead_queue(&state, &name) {
        Ok(queue) => Some(queue),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    let Some(queue) = queue.filter(|_| errors.is_empty()) else {
        return view::bad_request(Some(&session), &errors);
    };
    let letters = match queue.dead_letters(after.as_deref(), PAGE_SIZE).await {
        Ok(letters) => letters,
        Err(e @ QueueError::DeadLetter { .. }) => {
            return view::bad_request(Some(&session), &[format!("after: {e}")]);
        }
        Err(e) => return view::redis_failed(Some(&session), &e),
    };
    let total = match queue.stats().await {
        Ok(stats) => stats.dead_letters,
        Err(e) => return view::redis_failed(Some(&session), &e),
    };
    let now = Utc::now();
    let q = queue.name();
    let next = (letters.len() == PAGE_SIZE)
        .then(|| {
            letters
                .last()
                .map(|l| format!("/console/dead-letters?{}", query(&[("queue", q), ("after", &l.id)])))
        })
        .flatten();
    let page = Page {
        title: "Dead letters",
        session: Some(&session),
        nav: Some("/console/dead-letters"),
        flash,
        live: None,
    };
    let content = html! {
        h1 { "Dead letters" }
        form id="dead-queue" class="filters" method="get" action="/console/dead-letters" {
            label { span { "Queue" }
                select name="queue" {
                    @for s in &streams { option value=(s) selected[s == q] { (s) } }
                }
            }
            div class="buttons" { button type="submit" { "Show" } }
        }
        p class="muted lead" {
            strong { (num(total)) } " dead " (if total == 1 { "letter" } else { "letters" }) " in " strong { (q) } ". "
            "Replaying a stalled job's entry retries the job; replaying an undecodable entry puts it back as it was."
        }
        @if letters.is_empty() {
            p id="no-dead-letters" class="empty" { "No dead letters" @if after.is_some() { " after this one" } "." }
        } @else {
            (letters_table(&session, q, &letters, now))
        }
        nav class="pager" aria-label="Pages" {
            @if after.is_some() { a href={ "/console/dead-letters?" (query(&[("queue", q)])) } { "« First" } }
            @if let Some(next) = &next { a id="next-page" href=(next) rel="next" { "Next »" } }
        }
        @if total > 0 {
            @if confirm.is_some() {
                div class="confirm" role="alertdialog" aria-labelledby="purge-all-title" {
                    p id="purge-all-title" {
                        strong { "Purge all " (num(total)) " dead letters of " (q) "?" } " This cannot be undone."
                    }
                    (action_button(&session, &format!("/console/dead-letters/{}/purge", encode(q)), Some("purge-all-confirm-form"), Some("purge-all-confirm"), "danger", "Purge them all"))
                    " "
                    a href={ "/console/dead-letters?" (query(&[("queue", q)])) } class="button" { "Keep them" }
                }
            } @else {
                form id="purge-all" method="get" action="/console/dead-letters" class="inline" {
                    input type="hidden" name="queue" value=(q);
                    input type="hidden" name="confirm" value="purge-all";
                    button id="purge-all-button" type="submit" class="danger" { "Purge all…" }
                }
            }
        }
    };
    view::respond(StatusCode::OK, page.render(content))
}

/// The page of a dead letter's queue and the way back to it.
fn back_to(queue: &Queue) -> String {
    format!("/console/dead-letters?{}", query(&[("queue", queue.name())]))
}

/// `POST /console/dead-letters/{queue}/{id}/{replay|purge}`: `303` back with what happened.
pub async fn action(
    State(state): State<AppState>,
    path: Result<Path<(String, String, String)>, PathRejection>,
    form: ActionForm,
) -> Response {
    let session = &form.session;
    let Ok(Path((name, id, action))) = path else { return view::not_found(Some(session), "dead letter") };
    let queue = match dead_queue(&state, &name) {
        Ok(queue) => queue,
        Err(e) => return view::problem_page(Some(session), StatusCode::NOT_FOUND, "Not found", &[e]),
    };
    let back = back_to(&queue);
    let by = session.by();
    let flash = match action.as_str() {
        "replay" => {
            let budget = state.settings.max_attempts;
            match replay_dead_letter(&state.store, &state.registry, &state.queues, &queue, &id, budget, &by)
                .await
            {
                Ok(done) => {
                    let what = match (done.replayed, &done.job) {
                        ("retried", Some(job)) => format!("job {} retried", job.job_id),
                        ("restored", Some(job)) => format!("job {} enqueued again", job.job_id),
                        _ => "its entry put back in the stream as it was".to_owned(),
                    };
                    Flash::ok(format!("Dead letter {id} replayed: {what}."))
                }
                Err(e) => match replay_failure(session, e) {
                    Ok(flash) => flash,
                    Err(page) => return *page,
                },
            }
        }
        "purge" => match purge_dead_letters(&state.store, &queue, Some(std::slice::from_ref(&id)), &by).await
        {
            Ok(0) => Flash::error(format!("Dead letter {id} was gone already.")),
            Ok(_) => Flash::ok(format!("Dead letter {id} purged.")),
            Err(e) => match replay_failure(session, e) {
                Ok(flash) => flash,
                Err(page) => return *page,
            },
        },
        _ => return view::not_found(Some(session), "action"),
    };
    view::back(&back, &flash)
}

/// `POST /console/dead-letters/{queue}/purge`: every dead letter of the queue; `303` back.
pub async fn purge_all(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    form: ActionForm,
) -> Response {
    let session = &form.session;
    let Ok(Path(name)) = path else { return view::not_found(Some(session), "queue") };
    let queue = match dead_queue(&state, &name) {
        Ok(queue) => queue,
        Err(e) => return view::problem_page(Some(session), StatusCode::NOT_FOUND, "Not found", &[e]),
    };
    let flash = match purge_dead_letters(&state.store, &queue, None, &session.by()).await {
        Ok(n) => Flash::ok(format!(
            "Purged {} dead {} of {}.",
            num(n),
            if n == 1 { "letter" } else { "letters" },
            queue.name()
        )),
        Err(e) => match replay_failure(session, e) {
            Ok(flash) => flash,
            Err(page) => return *page,
        },
    };
    view::back(&back_to(&queue), &flash)
}

/// A replay's or a purge's failure: a flash for what the operator can act on, a page for an
/// outage.
fn replay_failure(session: &Session, e: ReplayError) -> Result<Flash, Box<Response>> {
    match e {
        e @ (ReplayError::NotFound
        | ReplayError::Completed(_)
        | ReplayError::TenantMismatch { .. }
        | ReplayError::JobGone(_)
        | ReplayError::Queue(QueueError::DeadLetter { .. })) => Ok(Flash::error(capitalised(&e.to_string()))),
        ReplayError::Store(StoreError::NotFound(_)) => {
            Ok(Flash::error("Its job is gone (pruned): nothing to replay; purge the dead letter."))
        }
        ReplayError::Store(e) => Err(Box::new(view::store_failed(Some(session), &e))),
        ReplayError::Queue(e) => Err(Box::new(view::redis_failed(Some(session), &e))),
    }
}

fn capitalised(s: &str) -> String {
    super::queues::capitalise(s)
}
