//! The `producer` binary: the HTTP API and the operator CLI.

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use longhaul_core::{JobId, NewJob, TenantId, TicketId};
use longhaul_producer::startup::{Application, Config, PartitionArgs, ServeArgs};
use longhaul_producer::submit;
use longhaul_service::args::{DatabaseArgs, QueueArgs, TelemetryArgs};
use longhaul_service::telemetry::{LogOutput, TelemetryOptions};
use longhaul_service::{shutdown, startup};
use longhaul_store::Store;

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
async fn main() -> ExitCode {
    let telemetry = |cli: &Cli| TelemetryOptions {
        // The CLI's commands print their result on stdout; only `serve` logs there.
        logs: if matches!(cli.command, Command::Serve(_)) { LogOutput::Stdout } else { LogOutput::Stderr },
        ..cli.telemetry.options()
    };
    startup::run(telemetry, async |cli: Cli, _| run(cli).await).await
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let database = cli.database;
    match cli.command {
        Command::Serve(serve) => {
            let app = Application::build(Config { database, serve }).await?;
            app.run_until_stopped(shutdown::on_signal()).await
        }
        Command::Migrate => {
            migrated(&database).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { id, name, webhook_url }) => {
            let store = migrated(&database).await?;
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
            Ok(())
        }
        Command::Enqueue(args) => enqueue(&database, args).await,
    }
}

/// The store, migrated: the operator commands that write migrate first, whatever the flags.
async fn migrated(database: &DatabaseArgs) -> anyhow::Result<Store> {
    database.connect_and_migrate(false).await
}

/// `producer enqueue`: records and enqueues the job of an existing ticket; prints the record.
async fn enqueue(database: &DatabaseArgs, args: EnqueueArgs) -> anyhow::Result<()> {
    let store = database.connect().await?;
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
    let queue = args.partitions.queue(&args.queue)?;
    let submitted = submit(&store, None, &queue, job, None).await?;
    submitted.enqueued.context("recorded, but the enqueue failed; the reconciler will retry it")?;
    println!("{}", serde_json::to_string(&submitted.record)?);
    Ok(())
}
