//! `GET /console/queues`: every queue of the registry — waiting (entries not yet taken by a worker:
//! in the admission lists and in the stream), running (jobs `running` in storage), delayed
//! (retries and schedules waiting for their time), dead letters, paused or active, throughput
//! (jobs finished per minute over the last five minutes, with a bar per minute) and the age of the
//! longest-waiting job — then every kind with the same figures from storage. A queue or a kind is
//! paused and resumed from its row (`POST /console/{queues|kinds}/{name}/{pause|resume}`, through
//! [`crate::control::set_paused`]).
//!
//! Reads: [`crate::control::queue_overview`] (pauses from storage, backlog from Redis),
//! `console.kind_load` and `console.kind_throughput` (the latter shared for a few seconds).

use std::sync::Arc;

use axum::Extension;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Utc};
use longhaul_core::Registry;
use longhaul_store::{KindLoad, KindThroughput, PauseScope, StoreError};
use maud::{Markup, html};

use super::action_button;
use crate::AppState;
use crate::console::ConsoleState;
use crate::console::auth::{ActionForm, Session, params};
use crate::console::view::{self, Flash, Page, age, dash, encode, num};
use crate::control::{QueueView, queue_overview};

/// What the queues page shows, read once.
pub struct QueuesData {
    overview: Vec<QueueView>,
    load: Vec<KindLoad>,
    throughput: Arc<Vec<KindThroughput>>,
    now: DateTime<Utc>,
}

/// The figures of one queue or kind, summed over its kinds.
#[derive(Default)]
struct Figures {
    running: u64,
    queued: u64,
    per_minute: [u64; longhaul_store::console::THROUGHPUT_MINUTES],
    waiting_since: Option<DateTime<Utc>>,
}

impl QueuesData {
    /// Reads it.
    ///
    /// # Errors
    /// Storage errors (Redis's are shown in the page).
    pub async fn read(state: &AppState, console: &ConsoleState) -> Result<Self, StoreError> {
        let overview = queue_overview(&state.store, &state.registry, &state.queues).await?;
        let now = Utc::now();
        let load = state.store.kind_load(now).await?;
        let throughput = console.throughput(&state.store).await?;
        Ok(Self { overview, load, throughput, now })
    }

