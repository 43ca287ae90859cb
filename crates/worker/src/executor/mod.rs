//! The executor: runs one delivery and writes its outcome to application storage. It returns what
//! the completer must then do with the queue entry — never the other way round, so nothing is
//! acknowledged that storage does not hold.
//!
//! One [`Attempt`] value carries what every step needs (the delivery, its lease, the tokens that
//! abandon its run or say a cancel was requested); once the record is fenced, a [`Fence`] carries
//! the attempt its writes are fenced by. Every record write goes through the recorder
//! ([`crate::recorder`]), so a job's writes land in the order made. The steps:
//! - this module — start (one fenced write, no read first), run, complete, end as cancelled;
//! - `failure` — the retry policy, failing for good, a stalled entry, an entry naming an unknown
//!   job;
//! - `refused` — what a refused start or write means for the entry;
//! - `durably` — holding the delivery while storage is unavailable.
//!
//! **Cancellation.** A tenant or an operator asks storage to cancel a job. A queued one is
//! cancelled there and then: a delivery of it has its start refused as terminal, is acknowledged
//! and dropped, and never runs. A running one gets `cancel_requested_at`; the heartbeat asks
//! storage which of the jobs running here have one (one query per tick) and fires their
//! `cancel_requested` token. While the pipeline runs, that aborts its task — the provider call in
//! flight is dropped, no step starts after it (a step that finished stays done) — and once the
//! task has stopped, `end_cancelled` is written through the recorder, after the job's progress and
//! held through storage outages like every outcome; the entry is then acknowledged with a
//! `cancelled` event. The run may have finished first: a completion stands (the job completed); a
//! failure that would be retried is ended as cancelled instead (storage refuses its retry once a
//! cancel was requested), one that fails for good stays failed. An attempt that starts, or a
//! stalled entry that is failed, with a cancel already requested ends the job as cancelled without
//! running. A cancellation refused because another attempt owns the job leaves the entry to that
//! attempt's worker, like every stale write.

mod durably;
mod failure;
mod refused;

use std::sync::Arc;
use std::time::Instant;

use longhaul_core::job::Runner;
use longhaul_core::{
    Ctx, ErrorClass, FailureCase, JobContext, JobError, JobRecord, JobStatus, KindOptions, Lease,
    TransitionError,
};
use longhaul_queue::{Delivery, Event, EventKind, JobEntry, now_ms};
use longhaul_store::{StoreError, Write, WriteOutcome};
use tokio_util::sync::CancellationToken;

use crate::progress::Observer;
use crate::recorder::RecordWrite;
use crate::shared::{RunTokens, Shared};
use failure::Verdict;

/// What to do with the queue entry once storage holds the outcome.
#[derive(Debug)]
pub enum Outcome {
    /// Ack and delete the entry; append `event` if any; drop the job's presence key if `release`.
    Finish {
        /// The lifecycle event.
        event: Option<Event>,
        /// Whether the job is done with the queue (false for a dropped duplicate).
        release: bool,
    },
    /// Ack the entry and schedule `next` at `due_ms`.
    Retry {
        /// The next attempt's entry.
        next: JobEntry,
        /// When it is due.
        due_ms: u64,
        /// The `retrying` event.
        event: Event,
    },
    /// Leave the entry pending and stop heart-beating it: storage could not be written (a
    /// shutdown's grace period ended while it was unreachable, or it failed for good), or another
    /// delivery of the entry owns the job now (its worker holds the entry; acknowledging it would
    /// take it from under that worker).
    Leave,
    /// Put the entry back to wait in its flow, its attempt and delivery unspent: its queue or kind
    /// is paused, and its job never started.
    Defer,
}

/// One delivery's attempt at its job: what each step of the executor needs.
pub(crate) struct Attempt<'a> {
    shared: &'a Arc<Shared>,
    delivery: &'a Delivery,
    /// The delivery as the fence of its start.
    lease: Lease,
    /// Cancelled when the delivery is abandoned (the grace period ended, or it was superseded).
    cancel: &'a CancellationToken,
    /// Cancelled when storage shows a cancel requested for the job (see the module docs).
    cancel_requested: &'a CancellationToken,
}

