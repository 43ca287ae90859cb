//! `longhaul-triage`: the ticket-triage pipeline.
//!
//! Three stages, each reported to the [`PipelineObserver`]:
//!
//! 1. **load** (0 → 33 %) — the ticket, from application storage through [`TicketStore`], scoped
//!    by tenant. A missing ticket or an older revision than requested is invalid job data; a ticket
//!    whose stored tenant differs from the job's is a permission failure (alert).
//! 2. **classify** (33 → 66 %) — a [`Classifier`]: the built-in [`RuleClassifier`] (default,
//!    offline) or the OpenAI-compatible [`HttpClassifier`]. Any answer outside the limits of
//!    [`Classification::validate`] (NUL included) is invalid.
//! 3. **apply** (66 → 100 %) — writes the result onto the ticket and delivers the tenant's webhook,
//!    each at most once per operation id — the ticket update atomically with its operation record,
//!    the webhook through the operation log ([`run_effect`]) with `Idempotency-Key: <operation id>`.
//!    A ticket already holding the triage of a newer revision keeps it: the update is recorded as
//!    superseded, no webhook is sent (the newer job delivers its own), and the output says
//!    `superseded_by`. The webhook and the output are built from what the ticket update stored, so
//!    a retry whose provider answers differently still reports and delivers the first answer.
//!
//! The pipeline depends on traits only — no database, no Redis — and runs directly in unit tests.

pub mod classify;
pub mod http;
pub mod storage;

use longhaul_core::{
    FailureCase, JobContext, JobError, OperationLog, Pipeline, PipelineObserver, Progress, StageEvent,
    TicketStore, run_effect,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument as _;

pub use classify::{Category, Classification, Classifier, Priority, RuleClassifier};
pub use http::{HttpClassifier, HttpClassifierConfig, HttpWebhook, WebhookSender};

/// The load stage's name.
pub const STAGE_LOAD: &str = "load";
/// The classify stage's name.
pub const STAGE_CLASSIFY: &str = "classify";
/// The apply stage's name.
pub const STAGE_APPLY: &str = "apply";
/// The apply stage's ticket update: the operation it is recorded as (operation ids are derived
/// from the stage and effect names, so these never change).
pub const EFFECT_TICKET_UPDATE: &str = "ticket-update";
/// The apply stage's webhook delivery.
pub const EFFECT_WEBHOOK: &str = "webhook";

/// What a completed triage job stores as its output: what its ticket update stored, so a retried
/// job reports what its first attempt applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TriageOutput {
    /// The classification applied.
    pub classification: Classification,
    /// The ticket revision that was triaged.
    pub ticket_revision: u64,
    /// The webhook delivery's stored result, when the tenant has a webhook and the triage was
    /// written.
    pub webhook: Option<Value>,
    /// Set when the ticket already held the triage of this newer revision: this job's triage was
    /// not written and no webhook was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub superseded_by: Option<u64>,
}

/// A classifier chosen at run time.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The built-in rules.
    Rules(RuleClassifier),
    /// An OpenAI-compatible endpoint.
    Http(HttpClassifier),
}

impl Classifier for Provider {
    async fn classify(&self, ticket: &longhaul_core::TicketView) -> Result<Classification, JobError> {
        match self {
            Self::Rules(c) => c.classify(ticket).await,
            Self::Http(c) => c.classify(ticket).await,
        }
    }
}

/// The triage pipeline over its collaborators.
#[derive(Debug, Clone)]
pub struct TriagePipeline<T, O, C, W> {
    tickets: T,
    ops: O,
    classifier: C,
    webhook: W,
}

impl<T, O, C, W> TriagePipeline<T, O, C, W> {
    /// A pipeline reading tickets from `tickets`, logging side effects in `ops`, classifying with
    /// `classifier` and delivering webhooks with `webhook`.
    pub fn new(tickets: T, ops: O, classifier: C, webhook: W) -> Self {
        Self { tickets, ops, classifier, webhook }
    }
}

fn percent(p: u8) -> Progress {
    // Invariant: every call site passes a constant ≤ 100.
    Progress::new(p.min(100)).unwrap_or(Progress::DONE)
}

