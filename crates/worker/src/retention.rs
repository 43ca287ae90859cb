//! The pruner: one background task per worker process (not per lane) that keeps application
//! storage bounded — finished job records and their audit rows older than `--retain-finished`,
//! and the operation log older than `--retain-operations` ([`Store::prune`]).
//!
//! Every `--prune-every` it asks for the task lease `pruner` ([`Store::acquire_task_lease`];
//! holder: this worker's consumer name and a random suffix), so across replicas one process prunes
//! at a time. While it holds the lease it prunes in batches of `--prune-batch` rows, each its own
//! short transaction, with a pause between batches and the lease extended before each, so it
//! never holds locks for long nor competes with the jobs' writes; it logs each pass's counts. On
//! shutdown it gives the lease up, so another replica takes over at its next tick; a process that
//! died loses it when it expires.
//!
//! `--retain-finished 0` turns pruning off. The operation log is kept at least as long as the
//! records (`--retain-operations` ≥ `--retain-finished`): a resubmission of a pruned job reuses
//! its steps' stored results while they are kept (see `longhaul_store::retention`).

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use longhaul_service::args::{parse_duration, parse_positive_duration};
use longhaul_store::{Pruned, Store, StoreError};
use tokio_util::sync::CancellationToken;

/// The task lease the pruners of all replicas share.
pub const PRUNER_LEASE: &str = "pruner";

/// The longest retention accepted (longer is no pruning at all: use 0).
const MAX_RETENTION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Retention flags of the worker.
#[derive(Debug, Clone, Args)]
pub struct RetentionArgs {
    /// Finished jobs (completed, failed, cancelled) and their audit rows are deleted this long
    /// after they finished, by one worker across replicas; 0 never deletes anything.
    #[arg(long, env = "LONGHAUL_RETAIN_FINISHED", default_value = "7d", value_parser = parse_duration)]
    pub retain_finished: Duration,
    /// The operation log (the durable steps' results, which a resubmission of a pruned job reuses)
    /// is deleted this long after its last write; at least --retain-finished.
    #[arg(long, env = "LONGHAUL_RETAIN_OPERATIONS", default_value = "30d", value_parser = parse_duration)]
    pub retain_operations: Duration,
    /// How often the worker holding the pruner's lease prunes (and the others ask for it).
    #[arg(long, env = "LONGHAUL_PRUNE_EVERY", default_value = "60s", value_parser = parse_positive_duration)]
    pub prune_every: Duration,
    /// Rows deleted per batch (each batch its own short transaction).
    #[arg(long, env = "LONGHAUL_PRUNE_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub prune_batch: u32,
}

impl RetentionArgs {
    /// The pruner these flags configure; `None` when `--retain-finished` is 0.
    ///
    /// # Errors
    /// When `--retain-operations` is shorter than `--retain-finished`, or either is over 100 years.
    pub fn retention(&self) -> anyhow::Result<Option<Retention>> {
        if self.retain_finished.is_zero() {
            return Ok(None);
        }
        for (flag, value) in
            [("--retain-finished", self.retain_finished), ("--retain-operations", self.retain_operations)]
        {
            if value > MAX_RETENTION {
                bail!(
                    "{flag} ({}) must be at most 100 years; 0 turns pruning off",
                    humantime::format_duration(value)
                );
            }
        }
        if self.retain_operations < self.retain_finished {
            bail!(
                "--retain-operations ({}) must be at least --retain-finished ({}): the operation log is what a resubmitted job reuses",
                humantime::format_duration(self.retain_operations),
                humantime::format_duration(self.retain_finished)
            );
        }
        Ok(Some(Retention {
            retain_finished: self.retain_finished,
            retain_operations: self.retain_operations,
            every: self.prune_every,
            batch: self.prune_batch,
            pause: Duration::from_millis(100),
            lease_ttl: (self.prune_every * 2).max(Duration::from_secs(30)),
        }))
    }
}

/// How the pruner runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Finished jobs and their audit rows older than this go.
    pub retain_finished: Duration,
    /// Operations last written longer ago than this go (keep it ≥ `retain_finished`).
    pub retain_operations: Duration,
    /// How often to ask for the lease and prune.
    pub every: Duration,
    /// Rows per batch.
    pub batch: u32,
    /// Pause between two batches of one pass.
    pub pause: Duration,
    /// How long the lease lasts unless extended (each batch extends it): how soon another
    /// replica takes over from a process that died.
    pub lease_ttl: Duration,
}

/// `now` minus `age`, or `None` when nothing can be that old.
fn cutoff(now: chrono::DateTime<chrono::Utc>, age: Duration) -> Option<chrono::DateTime<chrono::Utc>> {
    now.checked_sub_signed(chrono::Duration::from_std(age).ok()?)
}