/// How a run of the pipeline ended.
enum Ran {
    /// It finished: its output or its failure.
    Finished(Result<serde_json::Value, JobError>),
    /// The delivery was abandoned first (grace period over, or superseded): it was stopped.
    Abandoned,
    /// A cancel was requested first: it was stopped.
    CancelRequested,
}

/// The record's fence once known: the attempt the job's writes are fenced by, the record as that
/// attempt found it, and when its run began (if it ran).
struct Fence {
    attempt: u32,
    record: JobRecord,
    started: Option<Instant>,
}

impl Fence {
    /// The attempt a job is failed under without running again: the running attempt (whose worker
    /// stopped), else the next one — never past `max_attempts`.
    fn failing(record: JobRecord) -> Self {
        let attempt = if record.status == JobStatus::Running { record.attempts } else { record.attempts + 1 };
        tracing::Span::current().record("attempt", attempt);
        Self { attempt, record, started: None }
    }
}

impl<'a> Attempt<'a> {
    /// The attempt of `delivery`, abandoned when `tokens.abandon` is cancelled, stopped and ended
    /// as cancelled when `tokens.cancel_requested` is.
    pub(crate) fn new(shared: &'a Arc<Shared>, delivery: &'a Delivery, tokens: &'a RunTokens) -> Self {
        let lease = Lease {
            entry: delivery.id.clone(),
            delivery: u32::try_from(delivery.deliveries).unwrap_or(u32::MAX),
        };
        Self { shared, delivery, lease, cancel: &tokens.abandon, cancel_requested: &tokens.cancel_requested }
    }

    /// Runs the delivery to an outcome. `stalled`: the entry was delivered too often; fail it
    /// unrun.
    pub(crate) async fn execute(&self, stalled: bool) -> Outcome {
        if stalled {
            return self.fail_stalled().await;
        }
        // An entry delivered before whose kind or queue is paused: the dispatcher could not tell
        // whether it ever started (handed back, or its worker died before deferring it). One whose
        // job never started waits again; one that did is finished, as a pause lets running jobs
        // finish.
        if self.delivery.deliveries > 1
            && self.shared.held(self.delivery.entry.kind.as_deref())
            && self.never_started().await
        {
            return Outcome::Defer;
        }
        let fence = match self.start().await {
            Ok(fence) => fence,
            Err(outcome) => return outcome,
        };
        if fence.record.cancel_requested_at.is_some() {
            // This delivery took over a running attempt whose cancel was requested (its worker
            // stopped before ending it): end it now, unrun.
            tracing::info!("a cancel was requested before this attempt started; ending the job unrun");
            return self.end_cancelled(&fence).await;
        }
        let entry = &self.delivery.entry;
        let Some((runner, options)) = self.kind_of(&fence.record) else {
            // Most likely a rollout in progress (a producer accepting a kind before the workers
            // that run it): retried with backoff, so a worker that runs the kind can take it; it
            // fails once its attempts are used up, naming the kind.
            let error = JobError::new(
                FailureCase::TemporaryInfrastructure,
                format!(
                    "no worker here runs kind {:?} (queue {}); register it in the worker that serves this queue",
                    fence.record.kind,
                    self.shared.queue.name()
                ),
            );
            tracing::warn!(kind = %fence.record.kind, "a job of a kind this worker does not run; retrying it later");
            return self.after_failure(&fence, &error).await;
        };
        if let Some(past) = deadline_passed(&fence.record, &options, chrono::Utc::now()) {
            let verdict = Verdict { class: ErrorClass::Invalid, message: past, kind: EventKind::Failed };
            return self.fail(&fence, verdict).await;
        }
        let job = JobContext {
            job_id: entry.job_id.clone(),
            tenant_id: entry.tenant_id.clone(),
            kind: fence.record.kind.clone(),
            attempt: fence.attempt,
        };
        let started = Instant::now();
        let ran = self.run(job, &fence.record, runner, options).await;
        let fence = Fence { started: Some(started), ..fence };
        match ran {
            Ran::Finished(Ok(output)) => self.complete(&fence, output).await,
            Ran::Finished(Err(error)) => self.after_failure(&fence, &error).await,
            Ran::CancelRequested => {
                tracing::info!("a cancel was requested: the run is stopped");
                self.end_cancelled(&fence).await
            }
            Ran::Abandoned => {
                tracing::warn!(
                    "abandoning the job: the shutdown grace period is over, or another worker took it over"
                );
                Outcome::Leave
            }
        }
    }

