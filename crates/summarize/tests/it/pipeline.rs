//! The pipeline with the offline summarizer: stages and progress, the tenant's webhook across
//! retries, and summaries out of bounds.

use std::sync::Arc;
use std::time::Duration;

use longhaul_core::{ErrorClass, FailureCase, JobError, OperationId};
use longhaul_providers::HttpWebhook;
use longhaul_summarize::kind::chunk_step;
use longhaul_summarize::split::split;
use longhaul_summarize::{ExtractiveSummarizer, Provider, SummarizeOutput, Summarizer};
use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::fakes::{Counting, Harness, Tenants, job_id};

/// A document of `n` paragraphs, each too long to share a chunk of 200 characters.
pub fn document(n: usize) -> String {
    (1..=n)
        .map(|i| {
            format!(
                "Section {i} describes the harbour crane number {i}. The crane lifts containers all day. \
                 Its operators log every lift of crane {i}."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn webhook() -> HttpWebhook {
    HttpWebhook::new(Duration::from_secs(5)).expect("webhook")
}

fn output(value: Value) -> SummarizeOutput {
    serde_json::from_value(value).expect("a summarize output")
}

#[tokio::test]
async fn a_document_is_split_summarized_and_combined() {
    let h = Harness::new(Provider::default(), webhook());
    let input = json!({"document_id": "doc-1", "text": document(4), "chunk_chars": 200});
    let out = output(h.run(1, &input).await.expect("completes"));
    assert_eq!(out.document_id, "doc-1");
    assert_eq!(out.chunks, 4);
    assert_eq!(out.webhook, None, "the tenant has no webhook: no delivery");
    let extractive = ExtractiveSummarizer::new();
    let partials: Vec<String> =
        split(&document(4), 200).iter().map(|chunk| extractive.summarize_now(chunk)).collect();
    assert_eq!(out.summary, extractive.combine_now(&partials), "the chunks' summaries, combined");
    assert!(out.summary.contains("crane"), "{}", out.summary);
    assert_eq!(h.log.done(), 5, "four chunks and the combined summary are stored");

    let events = h.events.all();
    let started: Vec<_> = events.iter().filter(|e| e.what == "started").map(|e| e.stage.as_str()).collect();
    assert_eq!(started, ["split", "summarize", "combine", "deliver"]);
    let percents: Vec<u8> = events.iter().map(|e| e.percent).collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "progress never goes back: {percents:?}");
    assert_eq!(percents.last(), Some(&100));
    assert_eq!(h.events.progress(1, "summarize"), [27, 45, 63, 81], "one step per chunk");

    // The same attempt again (a lost lease): every step is reused, the output is the same.
    let again = output(h.run(2, &input).await.expect("completes"));
    assert_eq!(again, out);
}

#[tokio::test]
async fn a_one_chunk_document_is_its_chunk_summary() {
    let counting = Arc::new(Counting::new(ExtractiveSummarizer::new()));
    let h = Harness::new(counting.clone(), webhook());
    let text = "The crane lifted the box. Nobody saw it. The crane is old.";
    let out = output(h.run(1, &json!({"document_id": "d", "text": text})).await.expect("completes"));
    assert_eq!(out.chunks, 1);
    assert_eq!(out.summary, ExtractiveSummarizer::new().summarize_now(text));
    assert_eq!(counting.calls(), 1, "no combine call for one chunk");
}

/// A receiver of the document's webhook: `first` answers the first delivery, 200 the others.
async fn receiver(first: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    let op = OperationId::derive(&job_id(), "deliver", "webhook");
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", op.as_str()))
        .respond_with(first)
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", op.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn the_webhook_is_delivered_once_across_a_retry() {
    let server = receiver(ResponseTemplate::new(204)).await;
    let counting = Arc::new(Counting::new(Provider::default()));
    let url = format!("{}/hook", server.uri());
    let h = Harness::with_tenants(counting.clone(), webhook(), Tenants::with("acme", &url));
    let input = json!({"document_id": "doc-7", "text": document(3), "chunk_chars": 200});

    let first = output(h.run(1, &input).await.expect("completes"));
    assert_eq!(first.webhook, Some(json!({"delivered": true, "response_bytes": 0})));
    // The job runs again (its worker died before recording the end): nothing is sent or asked again.
    let second = output(h.run(2, &input).await.expect("completes"));
    assert_eq!(second, first);
    assert_eq!(counting.calls(), 4, "three chunks and a combine, once");

    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 1, "delivered once");
    let body: Value = requests[0].body_json().expect("json");
    assert_eq!(
        body,
        json!({
            "event": "document.summarized",
            "tenant_id": "acme",
            "job_id": job_id().as_str(),
            "document_id": "doc-7",
            "summary": first.summary,
            "chunks": 3,
        })
    );
}

#[tokio::test]
async fn a_failed_delivery_is_retried_with_the_same_key_and_payload() {
    let server = receiver(ResponseTemplate::new(503).insert_header("retry-after", "4")).await;
    let counting = Arc::new(Counting::new(Provider::default()));
    let url = format!("{}/hook", server.uri());
    let h = Harness::with_tenants(counting.clone(), webhook(), Tenants::with("acme", &url));
    let input = json!({"document_id": "doc-7", "text": document(3), "chunk_chars": 200});

    let err = h.run(1, &input).await.expect_err("the receiver is down");
    assert_eq!((err.case, err.retry_after), (FailureCase::ProviderUnavailable, Some(Duration::from_secs(4))));
    let calls = counting.calls();
    let out = output(h.run(2, &input).await.expect("completes"));
    assert_eq!(out.webhook.expect("delivered")["delivered"], true);
    assert_eq!(counting.calls(), calls, "the retry summarizes nothing again");

    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].headers.get("idempotency-key"), requests[1].headers.get("idempotency-key"));
    assert_eq!(requests[0].body, requests[1].body, "one operation id, one payload");
}

