//! `producer queues list|pause|resume`: every queue's backlog and pauses, and pausing or resuming a
//! queue (or, with `--kind`, a kind) — in the database, which workers mirror into Redis.

use anyhow::bail;
use clap::{Args, Subcommand};
use longhaul_core::Registry;
use longhaul_service::args::DatabaseArgs;
use longhaul_store::PauseScope;
use serde::Serialize;

use super::output::{OutputArgs, Table, time, yes_no};
use super::{OperatorArgs, RedisArgs};
use crate::control::{PauseView, QueueView, known, queue_overview, set_paused};

#[derive(Debug, Subcommand)]
pub(crate) enum QueuesCommand {
    /// Each queue's backlog (waiting, backlog, pending, delayed, dead letters) and pause, and its
    /// kinds' pauses.
    List(ListArgs),
    /// Pause a queue (or --kind a kind): workers finish what they run and start nothing more of it
    /// until resumed; submits still record and enqueue.
    Pause(PauseArgs),
    /// Resume a paused queue (or --kind a kind).
    Resume(PauseArgs),
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    redis: RedisArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("target").required(true).args(["queue", "kind"]))]
pub(crate) struct PauseArgs {
    #[command(flatten)]
    operator: OperatorArgs,
    /// The queue.
    queue: Option<String>,
    /// A kind instead of a queue.
    #[arg(long)]
    kind: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

/// `queues list --json`, as `GET /admin/v1/queues` answers.
#[derive(Debug, Serialize)]
pub(crate) struct QueueList {
    pub(crate) queues: Vec<QueueView>,
}

/// A pause or resume's result, as the operator API answers.
#[derive(Debug, Serialize)]
pub(crate) struct PauseAnswer {
    #[serde(flatten)]
    pub(crate) state: PauseView,
    pub(crate) changed: bool,
}

/// Runs a `queues` command.
pub(crate) async fn run(
    database: &DatabaseArgs,
    registry: &Registry,
    command: QueuesCommand,
) -> anyhow::Result<()> {
    match command {
        QueuesCommand::List(args) => {
            let queues = args.redis.queues(registry)?;
            let store = database.connect().await?;
            let list = QueueList { queues: queue_overview(&store, registry, &queues).await? };
            args.output.print(&list, render_queues)
        }
        QueuesCommand::Pause(args) => set(database, registry, args, true).await,
        QueuesCommand::Resume(args) => set(database, registry, args, false).await,
    }
}

async fn set(
    database: &DatabaseArgs,
    registry: &Registry,
    args: PauseArgs,
    pause: bool,
) -> anyhow::Result<()> {
    let (scope, name) = match (args.queue, args.kind) {
        (Some(queue), None) => (PauseScope::Queue, queue),
        (None, Some(kind)) => (PauseScope::Kind, kind),
        _ => bail!("name a queue or a --kind, not both"),
    };
    if !known(registry, scope, &name) {
        let known: Vec<&str> = match scope {
            PauseScope::Queue => registry.queues().into_iter().collect(),
            PauseScope::Kind => registry.names().collect(),
        };
        bail!("unknown {} {name:?}; known: {}", scope.as_str(), known.join(", "));
    }
    let store = database.connect().await?;
    let (state, changed) = set_paused(&store, scope, &name, pause, &args.operator.by()).await?;
    args.output.print(&PauseAnswer { state, changed }, render_pause)
}

/// The queues as a table, then their kinds.
pub(crate) fn render_queues(list: &QueueList) -> String {
    let mut queues =
        Table::new(&["QUEUE", "PARTITIONS", "PAUSED", "WAITING", "BACKLOG", "PENDING", "DELAYED", "DEAD"]);
    let mut kinds = Table::new(&["KIND", "QUEUE", "PAUSED"]);
    let mut errors = String::new();
    for q in &list.queues {
        let n = |f: fn(&crate::control::StatsView) -> u64| {
            q.stats.as_ref().map_or("?".to_owned(), |s| f(s).to_string())
        };
        queues.row(vec![
            q.queue.clone(),
            q.partitions.to_string(),
            paused(q.paused, q.paused_by.as_deref(), q.paused_at),
            n(|s| s.waiting),
            n(|s| s.backlog),
            n(|s| s.pending),
            n(|s| s.delayed),
            n(|s| s.dead_letters),
        ]);
        for k in &q.kinds {
            kinds.row(vec![
                k.name.clone(),
                q.queue.clone(),
                paused(k.paused, k.paused_by.as_deref(), k.paused_at),
            ]);
        }
        if let Some(e) = &q.stats_error {
            errors.push_str(&format!("{}: no stats: {e}\n", q.queue));
        }
    }
    format!("{}\n{}{errors}", queues.render(), kinds.render())
}

fn paused(paused: bool, by: Option<&str>, at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    match (paused, by, at) {
        (true, Some(by), Some(at)) => format!("yes ({by}, {})", time(at)),
        (p, ..) => yes_no(p),
    }
}

/// A pause or resume's result as one line.
pub(crate) fn render_pause(a: &PauseAnswer) -> String {
    let s = &a.state;
    let now = if s.paused { "paused" } else { "not paused" };
    let change = if a.changed { "" } else { " (unchanged)" };
    format!("{} {} is {now}{change}\n", s.scope, s.name)
}
