//! `GET /console/jobs/{id}`: one job of any tenant — its status, stage and progress (live while it
//! is not terminal, see [`crate::console::live`]), its record, its timeline from the audit log,
//! each attempt with its error class and message, its input and output, and the steps of its
//! operation log with their results. Cancel (`form#cancel-form`, for a scheduled, queued or running
//! job) and retry (`form#retry-form`, for a failed or cancelled one) post to
//! `/console/jobs/{id}/{cancel|retry}`, which go through [`crate::cancel`] and [`crate::retry`]
//! under the job's owner, audited `operator:<name>`.
//!
//! Reads: `jobs/select_owner.sql`, `jobs/select.sql`, `audit/select_job.sql` (index
//! `audit_by_job`; the trail's `enqueued` and `completed` come from the record already read),
//! on PostgreSQL `audit/select_starts.sql` (each attempt's start, from the record's row by
//! `job_id`), `console.job_operations` (index `operations_by_job`).

use std::collections::BTreeMap;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use longhaul_core::{JobId, JobRecord, JobStatus, TenantId};
use longhaul_store::{AuditEntry, OperationStep, Store, StoreError};
use maud::{Markup, html};
use serde_json::Value;

use super::action_button;
use crate::console::auth::{ActionForm, Session};
use crate::console::view::{self, Flash, Page, compact, dash, encode, pretty, when, when_opt};
use crate::{AppState, Cancel, Retry};

/// One job as its page shows it, read at once.
pub struct JobData {
    /// The record.
    pub record: JobRecord,
    audit: Vec<AuditEntry>,
    operations: Vec<OperationStep>,
    now: DateTime<Utc>,
}

impl JobData {
    /// Job `job` of `owner`, with its audit log and operation log; `None` when it is gone.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn read(store: &Store, owner: &TenantId, job: &JobId) -> Result<Option<Self>, StoreError> {
        let Some(record) = store.get_job(owner, job).await? else { return Ok(None) };
        Self::complete(store, record).await.map(Some)
    }

    /// `record` with its audit log and operation log.
    ///
    /// # Errors
    /// Storage errors.
    pub async fn complete(store: &Store, record: JobRecord) -> Result<Self, StoreError> {
        let audit = store.job_audit_of(&record).await?;
        let operations = store.job_operations(&record.tenant_id, &record.job_id).await?;
        Ok(Self { record, audit, operations, now: Utc::now() })
    }
}

/// The job id of a path (`None`: not a job id).
pub fn job_id(path: Result<Path<String>, PathRejection>) -> Option<JobId> {
    let Ok(Path(id)) = path else { return None };
    JobId::parse(id).ok()
}

/// One attempt, as the audit log tells it.
#[derive(Default)]
struct Attempt {
    started: Option<DateTime<Utc>>,
    ended: Option<DateTime<Utc>>,
    outcome: Option<String>,
    class: Option<String>,
    message: Option<String>,
}

/// The attempts of `audit`, by number.
fn attempts(audit: &[AuditEntry]) -> BTreeMap<u64, Attempt> {
    let mut out: BTreeMap<u64, Attempt> = BTreeMap::new();
    for entry in audit {
        let Some(n) = entry.detail.get("attempt").and_then(Value::as_u64) else { continue };
        let attempt = out.entry(n).or_default();
        let text = |field: &str| entry.detail.get(field).and_then(Value::as_str).map(str::to_owned);
        match entry.action.as_str() {
            "started" => attempt.started = Some(entry.at),
            "retry_scheduled" => {
                attempt.ended = Some(entry.at);
                attempt.outcome = Some("retrying".to_owned());
                attempt.class = text("class");
                attempt.message = text("message");
            }
            action @ ("failed" | "alert" | "completed" | "cancelled") => {
                attempt.ended = Some(entry.at);
                attempt.outcome = Some(action.to_owned());
                attempt.class = text("class");
                attempt.message = text("message");
            }
            _ => {}
        }
    }
    out
}

