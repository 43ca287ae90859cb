//! The second built-in kind, `summarize`, end to end through `POST /v1/jobs` with the real
//! binaries — and the checklist every kind must pass, as the triage tests (`e2e.rs`, the fault
//! suite) pass it, run for summarize and, where it is cheap, for both kinds side by side: the record
//! exists before the queue entry, a duplicate submission is the same job, Redis down at submission
//! is a 503 the reconciler recovers from, a transient provider failure is retried with backoff,
//! invalid data fails the job as invalid, a job is invisible to another tenant, progress follows
//! the stages, and queue-events logs the kind's events under its queue.
//!
//! The workers run with `LONGHAUL_PROVIDER=openai` against the harness's stand-in, which answers
//! summarize's chat calls with [`chunk_summary`] and [`combined_summary`].

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use longhaul_core::kind::JobKind as _;
use longhaul_e2e::{Mode, PrivateRedis, Prompt, System, chunk_summary, combined_summary};
use longhaul_summarize::{Summarize, SummarizeInput};
use longhaul_testkit::procs::free_port;
use longhaul_testkit::{RedisKind, on_redis, wait_until};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// Characters per chunk the test documents ask for: each of their paragraphs is one chunk.
const CHUNK_CHARS: u32 = 400;

/// A document `id` of `paragraphs` paragraphs of about 300 characters, each opening with a
/// sentence that names it: the summarize input and its chunks. Its summary goes to the submitting
/// tenant's webhook (the stand-in's, for tenants made by [`System::tenant`]).
fn document(id: &str, paragraphs: usize) -> (Value, Vec<String>) {
    let text = (0..paragraphs)
        .map(|k| {
            format!(
                "Section {k} of {id} explains how the queue keeps job {k} safe under load. Workers \
                 lease each entry and renew the lease while they run it. A worker that dies loses \
                 its lease, and another worker takes the entry over after the lease ends. Every \
                 side effect is a durable step, so nothing is applied twice."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let input = SummarizeInput { document_id: id.to_owned(), text, chunk_chars: Some(CHUNK_CHARS) };
    let chunks = input.chunks();
    assert_eq!(chunks.len(), paragraphs, "one chunk per paragraph: {chunks:?}");
    (serde_json::to_value(&input).expect("input"), chunks)
}

/// The summary the stand-in's answers make of `chunks`.
fn expected_summary(chunks: &[String]) -> String {
    match chunks {
        [one] => chunk_summary(one),
        _ => combined_summary(&chunks.iter().map(|c| chunk_summary(c)).collect::<Vec<_>>()),
    }
}

fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {job}")).to_owned()
}

/// Progress (0–100) at the start and end of summarize's stage `name`.
fn span(name: &str) -> (u64, u64) {
    let options = Summarize::options();
    let index = options.stages.iter().position(|s| s.name == name).expect("a summarize stage");
    let (from, to) = options.stage_span(index);
    (u64::from(from), u64::from(to))
}

/// A long document through `POST /v1/jobs`, with every chat call held until the test lets it
/// through: the record exists (queued, no progress) before a worker runs; then progress moves
/// through the stages — `summarize` chunk by chunk, `combine` — to `completed` at 100; the output is
/// the combination of the chunks' summaries in order, made by one provider call per chunk and one
/// to combine; the webhook is delivered once with its operation id as `Idempotency-Key`; and
/// queue-events logs the completion once, under queue `summarize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_document_is_summarized_through_the_jobs_api() {
    let mut sys = System::start(Mode::Gated, &[]).await;
    let events = sys.queue_events("qe-1");
    let n = 4;
    let (input, chunks) = document("handbook", n);
    let (status, job) = sys.submit("summarize", &input).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!((job["kind"].as_str(), job["status"].as_str()), (Some("summarize"), Some("queued")), "{job}");
    assert_eq!(job["input"], input, "the record keeps the input as submitted");
    let job = id(&job);
    let before = sys.job(&job).await;
    assert_eq!(
        (before["status"].as_str(), before["progress"].as_u64()),
        (Some("queued"), Some(0)),
        "{before}"
    );

    sys.worker("w1");
    let (from, to) = span("summarize");
    let mut seen = Vec::new();
    for i in 0..n {
        // Chunk i's call is held at the stand-in: chunks 0..i are done.
        wait_until(LONG, &format!("the provider asked for chunk {i}"), async || {
            let calls = sys.fake.chats_of(Prompt::Summarize).len();
            if calls == i + 1 { Ok(()) } else { Err(calls) }
        })
        .await;
        let expected = from + (to - from) * i as u64 / n as u64;
        let record = wait_until(LONG, &format!("progress after {i} chunks"), async || {
            let r = sys.job(&job).await;
            let at = (r["status"].as_str(), r["stage"].as_str(), r["progress"].as_u64());
            if at == (Some("running"), Some("summarize"), Some(expected)) { Ok(r) } else { Err(r) }
        })
        .await;
        seen.push(record["progress"].as_u64().expect("progress"));
        sys.fake.release(1);
    }
    wait_until(LONG, "the provider asked to combine", async || {
        let calls = sys.fake.chats_of(Prompt::Combine).len();
        if calls == 1 { Ok(()) } else { Err(calls) }
    })
    .await;
    let record = wait_until(LONG, "the combine stage", async || {
        let r = sys.job(&job).await;
        let at = (r["stage"].as_str(), r["progress"].as_u64());
        if at == (Some("combine"), Some(span("combine").0)) { Ok(r) } else { Err(r) }
    })
    .await;
    seen.push(record["progress"].as_u64().expect("progress"));
    sys.fake.release(1);
    let done = sys.wait_status(&job, "completed", LONG).await;
    seen.push(done["progress"].as_u64().expect("progress"));
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "progress only moves forward: {seen:?}");
    assert_eq!(seen.last(), Some(&100));
    assert_eq!(done["attempts"], 1);

    let summary = expected_summary(&chunks);
    let output = &done["output"];
    assert_eq!(output["document_id"], "handbook");
    assert_eq!(output["chunks"], n);
    assert_eq!(output["summary"], summary.as_str(), "the chunks' summaries, combined in order");
    assert!(output["webhook"].is_object(), "the delivery's result is stored: {output}");
    // One provider call per chunk, in order, and one to combine.
    let asked: Vec<String> = sys.fake.chats_of(Prompt::Summarize).into_iter().map(|c| c.user).collect();
    assert_eq!(asked, chunks);
    assert_eq!(sys.fake.chat_calls().len(), n + 1);

    // The webhook, once, keyed by its operation id.
    let deliveries = sys.fake.deliveries.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].0, job);
    assert!(deliveries[0].1.starts_with("op_"), "Idempotency-Key {:?}", deliveries[0].1);
    let body = &sys.fake.webhook_bodies_of(&job)[0];
    assert_eq!(body["event"], "document.summarized");
    assert_eq!(body["tenant_id"], "acme");
    assert_eq!(body["document_id"], "handbook");
    assert_eq!(body["chunks"], n);
    assert_eq!(body["summary"], summary.as_str());

    let lines = sys.wait_event(events, "job completed", &job, LONG).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["queue"], "summarize");
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["tenant_id"], "acme");
}

