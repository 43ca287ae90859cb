//! An example of a user's project on longhaul: **contact enrichment**. A job takes an email
//! address, looks the person up at an enrichment provider (an HTTP API — a side effect that costs
//! money, so it runs at most once per job as a durable step), scores their seniority, and stores
//! the result. Everything here uses longhaul's public API only:
//!
//! - [`EnrichContact`] — the kind: name, typed input and output, stages, queue and limits, the key
//!   derived from the input (one job per address) and validation that names the field;
//! - [`EnrichPipeline`] — the code that runs it, on a [`Ctx`];
//! - `src/bin/enrich-worker.rs` and `src/bin/enrich-producer.rs` — the project's own binaries: a
//!   few lines each around longhaul's start-up path.

use std::time::Duration;

use longhaul_core::kind::{InputError, JobKind, KindOptions, Stage};
use longhaul_core::{Ctx, FailureCase, JobError, OperationId, Pipeline};
use serde::{Deserialize, Serialize};

/// The kind: `{email}` in, [`Enriched`] out, on queue `enrichment`.
#[derive(Debug, Clone, Copy)]
pub struct EnrichContact;

/// What a job is submitted with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    /// The address to enrich.
    pub email: String,
}

/// What a completed job stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enriched {
    /// The address.
    pub email: String,
    /// The person's company, as the provider knows it.
    pub company: String,
    /// Their job title.
    pub title: String,
    /// `executive`, `senior` or `individual`, scored from the title.
    pub seniority: String,
}

/// What the provider answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    /// Company.
    pub company: String,
    /// Job title.
    pub title: String,
}

const STAGES: &[Stage] = &[Stage::new("lookup", 3), Stage::new("score", 1)];

impl JobKind for EnrichContact {
    const NAME: &'static str = "enrich-contact";
    type Input = ContactInput;
    type Output = Enriched;

    fn options() -> KindOptions {
        KindOptions::new("enrichment", STAGES)
            .with_max_attempts(4)
            .with_backoff(Duration::from_millis(200), Duration::from_secs(5))
            .with_stage_timeout(Duration::from_secs(30))
            .with_deadline(Duration::from_secs(600))
    }

    /// One job per address: submitting it again finds the job.
    fn key(input: &ContactInput) -> Option<String> {
        Some(input.email.trim().to_owned())
    }

    /// Written out (a kind whose input derives `utoipa::ToSchema` can return
    /// `longhaul_core::kind::schema_of::<Input>()` instead): the producer's OpenAPI document shows
    /// it as `EnrichContactInput`.
    fn input_schema() -> serde_json::Value {
        serde_json::json!({
            "type": "object",
            "description": "A contact to enrich.",
            "properties": {
                "email": {
                    "type": "string",
                    "maxLength": 254,
                    "description": "The address to enrich, like ada@example.com.",
                },
            },
            "required": ["email"],
            "additionalProperties": false,
        })
    }

    fn validate(input: &ContactInput) -> Result<(), InputError> {
        let email = input.email.trim();
        let valid = email.len() <= 254
            && email.split_once('@').is_some_and(|(user, domain)| !user.is_empty() && domain.contains('.'));
        if valid {
            Ok(())
        } else {
            Err(InputError::new("email", "must be an email address like ada@example.com"))
        }
    }
}

/// The pipeline: looks the person up (a durable step), then scores them.
#[derive(Debug, Clone)]
pub struct EnrichPipeline {
    client: reqwest::Client,
    provider: String,
}

