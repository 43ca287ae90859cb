//! The operator console over HTTP (the router through `oneshot`, built by the production start-up
//! path on real Redis and PostgreSQL or SQLite): login with an operator key only, the session
//! cookie's attributes, sessions that expire or end with their operator, CSRF and origin checks
//! that leave everything as it was, every action (pause, resume, cancel, retry, bulk retry,
//! dead-letter replay and purge) changing state and audited `operator:<name>`, the pages' DOM
//! contract, clear `400` pages for bad parameters, and the live streams.

#[allow(dead_code, reason = "the shared fixture of the `it` tests; this binary uses part of it")]
#[path = "it/harness.rs"]
mod harness;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt as _;
use longhaul_core::{ErrorClass, JobId, JobStatus, Lease, TenantId};
use longhaul_store::{AttemptFailure, OperatorName, PauseScope, WriteOutcome};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::harness::{Backend, TestApp, wait_until};

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant")
}

/// A page's answer.
#[derive(Debug)]
struct Page {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers.get(header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    fn set_cookie(&self) -> &str {
        self.headers.get(header::SET_COOKIE).and_then(|v| v.to_str().ok()).unwrap_or_default()
    }

    /// Asserts the body contains `needle`.
    fn has(&self, needle: &str) -> &Self {
        assert!(self.body.contains(needle), "{needle:?} not in the page ({:?}):\n{}", self.status, self.body);
        self
    }

    fn lacks(&self, needle: &str) -> &Self {
        assert!(!self.body.contains(needle), "{needle:?} in the page:\n{}", self.body);
        self
    }

    /// The text of the element with id `id` up to its first child tag.
    fn text_of(&self, id: &str) -> String {
        let at =
            self.body.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id} in\n{}", self.body));
        let rest = &self.body[at..];
        let start = rest.find('>').expect("tag end") + 1;
        let end = rest[start..].find('<').expect("next tag") + start;
        rest[start..end].to_owned()
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let at = self.body.find(marker).unwrap_or_else(|| panic!("no CSRF field in\n{}", self.body))
            + marker.len();
        self.body[at..].split('"').next().expect("value").to_owned()
    }
}

/// A browser of the console: a router and the cookie it was given.
struct Browser {
    router: Router,
    cookie: Option<String>,
}

impl Browser {
    fn new(router: Router) -> Self {
        Self { router, cookie: None }
    }

    async fn send(
        &self,
        method: Method,
        uri: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(cookie) = &self.cookie {
            req = req.header(header::COOKIE, cookie);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = match form {
            Some(fields) => {
                let body =
                    fields.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect::<Vec<_>>().join("&");
                req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded").body(Body::from(body))
            }
            None => req.body(Body::empty()),
        }
        .expect("request");
        let response = self.router.clone().oneshot(req).await.expect("infallible router");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), 16 << 20).await.expect("body");
        Page { status, headers, body: String::from_utf8_lossy(&bytes).into_owned() }
    }

    async fn get(&self, uri: &str) -> Page {
        self.send(Method::GET, uri, None, &[]).await
    }

    async fn post(&self, uri: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, uri, Some(form), &[]).await
    }

    /// Logs in with `key`; keeps the cookie on success.
    async fn login(&mut self, key: &str) -> Page {
        let page = self.send(Method::POST, "/console/login", Some(&[("key", key)]), &[]).await;
        if page.status == StatusCode::SEE_OTHER {
            let cookie = page.set_cookie().split(';').next().unwrap_or_default().to_owned();
            self.cookie = Some(cookie);
        }
        page
    }

    /// The CSRF token of the session (read from a page).
    async fn csrf(&self) -> String {
        self.get("/console/queues").await.csrf()
    }

    /// A `303` back to `path` (a prefix) with a flash; the flash's text, decoded.
    fn flash_of(page: &Page, path: &str) -> String {
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
        let location = page.location();
        assert!(location.starts_with(path), "{location} is not under {path}");
        let flash = location.split("flash=").nth(1).unwrap_or_default().split('&').next().unwrap_or_default();
        decode(flash)
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 3 <= bytes.len() {
            out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).expect("hex"));
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8(out).expect("utf-8")
}

/// A new operator `name`'s key.
async fn operator(t: &TestApp, name: &str) -> String {
    let (_, key) = t.db.create_operator(&OperatorName::parse(name).expect("name")).await.expect("operator");
    key.expose().to_owned()
}

/// A browser logged in as a new operator `ops`.
async fn logged_in(t: &TestApp) -> Browser {
    let key = operator(t, "ops").await;
    let mut b = Browser::new(t.router.clone());
    let page = b.login(&key).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{page:?}");
    b
}

