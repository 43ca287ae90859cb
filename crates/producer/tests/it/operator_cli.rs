//! The operator CLI, run as the built binary on the API's database and Redis: `operators`,
//! `queues`, `limits`, `jobs` and `dead-letters` do what the operator API does, print JSON with
//! `--json` and a table otherwise, and refuse bad input with exit 1 (2 for a bad flag value) and a
//! message naming it.

use std::process::Output;

use axum::http::{Method, StatusCode};
use longhaul_core::{ErrorClass, JobId, Lease, TenantId};
use longhaul_store::{AttemptFailure, PauseScope};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::summary_input;

/// Runs `producer --database-url … <args>`; `redis` adds the Redis flags after them.
async fn producer(t: &TestApp, args: &[&str], redis: bool) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_producer"));
    command.args(["--database-url", &t.db.url]).args(args);
    if redis {
        command.args(["--redis-url", &t.queue.url, "--queue-prefix", &t.queue.prefix]);
    }
    command.kill_on_drop(true);
    for var in [
        "DATABASE_URL",
        "DATABASE_URL_FILE",
        "REDIS_URL",
        "REDIS_URL_FILE",
        "LONGHAUL_QUEUE_PREFIX",
        "LONGHAUL_QUEUE_PARTITIONS",
        "LONGHAUL_OPERATOR",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        command.env_remove(var);
    }
    tokio::time::timeout(std::time::Duration::from_secs(60), command.output())
        .await
        .expect("producer within 60 s")
        .expect("run producer")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stdout of a command that must succeed.
fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Stdout of a command that must succeed, as JSON.
fn ok_json(out: &Output) -> Value {
    let stdout = ok(out);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("stdout is JSON ({e}): {stdout}"))
}

