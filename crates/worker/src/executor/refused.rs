//! Refused writes: what a start refused by the record's fence (the job is finished — a job
//! cancelled while queued included — or this delivery is stale) or a write refused after the run
//! (the attempt was taken over) means for the queue entry. Neither changes the job.

use longhaul_core::{JobRecord, JobStatus, TransitionError};
use longhaul_queue::{EventKind, JobEntry};
use longhaul_store::WriteOutcome;

use super::{Attempt, Outcome};

/// A start was refused: the job is finished, or this delivery is stale. Says what to do with the
/// entry without changing the job. A finished job's entry is acknowledged and dropped, and the job
/// released from the queue: a duplicate delivery, or the entry of a job cancelled while it was
/// queued (it never runs; nothing was written, so no `started` audit row either).
pub(super) fn superseded(attempt: &Attempt<'_>, current: &JobRecord, reason: &TransitionError) -> Outcome {
    if let TransitionError::Terminal { status } = reason {
        if *status == JobStatus::Cancelled {
            tracing::info!("job cancelled before it ran; acknowledging its entry without running it");
        } else {
            tracing::info!(%status, "job already finished; acknowledging the duplicate delivery");
        }
        return Outcome::Finish { event: None, release: true };
    }
    let delivery = attempt.delivery;
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
        let event = attempt.event_because(
            EventKind::Retrying,
            current.attempts,
            None,
            current.error_message.clone(),
            current.error_class,
        );
        return Outcome::Retry {
            next: JobEntry { attempt: current.attempts + 1, ..entry.clone() },
            due_ms: u64::try_from(at.timestamp_millis()).unwrap_or(0),
            event,
        };
    }
    // An entry enqueued for an attempt that already started: the job lives on in another entry.
    tracing::info!(%reason, "the entry is older than the job's current attempt; acknowledging it");
    Outcome::Finish { event: None, release: false }
}

/// A write was refused after the run: the record is terminal (ack) or another attempt owns it.
pub(super) fn stale(refused: WriteOutcome) -> Outcome {
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
