//! The HTTP classifier against a local HTTP server: the request triage sends and how its answer is
//! checked against the classification contract. The mapping of statuses, transport failures and
//! malformed envelopes onto the retry table, and the webhook sender, are tested in
//! `longhaul-providers`.

use std::time::Duration;

use longhaul_core::{FailureCase, TenantId, TicketId};
use longhaul_triage::{Category, Classifier, HttpClassifier, HttpClassifierConfig, TicketView};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The ticket every HTTP-edge test classifies.
fn ticket() -> TicketView {
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
fn classifier_at(base_url: String, timeout: Duration) -> HttpClassifier {
    HttpClassifier::new(HttpClassifierConfig {
        base_url,
        model: "triage-small".into(),
        api_key: Some("sk-test-secret".into()),
        timeout,
    })
    .expect("classifier")
}

/// An OpenAI-style chat completion answering `content`.
fn completion(content: &str) -> serde_json::Value {
    json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }] })
}

#[tokio::test]
async fn a_valid_answer_is_parsed_and_the_request_is_well_formed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret"))
        .and(body_partial_json(json!({
            "model": "triage-small",
            "response_format": { "type": "json_object" },
            "messages": [{ "role": "system" }, {
                "role": "user",
                "content": "Subject: App crashes\n\nSince the update the app crashes on start",
            }],
        })))
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
async fn answers_outside_the_classification_contract_are_invalid() {
    let cases: Vec<(ResponseTemplate, FailureCase, &str)> = vec![
        (
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
            FailureCase::ProviderRateLimited,
            "classification provider answered 429",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion("I think it is a bug")),
            FailureCase::ProviderRejected,
            "not a valid classification",
        ),
        (
            ResponseTemplate::new(200)
                .set_body_json(completion(r#"{"category":"bug","priority":"p0","labels":[],"summary":"x"}"#)),
            FailureCase::ProviderRejected,
            "unknown variant `p0`",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion(
                r#"{"category":"bug","priority":"low","labels":[],"summary":"a\u0000b"}"#,
            )),
            FailureCase::ProviderRejected,
            "must not contain NUL",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion(
                r#"{"category":"bug\u0000","priority":"low","labels":[],"summary":"s"}"#,
            )),
            FailureCase::ProviderRejected,
            "unknown variant `bug\\0`",
        ),
        (
            ResponseTemplate::new(200).set_body_json(completion(&format!(
                "{}{}",
                "[".repeat(200_000),
                "]".repeat(200_000)
            ))),
            FailureCase::ProviderRejected,
            "not a valid classification",
        ),
        // The provider's 409 is its own contract's: invalid, unlike a webhook receiver's.
        (ResponseTemplate::new(409), FailureCase::ProviderRejected, "409"),
    ];
    for (response, case, message) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(response).mount(&server).await;
        let err = classifier(&server, Duration::from_secs(5)).classify(&ticket()).await.expect_err(message);
        assert_eq!(err.case, case, "{message}: {}", err.message);
        assert!(err.message.contains(message), "{message}: {}", err.message);
        assert!(!err.message.contains('\0'), "the message can be stored: {:?}", err.message);
        assert!(err.message.len() < 2_000, "{message}: the message is bounded");
    }
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
