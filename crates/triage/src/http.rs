//! The HTTP edges of the pipeline: an OpenAI-compatible chat-completions classifier and the
//! tenant webhook. Both map transport and status failures onto the retry table:
//! timeout, connection error, 429 and 5xx are retryable (honouring `Retry-After` in seconds); any
//! other 4xx, an oversized answer or an answer outside the contract is invalid — except that a
//! webhook receiver's 409 Conflict and 425 Too Early are retryable too: a receiver following the
//! IETF Idempotency-Key draft answers them while a request with the same key is still in progress
//! (a delivery that timed out is re-sent while the receiver is still working on it).

use std::time::Duration;

use longhaul_core::{FailureCase, JobError, OperationId};

use crate::TicketView;
use serde_json::{Value, json};

use crate::classify::{Classification, Classifier, parse_classification};

/// Largest response body read from a provider or webhook receiver.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

const SYSTEM_PROMPT: &str = "You triage customer support tickets. Answer with one JSON object and nothing else: \
{\"category\": one of \"billing\", \"bug\", \"account\", \"feature_request\", \"outage\", \"general\"; \
\"priority\": one of \"low\", \"normal\", \"high\", \"urgent\"; \"labels\": up to 10 short lowercase strings; \
\"summary\": one line of at most 300 characters}.";

/// The error message without the URL (it may carry credentials in its query string).
fn message_without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    msg
}

/// Reads a body up to [`MAX_RESPONSE_BYTES`].
async fn read_body(what: &str, mut response: reqwest::Response) -> Result<Vec<u8>, JobError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(JobError::new(
                        FailureCase::ProviderRejected,
                        format!("{what} answered more than {MAX_RESPONSE_BYTES} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(classify_transport(what, &e)),
        }
    }
}

fn classify_transport(what: &str, e: &reqwest::Error) -> JobError {
    let msg = message_without_url(e);
    if e.is_timeout() {
        JobError::new(FailureCase::ProviderTimeout, format!("{what} timed out"))
    } else if e.is_connect() {
        JobError::new(FailureCase::ProviderUnreachable, format!("{what} is unreachable: {msg}"))
    } else if e.is_builder() {
        JobError::new(FailureCase::ProviderRejected, format!("{what}: invalid request: {msg}"))
    } else {
        JobError::new(FailureCase::ProviderUnreachable, format!("{what} failed: {msg}"))
    }
}

/// The 4xx statuses a webhook receiver answers while a request with the same `Idempotency-Key` is
/// still in progress (409 Conflict, 425 Too Early): the effect may well be applied, so the delivery
/// is retried rather than failed.
const WEBHOOK_IN_PROGRESS: &[u16] = &[409, 425];

/// Maps a non-success status onto the retry table; `in_progress` lists the 4xx statuses that mean
/// "try again later" at this edge.
fn status_error(
    what: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    in_progress: &[u16],
) -> JobError {
    let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let message = format!("{what} answered {status}: {excerpt}");
    let case = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        FailureCase::ProviderRateLimited
    } else if status.is_server_error() || in_progress.contains(&status.as_u16()) {
        FailureCase::ProviderUnavailable
    } else {
        FailureCase::ProviderRejected
    };
    let error = JobError::new(case, message);
    match retry_after {
        Some(delay) if case != FailureCase::ProviderRejected => error.with_retry_after(delay),
        _ => error,
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies instead).
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s.min(3600)))
}

/// Sends `request`, checks the status (`in_progress` as in [`status_error`]), returns the body.
async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
    in_progress: &[u16],
) -> Result<Vec<u8>, JobError> {
    let response = request.send().await.map_err(|e| classify_transport(what, &e))?;
    let status = response.status();
    let delay = retry_after(&response);
    let body = read_body(what, response).await?;
    if status.is_success() { Ok(body) } else { Err(status_error(what, status, delay, &body, in_progress)) }
}

/// Settings of the OpenAI-compatible provider.
#[derive(Clone)]
pub struct HttpClassifierConfig {
    /// Base URL, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// The API key, sent as a bearer token.
    pub api_key: Option<String>,
    /// Limit on each request, connection included.
    pub timeout: Duration,
}

impl std::fmt::Debug for HttpClassifierConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClassifierConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A classifier that asks an OpenAI-compatible chat-completions endpoint for a JSON answer.
#[derive(Debug, Clone)]
pub struct HttpClassifier {
    client: reqwest::Client,
    url: String,
    config: HttpClassifierConfig,
}

impl HttpClassifier {
    /// A classifier for `config`.
    ///
    /// # Errors
    /// A message when the base URL is not `http(s)://…` or the HTTP client cannot be built.
    pub fn new(config: HttpClassifierConfig) -> Result<Self, String> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("provider base URL must start with http:// or https://, got {base:?}"));
        }
        if config.model.trim().is_empty() {
            return Err("provider model must not be empty".into());
        }
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client, url: format!("{base}/chat/completions"), config })
    }
}

impl Classifier for HttpClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        let body = json!({
            "model": self.config.model,
            "temperature": 0,
            "response_format": { "type": "json_object" },
            "messages": [
                { "role": "system", "content": SYSTEM_PROMPT },
                { "role": "user", "content": format!("Subject: {}\n\n{}", ticket.subject, ticket.body) },
            ],
        });
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let raw = send("classification provider", request, &[]).await?;
        let reply: Value = serde_json::from_slice(&raw).map_err(|e| {
            JobError::new(
                FailureCase::ProviderRejected,
                format!("classification provider answered invalid JSON: {e}"),
            )
        })?;
        let content =
            reply.pointer("/choices/0/message/content").and_then(Value::as_str).ok_or_else(|| {
                JobError::new(
                    FailureCase::ProviderRejected,
                    "classification provider answer has no choices[0].message.content",
                )
            })?;
        parse_classification(content)
    }
}

/// Delivers a tenant's webhook.
pub trait WebhookSender: Send + Sync {
    /// POSTs `payload` to `url` with `Idempotency-Key: <op>`; returns what to store as the
    /// effect's result.
    ///
    /// # Errors
    /// A [`JobError`] classified per the retry table.
    fn deliver(
        &self,
        url: &str,
        op: &OperationId,
        payload: &Value,
    ) -> impl std::future::Future<Output = Result<Value, JobError>> + Send;
}

impl<T: WebhookSender + ?Sized> WebhookSender for &T {
    fn deliver(
        &self,
        url: &str,
        op: &OperationId,
        payload: &Value,
    ) -> impl std::future::Future<Output = Result<Value, JobError>> + Send {
        (**self).deliver(url, op, payload)
    }
}

/// The webhook sender over HTTP. A receiver's 409 and 425 (a request with the same key still in
/// progress) are retryable, as are timeouts, 429 and 5xx; any other 4xx is invalid.
#[derive(Debug, Clone)]
pub struct HttpWebhook {
    client: reqwest::Client,
}

impl HttpWebhook {
    /// A sender whose requests time out after `timeout`.
    ///
    /// # Errors
    /// A message when the HTTP client cannot be built.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Self { client })
    }
}

impl WebhookSender for HttpWebhook {
    async fn deliver(&self, url: &str, op: &OperationId, payload: &Value) -> Result<Value, JobError> {
        let request = self.client.post(url).header("Idempotency-Key", op.as_str()).json(payload);
        let body = send("webhook receiver", request, WEBHOOK_IN_PROGRESS).await?;
        Ok(json!({ "delivered": true, "response_bytes": body.len() }))
    }
}
