//! An OpenAI-compatible chat-completions client: [`ChatClient`] sends one system and one user
//! message and returns the answer's `choices[0].message.content`. What the content must say is the
//! caller's contract (a classification, a summary); this module only checks the envelope. Failures
//! map onto the retry table as [`crate::http`] describes; no 4xx other than 429 is retried.

use std::time::Duration;

use longhaul_core::{FailureCase, JobError};
use serde_json::{Value, json};

use crate::http;

/// Settings of an OpenAI-compatible provider.
#[derive(Clone)]
pub struct ChatConfig {
    /// Base URL, e.g. `https://api.openai.com/v1`; `/chat/completions` is appended.
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// The API key, sent as a bearer token.
    pub api_key: Option<String>,
    /// Limit on each request, connection included.
    pub timeout: Duration,
}

impl std::fmt::Debug for ChatConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A client of an OpenAI-compatible chat-completions endpoint. Cheap to clone (the connection
/// pool is shared).
#[derive(Debug, Clone)]
pub struct ChatClient {
    client: reqwest::Client,
    url: String,
    config: ChatConfig,
    name: &'static str,
}

impl ChatClient {
    /// What errors call the endpoint unless [`ChatClient::named`] says otherwise.
    pub const DEFAULT_NAME: &'static str = "chat provider";

    /// A client for `config`.
    ///
    /// # Errors
    /// A message when the base URL is not `http(s)://…`, the model is blank or the HTTP client
    /// cannot be built.
    pub fn new(config: ChatConfig) -> Result<Self, String> {
        let base = config.base_url.trim_end_matches('/');
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(format!("provider base URL must start with http:// or https://, got {base:?}"));
        }
        if config.model.trim().is_empty() {
            return Err("provider model must not be empty".into());
        }
        let client = http::client(config.timeout)?;
        Ok(Self { client, url: format!("{base}/chat/completions"), config, name: Self::DEFAULT_NAME })
    }

    /// The same client, called `name` in error messages (e.g. "classification provider").
    #[must_use]
    pub fn named(mut self, name: &'static str) -> Self {
        self.name = name;
        self
    }

    /// Its settings.
    pub fn config(&self) -> &ChatConfig {
        &self.config
    }

    /// Asks for a free-text answer to `user` under the instructions `system` (temperature 0) and
    /// returns the answer's message content, unchecked.
    ///
    /// # Errors
    /// A [`JobError`] per the retry table; an answer that is not JSON or has no string
    /// `choices[0].message.content` is [`FailureCase::ProviderRejected`].
    pub async fn complete(&self, system: &str, user: &str) -> Result<String, JobError> {
        self.request(system, user, false).await
    }

    /// As [`ChatClient::complete`], asking for a JSON object (`response_format: json_object`).
    ///
    /// # Errors
    /// As [`ChatClient::complete`]; the content is not checked to be JSON.
    pub async fn complete_json(&self, system: &str, user: &str) -> Result<String, JobError> {
        self.request(system, user, true).await
    }

    async fn request(&self, system: &str, user: &str, json_object: bool) -> Result<String, JobError> {
        let mut body = json!({
            "model": self.config.model,
            "temperature": 0,
            "messages": [
                { "role": "system", "content": system },
                { "role": "user", "content": user },
            ],
        });
        if json_object {
            body["response_format"] = json!({ "type": "json_object" });
        }
        let mut request = self.client.post(&self.url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let what = self.name;
        let raw = http::send(what, request, &[]).await?;
        let mut reply: Value = serde_json::from_slice(&raw).map_err(|e| {
            JobError::new(FailureCase::ProviderRejected, format!("{what} answered invalid JSON: {e}"))
        })?;
        match reply.pointer_mut("/choices/0/message/content").map(Value::take) {
            Some(Value::String(content)) => Ok(content),
            _ => Err(JobError::new(
                FailureCase::ProviderRejected,
                format!("{what} answer has no choices[0].message.content"),
            )),
        }
    }
}
