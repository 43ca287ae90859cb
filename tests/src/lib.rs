//! End-to-end harness: the real `producer`, `worker` and `queue-events` binaries (or a user
//! project's own producer and worker, such as `examples/enrichment`'s) as processes, against a fresh
//! PostgreSQL database and a private Redis key prefix, with a local stand-in ([`Fake`]) for the
//! providers (the OpenAI-compatible chat API that triage and summarize call, the example project's
//! people-lookup API) and for webhook receivers.
//!
//! The binaries are taken from the target directory this test binary runs from; `cargo test
//! --workspace` builds them. Starting, stopping and logging them is the test kit's
//! [`procs`](longhaul_testkit::procs) harness, shared with the demo and the benchmark.

#![allow(missing_docs, reason = "a test harness; its items are documented where they are not obvious")]

pub mod browser;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
pub use longhaul_testkit::procs::Proc;
use longhaul_testkit::procs::{Binaries, Launcher, Output, free_port, stop_all, wait_ready};
use longhaul_testkit::{Backend, TestDb, TestQueue, wait_until};
use serde_json::{Value, json};

/// The workspace's binaries (next to this test binary's directory).
pub fn binaries() -> Binaries {
    Binaries::beside_current_exe("run `cargo test --workspace` (or `cargo build --bins`) first")
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The path of binary `bin`.
pub fn bin_path(bin: &str) -> PathBuf {
    binaries().path(bin)
}

/// How the stand-in chat provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Answer every call.
    Ok,
    /// Answer 503 to the first `n` calls, then answer.
    FailFirst(u32),
    /// Answer the first `ok` calls, 503 to the next `fail`, then answer again.
    FailAfter {
        /// Calls answered before the failures.
        ok: u32,
        /// Calls answered 503 after them.
        fail: u32,
    },
    /// Answer 503 forever.
    AlwaysFail,
    /// Take this long before answering.
    Slow(Duration),
    /// Hold every call until the test lets it through ([`Fake::release`]), then answer.
    Gated,
    /// Answer 200 with blank content: no classification, no summary (a bad answer, not a
    /// transient failure).
    Blank,
}

/// The prompt a chat call was made with: which pipeline step asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    /// Triage's classification.
    Classify,
    /// Summarize's summary of one chunk.
    Summarize,
    /// Summarize's combination of the chunks' summaries.
    Combine,
}

/// One chat-completions request the stand-in received.
#[derive(Debug, Clone)]
pub struct ChatCall {
    /// What it asked for.
    pub prompt: Prompt,
    /// The user message (the ticket, the chunk, the numbered partial summaries).
    pub user: String,
    /// When it arrived.
    pub at: SystemTime,
}

/// One people-lookup request (the example project's provider).
#[derive(Debug, Clone)]
pub struct Lookup {
    /// The `email` asked about.
    pub email: String,
    /// Its `Idempotency-Key` header.
    pub key: String,
    /// When it arrived.
    pub at: SystemTime,
}

/// The stand-in for the providers and the webhook receivers.
#[derive(Clone)]
pub struct Fake {
    pub mode: Arc<Mutex<Mode>>,
    /// Chat calls so far (every prompt).
    pub calls: Arc<Mutex<u32>>,
    /// Every chat call, in arrival order.
    pub chats: Arc<Mutex<Vec<ChatCall>>>,
    /// Lets held calls through under [`Mode::Gated`].
    gate: Arc<tokio::sync::Semaphore>,
    /// Idempotency-Key of every webhook request, in arrival order.
    pub webhooks: Arc<Mutex<Vec<String>>>,
    /// `(job_id, Idempotency-Key)` of every webhook request, in arrival order.
    pub deliveries: Arc<Mutex<Vec<(String, String)>>>,
    /// The JSON body of every webhook request, in arrival order.
    pub webhook_bodies: Arc<Mutex<Vec<Value>>>,
    /// While set, webhook requests hang without an answer (a receiver that is stuck).
    pub hang_webhooks: Arc<Mutex<bool>>,
    /// `Authorization` header of every provider request, in arrival order.
    pub provider_auth: Arc<Mutex<Vec<String>>>,
    /// Every people-lookup request, in arrival order.
    pub lookups: Arc<Mutex<Vec<Lookup>>>,
    /// People lookups still to answer 503 before answering.
    pub lookup_failures: Arc<Mutex<u32>>,
    pub addr: std::net::SocketAddr,
}