/// The `(field, message)` pairs of a problem document.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| {
                    (
                        e["field"].as_str().unwrap_or("").to_owned(),
                        e["message"].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn join_all<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    futures::future::join_all(futures).await
}

/// Twenty concurrent submissions of one document are one job (one `202`, nineteen `200`), run
/// once and delivered once; resubmitting it later is still that job, while an edited text is a new
/// one. A client `Idempotency-Key` makes its own job, the same again for the same request and a
/// `422` naming the header for another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_summarize_submissions_make_one_job_one_run_and_one_delivery() {
    duplicate_summarize_submissions().await;
}

/// The same with every process on the 3-primary test Redis Cluster (`redis+cluster://` URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_summarize_submissions_on_redis_cluster() {
    on_redis(RedisKind::Cluster, duplicate_summarize_submissions()).await;
}

async fn duplicate_summarize_submissions() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let events = sys.queue_events("qe-1");
    sys.worker("w1");
    let (input, chunks) = document("faq", 3);
    let replies = join_all((0..20).map(|_| sys.submit("summarize", &input))).await;
    let accepted = replies.iter().filter(|(s, _)| *s == 202).count();
    let duplicates = replies.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((accepted, duplicates), (1, 19), "{replies:?}");
    let ids: HashSet<String> = replies.iter().map(|(_, j)| id(j)).collect();
    assert_eq!(ids.len(), 1);
    let job = ids.into_iter().next().expect("one id");
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["output"]["summary"], expected_summary(&chunks).as_str());
    assert_eq!(sys.fake.chat_calls().len(), chunks.len() + 1, "one run");
    assert_eq!(sys.fake.webhook_keys().len(), 1, "one webhook delivery");
    let lines = sys.wait_event(events, "job completed", &job, LONG).await;
    assert_eq!((lines.len(), lines[0]["queue"].as_str()), (1, Some("summarize")));

    // Later, the same document and text: the same job, not run again.
    let (status, again) = sys.submit("summarize", &input).await;
    assert_eq!((status, id(&again)), (200, job.clone()));
    assert_eq!(again["status"], "completed");
    // The same document with an edited text: a new job.
    let mut edited = input.clone();
    edited["text"] = json!(format!("{} One more sentence.", input["text"].as_str().expect("text")));
    let (status, other) = sys.submit("summarize", &edited).await;
    assert_eq!(status, 202, "{other}");
    assert_ne!(id(&other), job);
    sys.wait_status(&id(&other), "completed", LONG).await;

    // A client key: its own job; the same request again is that job; another request under it, 422.
    let (status, keyed) = sys.submit_as(&sys.key, "summarize", &input, Some("client-key-1")).await;
    assert_eq!(status, 202, "{keyed}");
    assert_ne!(id(&keyed), job, "a client key makes its own job");
    let (status, same) = sys.submit_as(&sys.key, "summarize", &input, Some("client-key-1")).await;
    assert_eq!((status, id(&same)), (200, id(&keyed)));
    let (status, problem) = sys.submit_as(&sys.key, "summarize", &edited, Some("client-key-1")).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(field_errors(&problem).first().map(|e| e.0.as_str()), Some("Idempotency-Key"), "{problem}");
    sys.wait_status(&id(&keyed), "completed", LONG).await;
    let runs = sys.fake.deliveries.lock().expect("lock").iter().filter(|(j, _)| *j == job).count();
    assert_eq!(runs, 1, "the first job was delivered once, whatever came after");
}

