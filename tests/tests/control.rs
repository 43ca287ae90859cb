//! Control end to end with the real binaries: the operator API's credentials, pausing a queue (which
//! outlives a worker's restart) and a kind, scheduled jobs, priorities under backlog, a tenant's
//! cap, dead letters (undecodable and stalled) listed, replayed and purged, bulk retry with a dry
//! run, retention pruning, and the CLI's tables and JSON.

use std::time::Duration;

use longhaul_e2e::{Mode, Prompt, System};
use longhaul_summarize::SummarizeInput;
use longhaul_testkit::wait_until;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// A one-chunk summarize input for document `id`.
fn document(id: &str) -> Value {
    let text = format!(
        "Document {id} says what the job does with its text. It is short enough to be one chunk, \
         and it ends here."
    );
    serde_json::to_value(SummarizeInput { document_id: id.to_owned(), text, chunk_chars: None })
        .expect("input")
}

fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {job}")).to_owned()
}

/// `POST /v1/jobs` with `body` as tenant key `key`: (status, body).
async fn post_job(sys: &System, key: &str, body: Value) -> (u16, Value) {
    let r = sys
        .http()
        .post(format!("{}/v1/jobs", sys.api))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .expect("submit");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Submits a summarize job for document `doc` as `acme`, with `extra` fields in the body; its id.
async fn summarize(sys: &System, doc: &str, extra: Value) -> String {
    let mut body = json!({"kind": "summarize", "input": document(doc)});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, job) = post_job(sys, &sys.key, body).await;
    assert_eq!(status, 202, "{job}");
    id(&job)
}

/// The job ids of `jobs` ordered by when they started.
async fn start_order(sys: &System, jobs: &[String]) -> Vec<String> {
    let mut started = Vec::new();
    for job in jobs {
        let r = sys.job(job).await;
        let at = chrono::DateTime::parse_from_rfc3339(r["started_at"].as_str().expect("started_at"))
            .expect("time");
        started.push((at, job.clone()));
    }
    started.sort();
    started.into_iter().map(|(_, j)| j).collect()
}

/// The admin API takes operator keys only: no key 401, a tenant's key 403, an operator's 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_api_takes_operator_keys_only() {
    let sys = System::start(Mode::Ok, &[]).await;
    let ops = sys.operator("ops");
    let r = sys.http().get(format!("{}/admin/v1/queues", sys.api)).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 401);
    let (status, body) = sys.admin(&sys.key, "GET", "queues", None).await;
    assert_eq!(status, 403, "a tenant key is refused: {body}");
    let (status, body) = sys.admin("not-a-key", "GET", "queues", None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = sys.admin(&ops, "GET", "queues", None).await;
    assert_eq!(status, 200, "{body}");
    // And an operator key is no tenant key.
    let (status, _) = sys.job_as(&ops, "job_x").await;
    assert_eq!(status, 401);
}

