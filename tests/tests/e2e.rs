//! The three real binaries as processes against real Redis and PostgreSQL; two scenarios also run
//! with every process on the 3-primary test Redis Cluster.

use std::collections::HashSet;
use std::time::Duration;

use longhaul_e2e::{Mode, System};
use longhaul_testkit::{RedisKind, on_redis, wait_until};

const LONG: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_submissions_make_one_job_one_run_and_one_delivery() {
    duplicate_submissions().await;
}

/// The same with every process on the 3-primary test Redis Cluster (`redis+cluster://` URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicate_submissions_on_redis_cluster() {
    on_redis(RedisKind::Cluster, duplicate_submissions()).await;
}

async fn duplicate_submissions() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    let events = sys.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", "qe-1")]);
    sys.worker("w1");
    sys.ticket("SUP-1").await;
    let calls = (0..20).map(|_| sys.triage("SUP-1"));
    let replies = futures_join(calls).await;
    let accepted = replies.iter().filter(|(s, _)| *s == 202).count();
    let duplicates = replies.iter().filter(|(s, _)| *s == 200).count();
    assert_eq!((accepted, duplicates), (1, 19));
    let ids: HashSet<_> = replies.iter().map(|(_, j)| j["job_id"].as_str().expect("id").to_owned()).collect();
    assert_eq!(ids.len(), 1);
    let job = ids.into_iter().next().expect("one id");
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 1);
    assert_eq!(done["output"]["classification"]["category"], "bug");
    assert_eq!(sys.fake.webhook_keys().len(), 1, "one webhook delivery");
    // queue-events logged the completion once.
    let lines = wait_until(LONG, "queue-events line", async || {
        let lines: Vec<_> = sys
            .log_lines(events)
            .into_iter()
            .filter(|l| l["message"] == "job completed" && l["job_id"] == job.as_str())
            .collect();
        if lines.is_empty() { Err(0) } else { Ok(lines) }
    })
    .await;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["level"], "INFO");
    assert_eq!(lines[0]["tenant_id"], "acme");
}

async fn futures_join<F: std::future::Future>(futures: impl Iterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.collect();
    let mut out = Vec::with_capacity(handles.len());
    // Start them all before awaiting any, so the requests really are concurrent.
    let mut pinned: Vec<_> = handles.into_iter().map(Box::pin).collect();
    let results = std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, f) in pinned.iter_mut().enumerate() {
            if out.len() <= i {
                out.push(None);
            }
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(std::mem::take(&mut out)) } else { std::task::Poll::Pending }
    })
    .await;
    results.into_iter().map(|r| r.expect("completed")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_the_in_flight_job_finish() {
    let mut sys = System::start(Mode::Slow(Duration::from_millis(1500)), &[]).await;
    let w = sys.worker("w1");
    sys.ticket("SUP-2").await;
    let (status, job) = sys.triage("SUP-2").await;
    assert_eq!(status, 202);
    let job = job["job_id"].as_str().expect("id").to_owned();
    wait_until(LONG, "the provider called", async || {
        let calls = *sys.fake.calls.lock().expect("lock");
        if calls >= 1 { Ok(()) } else { Err(calls) }
    })
    .await;
    sys.procs[w].term();
    assert_eq!(sys.procs[w].wait_exit(LONG), Some(0), "graceful exit; log:\n{}", sys.procs[w].output());
    let done = sys.job(&job).await;
    assert_eq!((done["status"].as_str(), done["attempts"].as_u64()), (Some("completed"), Some(1)), "{done}");
    // Each lane (one per queue of the built-in kinds) logged its shutdown.
    let stopping: std::collections::BTreeSet<String> = sys
        .log_lines(w)
        .iter()
        .filter(|l| l["message"] == "worker lane stopping")
        .filter_map(|l| l["queue"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(stopping, ["summarize", "triage"].map(str::to_owned).into(), "the worker logged its shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_job_is_reclaimed_and_its_webhook_has_one_operation_id() {
    sigkill_mid_job().await;
}

/// The same with every process on the 3-primary test Redis Cluster (`redis+cluster://` URL).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_job_on_redis_cluster() {
    on_redis(RedisKind::Cluster, sigkill_mid_job()).await;
}

async fn sigkill_mid_job() {
    let mut sys = System::start(Mode::Ok, &[]).await;
    *sys.fake.hang_webhooks.lock().expect("lock") = true;
    let doomed = sys.worker("doomed");
    sys.ticket("SUP-3").await;
    let (_, job) = sys.triage("SUP-3").await;
    let job = job["job_id"].as_str().expect("id").to_owned();
    // The worker is inside the webhook call: the receiver has the request, the worker has no answer.
    wait_until(LONG, "the first webhook request", async || {
        let n = sys.fake.webhook_keys().len();
        if n >= 1 { Ok(()) } else { Err(n) }
    })
    .await;
    assert_eq!(sys.job(&job).await["status"], "running");
    sys.procs[doomed].kill();
    *sys.fake.hang_webhooks.lock().expect("lock") = false;

    sys.worker("survivor");
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 2, "reclaimed as a new attempt");
    let keys = sys.fake.webhook_keys();
    let unique: HashSet<_> = keys.iter().collect();
    assert_eq!(unique.len(), 1, "every delivery attempt carried the same operation id: {keys:?}");
    assert!(keys[0].starts_with("op_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_provider_drives_retries_to_completion_and_to_failure() {
    let attempts = [("LONGHAUL_DEFAULT_MAX_ATTEMPTS", "3"), ("LONGHAUL_MAX_ATTEMPTS_CAP", "3")];
    let mut sys = System::start(Mode::FailFirst(2), &attempts).await;
    let events = sys.spawn("queue-events", &[], &[("LONGHAUL_CONSUMER_NAME", "qe-1")]);
    sys.worker("w1");
    sys.ticket("SUP-4").await;
    let (_, job) = sys.triage("SUP-4").await;
    let recovered = job["job_id"].as_str().expect("id").to_owned();
    let done = sys.wait_status(&recovered, "completed", LONG).await;
    assert_eq!(done["attempts"], 3);

    sys.fake.set_mode(Mode::AlwaysFail);
    sys.ticket("SUP-5").await;
    let (_, job) = sys.triage("SUP-5").await;
    let doomed = job["job_id"].as_str().expect("id").to_owned();
    let failed = sys.wait_status(&doomed, "failed", LONG).await;
    assert_eq!((failed["attempts"].as_u64(), failed["error_class"].as_str()), (Some(3), Some("retryable")));
    assert!(failed["error_message"].as_str().unwrap_or("").contains("503"), "{failed}");

    let lines = wait_until(LONG, "queue-events failure line", async || {
        let lines = sys.log_lines(events);
        if lines.iter().any(|l| l["message"] == "job failed" && l["job_id"] == doomed.as_str()) {
            Ok(lines)
        } else {
            Err(lines.len())
        }
    })
    .await;
    let retrying = lines.iter().filter(|l| l["message"] == "job retrying").count();
    assert_eq!(retrying, 4, "two retries for each job");
    let failed_line = lines.iter().find(|l| l["message"] == "job failed").expect("failed line");
    assert_eq!(failed_line["level"], "WARN");
    assert!(failed_line["failed_reason"].as_str().unwrap_or("").contains("503"));
}
