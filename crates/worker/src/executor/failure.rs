//! Failed attempts: the retry policy (schedule the next attempt, or fail for good — or, once a
//! cancel was requested, end the job as cancelled instead of retrying it), failing a job for good,
//! an entry delivered too often (stalled), and an entry naming a job its tenant does not have. The
//! failure and retry writes go through the recorder like every record write, after the job's
//! progress.

use longhaul_core::{
    Decision, ErrorClass, FailureCase, JobError, JobRecord, JobStatus, RetryPolicy, TransitionError,
};
use longhaul_queue::{EventKind, JobEntry};
use longhaul_store::WriteOutcome;
use serde_json::json;

use super::{Attempt, Fence, Outcome, refused};
use crate::recorder::RecordWrite;

/// How a job is failed for good: the class, the message, and the event that says so.
pub(super) struct Verdict {
    pub class: ErrorClass,
    pub message: String,
    pub kind: EventKind,
}

impl Attempt<'_> {
    /// Applies the retry policy to a failed attempt. A job whose cancel was requested is not
    /// retried: it ends as cancelled (known from the heartbeat, or from storage refusing the retry).
    pub(super) async fn after_failure(&self, fence: &Fence, error: &JobError) -> Outcome {
        let s = &self.shared.settings;
        let options = self.shared.registry.options(&fence.record.kind);
        let max_attempts = fence.record.max_attempts.min(s.max_attempts).max(1);
        let (base, cap) = options.and_then(|o| o.backoff).unwrap_or((s.backoff_base, s.backoff_cap));
        let policy = RetryPolicy::new(max_attempts, base, cap.max(base)).unwrap_or_default();
        let now = chrono::Utc::now();
        let deadline = options
            .and_then(|o| o.deadline)
            .and_then(|limit| Some((super::deadline_end(&fence.record, limit)?, limit)));
        let decision = policy.decide(error, fence.attempt, now, unit_random());
        if matches!(decision, Decision::Retry { .. }) && self.cancel_requested.is_cancelled() {
            tracing::info!(error = %error.message, "attempt failed after a cancel was requested; not retrying it");
            return self.end_cancelled(fence).await;
        }
        match decision {
            // The next attempt would start past the kind's deadline: fail now, saying so.
            Decision::Retry { at } if deadline.is_some_and(|(end, _)| at >= end) => {
                let limit = deadline.map(|(_, limit)| limit).unwrap_or_default();
                let message = format!(
                    "{} (no retry: the next attempt would start past the job's deadline of {limit:?})",
                    error.message
                );
                let class = FailureCase::DeadlineExceeded.class();
                self.fail(fence, Verdict { class, message, kind: EventKind::Failed }).await
            }
            Decision::Retry { at } => {
                let entry = &self.delivery.entry;
                let retry = RecordWrite::Retry {
                    tenant: entry.tenant_id.clone(),
                    job: entry.job_id.clone(),
                    attempt: fence.attempt,
                    class: error.class(),
                    message: error.message.clone(),
                    at,
                };
                let ours = |c: &JobRecord| {
                    c.status == JobStatus::Queued
                        && c.attempts == fence.attempt
                        && c.lease == fence.record.lease
                };
                match self.write_or_refusal("retry", retry, ours).await {
                    Ok(Ok(())) => {}
                    Ok(Err(WriteOutcome::Refused { reason: TransitionError::CancelRequested, .. })) => {
                        tracing::info!(error = %error.message, "attempt failed after a cancel was requested; not retrying it");
                        return self.end_cancelled(fence).await;
                    }
                    Ok(Err(refused)) => return refused::stale(refused),
                    Err(outcome) => return outcome,
                }
                tracing::warn!(error = %error.message, case = ?error.case, next_attempt_at = %at, "attempt failed; retry scheduled");
                let event = self.event_because(
                    EventKind::Retrying,
                    fence.attempt,
                    fence.started,
                    Some(error.message.clone()),
                    Some(error.class()),
                );
                Outcome::Retry {
                    next: JobEntry { attempt: fence.attempt + 1, ..entry.clone() },
                    due_ms: u64::try_from(at.timestamp_millis()).unwrap_or(0),
                    event,
                }
            }
            Decision::Fail { class, alert, exhausted } => {
                let message = if exhausted {
                    format!("{} (gave up after {} attempts)", error.message, fence.attempt)
                } else {
                    error.message.clone()
                };
                let kind = if alert { EventKind::Alert } else { EventKind::Failed };
                self.fail(fence, Verdict { class, message, kind }).await
            }
        }
    }

    /// Fails the job for good in storage, then says how to finish its entry.
    pub(super) async fn fail(&self, fence: &Fence, verdict: Verdict) -> Outcome {
        let entry = &self.delivery.entry;
        let Verdict { class, message, kind } = verdict;
        let write = RecordWrite::Fail {
            tenant: entry.tenant_id.clone(),
            job: entry.job_id.clone(),
            attempt: fence.attempt,
            class,
            message: message.clone(),
        };
        let ours = |c: &JobRecord| {
            c.status == JobStatus::Failed
                && c.attempts == fence.attempt
                && c.error_message.as_deref() == Some(message.as_str())
        };
        if let Err(outcome) = self.write("failure", write, ours).await {
            return outcome;
        }
        match kind {
            EventKind::Alert => {
                tracing::error!(error = %message, class = %class, "job failed: permission or tenant violation")
            }
            _ => {
                tracing::warn!(error = %message, class = %class, prior_status = %fence.record.status, "job failed")
            }
        }
        let event = self.event_because(kind, fence.attempt, fence.started, Some(message), Some(class));
        Outcome::Finish { event: Some(event), release: true }
    }

    /// The entry was delivered too often without finishing: fail its job unrun (the attempt that
    /// stalled is the last one started; one whose cancel was requested ends as cancelled instead)
    /// — unless this delivery is stale, which changes nothing.
    pub(super) async fn fail_stalled(&self) -> Outcome {
        let entry = &self.delivery.entry;
        let read = || self.shared.store.get_job(&entry.tenant_id, &entry.job_id);
        let Some(read) = self.durably("read", read).await else {
            return Outcome::Leave;
        };
        let record = match read {
            Ok(Some(r)) => r,
            Ok(None) => return self.unknown_job().await,
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot read the job record; leaving the entry for a retry");
                return Outcome::Leave;
            }
        };
        if let Err(reason @ (TransitionError::Terminal { .. } | TransitionError::Superseded { .. })) =
            record.start_delivery(&self.lease, entry.attempt, chrono::Utc::now())
        {
            return refused::superseded(self, &record, &reason);
        }
        if record.status == JobStatus::Running && record.cancel_requested_at.is_some() {
            return self.end_cancelled(&Fence::failing(record)).await;
        }
        let message = format!("stalled: delivered {} times without finishing", self.delivery.deliveries);
        let verdict =
            Verdict { class: ErrorClass::Retryable, message: message.clone(), kind: EventKind::Stalled };
        let outcome = self.fail(&Fence::failing(record), verdict).await;
        if matches!(outcome, Outcome::Finish { .. }) {
            // A copy for operators to inspect and replay (`/admin/v1/dead-letters`). Written after
            // the record, before the ack: should the ack be lost, the next delivery finds the job
            // failed and copies nothing twice; should this copy fail, the record still says why.
            if let Err(e) = self.shared.queue.dead_letter_stalled(self.delivery, &message).await {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot copy the stalled entry to the dead letters");
            }
        }
        outcome
    }

    /// The entry names a job its tenant does not have. If another tenant owns that job, the entry
    /// is forged or misrouted: alert. If nobody does, it is invalid data.
    pub(super) async fn unknown_job(&self) -> Outcome {
        let entry = &self.delivery.entry;
        let Some(owner) = self.durably("read", || self.shared.store.job_owner(&entry.job_id)).await else {
            return Outcome::Leave;
        };
        // An alert keeps the job's presence key: the owner's real job lives on in its own entry.
        let (kind, class, message, release) = match owner {
            Ok(Some(owner)) => {
                let message = format!(
                    "tenant mismatch: entry claims tenant {} but the job belongs to {owner}",
                    entry.tenant_id
                );
                tracing::error!(error = %message, "queue entry claims the wrong tenant");
                let detail = json!({ "claimed_tenant": entry.tenant_id, "entry_id": self.delivery.id, "message": message });
                let audit = || self.shared.store.append_audit(&owner, Some(&entry.job_id), "alert", &detail);
                let Some(audited) = self.durably("audit", audit).await else {
                    return Outcome::Leave;
                };
                if let Err(e) = audited {
                    tracing::warn!(error = %longhaul_core::Report(&e), "cannot write the alert audit row; leaving the entry for a retry");
                    return Outcome::Leave;
                }
                (EventKind::Alert, ErrorClass::Alert, message, false)
            }
            Ok(None) => {
                let message = format!("job {} has no record in application storage", entry.job_id);
                tracing::warn!(error = %message, "dropping an entry for an unknown job");
                (EventKind::Failed, ErrorClass::Invalid, message, true)
            }
            Err(e) => {
                tracing::warn!(error = %longhaul_core::Report(&e), "cannot look the job up; leaving the entry for a retry");
                return Outcome::Leave;
            }
        };
        let event = self.event_because(kind, entry.attempt, None, Some(message), Some(class));
        Outcome::Finish { event: Some(event), release }
    }
}

/// A random number in `[0, 1)` for backoff jitter.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}
