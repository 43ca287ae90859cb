//! The HTTP summarizer against a local OpenAI-compatible server: the request it sends, answers it
//! refuses, and a retry that asks only for the chunks without a stored summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use longhaul_core::{ErrorClass, FailureCase};
use longhaul_providers::{ChatConfig, HttpWebhook};
use longhaul_summarize::split::split;
use longhaul_summarize::summarizer::{COMBINE_PROMPT, SUMMARY_PROMPT};
use longhaul_summarize::{HttpSummarizer, Provider, SummarizeOutput, Summarizer};
use serde_json::{Value, json};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fakes::Harness;
use crate::pipeline::document;

fn summarizer(server: &MockServer) -> HttpSummarizer {
    HttpSummarizer::new(ChatConfig {
        base_url: format!("{}/v1", server.uri()),
        model: "sum-small".into(),
        api_key: Some("sk-test-secret".into()),
        timeout: Duration::from_secs(5),
    })
    .expect("summarizer")
}

/// An OpenAI-style chat completion answering `content`.
fn completion(content: &str) -> Value {
    json!({ "choices": [{ "index": 0, "message": { "role": "assistant", "content": content } }] })
}

/// The system and user messages of a recorded request.
fn messages(request: &Request) -> (String, String) {
    let body: Value = request.body_json().expect("json body");
    let text = |i: usize| body["messages"][i]["content"].as_str().expect("content").to_owned();
    (text(0), text(1))
}

/// What the echo server answers for a summary request of `user`.
fn echo_summary(user: &str) -> String {
    format!("About: {}", user.split('.').next().unwrap_or_default())
}

/// A provider that summarizes by echoing the first sentence, combines by counting the parts, and
/// answers its `fail_at`-th call (1-based) with 503.
fn echo(calls: Arc<AtomicUsize>, fail_at: usize) -> impl Fn(&Request) -> ResponseTemplate + Send + Sync {
    move |request: &Request| {
        let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
        if n == fail_at {
            return ResponseTemplate::new(503).set_body_string("overloaded");
        }
        let (system, user) = messages(request);
        let answer = if system == COMBINE_PROMPT {
            format!("  Combined {} parts.\n", user.matches("Part ").count())
        } else {
            echo_summary(&user)
        };
        ResponseTemplate::new(200).set_body_json(completion(&answer))
    }
}

#[tokio::test]
async fn a_retry_after_chunk_7_of_10_failed_asks_only_for_chunks_7_to_10() {
    let server = MockServer::start().await;
    let calls = Arc::new(AtomicUsize::new(0));
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(echo(calls.clone(), 7))
        .mount(&server)
        .await;
    let h = Harness::new(
        Provider::Http(summarizer(&server)),
        HttpWebhook::new(Duration::from_secs(5)).expect("webhook"),
    );
    let text = document(10);
    let chunks = split(&text, 200);
    assert_eq!(chunks.len(), 10);
    let input = json!({"document_id": "doc-10", "text": text, "chunk_chars": 200});

    let err = h.run(1, &input).await.expect_err("chunk 7 fails");
    assert_eq!(err.case, FailureCase::ProviderUnavailable, "{}", err.message);
    assert_eq!(err.class(), ErrorClass::Retryable);
    assert!(err.message.contains("summary provider answered 503"), "{}", err.message);
    assert_eq!(server.received_requests().await.expect("recorded").len(), 7);

    let out: SummarizeOutput =
        serde_json::from_value(h.run(2, &input).await.expect("the retry completes")).expect("output");
    let requests = server.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 7 + 4 + 1, "chunks 1–7, then 7–10, then the combine");
    let asked: Vec<(String, String)> = requests.iter().map(messages).collect();
    for (i, (system, user)) in asked[..11].iter().enumerate() {
        let chunk = if i < 7 { i } else { i - 1 };
        assert_eq!(system, SUMMARY_PROMPT);
        assert_eq!(user, &chunks[chunk], "request {} asks for chunk {}", i + 1, chunk + 1);
    }
    let (system, user) = &asked[11];
    assert_eq!(system, COMBINE_PROMPT);
    let parts: Vec<String> =
        chunks.iter().enumerate().map(|(i, c)| format!("Part {}:\n{}", i + 1, echo_summary(c))).collect();
    assert_eq!(user, &parts.join("\n\n"), "every chunk's summary, in order");
    assert_eq!(out.summary, "Combined 10 parts.", "the answer, trimmed");
    assert_eq!((out.document_id.as_str(), out.chunks, out.webhook), ("doc-10", 10, None));

    // Progress moves per chunk; the retry reports the stored chunks again, then the new ones.
    let first = h.events.progress(1, "summarize");
    let second = h.events.progress(2, "summarize");
    assert_eq!(first.len(), 6, "{first:?}");
    assert_eq!(second.len(), 10, "{second:?}");
    assert_eq!(first[..], second[..6]);
    assert!(second.windows(2).all(|w| w[0] < w[1]), "{second:?}");
    assert_eq!(second.last(), Some(&81), "the end of the summarize stage");
}

