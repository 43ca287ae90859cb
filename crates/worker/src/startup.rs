//! The `worker` binary from flags to a running service, in two steps (as zero2prod's
//! `startup.rs`): [`Application::build`] checks the settings, builds the classifier and webhook
//! client, opens the queue, connects to storage (and migrates) and binds the admin server;
//! [`Application::run_until_stopped`] serves `/healthz` and `/readyz` and runs the [`Worker`] with
//! the production pipeline (batched ticket store) until the shutdown token. `main` goes through
//! both; tests can too: parse a [`Config`] from flags, build, run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Parser, ValueEnum};
use longhaul_queue::Queue;
use longhaul_service::args::{
    ConsumerArgs, DatabaseArgs, QueueArgs, RetiredArgs, Secret, TelemetryArgs, parse_duration,
    parse_positive_duration, secret_setting,
};
use longhaul_service::health::{self, AdminServer};
use longhaul_store::Store;
use longhaul_triage::{
    HttpClassifier, HttpClassifierConfig, HttpWebhook, Provider, RuleClassifier, TriagePipeline,
};
use tokio_util::sync::CancellationToken;

use crate::tickets::BatchedTickets;
use crate::{Worker, WorkerSettings};

/// Which classifier the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The built-in keyword rules: deterministic, offline.
    Rules,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
}

/// longhaul worker: runs ticket-triage jobs from the Redis Streams queue and records their status,
/// progress and output in application storage.
#[derive(Debug, Clone, Parser)]
#[command(name = "worker", version)]
pub struct Config {
    /// Redis and the queue.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Application storage.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Logs, traces and metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,

    /// The name in the consumer group.
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Jobs run at once.
    #[arg(long, env = "LONGHAUL_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// An entry not heart-beaten for this long is considered abandoned and reclaimed by another worker.
    #[arg(long, env = "LONGHAUL_LEASE", default_value = "30s", value_parser = parse_positive_duration)]
    pub lease: Duration,
    /// How often in-flight entries are heart-beaten; must be below a third of --lease.
    #[arg(long, env = "LONGHAUL_HEARTBEAT", default_value = "10s", value_parser = parse_positive_duration)]
    pub heartbeat: Duration,
    /// Deliveries after which an entry that never finishes is failed as stalled.
    #[arg(long, env = "LONGHAUL_MAX_DELIVERIES", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_deliveries: u64,
    /// Cap on attempts per job; each record carries its own limit (set by the producer's
    /// --default-max-attempts), and the smaller one applies.
    #[arg(long, env = "LONGHAUL_MAX_ATTEMPTS_CAP", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts_cap: u32,
    /// Backoff base: the ceiling of the first retry's delay (exponential, full jitter).
    #[arg(long, env = "LONGHAUL_BACKOFF_BASE", default_value = "1s", value_parser = parse_positive_duration)]
    pub backoff_base: Duration,
    /// Backoff cap: the largest delay between two attempts.
    #[arg(long, env = "LONGHAUL_BACKOFF_CAP", default_value = "5m", value_parser = parse_positive_duration)]
    pub backoff_cap: Duration,
    /// On SIGTERM, how long in-flight jobs may run on before they are left for another worker.
    /// Keep it below the pod's terminationGracePeriodSeconds.
    #[arg(long, env = "LONGHAUL_SHUTDOWN_GRACE", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Least time between two progress writes of one job within a stage.
    #[arg(long, env = "LONGHAUL_PROGRESS_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub progress_interval: Duration,
    /// Address of the admin server (/healthz, /readyz).
    #[arg(long, env = "LONGHAUL_ADMIN_ADDR", default_value = "0.0.0.0:9091")]
    pub admin_addr: SocketAddr,
    /// Do not apply database migrations at start-up (run `producer migrate` instead).
    #[arg(long, env = "LONGHAUL_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,

