//! Progress: the observer the pipeline reports stage events to, and the throttle that decides which
//! of them are persisted — a stage's first event always, then at most one per `progress_interval`
//! per job. The events go to the recorder ([`crate::recorder`]), which writes them in the same
//! transaction as the batch's starts and completions and then emits their `progress` events.
//! Writes are fenced by attempt, so a late write after completion changes nothing.
//!
//! Progress writes are advisory: the pipeline does not wait for them, and the next write of the
//! job supersedes them (a completion in the same batch takes the stage, see the store's
//! `write_batch`). A batch of progress alone commits on PostgreSQL without waiting for its WAL
//! flush. A crash of the worker loses the writes not yet committed; a crash of PostgreSQL (or a
//! failover) also loses committed progress not flushed yet, whose `progress` events may be out
//! already. Either way the record shows an earlier stage and percentage until the job's next
//! write, and never loses a start, an outcome or an effect, which are committed (and flushed)
//! before the worker goes on.

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

/// Attempts remembered before the throttle sweeps out those not heard from in [`STALE`].
const SWEEP_AT: usize = 10_000;
/// How long an attempt's entry is kept without an event when the recorder never sees its outcome
/// (a lost lease, a shutdown, a run superseded by another worker, an event arriving after the
/// outcome). Dropping an entry early costs one extra progress write, which the attempt fence
/// refuses if the attempt is over.
const STALE: Duration = Duration::from_secs(600);

/// Which stage events are persisted: per job, the attempt last heard of, its last stage written
/// and when. An entry goes when the recorder writes its attempt's outcome ([`Throttle::end`]), or
/// in a sweep. A sweep runs once the map has doubled since the last one left it (and holds at
/// least [`SWEEP_AT`]), so its cost is spread over the events that filled it: a sweep on every
/// event once 10 000 attempts were remembered made the throttle most of a busy worker's CPU. The
/// map's memory is given back once it is mostly empty (after a burst), at a cost spread the same
/// way. Keyed by job id alone, so an event of a known attempt allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    last: HashMap<String, Seen>,
    /// The size at which the next sweep runs (below [`SWEEP_AT`]: at [`SWEEP_AT`]).
    sweep_at: usize,
    /// Sweeps run so far.
    sweeps: u64,
}

/// A job's attempt last heard of: its last stage written, and when.
#[derive(Debug)]
struct Seen {
    attempt: u32,
    stage: String,
    at: Instant,
}

impl Throttle {
    /// Whether an event of `stage` for `ctx`'s attempt is due now (and if so, remembers it). An
    /// event of another attempt than the one remembered for the job is due, and replaces it.
    pub(crate) fn due(&mut self, ctx: &JobContext, stage: &str, interval: Duration, now: Instant) -> bool {
        let is_due = match self.last.get_mut(ctx.job_id.as_str()) {
            Some(seen) => {
                let due = seen.attempt != ctx.attempt
                    || seen.stage != stage
                    || now.saturating_duration_since(seen.at) >= interval;
                if due {
                    seen.attempt = ctx.attempt;
                    stage.clone_into(&mut seen.stage);
                    seen.at = now;
                }
                due
            }
            None => {
                let seen = Seen { attempt: ctx.attempt, stage: stage.to_owned(), at: now };
                self.last.insert(ctx.job_id.to_string(), seen);
                true
            }
        };
        if self.last.len() >= self.sweep_at.max(SWEEP_AT) {
            self.last.retain(|_, seen| now.saturating_duration_since(seen.at) < STALE);
            self.sweep_at = self.last.len().saturating_mul(2);
            self.sweeps += 1;
        }
        is_due
    }

