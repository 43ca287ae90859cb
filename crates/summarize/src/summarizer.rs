//! Summarizers: the [`Summarizer`] trait, the limits every summary must respect
//! ([`validate_summary`]), the built-in offline [`ExtractiveSummarizer`], the OpenAI-compatible
//! [`HttpSummarizer`], and [`Provider`], the choice between them made at run time.

use std::collections::BTreeMap;
use std::future::Future;

use longhaul_core::{FailureCase, JobError};
use longhaul_providers::{ChatClient, ChatConfig};

use crate::split::sentences;

/// Longest summary, in characters, whatever made it.
pub const MAX_SUMMARY_CHARS: usize = 2_000;

/// Checks the limits every summary must respect: not blank, at most [`MAX_SUMMARY_CHARS`]
/// characters, no NUL (application storage on PostgreSQL cannot hold it).
///
/// # Errors
/// A message naming the violated limit.
pub fn validate_summary(summary: &str) -> Result<(), String> {
    if summary.contains('\0') {
        return Err("text must not contain NUL (\\u0000)".into());
    }
    if summary.trim().is_empty() {
        return Err("the summary is empty".into());
    }
    let len = summary.chars().count();
    if len > MAX_SUMMARY_CHARS {
        return Err(format!("the summary is {len} characters; at most {MAX_SUMMARY_CHARS} are allowed"));
    }
    Ok(())
}

/// Something that summarizes text.
pub trait Summarizer: Send + Sync {
    /// Summarizes `text` (one chunk of a document).
    ///
    /// # Errors
    /// A [`JobError`] classified per the retry table (timeouts retryable, bad answers invalid).
    fn summarize(&self, text: &str) -> impl Future<Output = Result<String, JobError>> + Send;

    /// Combines `partials`, the summaries of a document's chunks in order, into one summary of the
    /// document. By default, summarizes them joined as paragraphs.
    ///
    /// # Errors
    /// As [`Summarizer::summarize`].
    fn combine(&self, partials: &[String]) -> impl Future<Output = Result<String, JobError>> + Send {
        let joined = partials.join("\n\n");
        async move { self.summarize(&joined).await }
    }
}

impl<T: Summarizer + ?Sized> Summarizer for &T {
    fn summarize(&self, text: &str) -> impl Future<Output = Result<String, JobError>> + Send {
        (**self).summarize(text)
    }

    fn combine(&self, partials: &[String]) -> impl Future<Output = Result<String, JobError>> + Send {
        (**self).combine(partials)
    }
}

impl<T: Summarizer + ?Sized> Summarizer for std::sync::Arc<T> {
    fn summarize(&self, text: &str) -> impl Future<Output = Result<String, JobError>> + Send {
        (**self).summarize(text)
    }

    fn combine(&self, partials: &[String]) -> impl Future<Output = Result<String, JobError>> + Send {
        (**self).combine(partials)
    }
}

/// Words too common to say what a text is about.
const STOPWORDS: &[&str] = &[
    "about", "after", "all", "also", "and", "any", "are", "because", "been", "before", "but", "can", "could",
    "did", "does", "for", "from", "had", "has", "have", "her", "his", "how", "into", "its", "just", "more",
    "most", "not", "now", "only", "other", "our", "out", "over", "she", "should", "some", "such", "than",
    "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "through", "too",
    "under", "very", "was", "were", "what", "when", "where", "which", "while", "who", "why", "will", "with",
    "would", "you", "your",
];

/// The words of `sentence` that carry meaning: lowercase, letters and digits, at least three
/// characters, no stopwords.
fn content_words(sentence: &str) -> Vec<String> {
    sentence
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 3)
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// The built-in summarizer: extractive, deterministic and offline. It scores each sentence by how
/// frequent its content words are in the whole text (the mean frequency, so long sentences are not
/// favoured), keeps the best — earlier first on a tie, a repeated sentence once — in their
/// original order, and cuts the result at a word boundary to its length limit.
///
/// A chunk keeps half its sentences, at least 1 and at most `max_sentences` (default 2); combining
/// keeps the best `max_sentences + 1` of the partial summaries' sentences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractiveSummarizer {
    max_sentences: usize,
    max_chars: usize,
}

impl Default for ExtractiveSummarizer {
    fn default() -> Self {
        Self { max_sentences: 2, max_chars: 600 }
    }
}

impl ExtractiveSummarizer {
    /// Keeps up to 2 sentences per chunk, 600 characters at most.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps up to `n` sentences per chunk (at least 1).
    #[must_use]
    pub fn with_max_sentences(mut self, n: usize) -> Self {
        self.max_sentences = n.max(1);
        self
    }

    /// Cuts summaries to `n` characters (between 16 and [`MAX_SUMMARY_CHARS`]).
    #[must_use]
    pub fn with_max_chars(mut self, n: usize) -> Self {
        self.max_chars = n.clamp(16, MAX_SUMMARY_CHARS);
        self
    }

    /// The summary of `text`. Pure: the same text always gets the same summary. Empty for a text
    /// without words.
    pub fn summarize_now(&self, text: &str) -> String {
        self.extract(text, self.max_sentences, true)
    }

    /// The summary of a document whose chunks' summaries are `partials`, in order. Pure.
    pub fn combine_now(&self, partials: &[String]) -> String {
        self.extract(&partials.join("\n\n"), self.max_sentences + 1, false)
    }

