//! The `worker` binary: flags and wiring. The work itself is in the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use longhaul_service::args::{
    DatabaseArgs, QueueArgs, Secret, TelemetryArgs, error_line, parse_cli, parse_positive_duration,
    secret_setting,
};
use longhaul_service::telemetry::Telemetry;
use longhaul_service::{health, shutdown};
use longhaul_store::{Store, StoreOptions};
use longhaul_triage::{
    HttpClassifier, HttpClassifierConfig, HttpWebhook, Provider, RuleClassifier, TriagePipeline,
};
use longhaul_worker::{Worker, WorkerSettings};

/// Which classifier the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ProviderKind {
    /// The built-in keyword rules: deterministic, offline.
    Rules,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
}

/// longhaul worker: runs ticket-triage jobs from the Redis Streams queue and records their status,
/// progress and output in application storage.
#[derive(Debug, Parser)]
#[command(name = "worker", version)]
struct Cli {
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,

    /// Name in the consumer group; keep it stable across restarts of one pod so a restarted worker
    /// takes back its own pending entries. Default: $HOSTNAME-PID (the process id).
    #[arg(long, env = "LONGHAUL_CONSUMER_NAME")]
    consumer_name: Option<String>,
    #[arg(long, env = "HOSTNAME", hide = true)]
    hostname: Option<String>,
    /// Jobs run at once.
    #[arg(long, env = "LONGHAUL_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    concurrency: u32,
    /// An entry not heart-beaten for this long is considered abandoned and reclaimed by another worker.
    #[arg(long, env = "LONGHAUL_LEASE", default_value = "30s", value_parser = parse_positive_duration)]
    lease: Duration,
    /// How often in-flight entries are heart-beaten; must be below a third of --lease.
    #[arg(long, env = "LONGHAUL_HEARTBEAT", default_value = "10s", value_parser = parse_positive_duration)]
    heartbeat: Duration,
    /// Deliveries after which an entry that never finishes is failed as stalled.
    #[arg(long, env = "LONGHAUL_MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    max_deliveries: u64,
    /// Cap on attempts per job; each record carries its own limit (set by the producer), and the
    /// smaller one applies.
    #[arg(long, env = "LONGHAUL_MAX_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Backoff base: the ceiling of the first retry's delay (exponential, full jitter).
    #[arg(long, env = "LONGHAUL_BACKOFF_BASE", default_value = "1s", value_parser = parse_positive_duration)]
    backoff_base: Duration,
    /// Backoff cap: the largest delay between two attempts.
    #[arg(long, env = "LONGHAUL_BACKOFF_CAP", default_value = "5m", value_parser = parse_positive_duration)]
    backoff_cap: Duration,
    /// On SIGTERM, how long in-flight jobs may run on before they are left for another worker.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "LONGHAUL_SHUTDOWN_GRACE", default_value = "25s", value_parser = longhaul_service::args::parse_duration)]
    shutdown_grace: Duration,
    /// Least time between two progress writes of one job within a stage.
    #[arg(long, env = "LONGHAUL_PROGRESS_INTERVAL", default_value = "250ms", value_parser = longhaul_service::args::parse_duration)]
    progress_interval: Duration,
    /// Address of the admin server (/healthz, /readyz).
    #[arg(long, env = "LONGHAUL_ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    admin_addr: SocketAddr,
    /// Do not apply database migrations at start-up (run `producer migrate` instead).
    #[arg(long, env = "LONGHAUL_SKIP_MIGRATIONS")]
    skip_migrations: bool,

