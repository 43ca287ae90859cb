//! The `summarize` job kind: its input and output, stages, queue and limits, how a submission is
//! validated (errors name the field) and the key its job id is derived from.

use std::time::Duration;

use longhaul_core::kind::{InputError, JobKind, KindOptions, Stage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::split::split;

/// The split stage: the text into chunks.
pub const STAGE_SPLIT: &str = "split";
/// The summarize stage: one durable step per chunk.
pub const STAGE_SUMMARIZE: &str = "summarize";
/// The combine stage: the partial summaries into one.
pub const STAGE_COMBINE: &str = "combine";
/// The deliver stage: the tenant's webhook, when its tenant has one.
pub const STAGE_DELIVER: &str = "deliver";
/// The combine stage's durable step.
pub const STEP_COMBINE: &str = "combine";
/// The deliver stage's durable step; its operation id is the delivery's `Idempotency-Key`.
pub const STEP_WEBHOOK: &str = "webhook";
/// The webhook's `event`.
pub const EVENT_SUMMARIZED: &str = "document.summarized";

/// The stages and their weights: summarizing the chunks is most of the work.
pub const STAGES: &[Stage] = &[
    Stage::new(STAGE_SPLIT, 1),
    Stage::new(STAGE_SUMMARIZE, 8),
    Stage::new(STAGE_COMBINE, 1),
    Stage::new(STAGE_DELIVER, 1),
];

/// The queue summarize jobs go to.
pub const QUEUE: &str = "summarize";
/// Longest a stage may run. A summarize stage past it loses nothing: the next attempt resumes at
/// the first chunk without a stored summary.
pub const STAGE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Longest a job may take from its submission to its end.
pub const DEADLINE: Duration = Duration::from_secs(60 * 60);
/// Attempts allowed in all.
pub const MAX_ATTEMPTS: u32 = 8;

/// Longest document id, in characters.
pub const MAX_DOCUMENT_ID_LEN: usize = 128;
/// Largest text, in bytes (UTF-8).
pub const MAX_TEXT_BYTES: usize = 1 << 20;
/// Chunk size when the input sets none, in characters.
pub const DEFAULT_CHUNK_CHARS: u32 = 2_000;
/// Smallest chunk size a submission may ask for.
pub const MIN_CHUNK_CHARS: u32 = 200;
/// Largest chunk size a submission may ask for (what fits a small model's context).
pub const MAX_CHUNK_CHARS: u32 = 16_000;
/// Most chunks a document may split into: each is one provider call. At [`MAX_CHUNK_CHARS`] the
/// largest text stays well under it.
pub const MAX_CHUNKS: usize = 256;

/// The step name of chunk `index`'s summary (0-based): `chunk-{index}`.
pub fn chunk_step(index: usize) -> String {
    format!("chunk-{index}")
}

/// The `summarize` kind: a document's text in, a short summary out, delivered to the tenant's
/// webhook when an operator configured one for the tenant (`producer tenant create
/// --webhook-url`); a submission cannot name where results go. Its derived key is the document id
/// and the SHA-256 of the text, so resubmitting the same text of a document is the same job and an
/// edited document is a new one.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summarize;

/// What a summarize submission carries (the `input` of `POST /v1/jobs`). Its OpenAPI schema
/// states the bounds of [`JobKind::validate`]: [`MAX_DOCUMENT_ID_LEN`], [`MAX_TEXT_BYTES`],
/// [`MIN_CHUNK_CHARS`]–[`MAX_CHUNK_CHARS`], default [`DEFAULT_CHUNK_CHARS`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(description = "The input of a `summarize` job: a document's text. The same text of the same \
    document is the same job; the text may split into at most 256 chunks.")]
pub struct SummarizeInput {
    /// The document: 1–128 characters from the safe set (ASCII letters, digits, `-`, `_`, `.`,
    /// `:`, starting with a letter or digit).
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    pub document_id: String,
    /// Its text: not blank, at most 1 MiB (1 048 576 bytes of UTF-8), no NUL.
    #[schema(min_length = 1, max_length = 1_048_576)]
    pub text: String,
    /// Largest chunk, in characters: 200 to 16 000 (default 2 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 200, maximum = 16_000, default = 2_000)]
    pub chunk_chars: Option<u32>,
}

impl SummarizeInput {
    /// The chunk size this input asks for, or the default.
    pub fn chunk_chars(&self) -> usize {
        self.chunk_chars.unwrap_or(DEFAULT_CHUNK_CHARS) as usize
    }

    /// The text's chunks (see [`crate::split`]).
    pub fn chunks(&self) -> Vec<String> {
        split(&self.text, self.chunk_chars())
    }
}

/// What a completed summarize job stores as its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummarizeOutput {
    /// The document.
    pub document_id: String,
    /// How many chunks its text was split into.
    pub chunks: u32,
    /// The summary.
    pub summary: String,
    /// The webhook delivery's stored result, when the job's tenant has a webhook.
    pub webhook: Option<Value>,
}

