//! A worker binary from flags to a running service, in two steps (as zero2prod's `startup.rs`):
//! [`Application::build`] checks the settings, connects to storage (and migrates), builds the
//! [`Registry`] of kinds with the caller's `register` function, opens the queues and binds the
//! admin server; [`Application::run_until_stopped`] serves `/healthz` and `/readyz` and runs the
//! [`Worker`] until the shutdown token. [`main`] goes through both: the shipped `worker` binary
//! calls it with [`builtin`], a user's worker binary with its own kinds. Tests can too: parse a
//! [`Config`] from flags, build, run.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::future::Future;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use longhaul_core::{JobError, Registry, TenantId};
use longhaul_service::args::{
    ConsumerArgs, DatabaseArgs, QueueArgs, QueueChoice, RetiredArgs, Secret, TelemetryArgs, parse_duration,
    parse_positive_duration, parse_queue_choice, secret_setting,
};
use longhaul_service::health::{self, AdminServer};
use longhaul_store::Store;
use longhaul_summarize::{SummarizePipeline, TenantWebhooks};
use longhaul_triage::{
    HttpClassifier, HttpClassifierConfig, HttpWebhook, Provider, RuleClassifier, TriagePipeline,
};
use tokio_util::sync::CancellationToken;

use crate::{Lane, Worker, WorkerSettings};

/// Which classifier the pipeline uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProviderKind {
    /// The built-in keyword rules: deterministic, offline.
    Rules,
    /// An OpenAI-compatible chat-completions endpoint.
    Openai,
}

/// longhaul worker: runs jobs from Redis Streams queues — each by the pipeline of its kind — and
/// records their status, progress and output in application storage.
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
    /// Jobs run at once, per queue (unless --queues says otherwise for a queue). The jobs in flight
    /// are also the recorder's batch: wider workers cost the database less per job (README,
    /// "Sizing workers"); lower it for CPU-bound kinds.
    #[arg(long, env = "LONGHAUL_CONCURRENCY", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// The queues (or partitions, QUEUE-K) to serve, each optionally with its own concurrency:
    /// `triage=16,summarize=4`. Default: every queue of the kinds this worker runs.
    #[arg(long, env = "LONGHAUL_QUEUES", value_delimiter = ',', value_parser = parse_queue_choice)]
    pub queues: Vec<QueueChoice>,
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

    /// The built-in kinds' provider: rules (triage's keyword classifier and summarize's
    /// extractive summariser, offline) or openai (an OpenAI-compatible endpoint).
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
    /// Entries admitted into a queue's stream ahead of the workers; beyond them new jobs wait in
    /// their tenant's flow, so a burst of one tenant cannot starve the others, and priorities,
    /// caps and rate limits apply. 0 turns admission off (first in, first out).
    #[arg(long, env = "LONGHAUL_ADMIT_AHEAD", default_value_t = 256, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub admit_ahead: u32,
    /// Default cap on a tenant's jobs admitted and unfinished at once, across all workers (an
    /// operator's per-tenant limit overrides it). Unset: no cap.
    #[arg(long, env = "LONGHAUL_TENANT_MAX_RUNNING", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub tenant_max_running: Option<u32>,
    /// Default limit on a tenant's starts per second (an operator's per-tenant limit overrides
    /// it). Unset: no limit.
    #[arg(long, env = "LONGHAUL_TENANT_STARTS_PER_SECOND", value_parser = parse_rate)]
    pub tenant_starts_per_second: Option<f64>,
    /// How often pauses and limits are read from storage.
    #[arg(long, env = "LONGHAUL_CONTROL_POLL", default_value = "1s", value_parser = parse_positive_duration)]
    pub control_poll: Duration,
    /// Retention: how long finished jobs and the operation log are kept.
    #[command(flatten)]
    pub retention: crate::RetentionArgs,
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
            control: crate::ControlSettings {
                admit_ahead: self.admit_ahead,
                tenant_max_running: self.tenant_max_running,
                tenant_starts_per_second: self.tenant_starts_per_second,
                poll: self.control_poll,
            },
        }
    }

    /// The provider API key, if one is configured.
    ///
    /// # Errors
    /// As [`secret_setting`].
    pub fn provider_api_key(&self) -> anyhow::Result<Option<String>> {
        Ok(secret_setting(
            self.provider_api_key.as_ref(),
            self.provider_api_key_file.as_deref(),
            "LONGHAUL_PROVIDER_API_KEY",
        )?
        .map(|k| k.expose().to_owned()))
    }

    /// The triage classifier these flags choose.
    ///
    /// # Errors
    /// As [`secret_setting`] for the API key; when the HTTP client cannot be built.
    pub fn classifier(&self) -> anyhow::Result<Provider> {
        Ok(match self.provider {
            ProviderKind::Rules => Provider::Rules(RuleClassifier),
            ProviderKind::Openai => Provider::Http(
                HttpClassifier::new(HttpClassifierConfig {
                    base_url: self.provider_base_url.clone(),
                    model: self.provider_model.clone(),
                    api_key: self.provider_api_key()?,
                    timeout: self.provider_timeout,
                })
                .map_err(anyhow::Error::msg)?,
            ),
        })
    }

    /// The summarize kind's summariser these flags choose.
    ///
    /// # Errors
    /// As [`Config::classifier`].
    pub fn summarizer(&self) -> anyhow::Result<longhaul_summarize::Provider> {
        Ok(match self.provider {
            ProviderKind::Rules => longhaul_summarize::Provider::default(),
            ProviderKind::Openai => longhaul_summarize::Provider::Http(
                longhaul_summarize::HttpSummarizer::new(longhaul_providers::ChatConfig {
                    base_url: self.provider_base_url.clone(),
                    model: self.provider_model.clone(),
                    api_key: self.provider_api_key()?,
                    timeout: self.provider_timeout,
                })
                .map_err(anyhow::Error::msg)?,
            ),
        })
    }

    /// The webhook client these flags configure.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn webhook(&self) -> anyhow::Result<HttpWebhook> {
        HttpWebhook::new(self.webhook_timeout).map_err(anyhow::Error::msg)
    }
}

