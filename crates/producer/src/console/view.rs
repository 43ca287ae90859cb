//! What every console page shares: the layout (header with the navigation, the operator, the
//! logout form; the flash; `<main id="main">`), the pages that explain a failure (bad parameters,
//! not found, storage or Redis down, a refused form), redirects back to a page with a flash, and
//! the small formatters — times in UTC with their age, counts, status badges, progress bars, JSON.
//!
//! Nothing here reads storage: the pages gather their data, these functions only render it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use longhaul_core::JobStatus;
use longhaul_store::StoreError;
use maud::{DOCTYPE, Markup, html};

use super::auth::Session;

/// The navigation: path and label of each page.
const NAV: [(&str, &str); 4] = [
    ("/console/queues", "Queues"),
    ("/console/jobs", "Jobs"),
    ("/console/tenants", "Tenants"),
    ("/console/dead-letters", "Dead letters"),
];

/// A message shown once at the top of a page, after an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flash {
    /// Whether it reports a success (`ok`) or a refusal or failure (`error`).
    pub ok: bool,
    /// What happened.
    pub text: String,
}

impl Flash {
    /// A success.
    pub fn ok(text: impl Into<String>) -> Self {
        Self { ok: true, text: text.into() }
    }

    /// A refusal or a failure.
    pub fn error(text: impl Into<String>) -> Self {
        Self { ok: false, text: text.into() }
    }

    /// The flash of a page's query (`flash`, `flash_kind`), if any.
    pub fn from_params(params: &mut Params) -> Option<Self> {
        let kind = params.take("flash_kind");
        let text = params.take("flash").filter(|t| !t.is_empty())?;
        // A flash arrives in a link anyone can craft: keep it short; it is escaped like any text.
        let text: String = text.chars().take(500).collect();
        Some(Self { ok: kind.as_deref() != Some("error"), text })
    }

    fn render(&self) -> Markup {
        let class = if self.ok { "flash ok" } else { "flash error" };
        html! { div class=(class) role=(if self.ok { "status" } else { "alert" }) { (self.text) } }
    }
}

/// One page: its title (`<title>` is "`title` · longhaul console"), the live stream it opens,
/// if any, and its content.
pub struct Page<'a> {
    /// The page's name.
    pub title: &'a str,
    /// The logged-in operator (`None`: the login page, or an error before login).
    pub session: Option<&'a Session>,
    /// Which navigation entry is current.
    pub nav: Option<&'static str>,
    /// The flash to show.
    pub flash: Option<Flash>,
    /// The console SSE route whose fragments update this page's `data-live` elements.
    pub live: Option<String>,
}

impl Page<'_> {
    /// The whole document with `content` in `<main id="main">`.
    pub fn render(&self, content: Markup) -> Markup {
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    meta name="color-scheme" content="light dark";
                    title { (self.title) " · longhaul console" }
                    link rel="stylesheet" href=(super::CSS_PATH);
                    script src=(super::JS_PATH) defer {}
                }
                body data-live-src=[self.live.as_deref()] {
                    a class="skip" href="#main" { "Skip to content" }
                    header class="top" {
                        nav id="nav" aria-label="Console" {
                            a class="brand" href="/console/queues" { "longhaul" }
                            @if let Some(session) = self.session {
                                ul class="links" {
                                    @for (path, label) in NAV {
                                        li {
                                            @if self.nav == Some(path) {
                                                a href=(path) aria-current="page" { (label) }
                                            } @else {
                                                a href=(path) { (label) }
                                            }
                                        }
                                    }
                                }
                                div class="who" {
                                    span class="muted" { "operator " }
                                    span id="operator" { (session.operator) }
                                    form id="logout" method="post" action="/console/logout" {
                                        input type="hidden" name="csrf" value=(session.csrf);
                                        button type="submit" class="link" { "Log out" }
                                    }
                                }
                            }
                        }
                    }
                    main id="main" tabindex="-1" {
                        @if let Some(flash) = &self.flash { (flash.render()) }
                        p id="live-status" class="live-status" role="status" aria-live="polite" {}
                        (content)
                    }
                }
            }
        }
    }
}

/// The console pages' content security policy.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

