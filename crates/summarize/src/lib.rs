//! `longhaul-summarize`: the document-summary pipeline, a built-in job kind written only against
//! the public API of `longhaul-core` (kinds, pipelines, durable steps) and `longhaul-providers`
//! (the chat client and the webhook) — no storage, no queue.
//!
//! - [`kind`] — the [`Summarize`] kind: input ([`SummarizeInput`]), output ([`SummarizeOutput`]),
//!   stages `split` (1), `summarize` (8), `combine` (1), `deliver` (1), limits, validation and the
//!   derived key (document id and a hash of the text). The input cannot say where the summary
//!   goes: it is delivered to the webhook an operator configured for the job's tenant.
//! - [`split`] — the text into chunks on paragraph and sentence boundaries, deterministically.
//! - [`summarizer`] — the [`Summarizer`] trait; the offline [`ExtractiveSummarizer`] (default),
//!   the OpenAI-compatible [`HttpSummarizer`], and [`Provider`] choosing between them.
//! - [`pipeline`] — [`SummarizePipeline`], which runs the stages with durable steps, and
//!   [`TenantWebhooks`], how it learns a tenant's webhook URL (a worker reads it from storage).
//!
//! A worker registers it next to its other kinds, with where its tenants' webhooks are:
//!
//! ```
//! use std::time::Duration;
//!
//! use longhaul_core::job::Registry;
//! use longhaul_core::{JobError, TenantId};
//! use longhaul_providers::HttpWebhook;
//! use longhaul_summarize::{Provider, SummarizePipeline, TenantWebhooks};
//!
//! /// Every tenant's results go to one receiver.
//! struct OneReceiver(String);
//!
//! impl TenantWebhooks for OneReceiver {
//!     async fn webhook_url(&self, _tenant: &TenantId) -> Result<Option<String>, JobError> {
//!         Ok(Some(self.0.clone()))
//!     }
//! }
//!
//! let webhook = HttpWebhook::new(Duration::from_secs(10)).expect("HTTP client");
//! let tenants = OneReceiver("https://hooks.example.com/summaries".into());
//! let pipeline = SummarizePipeline::new(Provider::default(), webhook, tenants);
//! let registry = Registry::new().pipeline(pipeline).unwrap();
//! assert_eq!(registry.queues().into_iter().collect::<Vec<_>>(), ["summarize"]);
//! ```

pub mod kind;
pub mod pipeline;
pub mod split;
pub mod summarizer;

pub use kind::{Summarize, SummarizeInput, SummarizeOutput};
pub use pipeline::{SummarizePipeline, TenantWebhooks};
pub use summarizer::{ExtractiveSummarizer, HttpSummarizer, MAX_SUMMARY_CHARS, Provider, Summarizer};
