//! `GET /v1/jobs/{job_id}/events` over real TCP (the producer as `producer serve` runs it, read
//! with reqwest chunk by chunk): the current state first, then each change of the record (written
//! through the store, as a worker writes it) until a terminal state closes the stream;
//! `Last-Event-ID`; `404` before the stream opens; the per-tenant limit (`429`, then a slot freed
//! by a disconnect or by a stream's end); keep-alive comments on a stream that outlives the request
//! timeout; a failed read as an `error` event; the shutdown ending open streams; the flags' bounds.

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use clap::Parser as _;
use longhaul_core::{JobId, JobStatus, Lease, Progress, TenantId};
use longhaul_producer::startup::Config;
use longhaul_store::{Store, WriteOutcome};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::harness::*;
use crate::jobs::{summarize_id, summary_input};

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

fn acme() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// How long any one event may take to come (the streams here poll every 20 ms).
const PATIENCE: Duration = Duration::from_secs(10);

/// The producer serving on a port of its own, with `flags`, until [`Server::stop`].
struct Server {
    base: String,
    client: reqwest::Client,
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    /// The application's own store (not the test's).
    store: Store,
}

impl Server {
    async fn start(t: &TestApp, flags: &[&str]) -> Self {
        let mut all = vec!["--events-poll", "20ms"];
        all.extend(flags);
        let app = build(&t.db, &t.queue.url, &t.queue.prefix, &all).await;
        let base = format!("http://{}", app.local_addr().expect("addr"));
        let store = app.store().clone();
        let stop = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(stop.clone()));
        Self { base, client: reqwest::Client::new(), stop, task, store }
    }

    /// `GET /v1/jobs/{job}/events` as the tenant of `key`, with `Last-Event-ID: last` if given.
    async fn open(&self, key: &str, job: &str, last: Option<&str>) -> reqwest::Response {
        let mut request = self.client.get(format!("{}/v1/jobs/{job}/events", self.base)).bearer_auth(key);
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        request.send().await.expect("the events request")
    }

    /// [`Server::open`], expected to open a stream.
    async fn stream(&self, key: &str, job: &JobId, last: Option<&str>) -> Events {
        let response = self.open(key, job.as_str(), last).await;
        assert_eq!(response.status(), StatusCode::OK, "{response:?}");
        let header =
            |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"), "{response:?}");
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"), "{response:?}");
        Events { response, buffer: String::new() }
    }

    /// Stops the producer; it must stop promptly, open streams or not.
    async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(PATIENCE, self.task)
            .await
            .expect("the producer stops within 10 s")
            .expect("server task")
            .expect("a clean stop");
    }
}

/// What a stream says next.
#[derive(Debug, PartialEq)]
enum Item {
    /// An event: its name, id and data.
    Event { name: String, id: Option<String>, data: String },
    /// A comment line (`: text`): a keep-alive.
    Comment(String),
    /// The server closed the stream.
    End,
}

impl Item {
    /// A `job` event's record and id (a number); panics on anything else.
    fn job(&self) -> (Value, u64) {
        match self {
            Self::Event { name, id: Some(id), data } if name == "job" => (
                serde_json::from_str(data).expect("a job event's data is JSON"),
                id.parse().expect("a numeric id"),
            ),
            other => panic!("expected a job event, got {other:?}"),
        }
    }
}

/// An open events stream, read chunk by chunk.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// The next item, within [`PATIENCE`].
    async fn next(&mut self) -> Item {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return parse(&block);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.response.chunk()).await {
                Ok(Ok(Some(chunk))) => self.buffer.push_str(std::str::from_utf8(&chunk).expect("UTF-8")),
                Ok(Ok(None)) => {
                    assert!(self.buffer.is_empty(), "the stream ended inside an event: {:?}", self.buffer);
                    return Item::End;
                }
                Ok(Err(e)) => panic!("the stream failed: {e}"),
                Err(_) => panic!("nothing on the stream within {PATIENCE:?}; buffered: {:?}", self.buffer),
            }
        }
    }

    /// The next item that is not a keep-alive comment.
    async fn next_event(&mut self) -> Item {
        loop {
            match self.next().await {
                Item::Comment(_) => {}
                other => return other,
            }
        }
    }
}

/// One event block (`field: value` lines).
fn parse(block: &str) -> Item {
    let (mut name, mut id, mut data, mut comment) = (None, None, Vec::new(), None);
    for line in block.lines().filter(|l| !l.is_empty()) {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
        match field {
            "" => comment = Some(value),
            "event" => name = Some(value),
            "id" => id = Some(value),
            "data" => data.push(value),
            other => panic!("unexpected field {other:?} in {block:?}"),
        }
    }
    match (name, comment) {
        (Some(name), _) => Item::Event { name, id, data: data.join("\n") },
        (None, Some(comment)) if data.is_empty() && id.is_none() => Item::Comment(comment),
        _ => panic!("an event without a name: {block:?}"),
    }
}

