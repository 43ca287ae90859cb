//! The operator console in a real browser — headless Chromium over WebDriver ([`Browser`]) — against
//! the real binaries, as a person would use it: logging in with an operator key (and not with a
//! tenant's), filtering jobs, watching a running job's progress move without a reload and
//! cancelling it, retrying a failed job and watching it complete, pausing a queue and seeing nothing
//! start, bulk retry after its dry-run count, dead letters replayed and purged, tenants against
//! their caps, and every page in a narrow window.
//!
//! The tests rely only on the console's DOM contract (ids, classes, `data-*` attributes; README,
//! Console). With `LONGHAUL_SCREENSHOTS=<dir>` (`just screenshots`) they also save the main pages
//! as PNGs: `login.png`, `queues.png`, `jobs.png`, `job.png`, `tenants.png`, `dead-letters.png`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use axum::response::Html;
use axum::routing::get;
use fantoccini::key::Key;
use longhaul_core::kind::JobKind as _;
use longhaul_e2e::browser::Browser;
use longhaul_e2e::{Mode, Prompt, System};
use longhaul_summarize::{Summarize, SummarizeInput};
use longhaul_testkit::wait_until;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// Characters per chunk the test documents ask for: each of their paragraphs is one chunk.
const CHUNK_CHARS: u32 = 400;

