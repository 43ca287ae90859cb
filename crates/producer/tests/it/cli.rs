//! The `producer enqueue` command, run as the built binary: it validates the input as the API
//! does, records and enqueues the job into its kind's queue, and prints the record.

use std::process::Output;

use longhaul_core::{JobId, TenantId};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::summarize_id;

/// Runs `producer enqueue` on the app's database and Redis with `args` after the subcommand.
pub async fn enqueue(t: &TestApp, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"));
    command
        .args(["--database-url", &t.db.url, "enqueue", "--redis-url", &t.queue.url])
        .args(["--queue-prefix", &t.queue.prefix, "--tenant", "acme"])
        .args(args)
        .kill_on_drop(true);
    // The environment of whoever runs the tests must not change what the binary does.
    for var in [
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "REDIS_URL",
        "REDIS_URL_FILE",
        "LONGHAUL_QUEUE",
        "LONGHAUL_QUEUES",
        "LONGHAUL_QUEUE_PREFIX",
        "LONGHAUL_QUEUE_PARTITIONS",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("producer enqueue within 60 s")
        .expect("run producer")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_prints_the_recorded_job_and_enqueues_it_into_its_kinds_queue() {
    let t = TestApp::new(Backend::Sqlite).await;
    let input = json!({"document_id": "doc-cli", "text": "Enqueued from the command line."});
    let out = enqueue(&t, &["--kind", "summarize", "--input", &input.to_string()]).await;
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    let record: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON record ({e}): {}", text(&out.stdout)));
    let id = summarize_id(&input);
    assert_eq!(record["job_id"], id.as_str(), "the id the API gives the same submission");
    assert_eq!(
        (&record["kind"], &record["input"], &record["status"]),
        (&json!("summarize"), &input, &json!("queued"))
    );
    assert_eq!(record["max_attempts"], longhaul_summarize::kind::MAX_ATTEMPTS);
    let stored =
        t.db.get_job(&TenantId::parse("acme").expect("tenant"), &id).await.expect("read").expect("recorded");
    assert_eq!(serde_json::to_value(&stored).expect("json"), record);
    assert_eq!((t.summarize_len().await, t.stream_len().await), (1, 0));
    assert!(t.summarize.has_trace(&id).await.expect("trace"));

    // Again: the same job, still one entry; the API sees the same job.
    let out = enqueue(&t, &["--kind", "summarize", "--input", &input.to_string()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let again: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(again["job_id"], id.as_str());
    assert_eq!(t.summarize_len().await, 1);
    assert_eq!(t.submit("summarize", input, &[]).await.status, axum::http::StatusCode::OK);

    // A client key names the job, as the API's header does; a triage job goes to its queue.
    t.ticket(&t.key, "T-1").await;
    let out = enqueue(
        &t,
        &["--kind", "triage", "--input", r#"{"ticket_id":"T-1","revision":1}"#, "--idempotency-key", "cli-1"],
    )
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let keyed: Value = serde_json::from_slice(&out.stdout).expect("json");
    let key = longhaul_core::IdempotencyKey::parse("cli-1").expect("key");
    let tenant = TenantId::parse("acme").expect("tenant");
    assert_eq!(keyed["job_id"], JobId::for_idempotency_key(&tenant, &key).as_str());
    assert_eq!((&keyed["kind"], &keyed["key"]), (&json!("triage"), &json!("cli-1")));
    assert_eq!((t.summarize_len().await, t.stream_len().await), (1, 1));
    assert_eq!(t.job_rows().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_refuses_invalid_input_naming_the_field() {
    let t = TestApp::new(Backend::Sqlite).await;
    for (args, field) in [
        (vec!["--kind", "summarize", "--input", r#"{"document_id":"doc-1","text":""}"#], "input.text"),
        (
            vec!["--kind", "summarize", "--input", r#"{"document_id":"doc-1","text":"x","extra":1}"#],
            "input.extra",
        ),
        (vec!["--kind", "triage", "--input", r#"{"ticket_id":"T-1","revision":"one"}"#], "input.revision"),
        (vec!["--kind", "translate", "--input", "{}"], "kind"),
        (vec!["--kind", "summarize", "--input", "{not json"], "--input"),
        (
            vec![
                "--kind",
                "summarize",
                "--input",
                r#"{"document_id":"d","text":"x"}"#,
                "--idempotency-key",
                "has space",
            ],
            "--idempotency-key",
        ),
    ] {
        let out = enqueue(&t, &args).await;
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {}", text(&out.stdout));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(field), "{args:?}: the message names {field}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?} printed {}", text(&out.stdout));
    }
    assert_eq!(t.job_rows().await, 0, "no record");
    assert_eq!((t.summarize_len().await, t.stream_len().await), (0, 0), "no queue entry");
}