    /// Whether storage shows this entry's job waiting to start (`scheduled` or `queued`): one read,
    /// only for a redelivered entry of a paused queue or kind. `false` when storage does not answer.
    async fn never_started(&self) -> bool {
        let entry = &self.delivery.entry;
        let read = || self.shared.store.get_job(&entry.tenant_id, &entry.job_id);
        matches!(
            self.durably("read", read).await,
            Some(Ok(Some(r))) if matches!(r.status, JobStatus::Scheduled | JobStatus::Queued)
        )
    }

    /// One write starts the next attempt (no read first), fenced by this delivery; only a refusal
    /// reads the record. `Err`: the outcome, without running.
    async fn start(&self) -> Result<Fence, Outcome> {
        let entry = &self.delivery.entry;
        let start = RecordWrite::Batched(Write::StartNext {
            tenant: entry.tenant_id.clone(),
            job: entry.job_id.clone(),
            lease: self.lease.clone(),
            entry_attempt: entry.attempt,
        });
        let Some(started) = self.durably("start", || self.shared.record(start.clone())).await else {
            return Err(Outcome::Leave);
        };
        let running = match started {
            Ok(WriteOutcome::Applied(r)) => r,
            // This very delivery started it: the commit went through but its answer was lost.
            Ok(WriteOutcome::Refused { current, .. })
                if current.status == JobStatus::Running && current.lease.as_ref() == Some(&self.lease) =>
            {
                current
            }
            Ok(WriteOutcome::Refused { reason: TransitionError::AttemptsExhausted { .. }, current })
                if current.status == JobStatus::Running && current.cancel_requested_at.is_some() =>
            {
                // As below, but the job's cancel was requested: end it as cancelled, not failed.
                return Err(self.end_cancelled(&Fence::failing(current)).await);
            }
            Ok(WriteOutcome::Refused {
                reason: TransitionError::AttemptsExhausted { max_attempts, .. },
                current,
            }) => {
                // This delivery is newer than the one running the last attempt, whose worker
                // stopped heart-beating: that attempt is failed, and the count stays at the limit.
                let message =
                    format!("no attempt left: all {max_attempts} were used by runs that never finished");
                let verdict = Verdict { class: ErrorClass::Retryable, message, kind: EventKind::Failed };
                return Err(self.fail(&Fence::failing(current), verdict).await);
            }
            Ok(WriteOutcome::Refused { reason, current }) => {
                return Err(refused::superseded(self, &current, &reason));
            }
            Err(StoreError::NotFound(_)) => return Err(self.unknown_job().await),
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot mark the job running; leaving the entry for a retry");
                return Err(Outcome::Leave);
            }
        };
        tracing::Span::current().record("attempt", running.attempts);
        tracing::info!(deliveries = self.delivery.deliveries, "job started");
        Ok(Fence { attempt: running.attempts, record: running, started: None })
    }

    /// The pipeline and options of `record`'s kind, when this worker runs it.
    fn kind_of(&self, record: &JobRecord) -> Option<(Arc<dyn Runner>, KindOptions)> {
        let registry = &self.shared.registry;
        Some((registry.runner(&record.kind)?, registry.options(&record.kind)?.clone()))
    }

    /// Runs the pipeline in a task of its own, so a panic is caught and reported as a failure;
    /// past the kind's deadline it is stopped and fails for good. A delivery abandoned first
    /// (grace period over, or superseded) stops it; so does a cancel request, and then the task
    /// has stopped when this returns — no step of it runs after, and everything it reported was
    /// sent to the recorder before the cancellation is.
    async fn run(
        &self,
        job: JobContext,
        record: &JobRecord,
        runner: Arc<dyn Runner>,
        options: KindOptions,
    ) -> Ran {
        let observer = Arc::new(Observer::new(self.shared.recorder_tx.clone()));
        let ops: Arc<dyn longhaul_core::OperationLog> = self.shared.ops.clone();
        let deadline = deadline_left(record, &options, chrono::Utc::now());
        let ctx = Ctx::new(job, record.key.clone(), options, observer, ops);
        let input = record.input.clone();
        let span = tracing::Span::current();
        let mut handle = tokio::spawn(tracing::Instrument::instrument(
            async move {
                let run = runner.run(&ctx, input);
                match deadline {
                    None => run.await,
                    Some((left, limit)) => match tokio::time::timeout(left, run).await {
                        Ok(result) => result,
                        Err(_) => Err(JobError::new(
                            FailureCase::DeadlineExceeded,
                            format!("the job ran past its deadline of {limit:?} after submission"),
                        )),
                    },
                }
            },
            span,
        ));
        let abort = handle.abort_handle();
        // A result that is ready wins: a run that finished keeps its outcome.
        let joined = tokio::select! {
            biased;
            joined = &mut handle => joined,
            () = self.cancel.cancelled() => {
                abort.abort();
                return Ran::Abandoned;
            }
            () = self.cancel_requested.cancelled() => {
                abort.abort();
                // Wait until the task has stopped: it may be between two polls on another thread.
                match handle.await {
                    Err(e) if e.is_cancelled() => return Ran::CancelRequested,
                    // It finished before the abort took: its outcome stands.
                    finished => finished,
                }
            }
        };
        Ran::Finished(match joined {
            Ok(result) => result,
            Err(e) if e.is_panic() => {
                let payload = e.into_panic();
                let text = payload
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                tracing::error!(panic = %text, "a pipeline stage panicked");
                Err(JobError::new(FailureCase::StagePanicked, format!("stage panicked: {text}")))
            }
            Err(_) => Err(JobError::new(FailureCase::TemporaryInfrastructure, "pipeline task was cancelled")),
        })
    }

    /// Records the run's output. It goes through the recorder after the job's progress, so they
    /// stay in order.
    async fn complete(&self, fence: &Fence, output: serde_json::Value) -> Outcome {
        let entry = &self.delivery.entry;
        let complete = RecordWrite::Batched(Write::Complete {
            tenant: entry.tenant_id.clone(),
            job: entry.job_id.clone(),
            attempt: fence.attempt,
            output,
        });
        let ours = |c: &JobRecord| c.status == JobStatus::Completed && c.attempts == fence.attempt;
        if let Err(outcome) = self.write("completion", complete, ours).await {
            return outcome;
        }
        if let Some(started) = fence.started {
            tracing::info!(run_ms = started.elapsed().as_millis() as u64, "job completed");
        }
        Outcome::Finish {
            event: Some(self.event(EventKind::Completed, fence.attempt, fence.started)),
            release: true,
        }
    }

    /// Ends the job as cancelled under `fence`'s attempt (its cancel was requested), then says
    /// how to finish its entry: acknowledged with a `cancelled` event — or, when another attempt
    /// owns the job, left to that attempt's worker.
    async fn end_cancelled(&self, fence: &Fence) -> Outcome {
        let entry = &self.delivery.entry;
        let write = RecordWrite::Cancelled {
            tenant: entry.tenant_id.clone(),
            job: entry.job_id.clone(),
            attempt: fence.attempt,
        };
        let ours = |c: &JobRecord| c.status == JobStatus::Cancelled && c.attempts == fence.attempt;
        if let Err(outcome) = self.write("cancellation", write, ours).await {
            return outcome;
        }
        let run_ms = fence.started.map(|s| s.elapsed().as_millis() as u64);
        tracing::info!(run_ms, "job cancelled at request");
        Outcome::Finish {
            event: Some(self.event(EventKind::Cancelled, fence.attempt, fence.started)),
            release: true,
        }
    }

    /// Writes `write` through the recorder, holding the delivery while storage is unavailable.
    /// `Ok` when it is this attempt's write: applied, or refused because the record already shows
    /// it (`ours`: committed though its answer was lost). Otherwise the outcome for the entry.
    async fn write(
        &self,
        what: &'static str,
        write: RecordWrite,
        ours: impl FnOnce(&JobRecord) -> bool,
    ) -> Result<(), Outcome> {
        self.write_or_refusal(what, write, ours).await?.map_err(refused::stale)
    }

    /// [`Attempt::write`], but a refusal that is not `ours` comes back as `Ok(Err(refusal))` for
    /// the caller to judge.
    async fn write_or_refusal(
        &self,
        what: &'static str,
        write: RecordWrite,
        ours: impl FnOnce(&JobRecord) -> bool,
    ) -> Result<Result<(), WriteOutcome>, Outcome> {
        let Some(written) = self.durably(what, || self.shared.record(write.clone())).await else {
            return Err(Outcome::Leave);
        };
        match written {
            Ok(WriteOutcome::Applied(_)) => Ok(Ok(())),
            Ok(WriteOutcome::Refused { current, .. }) if ours(&current) => Ok(Ok(())),
            Ok(refused) => Ok(Err(refused)),
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), write = what, "cannot record the outcome; leaving the entry for a retry");
                Err(Outcome::Leave)
            }
        }
    }

    /// A lifecycle event of this delivery's job, for `attempt`, timed from `started`.
    fn event(&self, kind: EventKind, attempt: u32, started: Option<Instant>) -> Event {
        let entry = &self.delivery.entry;
        let now = now_ms();
        let mut e = Event::new(kind, entry.job_id.as_str(), entry.tenant_id.as_str(), attempt, now);
        e.run_ms = started.map(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
        e.total_ms = Some(now.saturating_sub(entry.enqueued_at_ms));
        e
    }

    /// [`Attempt::event`] saying why: `reason`, of `class`.
    fn event_because(
        &self,
        kind: EventKind,
        attempt: u32,
        started: Option<Instant>,
        reason: Option<String>,
        class: Option<ErrorClass>,
    ) -> Event {
        let mut e = self.event(kind, attempt, started);
        e.reason = reason;
        e.class = class.map(|c| c.as_str().to_owned());
        e
    }
}