/// A summarize input for document `id` of `paragraphs` paragraphs, one chunk each.
fn document(id: &str, paragraphs: usize) -> Value {
    let text = (0..paragraphs)
        .map(|k| {
            format!(
                "Section {k} of {id} explains how the queue keeps job {k} safe under load. Workers \
                 lease each entry and renew the lease while they run it. A worker that dies loses \
                 its lease, and another worker takes the entry over after the lease ends."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let input = SummarizeInput { document_id: id.to_owned(), text, chunk_chars: Some(CHUNK_CHARS) };
    assert_eq!(input.chunks().len(), paragraphs, "one chunk per paragraph");
    serde_json::to_value(&input).expect("input")
}

fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {job}")).to_owned()
}

/// Submits summarize document `doc` (`paragraphs` chunks) with tenant key `key`; its job id.
async fn summarize_as(sys: &System, key: &str, doc: &str, paragraphs: usize) -> String {
    let (status, job) = sys.submit_as(key, "summarize", &document(doc, paragraphs), None).await;
    assert_eq!(status, 202, "{job}");
    id(&job)
}

/// Submits summarize document `doc` (one chunk) as `acme`; its job id.
async fn summarize(sys: &System, doc: &str) -> String {
    summarize_as(sys, &sys.key, doc, 1).await
}

/// Progress (0–100) at the start and end of summarize's stage `name`.
fn span(name: &str) -> (u64, u64) {
    let options = Summarize::options();
    let index = options.stages.iter().position(|s| s.name == name).expect("a summarize stage");
    let (from, to) = options.stage_span(index);
    (u64::from(from), u64::from(to))
}

/// The percentage in a progress text such as `42%` or `42 %`.
fn percent(text: &str) -> Option<u64> {
    let digits: String = text.split('%').next()?.chars().filter(char::is_ascii_digit).collect();
    if text.contains('%') { digits.parse().ok() } else { None }
}

/// A system with operator `ops`, and a browser logged in to its console as `ops` (on the queues
/// page, where the login lands).
async fn console(mode: Mode, extra: &[(&str, &str)]) -> (System, Browser) {
    let sys = System::start(mode, extra).await;
    let ops = sys.operator("ops");
    let b = Browser::start(&sys.api).await;
    b.log_in(&ops).await;
    b.wait_path("is the queues page after logging in", |p| p == "/console/queues").await;
    (sys, b)
}

/// Opens the jobs page, applies the filter `fields` through its form, and returns the job ids
/// of the table's rows — checking that the URL carries the filter.
async fn filter_jobs(b: &Browser, fields: &[(&str, &str)]) -> BTreeSet<String> {
    b.goto("/console/jobs").await;
    b.wait_for("form#job-filter").await;
    b.fill("form#job-filter", fields).await;
    b.click_and_load("button#filter-apply").await;
    let path = b.path().await;
    for (name, value) in fields {
        assert!(path.contains(&format!("{name}={value}")), "the filter {name}={value} is in the URL {path}");
    }
    b.attrs("table#jobs tr[data-job-id]", "data-job-id").await.into_iter().collect()
}

/// The texts of cell `class` of every row of `table#jobs`.
async fn job_cells(b: &Browser, class: &str) -> Vec<String> {
    b.texts(&format!("table#jobs tr[data-job-id] td.{class}")).await
}

/// The harness itself, on a tiny local page: it is opened, a late change is waited for, a form is
/// filled (a text input and a select) and submitted, and the page it loads is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_browser_drives_a_local_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let page = "<!doctype html><title>t</title><form id=f action=/done><input name=q>\
                <select name=s><option value=a>A<option value=b>B</select><button id=go>Go</button></form>\
                <p id=late></p><script>setTimeout(() => \
                document.getElementById('late').textContent = 'later', 300)</script>";
    let router = axum::Router::new().route("/", get(move || async move { Html(page) })).route(
        "/done",
        get(|q: axum::extract::RawQuery| async move {
            Html(format!("<p id=got>{}</p>", q.0.unwrap_or_default()))
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let b = Browser::start(&format!("http://{addr}")).await;
    b.goto("/").await;
    b.wait_text("#late", "later").await;
    b.fill("form#f", &[("q", "hello"), ("s", "b")]).await;
    b.click_and_load("#go").await;
    assert_eq!(b.text("#got").await, "q=hello&s=b");
    assert_eq!(b.path().await, "/done?q=hello&s=b");
}

/// Every console page without a session sends the browser to the login form; a tenant's key and
/// an unknown key are refused there ("not an operator key") and open nothing; an operator key
/// logs in — the queues page, the operator's name, the navigation — with an `HttpOnly`,
/// `SameSite=Strict` session cookie scripts cannot read; a form whose CSRF token was removed is
/// refused and changes nothing; logging out ends the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_key_logs_in_and_a_tenant_key_does_not() {
    let sys = System::start(Mode::Ok, &[]).await;
    let ops = sys.operator("ops");
    let b = Browser::start(&sys.api).await;
    for page in ["/console/queues", "/console/jobs", "/console/tenants", "/console/dead-letters"] {
        b.goto(page).await;
        b.wait_path(&format!("redirected from {page} to the login"), |p| p == "/console/login").await;
    }
    b.wait_for("form#login-form").await;
    let key = b.wait_for("input#login-key").await;
    assert_eq!(key.attr("type").await.expect("type").as_deref(), Some("password"));
    assert_eq!(key.attr("name").await.expect("name").as_deref(), Some("key"));
    assert!(b.client.title().await.expect("title").ends_with("· longhaul console"));
    b.screenshot("login.png").await;

    for (what, refused) in [("a tenant's key", sys.key.as_str()), ("an unknown key", "lh_not_a_key_at_all")] {
        b.log_in(refused).await;
        b.wait_page_text("not an operator key").await;
        assert!(!b.exists("#operator").await, "{what} shows no operator");
        b.goto("/console/jobs").await;
        b.wait_path(&format!("back at the login after {what}"), |p| p == "/console/login").await;
    }

    b.log_in(&ops).await;
    b.wait_path("the queues page after logging in", |p| p == "/console/queues").await;
    b.wait_text_by("#operator", "naming ops", |t| t.contains("ops")).await;
    for href in ["/console/queues", "/console/jobs", "/console/tenants", "/console/dead-letters"] {
        b.wait_for(&format!("nav#nav a[href=\"{href}\"]")).await;
    }
    b.wait_for("table#queues").await;
    b.wait_for("main#main").await;
    let cookie = b.client.get_named_cookie("longhaul_console").await.expect("the session cookie");
    assert_eq!(cookie.http_only(), Some(true), "{cookie:?}");
    assert_eq!(cookie.same_site().map(|s| s.to_string()).as_deref(), Some("Strict"), "{cookie:?}");
    assert_eq!(cookie.path(), Some("/console"), "{cookie:?}");
    let visible = b.js("return document.cookie;", vec![]).await;
    assert!(!visible.as_str().unwrap_or_default().contains("longhaul_console"), "scripts see {visible}");

    // A pause form without its CSRF token is refused and pauses nothing.
    let row = "table#queues tr[data-queue=\"summarize\"]";
    b.wait_text(&format!("{row} td.state"), "active").await;
    let removed = b
        .js(
            "const f = document.querySelector(arguments[0]); const c = f && f.querySelector('input[name=csrf]'); \
             if (c) c.remove(); return !!c;",
            vec![json!(format!("{row} form:has(button.pause)"))],
        )
        .await;
    assert_eq!(removed, json!(true), "the pause form carries a csrf field");
    b.click_and_load(&format!("{row} button.pause")).await;
    b.wait_page_text("CSRF check failed").await;
    let (status, queues) = sys.admin(&ops, "GET", "queues", None).await;
    assert_eq!(status, 200, "{queues}");
    let summarize = queues["queues"].as_array().and_then(|q| q.iter().find(|q| q["queue"] == "summarize"));
    assert_eq!(summarize.map(|q| &q["paused"]), Some(&json!(false)), "{queues}");

    b.goto("/console/queues").await;
    b.click_and_load("#logout button").await;
    b.wait_path("the login after logging out", |p| p == "/console/login").await;
    b.goto("/console/queues").await;
    b.wait_path("the login: the session is gone", |p| p == "/console/login").await;
}

/// The jobs page's filters — by status, by tenant, by tenant and kind, by error class, by key,
/// several at once, and one nothing matches — show exactly the matching rows, their cells agreeing;
/// then a bulk retry of the failed ones shows its dry-run count first, and the real one retries
/// them and they complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_page_filters_by_status_tenant_kind_and_key() {
    let (mut sys, b) = console(Mode::Ok, &[]).await;
    let globex = sys.tenant("globex");
    sys.worker("w1");
    let a1 = summarize(&sys, "acme-1").await;
    let a2 = summarize(&sys, "acme-2").await;
    let g1 = summarize_as(&sys, &globex, "globex-1", 1).await;
    sys.ticket("T-1").await;
    let (status, t1) = sys.triage("T-1").await;
    assert_eq!(status, 202, "{t1}");
    let t1 = id(&t1);
    let (status, k1) = sys.submit_as(&sys.key, "summarize", &document("keyed", 1), Some("order-42")).await;
    assert_eq!(status, 202, "{k1}");
    let k1 = id(&k1);
    for job in [&a1, &a2, &t1, &k1] {
        sys.wait_status(job, "completed", LONG).await;
    }
    wait_until(LONG, "globex's job completed", async || {
        let (_, r) = sys.job_as(&globex, &g1).await;
        if r["status"] == "completed" { Ok(()) } else { Err(r) }
    })
    .await;
    sys.fake.set_mode(Mode::Blank);
    let f1 = summarize(&sys, "failing-1").await;
    let f2 = summarize(&sys, "failing-2").await;
    for job in [&f1, &f2] {
        let failed = sys.wait_status(job, "failed", LONG).await;
        assert_eq!(failed["error_class"], "invalid", "{failed}");
    }
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let r = sys
        .http()
        .post(format!("{}/v1/jobs", sys.api))
        .bearer_auth(&sys.key)
        .json(&json!({"kind": "summarize", "input": document("later", 1), "run_at": later.to_rfc3339()}))
        .send()
        .await
        .expect("submit a scheduled job");
    assert_eq!(r.status().as_u16(), 202, "{r:?}");
    let s1 = id(&r.json::<Value>().await.expect("json"));
    let all = BTreeSet::from([&a1, &a2, &g1, &t1, &k1, &f1, &f2, &s1].map(String::clone));

    let set = |ids: &[&String]| ids.iter().map(|s| (*s).clone()).collect::<BTreeSet<String>>();
    let rows = filter_jobs(&b, &[("status", "failed")]).await;
    assert_eq!(rows, set(&[&f1, &f2]));
    assert_eq!(job_cells(&b, "status").await, ["failed", "failed"]);

    let rows = filter_jobs(&b, &[("tenant", "globex")]).await;
    assert_eq!(rows, set(&[&g1]));
    assert_eq!(job_cells(&b, "tenant").await, ["globex"]);

    let rows = filter_jobs(&b, &[("tenant", "acme"), ("kind", "triage")]).await;
    assert_eq!(rows, set(&[&t1]));
    assert_eq!(job_cells(&b, "kind").await, ["triage"]);

    let rows = filter_jobs(&b, &[("tenant", "acme"), ("kind", "summarize"), ("status", "completed")]).await;
    assert_eq!(rows, set(&[&a1, &a2, &k1]));

    let rows = filter_jobs(&b, &[("error_class", "invalid")]).await;
    assert_eq!(rows, set(&[&f1, &f2]));

    let rows = filter_jobs(&b, &[("key", "order-42")]).await;
    assert_eq!(rows, set(&[&k1]));

    let rows = filter_jobs(&b, &[("status", "scheduled")]).await;
    assert_eq!(rows, set(&[&s1]));

    let rows = filter_jobs(&b, &[("tenant", "nobody")]).await;
    assert!(rows.is_empty(), "{rows:?}");
    b.wait_for("p#no-jobs").await;

    // No filter: every job, each row linking to its page.
    b.goto("/console/jobs").await;
    b.wait_for("table#jobs").await;
    let rows: BTreeSet<String> =
        b.attrs("table#jobs tr[data-job-id]", "data-job-id").await.into_iter().collect();
    assert_eq!(rows, all);
    let links = b.attrs("table#jobs tr[data-job-id] a.job-link", "href").await;
    assert!(links.iter().any(|l| l.ends_with(&format!("/console/jobs/{f1}"))), "{links:?}");
    b.screenshot("jobs.png").await;

    // Bulk retry of the failed ones: the dry run counts them and changes nothing.
    filter_jobs(&b, &[("status", "failed")]).await;
    b.click_and_load("button#bulk-dry-run").await;
    b.wait_text_by("#bulk-count", "containing 2", |t| {
        t.split(|c: char| !c.is_ascii_digit()).any(|n| n == "2")
    })
    .await;
    assert_eq!(sys.job(&f1).await["status"], "failed", "a dry run changes nothing");
    sys.fake.set_mode(Mode::Ok);
    b.click_and_load("button#bulk-confirm").await;
    b.wait_text_by("div.flash.ok", "saying 2 were retried", |t| t.contains('2')).await;
    for job in [&f1, &f2] {
        let done = sys.wait_status(job, "completed", LONG).await;
        assert_eq!(done["attempts"], 2, "{done}");
    }
}

/// A running job's page shows its progress moving as the provider lets each chunk through — in
/// place, with no reload (a mark set on the page survives) — and then cancelling it from the page
/// ends it: `cancelled` shows without a reload, the cancel button goes, retry appears, and the
/// timeline names the operator.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_jobs_progress_moves_live_and_it_is_cancelled() {
    let (mut sys, b) = console(Mode::Gated, &[]).await;
    sys.worker("w1");
    let n = 4;
    let job = summarize_as(&sys, &sys.key, "live-doc", n).await;
    wait_until(LONG, "chunk 0's call is held", async || {
        let calls = sys.fake.chats_of(Prompt::Summarize).len();
        if calls == 1 { Ok(()) } else { Err(calls) }
    })
    .await;
    b.goto(&format!("/console/jobs/{job}")).await;
    assert!(b.client.title().await.expect("title").ends_with("· longhaul console"));
    b.wait_text("#job-status", "running").await;
    b.wait_for("body[data-live-connected=\"true\"]").await;
    b.mark("no-reload").await;
    let (from, to) = span("summarize");
    let mut seen = Vec::new();
    for i in 0..n {
        let expected = from + (to - from) * i as u64 / n as u64;
        let text = b
            .wait_text_by("#job-progress", &format!("at {expected}% after {i} chunks"), |t| {
                percent(t) == Some(expected)
            })
            .await;
        seen.push(text);
        b.wait_text("#job-stage", "summarize").await;
        let bar = b.js("return document.querySelector('progress#job-progress-bar').value;", vec![]).await;
        assert_eq!(bar.as_f64().map(|v| v.round() as u64), Some(expected), "the bar: {bar}");
        assert_eq!(b.marked().await.as_deref(), Some("no-reload"), "the page was reloaded");
        if i == 2 {
            b.screenshot("job.png").await;
        }
        if i + 1 < n {
            sys.fake.release(1);
            let next = i + 2;
            wait_until(LONG, &format!("chunk {}'s call is held", i + 1), async || {
                let calls = sys.fake.chats_of(Prompt::Summarize).len();
                if calls == next { Ok(()) } else { Err(calls) }
            })
            .await;
        }
    }
    assert_eq!(seen.len(), n, "{seen:?}");
    assert_eq!(b.text("#job-status").await, "running");
    assert!(!b.exists("button#retry").await, "no retry while it runs");

    // Cancel from the page: the form posts and comes back to the page; the worker ends the job.
    b.click_and_load("form#cancel-form button#cancel").await;
    b.wait_path("back on the job's page", |p| p.starts_with(&format!("/console/jobs/{job}"))).await;
    b.wait_for("div.flash.ok").await;
    b.wait_text("#job-status", "cancelled").await;
    b.wait_gone("button#cancel").await;
    b.wait_for("form#retry-form button#retry").await;
    b.wait_text_by("ol#timeline", "naming operator:ops", |t| t.contains("operator:ops")).await;
    let record = sys.wait_status(&job, "cancelled", LONG).await;
    assert_eq!(record["attempts"], 1, "{record}");
}

/// A failed job's page shows why (the attempt's error class) and a retry button; after the retry,
/// the page follows the job — running, then completed with its output — without a reload.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_job_is_retried_from_its_page_and_completes_live() {
    let (mut sys, b) = console(Mode::Blank, &[]).await;
    sys.worker("w1");
    let job = summarize(&sys, "retried-doc").await;
    let failed = sys.wait_status(&job, "failed", LONG).await;
    assert_eq!(failed["error_class"], "invalid", "{failed}");
    b.goto(&format!("/console/jobs/{job}")).await;
    b.wait_text("#job-status", "failed").await;
    b.wait_text_by("table#attempts", "naming the error class", |t| t.contains("invalid")).await;
    assert!(!b.exists("button#cancel").await, "a failed job has nothing to cancel");

    // The retried run is held at the provider until the page is watching it.
    sys.fake.set_mode(Mode::Gated);
    b.click_and_load("form#retry-form button#retry").await;
    b.wait_path("back on the job's page", |p| p.starts_with(&format!("/console/jobs/{job}"))).await;
    b.wait_for("div.flash.ok").await;
    b.wait_text_by("#job-status", "queued or running", |t| t == "queued" || t == "running").await;
    b.wait_for("body[data-live-connected=\"true\"]").await;
    b.mark("no-reload").await;
    wait_until(LONG, "the retried run's call is held", async || {
        let calls = sys.fake.chats_of(Prompt::Summarize).len();
        if calls == 2 { Ok(()) } else { Err(calls) }
    })
    .await;
    b.wait_text("#job-status", "running").await;
    sys.fake.release(1);
    b.wait_text("#job-status", "completed").await;
    b.wait_text_by("#job-progress", "at 100%", |t| percent(t) == Some(100)).await;
    b.wait_text_by("pre#output", "holding the summary", |t| t.contains("Summary: Section 0 of retried-doc"))
        .await;
    b.wait_gone("button#retry").await;
    assert_eq!(b.marked().await.as_deref(), Some("no-reload"), "the page was reloaded");
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 2, "{done}");
}

