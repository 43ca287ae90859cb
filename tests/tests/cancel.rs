//! Cancellation end to end with the real binaries: a queued job cancelled before any worker runs
//! never runs; a running job whose provider call is held is ended by its worker within a few
//! heartbeats, and no provider call starts after the cancel; a finished job cannot be cancelled.

use std::time::{Duration, Instant};

use longhaul_e2e::{Mode, Prompt, System};
use longhaul_queue::Queue;
use longhaul_summarize::SummarizeInput;
use longhaul_testkit::wait_until;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

/// The worker's heartbeat in these tests; a running job's cancel is noticed on one.
const HEARTBEAT: Duration = Duration::from_millis(200);

/// `POST /v1/jobs/{job}/{action}` as tenant `acme`: (status code, body).
async fn act(sys: &System, job: &str, action: &str) -> (u16, Value) {
    let r = sys
        .http()
        .post(format!("{}/v1/jobs/{job}/{action}", sys.api))
        .bearer_auth(&sys.key)
        .send()
        .await
        .expect(action);
    let status = r.status().as_u16();
    (status, r.json().await.expect("json"))
}

/// `POST /v1/jobs/{job}/cancel` as tenant `acme`.
async fn cancel(sys: &System, job: &str) -> (u16, Value) {
    act(sys, job, "cancel").await
}

