//! Who may use the console, and how a form proves it comes from the console: login with an
//! operator key (`GET`/`POST /console/login`), the session cookie, logout, the [`Session`]
//! extractor every page takes, and the [`ActionForm`] extractor every state-changing form goes
//! through (session, `Origin`, CSRF token).
//!
//! - A login with a key that is no operator's (a tenant's key included) is a `401` page saying
//!   "not an operator key". A good one creates a session in storage (its token stored only as a
//!   hash; see `longhaul_store::console`) and sets the cookie
//!   `longhaul_console=<token>; Path=/console; HttpOnly; SameSite=Strict; Max-Age=<ttl>` — plus
//!   `Secure` when the request came over TLS (`X-Forwarded-Proto: https`) or
//!   `--console-secure-cookie` says so — then `303` to `/console/queues`.
//! - A page without a valid session (none, unknown, expired, or its operator revoked) is a `303` to
//!   `/console/login`.
//! - Every `POST` but the login's carries the session's CSRF token in field `csrf`; a missing or
//!   wrong one is a `403` page and nothing changes. Any `POST` (the login's too) whose `Origin`
//!   header is present and names another host than `Host` is refused the same way.

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use longhaul_store::ConsoleSession;
use maud::html;

use super::view::{self, Page, Params, problem_page, see_other};
use crate::AppState;

/// The session cookie's name.
pub const COOKIE: &str = "longhaul_console";

/// The longest key a login accepts (keys are 68 characters).
const MAX_KEY_LEN: usize = 256;

/// The logged-in operator of a request: a valid session.
#[derive(Clone)]
pub struct Session {
    /// The operator's name.
    pub operator: String,
    /// The session's CSRF token, for the forms of its pages.
    pub csrf: String,
    session: ConsoleSession,
    /// The cookie's token, to check the session again (a live stream does, now and then).
    token: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("operator", &self.operator).finish_non_exhaustive()
    }
}

impl Session {
    /// Who asked, as audit rows say it: `operator:<name>`.
    pub fn by(&self) -> String {
        crate::control::operator_by(&self.operator)
    }

    /// Whether the session is still valid (not expired, not logged out, its operator not revoked).
    ///
    /// # Errors
    /// Storage errors.
    pub async fn still_valid(
        &self,
        store: &longhaul_store::Store,
    ) -> Result<bool, longhaul_store::StoreError> {
        Ok(store.console_session(&self.token).await?.is_some())
    }

    /// The hidden CSRF field every form of the console carries.
    pub fn csrf_field(&self) -> maud::Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }
}

/// The session cookie's value in `headers`, if any.
fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| !v.is_empty() && v.len() <= MAX_KEY_LEN)
}

/// The session of `headers`' cookie: `Ok(None)` when there is no valid one.
async fn lookup(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, Response> {
    let Some(token) = cookie_token(headers) else { return Ok(None) };
    match state.store.console_session(token).await {
        Ok(found) => Ok(found.map(|session| Session {
            operator: session.operator.clone(),
            csrf: session.csrf.clone(),
            session,
            token: token.to_owned(),
        })),
        Err(e) => Err(view::store_failed(None, &e)),
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        lookup(state, &parts.headers).await?.ok_or_else(|| see_other("/console/login"))
    }
}

/// Whether a `POST` with `headers` may be taken: no `Origin`, or one whose host is `Host`.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let authority =
        origin.to_str().ok().and_then(|o| o.split_once("://")).map(|(_, rest)| rest.trim_end_matches('/'));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

/// The `403` page of a refused form.
fn forged(session: Option<&Session>, why: &str) -> Response {
    problem_page(
        session,
        StatusCode::FORBIDDEN,
        "Refused",
        &[
            "Refused: the form is stale or forged (CSRF check failed).".to_owned(),
            format!("{why} Reload the page and try again."),
        ],
    )
}

/// A state-changing form of the console, checked: a valid session, the same origin, and the
/// session's CSRF token in field `csrf`. Its other fields are read with [`ActionForm::field`].
pub struct ActionForm {
    /// The operator submitting it.
    pub session: Session,
    fields: Vec<(String, String)>,
}

impl std::fmt::Debug for ActionForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.fields.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("ActionForm").field("session", &self.session).field("fields", &names).finish()
    }
}

impl ActionForm {
    /// Field `name` (trimmed), if present and not empty.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).filter(|v| !v.is_empty())
    }
}

impl FromRequest<AppState> for ActionForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        if !same_origin(&parts.headers) {
            return Err(forged(Some(&session), "It was sent from another site."));
        }
        let req = Request::from_parts(parts, body);
        let Form(fields) = Form::<Vec<(String, String)>>::from_request(req, state)
            .await
            .map_err(|e| form_rejected(Some(&session), &e))?;
        let sent = fields.iter().find(|(k, _)| k == "csrf").map(|(_, v)| v.as_str());
        match sent {
            Some(token) if session.session.csrf_matches(token) => Ok(Self { session, fields }),
            Some(_) => Err(forged(Some(&session), "Its token is not this session's.")),
            None => Err(forged(Some(&session), "It carries no token.")),
        }
    }
}

/// The page of a form body that does not parse.
fn form_rejected(session: Option<&Session>, e: &FormRejection) -> Response {
    view::bad_request(session, &[format!("The form could not be read: {}", e.body_text())])
}