/// Pausing a queue on the queues page — by keyboard: Tab to its pause button, which shows the
/// focus, and Enter —: its state shows `paused`, jobs submitted then stay queued —
/// none starts, none reaches the provider — while the page counts them waiting; resumed, they all
/// complete and the page shows the queue active and empty again, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_queue_starts_nothing_until_resumed_from_the_console() {
    let (mut sys, b) = console(Mode::Ok, &[("LONGHAUL_CONTROL_POLL", "200ms")]).await;
    let w1 = sys.worker("w1");
    let row = "table#queues tr[data-queue=\"summarize\"]";
    b.wait_text(&format!("{row} td.state"), "active").await;
    b.wait_for("table#kinds tr[data-kind=\"summarize\"]").await;
    // By keyboard: Tab to the row's pause button (it shows the focus), Enter.
    b.tab_to(&format!("{row} button.pause"), 40).await;
    let focus = b.focus_visible().await;
    assert_eq!(focus["visible"], true, "the focused pause button shows no focus: {focus}");
    b.press_and_load(Key::Enter).await;
    b.wait_path("back on the queues page", |p| p.starts_with("/console/queues")).await;
    b.wait_for("div.flash.ok").await;
    b.wait_text(&format!("{row} td.state"), "paused").await;
    b.wait_for(&format!("{row} button.resume")).await;
    assert!(!b.exists(&format!("{row} button.pause")).await, "a paused queue offers resume only");
    assert_eq!(b.text("table#queues tr[data-queue=\"triage\"] td.state").await, "active");

    // The pause takes effect within the workers' control poll: wait until the worker has read it.
    wait_until(LONG, "w1 reads the pause", async || {
        let read = sys
            .log_lines(w1)
            .iter()
            .any(|l| l["message"] == "queue paused: taking nothing new" && l["queue"] == "summarize");
        if read { Ok(()) } else { Err(sys.procs[w1].output()) }
    })
    .await;
    b.wait_for("body[data-live-connected=\"true\"]").await;
    b.mark("no-reload").await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(summarize(&sys, &format!("held-{i}")).await);
    }
    b.wait_text(&format!("{row} td.waiting"), "3").await;
    assert_eq!(b.marked().await.as_deref(), Some("no-reload"), "the queues page was reloaded");
    let hold = Duration::from_secs(3);
    let until = Instant::now() + hold;
    while Instant::now() < until {
        for job in &jobs {
            let r = sys.job(job).await;
            assert_eq!((r["status"].as_str(), &r["attempts"]), (Some("queued"), &json!(0)), "started: {r}");
        }
        assert!(sys.fake.chat_calls().is_empty(), "the paused queue asked the provider");
        assert_eq!(b.text(&format!("{row} td.state")).await, "paused");
    }
    b.screenshot("queues.png").await;

    b.click_and_load(&format!("{row} button.resume")).await;
    b.wait_text(&format!("{row} td.state"), "active").await;
    for job in &jobs {
        let done = sys.wait_status(job, "completed", LONG).await;
        assert_eq!(done["attempts"], 1, "the pause spent no attempt: {done}");
    }
    b.wait_for("body[data-live-connected=\"true\"]").await;
    b.wait_text(&format!("{row} td.waiting"), "0").await;
    b.wait_text(&format!("{row} td.running"), "0").await;
}

