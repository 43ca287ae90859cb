//! The tenant webhook: [`WebhookSender`], what a pipeline delivers its events through, and
//! [`HttpWebhook`], which POSTs them with `Idempotency-Key: <operation id>`.
//!
//! Besides what [`crate::http`] retries (timeouts, connection errors, 429, 5xx), a receiver's
//! 409 Conflict and 425 Too Early are retryable: a receiver following the IETF Idempotency-Key
//! draft answers them while a request with the same key is still in progress (a delivery that
//! timed out is re-sent while the receiver is still working on it). Any other 4xx is invalid.

use std::future::Future;
use std::time::Duration;

use longhaul_core::{JobError, OperationId};
use serde_json::{Value, json};

use crate::http;

/// The 4xx statuses a webhook receiver answers while a request with the same `Idempotency-Key` is
/// still in progress (409 Conflict, 425 Too Early): the effect may well be applied, so the delivery
/// is retried rather than failed.
pub const WEBHOOK_IN_PROGRESS: &[u16] = &[409, 425];

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
    ) -> impl Future<Output = Result<Value, JobError>> + Send;
}

impl<T: WebhookSender + ?Sized> WebhookSender for &T {
    fn deliver(
        &self,
        url: &str,
        op: &OperationId,
        payload: &Value,
    ) -> impl Future<Output = Result<Value, JobError>> + Send {
        (**self).deliver(url, op, payload)
    }
}

impl<T: WebhookSender + ?Sized> WebhookSender for std::sync::Arc<T> {
    fn deliver(
        &self,
        url: &str,
        op: &OperationId,
        payload: &Value,
    ) -> impl Future<Output = Result<Value, JobError>> + Send {
        (**self).deliver(url, op, payload)
    }
}

/// The webhook sender over HTTP. A receiver's 409 and 425 (a request with the same key still in
/// progress) are retryable, as are timeouts, 429 and 5xx; any other 4xx is invalid. Its stored
/// result is `{"delivered": true, "response_bytes": n}`.
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
        Ok(Self { client: http::client(timeout)? })
    }
}

impl WebhookSender for HttpWebhook {
    async fn deliver(&self, url: &str, op: &OperationId, payload: &Value) -> Result<Value, JobError> {
        let request = self.client.post(url).header("Idempotency-Key", op.as_str()).json(payload);
        let body = http::send("webhook receiver", request, WEBHOOK_IN_PROGRESS).await?;
        Ok(json!({ "delivered": true, "response_bytes": body.len() }))
    }
}
