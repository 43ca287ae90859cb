//! Oversized bodies are refused after reading about the limit, never buffered whole: a truthful
//! `Content-Length` over the limit, a chunked body that never ends (counted as it is pulled), and
//! the same endless body over real TCP.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use longhaul_core::{TenantId, TicketId};
use longhaul_producer::MAX_BODY_BYTES;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt;

use crate::harness::*;

const CHUNK: usize = 8 * 1024;

/// A JSON-looking body of `total` bytes (or endless for `None`) that counts what is pulled from it.
fn counting_body(total: Option<usize>, pulled: Arc<AtomicUsize>) -> Body {
    let stream = futures::stream::unfold(0usize, move |sent| {
        let pulled = pulled.clone();
        async move {
            if total.is_some_and(|t| sent >= t) {
                return None;
            }
            let chunk = if sent == 0 {
                let mut c = br#"{"ticket_id":"T-1","subject":"s","body":""#.to_vec();
                c.resize(CHUNK, b'a');
                c
            } else {
                vec![b'a'; CHUNK]
            };
            pulled.fetch_add(chunk.len(), Ordering::SeqCst);
            Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), sent + CHUNK))
        }
    });
    Body::from_stream(stream)
}

async fn send(t: &TestApp, body: Body, content_length: Option<usize>) -> Reply {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri("/v1/tickets")
        .header("authorization", format!("Bearer {}", t.key))
        .header("content-type", "application/json");
    if let Some(n) = content_length {
        req = req.header("content-length", n);
    }
    let response = t.router.clone().oneshot(req.body(body).expect("request")).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    Reply { status, headers, json: serde_json::from_slice(&bytes).unwrap_or_default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_limit_is_refused_before_it_is_read_whole() {
    let t = TestApp::new(Backend::Sqlite).await;

    // A truthful Content-Length over the limit.
    let pulled = Arc::new(AtomicUsize::new(0));
    let total = 10 << 20;
    let r = send(&t, counting_body(Some(total), pulled.clone()), Some(total)).await;
    problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    let read = pulled.load(Ordering::SeqCst);
    assert!(read <= MAX_BODY_BYTES + 2 * CHUNK, "read {read} bytes of a {total}-byte body");

    // Chunked, no Content-Length, endless.
    let pulled = Arc::new(AtomicUsize::new(0));
    let r = send(&t, counting_body(None, pulled.clone()), None).await;
    let p = problem(&r, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(p["retryable"], false);
    let read = pulled.load(Ordering::SeqCst);
    assert!(read > MAX_BODY_BYTES, "the limit was reached ({read} bytes pulled)");
    assert!(read <= MAX_BODY_BYTES + 2 * CHUNK, "read {read} bytes of an endless body");

    // Just under the limit is read and validated (422: the body field is too long, not 413).
    let mut json = br#"{"ticket_id":"T-1","subject":"s","body":""#.to_vec();
    json.resize(MAX_BODY_BYTES - 2, b'a');
    json.extend_from_slice(br#""}"#);
    let r = send(&t, Body::from(json), None).await;
    assert_eq!(problem(&r, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["field"], "body");

    assert_eq!(
        longhaul_triage::storage::get_ticket(
            &t.db,
            &TenantId::parse("acme").expect("tenant"),
            &TicketId::parse("T-1").expect("ticket")
        )
        .await
        .expect("read")
        .map(|x| x.revision),
        None,
        "nothing was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endless_chunked_body_over_tcp_gets_413_promptly() {
    let t = TestApp::new(Backend::Sqlite).await;
    let app = build(&t.db, &t.queue.url, &t.queue.prefix, &[]).await;
    let addr = app.local_addr().expect("addr");
    let server = tokio::spawn(app.run_until_stopped(tokio_util::sync::CancellationToken::new()));

    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut rd, mut wr) = stream.into_split();
    let head = format!(
        "POST /v1/tickets HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        t.key
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = format!("{:x}\r\n{}\r\n", CHUNK, "a".repeat(CHUNK));
        wr.write_all(format!("{:x}\r\n{{\"body\":\"\r\n", 9).as_bytes()).await?;
        let mut written = 0usize;
        // Endless from the server's point of view; bounded here only so a broken server cannot hang
        // the test forever (1 GiB).
        while written < 1 << 30 {
            wr.write_all(chunk.as_bytes()).await?;
            written += CHUNK;
        }
        Ok::<usize, std::io::Error>(written)
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..n]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                break;
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    assert!(read.is_ok(), "no answer within 10 s while the client kept sending; got {text:?}");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.to_ascii_lowercase().contains("content-type: application/problem+json"), "{text}");
    writer.abort();
    server.abort();
}
