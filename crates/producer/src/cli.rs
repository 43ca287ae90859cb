//! The `producer` command line — `serve`, `migrate`, `tenant create`, `enqueue`, `openapi`, and the
//! operator groups `jobs`, `queues`, `limits`, `dead-letters`, `operators` — for the shipped binary
//! (with [`crate::startup::builtin`]) and for a user's own producer binary with its kinds: [`main`].
//!
//! The operator groups work directly on the database and Redis (the operator API's operations,
//! [`crate::control`]), one file each under `cli/`: `jobs`, `queues`, `limits`, `dead` (dead
//! letters), `operators`; each prints one JSON document with `--json` (the operator API's shape)
//! and a table otherwise (`output`).

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use longhaul_core::{IdempotencyKey, NewJob, Priority, Registry, TenantId};
use longhaul_service::args::{DatabaseArgs, QueueArgs, TelemetryArgs};
use longhaul_service::telemetry::{LogOutput, TelemetryOptions};
use longhaul_service::{shutdown, startup};
use longhaul_store::Store;

use crate::startup::{Application, Config, PartitionArgs, ServeArgs};
use crate::{Queues, submit};

mod dead;
mod jobs;
mod limits;
mod operators;
mod output;
mod queues;

/// longhaul producer: the HTTP API that validates a submission against its job kind, records the
/// job, then enqueues it into the kind's queue — and the operator CLI.
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
    /// Record and enqueue a job of a registered kind; prints the job as JSON.
    Enqueue(EnqueueArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API, with this producer's job kinds, as
    /// `GET /openapi.json` serves it (needs no database or Redis).
    Openapi,
    /// List, show, cancel and retry jobs of every tenant (and retry failed ones in bulk).
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Queues' backlog and pauses; pause and resume a queue or a kind.
    #[command(subcommand)]
    Queues(queues::QueuesCommand),
    /// Per-tenant and per-kind limits (caps on jobs running at once, starts per second).
    #[command(subcommand)]
    Limits(limits::LimitsCommand),
    /// List, show, replay and purge a queue's dead letters.
    #[command(subcommand)]
    DeadLetters(dead::DeadLettersCommand),
    /// Operators: the credentials of the operator API (/admin/v1).
    #[command(subcommand)]
    Operators(operators::OperatorsCommand),
}

/// Redis, for the operator commands that need the queues.
#[derive(Debug, Args)]
struct RedisArgs {
    /// Redis and the key prefix.
    #[command(flatten)]
    queue: QueueArgs,
    /// How the queues are split.
    #[command(flatten)]
    partitions: PartitionArgs,
}

impl RedisArgs {
    /// The queues of `registry`'s kinds on this Redis.
    fn queues(&self, registry: &Registry) -> anyhow::Result<Queues> {
        let Some(first) = registry.queues().into_iter().next() else {
            bail!("this producer knows no job kind: register at least one")
        };
        let base = self.partitions.queue(&self.queue, first)?;
        Ok(Queues::new(&base, registry)?)
    }
}

/// Who runs an operator command, as its audit rows say.
#[derive(Debug, Clone, Args)]
struct OperatorArgs {
    /// Your name, recorded in the audit rows of what you change (`operator:NAME`; without it,
    /// `operator`).
    #[arg(long = "operator", env = "LONGHAUL_OPERATOR", value_parser = |s: &str| longhaul_store::OperatorName::parse(s))]
    name: Option<longhaul_store::OperatorName>,
}

impl OperatorArgs {
    /// `operator:NAME`, or `operator`.
    fn by(&self) -> String {
        self.name.as_ref().map_or_else(|| "operator".to_owned(), |n| crate::control::operator_by(n.as_str()))
    }
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
        /// Where the tenant's results are POSTed (triage's and summarize's webhooks).
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
    /// The job's kind.
    #[arg(long)]
    kind: String,
    /// The job's input, as JSON (validated as the API validates it).
    #[arg(long)]
    input: String,
    /// The client key the job id is derived from (default: the kind's own key, or a new one).
    #[arg(long)]
    idempotency_key: Option<String>,
    /// Attempts allowed, unless the kind sets its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// When the job may start, RFC 3339 (e.g. 2030-01-31T09:30:00Z), at most 366 days ahead; the
    /// job is `scheduled` until then (now or in the past: it runs at once).
    #[arg(long, value_parser = run_at)]
    run_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Its priority among the waiting jobs of its queue: high, normal or low.
    #[arg(long, default_value = "normal", value_parser = Priority::parse)]
    priority: Priority,
}

