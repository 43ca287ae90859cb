//! `longhaul-summarize`: the document-summary pipeline, a built-in job kind written only against
//! the public API of `longhaul-core` (kinds, pipelines, durable steps) and `longhaul-providers`
//! (the chat client and the webhook) — no storage, no queue.
//!
//! - [`kind`] — the [`Summarize`] kind: input ([`SummarizeInput`]), output ([`SummarizeOutput`]),
//!   stages `split` (1), `summarize` (8), `combine` (1), `deliver` (1), limits, validation and the
//!   derived key (document id and a hash of the text).
//! - [`split`] — the text into chunks on paragraph and sentence boundaries, deterministically.
//! - [`summarizer`] — the [`Summarizer`] trait; the offline [`ExtractiveSummarizer`] (default),
//!   the OpenAI-compatible [`HttpSummarizer`], and [`Provider`] choosing between them.
//! - [`pipeline`] — [`SummarizePipeline`], which runs the stages with durable steps.
//!
//! A worker registers it next to its other kinds:
//!
//! ```
//! use std::time::Duration;
//!
//! use longhaul_core::job::Registry;
//! use longhaul_providers::HttpWebhook;
//! use longhaul_summarize::{Provider, SummarizePipeline};
//!
//! let webhook = HttpWebhook::new(Duration::from_secs(10)).expect("HTTP client");
//! let registry = Registry::new().pipeline(SummarizePipeline::new(Provider::default(), webhook)).unwrap();
//! assert_eq!(registry.queues().into_iter().collect::<Vec<_>>(), ["summarize"]);
//! ```

pub mod kind;
pub mod pipeline;
pub mod split;
pub mod summarizer;

pub use kind::{Summarize, SummarizeInput, SummarizeOutput};
pub use pipeline::SummarizePipeline;
pub use summarizer::{ExtractiveSummarizer, HttpSummarizer, MAX_SUMMARY_CHARS, Provider, Summarizer};