/// A page answered with `status`.
pub fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup).into_response();
    let headers = response.headers_mut();
    // Pages show live data and a CSRF token: never cache them.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Nothing but the console's own script and stylesheet (inline style attributes draw the bars),
    // no framing (clickjacking), forms post to the console only.
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

/// A page saying what went wrong: `title`, and one line per problem.
pub fn problem_page(
    session: Option<&Session>,
    status: StatusCode,
    title: &str,
    lines: &[String],
) -> Response {
    let page = Page { title, session, nav: None, flash: None, live: None };
    let back = if session.is_some() { "/console/queues" } else { "/console/login" };
    let content = html! {
        section class="problem" {
            h1 { (title) }
            @for line in lines { p { (line) } }
            p { a href=(back) { "Back to the console" } }
        }
    };
    respond(status, page.render(content))
}

/// A `400` page listing the bad parameters.
pub fn bad_request(session: Option<&Session>, lines: &[String]) -> Response {
    problem_page(session, StatusCode::BAD_REQUEST, "Bad request", lines)
}

/// A `404` page for a missing `what`.
pub fn not_found(session: Option<&Session>, what: &str) -> Response {
    problem_page(session, StatusCode::NOT_FOUND, "Not found", &[format!("No such {what}.")])
}

/// The page of a storage failure: `503` when trying again may help (logged as a warning), `500`
/// otherwise (logged as an error); the cause goes to the log only.
pub fn store_failed(session: Option<&Session>, e: &StoreError) -> Response {
    if e.is_retryable() || matches!(e, StoreError::Stopped(_)) {
        tracing::warn!(error = %e.report(), "console: application storage unavailable");
        let lines = ["Application storage is unavailable. Try again in a moment.".to_owned()];
        problem_page(session, StatusCode::SERVICE_UNAVAILABLE, "Storage unavailable", &lines)
    } else {
        tracing::error!(error = %e.report(), "console: storage failed");
        internal(session)
    }
}

/// The page of a Redis failure (`503`); the cause goes to the log only.
pub fn redis_failed(session: Option<&Session>, e: &longhaul_queue::QueueError) -> Response {
    tracing::warn!(error = %longhaul_core::Report(e), "console: Redis unavailable");
    let lines = ["Redis did not answer. Try again in a moment.".to_owned()];
    problem_page(session, StatusCode::SERVICE_UNAVAILABLE, "Redis unavailable", &lines)
}

/// A `500` page; the cause was logged by the caller.
pub fn internal(session: Option<&Session>) -> Response {
    let lines = ["An unexpected error occurred; it has been logged.".to_owned()];
    problem_page(session, StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", &lines)
}

/// A `303 See Other` to `location`.
pub fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A `303` back to `path` (which may carry a query) with `flash`.
pub fn back(path: &str, flash: &Flash) -> Response {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut location = format!("{path}{sep}flash={}", encode(&flash.text));
    if !flash.ok {
        location.push_str("&flash_kind=error");
    }
    see_other(&location)
}

/// `s` percent-encoded for a query string or a path segment (everything but the unreserved
/// characters of RFC 3986).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string (`a=1&b=2`, without `?`) of the non-empty `pairs`.
pub fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// A page's query parameters, taken by name; what no page reads is an error
/// ([`Params::finish`]).
#[derive(Debug, Default)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// The parameters of a query.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// The value of `name` (its first occurrence; every occurrence is taken), trimmed.
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.pairs.retain(|(k, v)| {
            if k == name {
                if found.is_none() {
                    found = Some(v.trim().to_owned());
                }
                false
            } else {
                true
            }
        });
        found
    }

    /// The value of `name`, if not empty.
    pub fn take_set(&mut self, name: &str) -> Option<String> {
        self.take(name).filter(|v| !v.is_empty())
    }

    /// One problem line per parameter no page took, added to `errors`.
    pub fn finish(self, errors: &mut Vec<String>) {
        for (name, _) in self.pairs {
            errors.push(format!("unknown parameter {name:?}"));
        }
    }
}

/// `t` as the console shows times: ISO 8601 in UTC to the second, with its age at `now`.
pub fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> Markup {
    let exact = t.to_rfc3339_opts(SecondsFormat::Micros, true);
    let shown = t.to_rfc3339_opts(SecondsFormat::Secs, true);
    html! {
        time datetime=(exact) title=(exact) {
            (shown) span class="ago" { " · " (ago(t, now)) }
        }
    }
}

