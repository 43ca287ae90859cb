//! The executor: runs one delivery and writes its outcome to application storage. It returns what
//! the completer must then do with the queue entry — never the other way round, so nothing is
//! acknowledged that storage does not hold.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use longhaul_core::{
    Decision, ErrorClass, FailureCase, JobContext, JobError, JobRecord, JobStatus, Lease, Pipeline,
    RetryPolicy, TransitionError,
};
use longhaul_queue::{Delivery, Event, EventKind, JobEntry, now_ms};
use longhaul_store::{StoreError, Write, WriteOutcome};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Shared;
use crate::progress::Observer;

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
}

fn event(kind: EventKind, delivery: &Delivery, attempt: u32, started: Option<Instant>) -> Event {
    let now = now_ms();
    let mut e =
        Event::new(kind, delivery.entry.job_id.as_str(), delivery.entry.tenant_id.as_str(), attempt, now);
    e.run_ms = started.map(|s| u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX));
    e.total_ms = Some(now.saturating_sub(delivery.entry.enqueued_at_ms));
    e
}

/// Runs `delivery` to an outcome. `stalled`: the entry was delivered too often; fail it unrun.
pub(crate) async fn execute<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    delivery: &Delivery,
    stalled: bool,
    cancel: &CancellationToken,
) -> Outcome {
    let entry = &delivery.entry;
    if stalled {
        return fail_stalled(shared, delivery, cancel).await;
    }
    // One write starts the next attempt (no read first), fenced by this delivery; only a refusal
    // reads the record.
    let lease = lease_of(delivery);
    let start = Write::StartNext {
        tenant: entry.tenant_id.clone(),
        job: entry.job_id.clone(),
        lease: lease.clone(),
        entry_attempt: entry.attempt,
    };
    let Some(started) = durably(shared, cancel, "start", || shared.record(start.clone())).await else {
        return Outcome::Leave;
    };
    let running = match started {
        Ok(WriteOutcome::Applied(r)) => r,
        // This very delivery started it: the commit went through but its answer was lost.
        Ok(WriteOutcome::Refused { current, .. })
            if current.status == JobStatus::Running && current.lease.as_ref() == Some(&lease) =>
        {
            current
        }
        Ok(WriteOutcome::Refused {
            reason: TransitionError::AttemptsExhausted { max_attempts, .. },
            current,
        }) => {
            // This delivery is newer than the one running the last attempt, whose worker stopped
            // heart-beating: that attempt is failed, and the count stays at the limit.
            let attempt = failing_attempt(&current);
            tracing::Span::current().record("attempt", attempt);
            let message =
                format!("no attempt left: all {max_attempts} were used by runs that never finished");
            return fail(
                shared,
                delivery,
                &current,
                attempt,
                ErrorClass::Retryable,
                &message,
                EventKind::Failed,
                None,
                cancel,
            )
            .await;
        }
        Ok(WriteOutcome::Refused { reason, current }) => return superseded(delivery, &current, &reason),
        Err(StoreError::NotFound(_)) => return unknown_job(shared, delivery, cancel).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot mark the job running; leaving the entry for a retry");
            return Outcome::Leave;
        }
    };
    let attempt = running.attempts;
    tracing::Span::current().record("attempt", attempt);
    tracing::info!(deliveries = delivery.deliveries, "job started");

    let ctx = JobContext {
        job_id: entry.job_id.clone(),
        tenant_id: entry.tenant_id.clone(),
        ticket_id: entry.ticket_id.clone(),
        ticket_revision: entry.ticket_revision,
        attempt,
    };
    let started = Instant::now();
    let result = run_pipeline(shared, &ctx, cancel).await;
    let Some(result) = result else {
        tracing::warn!(
            "abandoning the job: the shutdown grace period is over, or another worker took it over"
        );
        return Outcome::Leave;
    };
    // The completion goes through the recorder after the job's progress, so they stay in order;
    // the failure writes below do not, so they wait for the progress first.

    match result {
        Ok(output) => {
            let complete = Write::Complete {
                tenant: entry.tenant_id.clone(),
                job: entry.job_id.clone(),
                attempt,
                output,
            };
            let Some(completed) =
                durably(shared, cancel, "completion", || shared.record(complete.clone())).await
            else {
                return Outcome::Leave;
            };
            match completed {
                Ok(WriteOutcome::Applied(_)) => {
                    tracing::info!(run_ms = started.elapsed().as_millis() as u64, "job completed");
                    Outcome::Finish {
                        event: Some(event(EventKind::Completed, delivery, attempt, Some(started))),
                        release: true,
                    }
                }
                // Our own completion, committed though its answer was lost.
                Ok(WriteOutcome::Refused { current, .. })
                    if current.status == JobStatus::Completed && current.attempts == attempt =>
                {
                    Outcome::Finish {
                        event: Some(event(EventKind::Completed, delivery, attempt, Some(started))),
                        release: true,
                    }
                }
                Ok(refused) => stale(refused),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record completion; leaving the entry for a retry");
                    Outcome::Leave
                }
            }
        }
        Err(error) => after_failure(shared, delivery, &running, attempt, &error, started, cancel).await,
    }
}