/// Redis is down when a summarize job and a triage job are submitted: each answer is a `503` with
/// `Retry-After`, and each record is already written (`queued`: the record comes before the queue
/// entry). Redis comes back empty; the client never retries: the reconciler enqueues both records
/// into their kinds' queues, and both jobs complete in one attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_on_submit_is_a_503_and_the_reconciler_runs_each_kinds_record() {
    let port = free_port().expect("a free port");
    let mut redis = PrivateRedis::start(port).await;
    let url = redis.url();
    let mut sys = System::start(
        Mode::Ok,
        &[("REDIS_URL", &url), ("LONGHAUL_RECONCILE_EVERY", "500ms"), ("LONGHAUL_RECONCILE_AFTER", "1s")],
    )
    .await;
    sys.worker("w1");
    sys.ticket("OUT-1").await;
    let (input, _) = document("outage", 2);
    redis.kill();

    let r = sys
        .http()
        .post(format!("{}/v1/jobs", sys.api))
        .bearer_auth(&sys.key)
        .json(&json!({"kind": "summarize", "input": input}))
        .send()
        .await
        .expect("submit");
    assert_eq!(r.status().as_u16(), 503);
    let retry_after =
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    assert!(retry_after.is_some_and(|s| s >= 1), "503 carries Retry-After: {:?}", r.headers());
    let problem: Value = r.json().await.expect("problem");
    assert_eq!(problem["retryable"], true, "{problem}");
    let (status, body) = sys.triage("OUT-1").await;
    assert_eq!(status, 503, "{body}");

    // Both records exist, queued, while no queue holds their entries.
    let mut jobs = Vec::new();
    for kind in ["summarize", "triage"] {
        let listed = sys.list_as(&sys.key, &format!("kind={kind}")).await;
        assert_eq!(listed.len(), 1, "{kind}: {listed:?}");
        let record = sys.job(&listed[0]).await;
        assert_eq!(
            (record["status"].as_str(), record["kind"].as_str()),
            (Some("queued"), Some(kind)),
            "{record}"
        );
        jobs.push(listed[0].clone());
    }

    let _redis = PrivateRedis::start(port).await;
    for job in &jobs {
        let done = sys.wait_status(job, "completed", Duration::from_secs(60)).await;
        assert_eq!(done["attempts"], 1, "{done}");
    }
    let restored = sys.log_lines(0).iter().filter(|l| l["message"] == "reconciler pass").count();
    assert!(restored >= 1, "the producer's reconciler enqueued them: {}", sys.procs[0].output());
    assert_eq!(sys.fake.webhook_keys().len(), 2, "one delivery per job");
}