/// [`when`] of an optional time; `—` for none.
pub fn when_opt(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    match t {
        Some(t) => when(t, now),
        None => dash(),
    }
}

/// `3m ago`, `in 5s`, `just now`.
pub fn ago(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds();
    if secs.abs() < 1 {
        "just now".to_owned()
    } else if secs > 0 {
        format!("{} ago", age(secs.unsigned_abs()))
    } else {
        format!("in {}", age(secs.unsigned_abs()))
    }
}

/// A duration in whole seconds, short: `12s`, `3m 05s`, `4h 12m`, `2d 3h`.
pub fn age(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3_600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3_600..172_800 => format!("{}h {:02}m", secs / 3_600, secs % 3_600 / 60),
        _ => format!("{}d {}h", secs / 86_400, secs % 86_400 / 3_600),
    }
}

/// A count with thousands separators: `12,345`.
pub fn num(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `—`: nothing to show.
pub fn dash() -> Markup {
    html! { span class="muted" { "—" } }
}

/// A status badge: its text is exactly the status.
pub fn status_badge(status: JobStatus) -> Markup {
    html! { span class={ "badge s-" (status.as_str()) } { (status.as_str()) } }
}

/// A progress bar with its percentage.
pub fn progress_bar(percent: u8) -> Markup {
    html! {
        span class="pbar" {
            progress max="100" value=(percent) aria-label="progress" { (percent) "%" }
            span class="num" { (percent) "%" }
        }
    }
}

/// `value` as indented JSON.
pub fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// `value` as one line of JSON, cut to `max` characters.
pub fn compact(value: &serde_json::Value, max: usize) -> String {
    let s = value.to_string();
    if s.chars().count() <= max {
        s
    } else {
        let mut cut: String = s.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_ages_and_encodings_read_well() {
        assert_eq!(num(0), "0");
        assert_eq!(num(999), "999");
        assert_eq!(num(1000), "1,000");
        assert_eq!(num(1_234_567), "1,234,567");
        assert_eq!(age(12), "12s");
        assert_eq!(age(65), "1m 05s");
        assert_eq!(age(3_600 * 5 + 60), "5h 01m");
        assert_eq!(age(86_400 * 3 + 3_600), "3d 1h");
        let now = Utc::now();
        assert_eq!(ago(now - chrono::Duration::seconds(180), now), "3m 00s ago");
        assert_eq!(ago(now + chrono::Duration::seconds(5), now), "in 5s");
        assert_eq!(ago(now, now), "just now");
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(query(&[("a", "1"), ("b", ""), ("c", "x y")]), "a=1&c=x%20y");
        assert_eq!(compact(&serde_json::json!({"a": "bcdef"}), 5), "{\"a\":…");
    }

    #[test]
    fn params_are_taken_once_and_the_rest_is_reported() {
        let mut p = Params::new(vec![
            ("a".into(), " 1 ".into()),
            ("a".into(), "2".into()),
            ("b".into(), String::new()),
            ("zzz".into(), "x".into()),
        ]);
        assert_eq!(p.take("a").as_deref(), Some("1"));
        assert_eq!(p.take("a"), None);
        assert_eq!(p.take_set("b"), None);
        let mut errors = Vec::new();
        p.finish(&mut errors);
        assert_eq!(errors, ["unknown parameter \"zzz\""]);
    }

    #[test]
    fn a_flash_comes_from_its_parameters() {
        let mut p = Params::new(vec![("flash".into(), "done".into()), ("flash_kind".into(), "error".into())]);
        assert_eq!(Flash::from_params(&mut p), Some(Flash::error("done")));
        let mut p = Params::new(vec![("flash".into(), "done".into())]);
        assert_eq!(Flash::from_params(&mut p), Some(Flash::ok("done")));
        let back = back("/console/jobs?status=failed", &Flash::error("a&b"));
        let location = back.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
        assert_eq!(location, Some("/console/jobs?status=failed&flash=a%26b&flash_kind=error"));
        assert_eq!(back.status(), StatusCode::SEE_OTHER);
    }
}