/// The entry was delivered too often without finishing: fail its job unrun (the attempt that
/// stalled is the last one started) — unless this delivery is stale, which changes nothing.
async fn fail_stalled<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    delivery: &Delivery,
    cancel: &CancellationToken,
) -> Outcome {
    let entry = &delivery.entry;
    let Some(read) =
        durably(shared, cancel, "read", || shared.store.get_job(&entry.tenant_id, &entry.job_id)).await
    else {
        return Outcome::Leave;
    };
    let record = match read {
        Ok(Some(r)) => r,
        Ok(None) => return unknown_job(shared, delivery, cancel).await,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the job record; leaving the entry for a retry");
            return Outcome::Leave;
        }
    };
    if let Err(reason @ (TransitionError::Terminal { .. } | TransitionError::Superseded { .. })) =
        record.start_delivery(&lease_of(delivery), entry.attempt, chrono::Utc::now())
    {
        return superseded(delivery, &record, &reason);
    }
    let attempt = failing_attempt(&record);
    tracing::Span::current().record("attempt", attempt);
    let message = format!("stalled: delivered {} times without finishing", delivery.deliveries);
    fail(
        shared,
        delivery,
        &record,
        attempt,
        ErrorClass::Retryable,
        &message,
        EventKind::Stalled,
        None,
        cancel,
    )
    .await
}

/// The queue delivery as the fence of its start.
fn lease_of(delivery: &Delivery) -> Lease {
    Lease { entry: delivery.id.clone(), delivery: u32::try_from(delivery.deliveries).unwrap_or(u32::MAX) }
}

/// The attempt a job is failed under without running again: the running attempt (whose worker
/// stopped), else the next one — never past `max_attempts`.
fn failing_attempt(record: &JobRecord) -> u32 {
    if record.status == JobStatus::Running { record.attempts } else { record.attempts + 1 }
}

/// A start was refused: the job is finished, or this delivery is stale. Says what to do with the
/// entry without changing the job.
fn superseded(delivery: &Delivery, current: &JobRecord, reason: &TransitionError) -> Outcome {
    if let TransitionError::Terminal { status } = reason {
        tracing::info!(%status, "job already finished; acknowledging the duplicate delivery");
        return Outcome::Finish { event: None, release: true };
    }
    let entry = &delivery.entry;
    let same_entry = current.lease.as_ref().is_some_and(|l| l.entry == delivery.id);
    // Whether this entry ran the job's last attempt (records from before leases were kept: the
    // entry was enqueued for it).
    let ran_last = match &current.lease {
        Some(_) => same_entry,
        None => entry.attempt == current.attempts,
    };
    if current.status == JobStatus::Running && same_entry {
        // A later delivery of this same entry started the running attempt; that worker holds the
        // entry now. Acknowledging it would take it from under that worker.
        tracing::info!(%reason, "a newer delivery of this entry runs the job; dropping this stale copy");
        return Outcome::Leave;
    }
    if current.status == JobStatus::Queued
        && ran_last
        && let Some(at) = current.next_attempt_at
    {
        // The attempt this entry ran failed and its retry is recorded, but the queue never got
        // it: the worker stopped between the two writes. Schedule it now (idempotent: if that
        // worker's queue write lands first, this entry is no longer pending and this is a no-op).
        tracing::info!("the job's recorded retry never reached the queue; scheduling it");
        let mut ev = event(EventKind::Retrying, delivery, current.attempts, None);
        ev.reason.clone_from(&current.error_message);
        ev.class = current.error_class.map(|c| c.as_str().to_owned());
        return Outcome::Retry {
            next: JobEntry { attempt: current.attempts + 1, ..entry.clone() },
            due_ms: u64::try_from(at.timestamp_millis()).unwrap_or(0),
            event: ev,
        };
    }
    // An entry enqueued for an attempt that already started: the job lives on in another entry.
    tracing::info!(%reason, "the entry is older than the job's current attempt; acknowledging it");
    Outcome::Finish { event: None, release: false }
}

/// How long a write may keep failing with a "retryable" error while the database answers a ping
/// before it counts as a permanent failure (a misclassified error must not hold an entry forever).
const REACHABLE_BUT_FAILING: Duration = Duration::from_secs(60);

