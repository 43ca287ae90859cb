//! The production wiring: the worker [`Application`] built from flags exactly as `main` builds it
//! (rule classifier, batched ticket store, recorder, admin server) runs a triage job to completion
//! and answers `/readyz`.

use clap::Parser as _;
use longhaul_core::JobStatus;
use longhaul_testkit::{Backend, TestDb, TestQueue};
use longhaul_worker::startup::{self, Application, Config};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use crate::harness::{submit, wait_status};

/// The status line of `GET /readyz` on `addr` (HTTP/1.0, so the server closes the connection).
async fn readyz(addr: std::net::SocketAddr) -> String {
    let mut conn = tokio::net::TcpStream::connect(addr).await.expect("connect to the admin server");
    conn.write_all(b"GET /readyz HTTP/1.0\r\nHost: localhost\r\n\r\n").await.expect("request");
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await.expect("answer");
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_application_built_from_flags_runs_a_job_and_answers_readyz() {
    // Not migrated for triage: the built-in kinds migrate their own tables at start-up.
    let db = TestDb::new(Backend::Postgres).await;
    let q = TestQueue::new(|_| {}).await;
    let config = Config::try_parse_from([
        "worker",
        "--database-url",
        db.url.as_str(),
        "--redis-url",
        q.url.as_str(),
        "--queue-prefix",
        q.prefix.as_str(),
        "--admin-addr",
        "127.0.0.1:0",
        "--consumer-name",
        "app",
        "--concurrency",
        "4",
    ])
    .expect("flags");
    let app = Application::build(config, startup::builtin).await.expect("build");
    let admin = app.admin_addr().expect("admin address");
    let stop = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(stop.clone()));
    let job = submit(&db, &q, "SUP-APP", "Login fails", "The app crashes at login", 3).await;
    let done = wait_status(&db, &job, JobStatus::Completed).await;
    assert_eq!(done.attempts, 1);
    assert!(done.output.is_some(), "completed with output: {done:?}");
    let status = readyz(admin).await;
    assert!(status.contains(" 200"), "readyz: {status}");
    stop.cancel();
    running.await.expect("task").expect("the worker stopped cleanly");
}

#[tokio::test]
async fn a_queue_listed_twice_is_refused() {
    // Refused before anything is connected: these URLs are never dialled.
    let config = Config::try_parse_from([
        "worker",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--admin-addr",
        "127.0.0.1:0",
        "--queues",
        "triage=4,summarize,triage",
    ])
    .expect("flags");
    let refused = Application::build(config, startup::builtin).await.expect_err("two lanes of one queue");
    assert!(refused.to_string().contains("\"triage\" twice"), "{refused:#}");
}

/// A lane of a queue none of the worker's kinds use would fail every job it takes: refused at
/// start-up, naming the queue and the kinds' queues; a partition of a kind's queue is accepted.
#[tokio::test]
async fn a_queue_no_kind_uses_is_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    let build = |queues: &str| {
        let config = Config::try_parse_from([
            "worker",
            "--database-url",
            db.url.as_str(),
            "--redis-url",
            "redis://127.0.0.1:1",
            "--admin-addr",
            "127.0.0.1:0",
            "--queues",
            queues,
        ])
        .expect("flags");
        Application::build(config, startup::builtin)
    };
    let refused = build("triage,exports").await.expect_err("a queue of no kind");
    let message = format!("{refused:#}");
    assert!(message.contains("\"exports\"") && message.contains("summarize, triage"), "{message}");
    let refused = build("triage-x").await.expect_err("not a partition");
    assert!(format!("{refused:#}").contains("\"triage-x\""), "{refused:#}");
    build("triage-0,summarize-12").await.expect("partitions of the kinds' queues");
}

/// The summarize kind's webhook URL read waits through a storage outage, as the other pipeline
/// reads do, instead of failing the attempt (which, on its last attempt, would fail the job).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tenant_webhook_read_waits_through_a_storage_outage() {
    use longhaul_summarize::TenantWebhooks as _;
    let db = TestDb::new(Backend::Postgres).await;
    let tenant = longhaul_core::TenantId::parse("acme").expect("tenant");
    db.create_tenant(&tenant, "Acme", Some("http://127.0.0.1:9/hook")).await.expect("tenant");
    let webhooks = startup::StoredTenantWebhooks(db.store.clone());
    db.set_reachable(false).await;
    let read = tokio::spawn({
        let (webhooks, tenant) = (webhooks.clone(), tenant.clone());
        async move { webhooks.webhook_url(&tenant).await }
    });
    // Without the hold the read fails within milliseconds; with it, it is still waiting.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!read.is_finished(), "the read gave up during the outage: {:?}", read.await);
    db.set_reachable(true).await;
    let url = read.await.expect("read task").expect("the read once storage is back");
    assert_eq!(url.as_deref(), Some("http://127.0.0.1:9/hook"));
}
