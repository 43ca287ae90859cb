//! Provider and webhook answers that are malformed, huge, endless or slow are classified onto the
//! retry table — never a crash, never an unbounded read. Complements `chat.rs` (statuses, a large
//! body with a Content-Length, a slow first byte) with what `wiremock` cannot express: bodies that
//! never end or trickle, plus odd `Retry-After` values, content types and bytes.

use std::time::{Duration, Instant};

use longhaul_core::FailureCase;
use longhaul_providers::{ChatClient, HttpWebhook, MAX_RESPONSE_BYTES, WebhookSender};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::chat::{client_at, completion};
use crate::webhook::op;

fn client(base: &str, timeout: Duration) -> ChatClient {
    client_at(format!("{base}/v1"), timeout)
}

/// How the raw server answers after the response head.
#[derive(Clone, Copy)]
enum Body {
    /// Chunked data forever (until the client hangs up).
    Endless,
    /// One byte every 100 ms, forever.
    Trickle,
}

/// A raw HTTP/1.1 server answering every request `200` with `body`; returns its base URL.
async fn raw_server(body: Body) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let start =
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                if socket.write_all(start.as_bytes()).await.is_err() {
                    return;
                }
                match body {
                    Body::Endless => {
                        let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, "[".repeat(16 * 1024));
                        while socket.write_all(chunk.as_bytes()).await.is_ok() {}
                    }
                    Body::Trickle => loop {
                        if socket.write_all(b"1\r\n \r\n").await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    },
                }
            });
        }
    });
    format!("http://{addr}")
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let base = raw_server(Body::Endless).await;
    let started = Instant::now();
    let err = client(&base, Duration::from_secs(20)).complete("s", "u").await.expect_err("endless");
    assert_eq!(err.case, FailureCase::ProviderRejected, "{}", err.message);
    assert!(err.message.contains(&format!("more than {MAX_RESPONSE_BYTES} bytes")), "{}", err.message);
    assert!(started.elapsed() < Duration::from_secs(10), "stopped reading at the cap");

    let webhook = HttpWebhook::new(Duration::from_secs(20)).expect("webhook");
    let err = webhook.deliver(&format!("{base}/hook"), &op(), &json!({})).await.expect_err("endless");
    assert_eq!(err.case, FailureCase::ProviderRejected, "{}", err.message);
}

#[tokio::test]
async fn a_trickling_body_times_out_as_retryable() {
    let base = raw_server(Body::Trickle).await;
    let started = Instant::now();
    let err = client(&base, Duration::from_millis(800)).complete("s", "u").await.expect_err("trickle");
    assert_eq!(err.case, FailureCase::ProviderTimeout, "{}", err.message);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the timeout covers the body: {:?}",
        started.elapsed()
    );

    let webhook = HttpWebhook::new(Duration::from_millis(800)).expect("webhook");
    let err = webhook.deliver(&format!("{base}/hook"), &op(), &json!({})).await.expect_err("trickle");
    assert_eq!(err.case, FailureCase::ProviderTimeout, "{}", err.message);
}

#[tokio::test]
async fn odd_answers_are_classified() {
    let nested = format!("{}{}", "[".repeat(200_000), "]".repeat(200_000));
    let cases: Vec<(ResponseTemplate, Result<&str, FailureCase>, &str)> = vec![
        // The body decides, not the content type: a valid answer labelled text/plain is used.
        (
            ResponseTemplate::new(200).set_body_raw(completion("fine").to_string(), "text/plain"),
            Ok("fine"),
            "text/plain JSON",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html><body>gateway</body></html>", "text/html"),
            Err(FailureCase::ProviderRejected),
            "html",
        ),
        (
            ResponseTemplate::new(200).set_body_bytes(vec![0xff, 0xfe, 0x00, 0x80]),
            Err(FailureCase::ProviderRejected),
            "bytes",
        ),
        (
            ResponseTemplate::new(200).set_body_raw(nested.clone(), "application/json"),
            Err(FailureCase::ProviderRejected),
            "nested body",
        ),
        // The content is the caller's contract: the client returns it as it came.
        (
            ResponseTemplate::new(200).set_body_json(completion(&nested)),
            Ok(nested.as_str()),
            "nested content",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"choices": [{"message": {"content": 42}}]})),
            Err(FailureCase::ProviderRejected),
            "content of the wrong type",
        ),
        (
            ResponseTemplate::new(200).set_body_json(json!({"choices": [{"message": {}}]})),
            Err(FailureCase::ProviderRejected),
            "no content",
        ),
        (ResponseTemplate::new(200), Err(FailureCase::ProviderRejected), "empty body"),
        (
            ResponseTemplate::new(503).set_body_bytes(vec![0xff; 10_000]),
            Err(FailureCase::ProviderUnavailable),
            "503 with binary body",
        ),
    ];
    for (response, expected, what) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(response).mount(&server).await;
        let result = client(&server.uri(), Duration::from_secs(5)).complete("s", "u").await;
        match (result, expected) {
            (Ok(content), Ok(want)) => assert_eq!(content, want, "{what}"),
            (Err(e), Err(case)) => {
                assert_eq!(e.case, case, "{what}: {}", e.message);
                assert!(
                    e.message.len() < 2_000,
                    "{what}: the message is bounded ({} bytes)",
                    e.message.len()
                );
            }
            (other, expected) => {
                panic!("{what}: {:?} instead of {expected:?}", other.map(|_| ()).map_err(|e| e.message))
            }
        }
    }
}

#[tokio::test]
async fn odd_retry_after_values_fall_back_to_backoff() {
    for (value, expected) in [
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),
        ("99999999999999999999999", None),
        ("-5", None),
        ("soon", None),
        ("", None),
        ("86400", Some(Duration::from_secs(3600))),
        (" 3 ", Some(Duration::from_secs(3))),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", value))
            .mount(&server)
            .await;
        let err = client(&server.uri(), Duration::from_secs(5)).complete("s", "u").await.expect_err("429");
        assert_eq!(err.case, FailureCase::ProviderRateLimited, "{value:?}");
        assert_eq!(err.retry_after, expected, "Retry-After {value:?}");
    }
}
