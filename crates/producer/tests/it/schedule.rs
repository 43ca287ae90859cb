//! Scheduling and priority through the API, the reconciler and the CLI: a `run_at` in the future
//! records a `scheduled` job whose entry waits in the queue's delayed set until then; now or past
//! runs at once; the priority travels in the entry; a bad `run_at` or `priority` is a `422` naming
//! it (nothing written, nothing enqueued); a duplicate returns the existing job unchanged; the
//! reconciler puts a lost scheduled job back at its `run_at`.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use chrono::{DateTime, SubsecRound as _, Utc};
use longhaul_core::{JobId, JobStatus, Priority};
use longhaul_queue::{JobEntry, Queue};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::{summarize_id, summary_input};

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

/// `POST /v1/jobs` as `acme` with `body`.
async fn submit(t: &TestApp, body: Value) -> Reply {
    t.call(Method::POST, "/v1/jobs", Some(&t.key), Some(body)).await
}

/// A time `minutes` from now, at the millisecond precision the API keeps.
fn in_minutes(minutes: i64) -> DateTime<Utc> {
    (Utc::now() + chrono::Duration::minutes(minutes)).trunc_subsecs(3)
}

fn ms(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp_millis()).expect("after the epoch")
}

/// A stream entry's or a delayed member's fields, as the queue decodes them.
fn decode(fields: HashMap<String, Vec<u8>>) -> JobEntry {
    JobEntry::from_fields(&fields).expect("a job entry")
}

/// Every member of `queue`'s delayed set with its score (the ms it is due), decoded.
async fn delayed(t: &TestApp, queue: &Queue) -> Vec<(JobEntry, u64)> {
    let mut conn = t.queue.raw().await;
    let members: Vec<(String, u64)> = redis::cmd("ZRANGE")
        .arg(queue.keys().delayed())
        .arg(0)
        .arg(-1)
        .arg("WITHSCORES")
        .query_async(&mut conn)
        .await
        .expect("ZRANGE");
    members
        .into_iter()
        .map(|(member, due)| {
            let flat: Vec<String> = serde_json::from_str(&member).expect("a delayed member");
            let fields = flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone().into_bytes())).collect();
            (decode(fields), due)
        })
        .collect()
}

/// Every entry of `queue`'s jobs stream, decoded.
async fn stream(t: &TestApp, queue: &Queue) -> Vec<JobEntry> {
    let mut conn = t.queue.raw().await;
    let entries: Vec<(String, HashMap<String, Vec<u8>>)> = redis::cmd("XRANGE")
        .arg(queue.keys().jobs())
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    entries.into_iter().map(|(_, fields)| decode(fields)).collect()
}

fn job_id(r: &Reply) -> JobId {
    JobId::parse(r.json["job_id"].as_str().expect("job id")).expect("job id")
}