/// Asserts a failure with exit `code` whose message says `says`, and nothing on stdout.
fn refused(out: &Output, code: i32, says: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.contains(says), "the message says {says:?}: {stderr}");
    assert!(out.stdout.is_empty(), "printed {}", text(&out.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_queues_and_limits_from_the_command_line() {
    let t = TestApp::new(Backend::Sqlite).await;
    // An operator key, printed once, that the operator API takes.
    let key = ok(&producer(&t, &["operators", "create", "alice"], false).await);
    let key = key.trim();
    assert!(key.starts_with("lho_"), "{key}");
    assert_eq!(t.call(Method::GET, "/admin/v1/queues", Some(key), None).await.status, StatusCode::OK);
    refused(&producer(&t, &["operators", "create", "alice"], false).await, 1, "exist");
    refused(&producer(&t, &["operators", "create", "has space"], false).await, 1, "NAME");
    let list = ok_json(&producer(&t, &["operators", "list", "--json"], false).await);
    assert_eq!(list[0]["name"], "alice");
    assert!(ok(&producer(&t, &["operators", "list"], false).await).starts_with("NAME"));

    // Pauses: a queue, a kind; listed; audited as the operator named.
    let out = ok(&producer(&t, &["queues", "pause", "summarize", "--operator", "alice"], false).await);
    assert_eq!(out, "queue summarize is paused\n");
    let out = ok(&producer(&t, &["queues", "pause", "summarize"], false).await);
    assert_eq!(out, "queue summarize is paused (unchanged)\n");
    let answer = ok_json(&producer(&t, &["queues", "pause", "--kind", "triage", "--json"], false).await);
    assert_eq!(
        (&answer["scope"], &answer["paused"], &answer["paused_by"]),
        (&json!("kind"), &json!(true), &json!("operator"))
    );
    refused(&producer(&t, &["queues", "pause", "--kind", "nope"], false).await, 1, "unknown kind");
    refused(&producer(&t, &["queues", "pause"], false).await, 2, "required");
    let listed = ok_json(&producer(&t, &["queues", "list", "--json"], true).await);
    let summarize = &listed["queues"][0];
    assert_eq!(
        (&summarize["queue"], &summarize["paused"], &summarize["paused_by"]),
        (&json!("summarize"), &json!(true), &json!("operator:alice"))
    );
    assert_eq!(listed["queues"][1]["kinds"][0]["paused"], true);
    let table = ok(&producer(&t, &["queues", "list"], true).await);
    assert!(table.starts_with("QUEUE"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("summarize") && l.contains("yes (operator:alice")),
        "{table}"
    );
    ok(&producer(&t, &["queues", "resume", "--kind", "triage"], false).await);
    let paused: Vec<_> =
        t.db.paused().await.expect("paused").into_iter().map(|p| (p.scope, p.name)).collect();
    assert_eq!(paused, [(PauseScope::Queue, "summarize".to_owned())]);

    // Limits: validated flags, set, listed, cleared.
    refused(
        &producer(&t, &["limits", "set", "--tenant", "acme", "--max-running", "0"], false).await,
        2,
        "--max-running",
    );
    refused(
        &producer(&t, &["limits", "set", "--kind", "summarize", "--starts-per-second=-1"], false).await,
        2,
        "--starts-per-second",
    );
    refused(
        &producer(&t, &["limits", "set", "--kind", "summarize", "--starts-per-second", "NaN"], false).await,
        2,
        "--starts-per-second",
    );
    refused(
        &producer(
            &t,
            &["limits", "set", "--kind", "summarize", "--max-running", "2", "--starts-per-second", "1"],
            false,
        )
        .await,
        1,
        "--max-running",
    );
    refused(
        &producer(&t, &["limits", "set", "--tenant", "acme"], false).await,
        1,
        "--max-running or --starts-per-second",
    );
    refused(
        &producer(&t, &["limits", "set", "--tenant", "nobody", "--max-running", "2"], false).await,
        1,
        "no tenant nobody",
    );
    let out = ok(&producer(
        &t,
        &["limits", "set", "--tenant", "acme", "--max-running", "3", "--starts-per-second", "2.5"],
        false,
    )
    .await);
    assert!(out.starts_with("SCOPE"), "{out}");
    assert!(out.lines().any(|l| l.split_whitespace().take(4).eq(["tenant", "acme", "3", "2.5"])), "{out}");
    ok(&producer(&t, &["limits", "set", "--kind", "summarize", "--starts-per-second", "10"], false).await);
    let limits = ok_json(&producer(&t, &["limits", "list", "--json"], false).await);
    let names: Vec<_> =
        limits["limits"].as_array().expect("limits").iter().map(|l| l["name"].clone()).collect();
    assert_eq!(names, [json!("acme"), json!("summarize")]);
    assert_eq!(
        ok(&producer(&t, &["limits", "clear", "--kind", "summarize"], false).await),
        "kind summarize cleared\n"
    );
    assert_eq!(
        ok(&producer(&t, &["limits", "clear", "--kind", "summarize"], false).await),
        "kind summarize had no limit\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_dead_letters_from_the_command_line() {
    let t = TestApp::new(Backend::Sqlite).await;
    let acme = TenantId::parse("acme").expect("tenant");
    let mut failed = Vec::new();
    for doc in ["doc-1", "doc-2"] {
        let body = json!({"kind": "summarize", "input": summary_input(doc, "Some text.")});
        let r = t.call(Method::POST, "/v1/jobs", Some(&t.key), Some(body)).await;
        let job = JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("id");
        t.db.start_next(&acme, &job, Lease { entry: "1-0".into(), delivery: 1 }, 1).await.expect("start");
        // An error with a line break and escape sequences (a title change, a colour): the table
        // shows them escaped, never raw.
        let message = "bad\nanswer\u{1b}]0;owned\u{7}\u{1b}[31m\u{9b}2J";
        t.db.fail(&acme, &job, AttemptFailure::new(1, ErrorClass::Invalid, message)).await.expect("fail");
        failed.push(job);
    }

    let page = ok_json(&producer(&t, &["jobs", "list", "--status", "failed", "--json"], false).await);
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(2), "{page}");
    let table = ok(&producer(&t, &["jobs", "list", "--tenant", "acme", "--limit", "1"], false).await);
    let lines: Vec<_> = table.lines().collect();
    assert!(lines[0].starts_with("JOB_ID") && lines[0].contains("ERROR"), "{table}");
    assert!(lines[1].starts_with(failed[1].as_str()) && lines[1].contains("invalid: bad answer"), "{table}");
    assert!(lines[2].starts_with("more: --cursor "), "{table}");
    let raw = |out: &str| out.chars().any(|c| c.is_control() && c != '\n');
    assert!(!raw(&table), "{table:?}");
    assert!(table.contains("bad answer\\u{1b}]0;owned\\u{7}\\u{1b}[31m\\u{9b}2J"), "{table:?}");
    refused(&producer(&t, &["jobs", "list", "--status", "done"], false).await, 2, "--status");
    // By key: exactly the job recorded with it.
    let key = page["jobs"][1]["key"].as_str().expect("a key").to_owned();
    let by_key = ok_json(&producer(&t, &["jobs", "list", "--key", &key, "--json"], false).await);
    let ids: Vec<_> = by_key["jobs"].as_array().expect("jobs").iter().map(|j| j["job_id"].clone()).collect();
    assert_eq!(ids, [page["jobs"][1]["job_id"].clone()], "{by_key}");
    refused(&producer(&t, &["jobs", "list", "--key", ""], false).await, 2, "--key");
    refused(
        &producer(&t, &["jobs", "list", "--key", &"k".repeat(1025)], false).await,
        2,
        "at most 1024 bytes",
    );
    let shown = ok(&producer(&t, &["jobs", "show", failed[0].as_str()], false).await);
    assert!(shown.lines().any(|l| l.split_whitespace().eq(["status", "failed"])), "{shown}");
    assert!(!raw(&shown), "{shown:?}");
    assert!(shown.lines().any(|l| l.starts_with("error") && l.contains("\\u{1b}]0;owned")), "{shown}");
    refused(&producer(&t, &["jobs", "show", &format!("job_{}", "0".repeat(32))], false).await, 1, "no job");

    let dry = ok_json(&producer(&t, &["jobs", "retry-failed", "--dry-run", "--json"], true).await);
    assert_eq!(dry, json!({"matched": 2, "retried": 0, "not_enqueued": 0, "dry_run": true, "next": null}));
    refused(&producer(&t, &["jobs", "retry-failed", "--page-size", "0"], true).await, 2, "--page-size");
    refused(&producer(&t, &["jobs", "retry-failed", "--page-size", "10001"], true).await, 2, "--page-size");
    // One job per page: the command goes on, page after page, until none is left.
    let run = producer(&t, &["jobs", "retry-failed", "--operator", "alice", "--page-size", "1"], true).await;
    assert_eq!(ok(&run), "matched 2, retried 2\n");
    let progress = text(&run.stderr);
    assert!(progress.contains("retried 1 of 1 matched so far"), "{progress}");
    assert!(progress.contains("retried 2 of 2 matched so far"), "{progress}");
    for job in &failed {
        let record = t.db.get_job(&acme, job).await.expect("get").expect("job");
        assert_eq!(record.status.as_str(), "queued");
    }
    let last = t.db.job_audit(&acme, &failed[0]).await.expect("audit").pop().expect("a row");
    assert_eq!((last.action.as_str(), &last.detail["by"]), ("retried", &json!("operator:alice")));

    // Dead letters: one undecodable, replayed as it was; one purged.
    let mut conn = t.queue.raw().await;
    let dead = t.summarize.keys().dead();
    let mut ids = Vec::new();
    for n in ["1", "2"] {
        let id: String = redis::cmd("XADD")
            .arg(&dead)
            .arg("*")
            .arg(&["source_id", "1-0", "reason", "cannot decode", "x", n][..])
            .query_async(&mut conn)
            .await
            .expect("XADD");
        ids.push(id);
    }
    let table = ok(&producer(&t, &["dead-letters", "list", "summarize"], true).await);
    assert!(table.starts_with("ID") && table.contains(&ids[1]) && table.contains("cannot decode"), "{table}");
    let one = ok_json(&producer(&t, &["dead-letters", "show", "summarize", &ids[0], "--json"], true).await);
    assert_eq!((&one["queue"], &one["fields"]), (&json!("summarize"), &json!([["x", "1"]])));
    refused(&producer(&t, &["dead-letters", "list", "nope"], true).await, 1, "no queue");
    let replayed =
        ok_json(&producer(&t, &["dead-letters", "replay", "summarize", &ids[0], "--json"], true).await);
    assert_eq!(replayed["replayed"], "raw");
    refused(
        &producer(&t, &["dead-letters", "replay", "summarize", &ids[0]], true).await,
        1,
        "no dead letter",
    );
    refused(&producer(&t, &["dead-letters", "purge", "summarize"], true).await, 2, "required");
    assert_eq!(
        ok(&producer(&t, &["dead-letters", "purge", "summarize", "--all"], true).await),
        "purged 1 dead letters of summarize\n"
    );
    let empty = ok_json(&producer(&t, &["dead-letters", "list", "summarize", "--json"], true).await);
    assert_eq!(empty["dead_letters"], json!([]));
}
