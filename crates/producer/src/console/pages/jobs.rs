//! `GET /console/jobs`: the jobs of every tenant, newest first, filtered by tenant, kind, status,
//! error class, creation time and key (`form#job-filter`, a `GET` form: a filtered page is a link),
//! 50 a page with a keyset cursor (`a#next-page`), through [`longhaul_store::Store::list_jobs_admin`]
//! (`select_page_admin.sql`). Parameters that do not parse are a `400` page that names them,
//! with the filter form to fix them.
//!
//! Bulk retry, offered when the filter can only match failed jobs' kind of list (status `failed`
//! or none, no key): `form#bulk-retry` asks for a dry run (`?bulk=preview`: the count of failed jobs
//! matching, through [`crate::control::bulk_retry`]'s dry run, `count_failed.sql`), which shows
//! `#bulk-count` and the confirming form (`POST /console/jobs/bulk-retry`, `button#bulk-confirm`)
//! that retries up to [`DEFAULT_BULK_RETRY_LIMIT`] of them and reports how many in a flash.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use longhaul_core::{ErrorClass, JobRecord, JobStatus, TenantId};
use longhaul_store::{AdminJobFilter, FailedFilter, StoreError};
use maud::{Markup, html};

use crate::AppState;
use crate::console::auth::{ActionForm, Session, params};
use crate::console::view::{self, Flash, Page, Params, dash, progress_bar, query, status_badge, when};
use crate::control::{BulkMode, DEFAULT_BULK_RETRY_LIMIT, bulk_retry as run_bulk_retry};

/// Jobs per page.
const PAGE_SIZE: u32 = 50;

/// The statuses the filter offers.
const STATUSES: [JobStatus; 6] = [
    JobStatus::Scheduled,
    JobStatus::Queued,
    JobStatus::Running,
    JobStatus::Completed,
    JobStatus::Failed,
    JobStatus::Cancelled,
];

/// The filter's fields, as typed (for the form and the links).
#[derive(Debug, Clone, Default)]
pub struct RawFilter {
    tenant: String,
    kind: String,
    status: String,
    error_class: String,
    created_after: String,
    created_before: String,
    key: String,
}

impl RawFilter {
    /// The filter's fields of a query or a form, through `get`.
    fn read(mut get: impl FnMut(&str) -> Option<String>) -> Self {
        let mut field = |name: &str| get(name).unwrap_or_default();
        Self {
            tenant: field("tenant"),
            kind: field("kind"),
            status: field("status"),
            error_class: field("error_class"),
            created_after: field("created_after"),
            created_before: field("created_before"),
            key: field("key"),
        }
    }

    /// The filter as query-string pairs (the empty ones left out by [`query`]).
    fn pairs(&self) -> [(&'static str, &str); 7] {
        [
            ("tenant", &self.tenant),
            ("kind", &self.kind),
            ("status", &self.status),
            ("error_class", &self.error_class),
            ("created_after", &self.created_after),
            ("created_before", &self.created_before),
            ("key", &self.key),
        ]
    }

    /// The filter as hidden fields (a form that repeats it).
    fn hidden(&self) -> Markup {
        html! {
            @for (name, value) in self.pairs() {
                @if !value.is_empty() { input type="hidden" name=(name) value=(value); }
            }
        }
    }

    /// Parsed, or one line per field that does not parse.
    fn parse(&self) -> Result<AdminJobFilter, Vec<String>> {
        let mut errors = Vec::new();
        let mut check = |field: &str, r: Result<(), String>| {
            if let Err(e) = r {
                errors.push(format!("{field}: {e}"));
            }
        };
        let set = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let mut filter = AdminJobFilter::default();
        if let Some(t) = set(&self.tenant) {
            check("tenant", TenantId::parse(t).map(|t| filter.tenant = Some(t)).map_err(|e| e.to_string()));
        }
        if let Some(k) = set(&self.kind) {
            check("kind", longhaul_core::kind::validate_kind_name(&k).map(|()| filter.kind = Some(k)));
        }
        if let Some(s) = set(&self.status) {
            check("status", JobStatus::parse(&s).map(|s| filter.status = Some(s)));
        }
        if let Some(c) = set(&self.error_class) {
            let parsed =
                ErrorClass::parse(&c).map_err(|e| format!("{e}; expected retryable, invalid or alert"));
            check("error class", parsed.map(|c| filter.error_class = Some(c)));
        }
        if let Some(t) = set(&self.created_after) {
            check("created after", parse_time(&t).map(|t| filter.created_after = Some(t)));
        }
        if let Some(t) = set(&self.created_before) {
            check("created before", parse_time(&t).map(|t| filter.created_before = Some(t)));
        }
        if let Some(k) = set(&self.key) {
            check("key", AdminJobFilter::check_key(&k).map(|()| filter.key = Some(k)));
        }
        if errors.is_empty() { Ok(filter) } else { Err(errors) }
    }

    /// Whether a bulk retry fits the filter: only failed jobs are retried, and it has no key filter.
    fn bulk_fits(&self) -> bool {
        (self.status.is_empty() || self.status == JobStatus::Failed.as_str()) && self.key.is_empty()
    }
}

/// The failed jobs a bulk retry with `filter` takes.
fn failed_filter(filter: &AdminJobFilter) -> FailedFilter {
    FailedFilter {
        tenant: filter.tenant.clone(),
        kind: filter.kind.clone(),
        error_class: filter.error_class,
        created_after: filter.created_after,
        created_before: filter.created_before,
    }
}

/// A time typed in the filter: RFC 3339 (`2026-01-31T08:00:00Z`), or a date and time without a
/// zone (`2026-01-31T08:00`, `2026-01-31 08:00:00`, what a `datetime-local` input sends), or a date
/// — both read as UTC.
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, format) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc());
    }
    Err(format!("{s:?} is not a time: write it as 2026-01-31T08:00:00Z (RFC 3339) or 2026-01-31 08:00 (UTC)"))
}