/// The summary the stand-in gives of a chunk: `Summary: <its first sentence>`.
pub fn chunk_summary(chunk: &str) -> String {
    let text = chunk.split_whitespace().collect::<Vec<_>>().join(" ");
    let first = match text.find(". ") {
        Some(i) => &text[..=i],
        None => text.as_str(),
    };
    format!("Summary: {first}")
}

/// The summary the stand-in gives of a document whose chunks' summaries are `partials`.
pub fn combined_summary(partials: &[String]) -> String {
    format!("Combined {} parts: {}", partials.len(), partials.join(" | "))
}

/// The partial summaries in a combine request's user message (`Part 1:\n…\n\nPart 2:\n…`).
fn parts(user: &str) -> Vec<String> {
    user.split("\n\nPart ")
        .filter_map(|part| part.split_once(":\n").map(|(_, text)| text.to_owned()))
        .collect()
}

async fn chat(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    fake.provider_auth.lock().expect("lock").push(auth);
    let system = body.pointer("/messages/0/content").and_then(Value::as_str).unwrap_or_default();
    let user = body.pointer("/messages/1/content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let prompt = if system == longhaul_summarize::summarizer::SUMMARY_PROMPT {
        Prompt::Summarize
    } else if system == longhaul_summarize::summarizer::COMBINE_PROMPT {
        Prompt::Combine
    } else {
        Prompt::Classify
    };
    fake.chats.lock().expect("lock").push(ChatCall { prompt, user: user.clone(), at: SystemTime::now() });
    let n = {
        let mut calls = fake.calls.lock().expect("lock");
        *calls += 1;
        *calls
    };
    let mode = *fake.mode.lock().expect("lock");
    let unavailable = (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "overloaded"})));
    match mode {
        Mode::AlwaysFail => return unavailable,
        Mode::FailFirst(k) if n <= k => return unavailable,
        Mode::FailAfter { ok, fail } if n > ok && n <= ok + fail => return unavailable,
        Mode::Slow(d) => tokio::time::sleep(d).await,
        Mode::Gated => fake.gate.acquire().await.expect("the gate is never closed").forget(),
        _ => {}
    }
    let content = match (mode, prompt) {
        (Mode::Blank, _) => "   ".to_owned(),
        (_, Prompt::Classify) => {
            r#"{"category":"bug","priority":"high","labels":["e2e"],"summary":"App crashes"}"#.to_owned()
        }
        (_, Prompt::Summarize) => chunk_summary(&user),
        (_, Prompt::Combine) => combined_summary(&parts(&user)),
    };
    (StatusCode::OK, Json(json!({"choices": [{"message": {"role": "assistant", "content": content}}]})))
}

async fn webhook(State(fake): State<Fake>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let parsed = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
    let job = parsed["job_id"].as_str().map(str::to_owned).unwrap_or_default();
    fake.deliveries.lock().expect("lock").push((job, key.clone()));
    fake.webhook_bodies.lock().expect("lock").push(parsed);
    fake.webhooks.lock().expect("lock").push(key);
    if *fake.hang_webhooks.lock().expect("lock") {
        std::future::pending::<()>().await;
    }
    StatusCode::NO_CONTENT
}