/// When a `worker` log line says the attempt failed and a retry is scheduled: its
/// `next_attempt_at`.
fn scheduled_retries(sys: &System, worker: usize, job: &str) -> Vec<chrono::DateTime<chrono::Utc>> {
    sys.log_lines(worker)
        .iter()
        .filter(|l| l["message"] == "attempt failed; retry scheduled" && l.to_string().contains(job))
        .map(|l| {
            let at = l["next_attempt_at"].as_str().unwrap_or_else(|| panic!("next_attempt_at in {l}"));
            chrono::NaiveDateTime::parse_from_str(at.trim_end_matches(" UTC"), "%Y-%m-%d %H:%M:%S%.f")
                .unwrap_or_else(|e| panic!("{at:?}: {e}"))
                .and_utc()
        })
        .collect()
}

/// The provider fails chunk 2's calls twice (503): the job is retried with backoff — each next
/// attempt reaches the provider no earlier than the time the worker scheduled it for — and each
/// retry resumes at chunk 2, the chunks already summarized being durable steps; it completes at
/// the third attempt. A provider that always fails fails the job as retryable once the attempts
/// are spent. queue-events logs each retry and the failure under queue `summarize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provider_retries_summarize_with_backoff_resuming_at_the_failed_chunk() {
    let mut sys =
        System::start(Mode::FailAfter { ok: 2, fail: 2 }, &[("LONGHAUL_MAX_ATTEMPTS_CAP", "3")]).await;
    let events = sys.queue_events("qe-1");
    let worker = sys.worker("w1");
    let (input, chunks) = document("flaky", 4);
    let (status, job) = sys.submit("summarize", &input).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 3);
    assert_eq!(done["output"]["summary"], expected_summary(&chunks).as_str());
    let asked = sys.fake.chats_of(Prompt::Summarize);
    let per_chunk: Vec<usize> =
        chunks.iter().map(|c| asked.iter().filter(|a| a.user == *c).count()).collect();
    assert_eq!(per_chunk, [1, 1, 3, 1], "stored chunk summaries are not asked for again");
    assert_eq!(sys.fake.chats_of(Prompt::Combine).len(), 1);

    // Backoff: each retry is scheduled, and the provider hears of chunk 2 again only once it is due.
    let retries = scheduled_retries(&sys, worker, &job);
    assert_eq!(retries.len(), 2, "{}", sys.procs[worker].output());
    let chunk2: Vec<SystemTime> = asked.iter().filter(|a| a.user == chunks[2]).map(|a| a.at).collect();
    for (attempt, due) in retries.iter().enumerate() {
        let failed_at = chrono::DateTime::<chrono::Utc>::from(chunk2[attempt]);
        let retried_at = chrono::DateTime::<chrono::Utc>::from(chunk2[attempt + 1]);
        assert!(*due >= failed_at, "retry {attempt} scheduled for {due}, before the failure at {failed_at}");
        assert!(retried_at >= *due, "retry {attempt} ran at {retried_at}, before it was due at {due}");
    }
    let retrying = sys.wait_event(events, "job retrying", &job, LONG).await;
    assert_eq!(retrying.len(), 2, "{retrying:?}");
    assert!(retrying.iter().all(|l| l["queue"] == "summarize" && l["level"] == "WARN"), "{retrying:?}");

    sys.fake.set_mode(Mode::AlwaysFail);
    let (input, _) = document("doomed", 2);
    let (_, doomed) = sys.submit("summarize", &input).await;
    let doomed = id(&doomed);
    let failed = sys.wait_status(&doomed, "failed", LONG).await;
    assert_eq!(
        (failed["attempts"].as_u64(), failed["error_class"].as_str()),
        (Some(3), Some("retryable")),
        "{failed}"
    );
    assert!(failed["error_message"].as_str().unwrap_or("").contains("503"), "{failed}");
    let lines = sys.wait_event(events, "job failed", &doomed, LONG).await;
    assert_eq!(
        (lines.len(), lines[0]["queue"].as_str(), lines[0]["level"].as_str()),
        (1, Some("summarize"), Some("WARN"))
    );
    assert!(lines[0]["failed_reason"].as_str().unwrap_or("").contains("503"), "{lines:?}");
    assert!(sys.fake.webhook_bodies_of(&doomed).is_empty(), "a failed job delivers nothing");
}