fn filter_form(raw: &RawFilter, kinds: &[&str]) -> Markup {
    let mut kinds: Vec<&str> = kinds.to_vec();
    if !raw.kind.is_empty() && !kinds.contains(&raw.kind.as_str()) {
        kinds.push(&raw.kind);
    }
    html! {
        form id="job-filter" class="filters" method="get" action="/console/jobs" {
            label { span { "Tenant" } input type="text" name="tenant" value=(raw.tenant) spellcheck="false"; }
            label { span { "Kind" }
                select name="kind" {
                    option value="" { "any" }
                    @for k in &kinds { option value=(k) selected[raw.kind == *k] { (k) } }
                }
            }
            label { span { "Status" }
                select name="status" {
                    option value="" { "any" }
                    @if !raw.status.is_empty() && !STATUSES.iter().any(|s| s.as_str() == raw.status) {
                        option value=(raw.status) selected { (raw.status) }
                    }
                    @for s in STATUSES { option value=(s.as_str()) selected[raw.status == s.as_str()] { (s.as_str()) } }
                }
            }
            label { span { "Error class" }
                select name="error_class" {
                    option value="" { "any" }
                    @if !raw.error_class.is_empty() && !["retryable", "invalid", "alert"].contains(&raw.error_class.as_str()) {
                        option value=(raw.error_class) selected { (raw.error_class) }
                    }
                    @for c in ["retryable", "invalid", "alert"] { option value=(c) selected[raw.error_class == c] { (c) } }
                }
            }
            label { span { "Created after (UTC)" }
                input type="text" name="created_after" value=(raw.created_after) placeholder="2026-01-31T08:00:00Z" spellcheck="false";
            }
            label { span { "Created before (UTC)" }
                input type="text" name="created_before" value=(raw.created_before) placeholder="2026-01-31T18:00:00Z" spellcheck="false";
            }
            label { span { "Key" } input type="text" name="key" value=(raw.key) spellcheck="false"; }
            div class="buttons" {
                button id="filter-apply" type="submit" class="primary" { "Apply" }
                a href="/console/jobs" class="button" { "Clear" }
            }
        }
    }
}

fn jobs_table(jobs: &[JobRecord], now: DateTime<Utc>) -> Markup {
    html! {
        div class="table-wrap" {
            table id="jobs" class="data" {
                thead { tr {
                    th scope="col" { "Job" }
                    th scope="col" { "Status" }
                    th scope="col" { "Kind" }
                    th scope="col" { "Tenant" }
                    th scope="col" { "Progress" }
                    th scope="col" class="n" { "Attempts" }
                    th scope="col" { "Created" }
                } }
                tbody {
                    @for job in jobs {
                        tr data-job-id=(job.job_id) {
                            th scope="row" class="id" {
                                a class="job-link" href={ "/console/jobs/" (job.job_id) } title=(job.job_id) { (job.job_id) }
                            }
                            td class="status" { (status_badge(job.status)) }
                            td class="kind" { (job.kind) }
                            td class="tenant" { (job.tenant_id) }
                            td class="progress" { (progress_bar(job.progress.percent())) }
                            td class="attempts n" { (job.attempts) "/" (job.max_attempts) }
                            td class="created" { (when(job.created_at, now)) }
                        }
                    }
                }
            }
        }
    }
}