impl EnrichPipeline {
    /// A pipeline calling the enrichment provider at `provider` (its base URL).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(provider: impl Into<String>) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { client, provider: provider.into() })
    }

    /// `POST {provider}/people/lookup` `{"email": …}` with the operation id as `Idempotency-Key`;
    /// the provider's failures are classified with longhaul's retry table.
    async fn lookup(&self, op: OperationId, email: &str) -> Result<Person, JobError> {
        let url = format!("{}/people/lookup", self.provider.trim_end_matches('/'));
        let response = self
            .client
            .post(url)
            .json(&serde_json::json!({ "email": email }))
            .header("Idempotency-Key", op.as_str())
            .send()
            .await
            .map_err(|e| JobError::new(FailureCase::ProviderUnreachable, format!("provider: {e}")))?;
        let status = response.status();
        if status.as_u16() == 429 {
            return Err(JobError::new(FailureCase::ProviderRateLimited, "provider answered 429"));
        }
        if status.is_server_error() {
            return Err(JobError::new(
                FailureCase::ProviderUnavailable,
                format!("provider answered {status}"),
            ));
        }
        if status.as_u16() == 404 {
            return Err(JobError::new(FailureCase::InvalidJobData, format!("the provider knows no {email}")));
        }
        if !status.is_success() {
            return Err(JobError::new(FailureCase::ProviderRejected, format!("provider answered {status}")));
        }
        response
            .json::<Person>()
            .await
            .map_err(|e| JobError::new(FailureCase::ProviderRejected, format!("provider answer: {e}")))
    }
}

/// `executive`, `senior` or `individual`, from a job title.
pub fn seniority(title: &str) -> &'static str {
    let title = title.to_lowercase();
    if ["chief", "ceo", "cto", "vp", "president", "founder"].iter().any(|w| title.contains(w)) {
        "executive"
    } else if ["senior", "lead", "principal", "head", "staff"].iter().any(|w| title.contains(w)) {
        "senior"
    } else {
        "individual"
    }
}

impl Pipeline for EnrichPipeline {
    type Kind = EnrichContact;

    async fn run(&self, ctx: &Ctx, input: ContactInput) -> Result<Enriched, JobError> {
        let email = input.email.trim().to_lowercase();
        // A durable step: a retry after this stage finished reuses the stored answer instead of
        // paying the provider again.
        let person: Person = ctx.stage("lookup", ctx.effect("lookup", |op| self.lookup(op, &email))).await?;
        let seniority = ctx.stage("score", async { Ok(seniority(&person.title)) }).await?;
        Ok(Enriched { email, company: person.company, title: person.title, seniority: seniority.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use longhaul_core::{IdempotencyKey, TenantId};
    use serde_json::json;

    use super::*;

    #[test]
    fn the_input_is_validated_and_keyed_by_address() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let prepare =
            |input| longhaul_core::kind::prepare::<EnrichContact>(&tenant, input, None, || "r".into());
        let a = prepare(json!({"email": "ada@example.com"})).expect("valid");
        let b = prepare(json!({"email": "ada@example.com"})).expect("valid");
        assert_eq!(a.job_id, b.job_id, "one job per address");
        let other = prepare(json!({"email": "bob@example.com"})).expect("valid");
        assert_ne!(a.job_id, other.job_id);
        let err = prepare(json!({"email": "not an address"})).expect_err("invalid");
        assert_eq!(err.field, "input.email");
        let err = prepare(json!({"mail": "ada@example.com"})).expect_err("unknown field");
        assert_eq!(err.field, "input.mail");
        let keyed = longhaul_core::kind::prepare::<EnrichContact>(
            &tenant,
            json!({"email": "ada@example.com"}),
            Some(IdempotencyKey::parse("k").expect("key")),
            || "r".into(),
        )
        .expect("valid");
        assert_ne!(keyed.job_id, a.job_id, "a client key makes its own job");
    }

    #[test]
    fn the_producers_document_shows_the_input_schema() {
        let registry = longhaul_core::Registry::new().kind::<EnrichContact>().expect("the kind");
        let doc = longhaul_producer::openapi::document(&registry);
        let schemas = &doc["components"]["schemas"];
        assert_eq!(schemas["EnrichContactInput"], EnrichContact::input_schema());
        let variant = &schemas["EnrichContactJobRequest"]["properties"];
        assert_eq!(variant["kind"]["enum"], json!(["enrich-contact"]));
        assert_eq!(variant["input"]["$ref"], "#/components/schemas/EnrichContactInput");
    }

    #[test]
    fn seniority_is_scored_from_the_title() {
        assert_eq!(seniority("VP Engineering"), "executive");
        assert_eq!(seniority("Senior Accountant"), "senior");
        assert_eq!(seniority("Analyst"), "individual");
    }
}