    /// Classifier: rules (built in, offline) or openai (an OpenAI-compatible endpoint).
    #[arg(long, env = "LONGHAUL_PROVIDER", value_enum, default_value_t = ProviderKind::Rules)]
    provider: ProviderKind,
    /// Base URL of the OpenAI-compatible API (`/chat/completions` is appended).
    #[arg(long, env = "LONGHAUL_PROVIDER_BASE_URL", default_value = "https://api.openai.com/v1")]
    provider_base_url: String,
    /// Model name for the openai provider.
    #[arg(long, env = "LONGHAUL_PROVIDER_MODEL", default_value = "gpt-4o-mini")]
    provider_model: String,
    /// API key for the openai provider.
    #[arg(long, env = "LONGHAUL_PROVIDER_API_KEY", hide_env_values = true)]
    provider_api_key: Option<Secret>,
    /// File holding the provider API key (e.g. a mounted Kubernetes secret); instead of
    /// --provider-api-key.
    #[arg(long, env = "LONGHAUL_PROVIDER_API_KEY_FILE")]
    provider_api_key_file: Option<PathBuf>,
    /// Limit on each provider request.
    #[arg(long, env = "LONGHAUL_PROVIDER_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    provider_timeout: Duration,
    /// Limit on each webhook delivery.
    #[arg(long, env = "LONGHAUL_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    webhook_timeout: Duration,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Cli = parse_cli();
    let _telemetry = match Telemetry::init(
        "worker",
        cli.telemetry.log_format,
        cli.telemetry.otlp_endpoint.as_deref(),
        false,
        false,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("worker: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let line = error_line(&e);
            tracing::error!(error = %line, "worker failed");
            eprintln!("worker: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.heartbeat * 3 > cli.lease {
        bail!("--heartbeat ({:?}) must be at most a third of --lease ({:?})", cli.heartbeat, cli.lease);
    }
    let api_key = secret_setting(
        cli.provider_api_key.as_ref(),
        cli.provider_api_key_file.as_deref(),
        "LONGHAUL_PROVIDER_API_KEY",
    )?;
    let provider = match cli.provider {
        ProviderKind::Rules => Provider::Rules(RuleClassifier),
        ProviderKind::Openai => Provider::Http(
            HttpClassifier::new(HttpClassifierConfig {
                base_url: cli.provider_base_url.clone(),
                model: cli.provider_model.clone(),
                api_key: api_key.as_ref().map(|k| k.expose().to_owned()),
                timeout: cli.provider_timeout,
            })
            .map_err(anyhow::Error::msg)?,
        ),
    };
    let webhook = HttpWebhook::new(cli.webhook_timeout).map_err(anyhow::Error::msg)?;
    let queue = cli.queue.queue(|c| {
        c.lease = cli.lease;
        c.max_deliveries = cli.max_deliveries;
    })?;
    let options =
        StoreOptions { max_connections: cli.database.db_pool, acquire_timeout: cli.database.db_timeout };
    let url = cli.database.url()?;
    let store = Store::connect(url.as_ref().map(Secret::expose), &options)
        .await
        .context("failed to connect to application storage (DATABASE_URL)")?;
    if !cli.skip_migrations {
        store.migrate().await.context("failed to apply migrations")?;
    }

    let shutdown = shutdown::on_signal();
    let ready: health::ReadyCheck = {
        let (store, queue) = (store.clone(), queue.clone());
        Arc::new(move || {
            let (store, queue) = (store.clone(), queue.clone());
            Box::pin(async move {
                store.ping().await.map_err(|e| format!("database: {e}"))?;
                queue.ping().await.map_err(|e| format!("redis: {e}"))
            })
        })
    };
    let (admin, admin_task) = health::serve(cli.admin_addr, ready, shutdown.clone()).await?;
    tracing::info!(%admin, "admin server listening");

    let consumer = cli
        .consumer_name
        .clone()
        .unwrap_or_else(|| format!("{}-{}", cli.hostname.as_deref().unwrap_or("worker"), std::process::id()));
    let settings = WorkerSettings {
        consumer,
        concurrency: cli.concurrency as usize,
        heartbeat: cli.heartbeat,
        reclaim_every: (cli.lease / 2).max(Duration::from_millis(100)),
        block: Duration::from_secs(2),
        max_attempts: cli.max_attempts,
        backoff_base: cli.backoff_base,
        backoff_cap: cli.backoff_cap.max(cli.backoff_base),
        shutdown_grace: cli.shutdown_grace,
        progress_interval: cli.progress_interval,
    };
    let tickets = longhaul_worker::tickets::BatchedTickets::spawn(&store);
    let pipeline = TriagePipeline::new(tickets, store.clone(), provider, webhook);
    Worker::new(store.clone(), queue, pipeline, settings).run(shutdown.clone()).await?;
    shutdown.cancel();
    let _ = admin_task.await;
    store.close().await;
    Ok(())
}