/// The bulk retry section: the dry-run form, and after a dry run its count and the confirming form.
fn bulk_section(session: &Session, raw: &RawFilter, preview: Option<u64>) -> Markup {
    html! {
        section class="bulk" aria-labelledby="bulk-title" {
            h2 id="bulk-title" { "Retry failed jobs" }
            form id="bulk-retry" method="get" action="/console/jobs" class="inline" {
                (raw.hidden())
                input type="hidden" name="bulk" value="preview";
                button id="bulk-dry-run" type="submit" { "Count failed jobs matching this filter" }
            }
            @if let Some(count) = preview {
                p id="bulk-count" {
                    strong { (view::num(count)) } " failed "
                    (if count == 1 { "job matches" } else { "jobs match" }) " this filter."
                    @if count > u64::from(DEFAULT_BULK_RETRY_LIMIT) {
                        " One retry takes the first " (view::num(u64::from(DEFAULT_BULK_RETRY_LIMIT))) "; run it again for the rest."
                    }
                }
                @if count > 0 {
                    form id="bulk-confirm-form" method="post" action="/console/jobs/bulk-retry" class="inline" {
                        (session.csrf_field())
                        (raw.hidden())
                        button id="bulk-confirm" type="submit" class="primary" {
                            "Retry " (view::num(count.min(u64::from(DEFAULT_BULK_RETRY_LIMIT)))) " failed jobs"
                        }
                    }
                }
            }
        }
    }
}

/// `GET /console/jobs?tenant=&kind=&status=&error_class=&created_after=&created_before=&key=&cursor=&bulk=`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    query_string: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let mut params: Params = match params(&session, query_string) {
        Ok(p) => p,
        Err(page) => return *page,
    };
    let mut flash = Flash::from_params(&mut params);
    let raw = RawFilter::read(|name| params.take(name));
    let cursor = params.take_set("cursor");
    let preview = params.take("bulk");
    let mut errors = match raw.parse() {
        Ok(_) => Vec::new(),
        Err(errors) => errors,
    };
    if let Some(c) = cursor.as_deref().filter(|c| c.len() > 20 || c.parse::<u64>().is_err()) {
        errors.push(format!("cursor: {c:?} is not a cursor this console issued"));
    }
    if let Some(p) = preview.as_deref().filter(|p| !p.is_empty() && *p != "preview") {
        errors.push(format!("bulk: {p:?} is not understood; expected preview"));
    }
    params.finish(&mut errors);
    let kinds: Vec<&str> = state.registry.names().collect();
    let render = |flash: Option<Flash>, body: Markup, status: StatusCode| {
        let page =
            Page { title: "Jobs", session: Some(&session), nav: Some("/console/jobs"), flash, live: None };
        let content = html! {
            h1 { "Jobs" }
            (filter_form(&raw, &kinds))
            (body)
        };
        view::respond(status, page.render(content))
    };
    let filter = match raw.parse() {
        Ok(filter) if errors.is_empty() => filter,
        _ => {
            let body = html! {
                section class="problem" {
                    h2 { "Bad request" }
                    ul { @for e in &errors { li { (e) } } }
                }
            };
            return render(flash, body, StatusCode::BAD_REQUEST);
        }
    };
    let page = match state.store.list_jobs_admin(&filter, PAGE_SIZE, cursor.as_deref()).await {
        Ok(page) => page,
        Err(e @ StoreError::InvalidCursor(_)) => {
            return view::bad_request(Some(&session), &[format!("cursor: {e}")]);
        }
        Err(e) => return view::store_failed(Some(&session), &e),
    };
    let bulk = if raw.bulk_fits() && preview.is_some() {
        let mode = BulkMode::DryRun;
        match run_bulk_retry(
            &state.store,
            &state.registry,
            &state.queues,
            &failed_filter(&filter),
            mode,
            0,
            "",
        )
        .await
        {
            Ok(dry) => Some(dry.matched),
            Err(e) => return view::store_failed(Some(&session), &e),
        }
    } else {
        if preview.is_some() {
            flash = Some(Flash::error(
                "Bulk retry takes failed jobs only, without a key filter: set status to failed or any, and clear the key.",
            ));
        }
        None
    };
    let now = Utc::now();
    let next = page.next_cursor.as_ref().map(|c| {
        let mut pairs = raw.pairs().to_vec();
        pairs.push(("cursor", c));
        format!("/console/jobs?{}", query(&pairs))
    });
    let body = html! {
        @if page.jobs.is_empty() {
            p id="no-jobs" class="empty" { "No job matches this filter." }
        } @else {
            (jobs_table(&page.jobs, now))
        }
        nav class="pager" aria-label="Pages" {
            @if cursor.is_some() {
                a href={ "/console/jobs?" (query(&raw.pairs())) } { "« Newest" }
            }
            @if let Some(next) = &next {
                a id="next-page" href=(next) rel="next" { "Older »" }
            }
            @if page.jobs.is_empty() && cursor.is_none() { (dash()) }
        }
        @if raw.bulk_fits() { (bulk_section(&session, &raw, bulk)) }
    };
    render(flash, body, StatusCode::OK)
}