/// What the stand-in people-lookup API knows of `email`: the company from its domain
/// (`ada@analytical.example` → `Analytical`), and a title.
pub fn person(email: &str) -> Value {
    let domain = email.rsplit('@').next().unwrap_or_default();
    let name = domain.split('.').next().unwrap_or_default();
    let mut company: String = name.chars().take(1).flat_map(char::to_uppercase).collect();
    company.push_str(name.get(1..).unwrap_or_default());
    json!({"company": company, "title": "VP Engineering"})
}

async fn lookup(
    State(fake): State<Fake>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let email = body["email"].as_str().unwrap_or_default().to_owned();
    fake.lookups.lock().expect("lock").push(Lookup { email: email.clone(), key, at: SystemTime::now() });
    {
        let mut failures = fake.lookup_failures.lock().expect("lock");
        if *failures > 0 {
            *failures -= 1;
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "try again"})));
        }
    }
    (StatusCode::OK, Json(person(&email)))
}

impl Fake {
    pub async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fake = Fake {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(Mutex::new(0)),
            chats: Arc::new(Mutex::new(Vec::new())),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
            webhooks: Arc::new(Mutex::new(Vec::new())),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            webhook_bodies: Arc::new(Mutex::new(Vec::new())),
            hang_webhooks: Arc::new(Mutex::new(false)),
            provider_auth: Arc::new(Mutex::new(Vec::new())),
            lookups: Arc::new(Mutex::new(Vec::new())),
            lookup_failures: Arc::new(Mutex::new(0)),
            addr: listener.local_addr().expect("addr"),
        };
        let router = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/webhook", post(webhook))
            .route("/people/lookup", post(lookup))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        fake
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    pub fn webhook_keys(&self) -> Vec<String> {
        self.webhooks.lock().expect("lock").clone()
    }

    /// Lets `n` held chat calls through (or, under [`Mode::Gated`], the next `n` calls).
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// The chat calls so far.
    pub fn chat_calls(&self) -> Vec<ChatCall> {
        self.chats.lock().expect("lock").clone()
    }

    /// The chat calls so far that asked `prompt`.
    pub fn chats_of(&self, prompt: Prompt) -> Vec<ChatCall> {
        self.chat_calls().into_iter().filter(|c| c.prompt == prompt).collect()
    }

    /// The webhook bodies received for job `job`.
    pub fn webhook_bodies_of(&self, job: &str) -> Vec<Value> {
        self.webhook_bodies.lock().expect("lock").iter().filter(|b| b["job_id"] == job).cloned().collect()
    }

    /// The people lookups so far.
    pub fn lookup_calls(&self) -> Vec<Lookup> {
        self.lookups.lock().expect("lock").clone()
    }

    /// The webhook receiver's URL.
    pub fn webhook_url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    /// The stand-in's base URL (the example project's provider).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// A system under test: database, queue prefix, the stand-in, and the processes started so far.
pub struct System {
    pub db: TestDb,
    /// The triage queue under the system's key prefix (the other queues share the prefix).
    pub queue: TestQueue,
    pub fake: Fake,
    pub dir: PathBuf,
    pub api: String,
    /// Tenant `acme`'s API key.
    pub key: String,
    /// The producer binary serving the API (and creating tenants).
    producer: String,
    launcher: Launcher,
    pub procs: Vec<Proc>,
}

impl System {
    /// A fresh PostgreSQL database with tenant `acme` (webhook → the stand-in), a private Redis
    /// prefix, and the producer serving. `extra` env applies to every process.
    pub async fn start(mode: Mode, extra: &[(&str, &str)]) -> Self {
        Self::start_custom(mode, extra, |_, _| Vec::new()).await
    }

    /// As [`System::start`]; `env_for(queue prefix, database URL)` adds environment (applied after
    /// `extra`) that depends on them, e.g. a Redis ACL user limited to the prefix.
    pub async fn start_custom(
        mode: Mode,
        extra: &[(&str, &str)],
        env_for: impl FnOnce(&str, &str) -> Vec<(String, String)>,
    ) -> Self {
        Self::start_with("producer", mode, extra, env_for).await
    }