/// A paused queue: its worker finishes nothing new of it — also after a restart — while the other
/// queue runs; submits still record and enqueue; listed as paused; resumed, the job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_queue_starts_nothing_until_resumed_across_restarts() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let ops = sys.operator("ops");
    let (status, body) = sys.admin(&ops, "POST", "queues/summarize/pause", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sys.admin(&ops, "POST", "queues/nope/pause", None).await;
    assert_eq!(status, 404, "an unknown queue: {body}");

    let w1 = sys.worker("w1");
    let held = summarize(&sys, "paused-doc", json!({})).await;
    sys.ticket("T-1").await;
    let (status, t1) = sys.triage("T-1").await;
    assert_eq!(status, 202, "{t1}");
    sys.wait_status(&id(&t1), "completed", LONG).await;

    // A restarted worker reads the pause before it takes anything.
    sys.procs[w1].kill();
    let w2 = sys.worker("w2");
    sys.ticket("T-2").await;
    let (_, t2) = sys.triage("T-2").await;
    sys.wait_status(&id(&t2), "completed", LONG).await;
    wait_until(LONG, "w2 logs the paused queue", async || {
        let paused = sys
            .log_lines(w2)
            .iter()
            .any(|l| l["message"] == "queue paused: taking nothing new" && l["queue"] == "summarize");
        if paused { Ok(()) } else { Err(sys.procs[w2].output()) }
    })
    .await;
    let record = sys.job(&held).await;
    assert_eq!((record["status"].as_str(), &record["attempts"]), (Some("queued"), &json!(0)), "{record}");

    let (code, out, err) = sys.cli(&["queues", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    let summarize_row =
        listed["queues"].as_array().expect("rows").iter().find(|q| q["queue"] == "summarize").cloned();
    assert_eq!(summarize_row.as_ref().map(|q| q["paused"].clone()), Some(json!(true)), "{listed}");
    let (code, table, err) = sys.cli(&["queues", "list"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.lines().next().is_some_and(|h| h.contains("QUEUE")), "a table with a header: {table}");

    let (code, _, err) = sys.cli(&["queues", "resume", "summarize"]);
    assert_eq!(code, 0, "{err}");
    let done = sys.wait_status(&held, "completed", LONG).await;
    assert_eq!(done["attempts"], 1, "the pause spent no attempt");
}

/// A paused kind: its entries wait again (no attempt spent) while the worker keeps running the
/// other kinds; resumed, they run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_kind_waits_without_spending_attempts() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let ops = sys.operator("ops");
    sys.worker("w1");
    let (status, body) = sys.admin(&ops, "POST", "kinds/summarize/pause", None).await;
    assert_eq!(status, 200, "{body}");
    let held = summarize(&sys, "kind-paused-doc", json!({})).await;
    sys.ticket("T-1").await;
    let (_, t1) = sys.triage("T-1").await;
    sys.wait_status(&id(&t1), "completed", LONG).await;
    let record = sys.job(&held).await;
    assert_eq!((record["status"].as_str(), &record["attempts"]), (Some("queued"), &json!(0)), "{record}");
    assert!(sys.fake.chats_of(Prompt::Summarize).is_empty(), "the paused kind asked no provider");
    let (status, body) = sys.admin(&ops, "POST", "kinds/summarize/resume", None).await;
    assert_eq!(status, 200, "{body}");
    let done = sys.wait_status(&held, "completed", LONG).await;
    assert_eq!(done["attempts"], 1);
}

/// A job submitted with `run_at` is `scheduled` until then, and starts after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scheduled_job_starts_at_its_run_at() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    sys.worker("w1");
    let run_at = chrono::Utc::now() + chrono::Duration::seconds(3);
    let job = summarize(&sys, "later-doc", json!({"run_at": run_at.to_rfc3339()})).await;
    let record = sys.job(&job).await;
    assert_eq!(record["status"], "scheduled", "{record}");
    let now = summarize(&sys, "now-doc", json!({})).await;
    sys.wait_status(&now, "completed", LONG).await;
    let done = sys.wait_status(&job, "completed", LONG).await;
    let started =
        chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().expect("started_at")).expect("time");
    assert!(started >= run_at, "started {started} before its run_at {run_at}");
    let (status, body) =
        post_job(&sys, &sys.key, json!({"kind": "summarize", "input": document("x"), "run_at": "tomorrow"}))
            .await;
    assert_eq!(status, 422, "{body}");
}