/// `POST /console/jobs/bulk-retry` (the filter's fields, `csrf`): up to
/// [`DEFAULT_BULK_RETRY_LIMIT`] failed jobs matching the filter back in the queue, audited
/// `operator:<name>`; `303` back to the filtered list with a flash saying how many.
pub async fn bulk_retry(State(state): State<AppState>, form: ActionForm) -> Response {
    let session = &form.session;
    let raw = RawFilter::read(|name| form.field(name).map(str::to_owned));
    let filter = match raw.parse() {
        Ok(filter) => filter,
        Err(errors) => return view::bad_request(Some(session), &errors),
    };
    if !raw.bulk_fits() {
        return view::bad_request(
            Some(session),
            &["Bulk retry takes failed jobs only, without a key filter.".to_owned()],
        );
    }
    let mode = BulkMode::Retry { after: 0, limit: DEFAULT_BULK_RETRY_LIMIT };
    let budget = state.settings.max_attempts;
    let by = session.by();
    let done = run_bulk_retry(
        &state.store,
        &state.registry,
        &state.queues,
        &failed_filter(&filter),
        mode,
        budget,
        &by,
    )
    .await;
    let back = format!("/console/jobs?{}", query(&raw.pairs()));
    match done {
        Ok(done) => {
            let mut text = format!(
                "Retried {} failed {}",
                view::num(done.retried),
                if done.retried == 1 { "job" } else { "jobs" }
            );
            if done.matched > done.retried {
                text.push_str(&format!(
                    " ({} changed meanwhile and were left alone)",
                    done.matched - done.retried
                ));
            }
            if done.not_enqueued > 0 {
                text.push_str(&format!(
                    "; {} are queued in storage and wait for the reconciler to enqueue them",
                    done.not_enqueued
                ));
            }
            if done.next.is_some() {
                text.push_str("; more match: run the bulk retry again");
            }
            text.push('.');
            view::back(&back, &Flash::ok(text))
        }
        Err(e) => view::store_failed(Some(session), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_times_read_as_utc() {
        let t = |s: &str| parse_time(s).map(|t| t.to_rfc3339());
        assert_eq!(t("2026-01-31T08:00:00Z").as_deref(), Ok("2026-01-31T08:00:00+00:00"));
        assert_eq!(t("2026-01-31T09:00:00+01:00").as_deref(), Ok("2026-01-31T08:00:00+00:00"));
        assert_eq!(t("2026-01-31T08:00").as_deref(), Ok("2026-01-31T08:00:00+00:00"));
        assert_eq!(t("2026-01-31 08:00:30").as_deref(), Ok("2026-01-31T08:00:30+00:00"));
        assert_eq!(t("2026-01-31").as_deref(), Ok("2026-01-31T00:00:00+00:00"));
        for bad in ["yesterday", "2026-13-01", "31/01/2026", "2026-01-31T25:00"] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_filter_names_every_bad_field() {
        let raw = RawFilter {
            tenant: "bad tenant".into(),
            status: "done".into(),
            error_class: "oops".into(),
            created_after: "soon".into(),
            ..RawFilter::default()
        };
        let errors = raw.parse().expect_err("bad");
        assert_eq!(errors.len(), 4, "{errors:?}");
        for (e, field) in errors.iter().zip(["tenant", "status", "error class", "created after"]) {
            assert!(e.starts_with(field), "{e}");
        }
        let raw = RawFilter { status: "failed".into(), kind: "summarize".into(), ..RawFilter::default() };
        let filter = raw.parse().expect("good");
        assert_eq!(filter.status, Some(JobStatus::Failed));
        assert!(raw.bulk_fits());
        assert!(!RawFilter { status: "queued".into(), ..RawFilter::default() }.bulk_fits());
        assert!(!RawFilter { key: "k".into(), ..RawFilter::default() }.bulk_fits());
    }
}