/// Checks a document id: 1–[`MAX_DOCUMENT_ID_LEN`] characters from the safe set.
fn check_document_id(id: &str) -> Result<(), String> {
    let len = id.chars().count();
    if len == 0 || len > MAX_DOCUMENT_ID_LEN {
        return Err(format!("must be 1–{MAX_DOCUMENT_ID_LEN} characters, got {len}"));
    }
    for (index, ch) in id.chars().enumerate() {
        let ok = ch.is_ascii_alphanumeric() || (index > 0 && matches!(ch, '-' | '_' | '.' | ':'));
        if !ok {
            return Err(format!(
                "character {ch:?} at {index} is not allowed: ASCII letters, digits, '-', '_', '.' and ':', \
                 starting with a letter or digit"
            ));
        }
    }
    Ok(())
}

/// Checks a text: not blank, bounded, no NUL (storage on PostgreSQL cannot hold it, and every
/// summary is taken from it or made of it).
fn check_text(text: &str) -> Result<(), String> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(format!("is {} bytes; at most {MAX_TEXT_BYTES} are allowed", text.len()));
    }
    if text.trim().is_empty() {
        return Err("must not be empty or blank".into());
    }
    if text.contains('\0') {
        return Err("must not contain NUL (\\u0000)".into());
    }
    Ok(())
}

impl JobKind for Summarize {
    const NAME: &'static str = "summarize";
    type Input = SummarizeInput;
    type Output = SummarizeOutput;

    fn options() -> KindOptions {
        KindOptions::new(QUEUE, STAGES)
            .with_max_attempts(MAX_ATTEMPTS)
            .with_stage_timeout(STAGE_TIMEOUT)
            .with_deadline(DEADLINE)
    }

    /// `<document_id>:<SHA-256 of the text, hex>`.
    fn key(input: &SummarizeInput) -> Option<String> {
        let digest = Sha256::digest(input.text.as_bytes());
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        Some(format!("{}:{hex}", input.document_id))
    }

    fn input_schema() -> Value {
        longhaul_core::kind::schema_of::<SummarizeInput>()
    }

    fn validate(input: &SummarizeInput) -> Result<(), InputError> {
        check_document_id(&input.document_id).map_err(|e| InputError::new("document_id", e))?;
        check_text(&input.text).map_err(|e| InputError::new("text", e))?;
        if let Some(n) = input.chunk_chars
            && !(MIN_CHUNK_CHARS..=MAX_CHUNK_CHARS).contains(&n)
        {
            return Err(InputError::new(
                "chunk_chars",
                format!("must be {MIN_CHUNK_CHARS}–{MAX_CHUNK_CHARS}, got {n}"),
            ));
        }
        let chunks = input.chunks().len();
        if chunks > MAX_CHUNKS {
            return Err(InputError::new(
                "text",
                format!(
                    "splits into {chunks} chunks of at most {} characters; at most {MAX_CHUNKS} are \
                     allowed (raise chunk_chars, up to {MAX_CHUNK_CHARS})",
                    input.chunk_chars()
                ),
            ));
        }
        Ok(())
    }
}