/// The tenants page shows each tenant's running jobs against its cap — the limit an operator set,
/// live as a held job starts — and the dead-letters page lists a queue's dead letters: replaying a
/// stalled job's entry runs the job, purging one removes it, and purge-all asks to confirm first.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_against_caps_and_dead_letters_replayed_and_purged() {
    let (mut sys, b) = console(Mode::Gated, &[("LONGHAUL_MAX_DELIVERIES", "1")]).await;
    let ops = sys.operator("ops-api");
    let (status, body) = sys.admin(&ops, "PUT", "limits/tenants/acme", Some(json!({"max_running": 3}))).await;
    assert_eq!(status, 200, "{body}");
    sys.tenant("globex");

    // Two undecodable entries, and a job whose worker dies holding it (stalled).
    let mut redis = redis::Client::open(longhaul_testkit::redis_url())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let stream = format!("{}:{{summarize}}:jobs", sys.queue.prefix);
    for garbage in ["not a job id!", "neither is this"] {
        let _: String = redis::cmd("XADD")
            .arg(&stream)
            .arg("*")
            .arg("j")
            .arg(garbage)
            .query_async(&mut redis)
            .await
            .expect("xadd");
    }
    let w1 = sys.worker("w1");
    let stalled = summarize(&sys, "stalled-doc").await;
    sys.wait_status(&stalled, "running", LONG).await;

    b.goto("/console/tenants").await;
    let acme = "table#tenants tr[data-tenant=\"acme\"]";
    b.wait_text(&format!("{acme} td.running"), "1").await;
    b.wait_text(&format!("{acme} td.cap"), "3").await;
    b.wait_for("table#tenants tr[data-tenant=\"globex\"]").await;
    b.screenshot("tenants.png").await;

    sys.procs[w1].kill();
    sys.worker("w2");
    let failed = sys.wait_status(&stalled, "failed", LONG).await;
    assert!(failed["error_message"].as_str().is_some_and(|m| m.starts_with("stalled")), "{failed}");
    let letters = wait_until(LONG, "three dead letters", async || {
        let (status, body) = sys.admin(&ops, "GET", "dead-letters?queue=summarize", None).await;
        let n = body["dead_letters"].as_array().map_or(0, Vec::len);
        if status == 200 && n == 3 { Ok(body) } else { Err((status, body)) }
    })
    .await;
    let letters = letters["dead_letters"].as_array().expect("list").clone();
    let entry_of = |pred: &dyn Fn(&Value) -> bool| {
        letters.iter().find(|l| pred(l)).and_then(|l| l["id"].as_str()).expect("an entry").to_owned()
    };
    let stalled_entry = entry_of(&|l| l["job_id"] == stalled.as_str());
    let garbage_entry = entry_of(&|l| l["job_id"] != stalled.as_str());

    b.goto("/console/dead-letters?queue=summarize").await;
    b.wait("three dead letters listed", async || {
        let n = b.count("table#dead-letters tr[data-entry]").await;
        if n == 3 { Ok(()) } else { Err(n) }
    })
    .await;
    b.wait_text_by("table#dead-letters", "naming the stalled job", |t| t.contains(&stalled)).await;
    b.screenshot("dead-letters.png").await;

    // Replay the stalled job's entry: the job runs again and completes.
    sys.fake.set_mode(Mode::Ok);
    sys.fake.release(64);
    b.click_and_load(&format!("table#dead-letters tr[data-entry=\"{stalled_entry}\"] button.replay")).await;
    b.wait_for("div.flash.ok").await;
    sys.wait_status(&stalled, "completed", LONG).await;
    b.goto("/console/dead-letters?queue=summarize").await;
    b.wait_gone(&format!("table#dead-letters tr[data-entry=\"{stalled_entry}\"]")).await;

    // Purge one.
    b.click_and_load(&format!("table#dead-letters tr[data-entry=\"{garbage_entry}\"] button.purge")).await;
    b.wait_for("div.flash.ok").await;
    b.goto("/console/dead-letters?queue=summarize").await;
    b.wait_gone(&format!("table#dead-letters tr[data-entry=\"{garbage_entry}\"]")).await;
    assert_eq!(b.count("table#dead-letters tr[data-entry]").await, 1);

    // Purge all: the first click only asks to confirm.
    b.click_and_load("form#purge-all button#purge-all-button").await;
    b.wait_for("button#purge-all-confirm").await;
    let (_, body) = sys.admin(&ops, "GET", "dead-letters?queue=summarize", None).await;
    assert_eq!(
        body["dead_letters"].as_array().map(Vec::len),
        Some(1),
        "not purged before confirming: {body}"
    );
    b.click_and_load("button#purge-all-confirm").await;
    b.wait_for("div.flash.ok").await;
    b.goto("/console/dead-letters?queue=summarize").await;
    b.wait_gone("table#dead-letters tr[data-entry]").await;
    let (_, body) = sys.admin(&ops, "GET", "dead-letters?queue=summarize", None).await;
    assert_eq!(body["dead_letters"].as_array().map(Vec::len), Some(0), "{body}");
}