/// `--run-at`, judged now.
fn run_at(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    crate::schedule::parse_run_at(text, chrono::Utc::now())
}

/// Runs the `producer` command line with the kinds of `registry`: flags and environment,
/// telemetry, one error line and exit code 1 on failure (2 on a bad flag).
pub async fn main(registry: Registry) -> ExitCode {
    let telemetry = |cli: &Cli| TelemetryOptions {
        // The CLI's commands print their result on stdout; only `serve` logs there.
        logs: if matches!(cli.command, Command::Serve(_)) { LogOutput::Stdout } else { LogOutput::Stderr },
        ..cli.telemetry.options()
    };
    startup::run(telemetry, async |cli: Cli, _| run(cli, registry).await).await
}

async fn run(cli: Cli, registry: Registry) -> anyhow::Result<()> {
    let database = cli.database;
    match cli.command {
        Command::Serve(serve) => {
            let app = Application::build(Config { database, serve }, registry).await?;
            app.run_until_stopped(shutdown::on_signal()).await
        }
        Command::Migrate => {
            migrated(&database, &registry).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create { id, name, webhook_url }) => {
            let store = migrated(&database, &registry).await?;
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
        Command::Enqueue(args) => enqueue(&database, &registry, args).await,
        Command::Openapi => {
            print!("{}", crate::openapi::pretty(&registry));
            Ok(())
        }
        Command::Jobs(command) => jobs::run(&database, &registry, command).await,
        Command::Queues(command) => queues::run(&database, &registry, command).await,
        Command::Limits(command) => limits::run(&database, &registry, command).await,
        Command::DeadLetters(command) => dead::run(&database, &registry, command).await,
        Command::Operators(command) => operators::run(&database, &registry, command).await,
    }
}

/// The store, migrated: the operator commands that write migrate first, whatever the flags.
/// Connects and applies the store's migrations, and those of the kinds that keep tables of their
/// own (triage's tickets) when `registry` has them.
async fn migrated(database: &DatabaseArgs, registry: &Registry) -> anyhow::Result<Store> {
    let store = database.connect_and_migrate(false).await?;
    if registry.options(longhaul_triage::KIND).is_some() {
        longhaul_triage::storage::migrate(&store).await.context("cannot migrate triage's tables")?;
    }
    Ok(store)
}

/// `producer enqueue`: validates and records a job of a registered kind, enqueues it, prints the
/// record.
async fn enqueue(database: &DatabaseArgs, registry: &Registry, args: EnqueueArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(args.tenant)?;
    let input: serde_json::Value = serde_json::from_str(&args.input).context("--input is not JSON")?;
    let key = args.idempotency_key.map(IdempotencyKey::parse).transpose().context("--idempotency-key")?;
    let prepared = registry
        .prepare(&tenant, &args.kind, input, key, longhaul_core::kind::random_key)
        .map_err(|e| anyhow::anyhow!("invalid job: {e}"))?;
    if let Err(path) = crate::api::reject_nul(&prepared.input) {
        bail!("invalid job: input{path}: must not contain NUL (\\u0000): the database cannot store it");
    }
    let store = database.connect().await?;
    let job = NewJob {
        job_id: prepared.job_id.clone(),
        tenant_id: tenant,
        kind: prepared.kind.to_owned(),
        key: prepared.key.as_str().to_owned(),
        input: prepared.input.clone(),
        max_attempts: prepared.max_attempts.unwrap_or(args.max_attempts),
        run_at: args.run_at,
        priority: args.priority,
    };
    let base = args.partitions.queue(&args.queue, prepared.queue)?;
    let queues = Queues::new(&base, registry)?;
    let queue = queues.get(prepared.queue).context("the kind's queue")?;
    let submitted = submit(&store, None, queue, job, None).await?;
    let record = &submitted.record;
    if !submitted.created && (record.kind != prepared.kind || record.input != prepared.input) {
        bail!(
            "job {} already exists under this key ({}) with other input; nothing was enqueued",
            record.job_id,
            prepared.key.as_str()
        );
    }
    submitted.enqueued.context("recorded, but the enqueue failed; the reconciler will retry it")?;
    println!("{}", serde_json::to_string(&submitted.record)?);
    Ok(())
}