/// A new summarize job of `acme` for document `doc`: its id.
async fn queued(t: &TestApp, doc: &str) -> JobId {
    let r = t.submit("summarize", summary_input(doc, &format!("The text of {doc}.")), &[]).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id")
}

/// Starts attempt 1 of `acme`'s `job`, as a worker does.
async fn start(t: &TestApp, job: &JobId) {
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    match t.db.start_next(&acme(), job, lease, 1).await.expect("start") {
        WriteOutcome::Applied(r) => assert_eq!(r.status, JobStatus::Running),
        other => panic!("not started: {other:?}"),
    }
}

/// `GET /v1/jobs/{job}` as `acme`.
async fn get(t: &TestApp, job: &JobId) -> Value {
    let r = t.call(Method::GET, &format!("/v1/jobs/{job}"), Some(&t.key), None).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.json
}

/// `updated_at` of a record, in microseconds since the epoch.
fn updated_micros(record: &Value) -> u64 {
    let at = record["updated_at"].as_str().expect("updated_at");
    let at = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
    u64::try_from(at.timestamp_micros()).expect("after the epoch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_current_state_comes_first_then_each_change_until_a_terminal_state_closes_the_stream() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let server = Server::start(&t, &[]).await;
        let job = queued(&t, "doc-1").await;

        let mut events = server.stream(&t.key, &job, None).await;
        let (record, id) = events.next_event().await.job();
        assert_eq!(record, get(&t, &job).await, "the first event is the record as GET answers it");
        assert_eq!(record["status"], "queued");
        assert_eq!(id, updated_micros(&record), "the id is the record's version");

        start(&t, &job).await;
        let (running, after_start) = events.next_event().await.job();
        assert_eq!((&running["status"], &running["attempts"]), (&json!("running"), &json!(1)), "{running}");
        assert!(after_start > id, "ids increase: {after_start} after {id}");

        let progress = Progress::new(40).expect("progress");
        let written = t.db.record_progress(&acme(), &job, 1, "summarise", progress).await.expect("progress");
        assert!(matches!(written, WriteOutcome::Applied(_)), "{written:?}");
        let (moving, after_progress) = events.next_event().await.job();
        assert_eq!((&moving["stage"], &moving["progress"]), (&json!("summarise"), &json!(40)), "{moving}");
        assert!(after_progress > after_start);

        let output = json!({"summary": "Short."});
        let done = t.db.complete(&acme(), &job, 1, &output).await.expect("complete");
        assert!(matches!(done, WriteOutcome::Applied(_)), "{done:?}");
        let (completed, last) = events.next_event().await.job();
        assert_eq!(
            (&completed["status"], &completed["output"]),
            (&json!("completed"), &output),
            "{completed}"
        );
        assert_eq!(completed, get(&t, &job).await);
        assert!(last > after_progress);
        assert_eq!(events.next().await, Item::End, "the stream closes after a terminal state");

        // Connecting late to a finished job: its state at once, then the end.
        let mut late = server.stream(&t.key, &job, None).await;
        assert_eq!(late.next_event().await.job(), (completed, last));
        assert_eq!(late.next().await, Item::End);

        // A job cancelled while queued: the cancel arrives and ends the stream too.
        let other = queued(&t, "doc-2").await;
        let mut events = server.stream(&t.key, &other, None).await;
        assert_eq!(events.next_event().await.job().0["status"], "queued");
        let r = t.call(Method::POST, &format!("/v1/jobs/{other}/cancel"), Some(&t.key), None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(events.next_event().await.job().0, r.json);
        assert_eq!(events.next().await, Item::End);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn last_event_id_equal_to_the_current_version_suppresses_the_current_state() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        // A short keep-alive: a stream that holds its first event back shows a comment first.
        let server = Server::start(&t, &["--events-keep-alive", "100ms"]).await;
        let job = queued(&t, "doc-1").await;
        let current = updated_micros(&get(&t, &job).await).to_string();

        let mut resumed = server.stream(&t.key, &job, Some(&current)).await;
        assert_eq!(resumed.next().await, Item::Comment("keep-alive".into()), "no event before a change");
        start(&t, &job).await;
        let (running, id) = resumed.next_event().await.job();
        assert_eq!(running["status"], "running");
        assert!(id > current.parse::<u64>().expect("id"));

        // An older id, a newer one, garbage: the current state first.
        let older = (id - 1).to_string();
        let newer = (id + 1).to_string();
        for last in [older.as_str(), newer.as_str(), "yesterday", ""] {
            let mut events = server.stream(&t.key, &job, Some(last)).await;
            assert_eq!(events.next().await.job(), (running.clone(), id), "Last-Event-ID {last:?}");
        }

        // A terminal job the client has seen in full: 204, so an EventSource stops reconnecting.
        t.db.complete(&acme(), &job, 1, &json!({"summary": "S."})).await.expect("complete");
        let (completed, last) = resumed.next_event().await.job();
        assert_eq!(resumed.next().await, Item::End);
        let again = server.open(&t.key, job.as_str(), Some(&last.to_string())).await;
        assert_eq!(again.status(), StatusCode::NO_CONTENT, "{again:?}");
        let mut behind = server.stream(&t.key, &job, Some(&id.to_string())).await;
        assert_eq!(behind.next().await.job(), (completed, last));
        assert_eq!(behind.next().await, Item::End);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn another_tenants_job_or_a_missing_one_is_404_before_any_stream() {
    let t = TestApp::new(Backend::Postgres).await;
    let job = queued(&t, "doc-1").await;
    let other = t.key_for("globex").await;
    let path = format!("/v1/jobs/{job}/events");
    let theirs = t.call(Method::GET, &path, Some(&other), None).await;
    let never = summarize_id(&summary_input("never-submitted", "Nothing."));
    let missing = t.call(Method::GET, &format!("/v1/jobs/{never}/events"), Some(&t.key), None).await;
    let malformed = t.call(Method::GET, "/v1/jobs/%20/events", Some(&t.key), None).await;
    for r in [&theirs, &missing, &malformed] {
        assert_eq!(problem(r, StatusCode::NOT_FOUND)["detail"], "job not found", "{r:?}");
    }
    assert_eq!(theirs.json, missing.json, "another tenant's job is answered as a missing one");
    problem(&t.call(Method::GET, &path, None, None).await, StatusCode::UNAUTHORIZED);
    problem(&t.call(Method::POST, &path, Some(&t.key), None).await, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_beyond_its_open_streams_gets_429_until_one_closes() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let server =
            Server::start(&t, &["--events-max-per-tenant", "2", "--events-keep-alive", "100ms"]).await;
        let (a, b, c) = (queued(&t, "doc-a").await, queued(&t, "doc-b").await, queued(&t, "doc-c").await);
        let mut first = server.stream(&t.key, &a, None).await;
        let mut second = server.stream(&t.key, &b, None).await;
        first.next_event().await.job();
        second.next_event().await.job();

        let refused = server.open(&t.key, c.as_str(), None).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS, "{refused:?}");
        let header =
            |name: &str| refused.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        assert_eq!(header("content-type").as_deref(), Some("application/problem+json"));
        assert_eq!(header("retry-after").as_deref(), Some("2"), "--retry-after's default");
        let p: Value = refused.json().await.expect("a problem document");
        assert_eq!(
            (&p["type"], &p["status"], &p["retryable"]),
            (&json!("/problems/too-many-requests"), &json!(429), &json!(true))
        );
        let detail = p["detail"].as_str().expect("detail");
        assert!(detail.contains("at most 2 event streams"), "{detail}");

        // The limit is per tenant.
        let globex = t.key_for("globex").await;
        let r = t
            .call(
                Method::POST,
                "/v1/jobs",
                Some(&globex),
                Some(json!({"kind": "summarize", "input": summary_input("g", "G.")})),
            )
            .await;
        let theirs = JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id");
        server.stream(&globex, &theirs, None).await.next_event().await.job();

        // A client that goes away frees its slot (the server notices at its next write at the latest).
        drop(first);
        let mut third = wait_until(PATIENCE, "a slot freed by a disconnect", async || {
            let response = server.open(&t.key, c.as_str(), None).await;
            match response.status() {
                StatusCode::OK => Ok(Events { response, buffer: String::new() }),
                status => Err(status),
            }
        })
        .await;
        assert_eq!(third.next_event().await.job().0["status"], "queued");
        assert_eq!(server.open(&t.key, a.as_str(), None).await.status(), StatusCode::TOO_MANY_REQUESTS);

        // A stream that ends (its job cancelled) frees its slot too.
        let r = t.call(Method::POST, &format!("/v1/jobs/{b}/cancel"), Some(&t.key), None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(second.next_event().await.job().0["status"], "cancelled");
        assert_eq!(second.next().await, Item::End);
        let mut fourth = wait_until(PATIENCE, "a slot freed by a stream's end", async || {
            let response = server.open(&t.key, a.as_str(), None).await;
            match response.status() {
                StatusCode::OK => Ok(Events { response, buffer: String::new() }),
                status => Err(status),
            }
        })
        .await;
        assert_eq!(fourth.next_event().await.job().0["status"], "queued");
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keep_alive_comments_hold_a_quiet_stream_open_past_the_request_timeout() {
    let t = TestApp::new(Backend::Sqlite).await;
    let flags = ["--events-keep-alive", "100ms", "--request-timeout", "1s"];
    let server = Server::start(&t, &flags).await;
    let job = queued(&t, "doc-1").await;
    let opened = Instant::now();
    let mut events = server.stream(&t.key, &job, None).await;
    events.next_event().await.job();
    // Quiet for one and a half request timeouts: only keep-alives, the stream still open.
    let mut comments = 0;
    while opened.elapsed() < Duration::from_millis(1500) {
        assert_eq!(events.next().await, Item::Comment("keep-alive".into()));
        comments += 1;
    }
    assert!(comments >= 5, "{comments} keep-alive comments in 1.5 s at 100 ms");
    start(&t, &job).await;
    assert_eq!(
        events.next_event().await.job().0["status"],
        "running",
        "the stream outlived --request-timeout"
    );
    server.stop().await;
}

/// A stream ends after `--events-max-lifetime` however quiet its job; reconnecting with the last
/// id resumes it (no state sent twice), and the next change arrives there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stream_ends_after_its_lifetime_and_resumes_with_last_event_id() {
    let t = TestApp::new(Backend::Sqlite).await;
    let flags = ["--events-max-lifetime", "500ms", "--events-keep-alive", "100ms"];
    let server = Server::start(&t, &flags).await;
    let job = queued(&t, "doc-1").await;
    let opened = Instant::now();
    let mut events = server.stream(&t.key, &job, None).await;
    let (_, id) = events.next_event().await.job();
    loop {
        match events.next().await {
            Item::Comment(_) => {
                assert!(opened.elapsed() < Duration::from_secs(5), "the stream outlived its lifetime")
            }
            Item::End => break,
            other => panic!("nothing changed, yet {other:?}"),
        }
    }
    assert!(opened.elapsed() >= Duration::from_millis(500), "ended after {:?}", opened.elapsed());
    let mut again = server.stream(&t.key, &job, Some(&id.to_string())).await;
    start(&t, &job).await;
    assert_eq!(
        again.next_event().await.job().0["status"],
        "running",
        "resumed: the next change, not the old state"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_read_mid_stream_is_an_error_event_and_the_end_of_the_stream() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let server = Server::start(&t, &[]).await;
        let job = queued(&t, "doc-1").await;
        let mut events = server.stream(&t.key, &job, None).await;
        events.next_event().await.job();
        // The producer's own pool, closed under it: every read fails from now on.
        server.store.close().await;
        match events.next_event().await {
            Item::Event { name, id: None, data } if name == "error" => {
                let data: Value = serde_json::from_str(&data).expect("JSON");
                assert_eq!(
                    data,
                    json!({"detail": "application storage is unavailable; reconnect with Last-Event-ID", "retryable": true})
                );
            }
            other => panic!("expected an error event, got {other:?}"),
        }
        assert_eq!(events.next().await, Item::End);
        server.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_producers_shutdown_ends_open_streams() {
    let t = TestApp::new(Backend::Postgres).await;
    let server = Server::start(&t, &[]).await;
    let job = queued(&t, "doc-1").await;
    let mut events = server.stream(&t.key, &job, None).await;
    events.next_event().await.job();
    // Server::stop fails unless the producer stops within 10 s, the job still queued.
    server.stop().await;
    assert_eq!(events.next().await, Item::End);
}

#[test]
fn the_events_flags_refuse_values_out_of_bounds() {
    let parse = |flag: &str, value: &str| {
        Config::try_parse_from(["serve", flag, value]).map(|c| c.serve.settings()).map_err(|e| e.to_string())
    };
    let settings = parse("--events-poll", "250ms").expect("the default");
    assert_eq!(
        (settings.events_poll, settings.events_keep_alive, settings.events_max_per_tenant),
        (Duration::from_millis(250), Duration::from_secs(15), 16)
    );
    for (flag, value, says) in [
        (
            "--events-poll",
            "5ms",
            "must be at least 10ms: every open events stream reads the database this often",
        ),
        ("--events-poll", "0s", "must be greater than zero"),
        ("--events-poll", "often", "expected a duration"),
        ("--events-keep-alive", "0s", "must be greater than zero"),
        ("--events-max-per-tenant", "0", "0 is not in 1..=100000"),
    ] {
        let e = parse(flag, value).expect_err(value);
        assert!(e.contains(flag) && e.contains(says), "{flag} {value}: {e}");
    }
}
