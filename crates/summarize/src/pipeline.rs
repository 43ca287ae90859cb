//! The summarize pipeline: [`SummarizePipeline`] runs a [`Summarize`] job's four stages with a
//! [`Summarizer`] and a [`WebhookSender`], every side effect a durable step of the job's
//! [`Ctx`].

use longhaul_core::job::{Ctx, Pipeline};
use longhaul_core::kind::JobKind;
use longhaul_core::{FailureCase, JobError};
use longhaul_providers::WebhookSender;
use serde_json::json;

use crate::kind::{
    EVENT_SUMMARIZED, STAGE_COMBINE, STAGE_DELIVER, STAGE_SPLIT, STAGE_SUMMARIZE, STEP_COMBINE, STEP_WEBHOOK,
    Summarize, SummarizeInput, SummarizeOutput, chunk_step,
};
use crate::summarizer::{Summarizer, validate_summary};

/// The summarize pipeline over its collaborators:
///
/// 1. **split** — the text into chunks ([`crate::split`]); deterministic, so not stored.
/// 2. **summarize** — each chunk's summary is the durable step `chunk-{i}`; progress moves per
///    chunk. A retry reuses the stored summaries and calls the summarizer only for the chunks
///    without one.
/// 3. **combine** — one chunk's summary is the document's; several are combined by the
///    summarizer's [`Summarizer::combine`] as the durable step `combine`, so the summary a retry
///    delivers is the one first made.
/// 4. **deliver** — with a `webhook_url`, `{event: "document.summarized", tenant_id, job_id,
///    document_id, summary, chunks}` through the [`WebhookSender`] as the durable step `webhook`,
///    its operation id the `Idempotency-Key`; without one, nothing.
///
/// Every summary, whatever the summarizer, must pass [`validate_summary`] before it is stored;
/// one that does not is [`FailureCase::ProviderRejected`].
#[derive(Debug, Clone, Default)]
pub struct SummarizePipeline<S, W> {
    summarizer: S,
    webhook: W,
}

impl<S, W> SummarizePipeline<S, W> {
    /// A pipeline summarizing with `summarizer` (e.g. a [`crate::Provider`]) and delivering
    /// webhooks with `webhook` (e.g. a [`longhaul_providers::HttpWebhook`]).
    pub fn new(summarizer: S, webhook: W) -> Self {
        Self { summarizer, webhook }
    }
}

/// `summary` if it is within bounds, else a rejected-answer error saying which step made it.
fn checked(step: &str, summary: String) -> Result<String, JobError> {
    validate_summary(&summary).map_err(|e| {
        JobError::new(FailureCase::ProviderRejected, format!("the summary of {step} is out of bounds: {e}"))
    })?;
    Ok(summary)
}

impl<S, W> Pipeline for SummarizePipeline<S, W>
where
    S: Summarizer + 'static,
    W: WebhookSender + 'static,
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
                let Some(url) = &input.webhook_url else { return Ok(None) };
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