impl<T, O, C, W> Pipeline for TriagePipeline<T, O, C, W>
where
    T: TicketStore,
    O: OperationLog,
    C: Classifier,
    W: WebhookSender,
{
    type Output = TriageOutput;

    async fn run(&self, ctx: &JobContext, observer: &dyn PipelineObserver) -> Result<TriageOutput, JobError> {
        let event = |e: StageEvent<'_>| observer.on_event(ctx, e);

        event(StageEvent::Started { stage: STAGE_LOAD, progress: percent(0) });
        let ticket = self
            .tickets
            .load_ticket(&ctx.tenant_id, &ctx.ticket_id)
            .instrument(tracing::info_span!("stage", stage = STAGE_LOAD))
            .await?
            .ok_or_else(|| {
                JobError::new(FailureCase::InvalidJobData, format!("ticket {} does not exist", ctx.ticket_id))
            })?;
        if ticket.tenant_id != ctx.tenant_id || ticket.ticket_id != ctx.ticket_id {
            return Err(JobError::new(
                FailureCase::PermissionDenied,
                format!(
                    "tenant mismatch: job of tenant {} loaded ticket of tenant {}",
                    ctx.tenant_id, ticket.tenant_id
                ),
            ));
        }
        if ticket.revision < ctx.ticket_revision {
            return Err(JobError::new(
                FailureCase::InvalidJobData,
                format!(
                    "revision {} was requested but ticket {} is at revision {}",
                    ctx.ticket_revision, ctx.ticket_id, ticket.revision
                ),
            ));
        }
        event(StageEvent::Finished { stage: STAGE_LOAD, progress: percent(33) });

        event(StageEvent::Started { stage: STAGE_CLASSIFY, progress: percent(33) });
        let classification = self
            .classifier
            .classify(&ticket)
            .instrument(tracing::info_span!("stage", stage = STAGE_CLASSIFY))
            .await?;
        // Whatever the provider: an answer outside the schema's limits (NUL included, which
        // PostgreSQL cannot store) is invalid now, not an infrastructure failure at the write.
        classification.validate().map_err(|e| {
            JobError::new(FailureCase::ProviderRejected, format!("classifier answer is out of bounds: {e}"))
        })?;
        event(StageEvent::Finished { stage: STAGE_CLASSIFY, progress: percent(66) });

        event(StageEvent::Started { stage: STAGE_APPLY, progress: percent(66) });
        let output = self
            .apply(ctx, &ticket, classification, &event)
            .instrument(tracing::info_span!("stage", stage = STAGE_APPLY))
            .await?;
        event(StageEvent::Finished { stage: STAGE_APPLY, progress: percent(100) });
        Ok(output)
    }
}

impl<T, O, C, W> TriagePipeline<T, O, C, W>
where
    T: TicketStore,
    O: OperationLog,
    C: Classifier,
    W: WebhookSender,
{
    /// The apply stage: the ticket update, then — unless a newer revision's triage superseded it —
    /// the webhook, each at most once per operation id.
    ///
    /// One operation id stands for one payload: the webhook and the output are built from what the
    /// ticket update stored, not from this attempt's classification. On a retry the provider may
    /// have answered differently; the ticket keeps the first answer, and so do the output and every
    /// delivery under the webhook's idempotency key.
    async fn apply(
        &self,
        ctx: &JobContext,
        ticket: &longhaul_core::TicketView,
        classification: Classification,
        event: &(dyn Fn(StageEvent<'_>) + Send + Sync),
    ) -> Result<TriageOutput, JobError> {
        let triage =
            json!({ "classification": classification, "job_id": ctx.job_id, "revision": ticket.revision });
        // A local effect: written atomically with its operation record.
        let op = longhaul_core::OperationId::derive(&ctx.job_id, STAGE_APPLY, EFFECT_TICKET_UPDATE);
        let stored = self.tickets.write_triage(ctx, &op, STAGE_APPLY, EFFECT_TICKET_UPDATE, &triage).await?;
        event(StageEvent::Progress { stage: STAGE_APPLY, progress: percent(83) });
        let applied = Applied::from_stored(&stored, classification, ticket.revision)?;
        let webhook = match &ticket.webhook_url {
            _ if applied.superseded_by.is_some() => None,
            None => None,
            Some(url) => {
                let payload = json!({
                    "event": "ticket.triaged",
                    "tenant_id": ctx.tenant_id,
                    "ticket_id": ctx.ticket_id,
                    "job_id": ctx.job_id,
                    "revision": applied.revision,
                    "classification": applied.classification,
                });
                let delivered = run_effect(&self.ops, ctx, STAGE_APPLY, EFFECT_WEBHOOK, |op| async move {
                    self.webhook.deliver(url, &op, &payload).await
                })
                .await?;
                Some(delivered)
            }
        };
        Ok(TriageOutput {
            classification: applied.classification,
            ticket_revision: applied.revision,
            webhook,
            superseded_by: applied.superseded_by,
        })
    }
}

/// What the ticket update's stored result says was decided — by the first attempt that ran it.
#[derive(Debug)]
struct Applied {
    classification: Classification,
    revision: u64,
    /// The newer revision whose triage the ticket already held (`"written": false`).
    superseded_by: Option<u64>,
}

impl Applied {
    /// Reads the stored result (`{"written", "superseded_by"?, "triage": {"classification",
    /// "revision", …}}`). A result recorded before results carried their triage has none: then
    /// this attempt's own `classification` and `revision` are all there is.
    ///
    /// # Errors
    /// An invalid-data [`JobError`] when the stored triage cannot be read back.
    fn from_stored(stored: &Value, classification: Classification, revision: u64) -> Result<Self, JobError> {
        let superseded_by = stored.get("superseded_by").and_then(Value::as_u64);
        let Some(triage) = stored.get("triage") else {
            return Ok(Self { classification, revision, superseded_by });
        };
        let unreadable = |why: String| {
            JobError::new(
                FailureCase::InvalidJobData,
                format!("the stored ticket update is unreadable: {why}"),
            )
        };
        let classification =
            Classification::deserialize(&triage["classification"]).map_err(|e| unreadable(e.to_string()))?;
        let revision = triage["revision"]
            .as_u64()
            .ok_or_else(|| unreadable(format!("revision = {}", triage["revision"])))?;
        Ok(Self { classification, revision, superseded_by })
    }
}