    fn figures<'a>(&self, kinds: impl Iterator<Item = &'a str>) -> Figures {
        let mut f = Figures::default();
        for kind in kinds {
            if let Some(l) = self.load.iter().find(|l| l.kind == kind) {
                f.running += l.running;
                f.queued += l.queued;
                f.waiting_since = match (f.waiting_since, l.waiting_since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            if let Some(t) = self.throughput.iter().find(|t| t.kind == kind) {
                for (sum, n) in f.per_minute.iter_mut().zip(t.per_minute) {
                    *sum += n;
                }
            }
        }
        f
    }
}

/// The throughput cell's content: the mean per minute, and a bar per minute.
fn throughput(per_minute: &[u64]) -> Markup {
    let total: u64 = per_minute.iter().sum();
    let minutes = per_minute.len().max(1) as f64;
    #[allow(clippy::cast_precision_loss, reason = "a count of jobs shown to one decimal")]
    let mean = total as f64 / minutes;
    let shown = if mean < 10.0 { format!("{mean:.1}") } else { format!("{mean:.0}") };
    let max = per_minute.iter().copied().max().unwrap_or(0).max(1);
    let title = format!(
        "jobs finished in each of the last {} minutes, oldest first: {}",
        per_minute.len(),
        per_minute.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
    );
    html! {
        span class="num" { (shown) "/min" }
        span class="spark" title=(title) aria-hidden="true" {
            @for n in per_minute {
                span class="bar" style={ "height:" (n * 100 / max) "%" } {}
            }
        }
    }
}

/// The age of the longest wait, `12s`, or `—`.
fn oldest(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match since {
        Some(since) => {
            let secs = u64::try_from((now - since).num_seconds()).unwrap_or(0);
            html! { span title=(since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) { (age(secs)) } }
        }
        None => dash(),
    }
}

fn state_cell(paused: bool, by: Option<&str>) -> Markup {
    let title = by.map(|by| format!("paused by {by}"));
    html! {
        td class="state" {
            @if paused { span class="badge paused" title=[title] { "paused" } }
            @else { span class="badge active" { "active" } }
        }
    }
}

fn pause_form(session: &Session, scope: &str, name: &str, paused: bool) -> Markup {
    let (verb, class, label) =
        if paused { ("resume", "resume", "Resume") } else { ("pause", "pause", "Pause") };
    let action = format!("/console/{scope}/{}/{verb}", encode(name));
    action_button(session, &action, None, None, class, label)
}

/// The queues table (live part `queues`).
pub fn queues_table(data: &QueuesData, registry: &Registry, session: &Session) -> Markup {
    let unavailable: Vec<&str> = data.overview.iter().filter_map(|q| q.stats_error.as_deref()).collect();
    let unknown = html! { span class="muted" title="Redis did not answer" { "?" } };
    html! {
        @if let Some(e) = unavailable.first() {
            p class="flash error" { "Redis did not answer; its figures are missing: " (e) }
        }
        table id="queues" class="data" {
            thead { tr {
                th scope="col" { "Queue" }
                th scope="col" class="n" { "Waiting" }
                th scope="col" class="n" { "Running" }
                th scope="col" class="n" { "Delayed" }
                th scope="col" class="n" { "Dead" }
                th scope="col" { "State" }
                th scope="col" { "Throughput" }
                th scope="col" class="n" { "Oldest" }
                th scope="col" { span class="sr" { "Actions" } }
            } }
            tbody {
                @for q in &data.overview {
                    @let f = data.figures(registry.kinds_of_queue(&q.queue));
                    tr data-queue=(q.queue) {
                        th scope="row" {
                            (q.queue)
                            @if q.partitions > 1 { " " span class="muted" { "(" (q.partitions) " partitions)" } }
                        }
                        @match &q.stats {
                            Some(s) => {
                                td class="waiting n" title={ (num(s.waiting)) " waiting for admission, " (num(s.backlog)) " in the stream" } {
                                    (num(s.waiting + s.backlog))
                                }
                            }
                            None => { td class="waiting n" { (unknown) } }
                        }
                        td class="running n" { (num(f.running)) }
                        @match &q.stats {
                            Some(s) => {
                                td class="delayed n" { (num(s.delayed)) }
                                td class="dead n" {
                                    @if s.dead_letters > 0 {
                                        a href={ "/console/dead-letters?queue=" (encode(&q.queue)) } { (num(s.dead_letters)) }
                                    } @else { "0" }
                                }
                            }
                            None => { td class="delayed n" { (unknown) } td class="dead n" { (unknown) } }
                        }
                        (state_cell(q.paused, q.paused_by.as_deref()))
                        td class="throughput" { (throughput(&f.per_minute)) }
                        td class="oldest n" { (oldest(f.waiting_since, data.now)) }
                        td class="actions" { (pause_form(session, "queues", &q.queue, q.paused)) }
                    }
                }
            }
        }
    }
}

/// The kinds table (live part `kinds`).
pub fn kinds_table(data: &QueuesData, session: &Session) -> Markup {
    html! {
        table id="kinds" class="data" {
            thead { tr {
                th scope="col" { "Kind" }
                th scope="col" { "Queue" }
                th scope="col" class="n" { "Queued" }
                th scope="col" class="n" { "Running" }
                th scope="col" { "State" }
                th scope="col" { "Throughput" }
                th scope="col" class="n" { "Oldest" }
                th scope="col" { span class="sr" { "Actions" } }
            } }
            tbody {
                @for q in &data.overview {
                    @for k in &q.kinds {
                        @let f = data.figures(std::iter::once(k.name.as_str()));
                        tr data-kind=(k.name) {
                            th scope="row" {
                                a href={ "/console/jobs?kind=" (encode(&k.name)) } { (k.name) }
                            }
                            td { (q.queue) }
                            td class="queued n" { (num(f.queued)) }
                            td class="running n" { (num(f.running)) }
                            (state_cell(k.paused, k.paused_by.as_deref()))
                            td class="throughput" { (throughput(&f.per_minute)) }
                            td class="oldest n" { (oldest(f.waiting_since, data.now)) }
                            td class="actions" { (pause_form(session, "kinds", &k.name, k.paused)) }
                        }
                    }
                }
            }
        }
    }
}

/// The live parts of the page, by name.
pub fn fragments(data: &QueuesData, registry: &Registry, session: &Session) -> Vec<(&'static str, String)> {
    vec![
        ("queues", queues_table(data, registry, session).into_string()),
        ("kinds", kinds_table(data, session).into_string()),
    ]
}

/// `GET /console/queues`.
pub async fn page(
    State(state): State<AppState>,
    Extension(console): Extension<ConsoleState>,
    session: Session,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let mut params = match params(&session, query) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let flash = Flash::from_params(&mut params);
    let mut errors = Vec::new();
    params.finish(&mut errors);
    if !errors.is_empty() {
        return view::bad_request(Some(&session), &errors);
    }
    let data = match QueuesData::read(&state, &console).await {
        Ok(data) => data,
        Err(e) => return view::store_failed(Some(&session), &e),
    };
    let page = Page {
        title: "Queues",
        session: Some(&session),
        nav: Some("/console/queues"),
        flash,
        live: Some("/console/live/queues".to_owned()),
    };
    let content = html! {
        h1 { "Queues" }
        p class="muted lead" {
            "Waiting: entries no worker has taken yet. Throughput: jobs finished per minute over the last "
            (longhaul_store::console::THROUGHPUT_MINUTES) " minutes. Oldest: how long the longest-waiting job has waited."
        }
        div class="table-wrap" data-live="queues" { (queues_table(&data, &state.registry, &session)) }
        h2 { "Kinds" }
        div class="table-wrap" data-live="kinds" { (kinds_table(&data, &session)) }
    };
    view::respond(axum::http::StatusCode::OK, page.render(content))
}

/// `POST /console/queues/{queue}/{pause|resume}`.
pub async fn queue_action(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    form: ActionForm,
) -> Response {
    set_paused(&state, PauseScope::Queue, path, &form).await
}

/// `POST /console/kinds/{kind}/{pause|resume}`.
pub async fn kind_action(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    form: ActionForm,
) -> Response {
    set_paused(&state, PauseScope::Kind, path, &form).await
}

async fn set_paused(
    state: &AppState,
    scope: PauseScope,
    path: Result<Path<(String, String)>, PathRejection>,
    form: &ActionForm,
) -> Response {
    let session = &form.session;
    let what = scope.as_str();
    let Ok(Path((name, action))) = path else { return view::not_found(Some(session), what) };
    let pause = match action.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return view::not_found(Some(session), "action"),
    };
    if !crate::control::known(&state.registry, scope, &name) {
        return view::not_found(Some(session), what);
    }
    match crate::control::set_paused(&state.store, scope, &name, pause, &session.by()).await {
        Ok((_, changed)) => {
            let done = if pause { "paused" } else { "resumed" };
            let text = match (changed, pause) {
                (true, _) => format!("{what} {name} {done}"),
                (false, true) => format!("{what} {name} was paused already"),
                (false, false) => format!("{what} {name} was not paused"),
            };
            view::back("/console/queues", &Flash::ok(capitalise(&text)))
        }
        Err(e) => view::store_failed(Some(session), &e),
    }
}

/// `s` with its first letter in upper case.
pub(crate) fn capitalise(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}
