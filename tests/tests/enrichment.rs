//! The example project (`examples/enrichment`) as a user runs it: its own `enrich-producer` and
//! `enrich-worker` binaries — longhaul's start-up paths around the project's `enrich-contact` kind —
//! against a fresh database and key prefix, with the harness's stand-in as the people-lookup
//! provider (`ENRICH_PROVIDER_URL`). `cargo test --workspace` builds them beside the shipped
//! binaries, so a change to the public API that breaks a user's project breaks this test.

use std::collections::HashSet;
use std::time::Duration;

use longhaul_e2e::{Mode, System, person};
use longhaul_testkit::wait_until;
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(30);

fn id(job: &Value) -> String {
    job["job_id"].as_str().unwrap_or_else(|| panic!("no job_id in {job}")).to_owned()
}

/// The fields a problem document's `errors` name.
fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|e| e["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The project's producer serving, a tenant created with `enrich-producer tenant create`, and the
/// project's worker running.
async fn project() -> (System, usize) {
    let mut sys = System::start_project("enrich-producer", Mode::Ok, &[]).await;
    let worker =
        sys.spawn("enrich-worker", &["--skip-migrations"], &[("LONGHAUL_CONSUMER_NAME", "enrich-1")]);
    (sys, worker)
}

/// A contact submitted as `{kind: "enrich-contact", input: {email}}` completes with the enriched
/// output (the provider's company and title, the seniority scored from it), after one lookup;
/// submitting it again is the same job. The project's producer knows only its own kind:
/// an invalid address is a `422` naming `input.email`, a built-in kind a `422` naming `kind` — and
/// neither writes a job.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_example_project_enriches_a_contact_end_to_end() {
    let (sys, worker) = project().await;
    let (status, job) = sys.submit("enrich-contact", &json!({"email": "ada@analytical.example"})).await;
    assert_eq!(status, 202, "{job}");
    assert_eq!(job["kind"], "enrich-contact");
    let job = id(&job);
    let done = sys.wait_status(&job, "completed", LONG).await;
    let expected = person("ada@analytical.example");
    assert_eq!(
        done["output"],
        json!({
            "email": "ada@analytical.example",
            "company": expected["company"],
            "title": expected["title"],
            "seniority": "executive",
        }),
        "{done}"
    );
    assert_eq!(done["output"]["company"], "Analytical");
    assert_eq!((done["attempts"].as_u64(), done["progress"].as_u64()), (Some(1), Some(100)));
    let lookups = sys.fake.lookup_calls();
    assert_eq!(lookups.len(), 1, "{lookups:?}");
    assert_eq!(lookups[0].email, "ada@analytical.example");
    assert!(lookups[0].key.starts_with("op_"), "the lookup carries its operation id: {:?}", lookups[0].key);

    // The same contact again: the same job (its id is derived from the address), not run again.
    let (status, again) = sys.submit("enrich-contact", &json!({"email": "ada@analytical.example"})).await;
    assert_eq!((status, id(&again)), (200, job.clone()), "{again}");
    assert_eq!(again["status"], "completed");

    let (status, problem) = sys.submit("enrich-contact", &json!({"email": "not an address"})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["input.email"], "{problem}");
    let (status, problem) = sys.submit("triage", &json!({"ticket_id": "T-1", "revision": 1})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields(&problem), ["kind"], "this producer knows only its own kind: {problem}");
    let (status, problem) = sys.submit("summarize", &json!({"document_id": "d", "text": "Hello."})).await;
    assert_eq!((status, fields(&problem)), (422, vec!["kind".to_owned()]), "{problem}");
    assert_eq!(sys.list_as(&sys.key, "").await, [job], "only the one job was written");
    assert_eq!(sys.fake.lookup_calls().len(), 1, "nothing else reached the provider");
    let lanes: Vec<Value> =
        sys.log_lines(worker).into_iter().filter(|l| l["message"] == "worker lane started").collect();
    assert_eq!(lanes.len(), 1, "{lanes:?}");
    assert_eq!(lanes[0]["queue"], "enrichment", "the worker serves its kind's queue");
}

/// The provider answers the first lookup 503: the job is retried with the kind's backoff, and the
/// retry reaches the provider no earlier than it was scheduled for. The stand-in sees exactly two
/// lookups, both with the same `Idempotency-Key` (the durable step's operation id), and the job
/// completes at its second attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_lookup_is_retried_with_backoff_under_one_idempotency_key() {
    let (sys, worker) = project().await;
    *sys.fake.lookup_failures.lock().expect("lock") = 1;
    let (status, job) = sys.submit("enrich-contact", &json!({"email": "grace@navy.example"})).await;
    assert_eq!(status, 202, "{job}");
    let job = id(&job);
    let done = sys.wait_status(&job, "completed", LONG).await;
    assert_eq!(done["attempts"], 2, "{done}");
    assert_eq!(done["max_attempts"], 4, "the kind's own limit: {done}");
    assert_eq!(done["output"]["company"], "Navy");
    let lookups = sys.fake.lookup_calls();
    assert_eq!(lookups.len(), 2, "{lookups:?}");
    let keys: HashSet<&str> = lookups.iter().map(|l| l.key.as_str()).collect();
    assert_eq!(keys.len(), 1, "both lookups carry one operation id: {lookups:?}");
    assert!(lookups[0].key.starts_with("op_"));

    // The worker scheduled the retry (a delay within the kind's backoff, 200 ms at first), and the
    // second lookup came no earlier than that.
    let line = wait_until(LONG, "the worker's retry line", async || {
        let lines = sys.log_lines(worker);
        match lines.iter().find(|l| l["message"] == "attempt failed; retry scheduled") {
            Some(l) => Ok(l.clone()),
            None => Err(sys.procs[worker].output()),
        }
    })
    .await;
    assert!(line.to_string().contains(&job), "{line}");
    let at = line["next_attempt_at"].as_str().expect("next_attempt_at");
    let due = chrono::NaiveDateTime::parse_from_str(at.trim_end_matches(" UTC"), "%Y-%m-%d %H:%M:%S%.f")
        .unwrap_or_else(|e| panic!("{at:?}: {e}"))
        .and_utc();
    let first = chrono::DateTime::<chrono::Utc>::from(lookups[0].at);
    let second = chrono::DateTime::<chrono::Utc>::from(lookups[1].at);
    assert!(due >= first, "retry scheduled for {due}, before the failure at {first}");
    assert!(
        due - first <= chrono::Duration::milliseconds(200 + 1000),
        "the first retry's delay is within the kind's backoff base (200 ms) plus slack: {}",
        due - first
    );
    assert!(second >= due, "the retry reached the provider at {second}, before it was due at {due}");
}