/// A new summarize job of tenant acme for document `doc`: its id.
async fn submitted(t: &TestApp, doc: &str) -> JobId {
    let input = json!({"document_id": doc, "text": format!("The text of {doc}.")});
    let r = t.submit("summarize", input, &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id")
}

/// A summarize job of acme whose attempt 1 failed for good.
async fn failed(t: &TestApp, doc: &str) -> JobId {
    let job = submitted(t, doc).await;
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    assert!(matches!(
        t.db.start_next(&tenant("acme"), &job, lease, 1).await.expect("start"),
        WriteOutcome::Applied(_)
    ));
    let failure = AttemptFailure::new(1, ErrorClass::Invalid, "no good");
    assert!(matches!(
        t.db.fail(&tenant("acme"), &job, failure).await.expect("fail"),
        WriteOutcome::Applied(_)
    ));
    job
}

async fn status(t: &TestApp, job: &JobId) -> JobStatus {
    t.db.get_job(&tenant("acme"), job).await.expect("get").expect("job").status
}

/// `(action, detail.by)` of `job`'s audit rows, oldest first.
async fn audit(t: &TestApp, job: &JobId) -> Vec<(String, Value)> {
    t.db.job_audit(&tenant("acme"), job)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.detail["by"].clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_an_operator_key_opens_the_console_and_its_cookie_is_locked_down() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let key = operator(&t, "ops").await;
        let mut b = Browser::new(t.router.clone());

        // No session: every page sends to the login form.
        for page in
            ["/console", "/console/queues", "/console/jobs", "/console/tenants", "/console/dead-letters"]
        {
            let r = b.get(page).await;
            assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"), "{page}");
        }
        let r = b.post("/console/queues/triage/pause", &[("csrf", "x")]).await;
        assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"));
        let form = b.get("/console/login").await;
        assert_eq!(form.status, StatusCode::OK);
        form.has("<form id=\"login-form\"")
            .has("id=\"login-key\" name=\"key\" type=\"password\"")
            .has("id=\"login-submit\"")
            .has("<title>Log in · longhaul console</title>");

        // A tenant's key, a wrong key, no key: 401, no cookie.
        for bad in [t.key.as_str(), "lho_0000", "", &format!("{key}x")] {
            let r = b.login(bad).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{bad:?}: {r:?}");
            r.has("not an operator key");
            assert!(r.set_cookie().is_empty(), "{r:?}");
        }

        // The operator's key: a session cookie, HttpOnly, SameSite=Strict, Path=/console; not
        // Secure over plain HTTP, Secure behind TLS.
        let r = b.login(&key).await;
        assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/queues"));
        let cookie = r.set_cookie();
        assert!(cookie.starts_with("longhaul_console=lhc_"), "{cookie}");
        for attribute in ["; HttpOnly", "; SameSite=Strict", "; Path=/console", "; Max-Age=43200"] {
            assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
        }
        assert!(!cookie.contains("Secure"), "{cookie}");
        let tls = Browser::new(t.router.clone())
            .send(
                Method::POST,
                "/console/login",
                Some(&[("key", key.as_str())]),
                &[("x-forwarded-proto", "https")],
            )
            .await;
        assert!(tls.set_cookie().ends_with("; Secure"), "{tls:?}");

        // In: the layout's contract, and the operator's name.
        let page = b.get("/console/queues").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        page.has("<nav id=\"nav\"")
            .has("href=\"/console/queues\"")
            .has("href=\"/console/jobs\"")
            .has("href=\"/console/tenants\"")
            .has("href=\"/console/dead-letters\"")
            .has("<span id=\"operator\">ops</span>")
            .has("<form id=\"logout\"")
            .has("<main id=\"main\"")
            .has("<title>Queues · longhaul console</title>");
        for (name, value) in [("cache-control", "no-store"), ("x-frame-options", "DENY")] {
            assert_eq!(page.headers.get(name).and_then(|v| v.to_str().ok()), Some(value), "{name}");
        }
        let csp =
            page.headers.get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"), "{csp}");
        assert_eq!(b.get("/console/login").await.location(), "/console/queues", "logged in already");

        // Logged out: the session is gone, the cookie cleared.
        let csrf = page.csrf();
        let r = b.post("/console/logout", &[("csrf", csrf.as_str())]).await;
        assert_eq!((r.status, r.location()), (StatusCode::SEE_OTHER, "/console/login"));
        assert!(r.set_cookie().contains("Max-Age=0"), "{r:?}");
        assert_eq!(b.get("/console/queues").await.location(), "/console/login");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_secure_cookie_flag_marks_every_cookie_secure() {
    let t = TestApp::new(Backend::Postgres).await;
    let key = operator(&t, "ops").await;
    let router = t.with_redis(&t.queue.url, &["--console-secure-cookie"]).await;
    let r = Browser::new(router).login(&key).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(r.set_cookie().ends_with("; Secure"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_session_or_a_revoked_operator_is_refused() {
    let t = TestApp::new(Backend::Postgres).await;
    let key = operator(&t, "ops").await;
    let router = t.with_redis(&t.queue.url, &["--console-session-ttl", "1s"]).await;
    let mut b = Browser::new(router);
    assert_eq!(b.login(&key).await.status, StatusCode::SEE_OTHER);
    assert!(b.cookie.as_deref().is_some_and(|c| c.starts_with("longhaul_console=")));
    // Valid at first (the login page sends a logged-in operator on), then no longer.
    wait_until(Duration::from_secs(10), "the session to expire", async || {
        let r = b.get("/console/queues").await;
        if r.location() == "/console/login" { Ok(()) } else { Err(r.status) }
    })
    .await;
    // A session of a revoked operator ends at once.
    let mut b = Browser::new(t.router.clone());
    assert_eq!(b.login(&key).await.status, StatusCode::SEE_OTHER);
    assert_eq!(b.get("/console/queues").await.status, StatusCode::OK);
    assert!(t.db.revoke_operator("ops").await.expect("revoke"));
    assert_eq!(b.get("/console/queues").await.location(), "/console/login");
    // A made-up cookie opens nothing.
    let forged = Browser { router: t.router.clone(), cookie: Some("longhaul_console=lhc_00".into()) };
    assert_eq!(forged.get("/console/jobs").await.location(), "/console/login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forms_without_the_sessions_token_or_from_another_origin_change_nothing() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let b = logged_in(&t).await;
        let csrf = b.csrf().await;
        let job = submitted(&t, "doc-csrf").await;
        let cancel = format!("/console/jobs/{job}/cancel");
        for (path, form) in [
            ("/console/queues/triage/pause", vec![]),
            ("/console/queues/triage/pause", vec![("csrf", "0".repeat(64))]),
            (cancel.as_str(), vec![("csrf", String::new())]),
            (cancel.as_str(), vec![("csrf", format!("{csrf}0"))]),
            ("/console/jobs/bulk-retry", vec![("status", "failed".to_owned())]),
            ("/console/dead-letters/summarize/purge", vec![("csrf", "nope".to_owned())]),
            ("/console/logout", vec![]),
        ] {
            let fields: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = b.post(path, &fields).await;
            assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} {form:?}: {r:?}");
            r.has("the form is stale or forged (CSRF check failed)");
        }
        // The right token from another site: refused too.
        let r = b
            .send(
                Method::POST,
                "/console/queues/triage/pause",
                Some(&[("csrf", csrf.as_str())]),
                &[("host", "console.example"), ("origin", "https://evil.example")],
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
        // Nothing changed: no pause, the job still queued, the session still valid.
        assert!(t.db.paused().await.expect("paused").is_empty());
        assert_eq!(status(&t, &job).await, JobStatus::Queued);
        assert_eq!(b.get("/console/queues").await.status, StatusCode::OK);
        // The same origin, and the token: done.
        let r = b
            .send(
                Method::POST,
                "/console/queues/triage/pause",
                Some(&[("csrf", csrf.as_str())]),
                &[("host", "console.example"), ("origin", "https://console.example")],
            )
            .await;
        assert_eq!(Browser::flash_of(&r, "/console/queues"), "Queue triage paused");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pause_and_resume_from_the_queues_page_are_audited() {
    let t = TestApp::new(Backend::Postgres).await;
    let b = logged_in(&t).await;
    let csrf = b.csrf().await;
    let page = b.get("/console/queues").await;
    page.has("<table id=\"queues\"")
        .has("<tr data-queue=\"triage\">")
        .has("<tr data-queue=\"summarize\">")
        .has("<td class=\"waiting n\"")
        .has("<td class=\"running n\"")
        .has("<td class=\"delayed n\"")
        .has("<td class=\"dead n\"")
        .has("<td class=\"throughput\"")
        .has("<td class=\"oldest n\"")
        .has("<table id=\"kinds\"")
        .has("<tr data-kind=\"summarize\">")
        .has("class=\"pause\"")
        .lacks("class=\"resume\"")
        .has("data-live=\"queues\"")
        .has("data-live-src=\"/console/live/queues\"");

    let r = b.post("/console/queues/summarize/pause", &[("csrf", csrf.as_str())]).await;
    assert_eq!(Browser::flash_of(&r, "/console/queues"), "Queue summarize paused");
    let r = b.post("/console/kinds/triage/pause", &[("csrf", csrf.as_str())]).await;
    assert_eq!(Browser::flash_of(&r, "/console/queues"), "Kind triage paused");
    let r = b.post("/console/queues/summarize/pause", &[("csrf", csrf.as_str())]).await;
    assert_eq!(Browser::flash_of(&r, "/console/queues"), "Queue summarize was paused already");
    let paused: Vec<_> =
        t.db.paused().await.expect("paused").into_iter().map(|p| (p.scope, p.name, p.paused_by)).collect();
    assert_eq!(
        paused,
        [
            (PauseScope::Queue, "summarize".to_owned(), "operator:ops".to_owned()),
            (PauseScope::Kind, "triage".to_owned(), "operator:ops".to_owned()),
        ]
    );
    // The page says so, with the flash, and offers resume where paused.
    let page = b.get(&format!("/console/queues?flash={}", encode("Queue summarize paused"))).await;
    page.has("<div class=\"flash ok\"").has("Queue summarize paused");
    let row = row_of(&page.body, "data-queue=\"summarize\"");
    assert!(row.contains(">paused</span></td>") && row.contains("class=\"resume\""), "{row}");
    let row = row_of(&page.body, "data-queue=\"triage\"");
    assert!(row.contains(">active</span></td>") && row.contains("class=\"pause\""), "{row}");
    let row = row_of(&page.body, "data-kind=\"triage\"");
    assert!(row.contains(">paused</span></td>") && row.contains("class=\"resume\""), "{row}");

    let r = b.post("/console/queues/summarize/resume", &[("csrf", csrf.as_str())]).await;
    assert_eq!(Browser::flash_of(&r, "/console/queues"), "Queue summarize resumed");
    let actions: Vec<_> =
        t.db.control_audit(None, 10)
            .await
            .expect("audit")
            .into_iter()
            .map(|a| (a.action, a.detail["by"].clone(), a.detail["name"].clone()))
            .collect();
    assert_eq!(
        actions,
        [
            ("resumed".to_owned(), json!("operator:ops"), json!("summarize")),
            ("paused".to_owned(), json!("operator:ops"), json!("triage")),
            ("paused".to_owned(), json!("operator:ops"), json!("summarize")),
        ]
    );
    // Unknown names and actions: 404 pages, nothing recorded.
    for path in ["/console/queues/nope/pause", "/console/kinds/nope/resume", "/console/queues/triage/stop"] {
        assert_eq!(b.post(path, &[("csrf", csrf.as_str())]).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(t.db.control_audit(None, 10).await.expect("audit").len(), 3);
}

/// The `<tr …>` of the page whose attributes include `attr`, up to its `</tr>`.
fn row_of<'a>(body: &'a str, attr: &str) -> &'a str {
    let at = body.find(&format!("<tr {attr}")).unwrap_or_else(|| panic!("no row {attr} in\n{body}"));
    let end = body[at..].find("</tr>").expect("row end") + at;
    &body[at..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_retry_from_the_job_page_are_audited() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let b = logged_in(&t).await;
        let job = submitted(&t, "doc-1").await;
        let path = format!("/console/jobs/{job}");
        let page = b.get(&path).await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        assert_eq!(page.text_of("job-status"), "queued");
        assert_eq!(page.text_of("job-stage"), "—");
        assert_eq!(page.text_of("job-progress"), "0%");
        page.has("<progress id=\"job-progress-bar\" max=\"100\" value=\"0\"")
            .has("<ol id=\"timeline\"")
            .has("<strong class=\"action\">enqueued</strong>")
            .has("<table id=\"attempts\"")
            .has("<pre id=\"input\"")
            .has("doc-1")
            .has("<pre id=\"output\"")
            .has("<table id=\"operations\"")
            .has("id=\"cancel-form\"")
            .has("id=\"cancel\"")
            .lacks("id=\"retry-form\"")
            .has(&format!("data-live-src=\"/console/live/jobs/{job}\""))
            .has(&format!("<title>Job {job} · longhaul console</title>"));

        let csrf = page.csrf();
        let r = b.post(&format!("{path}/cancel"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(Browser::flash_of(&r, &path), "Job cancelled: it will not run.");
        assert_eq!(status(&t, &job).await, JobStatus::Cancelled);
        let page = b.get(r.location()).await;
        assert_eq!(page.text_of("job-status"), "cancelled");
        page.has("<div class=\"flash ok\"")
            .has("id=\"retry-form\"")
            .lacks("id=\"cancel-form\"")
            .lacks("data-live-src");
        // Cancelled already: said so, nothing changes.
        let r = b.post(&format!("{path}/cancel"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(Browser::flash_of(&r, &path), "The job was cancelled already.");

        let r = b.post(&format!("{path}/retry"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(Browser::flash_of(&r, &path), "Job put back in the queue.");
        assert_eq!(status(&t, &job).await, JobStatus::Queued);
        let r = b.post(&format!("{path}/retry"), &[("csrf", csrf.as_str())]).await;
        assert!(r.location().contains("flash_kind=error"), "{r:?}");
        assert_eq!(
            Browser::flash_of(&r, &path),
            "The job is queued: only a failed or cancelled job can be retried."
        );
        assert_eq!(
            audit(&t, &job).await,
            [
                ("enqueued".to_owned(), Value::Null),
                ("cancelled".to_owned(), json!("operator:ops")),
                ("retried".to_owned(), json!("operator:ops")),
            ]
        );
        // A finished job cannot be cancelled: an error flash, nothing changes.
        let done = failed(&t, "doc-failed").await;
        let r = b.post(&format!("/console/jobs/{done}/cancel"), &[("csrf", csrf.as_str())]).await;
        assert!(r.location().ends_with("&flash_kind=error"), "{r:?}");
        assert_eq!(status(&t, &done).await, JobStatus::Failed);
        let page = b.get(&format!("/console/jobs/{done}")).await;
        page.has("<td class=\"class\">invalid</td>").has("<td class=\"message\">no good</td>");
        // Missing jobs and bad ids: 404 pages.
        let missing = JobId::parse(format!("job_{}", "0".repeat(32))).expect("id");
        for path in [format!("/console/jobs/{missing}"), "/console/jobs/not-a-job".to_owned()] {
            assert_eq!(b.get(&path).await.status, StatusCode::NOT_FOUND, "{path}");
            let r = b.post(&format!("{path}/cancel"), &[("csrf", csrf.as_str())]).await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_page_filters_pages_and_bulk_retries_after_a_dry_run() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let b = logged_in(&t).await;
        let one = failed(&t, "doc-f1").await;
        let two = failed(&t, "doc-f2").await;
        let queued = submitted(&t, "doc-q").await;

        let page = b.get("/console/jobs").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        page.has("<form id=\"job-filter\"")
            .has("name=\"tenant\"")
            .has("name=\"kind\"")
            .has("name=\"status\"")
            .has("name=\"error_class\"")
            .has("name=\"created_after\"")
            .has("name=\"created_before\"")
            .has("name=\"key\"")
            .has("id=\"filter-apply\"")
            .has("<table id=\"jobs\"")
            .has(&format!("<tr data-job-id=\"{queued}\">"))
            .has(&format!("class=\"job-link\" href=\"/console/jobs/{one}\""))
            .has("<td class=\"status\"><span class=\"badge s-failed\">failed</span></td>")
            .has("<td class=\"kind\">summarize</td>")
            .has("<td class=\"tenant\">acme</td>")
            .has("<td class=\"progress\">")
            .has("<td class=\"created\">")
            .lacks("id=\"next-page\"")
            .lacks("id=\"no-jobs\"");
        let page = b.get("/console/jobs?status=queued&tenant=acme").await;
        page.has(&format!("data-job-id=\"{queued}\"")).lacks(&format!("data-job-id=\"{one}\""));
        let page = b.get("/console/jobs?tenant=globex").await;
        page.has("<p id=\"no-jobs\"");
        let page = b.get("/console/jobs?key=no-such-key").await;
        page.has("<p id=\"no-jobs\"");

        // The dry run counts; the confirmation retries, and says how many.
        let page = b.get("/console/jobs?status=failed").await;
        page.has("<form id=\"bulk-retry\"").has("id=\"bulk-dry-run\"").lacks("id=\"bulk-count\"");
        let page = b.get("/console/jobs?status=failed&bulk=preview").await;
        page.has("<p id=\"bulk-count\"><strong>2</strong> failed jobs match").has("id=\"bulk-confirm\"");
        assert_eq!((status(&t, &one).await, status(&t, &two).await), (JobStatus::Failed, JobStatus::Failed));
        let csrf = page.csrf();
        let r = b.post("/console/jobs/bulk-retry", &[("csrf", csrf.as_str()), ("status", "failed")]).await;
        assert_eq!(Browser::flash_of(&r, "/console/jobs?status=failed"), "Retried 2 failed jobs.");
        assert_eq!((status(&t, &one).await, status(&t, &two).await), (JobStatus::Queued, JobStatus::Queued));
        assert_eq!(audit(&t, &one).await.last(), Some(&("retried".to_owned(), json!("operator:ops"))));
        let page = b.get("/console/jobs?status=failed&bulk=preview").await;
        page.has("<p id=\"bulk-count\"><strong>0</strong> failed jobs match").lacks("id=\"bulk-confirm\"");
        // Not offered for a filter that lists other jobs than failed ones.
        b.get("/console/jobs?status=queued").await.lacks("id=\"bulk-retry\"");

        // Keyset pages: 50 a page, the next one through the cursor.
        let jobs: Vec<_> = (0..52).map(|i| format!("doc-page-{i}")).collect();
        for doc in &jobs {
            submitted(&t, doc).await;
        }
        let page = b.get("/console/jobs?status=queued").await;
        assert_eq!(page.body.matches("<tr data-job-id=").count(), 50);
        let next = {
            let at = page.body.find("id=\"next-page\" href=\"").expect("a next page")
                + "id=\"next-page\" href=\"".len();
            page.body[at..].split('"').next().expect("href").replace("&amp;", "&")
        };
        assert!(next.starts_with("/console/jobs?status=queued&cursor="), "{next}");
        let page = b.get(&next).await;
        assert_eq!(page.status, StatusCode::OK);
        // 52 new ones, the first queued one and the two retried: 55 in all.
        assert_eq!(page.body.matches("<tr data-job-id=").count(), 5);
        page.lacks("id=\"next-page\"");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_parameters_are_a_clear_400_page_and_never_a_panic() {
    let t = TestApp::new(Backend::Postgres).await;
    let b = logged_in(&t).await;
    for (uri, says) in [
        ("/console/jobs?status=bogus", "status: "),
        ("/console/jobs?error_class=nope", "error class: "),
        ("/console/jobs?created_after=yesterday", "created after: \"yesterday\" is not a time"),
        ("/console/jobs?created_before=2026-13-45", "created before: "),
        ("/console/jobs?tenant=has%20space", "tenant: "),
        ("/console/jobs?kind=%2F%2F", "kind: "),
        ("/console/jobs?cursor=abc", "cursor: "),
        ("/console/jobs?cursor=-1", "cursor: "),
        ("/console/jobs?bulk=now", "bulk: "),
        ("/console/jobs?stauts=failed", "unknown parameter \"stauts\""),
        ("/console/queues?x=1", "unknown parameter \"x\""),
        ("/console/tenants?x=1", "unknown parameter \"x\""),
        ("/console/dead-letters?queue=nope", "no queue or partition is named \"nope\""),
        ("/console/dead-letters?queue=summarize&after=bad", "after: "),
        ("/console/dead-letters?queue=summarize&confirm=yes", "confirm: "),
    ] {
        let page = b.get(uri).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{uri}: {page:?}");
        page.has(&says.replace('"', "&quot;"));
    }
    // The filter form stays, to fix the filter.
    b.get("/console/jobs?status=bogus").await.has("<form id=\"job-filter\"");
    for uri in ["/console/nope", "/console/jobs/job_x", "/console/live/jobs/nope"] {
        assert_eq!(b.get(uri).await.status, StatusCode::NOT_FOUND, "{uri}");
    }
    let r = b
        .post("/console/jobs/bulk-retry", &[("csrf", b.csrf().await.as_str()), ("created_after", "soon")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    r.has("created after: ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tenants_page_shows_running_jobs_against_caps() {
    let t = TestApp::new(Backend::Postgres).await;
    t.key_for("globex").await;
    let b = logged_in(&t).await;
    let job = submitted(&t, "doc-run").await;
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    t.db.start_next(&tenant("acme"), &job, lease, 1).await.expect("start");
    let cap = std::num::NonZeroU32::new(4);
    let rate = longhaul_store::Rate::new(2.5).ok();
    t.db.set_tenant_limit(&tenant("acme"), cap, rate, "operator:ops").await.expect("limit");
    let page = b.get("/console/tenants").await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    page.has("<table id=\"tenants\"")
        .has("data-live=\"tenants\"")
        .has("data-live-src=\"/console/live/tenants\"");
    let row = row_of(&page.body, "data-tenant=\"acme\"");
    assert!(row.contains("<td class=\"running n\">1</td>"), "{row}");
    assert!(row.contains(">4</td>") && row.contains("<td class=\"cap n\""), "{row}");
    assert!(row.contains("<td class=\"rate n\">2.5/s</td>"), "{row}");
    let row = row_of(&page.body, "data-tenant=\"globex\"");
    assert!(row.contains("<td class=\"running n\">0</td>"), "{row}");
    assert!(row.contains("<td class=\"rate n\">—</td>"), "no default rate: {row}");
}

/// Adds a dead letter to `t`'s summarize queue with `fields`; its id.
async fn dead_letter(t: &TestApp, reason: &str, fields: &[(&str, String)]) -> String {
    let mut conn = t.queue.raw().await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(t.summarize.keys().dead()).arg("*").arg("source_id").arg("1-0").arg("reason").arg(reason);
    for (k, v) in fields {
        cmd.arg(*k).arg(v);
    }
    cmd.query_async(&mut conn).await.expect("XADD")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_replayed_and_purged_from_the_console() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let b = logged_in(&t).await;
        let csrf = b.csrf().await;
        let stalled = failed(&t, "doc-stalled").await;
        let fields = vec![
            ("j", stalled.to_string()),
            ("t", "acme".to_owned()),
            ("n", "summarize".to_owned()),
            ("a", "1".to_owned()),
            ("e", "1700000000000".to_owned()),
        ];
        let d1 = dead_letter(&t, "delivered 5 times without finishing", &fields).await;
        let d2 = dead_letter(&t, "cannot decode", &[("j", "junk".to_owned())]).await;
        let d3 = dead_letter(&t, "cannot decode", &[("x", "y".to_owned())]).await;

        let page = b.get("/console/dead-letters?queue=summarize").await;
        assert_eq!(page.status, StatusCode::OK, "{page:?}");
        page.has("<table id=\"dead-letters\"")
            .has(&format!("<tr data-entry=\"{d1}\">"))
            .has(&format!("<tr data-entry=\"{d2}\">"))
            .has("class=\"replay\"")
            .has("class=\"purge danger\"")
            .has("<form id=\"purge-all\"")
            .has("id=\"purge-all-button\"")
            .lacks("id=\"purge-all-confirm\"")
            .has("<option value=\"summarize\" selected>");

        // Replay the stalled one: its job is retried.
        let r =
            b.post(&format!("/console/dead-letters/summarize/{d1}/replay"), &[("csrf", csrf.as_str())]).await;
        let flash = Browser::flash_of(&r, "/console/dead-letters?queue=summarize");
        assert_eq!(flash, format!("Dead letter {d1} replayed: job {stalled} retried."));
        assert_eq!(status(&t, &stalled).await, JobStatus::Queued);
        assert_eq!(audit(&t, &stalled).await.last(), Some(&("retried".to_owned(), json!("operator:ops"))));
        // Purge one.
        let r =
            b.post(&format!("/console/dead-letters/summarize/{d2}/purge"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(Browser::flash_of(&r, "/console/dead-letters"), format!("Dead letter {d2} purged."));
        let r =
            b.post(&format!("/console/dead-letters/summarize/{d2}/purge"), &[("csrf", csrf.as_str())]).await;
        assert_eq!(
            Browser::flash_of(&r, "/console/dead-letters"),
            format!("Dead letter {d2} was gone already.")
        );
        let r = b.post("/console/dead-letters/summarize/bad-id/replay", &[("csrf", csrf.as_str())]).await;
        assert!(r.location().ends_with("flash_kind=error"), "{r:?}");
        // Purge all: a confirmation first.
        let page = b.get("/console/dead-letters?queue=summarize&confirm=purge-all").await;
        page.has("id=\"purge-all-confirm\"").has("Purge all 1 dead letters");
        let r = b.post("/console/dead-letters/summarize/purge", &[("csrf", csrf.as_str())]).await;
        assert_eq!(Browser::flash_of(&r, "/console/dead-letters"), "Purged 1 dead letter of summarize.");
        let page = b.get("/console/dead-letters?queue=summarize").await;
        page.has("<p id=\"no-dead-letters\"")
            .lacks(&format!("data-entry=\"{d3}\""))
            .lacks("id=\"purge-all\"");
        let audited: Vec<_> =
            t.db.control_audit(None, 10)
                .await
                .expect("audit")
                .into_iter()
                .map(|a| (a.action, a.detail["by"].clone()))
                .collect();
        assert_eq!(
            audited,
            [
                ("dead_letters_purged".to_owned(), json!("operator:ops")),
                ("dead_letters_purged".to_owned(), json!("operator:ops")),
                ("dead_letter_replayed".to_owned(), json!("operator:ops")),
            ]
        );
    })
    .await;
}

/// Reads `body` until its text contains every one of `needles` (or panics at the deadline);
/// returns what was read.
async fn read_until(body: &mut Body, needles: &[&str]) -> String {
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !needles.iter().all(|n| seen.contains(n)) {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {needles:?}; read:\n{seen}"));
        match frame {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    seen.push_str(&String::from_utf8_lossy(data));
                }
            }
            Some(Err(e)) => panic!("body failed: {e}; read:\n{seen}"),
            None => panic!("the stream ended before {needles:?}; read:\n{seen}"),
        }
    }
    seen
}

/// Opens live stream `uri` as `b`.
async fn live(b: &Browser, uri: &str) -> (StatusCode, axum::http::HeaderMap, Body) {
    let mut req = Request::builder().uri(uri);
    if let Some(cookie) = &b.cookie {
        req = req.header(header::COOKIE, cookie);
    }
    let response = b.router.clone().oneshot(req.body(Body::empty()).expect("request")).await.expect("router");
    let (parts, body) = response.into_parts();
    (parts.status, parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn live_streams_update_the_pages_and_end_with_the_job() {
    let t = TestApp::new(Backend::Postgres).await;
    let b = logged_in(&t).await;
    let job = submitted(&t, "doc-live").await;

    // No session: the login page, no stream.
    let anonymous = Browser::new(t.router.clone());
    for uri in ["/console/live/queues", "/console/live/tenants", &format!("/console/live/jobs/{job}")] {
        let (status, headers, _) = live(&anonymous, uri).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{uri}");
        assert_eq!(headers.get(header::LOCATION).and_then(|v| v.to_str().ok()), Some("/console/login"));
    }

    // The queues' tables, at once, then again when they change.
    let (status, headers, mut body) = live(&b, "/console/live/queues").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()), Some("text/event-stream"));
    let first =
        read_until(&mut body, &["event: swap", "retry: 2000", "data-queue=\\\"summarize\\\"", "\"kinds\""])
            .await;
    assert!(first.contains("table id=\\\"queues\\\""), "{first}");
    t.db.pause(PauseScope::Queue, "summarize", "operator:ops").await.expect("pause");
    read_until(&mut body, &["class=\\\"resume\\\""]).await;
    drop(body);

    // The tenants' table.
    let (status, _, mut body) = live(&b, "/console/live/tenants").await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut body, &["event: swap", "data-tenant=\\\"acme\\\""]).await;
    drop(body);

    // A job: its parts, then each change, then the end once it is terminal.
    let (status, _, mut body) = live(&b, &format!("/console/live/jobs/{job}")).await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut body, &["event: swap", "\"summary\"", "job-status", ">queued<", "\"timeline\""]).await;
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    t.db.start_next(&tenant("acme"), &job, lease, 1).await.expect("start");
    let progress = longhaul_core::Progress::new(42).expect("progress");
    t.db.record_progress(&tenant("acme"), &job, 1, "summarize", progress).await.expect("progress");
    read_until(&mut body, &[">running<", "42%", ">summarize<"]).await;
    t.db.complete(&tenant("acme"), &job, 1, &json!({"summary": "short"})).await.expect("complete");
    let end = read_until(&mut body, &[">completed<", "event: end"]).await;
    assert!(end.contains("short"), "the output is sent: {end}");
    assert!(body.frame().await.is_none(), "the stream ends after the job");
    // A finished job's stream (a page rendered while it ran, connecting late): its final parts
    // once, then the end.
    let (status, _, mut body) = live(&b, &format!("/console/live/jobs/{job}")).await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut body, &["event: swap", ">completed<", "event: end"]).await;
    assert!(body.frame().await.is_none(), "the stream ends at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_assets_are_embedded_and_cached() {
    let t = TestApp::new(Backend::Sqlite).await;
    let b = Browser::new(t.router.clone());
    for (path, kind, sample) in [
        ("/console/assets/console.css", "text/css", "prefers-color-scheme: dark"),
        ("/console/assets/console.js", "text/javascript", "EventSource"),
    ] {
        let r = b.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        let content_type =
            r.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(content_type.starts_with(kind), "{content_type}");
        assert_eq!(
            r.headers.get(header::CACHE_CONTROL).and_then(|v| v.to_str().ok()),
            Some("public, max-age=3600")
        );
        r.has(sample);
    }
}
