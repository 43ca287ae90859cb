//! `rediss://`: a private `redis-server` with TLS only, its certificate signed by a throw-away CA
//! ([`TlsRedis`], the `openssl` CLI); the queue trusts that CA through
//! [`QueueConfig::tls_ca_pem`] (`REDIS_CA_FILE` in the binaries) and runs enqueue → fetch → finish.

use std::time::Duration;

use longhaul_queue::{Event, EventKind, Queue, QueueConfig, QueueError, TlsProblem, now_ms};
use longhaul_testkit::TlsRedis;

use crate::harness::{entry, random_hex, wait_until};

fn config(ca: Option<Vec<u8>>) -> QueueConfig {
    QueueConfig {
        prefix: format!("lhtest-{}", random_hex()),
        op_timeout: Duration::from_secs(2),
        tls_ca_pem: ca,
        ..QueueConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_with_a_private_ca_runs_the_queue() {
    let server = TlsRedis::start();
    let q = Queue::new(&server.url(), config(Some(server.ca_pem.clone()))).expect("queue");
    wait_until(Duration::from_secs(10), "the TLS redis-server answers", async || {
        q.ping().await.map_err(|e| format!("{e}; server log: {}", server.log()))
    })
    .await;
    q.prepare(None).await.expect("prepare");
    let e = entry("T-tls");
    assert!(q.enqueue(&e).await.expect("enqueue"));
    let mut consumer = q.consumer("c-tls").expect("consumer");
    let got = consumer.fetch(10, Duration::from_secs(1)).await.expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry.job_id, e.job_id);
    let done = Event::new(EventKind::Completed, e.job_id.as_str(), e.tenant_id.as_str(), 1, now_ms());
    assert!(q.finish(&got[0], &done).await.expect("finish"));
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending), (0, 0), "{stats:?}");
    assert!(!q.has_trace(&e.job_id).await.expect("trace"));

    // Without the CA the server's certificate is not trusted; the error says so.
    let untrusted = Queue::new(&server.url(), config(None)).expect("queue");
    let err = untrusted.ping().await.expect_err("an unknown CA");
    let text = err.to_string().to_lowercase();
    assert!(text.contains("certificate") || text.contains("issuer"), "{err}");
    // A CA with a plain redis:// URL, and a CA file that is not PEM, are configuration errors.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let err = Queue::new(&plain, config(Some(server.ca_pem.clone()))).expect_err("a CA without TLS");
    assert!(matches!(err, QueueError::Tls(TlsProblem::CaWithoutTls)), "{err:?}");
    match Queue::new(&server.url(), config(Some(b"not a certificate".to_vec()))) {
        Ok(q) => drop(q.ping().await.expect_err("no trusted CA")),
        Err(err) => assert!(matches!(err, QueueError::Tls(TlsProblem::InvalidCa { .. })), "{err:?}"),
    }
}