/// More jobs than a page holds (50): the first page shows 50 and a link to the next, which shows
/// the rest and no further link; together, every job once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_jobs_page_pages_through_every_job_once() {
    let (sys, b) = console(Mode::Ok, &[]).await;
    let submits = (0..55).map(|i| {
        let sys = &sys;
        async move { summarize(sys, &format!("paged-{i}")).await }
    });
    let all: BTreeSet<String> = futures::future::join_all(submits).await.into_iter().collect();
    assert_eq!(all.len(), 55);
    b.goto("/console/jobs").await;
    b.wait_for("table#jobs").await;
    let first = b.attrs("table#jobs tr[data-job-id]", "data-job-id").await;
    assert_eq!(first.len(), 50, "{first:?}");
    b.click_and_load("a#next-page").await;
    b.wait_for("table#jobs").await;
    let second = b.attrs("table#jobs tr[data-job-id]", "data-job-id").await;
    assert_eq!(second.len(), 5, "{second:?}");
    assert!(!b.exists("a#next-page").await, "the last page links no further");
    let seen: Vec<String> = first.into_iter().chain(second).collect();
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a job listed twice: {seen:?}");
    assert_eq!(unique, all);
}

/// What a page looks like in the current window: the viewport's width, the document's, and the
/// elements that stick out past the right edge outside a scrolling wrapper.
async fn overflow(b: &Browser) -> Value {
    b.js(
        "const vw = document.documentElement.clientWidth;
         // The ancestor whose overflow clips e's box: an absolutely placed box escapes every
         // ancestor up to its containing block (the nearest placed one).
         const clipped = e => { let pos = getComputedStyle(e).position;
             for (let a = e.parentElement; a && a !== document.body; a = a.parentElement) {
               if (pos === 'fixed') return null;
               const s = getComputedStyle(a);
               if (pos === 'absolute' && s.position === 'static') continue;
               if (['auto', 'scroll', 'hidden', 'clip'].includes(s.overflowX)) return a;
               pos = s.position; } return null; };
         const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') +
             (e.className && typeof e.className === 'string' ? '.' + e.className.trim().split(/\\s+/).join('.') : '');
         const bad = [];
         for (const e of document.body.querySelectorAll('*')) {
           const r = e.getBoundingClientRect();
           if (r.width === 0 || r.height === 0 || r.right <= vw + 1) continue;
           const w = clipped(e);
           if (w && w.getBoundingClientRect().right <= vw + 1) continue;
           bad.push(name(e) + ' right=' + Math.round(r.right));
         }
         return {viewport: vw, document: document.documentElement.scrollWidth, outside: bad.slice(0, 20)};",
        vec![],
    )
    .await
}

