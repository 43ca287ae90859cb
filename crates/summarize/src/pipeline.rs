//! The summarize pipeline: [`SummarizePipeline`] runs a [`Summarize`] job's four stages with a
//! [`Summarizer`], a [`WebhookSender`] and the tenants' webhooks ([`TenantWebhooks`]), every side
//! effect a durable step of the job's [`Ctx`].

use std::future::Future;

use longhaul_core::job::{Ctx, Pipeline};
use longhaul_core::kind::JobKind;
use longhaul_core::{FailureCase, JobError, TenantId};
use longhaul_providers::WebhookSender;
use serde_json::json;

use crate::kind::{
    EVENT_SUMMARIZED, STAGE_COMBINE, STAGE_DELIVER, STAGE_SPLIT, STAGE_SUMMARIZE, STEP_COMBINE, STEP_WEBHOOK,
    Summarize, SummarizeInput, SummarizeOutput, chunk_step,
};
use crate::summarizer::{Summarizer, validate_summary};

/// Where each tenant's results go: the webhook URL an operator configured for the tenant
/// (`producer tenant create --webhook-url`), never a URL from a job's input — a submission must
/// not be able to make workers send requests to addresses of its choosing.
pub trait TenantWebhooks: Send + Sync {
    /// The webhook URL of `tenant`; `None` when it has none (or no longer exists): nothing is
    /// delivered.
    ///
    /// # Errors
    /// A retryable [`JobError`] when the configuration cannot be read.
    fn webhook_url(&self, tenant: &TenantId)
    -> impl Future<Output = Result<Option<String>, JobError>> + Send;
}

impl<T: TenantWebhooks + ?Sized> TenantWebhooks for &T {
    fn webhook_url(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<String>, JobError>> + Send {
        (**self).webhook_url(tenant)
    }
}

impl<T: TenantWebhooks + ?Sized> TenantWebhooks for std::sync::Arc<T> {
    fn webhook_url(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<String>, JobError>> + Send {
        (**self).webhook_url(tenant)
    }
}

/// The summarize pipeline over its collaborators:
///
/// 1. **split** — the text into chunks ([`crate::split`]); deterministic, so not stored.
/// 2. **summarize** — each chunk's summary is the durable step `chunk-{i}`; progress moves per
///    chunk. A retry reuses the stored summaries and calls the summarizer only for the chunks
///    without one.
/// 3. **combine** — one chunk's summary is the document's; several are combined by the
///    summarizer's [`Summarizer::combine`] as the durable step `combine`, so the summary a retry
///    delivers is the one first made.
/// 4. **deliver** — when the job's tenant has a webhook URL ([`TenantWebhooks`], asked at this
///    stage), `{event: "document.summarized", tenant_id, job_id, document_id, summary, chunks}`
///    to it through the [`WebhookSender`] as the durable step `webhook`, its operation id the
///    `Idempotency-Key`; when the tenant has none, nothing (the output's `webhook` is `null`).
///
/// Every summary, whatever the summarizer, must pass [`validate_summary`] before it is stored;
/// one that does not is [`FailureCase::ProviderRejected`].
#[derive(Debug, Clone, Default)]
pub struct SummarizePipeline<S, W, T> {
    summarizer: S,
    webhook: W,
    tenants: T,
}

impl<S, W, T> SummarizePipeline<S, W, T> {
    /// A pipeline summarizing with `summarizer` (e.g. a [`crate::Provider`]), delivering webhooks
    /// with `webhook` (e.g. a [`longhaul_providers::HttpWebhook`]) to the URL `tenants` gives for
    /// the job's tenant.
    pub fn new(summarizer: S, webhook: W, tenants: T) -> Self {
        Self { summarizer, webhook, tenants }
    }
}

/// `summary` if it is within bounds, else a rejected-answer error saying which step made it.
fn checked(step: &str, summary: String) -> Result<String, JobError> {
    validate_summary(&summary).map_err(|e| {
        JobError::new(FailureCase::ProviderRejected, format!("the summary of {step} is out of bounds: {e}"))
    })?;
    Ok(summary)
}

impl<S, W, T> Pipeline for SummarizePipeline<S, W, T>
where
    S: Summarizer + 'static,
    W: WebhookSender + 'static,
    T: TenantWebhooks + 'static,
{
    type Kind = Summarize;

    async fn run(&self, ctx: &Ctx, input: SummarizeInput) -> Result<SummarizeOutput, JobError> {
        let chunks = ctx
            .stage(STAGE_SPLIT, async {
                // The producer validated the input; a job recorded otherwise is refused here.
                Summarize::validate(&input).map_err(|e| {
                    JobError::new(FailureCase::InvalidJobData, format!("invalid input: input.{e}"))
                })?;
                Ok(input.chunks())
            })
            .await?;
        let total = chunks.len() as u64;

        let partials = ctx
            .stage(STAGE_SUMMARIZE, async {
                let mut partials = Vec::with_capacity(chunks.len());
                for (i, chunk) in chunks.iter().enumerate() {
                    let step = chunk_step(i);
                    let summary = ctx
                        .effect(&step, |_op| async {
                            checked(&step, self.summarizer.summarize(chunk).await?)
                        })
                        .await?;
                    partials.push(summary);
                    ctx.progress(i as u64 + 1, total);
                }
                Ok(partials)
            })
            .await?;

        let summary = ctx
            .stage(STAGE_COMBINE, async {
                match partials.as_slice() {
                    [one] => Ok(one.clone()),
                    _ => {
                        ctx.effect(STEP_COMBINE, |_op| async {
                            checked(STEP_COMBINE, self.summarizer.combine(&partials).await?)
                        })
                        .await
                    }
                }
            })
            .await?;

        let chunks = u32::try_from(chunks.len()).unwrap_or(u32::MAX);
        let webhook = ctx
            .stage(STAGE_DELIVER, async {
                // The tenant's webhook as configured when this stage runs: a delivery retried
                // after the operator changed it goes to the new URL (same key, same payload).
                let Some(tenant_url) = self.tenants.webhook_url(ctx.tenant_id()).await? else {
                    return Ok(None);
                };
                let url = tenant_url.as_str();
                let payload = json!({
                    "event": EVENT_SUMMARIZED,
                    "tenant_id": ctx.tenant_id(),
                    "job_id": ctx.job_id(),
                    "document_id": input.document_id,
                    "summary": summary,
                    "chunks": chunks,
                });
                let delivered = ctx
                    .effect(STEP_WEBHOOK, |op| async move { self.webhook.deliver(url, &op, &payload).await })
                    .await?;
                Ok(Some(delivered))
            })
            .await?;

        Ok(SummarizeOutput { document_id: input.document_id, chunks, summary, webhook })
    }
}