    /// As [`System::start`], with a user project's producer binary (e.g. `enrich-producer`)
    /// creating the tenant and serving the API. The stand-in's base URL is in the environment as
    /// `ENRICH_PROVIDER_URL`, for the example project's worker.
    pub async fn start_project(producer: &str, mode: Mode, extra: &[(&str, &str)]) -> Self {
        let bins = binaries();
        assert!(
            bins.path(producer).exists(),
            "{} is missing: run `cargo test --workspace` (or `cargo build --bins`) first",
            bins.path(producer).display()
        );
        Self::start_with(producer, mode, extra, |_, _| Vec::new()).await
    }

    async fn start_with(
        producer: &str,
        mode: Mode,
        extra: &[(&str, &str)],
        env_for: impl FnOnce(&str, &str) -> Vec<(String, String)>,
    ) -> Self {
        let bins = binaries();
        let db = TestDb::new(Backend::Postgres).await;
        let queue = TestQueue::new(|_| {}).await;
        let fake = Fake::start(mode).await;
        let dir = std::env::temp_dir().join(format!("longhaul-e2e-{}", longhaul_testkit::random_hex()));
        std::fs::create_dir_all(&dir).expect("dir");
        let port = free_port().expect("port");
        let mut env: BTreeMap<String, String> = [
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", longhaul_testkit::redis_url()),
            ("LONGHAUL_QUEUE_PREFIX", queue.prefix.clone()),
            ("LONGHAUL_LOG_FORMAT", "json".into()),
            ("LONGHAUL_LISTEN", format!("127.0.0.1:{port}")),
            ("LONGHAUL_ADMIN_ADDR", "127.0.0.1:0".into()),
            ("LONGHAUL_PROVIDER", "openai".into()),
            ("LONGHAUL_PROVIDER_BASE_URL", format!("http://{}/v1", fake.addr)),
            ("LONGHAUL_PROVIDER_TIMEOUT", "10s".into()),
            ("LONGHAUL_WEBHOOK_TIMEOUT", "30s".into()),
            ("LONGHAUL_LEASE", "1500ms".into()),
            ("LONGHAUL_HEARTBEAT", "300ms".into()),
            ("LONGHAUL_BACKOFF_BASE", "100ms".into()),
            ("LONGHAUL_BACKOFF_CAP", "300ms".into()),
            ("LONGHAUL_PROGRESS_INTERVAL", "0s".into()),
            ("LONGHAUL_STATS_EVERY", "1s".into()),
            ("ENRICH_PROVIDER_URL", fake.base_url()),
            ("RUST_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        for (k, v) in extra {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        env.extend(env_for(&queue.prefix, &db.url));
        let launcher = Launcher::new(bins, env);
        let mut system = Self {
            db,
            queue,
            fake,
            dir,
            api: format!("http://127.0.0.1:{port}"),
            key: String::new(),
            producer: producer.to_owned(),
            launcher,
            procs: Vec::new(),
        };
        system.key = system.tenant("acme");
        system.spawn(producer, &["serve"], &[]);
        if let Err(last) = wait_ready(&system.api, Duration::from_secs(20)).await {
            panic!("timed out after 20s waiting for {producer} ready; last state: {last:?}");
        }
        system
    }

    /// Creates tenant `id` (webhook → the stand-in) with `<producer> tenant create`; its API key.
    pub fn tenant(&self, id: &str) -> String {
        self.tenant_with(id, Some(&self.fake.webhook_url()))
    }

    /// Creates tenant `id` with `webhook` as its webhook URL (`None`: no webhook, so no result
    /// is delivered) with `<producer> tenant create`; its API key.
    pub fn tenant_with(&self, id: &str, webhook: Option<&str>) -> String {
        let mut args = vec!["tenant", "create", id];
        if let Some(url) = webhook {
            args.extend(["--webhook-url", url]);
        }
        let mut command = self.launcher.command(&self.producer, &args, &[], &[]);
        let out = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", self.producer));
        assert!(
            out.status.success(),
            "{} tenant create {id}: {}",
            self.producer,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Runs `<producer> args…` with the system's environment: (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let out = self
            .launcher
            .command(&self.producer, args, &[], &[])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.producer));
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Creates operator `name` with `<producer> operators create`; its operator key.
    pub fn operator(&self, name: &str) -> String {
        let (code, out, err) = self.cli(&["operators", "create", name]);
        assert_eq!(code, 0, "operators create {name}: {err}");
        out.trim().to_owned()
    }

    /// `method /admin/v1/{path}` with key `key` and an optional JSON body: (status code, body).
    pub async fn admin(&self, key: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request =
            self.http().request(method, format!("{}/admin/v1/{path}", self.api)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Starts `bin` with `args`; returns its index in `procs`.
    pub fn spawn(&mut self, bin: &str, args: &[&str], env: &[(&str, &str)]) -> usize {
        self.spawn_with(bin, args, env, &[])
    }

    /// As [`System::spawn`], without the variables named in `remove`.
    pub fn spawn_with(&mut self, bin: &str, args: &[&str], env: &[(&str, &str)], remove: &[&str]) -> usize {
        let name = format!("{bin}-{}", self.procs.len());
        let log = self.dir.join(format!("{name}.log"));
        let command = self.launcher.command(bin, args, env, remove);
        self.procs.push(Proc::start(&name, command, Output::LogFile(log)).expect("spawn"));
        self.procs.len() - 1
    }

    /// Starts a worker named `name` (serving every queue of the built-in kinds).
    pub fn worker(&mut self, name: &str) -> usize {
        self.spawn("worker", &["--skip-migrations"], &[("LONGHAUL_CONSUMER_NAME", name)])
    }

    /// Starts a worker named `name` serving only `queues` (`LONGHAUL_QUEUES`).
    pub fn worker_on(&mut self, name: &str, queues: &str) -> usize {
        self.spawn(
            "worker",
            &["--skip-migrations"],
            &[("LONGHAUL_CONSUMER_NAME", name), ("LONGHAUL_QUEUES", queues)],
        )
    }

    /// Starts queue-events named `name` (tailing the built-in kinds' queues).
    pub fn queue_events(&mut self, name: &str) -> usize {
        self.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", name)])
    }

    pub fn http(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    /// Creates ticket `id` through the API.
    pub async fn ticket(&self, id: &str) {
        let r = self
            .http()
            .post(format!("{}/v1/tickets", self.api))
            .bearer_auth(&self.key)
            .json(&json!({"ticket_id": id, "subject": "App crashes", "body": "It crashes on start"}))
            .send()
            .await
            .expect("create ticket");
        assert!(r.status().is_success(), "{r:?}");
    }

    /// Requests triage of ticket `id`: (status code, job).
    pub async fn triage(&self, id: &str) -> (u16, Value) {
        let r = self
            .http()
            .post(format!("{}/v1/tickets/{id}/triage", self.api))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("triage");
        (r.status().as_u16(), r.json().await.expect("json"))
    }

    /// `POST /v1/jobs {kind, input}` as tenant `acme`: (status code, body).
    pub async fn submit(&self, kind: &str, input: &Value) -> (u16, Value) {
        self.submit_as(&self.key, kind, input, None).await
    }

    /// `POST /v1/jobs {kind, input}` with API key `key` and, when given, an `Idempotency-Key`:
    /// (status code, body).
    pub async fn submit_as(
        &self,
        key: &str,
        kind: &str,
        input: &Value,
        idempotency_key: Option<&str>,
    ) -> (u16, Value) {
        let mut request = self
            .http()
            .post(format!("{}/v1/jobs", self.api))
            .bearer_auth(key)
            .json(&json!({"kind": kind, "input": input}));
        if let Some(k) = idempotency_key {
            request = request.header("Idempotency-Key", k);
        }
        let r = request.send().await.expect("submit");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The job record through the API.
    pub async fn job(&self, job: &str) -> Value {
        self.job_as(&self.key, job).await.1
    }

    /// `GET /v1/jobs/{job}` with API key `key`: (status code, body).
    pub async fn job_as(&self, key: &str, job: &str) -> (u16, Value) {
        let r = self
            .http()
            .get(format!("{}/v1/jobs/{job}", self.api))
            .bearer_auth(key)
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.expect("json"))
    }

    /// `GET /v1/jobs?{query}` with API key `key`: the page's job ids.
    pub async fn list_as(&self, key: &str, query: &str) -> Vec<String> {
        let r = self
            .http()
            .get(format!("{}/v1/jobs?{query}", self.api))
            .bearer_auth(key)
            .send()
            .await
            .expect("list");
        assert_eq!(r.status().as_u16(), 200, "GET /v1/jobs?{query}");
        let page: Value = r.json().await.expect("json");
        page["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| j["job_id"].as_str().expect("job_id").to_owned())
            .collect()
    }

    /// Waits for the job's status to be `status`.
    pub async fn wait_status(&self, job: &str, status: &str, timeout: Duration) -> Value {
        wait_until(timeout, &format!("job {job} {status}"), async || {
            let r = self.job(job).await;
            if r["status"] == status { Ok(r) } else { Err(r) }
        })
        .await
    }

    /// JSON log lines of process `i`.
    pub fn log_lines(&self, i: usize) -> Vec<Value> {
        self.procs[i].output().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Waits until queue-events process `i` has logged `message` for job `job`; those lines.
    pub async fn wait_event(&self, i: usize, message: &str, job: &str, timeout: Duration) -> Vec<Value> {
        wait_until(timeout, &format!("queue-events logs {message:?} for {job}"), async || {
            let lines: Vec<Value> = self
                .log_lines(i)
                .into_iter()
                .filter(|l| l["message"] == message && l["job_id"] == job)
                .collect();
            if lines.is_empty() { Err(self.procs[i].output()) } else { Ok(lines) }
        })
        .await
    }
}

impl Drop for System {
    fn drop(&mut self) {
        stop_all(&mut self.procs, Duration::from_secs(5));
        if std::thread::panicking() {
            // A failed test: keep the logs, and show the end of each.
            for p in &self.procs {
                let output = p.output();
                let lines: Vec<&str> = output.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- {} ({} lines; last 40) ---\n{tail}", p.name, lines.len());
            }
            eprintln!("logs kept in {}", self.dir.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The `[env: NAME=…]` names a binary's `--help` lists (its own clap definitions).
pub fn env_names(bin: &str, args: &[&str]) -> Vec<String> {
    let out = Command::new(bin_path(bin)).args(args).arg("--help").output().expect("--help");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.match_indices("[env: ")
        .filter_map(|(i, _)| {
            let rest = &text[i + 6..];
            let end = rest.find(['=', ']'])?;
            Some(rest[..end].to_owned())
        })
        .collect()
}

/// A private redis-server without persistence on `port` (so a restart comes back empty); killed
/// on drop.
pub struct PrivateRedis {
    pub child: std::process::Child,
    pub port: u16,
}

impl PrivateRedis {
    /// Starts it and waits until it answers PING.
    pub async fn start(port: u16) -> Self {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (install it or put it on PATH)");
        let url = format!("redis://127.0.0.1:{port}");
        wait_until(Duration::from_secs(10), "private redis-server up", async || {
            let client = redis::Client::open(url.as_str()).map_err(|e| e.to_string())?;
            let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| e.to_string())?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| e.to_string())
        })
        .await;
        Self { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL) and reaps it: its data is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