#[tokio::test]
async fn only_the_jobs_own_tenants_webhook_is_delivered_to() {
    let server = receiver(ResponseTemplate::new(204)).await;
    let url = format!("{}/hook", server.uri());
    let tenants = Arc::new(Tenants::with("other", &url));
    let h = Harness::with_tenants(Provider::default(), webhook(), tenants.clone());
    let input = json!({"document_id": "doc-7", "text": document(3), "chunk_chars": 200});

    let out = output(h.run(1, &input).await.expect("completes"));
    assert_eq!(out.webhook, None, "tenant acme has no webhook");
    assert_eq!(tenants.lookups(), 1, "the deliver stage asked for the job's tenant");
    assert_eq!(h.log.done(), 4, "three chunks and the combined summary; no webhook step");
    assert!(server.received_requests().await.expect("recorded").is_empty(), "nothing delivered");
}

#[tokio::test]
async fn a_tenant_lookup_that_fails_is_retried_and_then_delivers_once() {
    let server = receiver(ResponseTemplate::new(204)).await;
    let counting = Arc::new(Counting::new(Provider::default()));
    let url = format!("{}/hook", server.uri());
    let tenants = Arc::new(Tenants::with("acme", &url));
    tenants.set_down(true);
    let h = Harness::with_tenants(counting.clone(), webhook(), tenants.clone());
    let input = json!({"document_id": "doc-7", "text": document(3), "chunk_chars": 200});

    let err = h.run(1, &input).await.expect_err("tenant storage is down");
    assert_eq!((err.case, err.class()), (FailureCase::TemporaryInfrastructure, ErrorClass::Retryable));
    assert!(server.received_requests().await.expect("recorded").is_empty(), "nothing delivered");
    let calls = counting.calls();

    tenants.set_down(false);
    let out = output(h.run(2, &input).await.expect("completes"));
    assert_eq!(out.webhook, Some(json!({"delivered": true, "response_bytes": 0})));
    assert_eq!(counting.calls(), calls, "the retry summarizes nothing again");
    assert_eq!(server.received_requests().await.expect("recorded").len(), 1, "delivered once");
}

