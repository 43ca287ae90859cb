//! The chat-completions client against a local HTTP server.

use std::time::Duration;

use longhaul_core::FailureCase;
use longhaul_providers::{ChatClient, ChatConfig};
use serde_json::json;
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer, timeout: Duration) -> ChatClient {
    client_at(format!("{}/v1/", server.uri()), timeout)
}

/// The client under test, at `base_url`, with the test model and key.
pub(crate) fn client_at(base_url: String, timeout: Duration) -> ChatClient {
    ChatClient::new(ChatConfig {
        base_url,
        model: "small".into(),
        api_key: Some("sk-test-secret".into()),
        timeout,
    })
    .expect("client")
    .named("test provider")
}

/// An OpenAI-style chat completion answering `content`.
pub(crate) fn completion(content: &str) -> serde_json::Value {
    json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }] })
}

#[tokio::test]
async fn the_answer_is_the_message_content_and_the_request_is_well_formed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret"))
        .and(body_partial_json(json!({
            "model": "small",
            "temperature": 0,
            "messages": [
                { "role": "system", "content": "be brief" },
                { "role": "user", "content": "hello" },
            ],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("hi")))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, Duration::from_secs(5));
    assert_eq!(c.complete("be brief", "hello").await.expect("complete"), "hi");
    let sent: serde_json::Value =
        server.received_requests().await.expect("recorded")[0].body_json().expect("json body");
    assert!(sent.get("response_format").is_none(), "a free-text request asks for no format: {sent}");
}

#[tokio::test]
async fn a_json_request_asks_for_a_json_object() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(body_partial_json(json!({ "model": "small", "response_format": { "type": "json_object" } })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("{}")))
        .expect(1)
        .mount(&server)
        .await;
    let answer = client(&server, Duration::from_secs(5)).complete_json("s", "u").await.expect("complete");
    assert_eq!(answer, "{}");
}

#[tokio::test]
async fn statuses_and_bad_envelopes_map_onto_the_retry_table() {
    let cases: Vec<(ResponseTemplate, FailureCase, Option<Duration>, &str)> = vec![
        (
            ResponseTemplate::new(429).insert_header("retry-after", "7"),
            FailureCase::ProviderRateLimited,
            Some(Duration::from_secs(7)),
            "test provider answered 429",
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
        (
            ResponseTemplate::new(400).insert_header("retry-after", "5"),
            FailureCase::ProviderRejected,
            None,
            "400",
        ),
        (ResponseTemplate::new(401), FailureCase::ProviderRejected, None, "401"),
        // The provider's 409 is its own contract's: invalid, unlike a webhook receiver's.
        (ResponseTemplate::new(409), FailureCase::ProviderRejected, None, "409"),
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
        let err = client(&server, Duration::from_secs(5)).complete("s", "u").await.expect_err(message);
        assert_eq!(err.case, case, "{message}: {}", err.message);
        assert_eq!(err.retry_after, retry_after, "{message}");
        assert!(err.message.contains(message), "{message}: {}", err.message);
        assert!(!err.message.contains("sk-test-secret"), "the API key never appears in errors");
        assert!(!err.message.contains(&server.uri()), "the URL never appears in errors");
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
    let err = client(&server, Duration::from_millis(300)).complete("s", "u").await.expect_err("timeout");
    assert_eq!(err.case, FailureCase::ProviderTimeout, "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_unreachable_provider_is_retryable_and_its_url_is_not_repeated() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener); // nothing listens there now
    let c = ChatClient::new(ChatConfig {
        base_url: format!("http://127.0.0.1:{port}/v1?key=query-secret"),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(2),
    })
    .expect("client");
    let err = c.complete("s", "u").await.expect_err("unreachable");
    assert_eq!(err.case, FailureCase::ProviderUnreachable, "{}", err.message);
    assert!(err.message.starts_with(ChatClient::DEFAULT_NAME), "{}", err.message);
    assert!(!err.message.contains("query-secret"), "{}", err.message);
}

#[test]
fn bad_provider_settings_are_refused() {
    let base = ChatConfig {
        base_url: "ftp://x".into(),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(1),
    };
    assert!(ChatClient::new(base.clone()).expect_err("scheme").contains("must start with http"));
    let no_model = ChatConfig { base_url: "http://x".into(), model: " ".into(), ..base };
    assert!(ChatClient::new(no_model).expect_err("model").contains("model must not be empty"));
}

#[test]
fn the_api_key_is_not_debug_printed() {
    let config = ChatConfig {
        base_url: "http://x".into(),
        model: "m".into(),
        api_key: Some("sk-test-secret".into()),
        timeout: Duration::from_secs(1),
    };
    let client = ChatClient::new(config.clone()).expect("client");
    for printed in [format!("{config:?}"), format!("{client:?}")] {
        assert!(!printed.contains("sk-test-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
    }
}