/// The fields named in problem `r`'s errors.
fn fields(r: &Reply) -> Vec<String> {
    r.json["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_future_run_at_records_a_scheduled_job_whose_entry_waits_until_then() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let input = summary_input("doc-later", "Due in an hour.");
        let at = in_minutes(60);
        let r =
            submit(&t, json!({"kind": "summarize", "input": input, "run_at": at, "priority": "high"})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!((&r.json["status"], &r.json["priority"]), (&json!("scheduled"), &json!("high")));
        assert_eq!(r.json["run_at"], json!(at));
        let id = job_id(&r);
        assert_eq!(id, summarize_id(&input));
        let read = t.call(Method::GET, &format!("/v1/jobs/{id}"), Some(&t.key), None).await;
        assert_eq!((read.status, &read.json), (StatusCode::OK, &r.json));

        // Not in the stream: in the delayed set, due at run_at, with its priority.
        assert_eq!(t.summarize_len().await, 0);
        let waiting = delayed(&t, &t.summarize).await;
        assert_eq!(waiting.len(), 1, "{waiting:?}");
        let (entry, due) = &waiting[0];
        assert_eq!(*due, ms(at));
        assert_eq!((&entry.job_id, entry.attempt, entry.priority), (&id, 1, Priority::High));
        assert!(t.summarize.has_trace(&id).await.expect("trace"));

        // A duplicate, now without a schedule and at another priority: the same job, unchanged,
        // and still one entry, still waiting.
        let again = submit(&t, json!({"kind": "summarize", "input": input, "priority": "low"})).await;
        assert_eq!((again.status, &again.json), (StatusCode::OK, &r.json));
        assert_eq!(delayed(&t, &t.summarize).await.len(), 1);
        assert_eq!(t.summarize_len().await, 0);

        // Listed by status and priority.
        let list = |query: &'static str| t.call(Method::GET, query, Some(&t.key), None);
        let scheduled = list("/v1/jobs?status=scheduled").await;
        assert_eq!(scheduled.json["jobs"][0]["job_id"], id.as_str(), "{scheduled:?}");
        assert_eq!(list("/v1/jobs?priority=high").await.json["jobs"].as_array().map(Vec::len), Some(1));
        assert_eq!(list("/v1/jobs?priority=low").await.json["jobs"].as_array().map(Vec::len), Some(0));
        let bad = list("/v1/jobs?priority=urgent").await;
        problem(&bad, StatusCode::BAD_REQUEST);
        assert_eq!(fields(&bad), ["priority"]);

        // Cancelled while it waits: at once, and its delayed entry is dropped with it — so a retry
        // right after runs at once instead of being taken for a duplicate of that entry.
        let cancelled = t.call(Method::POST, &format!("/v1/jobs/{id}/cancel"), Some(&t.key), None).await;
        assert_eq!((cancelled.status, &cancelled.json["status"]), (StatusCode::OK, &json!("cancelled")));
        assert!(delayed(&t, &t.summarize).await.is_empty(), "the scheduled entry is dropped");
        assert!(!t.summarize.has_trace(&id).await.expect("trace"));
        let retried = t.call(Method::POST, &format!("/v1/jobs/{id}/retry"), Some(&t.key), None).await;
        assert_eq!(
            (retried.status, &retried.json["status"]),
            (StatusCode::ACCEPTED, &json!("queued")),
            "{retried:?}"
        );
        assert_eq!(t.summarize_len().await, 1, "the retry is in the stream");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_run_at_now_or_past_runs_at_once_and_the_entry_carries_the_priority() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let past = in_minutes(-10);
        let low = summary_input("doc-past", "Was due ten minutes ago.");
        let r =
            submit(&t, json!({"kind": "summarize", "input": low, "run_at": past, "priority": "low"})).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        assert_eq!((&r.json["status"], &r.json["priority"]), (&json!("queued"), &json!("low")));
        assert_eq!(r.json["run_at"], json!(past), "the time asked for is kept");
        let plain = summary_input("doc-plain", "No schedule.");
        let p = submit(&t, json!({"kind": "summarize", "input": plain, "run_at": null})).await;
        assert_eq!(
            (p.status, &p.json["status"], &p.json["priority"]),
            (StatusCode::ACCEPTED, &json!("queued"), &json!("normal"))
        );
        assert!(p.json.get("run_at").is_none(), "{}", p.json);

        // Both in the stream at once, each with its priority; nothing delayed.
        let entries = stream(&t, &t.summarize).await;
        let priorities: Vec<_> = entries.iter().map(|e| (e.job_id.clone(), e.priority)).collect();
        assert_eq!(priorities, [(job_id(&r), Priority::Low), (job_id(&p), Priority::Normal)]);
        assert!(delayed(&t, &t.summarize).await.is_empty());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_run_at_or_priority_is_a_422_naming_it_and_nothing_is_written() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let input = summary_input("doc-bad", "Never recorded.");
        let too_far = (Utc::now() + chrono::Duration::days(367)).to_rfc3339();
        let cases = [
            (json!({"run_at": "tomorrow"}), vec!["run_at"]),
            (json!({"run_at": "2030-01-01"}), vec!["run_at"]),
            (json!({"run_at": too_far}), vec!["run_at"]),
            (json!({"run_at": 1_900_000_000}), vec!["run_at"]),
            (json!({"priority": "urgent"}), vec!["priority"]),
            (json!({"priority": "High"}), vec!["priority"]),
            (json!({"priority": 1}), vec!["priority"]),
            (json!({"run_at": "soon", "priority": "top"}), vec!["run_at", "priority"]),
        ];
        for (extra, want) in cases {
            let mut body = json!({"kind": "summarize", "input": input});
            body.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
            let r = submit(&t, body).await;
            problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(fields(&r), want, "{extra}: {r:?}");
        }
        let r = submit(&t, json!({"kind": "summarize", "input": input, "run_at": too_far})).await;
        let message = r.json["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains("at most 366 days ahead"), "{message}");
        // With a bad input too, every bad field is named.
        let bad_input = json!({"kind": "summarize", "input": {"document_id": "d"}, "priority": "urgent"});
        let r = submit(&t, bad_input).await;
        problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(fields(&r).last().map(String::as_str), Some("priority"), "{r:?}");
        assert!(fields(&r).len() == 2, "{r:?}");

        // A batch names the item's field; its good items, scheduled or not, are accepted.
        let at = in_minutes(30);
        let jobs = json!([
            {"kind": "summarize", "input": summary_input("doc-b0", "Later."), "run_at": at, "priority": "low"},
            {"kind": "summarize", "input": summary_input("doc-b1", "Bad time."), "run_at": "noon"},
            {"kind": "summarize", "input": summary_input("doc-b2", "Bad priority."), "priority": "asap"},
        ]);
        let b = t.call(Method::POST, "/v1/jobs/batch", Some(&t.key), Some(json!({ "jobs": jobs }))).await;
        assert_eq!(b.status, StatusCode::OK, "{b:?}");
        let results = &b.json["results"];
        assert_eq!((&results[0]["status"], &results[0]["job"]["status"]), (&json!(202), &json!("scheduled")));
        assert_eq!(results[0]["job"]["run_at"], json!(at));
        assert_eq!(results[1]["error"]["errors"][0]["field"], "jobs[1].run_at");
        assert_eq!(results[2]["error"]["errors"][0]["field"], "jobs[2].priority");
        // Only the good item was recorded, and only its entry waits.
        assert_eq!(t.job_rows().await, 1);
        assert_eq!(t.summarize_len().await, 0);
        let waiting = delayed(&t, &t.summarize).await;
        assert_eq!(waiting.iter().map(|(e, due)| (e.priority, *due)).collect::<Vec<_>>(), [(Priority::Low, ms(at))]);
    })
    .await;
}

/// Sets `job`'s `run_at` to `at` behind the store's back (a job whose time came while Redis had
/// lost it).
async fn set_run_at(db: &TestDb, job: &JobId, at: DateTime<Utc>) {
    match db.db() {
        longhaul_store::backend::Db::Postgres(pool) => {
            sqlx::query("UPDATE jobs SET run_at = $1 WHERE job_id = $2")
                .bind(at)
                .bind(job.as_str())
                .execute(pool)
                .await
                .map(|_| ())
        }
        longhaul_store::backend::Db::Sqlite(pool) => {
            sqlx::query("UPDATE jobs SET run_at = $1 WHERE job_id = $2")
                .bind(at)
                .bind(job.as_str())
                .execute(pool)
                .await
                .map(|_| ())
        }
    }
    .expect("update");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reconciler_puts_a_lost_scheduled_job_back_at_its_run_at() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let at = in_minutes(45);
        let later = summary_input("doc-lost", "Lost before its time.");
        let due = summary_input("doc-due", "Its time came while lost.");
        let mut ids = Vec::new();
        for input in [&later, &due] {
            let r = submit(&t, json!({"kind": "summarize", "input": input, "run_at": at, "priority": "low"}))
                .await;
            assert_eq!((r.status, &r.json["status"]), (StatusCode::ACCEPTED, &json!("scheduled")), "{r:?}");
            ids.push(job_id(&r));
        }
        // Redis loses the delayed set and the jobs' presence keys.
        let mut conn = t.queue.raw().await;
        let keys = t.summarize.keys();
        let _: () = redis::cmd("DEL")
            .arg(keys.delayed())
            .arg(keys.job(ids[0].as_str()))
            .arg(keys.job(ids[1].as_str()))
            .query_async(&mut conn)
            .await
            .expect("DEL");
        assert!(!t.summarize.has_trace(&ids[0]).await.expect("trace"));
        let past = in_minutes(-1);
        set_run_at(&t.db, &ids[1], past).await;

        // The one already due runs at once; the one not due yet is not even looked at (a scheduled
        // record does not change while it waits: checking each on every pass would cost a Redis
        // call per scheduled job per pass).
        assert_eq!(t.reconcile(Duration::ZERO).await, 1);
        assert_eq!(t.reconcile(Duration::ZERO).await, 0, "restored once");
        assert!(delayed(&t, &t.summarize).await.is_empty());
        let entries = stream(&t, &t.summarize).await;
        let entries: Vec<_> = entries.iter().map(|e| (e.job_id.clone(), e.attempt, e.priority)).collect();
        assert_eq!(entries, [(ids[1].clone(), 1, Priority::Low)]);
        assert!(!t.summarize.has_trace(&ids[0]).await.expect("trace"));
        // Once its run_at has passed, it is restored too, straight into the stream.
        set_run_at(&t.db, &ids[0], past).await;
        assert_eq!(t.reconcile(Duration::ZERO).await, 1);
        let entries = stream(&t, &t.summarize).await;
        let entries: Vec<_> = entries.iter().map(|e| (e.job_id.clone(), e.attempt, e.priority)).collect();
        assert_eq!(entries, [(ids[1].clone(), 1, Priority::Low), (ids[0].clone(), 1, Priority::Low)]);
        // The records are untouched: still scheduled.
        for id in &ids {
            let r = t.db.get_job(&longhaul_core::TenantId::parse("acme").expect("t"), id).await.expect("get");
            assert_eq!(r.map(|r| r.status), Some(JobStatus::Scheduled));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_on_the_command_line_takes_run_at_and_priority() {
    let t = TestApp::new(Backend::Sqlite).await;
    let input = summary_input("doc-cli-later", "Scheduled from the command line.");
    let at = in_minutes(90);
    let at_text = at.to_rfc3339();
    let args =
        ["--kind", "summarize", "--input", &input.to_string(), "--run-at", &at_text, "--priority", "low"];
    let out = crate::cli::enqueue(&t, &args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{:?}: {stdout} {}", out.status, String::from_utf8_lossy(&out.stderr));
    let record: Value = serde_json::from_str(&stdout).expect("one JSON record");
    assert_eq!((&record["status"], &record["priority"]), (&json!("scheduled"), &json!("low")));
    assert_eq!(record["run_at"], json!(at));
    let waiting = delayed(&t, &t.summarize).await;
    assert_eq!(
        waiting.iter().map(|(e, due)| (e.priority, *due)).collect::<Vec<_>>(),
        [(Priority::Low, ms(at))]
    );

    // Bad flags: refused before anything is written.
    let other = summary_input("doc-cli-bad", "Never recorded.");
    for (flag, value, says) in
        [("--priority", "urgent", "expected high, normal or low"), ("--run-at", "tomorrow", "RFC 3339")]
    {
        let out =
            crate::cli::enqueue(&t, &["--kind", "summarize", "--input", &other.to_string(), flag, value])
                .await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag) && stderr.contains(says), "{flag} {value}: {stderr}");
    }
    assert_eq!(t.job_rows().await, 1);
}