/// Runs a storage operation until it answers something other than "storage unavailable". While
/// the database is unreachable the delivery is held (and heart-beaten), so an outage of any length
/// costs no delivery and fails nothing; the worker's readiness reports the outage meanwhile. An
/// error that persists while the database answers is returned after [`REACHABLE_BUT_FAILING`].
/// `None` when the delivery is abandoned first (a shutdown's grace period ended, or it was
/// superseded).
async fn durably<P, T, F, Fut>(
    shared: &Shared<P>,
    cancel: &CancellationToken,
    what: &'static str,
    mut op: F,
) -> Option<Result<T, StoreError>>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut backoff = Duration::from_millis(50);
    let mut held: Option<Instant> = None;
    let mut next_warning = Instant::now();
    let mut reachable_since: Option<Instant> = None;
    loop {
        match op().await {
            Err(e) if e.is_retryable() => {
                if held.is_some_and(|h| h.elapsed() > Duration::from_secs(5)) {
                    if shared.store.ping().await.is_ok() {
                        if reachable_since.get_or_insert_with(Instant::now).elapsed() > REACHABLE_BUT_FAILING
                        {
                            tracing::error!(error = %e, write = what,
                                "the database answers but this write keeps failing; giving up on it");
                            return Some(Err(e));
                        }
                    } else {
                        reachable_since = None;
                    }
                }
                if Instant::now() >= next_warning {
                    let since = held.get_or_insert_with(Instant::now).elapsed();
                    tracing::warn!(error = %e, write = what, held_s = since.as_secs(),
                        "storage unavailable; holding the entry until it is back");
                    next_warning = Instant::now() + Duration::from_secs(30);
                }
                tokio::select! {
                    () = cancel.cancelled() => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            other => {
                if let Some(since) = held {
                    tracing::info!(
                        write = what,
                        held_ms = since.elapsed().as_millis() as u64,
                        "storage is back; going on"
                    );
                }
                return Some(other);
            }
        }
    }
}

/// A write was refused after the run: the record is terminal (ack) or another attempt owns it.
fn stale(refused: WriteOutcome) -> Outcome {
    match refused {
        WriteOutcome::Refused { reason: TransitionError::Terminal { .. }, .. } => {
            Outcome::Finish { event: None, release: true }
        }
        other => {
            tracing::warn!(outcome = ?other, "the attempt was taken over while it ran; its result is discarded");
            Outcome::Leave
        }
    }
}

/// Runs the pipeline in a task of its own, so a panic is caught and reported as a failure. `None`
/// when the delivery was abandoned first (grace period over, or superseded).
async fn run_pipeline<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    ctx: &JobContext,
    cancel: &CancellationToken,
) -> Option<Result<serde_json::Value, JobError>> {
    let pipeline = shared.pipeline.clone();
    let observer = Observer::new(shared.recorder_tx.clone());
    let task_ctx = ctx.clone();
    let span = tracing::Span::current();
    let handle = tokio::spawn(tracing::Instrument::instrument(
        async move {
            let output = pipeline.run(&task_ctx, &observer).await?;
            serde_json::to_value(output).map_err(|e| {
                JobError::new(FailureCase::InvalidJobData, format!("output is not serialisable: {e}"))
            })
        },
        span,
    ));
    let abort = handle.abort_handle();
    tokio::select! {
        () = cancel.cancelled() => {
            abort.abort();
            None
        }
        joined = handle => Some(match joined {
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
        }),
    }
}

/// Applies the retry policy to a failed attempt.
async fn after_failure<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    delivery: &Delivery,
    record: &JobRecord,
    attempt: u32,
    error: &JobError,
    started: Instant,
    cancel: &CancellationToken,
) -> Outcome {
    crate::recorder::flush(shared).await;
    let s = &shared.settings;
    let max_attempts = record.max_attempts.min(s.max_attempts).max(1);
    let policy =
        RetryPolicy::new(max_attempts, s.backoff_base, s.backoff_cap.max(s.backoff_base)).unwrap_or_default();
    let now = chrono::Utc::now();
    match policy.decide(error, attempt, now, crate::unit_random()) {
        Decision::Retry { at } => {
            let entry = &delivery.entry;
            let Some(written) = durably(shared, cancel, "retry", || {
                shared.store.schedule_retry(
                    &entry.tenant_id,
                    &entry.job_id,
                    attempt,
                    error.class(),
                    &error.message,
                    at,
                )
            })
            .await
            else {
                return Outcome::Leave;
            };
            // Our own retry, committed though its answer was lost, counts as written.
            let ours = match &written {
                Ok(WriteOutcome::Applied(_)) => true,
                Ok(WriteOutcome::Refused { current, .. }) => {
                    current.status == JobStatus::Queued
                        && current.attempts == attempt
                        && current.lease == record.lease
                }
                Err(_) => false,
            };
            match written {
                Ok(_) if ours => {
                    let due_ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                    tracing::warn!(error = %error.message, case = ?error.case, next_attempt_at = %at, "attempt failed; retry scheduled");
                    let mut ev = event(EventKind::Retrying, delivery, attempt, Some(started));
                    ev.reason = Some(error.message.clone());
                    ev.class = Some(error.class().as_str().to_owned());
                    Outcome::Retry {
                        next: JobEntry { attempt: attempt + 1, ..entry.clone() },
                        due_ms,
                        event: ev,
                    }
                }
                Ok(refused) => stale(refused),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot record the retry; leaving the entry for a retry");
                    Outcome::Leave
                }
            }
        }
        Decision::Fail { class, alert, exhausted } => {
            let message = if exhausted {
                format!("{} (gave up after {attempt} attempts)", error.message)
            } else {
                error.message.clone()
            };
            let kind = if alert { EventKind::Alert } else { EventKind::Failed };
            fail(shared, delivery, record, attempt, class, &message, kind, Some(started), cancel).await
        }
    }
}