/// Invalid data, for each kind. At the API: invalid input is a `422` naming the field, and
/// nothing is written or enqueued. In the worker: a record whose input is no longer valid fails as
/// invalid without calling the provider, and a provider answer that is no summary (or no
/// classification, for triage) fails the job as invalid at once — no retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn invalid_data_fails_the_job_as_invalid_for_each_kind() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let events = sys.queue_events("qe-1");
    let (good, _) = document("good", 2);
    let with = |field: &str, value: Value| {
        let mut input = good.clone();
        input[field] = value;
        input
    };
    let cases = [
        ("summarize", with("text", json!("   ")), "input.text"),
        ("summarize", with("chunk_chars", json!(10)), "input.chunk_chars"),
        ("summarize", with("document_id", json!("bad id")), "input.document_id"),
        ("summarize", with("webhook_url", json!("http://169.254.169.254/latest")), "input.webhook_url"),
        ("summarize", with("pages", json!(3)), "input.pages"),
        ("summarise", good.clone(), "kind"),
        ("triage", json!({"ticket_id": "T-1"}), "input"),
    ];
    for (kind, input, field) in &cases {
        let (status, problem) = sys.submit(kind, input).await;
        assert_eq!(status, 422, "{kind} {input}: {problem}");
        let errors = field_errors(&problem);
        assert!(
            errors.iter().any(|(f, _)| f.starts_with(field)),
            "{kind} {input}: {field} not named in {problem}"
        );
    }
    assert!(sys.list_as(&sys.key, "").await.is_empty(), "an invalid submission writes nothing");
    let keys = longhaul_queue::KeySpace::new(&sys.queue.prefix, "summarize").expect("keys");
    let mut conn = sys.queue.raw().await;
    let len: u64 = redis::cmd("XLEN").arg(keys.jobs()).query_async(&mut conn).await.expect("xlen");
    assert_eq!(len, 0, "an invalid submission enqueues nothing");

    // A record whose input was changed after it was validated (say, written by an older producer).
    let (input, _) = document("tampered", 2);
    let (status, job) = sys.submit("summarize", &input).await;
    assert_eq!(status, 202, "{job}");
    let tampered = id(&job);
    let pool =
        sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&sys.db.url).await.expect("pg");
    let changed =
        sqlx::query("UPDATE jobs SET input = jsonb_set(input, '{text}', '\"   \"') WHERE job_id = $1")
            .bind(&tampered)
            .execute(&pool)
            .await
            .expect("update");
    assert_eq!(changed.rows_affected(), 1);
    sys.worker("w1");
    let failed = sys.wait_status(&tampered, "failed", LONG).await;
    assert_eq!(
        (failed["attempts"].as_u64(), failed["error_class"].as_str()),
        (Some(1), Some("invalid")),
        "{failed}"
    );
    assert!(failed["error_message"].as_str().unwrap_or("").contains("input.text"), "{failed}");
    assert!(sys.fake.chat_calls().is_empty(), "the provider is not asked about invalid input");

    // Answers that are no summary and no classification.
    sys.fake.set_mode(Mode::Blank);
    let (input, _) = document("blank", 1);
    let (_, job) = sys.submit("summarize", &input).await;
    let summarize = id(&job);
    sys.ticket("T-blank").await;
    let (_, job) = sys.triage("T-blank").await;
    let triage = id(&job);
    for (job, queue) in [(&summarize, "summarize"), (&triage, "triage")] {
        let failed = sys.wait_status(job, "failed", LONG).await;
        assert_eq!(
            (failed["attempts"].as_u64(), failed["error_class"].as_str()),
            (Some(1), Some("invalid")),
            "{failed}"
        );
        let lines = sys.wait_event(events, "job failed", job, LONG).await;
        assert_eq!(lines[0]["queue"], queue, "{lines:?}");
        assert!(sys.fake.webhook_bodies_of(job).is_empty(), "a failed job delivers nothing");
    }
    assert!(
        sys.log_lines(events).iter().all(|l| l["message"] != "job retrying"),
        "invalid data is not retried"
    );
    assert_eq!(sys.fake.chat_calls().len(), 2, "one call each: no retry");
}