/// A summarize input for document `id` of `paragraphs` paragraphs, one chunk each.
fn document(id: &str, paragraphs: usize) -> Value {
    let text = (0..paragraphs)
        .map(|k| {
            format!(
                "Paragraph {k} of {id} says what the job does with its part of the text. It is long \
                 enough to be a chunk of its own, and it ends here, before the next one begins."
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n");
    let input = SummarizeInput { document_id: id.to_owned(), text, chunk_chars: Some(200) };
    assert_eq!(input.chunks().len(), paragraphs, "one chunk per paragraph");
    serde_json::to_value(&input).expect("input")
}

fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {job}")).to_owned()
}

/// The summarize queue of `sys` (the triage queue's sibling, under the same prefix).
fn summarize_queue(sys: &System) -> Queue {
    sys.queue.sibling("summarize").expect("the summarize queue")
}

/// A queued job cancelled before any worker runs: `200` and `cancelled` at once, queue-events logs
/// `job cancelled`; the worker started afterwards takes its entry and drops it — it never runs (no
/// provider call, no webhook), and stays `cancelled` — while a job submitted with it runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_queued_job_cancelled_before_any_worker_never_runs() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let events = sys.queue_events("qe-1");
    let (status, job) = sys.submit("summarize", &document("cancelled-doc", 1)).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    let (status, kept) = sys.submit("summarize", &document("kept-doc", 1)).await;
    assert_eq!(status, 202, "{kept}");
    let kept = id(&kept);

    let (status, cancelled) = cancel(&sys, &job).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    assert!(cancelled["finished_at"].is_string(), "{cancelled}");
    let lines = sys.wait_event(events, "job cancelled", &job, LONG).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(
        (lines[0]["queue"].as_str(), lines[0]["tenant_id"].as_str()),
        (Some("summarize"), Some("acme"))
    );

    sys.worker("w1");
    let done = sys.wait_status(&kept, "completed", LONG).await;
    assert_eq!(done["attempts"], 1);
    // The worker has taken both entries: the cancelled job's is acknowledged, not run.
    let queue = summarize_queue(&sys);
    wait_until(LONG, "the summarize queue drained", async || {
        let stats = queue.stats().await.map_err(|e| e.to_string())?;
        if (stats.stream_length, stats.pending, stats.delayed) == (0, 0, 0) {
            Ok(())
        } else {
            Err(format!("{stats:?}"))
        }
    })
    .await;
    let record = sys.job(&job).await;
    assert_eq!(record, cancelled, "the cancelled record never changed");
    assert_eq!(record["attempts"], 0, "never started");
    let asked: Vec<String> = sys.fake.chats_of(Prompt::Summarize).into_iter().map(|c| c.user).collect();
    assert_eq!(asked.len(), 1, "only the kept job asked the provider: {asked:?}");
    assert!(asked[0].contains("kept-doc"), "{asked:?}");
    assert!(sys.fake.webhook_bodies_of(&job).is_empty(), "no result delivered");
    assert_eq!(sys.fake.webhook_bodies_of(&kept).len(), 1);
    // Still one `job cancelled` line: the worker dropping the entry announces nothing more.
    sys.wait_event(events, "job completed", &kept, LONG).await;
    let again: Vec<Value> =
        sys.log_lines(events).into_iter().filter(|l| l["message"] == "job cancelled").collect();
    assert_eq!(again.len(), 1, "{again:?}");
    // Listed under its status.
    assert_eq!(sys.list_as(&sys.key, "status=cancelled").await, [job]);
}

/// A running summarize job whose provider call is held: the cancel is `202` (still running, with
/// `cancel_requested_at`); its worker notices on a heartbeat and ends it as `cancelled` within a
/// few heartbeats; no provider call for it starts after the cancel, and nothing is delivered;
/// queue-events logs `job cancelled`; cancelling it again is `200`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_running_job_is_ended_by_its_worker_within_a_few_heartbeats() {
    let heartbeat = format!("{}ms", HEARTBEAT.as_millis());
    let mut sys =
        System::start(Mode::Gated, &[("LONGHAUL_HEARTBEAT", &heartbeat), ("LONGHAUL_LEASE", "1s")]).await;
    let events = sys.queue_events("qe-1");
    let (status, job) = sys.submit("summarize", &document("held-doc", 3)).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    sys.worker("w1");
    // The first chunk's call is held at the stand-in: the job is running.
    wait_until(LONG, "the provider asked for the first chunk", async || {
        let calls = sys.fake.chats_of(Prompt::Summarize).len();
        if calls == 1 { Ok(()) } else { Err(calls) }
    })
    .await;
    let running = sys.wait_status(&job, "running", LONG).await;
    assert_eq!(running["attempts"], 1);

    let (status, requested) = cancel(&sys, &job).await;
    let asked = Instant::now();
    assert_eq!(status, 202, "{requested}");
    assert_eq!(requested["status"], "running", "{requested}");
    let requested_at = requested["cancel_requested_at"].clone();
    assert!(requested_at.is_string(), "{requested}");
    assert!(requested["finished_at"].is_null(), "{requested}");

    // A few heartbeats (and the write) later, it is cancelled — with the call still held.
    let bound = HEARTBEAT * 10;
    let ended = wait_until(bound, "the worker ends the job as cancelled", async || {
        let r = sys.job(&job).await;
        if r["status"] == "cancelled" { Ok(r) } else { Err(r) }
    })
    .await;
    let took = asked.elapsed();
    assert!(took <= bound, "cancelled {took:?} after the request");
    assert_eq!((&ended["attempts"], &ended["cancel_requested_at"]), (&json!(1), &requested_at), "{ended}");
    assert!(ended["finished_at"].is_string() && ended["output"].is_null(), "{ended}");
    assert_eq!(sys.fake.chats_of(Prompt::Summarize).len(), 1, "no call started after the cancel");

    // Let everything through now: were the cancelled job still running, its next chunk would be
    // asked for. Another document submitted now runs to the end on the same worker; by then, none
    // of the cancelled job's further chunks has been asked for.
    sys.fake.set_mode(Mode::Ok);
    sys.fake.release(16);
    let (status, other) = sys.submit("summarize", &document("next-doc", 2)).await;
    assert_eq!(status, 202, "{other}");
    let other = id(&other);
    sys.wait_status(&other, "completed", LONG).await;
    let held: Vec<String> = sys
        .fake
        .chats_of(Prompt::Summarize)
        .into_iter()
        .map(|c| c.user)
        .filter(|u| u.contains("held-doc"))
        .collect();
    assert_eq!(held.len(), 1, "only the call held at the cancel: {held:?}");
    assert!(sys.fake.chats_of(Prompt::Combine).iter().all(|c| !c.user.contains("held-doc")));
    assert!(sys.fake.webhook_bodies_of(&job).is_empty(), "nothing delivered for the cancelled job");
    assert_eq!(sys.job(&job).await, ended, "it stays cancelled");

    let lines = sys.wait_event(events, "job cancelled", &job, LONG).await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["queue"], "summarize");

    let (status, again) = cancel(&sys, &job).await;
    assert_eq!((status, &again), (200, &ended), "cancelling it again changes nothing");
}