/// A rate in starts per second: a finite number above zero.
fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        Ok(_) => Err(format!("{s:?} is not a rate: give a number of starts per second above 0")),
        Err(_) => Err(format!("{s:?} is not a number of starts per second")),
    }
}

/// What a `register` function builds its pipelines from: the parsed flags (provider settings)
/// and the store (already migrated). Owned, so that a `register` function may be an `async fn`
/// as well as a closure returning a future.
#[derive(Debug, Clone)]
pub struct Resources {
    /// The worker's flags.
    pub config: Config,
    /// Application storage.
    pub store: Store,
}

/// The tenants' webhook URLs as stored in the `tenants` table (`producer tenant create
/// --webhook-url`): where the summarize kind delivers its results. A tenant without one, or no
/// longer stored, gets no delivery. The read waits through a storage outage (as the triage kind's
/// ticket reads do, [`longhaul_store::outage::hold`]) instead of spending the attempt; any other
/// storage failure becomes a [`JobError`] as every store error does.
#[derive(Debug, Clone)]
pub struct StoredTenantWebhooks(pub Store);

impl TenantWebhooks for StoredTenantWebhooks {
    async fn webhook_url(&self, tenant: &TenantId) -> Result<Option<String>, JobError> {
        let read =
            longhaul_store::outage::hold(&self.0, "tenant webhook read", std::future::pending(), || {
                self.0.get_tenant(tenant)
            });
        let tenant =
            read.await.unwrap_or(Err(longhaul_store::StoreError::Stopped("tenant webhook reader")))?;
        Ok(tenant.and_then(|t| t.webhook_url))
    }
}

/// The built-in kinds — `triage` and `summarize` — with the providers `resources.config` chooses.
/// Triage's tickets live in its own tables, migrated here unless `--skip-migrations`; summarize
/// delivers to each tenant's stored webhook URL ([`StoredTenantWebhooks`]).
///
/// # Errors
/// A provider that cannot be built; a failed migration of triage's tables.
pub async fn builtin(resources: Resources) -> anyhow::Result<Registry> {
    let config = &resources.config;
    if !config.skip_migrations {
        longhaul_triage::storage::migrate(&resources.store)
            .await
            .context("cannot migrate triage's tables")?;
    }
    let tickets = longhaul_triage::storage::BatchedTickets::spawn(&resources.store);
    let triage = TriagePipeline::new(tickets, config.classifier()?, config.webhook()?);
    let summarize = SummarizePipeline::new(
        config.summarizer()?,
        config.webhook()?,
        StoredTenantWebhooks(resources.store.clone()),
    );
    Ok(Registry::new().pipeline(triage)?.pipeline(summarize)?)
}

