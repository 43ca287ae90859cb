//! End-to-end harness: the real `producer`, `worker` and `queue-events` binaries as processes,
//! against a fresh PostgreSQL database and a private Redis key prefix, with a local stand-in for
//! the classification provider and the tenant's webhook receiver.
//!
//! The binaries are taken from the target directory this test binary runs from; `cargo test
//! --workspace` builds them. Starting, stopping and logging them is the test kit's
//! [`procs`](longhaul_testkit::procs) harness, shared with the demo and the benchmark.

#![allow(missing_docs, reason = "a test harness; its items are documented where they are not obvious")]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

/// How the stand-in provider answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Classify every ticket.
    Ok,
    /// Answer 503 to the first `n` calls, then classify.
    FailFirst(u32),
    /// Answer 503 forever.
    AlwaysFail,
    /// Take this long before answering.
    Slow(Duration),
}

/// The stand-in for the classification provider and the webhook receiver.
#[derive(Clone)]
pub struct Fake {
    pub mode: Arc<Mutex<Mode>>,
    pub calls: Arc<Mutex<u32>>,
    /// Idempotency-Key of every webhook request, in arrival order.
    pub webhooks: Arc<Mutex<Vec<String>>>,
    /// `(job_id, Idempotency-Key)` of every webhook request, in arrival order.
    pub deliveries: Arc<Mutex<Vec<(String, String)>>>,
    /// While set, webhook requests hang without an answer (a receiver that is stuck).
    pub hang_webhooks: Arc<Mutex<bool>>,
    /// `Authorization` header of every provider request, in arrival order.
    pub provider_auth: Arc<Mutex<Vec<String>>>,
    pub addr: std::net::SocketAddr,
}

async fn chat(State(fake): State<Fake>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    fake.provider_auth.lock().expect("lock").push(auth);
    let n = {
        let mut calls = fake.calls.lock().expect("lock");
        *calls += 1;
        *calls
    };
    let mode = *fake.mode.lock().expect("lock");
    match mode {
        Mode::AlwaysFail => return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "overloaded"}))),
        Mode::FailFirst(k) if n <= k => {
            return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "overloaded"})));
        }
        Mode::Slow(d) => tokio::time::sleep(d).await,
        _ => {}
    }
    let content = r#"{"category":"bug","priority":"high","labels":["e2e"],"summary":"App crashes"}"#;
    (StatusCode::OK, Json(json!({"choices": [{"message": {"role": "assistant", "content": content}}]})))
}

async fn webhook(State(fake): State<Fake>, headers: HeaderMap, body: axum::body::Bytes) -> StatusCode {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let job = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["job_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    fake.deliveries.lock().expect("lock").push((job, key.clone()));
    fake.webhooks.lock().expect("lock").push(key);
    if *fake.hang_webhooks.lock().expect("lock") {
        std::future::pending::<()>().await;
    }
    StatusCode::NO_CONTENT
}

impl Fake {
    pub async fn start(mode: Mode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let fake = Fake {
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::new(Mutex::new(0)),
            webhooks: Arc::new(Mutex::new(Vec::new())),
            deliveries: Arc::new(Mutex::new(Vec::new())),
            hang_webhooks: Arc::new(Mutex::new(false)),
            provider_auth: Arc::new(Mutex::new(Vec::new())),
            addr: listener.local_addr().expect("addr"),
        };
        let router = axum::Router::new()
            .route("/v1/chat/completions", post(chat))
            .route("/webhook", post(webhook))
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
}

/// A system under test: database, queue prefix, the stand-in, and the processes started so far.
pub struct System {
    pub db: TestDb,
    pub queue: TestQueue,
    pub fake: Fake,
    pub dir: PathBuf,
    pub api: String,
    pub key: String,
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
        let key = launcher
            .create_tenant(&["acme", "--webhook-url", &format!("http://{}/webhook", fake.addr)], &[])
            .unwrap_or_else(|e| panic!("tenant create: {e}"));
        let mut system = Self {
            db,
            queue,
            fake,
            dir,
            api: format!("http://127.0.0.1:{port}"),
            key,
            launcher,
            procs: Vec::new(),
        };
        system.spawn("producer", &["serve"], &[]);
        if let Err(last) = wait_ready(&system.api, Duration::from_secs(20)).await {
            panic!("timed out after 20s waiting for producer ready; last state: {last:?}");
        }
        system
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

    /// Starts a worker named `name`.
    pub fn worker(&mut self, name: &str) -> usize {
        self.spawn("worker", &["--skip-migrations"], &[("LONGHAUL_CONSUMER_NAME", name)])
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

    /// The job record through the API.
    pub async fn job(&self, job: &str) -> Value {
        self.http()
            .get(format!("{}/v1/jobs/{job}", self.api))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
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
}

impl Drop for System {
    fn drop(&mut self) {
        stop_all(&mut self.procs, Duration::from_secs(5));
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
