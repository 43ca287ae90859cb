//! `longhaul-demo`: runs the whole system on embedded defaults and shows it working.
//!
//! SQLite in a temporary directory for application storage; Redis at `REDIS_URL` or — when nothing
//! answers there and `redis-server` is installed — a private redis-server on a free loopback port.
//! It starts the producer, two workers and queue-events as real processes, creates a tenant and a
//! handful of sample tickets, submits triage jobs for them and summarize jobs for a few
//! multi-paragraph documents (`POST /v1/jobs`) through the HTTP API, shows live progress, prints
//! the final records, the summaries and a few queue-events log lines, and shuts everything down
//! with SIGTERM. It also issues an operator key and prints the console's address: run from a
//! terminal (or with `--stay`), the system then stays up, taking a new job every few seconds, so
//! the console shows it live, until ctrl-c; `--exit` (or no terminal) shuts down at once.
//!
//! The workers use the OpenAI-compatible provider pointed at a small local stand-in (also serving
//! the webhooks; it classifies with the built-in rules and summarizes with the built-in extractive
//! summarizer), so every status appears: one ticket's provider answers 503 twice (the job retries,
//! then completes), one gets an answer outside the schema (the job fails as invalid), and one
//! document's second chunk meets two 503s (the job retries, resuming at that chunk).

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use longhaul_testkit::procs::{Binaries, Launcher, Output, Proc, Stopped, free_port, stop_all, wait_ready};
use serde_json::{Value, json};

const TICKETS: &[(&str, &str, &str)] = &[
    (
        "SUP-1001",
        "Charged twice this month",
        "My card was charged twice for the Pro subscription. Please refund one.",
    ),
    ("SUP-1002", "App crashes on export", "The iOS app crashes every time I export a report to PDF."),
    (
        "SUP-1003",
        "Locked out after 2FA reset",
        "I reset my phone and now I cannot log in, 2FA codes are rejected.",
    ),
    ("SUP-1004", "Dark mode would be nice", "Feature suggestion: a dark theme for the dashboard."),
    ("SUP-1005", "Dashboard down [flaky]", "The dashboard is down for our whole team since 9am, urgent."),
    (
        "SUP-1006",
        "Weird characters in invoice [broken]",
        "The invoice PDF shows question marks instead of umlauts.",
    ),
];

/// Documents to summarize: `(document id, text)`. Paragraphs are separated by blank lines; with
/// [`CHUNK_CHARS`] each splits into several chunks. `[flaky]` makes the stand-in answer that chunk
/// 503 twice.
const DOCUMENTS: &[(&str, &str)] = &[
    (
        "onboarding-guide",
        "New customers start with a workspace and an owner account. The owner invites the team, \
         chooses a plan and connects the first data source. Most teams finish this in one afternoon.\n\n\
         Data sources sync every fifteen minutes. A sync that fails is retried with backoff, and the \
         dashboard shows the last successful sync for every source. Large imports run overnight.\n\n\
         Reports are built from saved queries. Each report can be exported to PDF or CSV, shared by \
         link, or scheduled to arrive by email every Monday morning before the weekly meeting.",
    ),
    (
        "incident-2024-03",
        "On the morning of March 4 the dashboard was unavailable for forty minutes. Requests timed out \
         because the database connection pool was exhausted by a slow reporting query.\n\n\
         The on-call engineer [flaky] identified the query from the slow log, cancelled it and raised \
         the pool limit. Service recovered at once, and no customer data was lost or corrupted.\n\n\
         Follow-up actions: reporting queries now run on a read replica with a statement timeout, and \
         an alert fires when the pool is more than eighty percent used for five minutes.",
    ),
    (
        "pricing-faq",
        "The Pro plan costs twelve dollars per user per month, billed annually, or fifteen dollars \
         billed monthly. Every plan includes unlimited reports and dashboards.\n\n\
         Refunds are available within thirty days of a charge. Customers charged twice should contact \
         support with both receipts; the duplicate charge is refunded within five business days.\n\n\
         Enterprise customers get single sign-on, audit logs and a dedicated support engineer, with \
         custom pricing for more than five hundred seats.",
    ),
];

/// Largest chunk the documents are split into, in characters.
const CHUNK_CHARS: u32 = 250;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The processes of the run: stopped with SIGTERM (then SIGKILL after a grace period) when
/// dropped, reporting how each ended.
struct Processes {
    children: Vec<Proc>,
}

