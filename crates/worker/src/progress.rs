//! Progress: the observer the pipeline reports stage events to, and the throttle that decides which
//! of them are persisted — a stage's first event always, then at most one per `progress_interval`
//! per job. The events go to the recorder ([`crate::recorder`]), which writes them in the same
//! transaction as the batch's starts and completions and then emits their `progress` events.
//! Writes are fenced by attempt, so a late write after completion changes nothing.
//!
//! Progress writes are advisory: the pipeline does not wait for them, and the next write of the
//! job supersedes them (a completion in the same batch takes the stage, see the store's
//! `write_batch`). A crash loses the ones not yet committed — the record shows an earlier stage and
//! percentage until the job's next write — and never a start, an outcome or an effect, which are
//! committed before the worker goes on.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use longhaul_core::{JobContext, PipelineObserver, StageEvent};
use tokio::sync::mpsc;

use crate::recorder::Request;

/// The observer the executor gives the pipeline.
pub struct Observer {
    tx: mpsc::UnboundedSender<Request>,
}

impl Observer {
    pub(crate) fn new(tx: mpsc::UnboundedSender<Request>) -> Self {
        Self { tx }
    }
}

impl PipelineObserver for Observer {
    fn on_event(&self, ctx: &JobContext, event: StageEvent<'_>) {
        let _ = self.tx.send(Request::Progress {
            ctx: ctx.clone(),
            stage: event.stage().to_owned(),
            progress: event.progress(),
        });
    }
}

/// Which stage events are persisted: per job attempt, the last stage written and when.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: HashMap<(String, u32), (String, Instant)>,
}

impl Throttle {
    /// Whether an event of `stage` for `ctx`'s attempt is due now (and if so, remembers it).
    pub(crate) fn due(&mut self, ctx: &JobContext, stage: &str, interval: Duration, now: Instant) -> bool {
        let key = (ctx.job_id.to_string(), ctx.attempt);
        let is_due = match self.last.get(&key) {
            Some((s, at)) => s != stage || now.saturating_duration_since(*at) >= interval,
            None => true,
        };
        if is_due {
            self.last.insert(key, (stage.to_owned(), now));
        }
        if self.last.len() > 10_000 {
            self.last.retain(|_, (_, at)| now.saturating_duration_since(*at).as_secs() < 600);
        }
        is_due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_core::{JobId, JobKey, TenantId};

    fn ctx(attempt: u32) -> JobContext {
        let tenant = TenantId::parse("acme").expect("tenant");
        JobContext {
            job_id: JobId::derive(&tenant, "test", &JobKey::Derived("T-1".into())),
            tenant_id: tenant,
            kind: "test".into(),
            attempt,
        }
    }

    #[test]
    fn a_stages_first_event_is_always_due_then_one_per_interval() {
        let mut t = Throttle::default();
        let (every, t0) = (Duration::from_millis(250), Instant::now());
        assert!(t.due(&ctx(1), "load", every, t0));
        assert!(!t.due(&ctx(1), "load", every, t0 + Duration::from_millis(100)), "within the interval");
        assert!(t.due(&ctx(1), "classify", every, t0 + Duration::from_millis(100)), "a new stage");
        assert!(t.due(&ctx(1), "classify", every, t0 + Duration::from_millis(400)), "interval passed");
        assert!(t.due(&ctx(2), "classify", every, t0 + Duration::from_millis(400)), "another attempt");
    }
}
