//! The `producer` command line — `serve`, `migrate`, `tenant create`, `enqueue`, `jobs cancel` —
//! for the shipped binary (with [`crate::startup::builtin`]) and for a user's own producer binary
//! with its kinds: [`main`].

use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use longhaul_core::{IdempotencyKey, JobId, NewJob, Registry, TenantId};
use longhaul_service::args::{DatabaseArgs, QueueArgs, TelemetryArgs};
use longhaul_service::telemetry::{LogOutput, TelemetryOptions};
use longhaul_service::{shutdown, startup};
use longhaul_store::Store;

use crate::startup::{Application, Config, PartitionArgs, ServeArgs};
use crate::{Cancel, Queues, submit};

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
    /// Act on jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Cancel a job: a queued one at once, a running one by its worker; prints the job as JSON. A
    /// completed or failed job is left as it is (exit 1).
    Cancel(CancelArgs),
    /// Put a failed or cancelled job back in the queue under the same id with a fresh attempt
    /// budget; prints the job as JSON. Durable steps that finished stay done. Any other job is
    /// left as it is (exit 1).
    Retry(RetryArgs),
}

#[derive(Debug, Args)]
struct RetryArgs {
    /// Redis, where the job's next entry goes (if Redis is down, the record is queued and the
    /// reconciler enqueues it).
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    partitions: PartitionArgs,
    /// The job's tenant.
    #[arg(long)]
    tenant: String,
    /// Attempts the job gets, unless its kind sets its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// The job.
    job_id: String,
}

#[derive(Debug, Args)]
struct CancelArgs {
    /// Redis, where a queued job's `cancelled` event goes (the record is cancelled even if Redis
    /// is down).
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    partitions: PartitionArgs,
    /// The job's tenant.
    #[arg(long)]
    tenant: String,
    /// The job.
    job_id: String,
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
        Command::Jobs(JobsCommand::Cancel(args)) => cancel(&database, &registry, args).await,
        Command::Jobs(JobsCommand::Retry(args)) => retry(&database, &registry, args).await,
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

/// `producer jobs cancel`: cancels the job as the API does (audited as the operator's), prints the
/// record: `cancelled`, or `running` with `cancel_requested_at` until its worker ends it.
async fn cancel(database: &DatabaseArgs, registry: &Registry, args: CancelArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(args.tenant).context("--tenant")?;
    let job = JobId::parse(args.job_id).context("JOB_ID")?;
    let Some(first) = registry.queues().into_iter().next() else {
        bail!("this producer knows no job kind: register at least one")
    };
    let base = args.partitions.queue(&args.queue, first)?;
    let queues = Queues::new(&base, registry)?;
    let store = database.connect().await?;
    let outcome = match crate::cancel(&store, registry, &queues, &tenant, &job, "operator").await {
        Err(longhaul_store::StoreError::NotFound(_)) => bail!("tenant {tenant} has no job {job}"),
        other => other.with_context(|| format!("cannot cancel job {job}"))?,
    };
    let record = match outcome {
        Cancel::Cancelled(record) | Cancel::Requested(record) | Cancel::AlreadyCancelled(record) => record,
        Cancel::Finished(record) => {
            bail!("job {job} is already {}: only a queued or running job can be cancelled", record.status)
        }
    };
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}

/// `producer jobs retry`: puts a failed or cancelled job back in the queue as the API does (audited
/// as the operator's), prints the `queued` record.
async fn retry(database: &DatabaseArgs, registry: &Registry, args: RetryArgs) -> anyhow::Result<()> {
    let tenant = TenantId::parse(args.tenant).context("--tenant")?;
    let job = JobId::parse(args.job_id).context("JOB_ID")?;
    let Some(first) = registry.queues().into_iter().next() else {
        bail!("this producer knows no job kind: register at least one")
    };
    let base = args.partitions.queue(&args.queue, first)?;
    let queues = Queues::new(&base, registry)?;
    let store = database.connect().await?;
    let outcome =
        match crate::retry(&store, registry, &queues, &tenant, &job, args.max_attempts, "operator").await {
            Err(longhaul_store::StoreError::NotFound(_)) => bail!("tenant {tenant} has no job {job}"),
            other => other.with_context(|| format!("cannot retry job {job}"))?,
        };
    let record = match outcome {
        crate::Retry::Requeued { record, enqueued } => {
            if let Err(e) = enqueued {
                eprintln!(
                    "job {job} is queued, but the queue did not take it ({}); the reconciler will",
                    longhaul_core::Report(&e)
                );
            }
            record
        }
        crate::Retry::NotRetryable(record) => {
            bail!("job {job} is {}: only a failed or cancelled job can be retried", record.status)
        }
    };
    println!("{}", serde_json::to_string(&record)?);
    Ok(())
}