/// The summary (live part `summary`): status, stage, progress, and the record's fields.
fn summary(data: &JobData) -> Markup {
    let r = &data.record;
    let now = data.now;
    let percent = r.progress.percent();
    html! {
        dl class="summary" {
            div { dt { "Status" } dd { span id="job-status" class={ "badge s-" (r.status.as_str()) } { (r.status.as_str()) } } }
            div { dt { "Stage" } dd id="job-stage" { (r.stage.as_deref().unwrap_or("—")) } }
            div class="wide" { dt { "Progress" } dd {
                span class="pbar big" {
                    progress id="job-progress-bar" max="100" value=(percent) { (percent) "%" }
                    span id="job-progress" class="num" { (percent) "%" }
                }
            } }
            div { dt { "Attempts" } dd class="num" { (r.attempts) " of " (r.max_attempts) } }
            div { dt { "Tenant" } dd { a href={ "/console/jobs?tenant=" (encode(r.tenant_id.as_str())) } { (r.tenant_id) } } }
            div { dt { "Kind" } dd { a href={ "/console/jobs?kind=" (encode(&r.kind)) } { (r.kind) } } }
            div { dt { "Key" } dd class="mono" { @match &r.key { Some(k) => { (k) } None => { (dash()) } } } }
            div { dt { "Priority" } dd { (r.priority.as_str()) } }
            div { dt { "Created" } dd { (when(r.created_at, now)) } }
            div { dt { "Updated" } dd { (when(r.updated_at, now)) } }
            div { dt { "Started" } dd { (when_opt(r.started_at, now)) } }
            div { dt { "Finished" } dd { (when_opt(r.finished_at, now)) } }
            @if r.run_at.is_some() { div { dt { "Run at" } dd { (when_opt(r.run_at, now)) } } }
            @if r.next_attempt_at.is_some() { div { dt { "Next attempt" } dd { (when_opt(r.next_attempt_at, now)) } } }
            @if r.cancel_requested_at.is_some() {
                div { dt { "Cancel requested" } dd { (when_opt(r.cancel_requested_at, now)) } }
            }
            @if r.error_class.is_some() || r.error_message.is_some() {
                div class="wide" { dt { "Last error" } dd {
                    @if let Some(c) = r.error_class { span class="badge class" { (c.as_str()) } " " }
                    (r.error_message.as_deref().unwrap_or(""))
                } }
            }
        }
    }
}

/// The actions (live part `actions`): cancel while the job may still run, retry once it failed
/// or was cancelled.
fn actions(data: &JobData, session: &Session) -> Markup {
    let r = &data.record;
    let base = format!("/console/jobs/{}", r.job_id);
    html! {
        div class="job-actions" {
            @if matches!(r.status, JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running) {
                (action_button(session, &format!("{base}/cancel"), Some("cancel-form"), Some("cancel"), "danger", "Cancel job"))
            }
            @if matches!(r.status, JobStatus::Failed | JobStatus::Cancelled) {
                (action_button(session, &format!("{base}/retry"), Some("retry-form"), Some("retry"), "primary", "Retry job"))
            }
            @if r.status == JobStatus::Completed { span class="muted" { "Completed: nothing to do." } }
        }
    }
}

/// The timeline (live part `timeline`): the audit log, oldest first.
fn timeline(data: &JobData) -> Markup {
    html! {
        ol id="timeline" class="timeline" {
            @for e in &data.audit {
                @let by = e.detail.get("by").and_then(Value::as_str);
                @let rest = without_by(&e.detail);
                li {
                    span class="at" { (when(e.at, data.now)) }
                    " " strong class="action" { (e.action) }
                    @if let Some(by) = by { " " span class="by" { "by " (by) } }
                    @if rest.as_object().is_some_and(|m| !m.is_empty()) {
                        " " code class="detail" { (compact(&rest, 300)) }
                    }
                }
            }
            @if data.audit.is_empty() { li class="muted" { "No audit rows (pruned?)." } }
        }
    }
}

/// An audit row's detail without `by` (shown on its own).
fn without_by(detail: &Value) -> Value {
    let mut rest = detail.clone();
    if let Some(map) = rest.as_object_mut() {
        map.remove("by");
    }
    rest
}