/// At 400×900 every page fits the window: nothing sticks out past the right edge (a wide table
/// scrolls inside its wrapper), the page does not scroll sideways, and the navigation's links are
/// all displayed within the window and work.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_is_usable_in_a_narrow_window() {
    let (sys, b) = console(Mode::Ok, &[]).await;
    let job = summarize(&sys, "narrow-doc").await;
    sys.tenant("globex");
    b.resize(400, 900).await;
    let width = b.js("return window.innerWidth;", vec![]).await;
    assert!(width.as_u64().is_some_and(|w| w <= 420), "the window is narrow: {width}");
    let pages = [
        ("/console/queues".to_owned(), "table#queues"),
        ("/console/jobs".to_owned(), "table#jobs"),
        (format!("/console/jobs/{job}"), "#job-status"),
        ("/console/tenants".to_owned(), "table#tenants"),
        ("/console/dead-letters?queue=summarize".to_owned(), "main#main"),
    ];
    // Every page is looked at before the verdict, so a failure lists every problem at once.
    let mut problems = Vec::new();
    for (page, main) in &pages {
        b.goto(page).await;
        b.wait_for(main).await;
        b.wait_for("nav#nav").await;
        let o = overflow(&b).await;
        if o["outside"] != json!([]) || o["document"].as_u64() > o["viewport"].as_u64() {
            problems.push(format!("{page}: the page is wider than the window: {o}"));
        }
        let viewport = o["viewport"].as_f64().unwrap_or(0.0);
        for href in ["/console/queues", "/console/jobs", "/console/tenants", "/console/dead-letters"] {
            let link = b.wait_for(&format!("nav#nav a[href=\"{href}\"]")).await;
            let (x, _, w, _) = link.rectangle().await.expect("rect");
            if x < 0.0 || x + w > viewport + 1.0 {
                problems.push(format!("{page}: the nav link {href} is at {x}..{} of {viewport}", x + w));
            }
        }
    }
    assert!(problems.is_empty(), "at 400×900:\n{}", problems.join("\n"));
    // The table's wrapper is what scrolls; the navigation works by clicking at this width.
    b.goto("/console/queues").await;
    b.click_and_load("nav#nav a[href=\"/console/jobs\"]").await;
    b.wait_path("the jobs page", |p| p.starts_with("/console/jobs")).await;
    b.wait_for(&format!("table#jobs tr[data-job-id=\"{job}\"]")).await;
    b.click_and_load(&format!("table#jobs tr[data-job-id=\"{job}\"] a.job-link")).await;
    b.wait_path("the job's page", |p| p == format!("/console/jobs/{job}")).await;
    b.wait_for("#job-status").await;
}
