//! The webhook sender against a local HTTP server.

use std::time::Duration;

use longhaul_core::{ErrorClass, FailureCase, JobId, OperationId};
use longhaul_providers::{HttpWebhook, WebhookSender};
use serde_json::json;
use wiremock::matchers::{body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The operation id every webhook test delivers under.
pub(crate) fn op() -> OperationId {
    let job = JobId::parse("job_0123456789abcdef0123456789abcdef").expect("job");
    OperationId::derive(&job, "apply", "webhook")
}

#[tokio::test]
async fn the_webhook_carries_the_operation_id_as_idempotency_key() {
    let server = MockServer::start().await;
    let op = op();
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", op.as_str()))
        .and(header("content-type", "application/json"))
        .and(body_json(json!({ "event": "ticket.triaged" })))
        .respond_with(ResponseTemplate::new(200).set_body_string("ok"))
        .expect(1)
        .mount(&server)
        .await;
    let sender = HttpWebhook::new(Duration::from_secs(5)).expect("sender");
    let result = sender
        .deliver(&format!("{}/hook", server.uri()), &op, &json!({ "event": "ticket.triaged" }))
        .await
        .expect("deliver");
    assert_eq!(result, json!({ "delivered": true, "response_bytes": 2 }));

    let failing = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(502)).mount(&failing).await;
    let err = sender.deliver(&failing.uri(), &op, &json!({})).await.expect_err("502");
    assert_eq!(err.case, FailureCase::ProviderUnavailable);
    assert!(err.message.starts_with("webhook receiver answered 502"), "{}", err.message);
    let gone = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(410)).mount(&gone).await;
    assert_eq!(
        sender.deliver(&gone.uri(), &op, &json!({})).await.expect_err("410").case,
        FailureCase::ProviderRejected
    );
}

/// Receivers following the IETF Idempotency-Key draft answer 409 while a request with the same key
/// is in progress (and 425 Too Early): the delivery is retried, honouring `Retry-After`. 422 (the
/// key was used with another body) and other 4xx stay invalid.
#[tokio::test]
async fn a_receiver_still_working_on_the_key_is_retried() {
    let op = op();
    let sender = HttpWebhook::new(Duration::from_secs(5)).expect("sender");
    let cases: Vec<(ResponseTemplate, FailureCase, Option<Duration>)> = vec![
        (
            ResponseTemplate::new(409).insert_header("retry-after", "3"),
            FailureCase::ProviderUnavailable,
            Some(Duration::from_secs(3)),
        ),
        (ResponseTemplate::new(409), FailureCase::ProviderUnavailable, None),
        (ResponseTemplate::new(425), FailureCase::ProviderUnavailable, None),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "9"),
            FailureCase::ProviderRateLimited,
            Some(Duration::from_secs(9)),
        ),
        (ResponseTemplate::new(422), FailureCase::ProviderRejected, None),
        (ResponseTemplate::new(400), FailureCase::ProviderRejected, None),
    ];
    for (response, case, retry_after) in cases {
        let status = response.clone();
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(response).mount(&server).await;
        let err = sender.deliver(&server.uri(), &op, &json!({})).await.expect_err("not 2xx");
        assert_eq!((err.case, err.retry_after), (case, retry_after), "{:?}: {}", status, err.message);
    }

    // In progress, then done: the second delivery of the key succeeds.
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(header("idempotency-key", op.as_str()))
        .respond_with(ResponseTemplate::new(409))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("idempotency-key", op.as_str()))
        .respond_with(ResponseTemplate::new(200))
        .mount(&server)
        .await;
    let first = sender.deliver(&server.uri(), &op, &json!({})).await.expect_err("in progress");
    assert_eq!(first.class(), ErrorClass::Retryable, "{}", first.message);
    assert_eq!(sender.deliver(&server.uri(), &op, &json!({})).await.expect("done")["delivered"], true);
}

#[tokio::test]
async fn an_unreachable_receiver_is_retryable_and_its_url_is_not_repeated() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let sender = HttpWebhook::new(Duration::from_secs(2)).expect("sender");
    let err = sender
        .deliver(&format!("http://127.0.0.1:{port}/hook?token=hook-secret"), &op(), &json!({}))
        .await
        .expect_err("unreachable");
    assert_eq!(err.case, FailureCase::ProviderUnreachable, "{}", err.message);
    assert!(!err.message.contains("hook-secret"), "{}", err.message);
}

#[tokio::test]
async fn a_malformed_url_is_invalid() {
    let sender = HttpWebhook::new(Duration::from_secs(2)).expect("sender");
    let err = sender.deliver("not a url", &op(), &json!({})).await.expect_err("malformed");
    assert_eq!(err.case, FailureCase::ProviderRejected, "{}", err.message);
    assert!(err.message.contains("invalid request"), "{}", err.message);
}