/// Runs a worker binary with the kinds `register` adds, exactly as the shipped `worker` runs:
/// flags and environment, telemetry, storage and migrations, health, `SIGTERM` with a grace
/// period, one error line and exit code 1 on failure (2 on a bad flag).
///
/// ```no_run
/// # async fn my_kinds(r: longhaul_worker::startup::Resources) -> anyhow::Result<longhaul_core::Registry> {
/// #     Ok(longhaul_core::Registry::new())
/// # }
/// #[tokio::main]
/// async fn main() -> std::process::ExitCode {
///     longhaul_worker::startup::main(my_kinds).await
/// }
/// ```
pub async fn main<R, Fut>(register: R) -> ExitCode
where
    R: FnOnce(Resources) -> Fut,
    Fut: Future<Output = anyhow::Result<Registry>>,
{
    longhaul_service::startup::run(
        |config: &Config| config.telemetry.options(),
        async |config: Config, _| {
            Application::build(config, register)
                .await?
                .run_until_stopped(longhaul_service::shutdown::on_signal())
                .await
        },
    )
    .await
}

/// The worker, built and bound, not yet running jobs.
#[derive(Debug)]
pub struct Application {
    store: Store,
    lanes: Vec<Lane>,
    registry: Registry,
    settings: WorkerSettings,
    retention: Option<crate::Retention>,
    admin: AdminServer,
}

impl Application {
    /// Checks the settings, connects to storage (and migrates, unless `--skip-migrations`),
    /// builds the registry with `register`, opens the queues it serves, and binds the admin
    /// server.
    ///
    /// # Errors
    /// Invalid settings, storage that does not answer, a failed migration, a kind or queue that
    /// cannot be registered or served, an address in use.
    pub async fn build<R, Fut>(config: Config, register: R) -> anyhow::Result<Self>
    where
        R: FnOnce(Resources) -> Fut,
        Fut: Future<Output = anyhow::Result<Registry>>,
    {
        if config.heartbeat * 3 > config.lease {
            bail!(
                "--heartbeat ({:?}) must be at most a third of --lease ({:?})",
                config.heartbeat,
                config.lease
            );
        }
        let retention = config.retention.retention()?;
        // Two lanes of one queue would share this consumer's name, so each would take the other's
        // entries for its own (its first read returns them) and run them a second time.
        let mut listed = std::collections::BTreeSet::new();
        if let Some(twice) = config.queues.iter().find(|c| !listed.insert(c.name.as_str())) {
            bail!("--queues names queue {:?} twice; list each queue once", twice.name);
        }
        // Read whatever the provider and the kinds, before connecting: a bad secret setting (a
        // missing or empty key file) stops the worker at start-up, naming it.
        config.provider_api_key()?;
        let store = config.database.connect_and_migrate(config.skip_migrations).await?;
        let registry = register(Resources { config: config.clone(), store: store.clone() }).await?;
        let choices = if config.queues.is_empty() {
            registry
                .queues()
                .into_iter()
                .map(|name| QueueChoice { name: name.to_owned(), concurrency: None })
                .collect()
        } else {
            config.queues.clone()
        };
        // A lane of a queue none of this worker's kinds use would fail every job it takes.
        let kinds_queues = registry.queues();
        let served = |name: &str| {
            kinds_queues.contains(name)
                || name.rsplit_once('-').is_some_and(|(queue, k)| {
                    kinds_queues.contains(queue) && !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit())
                })
        };
        if let Some(foreign) = choices.iter().find(|c| !served(&c.name)) {
            bail!(
                "--queues names queue {:?}, which none of this worker's kinds use (their queues: {}; or a partition QUEUE-K of one)",
                foreign.name,
                kinds_queues.iter().copied().collect::<Vec<_>>().join(", ")
            );
        }
        let Some(first) = choices.first() else {
            bail!("this worker runs no job kind: register at least one")
        };
        let base = config.queue.queue(&first.name, |c| {
            c.lease = config.lease;
            c.max_deliveries = config.max_deliveries;
        })?;
        let mut lanes = Vec::with_capacity(choices.len());
        for choice in &choices {
            let queue = base.sibling(&choice.name).with_context(|| format!("queue {:?}", choice.name))?;
            let concurrency = choice.concurrency.unwrap_or(config.concurrency) as usize;
            lanes.push(Lane { queue, concurrency });
        }
        let queues: Vec<_> = lanes.iter().map(|l| l.queue.clone()).collect();
        let admin =
            AdminServer::bind(config.admin_addr, health::router(health::dependencies(Some(&store), &queues)))
                .await?;
        Ok(Self { store, lanes, registry, settings: config.settings(), retention, admin })
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
        tracing::info!(admin = %self.admin.local_addr()?, kinds = ?self.registry.names().collect::<Vec<_>>(), "admin server listening");
        let admin = self.admin.spawn(shutdown.clone());
        let worked = Worker::with_lanes(self.store.clone(), self.lanes, self.registry, self.settings)
            .with_retention(self.retention)
            .run(shutdown.clone())
            .await;
        shutdown.cancel();
        let _ = admin.await;
        self.store.close().await;
        worked
    }
}