/// Under backlog, high-priority jobs start first, normal ones next, low ones last — one worker
/// slot, jobs submitted low first while the queue is paused, then resumed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_backlog_higher_priorities_start_first() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let ops = sys.operator("ops");
    sys.admin(&ops, "POST", "queues/summarize/pause", None).await;
    let w1 = sys.spawn(
        "worker",
        &["--skip-migrations"],
        &[("LONGHAUL_CONSUMER_NAME", "w1"), ("LONGHAUL_QUEUES", "summarize"), ("LONGHAUL_CONCURRENCY", "1")],
    );
    // The worker mirrors the pause into Redis on its first read; from then on submits wait.
    wait_until(LONG, "w1 reads the pause", async || {
        let read = sys.log_lines(w1).iter().any(|l| l["message"] == "queue paused: taking nothing new");
        if read { Ok(()) } else { Err(sys.procs[w1].output()) }
    })
    .await;
    let mut jobs: Vec<(String, &str)> = Vec::new();
    for priority in ["low", "normal", "high"] {
        for i in 0..5 {
            jobs.push((
                summarize(&sys, &format!("{priority}-{i}"), json!({"priority": priority})).await,
                priority,
            ));
        }
    }
    let record = sys.job(&jobs[0].0).await;
    assert_eq!(record["priority"], "low", "{record}");
    sys.admin(&ops, "POST", "queues/summarize/resume", None).await;
    for (job, _) in &jobs {
        sys.wait_status(job, "completed", LONG).await;
    }
    let ids: Vec<String> = jobs.iter().map(|(j, _)| j.clone()).collect();
    let order = start_order(&sys, &ids).await;
    let rank = |p: &str| -> f64 {
        let positions: Vec<usize> = jobs
            .iter()
            .filter(|(_, q)| *q == p)
            .map(|(j, _)| order.iter().position(|o| o == j).expect("started"))
            .collect();
        positions.iter().sum::<usize>() as f64 / positions.len() as f64
    };
    let (high, normal, low) = (rank("high"), rank("normal"), rank("low"));
    let first = jobs.iter().find(|(j, _)| *j == order[0]).map(|(_, p)| *p);
    assert_eq!(first, Some("high"), "order: {order:?}");
    assert!(high < normal && normal < low, "mean start positions: high {high}, normal {normal}, low {low}");
}

/// A tenant capped at one running job: its second job waits (queued, no attempt spent) while the
/// first holds its provider call, another tenant's job starts meanwhile, and all finish in one
/// attempt each.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_capped_tenant_waits_without_spending_attempts_while_others_run() {
    let mut sys = System::start(Mode::Gated, &[]).await;
    let ops = sys.operator("ops");
    let (status, body) = sys.admin(&ops, "PUT", "limits/tenants/acme", Some(json!({"max_running": 1}))).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = sys.admin(&ops, "PUT", "limits/tenants/acme", Some(json!({"max_running": 0}))).await;
    assert_eq!(status, 422, "{body}");
    sys.worker("w1");
    let first = summarize(&sys, "capped-1", json!({})).await;
    wait_until(LONG, "the first job's call is held", async || {
        let n = sys.fake.chats_of(Prompt::Summarize).len();
        if n == 1 { Ok(()) } else { Err(n) }
    })
    .await;
    let second = summarize(&sys, "capped-2", json!({})).await;
    let other_key = sys.tenant("globex");
    let body = json!({"kind": "summarize", "input": document("other-1")});
    let (status, other) = post_job(&sys, &other_key, body).await;
    assert_eq!(status, 202, "{other}");
    let other = id(&other);
    // The other tenant's job reaches the provider; acme's second does not.
    wait_until(LONG, "the other tenant's call is held too", async || {
        let users: Vec<String> = sys.fake.chats_of(Prompt::Summarize).into_iter().map(|c| c.user).collect();
        if users.len() >= 2 { Ok(users) } else { Err(users) }
    })
    .await;
    let users: Vec<String> = sys.fake.chats_of(Prompt::Summarize).into_iter().map(|c| c.user).collect();
    assert!(users.iter().any(|u| u.contains("other-1")), "{users:?}");
    assert!(!users.iter().any(|u| u.contains("capped-2")), "acme's second job started: {users:?}");
    let waiting = sys.job(&second).await;
    assert_eq!((waiting["status"].as_str(), &waiting["attempts"]), (Some("queued"), &json!(0)), "{waiting}");
    sys.fake.set_mode(Mode::Ok);
    sys.fake.release(64);
    for (key, job) in [(&sys.key, &first), (&sys.key, &second), (&other_key, &other)] {
        let done = wait_until(LONG, "completed", async || {
            let (_, r) = sys.job_as(key, job).await;
            if r["status"] == "completed" { Ok(r) } else { Err(r) }
        })
        .await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
}