/// Whether the request came over TLS, as far as the producer can tell.
fn over_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// The `Set-Cookie` value of a session cookie holding `value` for `max_age` seconds.
fn cookie(value: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let page = Page { title: "Log in", session: None, nav: None, flash: None, live: None };
    let content = html! {
        section class="login" {
            h1 { "Operator console" }
            p class="muted" {
                "Log in with an operator key (issued by " code { "producer operators create" } ")."
            }
            @if let Some(error) = error {
                div class="flash error" role="alert" { (error) }
            }
            form id="login-form" method="post" action="/console/login" {
                label for="login-key" { "Operator key" }
                input id="login-key" name="key" type="password" autocomplete="current-password"
                    required autofocus spellcheck="false";
                button id="login-submit" type="submit" class="primary" { "Log in" }
            }
        }
    };
    view::respond(status, page.render(content))
}

/// `GET /console/login`: the login form (a `303` to the queues when already logged in).
pub async fn login_form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match lookup(&state, &headers).await {
        Ok(Some(_)) => see_other("/console/queues"),
        Ok(None) => login_page(StatusCode::OK, None),
        Err(page) => page,
    }
}

/// `POST /console/login` (field `key`): an operator key opens a session; anything else is a
/// `401` page.
pub async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<Vec<(String, String)>>, FormRejection>,
) -> Response {
    if !same_origin(&headers) {
        return forged(None, "It was sent from another site.");
    }
    let fields = match form {
        Ok(Form(fields)) => fields,
        Err(e) => return form_rejected(None, &e),
    };
    let key = fields.iter().find(|(k, _)| k == "key").map(|(_, v)| v.trim()).unwrap_or_default();
    let operator = if key.is_empty() || key.len() > MAX_KEY_LEN {
        None
    } else {
        match state.store.authenticate_operator(key).await {
            Ok(found) => found,
            Err(e) => return view::store_failed(None, &e),
        }
    };
    let Some(operator) = operator else {
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("This is not an operator key. Tenant API keys do not open the console."),
        );
    };
    let settings = &state.settings.console;
    let (token, session) = match state.store.create_console_session(&operator, settings.session_ttl).await {
        Ok(created) => created,
        Err(e) => return view::store_failed(None, &e),
    };
    tracing::info!(operator = %session.operator, "console login");
    let secure = settings.secure_cookie || over_tls(&headers);
    let mut response = see_other("/console/queues");
    let value = cookie(token.expose(), settings.session_ttl.as_secs(), secure);
    match HeaderValue::from_str(&value) {
        Ok(value) => {
            response.headers_mut().insert(header::SET_COOKIE, value);
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "console: cannot build the session cookie");
            view::internal(None)
        }
    }
}

/// `POST /console/logout`: ends the session, clears the cookie, `303` to the login form.
pub async fn logout(State(state): State<AppState>, headers: HeaderMap, form: ActionForm) -> Response {
    if let Some(token) = cookie_token(&headers)
        && let Err(e) = state.store.delete_console_session(token).await
    {
        return view::store_failed(Some(&form.session), &e);
    }
    tracing::info!(operator = %form.session.operator, "console logout");
    let mut response = see_other("/console/login");
    let secure = state.settings.console.secure_cookie || over_tls(&headers);
    if let Ok(value) = HeaderValue::from_str(&cookie("", 0, secure)) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

/// `GET /console`: the queues, or the login form.
pub async fn home(session: Result<Session, Response>) -> Response {
    match session {
        Ok(_) => see_other("/console/queues"),
        Err(redirect) => redirect,
    }
}

/// Any other path under `/console`: a `404` page (without a session: `303` to the login form,
/// as every page).
pub async fn unknown(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match lookup(&state, &headers).await {
        Ok(Some(session)) => view::not_found(Some(&session), "page in the console"),
        Ok(None) => see_other("/console/login"),
        Err(page) => page,
    }
}

/// The page's query parameters, or the `400` page of a query that does not parse.
pub fn params(
    session: &Session,
    query: Result<axum::extract::Query<Vec<(String, String)>>, axum::extract::rejection::QueryRejection>,
) -> Result<Params, Box<Response>> {
    match query {
        Ok(axum::extract::Query(pairs)) => Ok(Params::new(pairs)),
        Err(e) => Err(Box::new(view::bad_request(
            Some(session),
            &[format!("The query could not be read: {}", e.body_text())],
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let h = headers(&[("cookie", "a=1; longhaul_console=lhc_abc ; b=2")]);
        assert_eq!(cookie_token(&h), Some("lhc_abc"));
        let h = headers(&[("cookie", "a=1"), ("cookie", "longhaul_console=lhc_x")]);
        assert_eq!(cookie_token(&h), Some("lhc_x"));
        assert_eq!(cookie_token(&headers(&[("cookie", "longhaul_console=")])), None);
        assert_eq!(cookie_token(&headers(&[("cookie", "xlonghaul_console=1")])), None);
    }

    #[test]
    fn origins_must_name_the_host() {
        assert!(same_origin(&headers(&[("host", "h:8080")])));
        assert!(same_origin(&headers(&[("host", "h:8080"), ("origin", "http://h:8080")])));
        assert!(same_origin(&headers(&[("host", "H:8080"), ("origin", "https://h:8080")])));
        assert!(!same_origin(&headers(&[("host", "h:8080"), ("origin", "http://evil:8080")])));
        assert!(!same_origin(&headers(&[("host", "h:8080"), ("origin", "null")])));
        assert!(!same_origin(&headers(&[("origin", "http://h:8080")])));
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_tls() {
        assert_eq!(
            cookie("t", 60, false),
            "longhaul_console=t; Path=/console; HttpOnly; SameSite=Strict; Max-Age=60"
        );
        assert!(cookie("t", 60, true).ends_with("; Secure"));
        assert!(over_tls(&headers(&[("x-forwarded-proto", "https")])));
        assert!(over_tls(&headers(&[("x-forwarded-proto", "HTTPS, http")])));
        assert!(!over_tls(&headers(&[("x-forwarded-proto", "http")])));
        assert!(!over_tls(&HeaderMap::new()));
    }
}
