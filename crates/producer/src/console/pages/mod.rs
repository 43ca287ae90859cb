//! The console's pages, one module each: what a page reads, how it renders, and the actions its
//! forms post. Each page renders its live parts (`data-live`) with a function the [`super::live`]
//! streams call too, so a page and its updates never disagree.
//!
//! - [`queues`] — queues and kinds: backlog, running, throughput, the longest wait; pause, resume.
//! - [`jobs`] — the filtered job list with keyset pagination, and the bulk retry of failed jobs.
//! - [`job`] — one job: summary, timeline, attempts, input, output, operation log; cancel, retry.
//! - [`tenants`] — tenants' running jobs against their caps and rates.
//! - [`dead`] — a queue's dead letters: replay, purge, purge all.

pub mod dead;
pub mod job;
pub mod jobs;
pub mod queues;
pub mod tenants;

use maud::{Markup, html};

use super::auth::Session;

/// A `POST` form with the session's CSRF token and one submit button.
pub(super) fn action_button(
    session: &Session,
    action: &str,
    form_id: Option<&str>,
    button_id: Option<&str>,
    class: &str,
    label: &str,
) -> Markup {
    html! {
        form class="inline" method="post" action=(action) id=[form_id] {
            (session.csrf_field())
            button type="submit" class=(class) id=[button_id] { (label) }
        }
    }
}