/// A kind limited to 2 starts per second, across tenants and workers: six jobs submitted at once
/// start over at least two seconds (a bucket of two tokens, then one every half second), none
/// spending more than one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_kind_rate_limit_spaces_its_starts_across_workers() {
    let mut sys = System::start(Mode::Ok, &[("LONGHAUL_CONTROL_POLL", "200ms")]).await;
    let ops = sys.operator("ops");
    let (status, body) =
        sys.admin(&ops, "PUT", "limits/kinds/summarize", Some(json!({"starts_per_second": 2}))).await;
    assert_eq!(status, 200, "{body}");
    let w1 = sys.worker("w1");
    sys.worker("w2");
    // The workers mirror the limit into Redis on their first read of control.
    wait_until(LONG, "w1 reads control", async || {
        let read = sys.log_lines(w1).iter().any(|l| l["message"] == "paused queues and kinds");
        if read { Ok(()) } else { Err(sys.procs[w1].output()) }
    })
    .await;
    let mut jobs = Vec::new();
    for i in 0..6 {
        jobs.push(summarize(&sys, &format!("rated-{i}"), json!({})).await);
    }
    let mut starts = Vec::new();
    for job in &jobs {
        let done = sys.wait_status(job, "completed", LONG).await;
        assert_eq!(done["attempts"], 1, "{done}");
        starts.push(
            chrono::DateTime::parse_from_rfc3339(done["started_at"].as_str().expect("started_at"))
                .expect("time"),
        );
    }
    starts.sort();
    let span = starts[5] - starts[0];
    assert!(span >= chrono::Duration::milliseconds(1900), "six starts within {span:?}: {starts:?}");
}

