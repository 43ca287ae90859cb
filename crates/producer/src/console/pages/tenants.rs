//! `GET /console/tenants`: each tenant's jobs running (and waiting) against its cap — its own
//! limit, else the default the workers use (read from a queue's control mirror in Redis), else
//! none — and its rate of starts per second, the same way. Live: the table is re-rendered by
//! [`crate::console::live`] and swapped in when it changed.
//!
//! Reads: `console.tenant_load` (the live jobs once, grouped by tenant), `control/select_limits.sql`,
//! and the control hash of the first queue whose mirror answers.

use axum::extract::State;
use axum::extract::rejection::QueryRejection;
use axum::http::StatusCode;
use axum::response::Response;
use longhaul_store::{Limit, LimitScope, StoreError, TenantLoad};
use maud::{Markup, html};

use crate::AppState;
use crate::console::auth::{Session, params};
use crate::console::view::{self, Flash, Page, dash, encode, num};

/// The most tenants the page lists.
pub const MAX_TENANTS: u32 = 500;

/// What the tenants page shows, read once.
pub struct TenantsData {
    tenants: Vec<TenantLoad>,
    limits: Vec<Limit>,
    /// The workers' defaults (cap, starts per second), as a queue's control mirror has them;
    /// `None` when no mirror answered.
    defaults: Option<(Option<u32>, Option<f64>)>,
}

impl TenantsData {
    /// Reads it.
    ///
    /// # Errors
    /// Storage errors (a Redis failure leaves the defaults unknown).
    pub async fn read(state: &AppState) -> Result<Self, StoreError> {
        let tenants = state.store.tenant_load(MAX_TENANTS).await?;
        let limits = state.store.limits().await?;
        let mut defaults = None;
        for queue in state.queues.all() {
            if let Ok(control) = queue.control().await {
                let cap = control.default_cap.filter(|c| *c > 0);
                let rate = control.default_rate.filter(|r| *r > 0.0);
                defaults = Some((cap, rate));
                if cap.is_some() || rate.is_some() {
                    break;
                }
            }
        }
        Ok(Self { tenants, limits, defaults })
    }
}

/// Starts per second, short: `50/s`, `2.5/s`, `0.001/s`.
fn rate(r: f64) -> String {
    let n = if r >= 10.0 {
        format!("{r:.0}")
    } else {
        let n = format!("{r:.3}");
        n.trim_end_matches('0').trim_end_matches('.').to_owned()
    };
    format!("{n}/s")
}

/// The tenants table (live part `tenants`).
pub fn tenants_table(data: &TenantsData) -> Markup {
    let (default_cap, default_rate) = data.defaults.unwrap_or((None, None));
    html! {
        @if data.defaults.is_none() {
            p class="flash error" { "Redis did not answer: the workers' default cap and rate are unknown." }
        }
        table id="tenants" class="data" {
            thead { tr {
                th scope="col" { "Tenant" }
                th scope="col" { "Name" }
                th scope="col" class="n" { "Running" }
                th scope="col" class="n" { "Cap" }
                th scope="col" { span class="sr" { "Use of the cap" } }
                th scope="col" class="n" { "Waiting" }
                th scope="col" class="n" { "Rate" }
            } }
            tbody {
                @for t in &data.tenants {
                    @let limit = data.limits.iter().find(|l| l.scope == LimitScope::Tenant && l.name == t.tenant_id);
                    @let own_cap = limit.and_then(|l| l.max_running);
                    @let cap = own_cap.or(default_cap);
                    @let own_rate = limit.and_then(|l| l.starts_per_second);
                    @let shown_rate = own_rate.or(default_rate);
                    tr data-tenant=(t.tenant_id) {
                        th scope="row" { a href={ "/console/jobs?tenant=" (encode(&t.tenant_id)) } { (t.tenant_id) } }
                        td class="name" { (t.name) }
                        td class="running n" { (num(t.running)) }
                        td class="cap n" title=(if own_cap.is_some() { "the tenant's own limit" } else { "the workers' default" }) {
                            @match cap { Some(c) => { (num(u64::from(c))) } None => { "—" } }
                        }
                        td class="use" {
                            @if let Some(c) = cap {
                                @let pct = (t.running * 100 / u64::from(c.max(1))).min(100);
                                span class={ "meter" @if t.running >= u64::from(c) { " full" } } {
                                    span class="fill" style={ "width:" (pct) "%" } {}
                                }
                            }
                        }
                        td class="queued n" { (num(t.queued)) }
                        td class="rate n" {
                            @match shown_rate { Some(r) => { (rate(r)) } None => { "—" } }
                        }
                    }
                }
                @if data.tenants.is_empty() { tr { td colspan="7" class="muted" { "No tenant yet." } } }
            }
        }
        @if data.tenants.len() >= MAX_TENANTS as usize {
            p class="muted" { "The first " (MAX_TENANTS) " tenants by id." }
        }
        @if default_cap.is_none() && data.defaults.is_some() {
            p class="muted" { "Workers run without a default cap: a tenant without a limit of its own has no cap (" (dash()) ")." }
        }
    }
}

/// The live parts of the page, by name.
pub fn fragments(data: &TenantsData) -> Vec<(&'static str, String)> {
    vec![("tenants", tenants_table(data).into_string())]
}

/// `GET /console/tenants`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    query: Result<axum::extract::Query<Vec<(String, String)>>, QueryRejection>,
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
    let data = match TenantsData::read(&state).await {
        Ok(data) => data,
        Err(e) => return view::store_failed(Some(&session), &e),
    };
    let page = Page {
        title: "Tenants",
        session: Some(&session),
        nav: Some("/console/tenants"),
        flash,
        live: Some("/console/live/tenants".to_owned()),
    };
    let content = html! {
        h1 { "Tenants" }
        p class="muted lead" {
            "Running: jobs running now. Cap: the most a tenant may run at once (its own limit, else the workers' default). "
            "Rate: starts per second, at most."
        }
        div class="table-wrap" data-live="tenants" { (tenants_table(&data)) }
    };
    view::respond(StatusCode::OK, page.render(content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_short() {
        assert_eq!(rate(50.0), "50/s");
        assert_eq!(rate(2.5), "2.5/s");
        assert_eq!(rate(0.001), "0.001/s");
        assert_eq!(rate(1.0), "1/s");
    }
}
