//! The `producer` binary: the HTTP API and the operator CLI.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use longhaul_core::{JobId, NewJob, TenantId, TicketId};
use longhaul_producer::{ApiSettings, AppState, app, run_reconciler, submit};
use longhaul_service::args::{
    DatabaseArgs, QueueArgs, Secret, TelemetryArgs, error_line, parse_cli, parse_positive_duration,
};
use longhaul_service::shutdown;
use longhaul_service::telemetry::Telemetry;
use longhaul_store::{Store, StoreOptions};

/// longhaul producer: the HTTP API that validates a triage request, records the job, then
/// enqueues it — and the operator CLI.
#[derive(Debug, Parser)]
#[command(name = "producer", version)]
struct Cli {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (and run the reconciler).
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Record and enqueue a triage job for an existing ticket; prints the job as JSON.
    Enqueue(EnqueueArgs),
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its API key (shown once; only its hash is stored).
    Create {
        /// The tenant id (1–64 of A–Z a–z 0–9 - _ . :).
        id: String,
        /// Display name (default: the id).
        #[arg(long)]
        name: Option<String>,
        /// Where triage results are POSTed.
        #[arg(long)]
        webhook_url: Option<String>,
    },
}

/// How the producer splits the queue.
#[derive(Debug, Args)]
struct PartitionArgs {
    /// Split the queue into this many partitions, QUEUE-0 … QUEUE-(N-1) (one Redis Cluster slot
    /// each); a job goes to the partition of its ticket id. Run a worker and a queue-events per
    /// partition (LONGHAUL_QUEUE=QUEUE-K). 1: not split.
    #[arg(long, env = "LONGHAUL_QUEUE_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    queue_partitions: u32,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    partitions: PartitionArgs,
    /// Address the API listens on.
    #[arg(long, env = "LONGHAUL_LISTEN", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// Attempts each new job is allowed.
    #[arg(long, env = "LONGHAUL_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Upper bound on every request.
    #[arg(long, env = "LONGHAUL_REQUEST_TIMEOUT", default_value = "10s", value_parser = parse_positive_duration)]
    request_timeout: Duration,
    /// How often the reconciler looks for live jobs the queue has lost.
    #[arg(long, env = "LONGHAUL_RECONCILE_EVERY", default_value = "30s", value_parser = parse_positive_duration)]
    reconcile_every: Duration,
    /// Only records not updated for this long are reconciled (leave in-flight enqueues alone).
    #[arg(long, env = "LONGHAUL_RECONCILE_AFTER", default_value = "60s", value_parser = parse_positive_duration)]
    reconcile_after: Duration,
    /// Do not apply database migrations at start-up.
    #[arg(long, env = "LONGHAUL_SKIP_MIGRATIONS")]
    skip_migrations: bool,
}

#[derive(Debug, Args)]
struct EnqueueArgs {
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    partitions: PartitionArgs,
    /// The tenant.
    #[arg(long)]
    tenant: String,
    /// The ticket (must exist).
    #[arg(long)]
    ticket: String,
    /// Attempts allowed.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Cli = parse_cli();
    let _telemetry = match Telemetry::init(
        "producer",
        cli.telemetry.log_format,
        cli.telemetry.otlp_endpoint.as_deref(),
        false,
        !matches!(cli.command, Command::Serve(_)),
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("producer: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let line = error_line(&e);
            tracing::error!(error = %line, "producer failed");
            eprintln!("producer: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn connect(db: &DatabaseArgs) -> anyhow::Result<Store> {
    let options = StoreOptions { max_connections: db.db_pool, acquire_timeout: db.db_timeout };
    let url = db.url()?;
    Store::connect(url.as_ref().map(Secret::expose), &options)
        .await
        .context("failed to connect to application storage (DATABASE_URL)")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let store = connect(&cli.database).await?;
    match cli.command {
        Command::Migrate => {
            store.migrate().await.context("failed to apply migrations")?;
            println!("migrations applied");
        }
        Command::Tenant(TenantCommand::Create { id, name, webhook_url }) => {
            store.migrate().await.context("failed to apply migrations")?;
            let tenant = TenantId::parse(id)?;
            if let Some(url) =
                webhook_url.as_deref().filter(|u| !(u.starts_with("http://") || u.starts_with("https://")))
            {
                bail!("--webhook-url must start with http:// or https://, got {url:?}");
            }
            let name = name.unwrap_or_else(|| tenant.to_string());
            let (_, key) = store
                .create_tenant(&tenant, &name, webhook_url.as_deref())
                .await
                .with_context(|| format!("failed to create tenant {tenant} (does it exist already?)"))?;
            println!("{}", key.expose());
        }
        Command::Enqueue(args) => {
            let tenant = TenantId::parse(args.tenant)?;
            let ticket_id = TicketId::parse(args.ticket)?;
            let ticket = store
                .get_ticket(&tenant, &ticket_id)
                .await?
                .with_context(|| format!("ticket {ticket_id} of tenant {tenant} does not exist"))?;
            let job = NewJob {
                job_id: JobId::for_ticket(&tenant, &ticket_id, ticket.revision),
                tenant_id: tenant,
                ticket_id,
                ticket_revision: ticket.revision,
                max_attempts: args.max_attempts,
            };
            let queue = args.queue.queue(|c| c.partitions = args.partitions.queue_partitions)?;
            let submitted = submit(&store, None, &queue, job, None).await?;
            submitted.enqueued.context("recorded, but the enqueue failed; the reconciler will retry it")?;
            let record = submitted.record;
            println!("{}", serde_json::to_string(&record)?);
        }
        Command::Serve(args) => serve(store, args).await?,
    }
    Ok(())
}

async fn serve(store: Store, args: ServeArgs) -> anyhow::Result<()> {
    if !args.skip_migrations {
        store.migrate().await.context("failed to apply migrations")?;
    }
    let queue = args.queue.queue(|c| c.partitions = args.partitions.queue_partitions)?;
    for partition in queue.partitions()? {
        if let Err(e) = partition.prepare(None).await {
            tracing::warn!(error = %e, queue = %partition.config().queue,
                "Redis is not reachable at start-up; requests answer 503 until it is");
            break;
        }
    }
    let shutdown = shutdown::on_signal();
    let reconciler = tokio::spawn(run_reconciler(
        store.clone(),
        queue.clone(),
        args.reconcile_every,
        args.reconcile_after,
        shutdown.clone(),
    ));
    let settings = ApiSettings {
        max_attempts: args.max_attempts,
        retry_after: Duration::from_secs(2),
        request_timeout: args.request_timeout,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "producer API listening");
    axum::serve(listener, app(AppState::new(store.clone(), queue, settings)))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    shutdown.cancel();
    let _ = reconciler.await;
    store.close().await;
    tracing::info!("producer stopped");
    Ok(())
}
