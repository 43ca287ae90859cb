//! The HTTP provider and the webhook sender against a local HTTP server.

use std::time::Duration;

use longhaul_core::{FailureCase, JobId, OperationId, TenantId, TicketId, TicketView};
use longhaul_triage::{
    Category, Classifier, HttpClassifier, HttpClassifierConfig, HttpWebhook, WebhookSender,
};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The ticket every HTTP-edge test classifies (also used by `hostile`).
pub(crate) fn ticket() -> TicketView {
    TicketView {
        tenant_id: TenantId::parse("acme").expect("tenant"),
        ticket_id: TicketId::parse("SUP-1").expect("ticket"),
        revision: 1,
        subject: "App crashes".into(),
        body: "Since the update the app crashes on start".into(),
        webhook_url: None,
    }
}

fn classifier(server: &MockServer, timeout: Duration) -> HttpClassifier {
    classifier_at(format!("{}/v1/", server.uri()), timeout)
}

/// The classifier under test, at `base_url`, with the test model and key.
pub(crate) fn classifier_at(base_url: String, timeout: Duration) -> HttpClassifier {
    HttpClassifier::new(HttpClassifierConfig {
        base_url,
        model: "triage-small".into(),
        api_key: Some("sk-test-secret".into()),
        timeout,
    })
    .expect("classifier")
}

/// An OpenAI-style chat completion answering `content`.
pub(crate) fn completion(content: &str) -> serde_json::Value {
    json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }] })
}

#[tokio::test]
async fn a_valid_answer_is_parsed_and_the_request_is_well_formed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret"))
        .and(body_partial_json(
            json!({ "model": "triage-small", "response_format": { "type": "json_object" } }),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion(
            r#"{"category":"bug","priority":"urgent","labels":["mobile"],"summary":"App crashes on start"}"#,
        )))
        .expect(1)
        .mount(&server)
        .await;
    let c = classifier(&server, Duration::from_secs(5)).classify(&ticket()).await.expect("classify");
    assert_eq!(c.category, Category::Bug);
    assert_eq!(c.labels, ["mobile"]);
}

#[tokio::test]
async fn statuses_and_bad_answers_map_onto_the_retry_table() {
    let cases: Vec<(ResponseTemplate, FailureCase, Option<Duration>, &str)> = vec![
        (
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
            FailureCase::ProviderRateLimited,
            Some(Duration::from_secs(7)),
            "429",
        ),
        (
            ResponseTemplate::new(503).insert_header("retry-after", "2"),
            FailureCase::ProviderUnavailable,
            Some(Duration::from_secs(2)),
            "503",
        ),
        (ResponseTemplate::new(500), FailureCase::ProviderUnavailable, None, "500"),
        (
            ResponseTemplate::new(400).set_body_string("bad model"),
            FailureCase::ProviderRejected,
            None,
            "400 Bad Request: bad model",
        ),
        (ResponseTemplate::new(401), FailureCase::ProviderRejected, None, "401"),
        (
            ResponseTemplate::new(200).set_body_string("<html>"),
            FailureCase::ProviderRejected,
            None,
            "invalid JSON",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"choices": []})),
            FailureCase::ProviderRejected,
            None,
            "no choices[0]",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion("I think it is a bug")),
            FailureCase::ProviderRejected,
            None,
            "not a valid classification",
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(completion(r#"{"category":"bug","priority":"p0","labels":[],"summary":"x"}"#)),
            FailureCase::ProviderRejected,
            None,
            "unknown variant `p0`",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion(
                r#"{"category":"bug","priority":"low","labels":[],"summary":"a\u0000b"}"#,
            )),
            FailureCase::ProviderRejected,
            None,
            "must not contain NUL",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion(
                r#"{"category":"bug\u0000","priority":"low","labels":[],"summary":"s"}"#,
            )),
            FailureCase::ProviderRejected,
            None,
            "unknown variant `bug\\0`",
        ),
        (
            ResponseTemplate::new(400).set_body_string("bad\u{0}input"),
            FailureCase::ProviderRejected,
            None,
            "400 Bad Request: bad\\0input",
        ),
        (
            ResponseTemplate::new(200).set_body_string("x".repeat(2 << 20)),
            FailureCase::ProviderRejected,
            None,
            "more than 1048576 bytes",
        ),
    ];
    for (response, case, retry_after, message) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(response).mount(&server).await;
        let err = classifier(&server, Duration::from_secs(5)).classify(&ticket()).await.expect_err(message);
        assert_eq!(err.case, case, "{message}: {}", err.message);
        assert_eq!(err.retry_after, retry_after, "{message}");
        assert!(err.message.contains(message), "{message}: {}", err.message);
        assert!(!err.message.contains("sk-test-secret"), "the API key never appears in errors");
        assert!(!err.message.contains('\0'), "the message can be stored: {:?}", err.message);
    }
}