#[tokio::test]
async fn the_request_is_well_formed_and_the_answer_trimmed() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .and(header("authorization", "Bearer sk-test-secret"))
        .and(body_partial_json(json!({
            "model": "sum-small",
            "temperature": 0,
            "messages": [
                { "role": "system", "content": SUMMARY_PROMPT },
                { "role": "user", "content": "A long text." },
            ],
        })))
        .respond_with(ResponseTemplate::new(200).set_body_json(completion("\n A short text. \n")))
        .expect(1)
        .mount(&server)
        .await;
    assert_eq!(summarizer(&server).summarize("A long text.").await.expect("summary"), "A short text.");
    let body: Value = server.received_requests().await.expect("recorded")[0].body_json().expect("json");
    assert!(body.get("response_format").is_none(), "free text: {body}");
}

#[tokio::test]
async fn a_rate_limited_provider_is_retryable_after_its_delay() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "7"))
        .mount(&server)
        .await;
    let err = summarizer(&server).summarize("text").await.expect_err("429");
    assert_eq!(err.case, FailureCase::ProviderRateLimited);
    assert_eq!(err.retry_after, Some(Duration::from_secs(7)));
    assert_eq!(err.class(), ErrorClass::Retryable);

    // Through the pipeline, the job's failure keeps the delay for the retry's schedule.
    let h = Harness::new(
        Provider::Http(summarizer(&server)),
        HttpWebhook::new(Duration::from_secs(5)).expect("webhook"),
    );
    let err = h.run(1, &json!({"document_id": "d", "text": "Some text."})).await.expect_err("429");
    assert_eq!((err.case, err.retry_after), (FailureCase::ProviderRateLimited, Some(Duration::from_secs(7))));
    assert_eq!(h.log.done(), 0);
}

#[tokio::test]
async fn answers_out_of_bounds_are_invalid() {
    let cases: Vec<(ResponseTemplate, &str)> = vec![
        (ResponseTemplate::new(200).set_body_json(completion("")), "the summary is empty"),
        (ResponseTemplate::new(200).set_body_json(completion(" \n\t")), "the summary is empty"),
        (ResponseTemplate::new(200).set_body_json(completion(&"x".repeat(2_001))), "at most 2000"),
        (ResponseTemplate::new(200).set_body_json(completion("a\u{0}b")), "must not contain NUL"),
        (ResponseTemplate::new(200).set_body_json(json!({"choices": []})), "no choices[0].message.content"),
        (ResponseTemplate::new(200).set_body_string("x".repeat(2 << 20)), "more than 1048576 bytes"),
        (ResponseTemplate::new(400).set_body_string("context too long"), "400 Bad Request"),
    ];
    for (response, message) in cases {
        let server = MockServer::start().await;
        Mock::given(method("POST")).respond_with(response).mount(&server).await;
        let s = summarizer(&server);
        for err in [
            s.summarize("text").await.expect_err(message),
            s.combine(&["a".into(), "b".into()]).await.expect_err(message),
        ] {
            assert_eq!(err.case, FailureCase::ProviderRejected, "{message}: {}", err.message);
            assert_eq!(err.class(), ErrorClass::Invalid);
            assert!(err.message.contains(message), "{message}: {}", err.message);
            assert!(err.message.starts_with("summary provider"), "{}", err.message);
            assert!(!err.message.contains("sk-test-secret"));
        }
    }
}

#[test]
fn bad_provider_settings_are_refused() {
    let config = ChatConfig {
        base_url: "file:///tmp".into(),
        model: "m".into(),
        api_key: None,
        timeout: Duration::from_secs(1),
    };
    assert!(HttpSummarizer::new(config).expect_err("scheme").contains("must start with http"));
}
