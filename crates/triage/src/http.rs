//! The triage pipeline's HTTP edges: the OpenAI-compatible classifier, a thin [`HttpClassifier`]
//! over `longhaul-providers`' [`ChatClient`] that owns triage's system prompt and checks the
//! answer with [`parse_classification`]. The mapping of transport and status failures onto the
//! retry table, bounded body reading and the tenant webhook ([`HttpWebhook`], [`WebhookSender`])
//! live in `longhaul-providers` and are re-exported here.

use longhaul_core::JobError;
use longhaul_providers::ChatClient;
pub use longhaul_providers::{HttpWebhook, MAX_RESPONSE_BYTES, WebhookSender};

use crate::TicketView;

use crate::classify::{Classification, Classifier, parse_classification};

/// Settings of the OpenAI-compatible provider (the shared chat client's).
pub type HttpClassifierConfig = longhaul_providers::ChatConfig;

/// What errors call the provider.
const PROVIDER_NAME: &str = "classification provider";

const SYSTEM_PROMPT: &str = "You triage customer support tickets. Answer with one JSON object and nothing else: \
{\"category\": one of \"billing\", \"bug\", \"account\", \"feature_request\", \"outage\", \"general\"; \
\"priority\": one of \"low\", \"normal\", \"high\", \"urgent\"; \"labels\": up to 10 short lowercase strings; \
\"summary\": one line of at most 300 characters}.";

/// A classifier that asks an OpenAI-compatible chat-completions endpoint for a JSON answer.
#[derive(Debug, Clone)]
pub struct HttpClassifier {
    chat: ChatClient,
}

impl HttpClassifier {
    /// A classifier for `config`.
    ///
    /// # Errors
    /// A message when the base URL is not `http(s)://…`, the model is blank or the HTTP client
    /// cannot be built.
    pub fn new(config: HttpClassifierConfig) -> Result<Self, String> {
        Ok(Self { chat: ChatClient::new(config)?.named(PROVIDER_NAME) })
    }

    /// Classifies a ticket given its subject and body.
    ///
    /// # Errors
    /// A [`JobError`] per the retry table; an answer that is not a valid classification is
    /// invalid.
    pub async fn classify_text(&self, subject: &str, body: &str) -> Result<Classification, JobError> {
        let content =
            self.chat.complete_json(SYSTEM_PROMPT, &format!("Subject: {subject}\n\n{body}")).await?;
        parse_classification(&content)
    }
}

impl Classifier for HttpClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        self.classify_text(&ticket.subject, &ticket.body).await
    }
}