    /// Up to `max_sentences` sentences of `text` (with `at_most_half`, no more than half of them,
    /// at least 1), cut to the length limit.
    fn extract(&self, text: &str, max_sentences: usize, at_most_half: bool) -> String {
        let all = sentences(text);
        if all.is_empty() {
            return String::new();
        }
        let words: Vec<Vec<String>> = all.iter().map(|s| content_words(s)).collect();
        let mut frequency: BTreeMap<&str, u64> = BTreeMap::new();
        for word in words.iter().flatten() {
            *frequency.entry(word.as_str()).or_default() += 1;
        }
        let score = |ws: &[String]| -> u64 {
            let total: u64 = ws.iter().map(|w| frequency.get(w.as_str()).copied().unwrap_or(0)).sum();
            // Mean frequency in thousandths; integers keep the ranking exact on every machine.
            total * 1000 / (ws.len() as u64).max(1)
        };
        let mut ranked: Vec<(u64, usize)> = words.iter().enumerate().map(|(i, ws)| (score(ws), i)).collect();
        ranked.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let available = if at_most_half { all.len() / 2 } else { all.len() };
        let keep = available.clamp(1, max_sentences.max(1));
        // The best sentences, a repeated one (say, the same line in several partial summaries)
        // only once.
        let mut chosen: Vec<usize> = Vec::with_capacity(keep);
        for &(_, i) in &ranked {
            if chosen.len() == keep {
                break;
            }
            if !chosen.iter().any(|&c| all[c].to_lowercase() == all[i].to_lowercase()) {
                chosen.push(i);
            }
        }
        chosen.sort_unstable();
        let summary = chosen.iter().map(|&i| all[i].as_str()).collect::<Vec<_>>().join(" ");
        cut(&summary, self.max_chars)
    }

    fn answer(summary: String) -> Result<String, JobError> {
        if summary.is_empty() {
            return Err(JobError::new(FailureCase::InvalidJobData, "the text has nothing to summarize"));
        }
        Ok(summary)
    }
}

/// `text` cut to at most `max` characters, at a word boundary when there is one, ending in `...`.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let room = max.saturating_sub(3);
    let head: String = text.chars().take(room).collect();
    let head = match head.rfind(' ') {
        Some(i) if i > 0 => head[..i].trim_end().to_owned(),
        _ => head,
    };
    format!("{head}...")
}

impl Summarizer for ExtractiveSummarizer {
    async fn summarize(&self, text: &str) -> Result<String, JobError> {
        Self::answer(self.summarize_now(text))
    }

    async fn combine(&self, partials: &[String]) -> Result<String, JobError> {
        Self::answer(self.combine_now(partials))
    }
}

/// The summary prompt: what [`HttpSummarizer`] asks for each chunk.
pub const SUMMARY_PROMPT: &str = "You summarize documents. Summarize the text the user sends in at most \
three sentences and at most 600 characters. Answer with the summary only: plain text, no preamble, \
no markdown.";

/// The combine prompt: what [`HttpSummarizer`] asks to combine the chunks' summaries.
pub const COMBINE_PROMPT: &str = "You combine summaries of consecutive parts of one document into one \
summary of the whole document, in at most five sentences and at most 1000 characters. Answer with \
the summary only: plain text, no preamble, no markdown.";

/// A summarizer that asks an OpenAI-compatible chat-completions endpoint. Its answer, trimmed, must
/// pass [`validate_summary`]; otherwise it is [`FailureCase::ProviderRejected`] (invalid).
#[derive(Debug, Clone)]
pub struct HttpSummarizer {
    chat: ChatClient,
}

impl HttpSummarizer {
    /// What errors call the provider.
    pub const PROVIDER_NAME: &'static str = "summary provider";

    /// A summarizer for `config`.
    ///
    /// # Errors
    /// A message when the base URL is not `http(s)://…`, the model is blank or the HTTP client
    /// cannot be built.
    pub fn new(config: ChatConfig) -> Result<Self, String> {
        Ok(Self::with_client(ChatClient::new(config)?))
    }

    /// A summarizer over an existing client (which it names [`HttpSummarizer::PROVIDER_NAME`]).
    pub fn with_client(chat: ChatClient) -> Self {
        Self { chat: chat.named(Self::PROVIDER_NAME) }
    }

    fn check(answer: &str) -> Result<String, JobError> {
        let summary = answer.trim();
        validate_summary(summary).map_err(|e| {
            JobError::new(
                FailureCase::ProviderRejected,
                format!("{} answer is out of bounds: {e}", Self::PROVIDER_NAME),
            )
        })?;
        Ok(summary.to_owned())
    }
}

impl Summarizer for HttpSummarizer {
    async fn summarize(&self, text: &str) -> Result<String, JobError> {
        Self::check(&self.chat.complete(SUMMARY_PROMPT, text).await?)
    }

    /// Asks the provider with [`COMBINE_PROMPT`], the parts numbered in order.
    async fn combine(&self, partials: &[String]) -> Result<String, JobError> {
        let parts: Vec<String> =
            partials.iter().enumerate().map(|(i, p)| format!("Part {}:\n{p}", i + 1)).collect();
        Self::check(&self.chat.complete(COMBINE_PROMPT, &parts.join("\n\n")).await?)
    }
}

/// A summarizer chosen at run time.
#[derive(Debug, Clone)]
pub enum Provider {
    /// The built-in extractive summarizer (offline).
    Extractive(ExtractiveSummarizer),
    /// An OpenAI-compatible endpoint.
    Http(HttpSummarizer),
}

impl Default for Provider {
    fn default() -> Self {
        Self::Extractive(ExtractiveSummarizer::default())
    }
}

impl Summarizer for Provider {
    async fn summarize(&self, text: &str) -> Result<String, JobError> {
        match self {
            Self::Extractive(s) => s.summarize(text).await,
            Self::Http(s) => s.summarize(text).await,
        }
    }

    async fn combine(&self, partials: &[String]) -> Result<String, JobError> {
        match self {
            Self::Extractive(s) => s.combine(partials).await,
            Self::Http(s) => s.combine(partials).await,
        }
    }
}

#[cfg(test)]
mod tests;
