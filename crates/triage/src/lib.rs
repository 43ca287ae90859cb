//! `longhaul-triage`: the ticket-triage pipeline, longhaul's reference job kind, built on the
//! public API of `longhaul-core` like any user's pipeline.
//!
//! The kind [`Triage`] takes `{ticket_id, revision}`; its key is derived from the two, so a
//! resubmission of one ticket revision is the same job (ids are those of the scheme before kinds
//! existed: [`Triage::job_id`]). Its tickets and their triage results are this crate's own data
//! ([`storage`], with its own migrations). Three stages, each wrapped in [`Ctx::stage`]:
//!
//! 1. **load** (0 → 33 %) — the ticket, from application storage through [`TicketStore`], scoped
//!    by tenant. A missing ticket or an older revision than requested is invalid job data; a ticket
//!    whose stored tenant differs from the job's is a permission failure (alert).
//! 2. **classify** (33 → 66 %) — a [`Classifier`]: the built-in [`RuleClassifier`] (default,
//!    offline) or the OpenAI-compatible [`HttpClassifier`]. Any answer outside the limits of
//!    [`Classification::validate`] (NUL included) is invalid.
//! 3. **apply** (66 → 100 %) — writes the result onto the ticket and delivers the tenant's webhook,
//!    each at most once per operation id — the ticket update atomically with its operation record,
//!    the webhook as a durable step ([`Ctx::effect`]) with `Idempotency-Key: <operation id>`.
//!    A ticket already holding the triage of a newer revision keeps it: the update is recorded as
//!    superseded, no webhook is sent (the newer job delivers its own), and the output says
//!    `superseded_by`. The webhook and the output are built from what the ticket update stored, so
//!    a retry whose provider answers differently still reports and delivers the first answer.
//!
//! The pipeline depends on traits only — no database, no Redis — and runs directly in unit tests.

pub mod classify;
pub mod http;
pub mod storage;
pub mod ticket;

use longhaul_core::kind::{InputError, JobKey, JobKind, KindOptions, Stage};
use longhaul_core::{Ctx, FailureCase, JobError, JobId, Pipeline, TenantId, TicketId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tracing::Instrument as _;

pub use classify::{Category, Classification, Classifier, Priority, RuleClassifier};
pub use http::{HttpClassifier, HttpClassifierConfig, HttpWebhook, WebhookSender};
pub use ticket::{TicketStore, TicketView};

/// The kind's name.
pub const KIND: &str = "triage";
/// The queue triage jobs go to.
pub const QUEUE: &str = "triage";

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

/// What a triage job is submitted with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "The input of a `triage` job: a ticket of the tenant (`POST /v1/tickets`) at a \
    revision. `POST /v1/tickets/{ticket_id}/triage` submits one for the ticket's current revision.")]
pub struct TriageInput {
    /// The ticket to triage.
    pub ticket_id: TicketId,
    /// The ticket revision requested (at least 1).
    #[schema(minimum = 1)]
    pub revision: u64,
}

/// The triage job kind: `{ticket_id, revision}` in, [`TriageOutput`] out, on queue [`QUEUE`].
#[derive(Debug, Clone, Copy)]
pub struct Triage;

const STAGES: &[Stage] =
    &[Stage::new(STAGE_LOAD, 1), Stage::new(STAGE_CLASSIFY, 1), Stage::new(STAGE_APPLY, 1)];

impl JobKind for Triage {
    const NAME: &'static str = KIND;
    type Input = TriageInput;
    type Output = TriageOutput;

    fn options() -> KindOptions {
        KindOptions::new(QUEUE, STAGES)
    }

    /// `<ticket id>@<revision>`: one job per ticket revision.
    fn key(input: &TriageInput) -> Option<String> {
        Some(format!("{}@{}", input.ticket_id, input.revision))
    }

    fn validate(input: &TriageInput) -> Result<(), InputError> {
        if input.revision == 0 {
            return Err(InputError::new("revision", "must be at least 1"));
        }
        Ok(())
    }

    fn input_schema() -> Value {
        longhaul_core::kind::schema_of::<TriageInput>()
    }

    /// The ids triage jobs had before kinds existed, so resubmitting a ticket revision (or a
    /// request under the same `Idempotency-Key`) finds the job recorded then.
    fn job_id(tenant: &TenantId, key: &JobKey, input: &TriageInput) -> JobId {
        match key {
            JobKey::Client(key) => JobId::for_idempotency_key(tenant, key),
            JobKey::Derived(_) => job_id_for_ticket(tenant, &input.ticket_id, input.revision),
            JobKey::Generated(_) => JobId::derive(tenant, KIND, key),
        }
    }
}

/// The job id of the triage of revision `revision` of `ticket`: from
/// `("longhaul/job/v1/ticket", tenant, ticket, revision)`.
///
/// ```
/// use longhaul_core::{TenantId, TicketId};
/// let tenant = TenantId::parse("acme").unwrap();
/// let ticket = TicketId::parse("SUP-1").unwrap();
/// let a = longhaul_triage::job_id_for_ticket(&tenant, &ticket, 3);
/// assert_eq!(a, longhaul_triage::job_id_for_ticket(&tenant, &ticket, 3)); // stable
/// assert_ne!(a, longhaul_triage::job_id_for_ticket(&tenant, &ticket, 4)); // a new revision is a new job
/// ```
pub fn job_id_for_ticket(tenant: &TenantId, ticket: &TicketId, revision: u64) -> JobId {
    JobId::from_fields(
        "longhaul/job/v1/ticket",
        &[tenant.as_str().as_bytes(), ticket.as_str().as_bytes(), &revision.to_le_bytes()],
    )
}

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
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        match self {
            Self::Rules(c) => c.classify(ticket).await,
            Self::Http(c) => c.classify(ticket).await,
        }
    }
}