/// Fails the job for good in storage, then says how to finish its entry.
#[allow(clippy::too_many_arguments)]
async fn fail<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    delivery: &Delivery,
    record: &JobRecord,
    attempt: u32,
    class: ErrorClass,
    message: &str,
    kind: EventKind,
    started: Option<Instant>,
    cancel: &CancellationToken,
) -> Outcome {
    let entry = &delivery.entry;
    let Some(failed) = durably(shared, cancel, "failure", || {
        shared.store.fail(&entry.tenant_id, &entry.job_id, attempt, class, message)
    })
    .await
    else {
        return Outcome::Leave;
    };
    // Our own failure, committed though its answer was lost, counts as written.
    let ours = match &failed {
        Ok(WriteOutcome::Applied(_)) => true,
        Ok(WriteOutcome::Refused { current, .. }) => {
            current.status == JobStatus::Failed
                && current.attempts == attempt
                && current.error_message.as_deref() == Some(message)
        }
        Err(_) => false,
    };
    match failed {
        Ok(_) if ours => {
            match kind {
                EventKind::Alert => {
                    tracing::error!(error = %message, class = %class, "job failed: permission or tenant violation")
                }
                _ => {
                    tracing::warn!(error = %message, class = %class, prior_status = %record.status, "job failed")
                }
            }
            let mut ev = event(kind, delivery, attempt, started);
            ev.reason = Some(message.to_owned());
            ev.class = Some(class.as_str().to_owned());
            Outcome::Finish { event: Some(ev), release: true }
        }
        Ok(refused) => stale(refused),
        Err(e) => {
            tracing::warn!(error = %e, "cannot record the failure; leaving the entry for a retry");
            Outcome::Leave
        }
    }
}

/// The entry names a job its tenant does not have. If another tenant owns that job, the entry is
/// forged or misrouted: alert. If nobody does, it is invalid data.
async fn unknown_job<P: Pipeline + 'static>(
    shared: &Arc<Shared<P>>,
    delivery: &Delivery,
    cancel: &CancellationToken,
) -> Outcome {
    let entry = &delivery.entry;
    let Some(owner) = durably(shared, cancel, "read", || shared.store.job_owner(&entry.job_id)).await else {
        return Outcome::Leave;
    };
    match owner {
        Ok(Some(owner)) => {
            let message = format!(
                "tenant mismatch: entry claims tenant {} but the job belongs to {owner}",
                entry.tenant_id
            );
            tracing::error!(error = %message, "queue entry claims the wrong tenant");
            let detail =
                json!({ "claimed_tenant": entry.tenant_id, "entry_id": delivery.id, "message": message });
            let Some(audited) = durably(shared, cancel, "audit", || {
                shared.store.append_audit(&owner, Some(&entry.job_id), "alert", &detail)
            })
            .await
            else {
                return Outcome::Leave;
            };
            if let Err(e) = audited {
                tracing::warn!(error = %e, "cannot write the alert audit row; leaving the entry for a retry");
                return Outcome::Leave;
            }
            let mut ev = event(EventKind::Alert, delivery, entry.attempt, None);
            ev.reason = Some(message);
            ev.class = Some(ErrorClass::Alert.as_str().to_owned());
            // The owner's real job lives on in its own entry: keep its presence key.
            Outcome::Finish { event: Some(ev), release: false }
        }
        Ok(None) => {
            let message = format!("job {} has no record in application storage", entry.job_id);
            tracing::warn!(error = %message, "dropping an entry for an unknown job");
            let mut ev = event(EventKind::Failed, delivery, entry.attempt, None);
            ev.reason = Some(message);
            ev.class = Some(ErrorClass::Invalid.as_str().to_owned());
            Outcome::Finish { event: Some(ev), release: true }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot look the job up; leaving the entry for a retry");
            Outcome::Leave
        }
    }
}