    /// Classifier: rules (built in, offline) or openai (an OpenAI-compatible endpoint).
    #[arg(long, env = "LONGHAUL_PROVIDER", value_enum, default_value_t = ProviderKind::Rules)]
    pub provider: ProviderKind,
    /// Base URL of the OpenAI-compatible API (`/chat/completions` is appended).
    #[arg(long, env = "LONGHAUL_PROVIDER_BASE_URL", default_value = "https://api.openai.com/v1")]
    pub provider_base_url: String,
    /// Model name for the openai provider.
    #[arg(long, env = "LONGHAUL_PROVIDER_MODEL", default_value = "gpt-4o-mini")]
    pub provider_model: String,
    /// API key for the openai provider.
    #[arg(long, env = "LONGHAUL_PROVIDER_API_KEY", hide_env_values = true)]
    pub provider_api_key: Option<Secret>,
    /// File holding the provider API key (e.g. a mounted Kubernetes secret); instead of
    /// --provider-api-key.
    #[arg(long, env = "LONGHAUL_PROVIDER_API_KEY_FILE")]
    pub provider_api_key_file: Option<PathBuf>,
    /// Limit on each provider request.
    #[arg(long, env = "LONGHAUL_PROVIDER_TIMEOUT", default_value = "20s", value_parser = parse_positive_duration)]
    pub provider_timeout: Duration,
    /// Limit on each webhook delivery.
    #[arg(long, env = "LONGHAUL_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub webhook_timeout: Duration,
    /// Settings no longer read (hidden; set, they stop the binary).
    #[command(flatten)]
    pub retired: RetiredArgs,
}

impl Config {
    /// The worker's behaviour these flags set.
    pub fn settings(&self) -> WorkerSettings {
        WorkerSettings {
            consumer: self.consumer.name("worker"),
            concurrency: self.concurrency as usize,
            heartbeat: self.heartbeat,
            reclaim_every: (self.lease / 2).max(Duration::from_millis(100)),
            block: Duration::from_secs(2),
            max_attempts: self.max_attempts_cap,
            backoff_base: self.backoff_base,
            backoff_cap: self.backoff_cap.max(self.backoff_base),
            shutdown_grace: self.shutdown_grace,
            progress_interval: self.progress_interval,
        }
    }

    /// The classifier these flags choose.
    ///
    /// # Errors
    /// As [`secret_setting`] for the API key; when the HTTP client cannot be built.
    fn provider(&self) -> anyhow::Result<Provider> {
        let api_key = secret_setting(
            self.provider_api_key.as_ref(),
            self.provider_api_key_file.as_deref(),
            "LONGHAUL_PROVIDER_API_KEY",
        )?;
        Ok(match self.provider {
            ProviderKind::Rules => Provider::Rules(RuleClassifier),
            ProviderKind::Openai => Provider::Http(
                HttpClassifier::new(HttpClassifierConfig {
                    base_url: self.provider_base_url.clone(),
                    model: self.provider_model.clone(),
                    api_key: api_key.as_ref().map(|k| k.expose().to_owned()),
                    timeout: self.provider_timeout,
                })
                .map_err(anyhow::Error::msg)?,
            ),
        })
    }
}

/// The worker, built and bound, not yet running jobs.
#[derive(Debug)]
pub struct Application {
    store: Store,
    queue: Queue,
    provider: Provider,
    webhook: HttpWebhook,
    settings: WorkerSettings,
    admin: AdminServer,
}

impl Application {
    /// Checks the settings, builds the classifier and the webhook client, opens the queue,
    /// connects to storage (and migrates, unless `--skip-migrations`), and binds the admin server.
    ///
    /// # Errors
    /// Invalid settings, storage that does not answer, a failed migration, an address in use.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        if config.heartbeat * 3 > config.lease {
            bail!(
                "--heartbeat ({:?}) must be at most a third of --lease ({:?})",
                config.heartbeat,
                config.lease
            );
        }
        let provider = config.provider()?;
        let webhook = HttpWebhook::new(config.webhook_timeout).map_err(anyhow::Error::msg)?;
        let queue = config.queue.queue(|c| {
            c.lease = config.lease;
            c.max_deliveries = config.max_deliveries;
        })?;
        let store = config.database.connect_and_migrate(config.skip_migrations).await?;
        let admin =
            AdminServer::bind(config.admin_addr, health::router(health::dependencies(Some(&store), &queue)))
                .await?;
        Ok(Self { store, queue, provider, webhook, settings: config.settings(), admin })
    }

    /// The admin server's address (`--admin-addr` with port 0 picks one).
    ///
    /// # Errors
    /// When the socket cannot tell (it can once bound).
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The store the worker records in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves the admin routes and runs jobs until `shutdown` (then the grace period of
    /// [`Worker::run`]); closes the store.
    ///
    /// # Errors
    /// As [`Worker::run`].
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(admin = %self.admin.local_addr()?, "admin server listening");
        let admin = self.admin.spawn(shutdown.clone());
        let tickets = BatchedTickets::spawn(&self.store);
        let pipeline = TriagePipeline::new(tickets, self.store.clone(), self.provider, self.webhook);
        let worked =
            Worker::new(self.store.clone(), self.queue, pipeline, self.settings).run(shutdown.clone()).await;
        shutdown.cancel();
        let _ = admin.await;
        self.store.close().await;
        worked
    }
}
