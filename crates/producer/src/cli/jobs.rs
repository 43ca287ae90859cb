//! `producer jobs list|show|cancel|retry|retry-failed`: an operator's view of every tenant's jobs,
//! and the same steering as the operator API, run directly on the database and Redis. A job is
//! found by its id (`--tenant` only checks the owner); changes are audited as the operator's
//! (`--operator NAME`: `operator:NAME`).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, Priority, Registry, TenantId};
use longhaul_service::args::DatabaseArgs;
use longhaul_store::{AdminJobFilter, FailedFilter, JobPage, MAX_PAGE_SIZE, Store, StoreError};
use serde::Serialize;

use super::output::{OutputArgs, Table, fields, short, time};
use super::{OperatorArgs, RedisArgs};
use crate::control::{BulkMode, BulkRetry, DEFAULT_BULK_RETRY_LIMIT, MAX_BULK_RETRY_LIMIT, bulk_retry};
use crate::{Cancel, Retry};

#[derive(Debug, Subcommand)]
pub(crate) enum JobsCommand {
    /// List the jobs of every tenant (or of --tenant), newest first, filtered.
    List(ListArgs),
    /// Show one job, whoever's it is.
    Show(ShowArgs),
    /// Cancel a job: a queued one at once, a running one by its worker. A completed or failed job
    /// is left as it is (exit 1).
    Cancel(ActArgs),
    /// Put a failed or cancelled job back in the queue under the same id with a fresh attempt
    /// budget. Durable steps that finished stay done. Any other job is left as it is (exit 1).
    Retry(RetryArgs),
    /// Put every failed job matching the filters back in the queue (a page at a time, in
    /// batches), or with --dry-run only count them.
    RetryFailed(RetryFailedArgs),
}

/// The filters of `jobs list` and `jobs retry-failed`.
#[derive(Debug, Clone, Args)]
pub(crate) struct FilterArgs {
    /// Only this tenant's jobs.
    #[arg(long, value_parser = |s: &str| TenantId::parse(s))]
    tenant: Option<TenantId>,
    /// Only jobs of this kind.
    #[arg(long, value_parser = kind_name)]
    kind: Option<String>,
    /// Only jobs whose last failure is of this class: retryable, invalid or alert.
    #[arg(long, value_parser = |s: &str| ErrorClass::parse(s))]
    error_class: Option<ErrorClass>,
    /// Only jobs created at or after this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    created_after: Option<chrono::DateTime<chrono::Utc>>,
    /// Only jobs created before this time (RFC 3339).
    #[arg(long, value_parser = rfc3339)]
    created_before: Option<chrono::DateTime<chrono::Utc>>,
}

fn kind_name(s: &str) -> Result<String, String> {
    longhaul_core::kind::validate_kind_name(s).map(|()| s.to_owned())
}

fn key_filter(s: &str) -> Result<String, String> {
    AdminJobFilter::check_key(s).map(|()| s.to_owned())
}

fn rfc3339(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("not an RFC 3339 time (such as 2030-01-31T09:30:00Z): {e}"))
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Only jobs in this status.
    #[arg(long, value_parser = |s: &str| JobStatus::parse(s))]
    status: Option<JobStatus>,
    /// Only jobs of this priority: high, normal or low.
    #[arg(long, value_parser = |s: &str| Priority::parse(s))]
    priority: Option<Priority>,
    /// Only jobs recorded with exactly this key (a client's Idempotency-Key, or the key the kind
    /// derived from the input), of every tenant unless --tenant.
    #[arg(long, value_parser = key_filter)]
    key: Option<String>,
    /// Jobs per page.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_PAGE_SIZE)))]
    limit: u32,
    /// The page after the one that printed this cursor.
    #[arg(long)]
    cursor: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The job.
    job_id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ActArgs {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    operator: OperatorArgs,
    /// The job's tenant, checked (the job is found by its id).
    #[arg(long)]
    tenant: Option<String>,
    /// The job.
    job_id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RetryArgs {
    #[command(flatten)]
    act: ActArgs,
    /// Attempts the job gets, unless its kind sets its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
}

#[derive(Debug, Args)]
pub(crate) struct RetryFailedArgs {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    operator: OperatorArgs,
    #[command(flatten)]
    filter: FilterArgs,
    /// Only count the jobs that would be retried; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Attempts each job gets, unless its kind sets its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
    /// Jobs per page: each page is one bounded run, as one request of the operator API's bulk
    /// retry; pages follow one another until no matching job is left.
    #[arg(long, default_value_t = DEFAULT_BULK_RETRY_LIMIT,
        value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_BULK_RETRY_LIMIT)))]
    page_size: u32,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a `jobs` command.
