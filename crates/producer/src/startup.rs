//! `producer serve` from flags to a running service, in two steps (as zero2prod's `startup.rs`):
//! [`Application::build`] connects to storage and Redis, migrates, opens the queues of the
//! registry's kinds, binds the listener and wires the router; [`Application::run_until_stopped`]
//! serves it and runs the reconciler until the shutdown token. `main` and the in-process tests
//! both go through `build`, so the tests run the production wiring. [`builtin`] is the shipped
//! binary's registry.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use clap::{Args, Parser};
use longhaul_core::{Registry, RegistryError};
use longhaul_queue::Queue;
use longhaul_service::args::{DatabaseArgs, QueueArgs, RetiredArgs, parse_positive_duration};
use longhaul_store::Store;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::console::ConsoleSettings;
use crate::events::EventStreams;
use crate::{ApiSettings, AppState, Queues, app, run_reconciler};

/// The kinds the shipped `producer` accepts: `triage` and `summarize`.
///
/// # Errors
/// Never in practice (the names are valid and distinct); a registration error otherwise.
pub fn builtin() -> Result<Registry, RegistryError> {
    Registry::new().kind::<longhaul_triage::Triage>()?.kind::<longhaul_summarize::Summarize>()
}

/// How the producer splits the queue.
#[derive(Debug, Clone, Args)]
pub struct PartitionArgs {
    /// Split every queue into this many partitions, QUEUE-0 … QUEUE-(N-1) (one Redis Cluster slot
    /// each); a job goes to the partition of its job id. Run workers and queue-events for the
    /// partitions (LONGHAUL_QUEUES=QUEUE-0,…). 1: not split.
    #[arg(long, env = "LONGHAUL_QUEUE_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub queue_partitions: u32,
}

impl PartitionArgs {
    /// Queue `name` on the Redis `queue` describes, split as these flags say.
    ///
    /// # Errors
    /// As [`QueueArgs::queue`].
    pub fn queue(&self, queue: &QueueArgs, name: &str) -> anyhow::Result<Queue> {
        queue.queue(name, |c| c.partitions = self.queue_partitions)
    }
}

/// The flags of `producer serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Redis and the queue.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// How the queue is split.
    #[command(flatten)]
    pub partitions: PartitionArgs,
    /// Address the API listens on.
    #[arg(long, env = "LONGHAUL_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Attempts each new job is allowed (the worker's --max-attempts-cap may lower it).
    #[arg(long, env = "LONGHAUL_DEFAULT_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub default_max_attempts: u32,
    /// Retry-After sent with a 503 answer, and with a 429 beyond a tenant's events streams (whole
    /// seconds, at least 1).
    #[arg(long, env = "LONGHAUL_RETRY_AFTER", default_value = "2s", value_parser = parse_positive_duration)]
    pub retry_after: Duration,
    /// Upper bound on every request.
    #[arg(long, env = "LONGHAUL_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    pub request_timeout: Duration,
    /// How often an events stream (GET /v1/jobs/{id}/events) reads its job's record for changes
    /// (at least 10ms; every open stream reads the database this often).
    #[arg(long, env = "LONGHAUL_EVENTS_POLL", default_value = "250ms", value_parser = parse_events_poll)]
    pub events_poll: Duration,
    /// Time between keep-alive comments on a quiet events stream.
    #[arg(long, env = "LONGHAUL_EVENTS_KEEP_ALIVE", default_value = "15s", value_parser = parse_positive_duration)]
    pub events_keep_alive: Duration,
    /// Longest life of one events stream: then it ends and the client reconnects with
    /// Last-Event-ID (an EventSource does so by itself) — which checks its key again and bounds
    /// the reads of a job that waits for long.
    #[arg(long, env = "LONGHAUL_EVENTS_MAX_LIFETIME", default_value = "10m", value_parser = parse_positive_duration)]
    pub events_max_lifetime: Duration,
    /// Events streams a tenant may have open at once; one more is answered 429.
    #[arg(long, env = "LONGHAUL_EVENTS_MAX_PER_TENANT", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub events_max_per_tenant: u32,
    /// How long an operator's login to the console (/console) lasts (at most 30 days).
    #[arg(long, env = "LONGHAUL_CONSOLE_SESSION_TTL", default_value = "12h", value_parser = parse_session_ttl)]
    pub console_session_ttl: Duration,
    /// Mark the console's session cookie Secure on every login (else only on a request that came
    /// over TLS, X-Forwarded-Proto: https). Set it when the console is served over HTTPS.
    #[arg(long, env = "LONGHAUL_CONSOLE_SECURE_COOKIE")]
    pub console_secure_cookie: bool,
    /// How often the reconciler looks for live jobs the queue has lost.
    #[arg(long, env = "LONGHAUL_RECONCILE_EVERY", default_value = "30s", value_parser = parse_positive_duration)]
    pub reconcile_every: Duration,
    /// Only records not updated for this long are reconciled (leave in-flight enqueues alone).
    #[arg(long, env = "LONGHAUL_RECONCILE_AFTER", default_value = "60s", value_parser = parse_positive_duration)]
    pub reconcile_after: Duration,
    /// Do not apply database migrations at start-up.
    #[arg(long, env = "LONGHAUL_SKIP_MIGRATIONS")]
    pub skip_migrations: bool,
    /// Settings no longer read (hidden; set, they stop the binary).
    #[command(flatten)]
    pub retired: RetiredArgs,
}