#[tokio::test]
async fn a_slow_provider_times_out_as_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200).set_delay(Duration::from_secs(5)).set_body_json(completion("{}")),
        )
        .mount(&server)
        .await;
    let started = std::time::Instant::now();
    let err = classifier(&server, Duration::from_millis(300)).classify(&ticket()).await.expect_err("timeout");
    assert_eq!(err.case, FailureCase::ProviderTimeout, "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_unreachable_provider_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener); // nothing listens there now
    let c = HttpClassifier::new(HttpClassifierConfig {
        base_url: format!("http://127.0.0.1:{port}/v1"),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(2),
    })
    .expect("classifier");
    let err = c.classify(&ticket()).await.expect_err("unreachable");
    assert_eq!(err.case, FailureCase::ProviderUnreachable, "{}", err.message);
}

#[test]
fn bad_provider_settings_are_refused() {
    let base = HttpClassifierConfig {
        base_url: "ftp://x".into(),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(1),
    };
    assert!(HttpClassifier::new(base.clone()).expect_err("scheme").contains("must start with http"));
    let no_model = HttpClassifierConfig { base_url: "http://x".into(), model: " ".into(), ..base };
    assert!(HttpClassifier::new(no_model).expect_err("model").contains("model must not be empty"));
}

#[tokio::test]
async fn the_webhook_carries_the_operation_id_as_idempotency_key() {
    let server = MockServer::start().await;
    let job = JobId::parse("job_0123456789abcdef0123456789abcdef").expect("job");
    let op = OperationId::derive(&job, "apply", "webhook");
    Mock::given(method("POST"))
        .and(path("/hook"))
        .and(header("idempotency-key", op.as_str()))
        .and(body_partial_json(json!({ "event": "ticket.triaged" })))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    let sender = HttpWebhook::new(Duration::from_secs(5)).expect("sender");
    let result = sender
        .deliver(&format!("{}/hook", server.uri()), &op, &json!({ "event": "ticket.triaged" }))
        .await
        .expect("deliver");
    assert_eq!(result["delivered"], true);

    let failing = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(502)).mount(&failing).await;
    let err = sender.deliver(&failing.uri(), &op, &json!({})).await.expect_err("502");
    assert_eq!(err.case, FailureCase::ProviderUnavailable);
    let gone = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(410)).mount(&gone).await;
    assert_eq!(
        sender.deliver(&gone.uri(), &op, &json!({})).await.expect_err("410").case,
        FailureCase::ProviderRejected
    );
}

/// Receivers following the IETF Idempotency-Key draft answer 409 while a request with the same key
/// is in progress (and 425 Too Early): the delivery is retried, honouring `Retry-After`. 422 (the
/// key was used with another body) and other 4xx stay invalid; the classifier's 409 is its own
/// contract's and stays invalid too.
#[tokio::test]
async fn a_receiver_still_working_on_the_key_is_retried() {
    let job = JobId::parse("job_0123456789abcdef0123456789abcdef").expect("job");
    let op = OperationId::derive(&job, "apply", "webhook");
    let sender = HttpWebhook::new(Duration::from_secs(5)).expect("sender");
    let cases: Vec<(ResponseTemplate, FailureCase, Option<Duration>)> = vec![
        (
            ResponseTemplate::new(409).insert_header("retry-after", "3"),
            FailureCase::ProviderUnavailable,
            Some(Duration::from_secs(3)),
        ),
        (ResponseTemplate::new(409), FailureCase::ProviderUnavailable, None),
        (ResponseTemplate::new(425), FailureCase::ProviderUnavailable, None),
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
    assert_eq!(first.class(), longhaul_core::ErrorClass::Retryable, "{}", first.message);
    assert_eq!(sender.deliver(&server.uri(), &op, &json!({})).await.expect("done")["delivered"], true);

    let provider = MockServer::start().await;
    Mock::given(method("POST")).respond_with(ResponseTemplate::new(409)).mount(&provider).await;
    let err = classifier(&provider, Duration::from_secs(5)).classify(&ticket()).await.expect_err("409");
    assert_eq!(err.case, FailureCase::ProviderRejected);
}