pub(crate) async fn run(
    database: &DatabaseArgs,
    registry: &Registry,
    command: JobsCommand,
) -> anyhow::Result<()> {
    match command {
        JobsCommand::List(args) => {
            let store = database.connect().await?;
            let filter = AdminJobFilter {
                tenant: args.filter.tenant,
                kind: args.filter.kind,
                status: args.status,
                error_class: args.filter.error_class,
                created_after: args.filter.created_after,
                created_before: args.filter.created_before,
                priority: args.priority,
                key: args.key,
            };
            let page = store.list_jobs_admin(&filter, args.limit, args.cursor.as_deref()).await.map_err(
                |e| match e {
                    e @ StoreError::InvalidCursor(_) => anyhow::anyhow!("--cursor: {e}"),
                    other => anyhow::Error::new(other).context("cannot list jobs"),
                },
            )?;
            args.output.print(&PageView::from(page), render_page)
        }
        JobsCommand::Show(args) => {
            let job = JobId::parse(args.job_id).context("JOB_ID")?;
            let store = database.connect().await?;
            let Some(record) = store.get_job_admin(&job).await? else { bail!("no job {job}") };
            args.output.print(&record, render_job)
        }
        JobsCommand::Cancel(args) => cancel(database, registry, args).await,
        JobsCommand::Retry(args) => retry(database, registry, args).await,
        JobsCommand::RetryFailed(args) => retry_failed(database, registry, args).await,
    }
}

/// A page as `jobs list --json` prints it (the operator API's shape).
#[derive(Debug, Serialize)]
pub(crate) struct PageView {
    pub(crate) jobs: Vec<JobRecord>,
    pub(crate) next_cursor: Option<String>,
}

impl From<JobPage> for PageView {
    fn from(p: JobPage) -> Self {
        Self { jobs: p.jobs, next_cursor: p.next_cursor }
    }
}

/// A page of jobs as a table, and how to get the next.
pub(crate) fn render_page(page: &PageView) -> String {
    let mut table =
        Table::new(&["JOB_ID", "TENANT", "KIND", "STATUS", "PRIORITY", "ATTEMPTS", "CREATED", "ERROR"]);
    for j in &page.jobs {
        let error = match (&j.error_class, &j.error_message) {
            (Some(class), Some(message)) => format!("{class}: {}", short(message, 60)),
            (Some(class), None) => class.to_string(),
            _ => String::new(),
        };
        table.row(vec![
            j.job_id.to_string(),
            j.tenant_id.to_string(),
            j.kind.clone(),
            j.status.to_string(),
            j.priority.as_str().to_owned(),
            format!("{}/{}", j.attempts, j.max_attempts),
            time(j.created_at),
            error,
        ]);
    }
    let mut out = table.render();
    if let Some(c) = &page.next_cursor {
        out.push_str(&format!("more: --cursor {c}\n"));
    }
    out
}

/// One job as `name  value` lines.
pub(crate) fn render_job(j: &JobRecord) -> String {
    let json = |v: &serde_json::Value| short(&v.to_string(), 200);
    fields(&[
        ("job_id", Some(j.job_id.to_string())),
        ("tenant", Some(j.tenant_id.to_string())),
        ("kind", Some(j.kind.clone())),
        ("key", j.key.clone()),
        ("status", Some(j.status.to_string())),
        ("priority", Some(j.priority.as_str().to_owned())),
        ("stage", j.stage.clone()),
        ("progress", Some(format!("{}%", j.progress.percent()))),
        ("attempts", Some(format!("{}/{}", j.attempts, j.max_attempts))),
        ("run_at", j.run_at.map(time)),
        ("next_attempt_at", j.next_attempt_at.map(time)),
        ("error_class", j.error_class.map(|c| c.to_string())),
        ("error", j.error_message.clone()),
        ("cancel_requested_at", j.cancel_requested_at.map(time)),
        ("created_at", Some(time(j.created_at))),
        ("updated_at", Some(time(j.updated_at))),
        ("started_at", j.started_at.map(time)),
        ("finished_at", j.finished_at.map(time)),
        ("input", Some(json(&j.input))),
        ("output", j.output.as_ref().map(json)),
    ])
}

/// The owner of `job`, checked against `--tenant` when given.
async fn owner(store: &Store, job: &JobId, tenant: Option<String>) -> anyhow::Result<TenantId> {
    let expected = tenant.map(TenantId::parse).transpose().context("--tenant")?;
    match (store.job_owner(job).await?, expected) {
        (Some(owner), Some(expected)) if owner != expected => bail!("tenant {expected} has no job {job}"),
        (Some(owner), _) => Ok(owner),
        (None, Some(expected)) => bail!("tenant {expected} has no job {job}"),
        (None, None) => bail!("no job {job}"),
    }
}