/// When `record`'s kind has a deadline: the time left and the deadline itself.
fn deadline_left(
    record: &JobRecord,
    options: &KindOptions,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<(std::time::Duration, std::time::Duration)> {
    let limit = options.deadline?;
    let end = deadline_end(record, limit)?;
    Some(((end - now).to_std().unwrap_or_default(), limit))
}

/// When `record`'s deadline of `limit` ends: after its submission, or after its `run_at` for a
/// job scheduled later (its time starts when it is due); `None` when that is past what a
/// timestamp holds (no deadline, then — not a panic).
pub(super) fn deadline_end(
    record: &JobRecord,
    limit: std::time::Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    let from = record.run_at.map_or(record.created_at, |r| r.max(record.created_at));
    from.checked_add_signed(chrono::Duration::from_std(limit).ok()?)
}

/// The failure message when `record` is past its kind's deadline at `now`.
fn deadline_passed(
    record: &JobRecord,
    options: &KindOptions,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<String> {
    let (left, limit) = deadline_left(record, options, now)?;
    left.is_zero().then(|| {
        format!(
            "the job is past its deadline of {limit:?} after submission (submitted {})",
            record.created_at.to_rfc3339()
        )
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use longhaul_core::{NewJob, Priority, TenantId};

    use super::*;

    fn record(run_at: Option<chrono::DateTime<Utc>>) -> JobRecord {
        let job = NewJob {
            job_id: longhaul_testkit::test_job_id("deadline"),
            tenant_id: TenantId::parse("acme").expect("tenant"),
            kind: "summarize".into(),
            key: "k".into(),
            input: serde_json::json!({}),
            max_attempts: 3,
            run_at,
            priority: Priority::Normal,
        };
        JobRecord::pending(job, Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap())
    }

    /// A job scheduled for later has its whole deadline from its run_at; one scheduled in the
    /// past (or not at all) from its submission.
    #[test]
    fn the_deadline_runs_from_run_at_when_later_than_the_submission() {
        let hour = std::time::Duration::from_secs(3600);
        let created = Utc.with_ymd_and_hms(2026, 12, 1, 8, 0, 0).unwrap();
        let later = Utc.with_ymd_and_hms(2026, 12, 2, 8, 0, 0).unwrap();
        let earlier = Utc.with_ymd_and_hms(2026, 11, 30, 8, 0, 0).unwrap();
        let plus_hour = |t: chrono::DateTime<Utc>| t + chrono::Duration::hours(1);
        assert_eq!(deadline_end(&record(None), hour), Some(plus_hour(created)));
        assert_eq!(deadline_end(&record(Some(later)), hour), Some(plus_hour(later)));
        assert_eq!(deadline_end(&record(Some(earlier)), hour), Some(plus_hour(created)));
    }
}