/// A job is its tenant's: another tenant's key gets `404` for it (not `403`: its existence is not
/// disclosed) and does not list it; the same document submitted by another tenant is a job of its
/// own, run and delivered on its own, and just as invisible the other way.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_of_another_tenant_is_not_found_whatever_its_kind() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    sys.worker("w1");
    let globex = sys.tenant("globex");
    let (input, _) = document("shared", 2);
    let (_, job) = sys.submit("summarize", &input).await;
    let summarize = id(&job);
    sys.ticket("T-mine").await;
    let (_, job) = sys.triage("T-mine").await;
    let triage = id(&job);
    for job in [&summarize, &triage] {
        sys.wait_status(job, "completed", LONG).await;
        let (status, body) = sys.job_as(&globex, job).await;
        assert_eq!(status, 404, "{body}");
        assert!(!body.to_string().contains("acme"), "the answer tells nothing of the owner: {body}");
    }
    assert!(sys.list_as(&globex, "").await.is_empty(), "globex lists none of acme's jobs");

    let (status, theirs) = sys.submit_as(&globex, "summarize", &input, None).await;
    assert_eq!(status, 202, "the same input from another tenant is a new job: {theirs}");
    let theirs = id(&theirs);
    assert_ne!(theirs, summarize);
    let (status, _) = sys.job_as(&sys.key, &theirs).await;
    assert_eq!(status, 404);
    let done = wait_until(LONG, "globex's job completed", async || {
        let (_, r) = sys.job_as(&globex, &theirs).await;
        if r["status"] == "completed" { Ok(r) } else { Err(r) }
    })
    .await;
    assert_eq!(done["tenant_id"], "globex");
    assert_eq!(sys.list_as(&globex, "kind=summarize").await, std::slice::from_ref(&theirs));
    assert_eq!(sys.list_as(&sys.key, "kind=summarize").await, std::slice::from_ref(&summarize));
    assert_eq!(sys.list_as(&sys.key, "kind=triage").await, [triage]);
    let body = &sys.fake.webhook_bodies_of(&theirs)[0];
    assert_eq!(body["tenant_id"], "globex");
}