    /// Drops `job`'s `attempt`, whose outcome is being written (another attempt remembered for the
    /// job stays). A later event of it is due again; its write is fenced by attempt and changes
    /// nothing. Once the map holds under a quarter of what it has room for (and room for more than
    /// two sweeps' worth), it shrinks to twice its size.
    pub(crate) fn end(&mut self, job: &str, attempt: u32) {
        if self.last.get(job).is_some_and(|seen| seen.attempt == attempt) {
            self.last.remove(job);
        }
        let (len, room) = (self.last.len(), self.last.capacity());
        if room > 2 * SWEEP_AT && len < room / 4 {
            self.last.shrink_to(len * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_core::{JobId, JobKey, TenantId};

    /// Attempt `attempt` of job `T-<n>`.
    fn ctx(n: u32, attempt: u32) -> JobContext {
        let tenant = TenantId::parse("acme").expect("tenant");
        JobContext {
            job_id: JobId::derive(&tenant, "test", &JobKey::Derived(format!("T-{n}"))),
            tenant_id: tenant,
            kind: "test".into(),
            attempt,
        }
    }

    #[test]
    fn a_stages_first_event_is_always_due_then_one_per_interval() {
        let mut t = Throttle::default();
        let (every, t0) = (Duration::from_millis(250), Instant::now());
        assert!(t.due(&ctx(1, 1), "load", every, t0));
        assert!(!t.due(&ctx(1, 1), "load", every, t0 + Duration::from_millis(100)), "within the interval");
        assert!(t.due(&ctx(1, 1), "classify", every, t0 + Duration::from_millis(100)), "a new stage");
        assert!(t.due(&ctx(1, 1), "classify", every, t0 + Duration::from_millis(400)), "interval passed");
        assert!(t.due(&ctx(1, 2), "classify", every, t0 + Duration::from_millis(400)), "another attempt");
        assert!(t.due(&ctx(2, 1), "classify", every, t0 + Duration::from_millis(400)), "another job");
        assert!(
            !t.due(&ctx(1, 2), "classify", every, t0 + Duration::from_millis(500)),
            "attempt 2 is throttled"
        );
    }

    #[test]
    fn an_ended_attempt_is_forgotten_and_its_next_event_is_due() {
        let mut t = Throttle::default();
        let (every, t0) = (Duration::from_secs(60), Instant::now());
        assert!(t.due(&ctx(1, 1), "load", every, t0));
        assert!(t.due(&ctx(2, 1), "load", every, t0));
        t.end(ctx(1, 1).job_id.as_str(), 1);
        assert_eq!(t.last.len(), 1, "only job 2 is remembered");
        assert!(t.due(&ctx(1, 1), "load", every, t0), "a forgotten attempt's event is due again");
        assert!(!t.due(&ctx(2, 1), "load", every, t0), "job 2 is still throttled");
        // Ending an attempt the throttle no longer holds for the job keeps the newer one.
        assert!(t.due(&ctx(2, 2), "load", every, t0));
        t.end(ctx(2, 1).job_id.as_str(), 1);
        assert!(!t.due(&ctx(2, 2), "load", every, t0), "attempt 2 of job 2 is still remembered");
    }

    #[test]
    fn many_live_attempts_are_swept_rarely_not_on_every_event() {
        // 50 000 jobs, none ended and none stale: every sweep keeps them all. A sweep is a scan of
        // the whole map, so running one per event past 10 000 would be 40 000 scans.
        let mut t = Throttle::default();
        let (every, t0) = (Duration::from_millis(250), Instant::now());
        for n in 1..=50_000 {
            assert!(t.due(&ctx(n, 1), "load", every, t0));
        }
        assert_eq!(t.last.len(), 50_000, "nothing was stale");
        assert_eq!(t.sweeps, 3, "sweeps at 10 000, 20 000 and 40 000 jobs");
        // Once they are stale, the next sweep drops them.
        let later = t0 + STALE + Duration::from_secs(1);
        for n in 50_001..=150_000 {
            t.due(&ctx(n, 1), "load", every, later);
        }
        // At 80 000 the 50 000 stale ones go (30 000 kept), at 60 000 none: 100 000 fresh remain.
        assert_eq!(t.sweeps, 5);
        assert_eq!(t.last.len(), 100_000, "every fresh job is kept");
        assert!(!t.last.contains_key(ctx(1, 1).job_id.as_str()), "a stale one is gone");
    }

    #[test]
    fn the_map_gives_its_memory_back_after_a_burst() {
        let mut t = Throttle::default();
        let (every, t0) = (Duration::from_millis(250), Instant::now());
        for n in 1..=60_000 {
            t.due(&ctx(n, 1), "load", every, t0);
        }
        let burst = t.last.capacity();
        assert!(burst >= 60_000);
        for n in 1..=60_000 {
            t.end(ctx(n, 1).job_id.as_str(), 1);
        }
        assert!(t.last.is_empty(), "every ended attempt is forgotten");
        assert!(
            t.last.capacity() <= 2 * SWEEP_AT,
            "room for {} after the burst's {burst}",
            t.last.capacity()
        );
    }
}