/// An undecodable entry is dead-lettered, listed (API and CLI), and purged; an entry that ran out
/// of deliveries fails its job as stalled, is listed with its job, and replaying it runs the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_replayed_and_purged() {
    let mut sys = System::start(Mode::Gated, &[("LONGHAUL_MAX_DELIVERIES", "1")]).await;
    let ops = sys.operator("ops");
    let mut redis = redis::Client::open(longhaul_testkit::redis_url())
        .expect("redis")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let stream = format!("{}:{{summarize}}:jobs", sys.queue.prefix);
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("j")
        .arg("not a job id!")
        .query_async(&mut redis)
        .await
        .expect("xadd");
    // Stalled: w1 takes the job and dies holding it; w2 finds it delivered once too often.
    let w1 = sys.worker("w1");
    let job = summarize(&sys, "stalled-doc", json!({})).await;
    sys.wait_status(&job, "running", LONG).await;
    sys.procs[w1].kill();
    sys.worker("w2");
    let failed = sys.wait_status(&job, "failed", LONG).await;
    assert!(failed["error_message"].as_str().is_some_and(|m| m.starts_with("stalled")), "{failed}");

    let letters = wait_until(LONG, "two dead letters", async || {
        let (status, body) = sys.admin(&ops, "GET", "dead-letters?queue=summarize", None).await;
        let n = body["dead_letters"].as_array().map_or(0, Vec::len);
        if status == 200 && n == 2 { Ok(body) } else { Err((status, body)) }
    })
    .await;
    let letters = letters["dead_letters"].as_array().expect("list").clone();
    let stalled = letters.iter().find(|l| l["job_id"] == job.as_str()).expect("the stalled entry").clone();
    let garbage =
        letters.iter().find(|l| l["job_id"] != job.as_str()).expect("the undecodable entry").clone();
    assert!(garbage["reason"].as_str().is_some_and(|r| r.contains("\"j\"")), "{garbage}");
    let (code, out, err) = sys.cli(&["dead-letters", "list", "summarize", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(listed["dead_letters"].as_array().map(Vec::len), Some(2), "{out}");

    let garbage_id = garbage["id"].as_str().expect("id");
    let (status, body) =
        sys.admin(&ops, "DELETE", &format!("dead-letters/summarize/{garbage_id}"), None).await;
    assert_eq!(status, 200, "{body}");
    sys.fake.set_mode(Mode::Ok);
    sys.fake.release(64);
    let stalled_id = stalled["id"].as_str().expect("id");
    let (status, body) =
        sys.admin(&ops, "POST", &format!("dead-letters/summarize/{stalled_id}/replay"), None).await;
    assert!(status == 200 || status == 202, "{status} {body}");
    sys.wait_status(&job, "completed", LONG).await;
    let (_, body) = sys.admin(&ops, "GET", "dead-letters?queue=summarize", None).await;
    assert_eq!(body["dead_letters"].as_array().map(Vec::len), Some(0), "{body}");
}

/// Bulk retry of failed jobs: a dry run counts them and changes nothing; the real run puts each
/// back, and they complete.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_jobs_are_retried_in_bulk_after_a_dry_run() {
    let mut sys = System::start(Mode::Blank, &[]).await;
    let ops = sys.operator("ops");
    sys.worker("w1");
    let mut jobs = Vec::new();
    for i in 0..3 {
        jobs.push(summarize(&sys, &format!("bulk-{i}"), json!({})).await);
    }
    for job in &jobs {
        sys.wait_status(job, "failed", LONG).await;
    }
    let filter = json!({"kind": "summarize", "error_class": "invalid", "dry_run": true});
    let (status, body) = sys.admin(&ops, "POST", "jobs/retry", Some(filter)).await;
    assert_eq!((status, &body["matched"], &body["retried"]), (200, &json!(3), &json!(0)), "{body}");
    assert_eq!(sys.job(&jobs[0]).await["status"], "failed", "a dry run changes nothing");
    sys.fake.set_mode(Mode::Ok);
    let (status, body) =
        sys.admin(&ops, "POST", "jobs/retry", Some(json!({"kind": "summarize", "tenant": "acme"}))).await;
    assert_eq!((status, &body["retried"]), (200, &json!(3)), "{body}");
    for job in &jobs {
        sys.wait_status(job, "completed", LONG).await;
    }
    let (code, table, err) = sys.cli(&["jobs", "list", "--tenant", "acme", "--status", "completed"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(table.lines().count(), 4, "a header and three rows: {table}");
}

/// With a short retention, a finished job and its audit rows are pruned; a scheduled job is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_jobs_are_pruned_after_the_retention() {
    let mut sys = System::start(
        Mode::Ok,
        &[
            ("LONGHAUL_RETAIN_FINISHED", "1s"),
            ("LONGHAUL_RETAIN_OPERATIONS", "1s"),
            ("LONGHAUL_PRUNE_EVERY", "200ms"),
        ],
    )
    .await;
    sys.worker("w1");
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    let live = summarize(&sys, "live-doc", json!({"run_at": later.to_rfc3339()})).await;
    let job = summarize(&sys, "pruned-doc", json!({})).await;
    sys.wait_status(&job, "completed", LONG).await;
    wait_until(LONG, "the finished job is pruned", async || {
        let (status, body) = sys.job_as(&sys.key, &job).await;
        if status == 404 { Ok(()) } else { Err((status, body)) }
    })
    .await;
    let mut db = <sqlx::PgConnection as sqlx::Connection>::connect(&sys.db.url).await.expect("database");
    let audit: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE job_id = $1")
        .bind(&job)
        .fetch_one(&mut db)
        .await
        .expect("count");
    assert_eq!(audit, 0, "its audit rows are gone too");
    assert_eq!(sys.job(&live).await["status"], "scheduled", "a live job is never pruned");
}
