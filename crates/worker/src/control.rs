//! Control: what operators set — paused queues and kinds, tenants' and kinds' limits — read from
//! storage (the truth, which survives every restart) every `control_poll`, handed to this worker's
//! lanes, and mirrored into each lane's queue, where admission enforces the limits
//! (`longhaul_queue::Control`).
//!
//! Every worker writes the same mirror from the same rows, with its own defaults
//! (`--admit-ahead`, `--tenant-max-running`, `--tenant-starts-per-second`): give every worker of
//! a queue the same ones, or they rewrite each other's every tick.
//!
//! Until the first read succeeds a lane takes nothing: a worker started while an operator's pause
//! holds must not run a job of the paused queue because storage was slow to answer. While storage
//! cannot be read, the last state read stays in force (and in the mirror).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use longhaul_queue::{Control, Queue};
use longhaul_store::{LimitScope, PauseScope, Store};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// How often, at most, a failure to read storage is logged as a warning.
const WARN_EVERY: Duration = Duration::from_secs(30);

/// The queues and kinds paused, as last read from storage.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Paused {
    queues: BTreeSet<String>,
    kinds: BTreeSet<String>,
}

impl Paused {
    /// Whether `queue` is paused: named itself, or a partition `QUEUE-K` of a paused queue.
    pub(crate) fn queue(&self, queue: &str) -> bool {
        self.queues.contains(queue)
            || queue.rsplit_once('-').is_some_and(|(base, k)| {
                !k.is_empty() && k.bytes().all(|b| b.is_ascii_digit()) && self.queues.contains(base)
            })
    }

    /// Whether `kind` is paused.
    pub(crate) fn kind(&self, kind: &str) -> bool {
        self.kinds.contains(kind)
    }
}

/// The lanes' view of control: `None` until the first successful read.
pub(crate) type ControlView = watch::Receiver<Option<Arc<Paused>>>;

/// The defaults this worker applies where no per-tenant override is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ControlSettings {
    /// Entries admitted ahead of the workers (the stream's backlog) before new ones wait in their
    /// tenant's flow; 0 = no admission (first in, first out).
    pub admit_ahead: u32,
    /// A tenant's jobs admitted and unfinished at once, unless the tenant has its own cap.
    pub tenant_max_running: Option<u32>,
    /// A tenant's starts per second, unless the tenant has its own.
    pub tenant_starts_per_second: Option<f64>,
    /// How often storage is read.
    pub poll: Duration,
}

impl Default for ControlSettings {
    fn default() -> Self {
        Self {
            admit_ahead: 256,
            tenant_max_running: None,
            tenant_starts_per_second: None,
            poll: Duration::from_secs(1),
        }
    }
}

/// A view for lanes that are not controlled (tests of one lane): nothing paused, ready at once.
pub(crate) fn uncontrolled() -> ControlView {
    watch::channel(Some(Arc::new(Paused::default()))).1
}

/// Reads control from storage every `settings.poll` until `stop`, publishing the paused state to
/// `tx` and mirroring limits and pauses into every queue of `queues`.
pub(crate) async fn sync(
    store: Store,
    queues: Vec<Queue>,
    settings: ControlSettings,
    tx: watch::Sender<Option<Arc<Paused>>>,
    stop: CancellationToken,
) {
    let mut next_warning = Instant::now();
    let mut tick = tokio::time::interval(settings.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let read = tokio::time::timeout(settings.poll.max(Duration::from_secs(1)), async {
            Ok::<_, longhaul_store::StoreError>((store.paused().await?, store.limits().await?))
        })
        .await;
        let (pauses, limits) = match read {
            Ok(Ok(v)) => v,
            failed => {
                let error = match failed {
                    Ok(Err(e)) => longhaul_core::Report(&e).to_string(),
                    _ => "no answer in time".to_owned(),
                };
                if Instant::now() >= next_warning {
                    tracing::warn!(%error, "cannot read pauses and limits; keeping the last ones read");
                    next_warning = Instant::now() + WARN_EVERY;
                }
                continue;
            }
        };
        let mut paused = Paused::default();
        for p in pauses {
            match p.scope {
                PauseScope::Queue => paused.queues.insert(p.name),
                PauseScope::Kind => paused.kinds.insert(p.name),
            };
        }
        let mut base = Control {
            ahead: settings.admit_ahead,
            default_cap: settings.tenant_max_running,
            default_rate: settings.tenant_starts_per_second,
            paused_kinds: paused.kinds.clone(),
            ..Control::default()
        };
        let (mut caps, mut rates, mut kind_rates) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for l in limits {
            match l.scope {
                LimitScope::Tenant => {
                    if let Some(cap) = l.max_running {
                        caps.insert(l.name.clone(), cap);
                    }
                    if let Some(rate) = l.starts_per_second {
                        rates.insert(l.name, rate);
                    }
                }
                LimitScope::Kind => {
                    if let Some(rate) = l.starts_per_second {
                        kind_rates.insert(l.name, rate);
                    }
                }
            }
        }
        (base.tenant_caps, base.tenant_rates, base.kind_rates) = (caps, rates, kind_rates);
        for queue in &queues {
            let control = Control { paused: paused.queue(queue.name()), ..base.clone() };
            // Compared with what Redis holds, not with what was last written: a Redis that lost
            // its data (or another worker's different defaults) is corrected within a tick.
            if queue.control().await.is_ok_and(|mirror| mirror == control) {
                continue;
            }
            match queue.set_control(&control).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(queue = queue.name(), error = %longhaul_core::Report(&e), "cannot mirror pauses and limits into the queue's Redis");
                }
            }
        }
        tx.send_if_modified(|current| {
            let changed = current.as_deref() != Some(&paused);
            if changed {
                tracing::info!(queues = ?paused.queues, kinds = ?paused.kinds, "paused queues and kinds");
                *current = Some(Arc::new(paused));
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paused_queue_pauses_its_partitions_only() {
        let paused = Paused { queues: ["triage".to_owned()].into(), kinds: BTreeSet::new() };
        assert!(paused.queue("triage"));
        assert!(paused.queue("triage-3"));
        assert!(!paused.queue("triage-x"));
        assert!(!paused.queue("triage-"));
        assert!(!paused.queue("summarize"));
    }
}