/// A completed job cannot be cancelled: `409`, a problem document, the record unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_completed_job_cannot_be_cancelled() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    sys.worker("w1");
    let (status, job) = sys.submit("summarize", &document("done-doc", 1)).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    let done = sys.wait_status(&job, "completed", LONG).await;

    let r = sys
        .http()
        .post(format!("{}/v1/jobs/{job}/cancel", sys.api))
        .bearer_auth(&sys.key)
        .send()
        .await
        .expect("cancel");
    assert_eq!(r.status().as_u16(), 409);
    assert_eq!(
        r.headers().get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let problem: Value = r.json().await.expect("json");
    assert_eq!(
        (&problem["type"], &problem["status"]),
        (&json!("/problems/conflict"), &json!(409)),
        "{problem}"
    );
    assert_eq!(problem["retryable"], false, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("already completed"), "{problem}");
    assert_eq!(sys.job(&job).await, done, "the record is unchanged");
}

/// `POST /v1/jobs/{job}/retry` as tenant `acme`.
async fn retry(sys: &System, job: &str) -> (u16, Value) {
    act(sys, job, "retry").await
}

/// A job cancelled after its first chunk's summary was stored, then retried through the API: it is
/// `queued` again under the same id (`202`), runs, and completes — its first chunk's durable step
/// returns the stored summary (the provider is asked for it once in all), the chunk whose call the
/// cancel aborted is asked again, and a retry of the completed job is `409`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cancelled_job_is_retried_and_reuses_its_finished_steps() {
    let heartbeat = format!("{}ms", HEARTBEAT.as_millis());
    let mut sys =
        System::start(Mode::Gated, &[("LONGHAUL_HEARTBEAT", &heartbeat), ("LONGHAUL_LEASE", "1s")]).await;
    let (status, job) = sys.submit("summarize", &document("again-doc", 3)).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    sys.worker("w1");
    // Chunk 1 answered; chunk 2's call held.
    sys.fake.release(1);
    wait_until(LONG, "the provider asked for the second chunk", async || {
        let calls = sys.fake.chats_of(Prompt::Summarize).len();
        if calls == 2 { Ok(()) } else { Err(calls) }
    })
    .await;
    let (status, _) = cancel(&sys, &job).await;
    assert_eq!(status, 202);
    sys.wait_status(&job, "cancelled", LONG).await;

    sys.fake.set_mode(Mode::Ok);
    sys.fake.release(16);
    let (status, queued) = retry(&sys, &job).await;
    assert_eq!(status, 202, "{queued}");
    assert_eq!((queued["job_id"].as_str(), queued["status"].as_str()), (Some(job.as_str()), Some("queued")));
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 2, "{done}");
    let asked = |part: usize| {
        sys.fake
            .chats_of(Prompt::Summarize)
            .into_iter()
            .filter(|c| c.user.contains(&format!("Paragraph {part} of again-doc")))
            .count()
    };
    assert_eq!((asked(0), asked(1), asked(2)), (1, 2, 1), "the finished step is not asked again");
    let (status, refused) = retry(&sys, &job).await;
    assert_eq!(status, 409, "{refused}");
}