/// Runs the pruner until `stop`, then gives its lease up.
pub(crate) async fn run(store: Store, retention: Retention, consumer: String, stop: CancellationToken) {
    let holder = format!("{consumer}-{}", suffix());
    let mut tick = tokio::time::interval(retention.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(%holder, retain_finished = %humantime::format_duration(retention.retain_finished),
        retain_operations = %humantime::format_duration(retention.retain_operations), "pruner started");
    let mut held = false;
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let started = Instant::now();
        match pass(&store, &retention, &holder, &stop, &mut held).await {
            Ok(None) => tracing::debug!(%holder, "another worker holds the pruner's lease"),
            Ok(Some((pruned, batches))) => tracing::info!(
                jobs = pruned.jobs,
                audit_rows = pruned.audit_rows,
                operations = pruned.operations,
                batches,
                elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                "pruned finished jobs, audit rows and operations"
            ),
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "pruning failed; trying again next time")
            }
        }
    }
    if held {
        let release = store.release_task_lease(PRUNER_LEASE, &holder);
        match tokio::time::timeout(Duration::from_secs(5), release).await {
            Ok(Ok(_)) => tracing::debug!(%holder, "pruner's lease given up"),
            Ok(Err(e)) => {
                tracing::debug!(error = %longhaul_core::Report(&e), "cannot give the pruner's lease up; it expires")
            }
            Err(_) => tracing::debug!("cannot give the pruner's lease up in time; it expires"),
        }
    }
}

/// One pass: takes (or extends) the lease, then prunes batch after batch while batches come back
/// full, extending the lease before each. `None` when another process holds the lease.
async fn pass(
    store: &Store,
    retention: &Retention,
    holder: &str,
    stop: &CancellationToken,
    held: &mut bool,
) -> Result<Option<(Pruned, u32)>, StoreError> {
    *held = store.acquire_task_lease(PRUNER_LEASE, holder, retention.lease_ttl).await?;
    if !*held {
        return Ok(None);
    }
    let mut total = Pruned::default();
    let mut batches = 0;
    loop {
        let now = longhaul_store::now();
        let (Some(jobs), Some(ops)) =
            (cutoff(now, retention.retain_finished), cutoff(now, retention.retain_operations))
        else {
            break;
        };
        total.add(store.prune(jobs, ops, retention.batch).await?);
        batches += 1;
        if !total.more {
            break;
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(retention.pause) => {}
        }
        *held = store.acquire_task_lease(PRUNER_LEASE, holder, retention.lease_ttl).await?;
        if !*held {
            tracing::warn!(%holder, "lost the pruner's lease mid-pass (it expired); stopping this pass");
            break;
        }
    }
    Ok(Some((total, batches)))
}

/// 8 random hex digits (a fixed one if the OS random source fails: the consumer name is unique
/// already among live workers).
fn suffix() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        return "00000000".into();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        retention: RetentionArgs,
    }

    fn parse(args: &[&str]) -> Result<RetentionArgs, clap::Error> {
        Flags::try_parse_from(std::iter::once("worker").chain(args.iter().copied())).map(|f| f.retention)
    }

    #[test]
    fn defaults_keep_a_week_of_records_and_a_month_of_operations() {
        let r = parse(&[]).expect("defaults").retention().expect("valid").expect("on");
        assert_eq!(r.retain_finished, Duration::from_secs(7 * 86_400));
        assert_eq!(r.retain_operations, Duration::from_secs(30 * 86_400));
        assert_eq!((r.every, r.batch), (Duration::from_secs(60), 500));
        assert!(r.lease_ttl > r.every, "the holder extends its lease before it expires");
    }

    #[test]
    fn zero_turns_pruning_off() {
        let off = parse(&["--retain-finished", "0"]).expect("flags").retention().expect("valid");
        assert_eq!(off, None);
    }

    #[test]
    fn bad_settings_are_refused_with_the_flag_named() {
        let short = parse(&["--retain-finished", "7d", "--retain-operations", "1d"]).expect("flags");
        let err = short.retention().expect_err("operations kept shorter").to_string();
        assert!(
            err.contains("--retain-operations (1day) must be at least --retain-finished (7days)"),
            "{err}"
        );
        let long =
            parse(&["--retain-finished", "200years", "--retain-operations", "300years"]).expect("flags");
        assert!(long.retention().expect_err("too long").to_string().contains("--retain-finished"));
        for bad in [
            &["--prune-every", "0"][..],
            &["--prune-batch", "0"],
            &["--prune-batch", "10001"],
            &["--retain-finished", "soon"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn cutoffs_never_overflow() {
        let now = longhaul_store::now();
        assert_eq!(cutoff(now, Duration::from_secs(60)), Some(now - chrono::Duration::seconds(60)));
        assert_eq!(cutoff(now, Duration::MAX), None);
    }
}