/// A worker killed inside the webhook call of a summarize job: another worker takes the job over
/// as a new attempt, reuses every stored chunk summary and the combined summary (no provider call
/// is made twice), and delivers again under the same operation id.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_summarize_resumes_from_its_stored_steps() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    *sys.fake.hang_webhooks.lock().expect("lock") = true;
    let doomed = sys.worker_on("doomed", "summarize");
    let (input, chunks) = document("resumed", 3);
    let (_, job) = sys.submit("summarize", &input).await;
    let job = id(&job);
    wait_until(LONG, "the first webhook request", async || {
        let n = sys.fake.webhook_keys().len();
        if n >= 1 { Ok(()) } else { Err(n) }
    })
    .await;
    // Its progress write may land just after the request: wait for it.
    wait_until(LONG, "the deliver stage recorded", async || {
        let r = sys.job(&job).await;
        if (r["status"].as_str(), r["stage"].as_str()) == (Some("running"), Some("deliver")) {
            Ok(())
        } else {
            Err(r)
        }
    })
    .await;
    sys.procs[doomed].kill();
    *sys.fake.hang_webhooks.lock().expect("lock") = false;

    sys.worker_on("survivor", "summarize");
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 2, "reclaimed as a new attempt");
    assert_eq!(done["output"]["summary"], expected_summary(&chunks).as_str());
    assert_eq!(sys.fake.chat_calls().len(), chunks.len() + 1, "no provider call made twice");
    let keys = sys.fake.webhook_keys();
    let unique: HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), 1, "every delivery attempt carried the same operation id: {keys:?}");
    assert!(keys[0].starts_with("op_"));
}

/// Where a summary goes is the tenant's configuration, never the submission's: an input naming a
/// `webhook_url` (here an internal address) is a `422` naming `input.webhook_url`, writing and
/// enqueueing nothing; a tenant created without a webhook gets its job completed with `webhook:
/// null` and no delivery, while a tenant with one gets its summary at its own URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn summaries_go_to_the_tenants_webhook_and_never_to_a_url_from_the_input() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let (input, chunks) = document("routed", 2);
    for url in [sys.fake.webhook_url(), "http://169.254.169.254/latest/meta-data/".to_owned()] {
        let mut named = input.clone();
        named["webhook_url"] = json!(url);
        let (status, problem) = sys.submit("summarize", &named).await;
        assert_eq!(status, 422, "{problem}");
        let errors = field_errors(&problem);
        assert_eq!(errors.first().map(|e| e.0.as_str()), Some("input.webhook_url"), "{problem}");
    }
    assert!(sys.list_as(&sys.key, "").await.is_empty(), "a refused submission writes nothing");
    let keys = longhaul_queue::KeySpace::new(&sys.queue.prefix, "summarize").expect("keys");
    let mut conn = sys.queue.raw().await;
    let len: u64 = redis::cmd("XLEN").arg(keys.jobs()).query_async(&mut conn).await.expect("xlen");
    assert_eq!(len, 0, "a refused submission enqueues nothing");

    // A tenant without a webhook, and acme (webhook → the stand-in), submit the same document.
    let quiet = sys.tenant_with("quiet", None);
    sys.worker("w1");
    let (status, job) = sys.submit_as(&quiet, "summarize", &input, None).await;
    assert_eq!(status, 202, "{job}");
    let unsent = id(&job);
    let (status, job) = sys.submit("summarize", &input).await;
    assert_eq!(status, 202, "{job}");
    let sent = id(&job);

    let done = wait_until(LONG, "quiet's job completed", async || {
        let (_, r) = sys.job_as(&quiet, &unsent).await;
        if r["status"] == "completed" { Ok(r) } else { Err(r) }
    })
    .await;
    assert_eq!(done["output"]["summary"], expected_summary(&chunks).as_str(), "{done}");
    assert_eq!(done["output"]["webhook"], Value::Null, "no webhook, no delivery: {done}");
    let delivered = sys.wait_status(&sent, "completed", LONG).await;
    assert!(delivered["output"]["webhook"].is_object(), "{delivered}");
    assert!(sys.fake.webhook_bodies_of(&unsent).is_empty(), "nothing delivered for quiet");
    let bodies = sys.fake.webhook_bodies_of(&sent);
    assert_eq!(bodies.len(), 1, "acme's summary, once, at acme's URL");
    assert_eq!(bodies[0]["tenant_id"], "acme");
    assert_eq!(sys.fake.webhook_keys().len(), 1, "one delivery in all");
}
