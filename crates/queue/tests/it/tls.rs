//! `rediss://`: a private `redis-server` with TLS only, its certificate signed by a throw-away CA
//! generated here (the `openssl` CLI); the queue trusts that CA through
//! [`QueueConfig::tls_ca_pem`] (`REDIS_CA_FILE` in the binaries) and runs enqueue → fetch → finish.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use longhaul_queue::{Event, EventKind, Queue, QueueConfig, now_ms};

use crate::harness::{entry, random_hex, wait_until};

/// A TLS-only `redis-server` on a free port; killed on drop.
struct TlsRedis {
    child: Child,
    port: u16,
    ca_pem: Vec<u8>,
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl CLI is needed to generate test certificates");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl TlsRedis {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        let mut ca = vec!["req", "-x509"];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.crt", "-days", "1", "-subj", "/CN=longhaul test CA"]);
        openssl(dir.path(), &ca);
        let mut csr = vec!["req"];
        csr.extend(ec);
        csr.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"]);
        openssl(dir.path(), &csr);
        std::fs::write(
            dir.path().join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        )
        .expect("ext");
        openssl(
            dir.path(),
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.crt",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
        let log = std::fs::File::create(dir.path().join("redis.log")).expect("log");
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--tls-cert-file",
                "server.crt",
                "--tls-key-file",
                "server.key",
                "--tls-ca-cert-file",
                "ca.crt",
            ])
            .args(["--tls-auth-clients", "no", "--save", "", "--appendonly", "no", "--dir", "."])
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("redis-server (with TLS support) is needed");
        let ca_pem = std::fs::read(dir.path().join("ca.crt")).expect("ca.crt");
        Self { child, port, ca_pem, dir }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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
    assert!(Queue::new(&plain, config(Some(server.ca_pem.clone()))).is_err());
    let garbage = Queue::new(&server.url(), config(Some(b"not a certificate".to_vec())));
    if let Ok(q) = garbage {
        q.ping().await.expect_err("no trusted CA");
    }
}
