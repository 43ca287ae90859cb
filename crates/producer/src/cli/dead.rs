//! `producer dead-letters list|show|replay|purge`: the dead stream of a queue (or of one partition
//! of a split queue, `<queue>-<k>`), as the operator API serves it, run directly on Redis (and the
//! database, for a replay through storage and the audit rows).

use anyhow::{Context as _, anyhow, bail};
use clap::{Args, Subcommand};
use longhaul_core::Registry;
use longhaul_queue::{MAX_DEAD_LETTER_PAGE, Queue};
use longhaul_service::args::DatabaseArgs;
use serde::Serialize;

use super::output::{OutputArgs, Table, fields, short, time};
use super::{OperatorArgs, RedisArgs};
use crate::Queues;
use crate::control::{
    DeadLetterView, ReplayError, Replayed, dead_letter_queue, purge_dead_letters, replay_dead_letter,
};

#[derive(Debug, Subcommand)]
pub(crate) enum DeadLettersCommand {
    /// A queue's dead letters, oldest first.
    List(ListArgs),
    /// One dead letter, with its raw fields.
    Show(OneArgs),
    /// Replay a dead letter: a stalled job is retried through storage (a fresh budget) and
    /// enqueued, then the dead letter purged; an entry naming no recorded job goes back as it was.
    Replay(ReplayArgs),
    /// Purge dead letters of a queue: those named, or --all.
    Purge(PurgeArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// The queue (a split queue's partition: <queue>-<k>).
    queue: String,
    /// Start after this dead letter (the last id of the previous page).
    #[arg(long)]
    after: Option<String>,
    /// Dead letters per page.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_DEAD_LETTER_PAGE as u64))]
    limit: u64,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct OneArgs {
    #[command(flatten)]
    redis: RedisArgs,
    /// The queue (a split queue's partition: <queue>-<k>).
    queue: String,
    /// The dead letter's id.
    id: String,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    one: OneArgs,
    #[command(flatten)]
    operator: OperatorArgs,
    /// Attempts a retried job gets, unless its kind sets its own.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_attempts: u32,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ids", "all"]))]
pub(crate) struct PurgeArgs {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    operator: OperatorArgs,
    /// The queue (a split queue's partition: <queue>-<k>).
    queue: String,
    /// The dead letters' ids.
    ids: Vec<String>,
    /// Every dead letter of the queue.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    output: OutputArgs,
}

/// `dead-letters list --json`, as `GET /admin/v1/dead-letters` answers.
#[derive(Debug, Serialize)]
pub(crate) struct DeadLetterList {
    pub(crate) queue: String,
    pub(crate) dead_letters: Vec<DeadLetterView>,
    pub(crate) next_after: Option<String>,
}

/// `dead-letters purge --json`, as the operator API's `DELETE` answers.
#[derive(Debug, Serialize)]
pub(crate) struct Purged {
    pub(crate) queue: String,
    pub(crate) purged: u64,
}

/// The queue or partition `name` of `queues`.
fn queue(queues: &Queues, name: &str) -> anyhow::Result<Queue> {
    dead_letter_queue(queues, name).map_err(|e| anyhow!("queue {name:?}: {e}"))
}

/// Runs a `dead-letters` command.
pub(crate) async fn run(
    database: &DatabaseArgs,
    registry: &Registry,
    command: DeadLettersCommand,
) -> anyhow::Result<()> {
    match command {
        DeadLettersCommand::List(args) => {
            let queue = queue(&args.redis.queues(registry)?, &args.queue)?;
            let limit = usize::try_from(args.limit).unwrap_or(MAX_DEAD_LETTER_PAGE);
            let letters = queue.dead_letters(args.after.as_deref(), limit).await.context("cannot list")?;
            let next_after = if letters.len() == limit { letters.last().map(|l| l.id.clone()) } else { None };
            let name = queue.name().to_owned();
            let dead_letters =
                letters.into_iter().map(|letter| DeadLetterView { queue: name.clone(), letter }).collect();
            args.output.print(&DeadLetterList { queue: name, dead_letters, next_after }, render_list)
        }
        DeadLettersCommand::Show(args) => {
            let queue = queue(&args.redis.queues(registry)?, &args.queue)?;
            let Some(letter) = queue.dead_letter(&args.id).await? else {
                bail!("queue {} has no dead letter {}", queue.name(), args.id)
            };
            args.output.print(&DeadLetterView { queue: queue.name().to_owned(), letter }, render_one)
        }
        DeadLettersCommand::Replay(args) => {
            let one = args.one;
            let queues = one.redis.queues(registry)?;
            let queue = queue(&queues, &one.queue)?;
            let store = database.connect().await?;
            let by = args.operator.by();
            let replayed =
                match replay_dead_letter(&store, registry, &queues, &queue, &one.id, args.max_attempts, &by)
                    .await
                {
                    Ok(r) => r,
                    Err(ReplayError::NotFound) => {
                        bail!("queue {} has no dead letter {}", queue.name(), one.id)
                    }
                    Err(e) => return Err(anyhow::Error::new(e).context(format!("cannot replay {}", one.id))),
                };
            one.output.print(&replayed, render_replayed)
        }
        DeadLettersCommand::Purge(args) => {
            let queue = queue(&args.redis.queues(registry)?, &args.queue)?;
            let store = database.connect().await?;
            let ids = (!args.all).then_some(args.ids.as_slice());
            let purged = purge_dead_letters(&store, &queue, ids, &args.operator.by()).await?;
            let answer = Purged { queue: queue.name().to_owned(), purged };
            args.output.print(&answer, |p| format!("purged {} dead letters of {}\n", p.purged, p.queue))
        }
    }
}

/// Dead letters as a table, and how to get the next page.
pub(crate) fn render_list(list: &DeadLetterList) -> String {
    let mut table = Table::new(&["ID", "AT", "JOB_ID", "TENANT", "KIND", "REASON"]);
    let ms_time = |ms: u64| {
        i64::try_from(ms).ok().and_then(chrono::DateTime::from_timestamp_millis).map(time).unwrap_or_default()
    };
    for d in &list.dead_letters {
        let l = &d.letter;
        table.row(vec![
            l.id.clone(),
            ms_time(l.at_ms),
            l.job_id.clone().unwrap_or_default(),
            l.tenant_id.clone().unwrap_or_default(),
            l.kind.clone().unwrap_or_default(),
            short(&l.reason, 80),
        ]);
    }
    let mut out = table.render();
    if let Some(after) = &list.next_after {
        out.push_str(&format!("more: --after {after}\n"));
    }
    out
}

/// One dead letter as `name  value` lines, its raw fields last.
pub(crate) fn render_one(d: &DeadLetterView) -> String {
    let l = &d.letter;
    let mut out = fields(&[
        ("queue", Some(d.queue.clone())),
        ("id", Some(l.id.clone())),
        ("source_id", Some(l.source_id.clone())),
        ("reason", Some(l.reason.clone())),
        ("job_id", l.job_id.clone()),
        ("tenant", l.tenant_id.clone()),
        ("kind", l.kind.clone()),
    ]);
    out.push_str("fields:\n");
    for (k, v) in &l.fields {
        out.push_str(&format!("  {} = {}\n", short(k, 60), short(v, 200)));
    }
    out
}

/// A replay's result as one line.
pub(crate) fn render_replayed(r: &Replayed) -> String {
    let job = r.job.as_ref().map(|j| format!(" (job {}, {})", j.job_id, j.status)).unwrap_or_default();
    format!("dead letter {} of {}: {}{job}\n", r.id, r.queue, r.replayed)
}