impl ServeArgs {
    /// The API behaviour these flags set.
    pub fn settings(&self) -> ApiSettings {
        ApiSettings {
            max_attempts: self.default_max_attempts,
            retry_after: self.retry_after,
            request_timeout: self.request_timeout,
            events_poll: self.events_poll,
            events_keep_alive: self.events_keep_alive,
            events_max_lifetime: self.events_max_lifetime,
            events_max_per_tenant: self.events_max_per_tenant,
            console: ConsoleSettings {
                session_ttl: self.console_session_ttl,
                secure_cookie: self.console_secure_cookie,
            },
        }
    }
}

/// Least `--events-poll`.
const MIN_EVENTS_POLL: Duration = Duration::from_millis(10);

/// `--events-poll`: a duration of at least [`MIN_EVENTS_POLL`].
fn parse_events_poll(s: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(s)?;
    if d < MIN_EVENTS_POLL {
        return Err(format!(
            "must be at least {}ms: every open events stream reads the database this often",
            MIN_EVENTS_POLL.as_millis()
        ));
    }
    Ok(d)
}

/// Longest `--console-session-ttl`.
const MAX_SESSION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// `--console-session-ttl`: a duration of at least a second and at most [`MAX_SESSION_TTL`].
fn parse_session_ttl(s: &str) -> Result<Duration, String> {
    let d = parse_positive_duration(s)?;
    if d < Duration::from_secs(1) || d > MAX_SESSION_TTL {
        return Err("must be from 1s to 30 days".to_owned());
    }
    Ok(d)
}

/// Everything [`Application::build`] needs: the storage flags (global in the `producer` CLI) and
/// the flags of `serve`. Tests parse it from flags as the binary does
/// (`Config::try_parse_from(["serve", "--listen", "127.0.0.1:0", …])`).
#[derive(Debug, Clone, Parser)]
#[command(name = "serve")]
pub struct Config {
    /// Application storage.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The flags of `serve`.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// The producer, built and bound, not yet serving.
#[derive(Debug)]
pub struct Application {
    store: Store,
    registry: Registry,
    queues: Queues,
    listener: TcpListener,
    router: Router,
    events: EventStreams,
    reconcile_every: Duration,
    reconcile_after: Duration,
}

impl Application {
    /// Connects to storage (and migrates, unless `--skip-migrations`, triage's tables too when
    /// `registry` has it), opens the queues of `registry`'s kinds and creates their consumer
    /// groups (Redis down: a warning, and requests answer 503 until it is back), binds the
    /// listener and wires the router.
    ///
    /// # Errors
    /// Invalid settings, no kind, storage that does not answer, a failed migration, an address in
    /// use.
    pub async fn build(config: Config, registry: Registry) -> anyhow::Result<Self> {
        let Config { database, serve } = config;
        let Some(first) = registry.queues().into_iter().next() else {
            bail!("this producer accepts no job kind: register at least one")
        };
        let store = database.connect_and_migrate(serve.skip_migrations).await?;
        if registry.options(longhaul_triage::KIND).is_some() && !serve.skip_migrations {
            longhaul_triage::storage::migrate(&store).await.context("cannot migrate triage's tables")?;
        }
        let base = serve.partitions.queue(&serve.queue, first)?;
        let queues = Queues::new(&base, &registry).context("a kind's queue name")?;
        'prepare: for queue in queues.all() {
            for partition in queue.partitions()? {
                if let Err(e) = partition.prepare(None).await {
                    tracing::warn!(error = %longhaul_core::Report(&e), queue = %partition.config().queue,
                        "Redis is not reachable at start-up; requests answer 503 until it is");
                    break 'prepare;
                }
            }
        }
        let listener = TcpListener::bind(serve.listen)
            .await
            .with_context(|| format!("cannot listen on {}", serve.listen))?;
        let state = AppState::new(store.clone(), registry.clone(), queues.clone(), serve.settings());
        let events = state.events.clone();
        let router = app(state);
        Ok(Self {
            store,
            registry,
            queues,
            listener,
            router,
            events,
            reconcile_every: serve.reconcile_every,
            reconcile_after: serve.reconcile_after,
        })
    }

    /// The address the API is bound to (`--listen` with port 0 picks one).
    ///
    /// # Errors
    /// When the socket cannot tell (it can once bound).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The API router, for driving requests without the listener (`oneshot`).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The store the application uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves the API and runs the reconciler until `shutdown`; then ends the events streams,
    /// drains in-flight requests, stops the reconciler and closes the store.
    ///
    /// # Errors
    /// When the HTTP server fails.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let reconciler = tokio::spawn(run_reconciler(
            self.store.clone(),
            self.registry,
            self.queues,
            self.reconcile_every,
            self.reconcile_after,
            shutdown.clone(),
        ));
        tracing::info!(listen = %self.listener.local_addr()?, "producer API listening");
        let (stop, events) = (shutdown.clone(), self.events);
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                stop.cancelled().await;
                // An open stream would hold its connection, and the drain, until its job ends.
                events.close_all();
            })
            .await
            .context("the HTTP server failed");
        shutdown.cancel();
        let _ = reconciler.await;
        self.store.close().await;
        served?;
        tracing::info!("producer stopped");
        Ok(())
    }
}
