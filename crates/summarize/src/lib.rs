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

pub mod kind;
pub mod split;
pub mod summarizer;

pub use kind::{Summarize, SummarizeInput, SummarizeOutput};
pub use summarizer::{ExtractiveSummarizer, HttpSummarizer, MAX_SUMMARY_CHARS, Provider, Summarizer};