#[tokio::test]
async fn a_retried_delivery_goes_to_the_tenants_current_webhook() {
    let old = receiver(ResponseTemplate::new(503)).await;
    let new = receiver(ResponseTemplate::new(204)).await;
    let tenants = Arc::new(Tenants::with("acme", &format!("{}/hook", old.uri())));
    let h = Harness::with_tenants(Provider::default(), webhook(), tenants.clone());
    let input = json!({"document_id": "doc-7", "text": document(3), "chunk_chars": 200});

    let err = h.run(1, &input).await.expect_err("the old receiver is down");
    assert_eq!(err.case, FailureCase::ProviderUnavailable);
    // The operator moves the tenant's webhook; the retry delivers there, same key, same body.
    tenants.set("acme", &format!("{}/hook", new.uri()));
    let out = output(h.run(2, &input).await.expect("completes"));
    assert_eq!(out.webhook.expect("delivered")["delivered"], true);

    let before = old.received_requests().await.expect("recorded");
    let after = new.received_requests().await.expect("recorded");
    assert_eq!((before.len(), after.len()), (1, 1));
    assert_eq!(before[0].headers.get("idempotency-key"), after[0].headers.get("idempotency-key"));
    assert_eq!(before[0].body, after[0].body, "one operation id, one payload");
}

/// A summarizer answering the same for everything.
struct Fixed(String);

impl Summarizer for Fixed {
    async fn summarize(&self, _text: &str) -> Result<String, JobError> {
        Ok(self.0.clone())
    }
}

#[tokio::test]
async fn a_summary_out_of_bounds_is_invalid_and_not_stored() {
    for answer in [String::new(), "  ".into(), "a\u{0}b".into(), "x".repeat(2_001)] {
        let h = Harness::new(Fixed(answer.clone()), webhook());
        let err = h.run(1, &json!({"document_id": "d", "text": "Some text."})).await.expect_err("rejected");
        assert_eq!(err.case, FailureCase::ProviderRejected, "{answer:?}: {}", err.message);
        assert_eq!(err.class(), ErrorClass::Invalid);
        assert!(err.message.contains(&chunk_step(0)), "{}", err.message);
        assert_eq!(h.log.done(), 0, "nothing stored");
    }
}

#[tokio::test]
async fn an_input_stored_invalid_fails_as_invalid_data() {
    let h = Harness::new(Provider::default(), webhook());
    let err = h.run(1, &json!({"document_id": "bad id", "text": "x"})).await.expect_err("invalid");
    assert_eq!(err.case, FailureCase::InvalidJobData);
    assert!(err.message.contains("input.document_id"), "{}", err.message);
    let err = h.run(1, &json!({"document_id": "d"})).await.expect_err("undecodable");
    assert_eq!(err.case, FailureCase::InvalidJobData);
}

#[tokio::test]
async fn an_input_stored_with_a_webhook_url_is_invalid_and_delivers_nothing() {
    // A record written before inputs lost `webhook_url` (or by hand): the URL is never used.
    let server = receiver(ResponseTemplate::new(204)).await;
    let url = format!("{}/hook", server.uri());
    let tenants = Arc::new(Tenants::default());
    let h = Harness::with_tenants(Provider::default(), webhook(), tenants.clone());
    let input = json!({"document_id": "d", "text": "Some text.", "webhook_url": url});
    let err = h.run(1, &input).await.expect_err("invalid");
    assert_eq!(err.case, FailureCase::InvalidJobData);
    assert!(err.message.contains("webhook_url"), "{}", err.message);
    assert_eq!((h.log.done(), tenants.lookups()), (0, 0));
    assert!(server.received_requests().await.expect("recorded").is_empty(), "nothing delivered");
}