/// The triage pipeline over its collaborators.
#[derive(Debug, Clone)]
pub struct TriagePipeline<T, C, W> {
    tickets: T,
    classifier: C,
    webhook: W,
}

impl<T, C, W> TriagePipeline<T, C, W> {
    /// A pipeline reading and writing tickets through `tickets`, classifying with `classifier`
    /// and delivering webhooks with `webhook`.
    pub fn new(tickets: T, classifier: C, webhook: W) -> Self {
        Self { tickets, classifier, webhook }
    }
}

impl<T, C, W> Pipeline for TriagePipeline<T, C, W>
where
    T: TicketStore + 'static,
    C: Classifier + 'static,
    W: WebhookSender + 'static,
{
    type Kind = Triage;

    async fn run(&self, ctx: &Ctx, input: TriageInput) -> Result<TriageOutput, JobError> {
        let ticket = ctx
            .stage(STAGE_LOAD, self.load(ctx, &input))
            .instrument(tracing::info_span!("stage", stage = STAGE_LOAD))
            .await?;
        let classification = ctx
            .stage(STAGE_CLASSIFY, async {
                let classification = self.classifier.classify(&ticket).await?;
                // Whatever the provider: an answer outside the schema's limits (NUL included,
                // which PostgreSQL cannot store) is invalid now, not an infrastructure failure at
                // the write.
                classification.validate().map_err(|e| {
                    JobError::new(
                        FailureCase::ProviderRejected,
                        format!("classifier answer is out of bounds: {e}"),
                    )
                })?;
                Ok(classification)
            })
            .instrument(tracing::info_span!("stage", stage = STAGE_CLASSIFY))
            .await?;
        ctx.stage(STAGE_APPLY, self.apply(ctx, &ticket, classification))
            .instrument(tracing::info_span!("stage", stage = STAGE_APPLY))
            .await
    }
}

impl<T, C, W> TriagePipeline<T, C, W>
where
    T: TicketStore,
    C: Classifier,
    W: WebhookSender,
{
    /// The load stage: the ticket, checked against the job's tenant and revision.
    async fn load(&self, ctx: &Ctx, input: &TriageInput) -> Result<TicketView, JobError> {
        let ticket = self.tickets.load_ticket(ctx.tenant_id(), &input.ticket_id).await?.ok_or_else(|| {
            JobError::new(FailureCase::InvalidJobData, format!("ticket {} does not exist", input.ticket_id))
        })?;
        if &ticket.tenant_id != ctx.tenant_id() || ticket.ticket_id != input.ticket_id {
            return Err(JobError::new(
                FailureCase::PermissionDenied,
                format!(
                    "tenant mismatch: job of tenant {} loaded ticket of tenant {}",
                    ctx.tenant_id(),
                    ticket.tenant_id
                ),
            ));
        }
        if ticket.revision < input.revision {
            return Err(JobError::new(
                FailureCase::InvalidJobData,
                format!(
                    "revision {} was requested but ticket {} is at revision {}",
                    input.revision, input.ticket_id, ticket.revision
                ),
            ));
        }
        Ok(ticket)
    }

    /// The apply stage: the ticket update, then — unless a newer revision's triage superseded it —
    /// the webhook, each at most once per operation id.
    ///
    /// One operation id stands for one payload: the webhook and the output are built from what the
    /// ticket update stored, not from this attempt's classification. On a retry the provider may
    /// have answered differently; the ticket keeps the first answer, and so do the output and every
    /// delivery under the webhook's idempotency key.
    async fn apply(
        &self,
        ctx: &Ctx,
        ticket: &TicketView,
        classification: Classification,
    ) -> Result<TriageOutput, JobError> {
        let triage =
            json!({ "classification": classification, "job_id": ctx.job_id(), "revision": ticket.revision });
        // A local effect: written atomically with its operation record.
        let op = ctx.operation_id(EFFECT_TICKET_UPDATE)?;
        let stored = self
            .tickets
            .write_triage(ctx.job(), &ticket.ticket_id, &op, STAGE_APPLY, EFFECT_TICKET_UPDATE, &triage)
            .await?;
        ctx.progress(1, 2);
        let applied = Applied::from_stored(&stored, classification, ticket.revision)?;
        let webhook = match &ticket.webhook_url {
            _ if applied.superseded_by.is_some() => None,
            None => None,
            Some(url) => {
                let payload = json!({
                    "event": "ticket.triaged",
                    "tenant_id": ctx.tenant_id(),
                    "ticket_id": ticket.ticket_id,
                    "job_id": ctx.job_id(),
                    "revision": applied.revision,
                    "classification": applied.classification,
                });
                let delivered: Value = ctx
                    .effect(
                        EFFECT_WEBHOOK,
                        |op| async move { self.webhook.deliver(url, &op, &payload).await },
                    )
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
