//! `longhaul-providers`: the HTTP edges every pipeline shares.
//!
//! - [`http`] — sending a request and mapping its failures onto the retry table: timeouts,
//!   connection errors, 429 and 5xx are retryable (honouring `Retry-After` in seconds); any other
//!   4xx, an oversized body or an answer outside the contract is invalid. Bodies are read up to
//!   [`MAX_RESPONSE_BYTES`]; URLs never appear in error messages.
//! - [`chat`] — [`ChatClient`], an OpenAI-compatible chat-completions client: a system and a user
//!   message in, the answer's message content out.
//! - [`webhook`] — [`WebhookSender`] and its HTTP implementation [`HttpWebhook`], which sends the
//!   operation id as `Idempotency-Key` and retries a receiver's 409 and 425 (a request with the
//!   same key still in progress).
//!
//! Every error is a [`longhaul_core::JobError`] whose case decides whether the job is retried.

pub mod chat;
pub mod http;
pub mod webhook;

pub use chat::{ChatClient, ChatConfig};
pub use http::MAX_RESPONSE_BYTES;
pub use webhook::{HttpWebhook, WebhookSender};

/// The HTTP client library the edges are built on (its types appear in [`http`]'s functions).
pub use reqwest;