/// The attempts (live part `attempts`).
fn attempts_table(data: &JobData) -> Markup {
    let rows = attempts(&data.audit);
    html! {
        div class="table-wrap" {
            table id="attempts" class="data" {
                thead { tr {
                    th scope="col" class="n" { "#" }
                    th scope="col" { "Started" }
                    th scope="col" { "Ended" }
                    th scope="col" { "Outcome" }
                    th scope="col" { "Error class" }
                    th scope="col" { "Message" }
                } }
                tbody {
                    @for (n, a) in &rows {
                        tr data-attempt=(n) {
                            td class="n" { (n) }
                            td { (when_opt(a.started, data.now)) }
                            td { (when_opt(a.ended, data.now)) }
                            td class="outcome" { (a.outcome.as_deref().unwrap_or("running")) }
                            td class="class" { (a.class.as_deref().unwrap_or("—")) }
                            td class="message" { (a.message.as_deref().unwrap_or("")) }
                        }
                    }
                    @if rows.is_empty() { tr { td colspan="6" class="muted" { "No attempt started yet." } } }
                }
            }
        }
    }
}

/// The output (live part `output`).
fn output(data: &JobData) -> Markup {
    html! {
        pre id="output" class="json" {
            @match &data.record.output {
                Some(v) => { (pretty(v)) }
                None => { "(no output" @if !data.record.status.is_terminal() { " yet" } ")" }
            }
        }
    }
}

/// The operation log (live part `operations`).
fn operations(data: &JobData) -> Markup {
    html! {
        div class="table-wrap" {
            table id="operations" class="data" {
                thead { tr {
                    th scope="col" { "Step" }
                    th scope="col" { "Status" }
                    th scope="col" class="n" { "Attempt" }
                    th scope="col" { "Result" }
                    th scope="col" { "Updated" }
                } }
                tbody {
                    @for op in &data.operations {
                        tr data-operation=(op.operation_id) {
                            td class="step" { span class="muted" { (op.stage) " / " } (op.effect) }
                            td class="state" { span class={ "badge op-" (op.state) } { (op.state) } }
                            td class="n" { (op.attempt) }
                            td class="result" {
                                @match &op.result { Some(v) => { code { (compact(v, 200)) } } None => { (dash()) } }
                            }
                            td { (when(op.updated_at, data.now)) }
                        }
                    }
                    @if data.operations.is_empty() { tr { td colspan="5" class="muted" { "No durable step recorded." } } }
                }
            }
        }
    }
}

/// The live parts of the page, by name.
pub fn fragments(data: &JobData, session: &Session) -> Vec<(&'static str, String)> {
    vec![
        ("summary", summary(data).into_string()),
        ("actions", actions(data, session).into_string()),
        ("timeline", timeline(data).into_string()),
        ("attempts", attempts_table(data).into_string()),
        ("output", output(data).into_string()),
        ("operations", operations(data).into_string()),
    ]
}

/// The owner of `job`, and its page's data; a page for a missing job or a storage failure.
async fn read(state: &AppState, session: &Session, job: &JobId) -> Result<JobData, Response> {
    let found = match state.store.job_owner(job).await {
        Ok(Some(owner)) => JobData::read(&state.store, &owner, job).await,
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(data)) => Ok(data),
        Ok(None) => Err(view::not_found(Some(session), "job")),
        Err(e) => Err(view::store_failed(Some(session), &e)),
    }
}

/// `GET /console/jobs/{job_id}` (`?flash=`).
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    path: Result<Path<String>, PathRejection>,
    query: Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Some(job) = job_id(path) else { return view::not_found(Some(&session), "job") };
    let mut params = match crate::console::auth::params(&session, query) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let flash = Flash::from_params(&mut params);
    let mut errors = Vec::new();
    params.finish(&mut errors);
    if !errors.is_empty() {
        return view::bad_request(Some(&session), &errors);
    }
    let data = match read(&state, &session, &job).await {
        Ok(data) => data,
        Err(page) => return page,
    };
    let r = &data.record;
    let title = format!("Job {}", r.job_id);
    let live = (!r.status.is_terminal()).then(|| format!("/console/live/jobs/{}", r.job_id));
    let page = Page { title: &title, session: Some(&session), nav: Some("/console/jobs"), flash, live };
    let content = html! {
        p class="crumbs" { a href="/console/jobs" { "Jobs" } " / " }
        h1 class="mono" { (r.job_id) }
        div class="panel" data-live="summary" { (summary(&data)) }
        div data-live="actions" { (actions(&data, &session)) }
        div class="columns" {
            section {
                h2 { "Timeline" }
                div data-live="timeline" { (timeline(&data)) }
            }
            section {
                h2 { "Attempts" }
                div data-live="attempts" { (attempts_table(&data)) }
                h2 { "Operation log" }
                div data-live="operations" { (operations(&data)) }
            }
        }
        div class="columns" {
            section { h2 { "Input" } pre id="input" class="json" { (pretty(&r.input)) } }
            section { h2 { "Output" } div data-live="output" { (output(&data)) } }
        }
    };
    view::respond(StatusCode::OK, page.render(content))
}