impl Processes {
    fn stop(&mut self) {
        for (name, how) in stop_all(&mut self.children, Duration::from_secs(15)) {
            match how {
                Stopped::Exited(status) => println!("  {name} exited ({status})"),
                Stopped::Killed => println!("  {name} killed after the grace period"),
            }
        }
        self.children.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answers(addr: &str) -> bool {
    addr.parse::<SocketAddr>()
        .is_ok_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

/// `host:port` of a `redis://` URL (no credentials, default port 6379).
fn redis_addr(url: &str) -> Option<String> {
    let rest = url.strip_prefix("redis://")?;
    let host_port = rest.rsplit('@').next()?.split('/').next()?;
    let host_port = if host_port.contains(':') { host_port.to_owned() } else { format!("{host_port}:6379") };
    Some(host_port.replace("localhost", "127.0.0.1"))
}

fn random_suffix() -> String {
    let mut b = [0u8; 4];
    let _ = getrandom::fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The stand-in provider and webhook receiver.
#[derive(Clone, Default)]
struct FakeProvider {
    calls: Arc<Mutex<HashMap<String, u32>>>,
    webhooks: Arc<Mutex<Vec<String>>>,
}

async fn chat(State(fake): State<FakeProvider>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let content = body.pointer("/messages/1/content").and_then(Value::as_str).unwrap_or_default().to_owned();
    let n = {
        let mut calls = fake.calls.lock().unwrap_or_else(|e| e.into_inner());
        let n = calls.entry(content.clone()).or_insert(0);
        *n += 1;
        *n
    };
    if content.contains("[flaky]") && n <= 2 {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": "model overloaded"})));
    }
    let system = body.pointer("/messages/0/content").and_then(Value::as_str).unwrap_or_default();
    let summarizer = longhaul_summarize::ExtractiveSummarizer::new();
    let answer = if system == longhaul_summarize::summarizer::SUMMARY_PROMPT {
        summarizer.summarize_now(&content.replace("[flaky]", ""))
    } else if system == longhaul_summarize::summarizer::COMBINE_PROMPT {
        // "Part 1:\n…\n\nPart 2:\n…": the partial summaries, in order.
        let parts: Vec<String> = content
            .split("\n\nPart ")
            .filter_map(|p| p.split_once(":\n").map(|(_, t)| t.to_owned()))
            .collect();
        summarizer.combine_now(&parts)
    } else if content.contains("[broken]") {
        "Sure! I think this ticket is about billing.".to_owned()
    } else {
        let (subject, body) = content
            .strip_prefix("Subject: ")
            .unwrap_or(&content)
            .split_once("\n\n")
            .unwrap_or((&content, ""));
        let ticket = longhaul_triage::TicketView {
            tenant_id: longhaul_core::TenantId::parse("demo")
                .unwrap_or_else(|_| unreachable!("valid literal")),
            ticket_id: longhaul_core::TicketId::parse("x").unwrap_or_else(|_| unreachable!("valid literal")),
            revision: 1,
            subject: subject.to_owned(),
            body: body.to_owned(),
            webhook_url: None,
        };
        serde_json::to_string(&longhaul_triage::RuleClassifier::classify_now(&ticket)).unwrap_or_default()
    };
    (
        StatusCode::OK,
        Json(json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": answer}}]})),
    )
}

async fn webhook(State(fake): State<FakeProvider>, headers: axum::http::HeaderMap) -> StatusCode {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    fake.webhooks.lock().unwrap_or_else(|e| e.into_inner()).push(key);
    StatusCode::NO_CONTENT
}

/// Whether the system stays up after the script, from the command line: `--stay`, `--exit`, or
/// (neither) whether the demo runs in a terminal.
fn stay_up() -> anyhow::Result<bool> {
    let mut stay = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--stay" => stay = true,
            "--exit" => stay = false,
            "-h" | "--help" => {
                println!(
                    "longhaul-demo: the whole system on embedded defaults, end to end.\n\n\
                     Usage: longhaul-demo [--stay | --exit]\n\n\
                     --stay  keep the system up after the script (a new job every few seconds) so the\n\
                     \x20       console shows it live, until ctrl-c (the default in a terminal)\n\
                     --exit  shut down after the script (the default without a terminal)"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}: expected --stay or --exit (see --help)"),
        }
    }
    Ok(stay)
}

async fn run() -> anyhow::Result<()> {
    let stay = stay_up()?;
    let bins = Binaries::beside_current_exe("build the binaries first (cargo build --bins)")
        .map_err(anyhow::Error::msg)?;
    let dir = std::env::temp_dir().join(format!("longhaul-demo-{}", random_suffix()));
    std::fs::create_dir_all(&dir)?;
    println!("longhaul demo — working directory {}", dir.display());
    let mut procs = Processes { children: Vec::new() };

    // Redis: the configured one, or a private one.
    let configured = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let redis_url = if redis_addr(&configured).is_some_and(|a| answers(&a)) {
        println!("using Redis at {configured}");
        configured
    } else {
        let port = free_port()?;
        let mut command = Command::new("redis-server");
        command.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let server = Proc::start("redis-server", command, Output::StderrOnly).map_err(|_| {
            anyhow::anyhow!(
                "no Redis answers at {configured} and redis-server is not installed: install it \
                 (apt-get install redis-server) or set REDIS_URL to a running Redis 7"
            )
        })?;
        procs.children.push(server);
        let addr = format!("127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answers(&addr) {
            if Instant::now() > deadline {
                bail!("the private redis-server did not start on {addr}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("started a private redis-server on {addr}");
        format!("redis://{addr}")
    };

    // The stand-in provider and webhook receiver.
    let fake = FakeProvider::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let fake_addr = listener.local_addr()?;
    let router = axum::Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/webhook", post(webhook))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });

    let database_url = format!("sqlite://{}", dir.join("longhaul.db").display());
    let api_port = free_port()?;
    let mut env: BTreeMap<&str, String> = BTreeMap::new();
    env.insert("DATABASE_URL", database_url);
    env.insert("REDIS_URL", redis_url);
    env.insert("LONGHAUL_QUEUE_PREFIX", format!("demo-{}", random_suffix()));
    env.insert("LONGHAUL_PROVIDER", "openai".into());
    env.insert("LONGHAUL_PROVIDER_BASE_URL", format!("http://{fake_addr}/v1"));
    env.insert("LONGHAUL_PROVIDER_TIMEOUT", "5s".into());
    env.insert("LONGHAUL_BACKOFF_BASE", "700ms".into());
    env.insert("LONGHAUL_BACKOFF_CAP", "2s".into());
    env.insert("LONGHAUL_PROGRESS_INTERVAL", "0s".into());
    env.insert("LONGHAUL_ADMIN_ADDR", "127.0.0.1:0".into());
    env.insert("LONGHAUL_LISTEN", format!("127.0.0.1:{api_port}"));
    env.insert("LONGHAUL_STATS_EVERY", "1s".into());
    env.insert("LONGHAUL_LOG_FORMAT", "json".into());
    let launcher = Launcher::new(bins, env);

    // The tenant, with its webhook (where both kinds deliver their results); this also migrates
    // the database.
    let webhook_url = format!("http://{fake_addr}/webhook");
    let key = launcher
        .create_tenant(
            &["demo", "--name", "Demo Corp", "--webhook-url", &webhook_url],
            &[("LONGHAUL_LOG_FORMAT", "text"), ("RUST_LOG", "warn")],
        )
        .map_err(|e| anyhow::anyhow!("producer tenant create failed: {e}"))?;
    println!("created tenant demo (API key {}…)", &key[..key.len().min(10)]);
    let operator_key = launcher
        .producer_cli(
            &["operators", "create", "demo-operator"],
            &[("LONGHAUL_LOG_FORMAT", "text"), ("RUST_LOG", "warn")],
        )
        .map_err(|e| anyhow::anyhow!("producer operators create failed: {e}"))?;

    let spawn = |name: &str, bin: &str, args: &[&str], extra: &[(&str, &str)]| {
        launcher
            .spawn(name, bin, args, extra, Output::LogFile(dir.join(format!("{name}.log"))))
            .with_context(|| format!("cannot start {}", launcher.binaries().path(bin).display()))
    };
    procs.children.push(spawn("producer", "producer", &["serve"], &[])?);
    // worker-1 serves every queue of the built-in kinds (triage, summarize), 2 jobs of each at
    // once; worker-2 names its queues and a concurrency for each.
    let workers: [(&str, &[(&str, &str)]); 2] = [
        ("worker-1", &[("LONGHAUL_CONCURRENCY", "2")]),
        ("worker-2", &[("LONGHAUL_QUEUES", "triage=3,summarize=1")]),
    ];
    for (name, settings) in workers {
        let mut extra = vec![("LONGHAUL_CONSUMER_NAME", name)];
        extra.extend_from_slice(settings);
        procs.children.push(spawn(name, "worker", &[], &extra)?);
    }
    procs.children.push(spawn("queue-events", "queue-events", &[], &[])?);

    let api = format!("http://127.0.0.1:{api_port}");
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    if wait_ready(&api, Duration::from_secs(30)).await.is_err() {
        bail!("the producer did not become ready; see {}", dir.join("producer.log").display());
    }
    println!("producer, 2 workers and queue-events are up; API at {api}");
    println!("console: {api}/console — log in with operator key {operator_key}\n");

    let mut jobs = Vec::new();
    for (id, subject, body) in TICKETS {
        http.post(format!("{api}/v1/tickets"))
            .bearer_auth(&key)
            .json(&json!({"ticket_id": id, "subject": subject, "body": body}))
            .send()
            .await?
            .error_for_status()?;
        let r = http.post(format!("{api}/v1/tickets/{id}/triage")).bearer_auth(&key).send().await?;
        let status = r.status();
        let job: Value = r.json().await?;
        println!("POST /v1/tickets/{id}/triage → {status} job {}", job["job_id"].as_str().unwrap_or("?"));
        jobs.push((id.to_string(), job["job_id"].as_str().unwrap_or_default().to_owned()));
    }
    let again = http.post(format!("{api}/v1/tickets/SUP-1001/triage")).bearer_auth(&key).send().await?;
    println!("POST /v1/tickets/SUP-1001/triage again → {} (the same job: ids are stable)", again.status());
    let mut documents = Vec::new();
    for (id, text) in DOCUMENTS {
        // No URL in the input: the summary goes to the tenant's webhook, set at `tenant create`.
        let input = json!({"document_id": id, "text": text, "chunk_chars": CHUNK_CHARS});
        let r = http
            .post(format!("{api}/v1/jobs"))
            .bearer_auth(&key)
            .json(&json!({"kind": "summarize", "input": input}))
            .send()
            .await?;
        let status = r.status();
        let job: Value = r.json().await?;
        if !status.is_success() {
            bail!("POST /v1/jobs (summarize {id}) → {status}: {job}");
        }
        println!("POST /v1/jobs summarize {id} → {status} job {}", job["job_id"].as_str().unwrap_or("?"));
        let job_id = job["job_id"].as_str().unwrap_or_default().to_owned();
        jobs.push((id.to_string(), job_id.clone()));
        documents.push(job_id);
    }
    println!();

    let finals = watch(&http, &api, &key, &jobs).await?;

    println!("\nFinal records (GET /v1/jobs/{{id}}):");
    for (ticket, record) in &finals {
        let outcome = match (record["status"].as_str(), record["kind"].as_str()) {
            (Some("completed"), Some("summarize")) => {
                format!("summarized in {} chunks", record["output"]["chunks"])
            }
            (Some("completed"), _) => format!(
                "{} / {}",
                record["output"]["classification"]["category"].as_str().unwrap_or("?"),
                record["output"]["classification"]["priority"].as_str().unwrap_or("?")
            ),
            _ => format!(
                "{}: {}",
                record["error_class"].as_str().unwrap_or("?"),
                record["error_message"].as_str().unwrap_or("")
            ),
        };
        println!(
            "  {ticket:<16} {:<9} {:<9} attempts {}  {outcome}",
            record["kind"].as_str().unwrap_or("?"),
            record["status"].as_str().unwrap_or("?"),
            record["attempts"]
        );
    }
    println!("\nSummaries:");
    for (document, record) in finals.iter().filter(|(_, r)| r["kind"] == "summarize") {
        println!("  {document}: {}", record["output"]["summary"].as_str().unwrap_or("(none)"));
    }
    let hooks = fake.webhooks.lock().unwrap_or_else(|e| e.into_inner()).len();
    println!(
        "\nwebhook deliveries received: {hooks} (one per completed job, each with its operation id as Idempotency-Key)"
    );

    // Give queue-events a moment to log the last events, then show some of its lines.
    let log = dir.join("queue-events.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline
        && !std::fs::read_to_string(&log).unwrap_or_default().contains("job failed")
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("\nqueue-events log lines (what operators tail):");
    for line in std::fs::read_to_string(&log).unwrap_or_default().lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let message = v["message"].as_str().unwrap_or("");
        if message.starts_with("job ") {
            println!(
                "  {:<5} {:<14} queue={:<9} job_id={} attempt={} {}",
                v["level"].as_str().unwrap_or(""),
                message,
                v["queue"].as_str().unwrap_or(""),
                v["job_id"].as_str().unwrap_or(""),
                v["attempt"],
                v["failed_reason"].as_str().map(|r| format!("reason={r:?}")).unwrap_or_default()
            );
        }
    }

    if stay {
        trickle(&http, &api, &key, &operator_key).await?;
    }
    println!("\nshutting down (SIGTERM):");
    procs.stop();
    let _ = std::fs::remove_dir_all(&dir);
    let failed = finals.iter().filter(|(_, r)| r["status"] == "failed").count();
    let completed = finals.iter().filter(|(_, r)| r["status"] == "completed").count();
    let expected = TICKETS.len() - 1 + DOCUMENTS.len();
    if completed != expected || failed != 1 {
        bail!("expected {expected} completed and 1 failed job, got {completed} and {failed}");
    }
    let summarized = finals
        .iter()
        .filter(|(_, r)| documents.iter().any(|d| r["job_id"] == d.as_str()))
        .filter(|(_, r)| {
            r["status"] == "completed" && r["output"]["summary"].as_str().is_some_and(|s| !s.is_empty())
        })
        .count();
    if summarized != DOCUMENTS.len() {
        bail!("expected {} summaries, got {summarized}", DOCUMENTS.len());
    }
    if hooks != completed {
        bail!("expected one webhook delivery per completed job ({completed}), got {hooks}");
    }
    println!(
        "done: {completed} completed ({} triaged, {summarized} summarized; two after retries), {failed} failed as invalid.",
        completed - summarized
    );
    Ok(())
}

/// Keeps the system busy until ctrl-c: a new ticket triaged or a document summarized every few
/// seconds, so the console has something live to show.
async fn trickle(http: &reqwest::Client, api: &str, key: &str, operator_key: &str) -> anyhow::Result<()> {
    println!(
        "\nthe system stays up: console at {api}/console (operator key {operator_key}); a new job \
         every 3 s; ctrl-c to stop"
    );
    let mut every = tokio::time::interval(Duration::from_secs(3));
    let mut n = 0usize;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = every.tick() => {}
        }
        n += 1;
        let sent = if n.is_multiple_of(3) {
            let (id, text) = DOCUMENTS[n / 3 % DOCUMENTS.len()];
            let input = json!({"document_id": format!("{id}-{n}"), "text": text, "chunk_chars": CHUNK_CHARS});
            http.post(format!("{api}/v1/jobs"))
                .bearer_auth(key)
                .json(&json!({"kind": "summarize", "input": input}))
                .send()
                .await
        } else {
            let (_, subject, body) = TICKETS[n % TICKETS.len()];
            let id = format!("SUP-{}", 2000 + n);
            let ticket = json!({"ticket_id": id, "subject": subject, "body": body});
            match http.post(format!("{api}/v1/tickets")).bearer_auth(key).json(&ticket).send().await {
                Ok(_) => http.post(format!("{api}/v1/tickets/{id}/triage")).bearer_auth(key).send().await,
                Err(e) => Err(e),
            }
        };
        if let Err(e) = sent.and_then(reqwest::Response::error_for_status) {
            println!("  a new job was not accepted: {e}");
        }
    }
}

/// Polls every job until all are terminal, showing progress. Returns the final records.
async fn watch(
    http: &reqwest::Client,
    api: &str,
    key: &str,
    jobs: &[(String, String)],
) -> anyhow::Result<Vec<(String, Value)>> {
    let terminal = std::io::stdout().is_terminal();
    let multi = indicatif::MultiProgress::new();
    let style = indicatif::ProgressStyle::with_template("{prefix:<16} [{bar:30}] {pos:>3}% {msg}")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bars: Vec<_> = jobs
        .iter()
        .map(|(ticket, _)| {
            let bar = if terminal {
                multi.add(indicatif::ProgressBar::new(100))
            } else {
                indicatif::ProgressBar::hidden()
            };
            bar.set_style(style.clone());
            bar.set_prefix(ticket.clone());
            bar
        })
        .collect();
    let mut last_seen: Vec<String> = vec![String::new(); jobs.len()];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let mut finals = Vec::new();
        for (i, (ticket, job)) in jobs.iter().enumerate() {
            let record: Value =
                http.get(format!("{api}/v1/jobs/{job}")).bearer_auth(key).send().await?.json().await?;
            let status = record["status"].as_str().unwrap_or("?").to_owned();
            let progress = record["progress"].as_u64().unwrap_or(0);
            let stage = record["stage"].as_str().unwrap_or("").to_owned();
            let line = format!("{status} {stage} {progress}% attempt {}", record["attempts"]);
            if terminal {
                bars[i].set_position(progress);
                bars[i].set_message(format!("{status} {stage} (attempt {})", record["attempts"]));
            } else if last_seen[i] != line {
                println!("  {ticket:<16} {line}");
            }
            last_seen[i] = line;
            if status == "completed" || status == "failed" {
                finals.push((ticket.clone(), record));
            }
        }
        if finals.len() == jobs.len() {
            for bar in &bars {
                bar.finish();
            }
            return Ok(finals);
        }
        if Instant::now() > deadline {
            bail!("not every job finished within 90 s");
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}