/// `producer jobs cancel`: cancels the job as the API does, prints the record: `cancelled`, or
/// `running` with `cancel_requested_at` until its worker ends it.
async fn cancel(database: &DatabaseArgs, registry: &Registry, args: ActArgs) -> anyhow::Result<()> {
    let job = JobId::parse(args.job_id).context("JOB_ID")?;
    let queues = args.redis.queues(registry)?;
    let store = database.connect().await?;
    let tenant = owner(&store, &job, args.tenant).await?;
    let by = args.operator.by();
    let outcome = match crate::cancel(&store, registry, &queues, &tenant, &job, &by).await {
        Err(StoreError::NotFound(_)) => bail!("tenant {tenant} has no job {job}"),
        other => other.with_context(|| format!("cannot cancel job {job}"))?,
    };
    let record = match outcome {
        Cancel::Cancelled(record) | Cancel::Requested(record) | Cancel::AlreadyCancelled(record) => record,
        Cancel::Finished(record) => {
            bail!(
                "job {job} is already {}: only a scheduled, queued or running job can be cancelled",
                record.status
            )
        }
    };
    args.output.print(&record, render_job)
}

/// `producer jobs retry`: puts a failed or cancelled job back in the queue as the API does, prints
/// the `queued` record.
async fn retry(database: &DatabaseArgs, registry: &Registry, args: RetryArgs) -> anyhow::Result<()> {
    let RetryArgs { act, max_attempts } = args;
    let job = JobId::parse(act.job_id).context("JOB_ID")?;
    let queues = act.redis.queues(registry)?;
    let store = database.connect().await?;
    let tenant = owner(&store, &job, act.tenant).await?;
    let by = act.operator.by();
    let outcome = match crate::retry(&store, registry, &queues, &tenant, &job, max_attempts, &by).await {
        Err(StoreError::NotFound(_)) => bail!("tenant {tenant} has no job {job}"),
        other => other.with_context(|| format!("cannot retry job {job}"))?,
    };
    let record = match outcome {
        Retry::Requeued { record, enqueued } => {
            if let Err(e) = enqueued {
                eprintln!(
                    "job {job} is queued, but the queue did not take it ({}); the reconciler will",
                    longhaul_core::Report(&e)
                );
            }
            record
        }
        Retry::NotRetryable(record) => {
            bail!("job {job} is {}: only a failed or cancelled job can be retried", record.status)
        }
    };
    act.output.print(&record, render_job)
}

/// `producer jobs retry-failed`: the bulk retry, page after page until no matching job is left
/// (or its dry run), printing the totals.
async fn retry_failed(
    database: &DatabaseArgs,
    registry: &Registry,
    args: RetryFailedArgs,
) -> anyhow::Result<()> {
    let queues = args.redis.queues(registry)?;
    let store = database.connect().await?;
    let f = args.filter;
    let filter = FailedFilter {
        tenant: f.tenant,
        kind: f.kind,
        error_class: f.error_class,
        created_after: f.created_after,
        created_before: f.created_before,
    };
    let by = args.operator.by();
    let run = async |mode| bulk_retry(&store, registry, &queues, &filter, mode, args.max_attempts, &by).await;
    if args.dry_run {
        let counted = run(BulkMode::DryRun).await.context("cannot count the failed jobs")?;
        return args.output.print(&counted, render_bulk);
    }
    let mut total = BulkRetry { matched: 0, retried: 0, not_enqueued: 0, dry_run: false, next: None };
    let mut after = 0;
    loop {
        let page = run(BulkMode::Retry { after, limit: args.page_size }).await.with_context(|| {
            format!(
                "the bulk retry failed after putting back {} jobs (those stay put back; run it again for \
                 the rest)",
                total.retried
            )
        })?;
        total.matched += page.matched;
        total.retried += page.retried;
        total.not_enqueued += page.not_enqueued;
        let Some(next) = page.next else { break };
        eprintln!("retried {} of {} matched so far; next page …", total.retried, total.matched);
        after = next;
    }
    args.output.print(&total, render_bulk)
}

/// A bulk retry's result as lines.
pub(crate) fn render_bulk(b: &BulkRetry) -> String {
    if b.dry_run {
        return format!("dry run: {} failed jobs match; nothing changed\n", b.matched);
    }
    let mut out = format!("matched {}, retried {}\n", b.matched, b.retried);
    if b.not_enqueued > 0 {
        out.push_str(&format!(
            "{} of them are queued but not enqueued (the queue did not answer, or a kind this producer \
             does not know); the reconciler will\n",
            b.not_enqueued
        ));
    }
    out
}