/// `POST /console/jobs/{job_id}/{cancel|retry}`: `303` back to the job with what happened.
pub async fn action(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, PathRejection>,
    form: ActionForm,
) -> Response {
    let session = &form.session;
    let Ok(Path((id, action))) = path else { return view::not_found(Some(session), "job") };
    let Ok(job) = JobId::parse(id) else { return view::not_found(Some(session), "job") };
    let owner = match state.store.job_owner(&job).await {
        Ok(Some(owner)) => owner,
        Ok(None) => return view::not_found(Some(session), "job"),
        Err(e) => return view::store_failed(Some(session), &e),
    };
    let back = format!("/console/jobs/{job}");
    let by = session.by();
    let flash = match action.as_str() {
        "cancel" => {
            match crate::cancel(&state.store, &state.registry, &state.queues, &owner, &job, &by).await {
                Ok(Cancel::Cancelled(_)) => Flash::ok("Job cancelled: it will not run."),
                Ok(Cancel::Requested(_)) => {
                    Flash::ok("Cancel requested: the job's worker ends it within a heartbeat or so.")
                }
                Ok(Cancel::AlreadyCancelled(_)) => Flash::ok("The job was cancelled already."),
                Ok(Cancel::Finished(r)) => Flash::error(format!(
                    "The job is already {}: only a scheduled, queued or running job can be cancelled.",
                    r.status
                )),
                Err(StoreError::NotFound(_)) => return view::not_found(Some(session), "job"),
                Err(e) => return view::store_failed(Some(session), &e),
            }
        }
        "retry" => {
            let budget = state.settings.max_attempts;
            match crate::retry(&state.store, &state.registry, &state.queues, &owner, &job, budget, &by).await
            {
                Ok(Retry::Requeued { enqueued: Ok(()), .. }) => Flash::ok("Job put back in the queue."),
                Ok(Retry::Requeued { record, enqueued: Err(e) }) => {
                    tracing::warn!(job_id = %record.job_id, error = %longhaul_core::Report(&e),
                        "console retry: enqueue failed; the record stays queued for the reconciler");
                    Flash::ok(
                        "Job queued in storage; Redis did not take it yet, so the reconciler will enqueue it.",
                    )
                }
                Ok(Retry::NotRetryable(r)) => Flash::error(format!(
                    "The job is {}: only a failed or cancelled job can be retried.",
                    r.status
                )),
                Err(StoreError::NotFound(_)) => return view::not_found(Some(session), "job"),
                Err(e) => return view::store_failed(Some(session), &e),
            }
        }
        _ => return view::not_found(Some(session), "action"),
    };
    view::back(&back, &flash)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn entry(action: &str, detail: Value) -> AuditEntry {
        AuditEntry { job_id: None, action: action.into(), detail, at: Utc::now() }
    }

    #[test]
    fn attempts_are_read_from_the_audit_log() {
        let audit = [
            entry("enqueued", json!({"kind": "k"})),
            entry("started", json!({"attempt": 1})),
            entry("retry_scheduled", json!({"attempt": 1, "class": "retryable", "message": "503"})),
            entry("started", json!({"attempt": 2})),
            entry("failed", json!({"attempt": 2, "class": "invalid", "message": "bad answer"})),
            entry("retried", json!({"by": "operator:ops", "budget": 3})),
            entry("started", json!({"attempt": 3})),
        ];
        let rows = attempts(&audit);
        let shown: Vec<_> = rows
            .iter()
            .map(|(n, a)| (*n, a.outcome.clone(), a.class.clone(), a.message.clone(), a.started.is_some()))
            .collect();
        assert_eq!(
            shown,
            [
                (1, Some("retrying".into()), Some("retryable".into()), Some("503".into()), true),
                (2, Some("failed".into()), Some("invalid".into()), Some("bad answer".into()), true),
                (3, None, None, None, true),
            ]
        );
    }
}
