//! The operator API, `/admin/v1`: operator keys only (none or unknown `401`, a tenant's key `403`,
//! for every route family), every tenant's jobs listed, read, cancelled and retried, the bulk retry
//! with its dry run, queues with their backlog and pauses, limits validated field by field, and
//! dead letters listed, replayed (a stalled job through storage, an undecodable entry raw) and
//! purged — each change audited as `operator:<name>`.

use axum::http::{Method, StatusCode};
use longhaul_core::{ErrorClass, JobId, Lease, TenantId};
use longhaul_store::{AttemptFailure, OperatorName, PauseScope, WriteOutcome};
use serde_json::{Value, json};

use crate::harness::*;
use crate::jobs::summary_input;

async fn both(f: impl AsyncFn(Backend)) {
    f(Backend::Sqlite).await;
    f(Backend::Postgres).await;
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant")
}

/// A new operator `name`'s key.
async fn operator(t: &TestApp, name: &str) -> String {
    let (_, key) =
        t.db.create_operator(&OperatorName::parse(name).expect("name")).await.expect("create operator");
    key.expose().to_owned()
}

/// A new summarize job of the tenant of `key` for document `doc`: its id.
async fn submitted(t: &TestApp, key: &str, doc: &str) -> JobId {
    let body = json!({"kind": "summarize", "input": summary_input(doc, &format!("The text of {doc}."))});
    let r = t.call(Method::POST, "/v1/jobs", Some(key), Some(body)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    JobId::parse(r.json["job_id"].as_str().expect("job_id")).expect("job id")
}

/// Starts attempt 1 of `job` of `who`.
async fn start(t: &TestApp, who: &str, job: &JobId) {
    let lease = Lease { entry: "1-0".to_owned(), delivery: 1 };
    assert!(matches!(
        t.db.start_next(&tenant(who), job, lease, 1).await.expect("start"),
        WriteOutcome::Applied(_)
    ));
}

/// A summarize job of the tenant of `key` (`who`) whose attempt 1 failed for good with `class`.
async fn failed(t: &TestApp, key: &str, who: &str, doc: &str, class: ErrorClass) -> JobId {
    let job = submitted(t, key, doc).await;
    start(t, who, &job).await;
    let failure = AttemptFailure::new(1, class, "no good");
    assert!(matches!(t.db.fail(&tenant(who), &job, failure).await.expect("fail"), WriteOutcome::Applied(_)));
    job
}

/// Deletes every key of the test's queues: what was enqueued is gone, so what is enqueued next
/// is this test's doing.
async fn wipe_redis(t: &TestApp) {
    let mut conn = t.queue.raw().await;
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{}:*", t.queue.prefix)).query_async(&mut conn).await.expect("KEYS");
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("DEL");
    }
}

/// `(action, detail.by)` of the audit rows of `who`'s job `job`, oldest first.
async fn audit(t: &TestApp, who: &str, job: &JobId) -> Vec<(String, Value)> {
    t.db.job_audit(&tenant(who), job)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.detail["by"].clone()))
        .collect()
}

fn status_of(r: &Reply) -> &str {
    r.json["status"].as_str().unwrap_or_default()
}

/// The field names of a problem's errors.
fn error_fields(r: &Reply) -> Vec<String> {
    r.json["errors"]
        .as_array()
        .map(|e| e.iter().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_route_family_takes_operator_keys_only() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let job = submitted(&t, &t.key, "doc-auth").await;
        let routes: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, "/admin/v1/jobs".into(), None),
            (Method::GET, format!("/admin/v1/jobs/{job}"), None),
            (Method::POST, format!("/admin/v1/jobs/{job}/cancel"), None),
            (Method::POST, format!("/admin/v1/jobs/{job}/retry"), None),
            (Method::POST, "/admin/v1/jobs/retry".into(), Some(json!({"dry_run": true}))),
            (Method::GET, "/admin/v1/queues".into(), None),
            (Method::POST, "/admin/v1/queues/summarize/pause".into(), None),
            (Method::POST, "/admin/v1/kinds/summarize/pause".into(), None),
            (Method::GET, "/admin/v1/limits".into(), None),
            (Method::GET, "/admin/v1/limits/tenants/acme".into(), None),
            (Method::PUT, "/admin/v1/limits/tenants/acme".into(), Some(json!({"max_running": 2}))),
            (Method::DELETE, "/admin/v1/limits/kinds/summarize".into(), None),
            (Method::GET, "/admin/v1/dead-letters?queue=summarize".into(), None),
            (Method::GET, "/admin/v1/dead-letters/summarize/1-0".into(), None),
            (Method::POST, "/admin/v1/dead-letters/summarize/1-0/replay".into(), None),
            (Method::DELETE, "/admin/v1/dead-letters/summarize/1-0".into(), None),
            (Method::DELETE, "/admin/v1/dead-letters/summarize".into(), None),
        ];
        for (method, uri, body) in &routes {
            for key in [None, Some("lho_0000"), Some(t.key.as_str())] {
                let r = t.call(method.clone(), uri, key, body.clone()).await;
                if key == Some(t.key.as_str()) {
                    let p = problem(&r, StatusCode::FORBIDDEN);
                    assert!(
                        p["detail"].as_str().unwrap_or_default().contains("tenant's API key"),
                        "{uri}: {p}"
                    );
                } else {
                    let p = problem(&r, StatusCode::UNAUTHORIZED);
                    assert!(p["detail"].as_str().unwrap_or_default().contains("operator key"), "{uri}: {p}");
                    assert_eq!(
                        r.headers.get("www-authenticate").and_then(|v| v.to_str().ok()),
                        Some("Bearer")
                    );
                }
            }
        }
        // Nothing the refused requests asked for happened.
        assert!(t.db.paused().await.expect("paused").is_empty());
        assert!(t.db.limits().await.expect("limits").is_empty());
        assert_eq!(audit(&t, "acme", &job).await.len(), 1, "enqueued only");
        // An operator's key passes every route (whatever the route then answers) …
        for (method, uri, body) in &routes {
            let r = t.call(method.clone(), uri, Some(&ops), body.clone()).await;
            assert!(
                !matches!(r.status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN),
                "{method} {uri}: {r:?}"
            );
        }
        // … and is no tenant's key.
        let r = t.call(Method::GET, "/v1/jobs", Some(&ops), None).await;
        problem(&r, StatusCode::UNAUTHORIZED);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_lists_reads_cancels_and_retries_any_tenants_jobs() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let globex = t.key_for("globex").await;
        let a1 = submitted(&t, &t.key, "doc-a1").await;
        let a2 = submitted(&t, &t.key, "doc-a2").await;
        let g1 = submitted(&t, &globex, "doc-g1").await;

        let ids = |r: &Reply| -> Vec<String> {
            r.json["jobs"]
                .as_array()
                .expect("jobs")
                .iter()
                .map(|j| j["job_id"].as_str().expect("id").to_owned())
                .collect()
        };
        let r = t.call(Method::GET, "/admin/v1/jobs", Some(&ops), None).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(ids(&r), [g1.to_string(), a2.to_string(), a1.to_string()], "every tenant's, newest first");
        let r = t.call(Method::GET, "/admin/v1/jobs?tenant=globex", Some(&ops), None).await;
        assert_eq!(ids(&r), [g1.to_string()]);
        assert_eq!(r.json["jobs"][0]["tenant_id"], "globex");
        let r = t.call(Method::GET, "/admin/v1/jobs?limit=2", Some(&ops), None).await;
        assert_eq!(ids(&r).len(), 2);
        let cursor = r.json["next_cursor"].as_str().expect("a next page").to_owned();
        let r =
            t.call(Method::GET, &format!("/admin/v1/jobs?limit=2&cursor={cursor}"), Some(&ops), None).await;
        assert_eq!((ids(&r), &r.json["next_cursor"]), (vec![a1.to_string()], &Value::Null));
        // By key (a summarize job's: its document and a digest of its text), of any tenant.
        let r = t.call(Method::GET, &format!("/admin/v1/jobs/{a2}"), Some(&ops), None).await;
        let key = r.json["key"].as_str().expect("a2's key").to_owned();
        assert!(key.starts_with("doc-a2:"), "{key}");
        let r = t.call(Method::GET, &format!("/admin/v1/jobs?key={key}"), Some(&ops), None).await;
        assert_eq!((r.status, ids(&r)), (StatusCode::OK, vec![a2.to_string()]), "{r:?}");
        let r =
            t.call(Method::GET, &format!("/admin/v1/jobs?key={key}&tenant=globex"), Some(&ops), None).await;
        assert_eq!(ids(&r), Vec::<String>::new(), "a2 is acme's");
        let r = t.call(Method::GET, "/admin/v1/jobs?key=doc-a2", Some(&ops), None).await;
        assert_eq!(ids(&r), Vec::<String>::new(), "exact, not a prefix");
        let long = format!("key={}", "k".repeat(1025));
        for (query, says) in
            [("key=", "must not be empty"), (long.as_str(), "must be at most 1024 bytes, got 1025")]
        {
            let r = t.call(Method::GET, &format!("/admin/v1/jobs?{query}"), Some(&ops), None).await;
            problem(&r, StatusCode::BAD_REQUEST);
            assert_eq!(error_fields(&r), ["key"], "{query}");
            assert!(r.json["errors"][0]["message"].as_str().is_some_and(|m| m.contains(says)), "{r:?}");
        }
        for (query, field) in [
            ("tenant=bad%20id", "tenant"),
            ("status=done", "status"),
            ("limit=0", "limit"),
            ("created_after=today", "created_after"),
            ("error_class=x", "error_class"),
        ] {
            let r = t.call(Method::GET, &format!("/admin/v1/jobs?{query}"), Some(&ops), None).await;
            problem(&r, StatusCode::BAD_REQUEST);
            assert_eq!(error_fields(&r), [field], "{query}");
        }
        problem(
            &t.call(Method::GET, "/admin/v1/jobs?surprise=1", Some(&ops), None).await,
            StatusCode::BAD_REQUEST,
        );

        // Any tenant's job by id.
        let r = t.call(Method::GET, &format!("/admin/v1/jobs/{g1}"), Some(&ops), None).await;
        assert_eq!((r.status, r.json["tenant_id"].as_str()), (StatusCode::OK, Some("globex")), "{r:?}");
        let unknown = format!("job_{}", "0".repeat(32));
        problem(
            &t.call(Method::GET, &format!("/admin/v1/jobs/{unknown}"), Some(&ops), None).await,
            StatusCode::NOT_FOUND,
        );
        problem(
            &t.call(Method::GET, "/admin/v1/jobs/not-an-id", Some(&ops), None).await,
            StatusCode::NOT_FOUND,
        );

        // Cancelled, then retried, by the operator: audited as the operator's.
        wipe_redis(&t).await;
        let r = t.call(Method::POST, &format!("/admin/v1/jobs/{g1}/cancel"), Some(&ops), None).await;
        assert_eq!((r.status, status_of(&r)), (StatusCode::OK, "cancelled"), "{r:?}");
        assert_eq!(
            audit(&t, "globex", &g1).await.last(),
            Some(&("cancelled".to_owned(), json!("operator:ops")))
        );
        let r = t.call(Method::POST, &format!("/admin/v1/jobs/{g1}/retry"), Some(&ops), None).await;
        assert_eq!((r.status, status_of(&r)), (StatusCode::ACCEPTED, "queued"), "{r:?}");
        assert_eq!(
            audit(&t, "globex", &g1).await.last(),
            Some(&("retried".to_owned(), json!("operator:ops")))
        );
        assert!(t.summarize.has_trace(&g1).await.expect("trace"), "enqueued again");
        let again = t.call(Method::POST, &format!("/admin/v1/jobs/{g1}/retry"), Some(&ops), None).await;
        problem(&again, StatusCode::CONFLICT);
        // A running job's cancel is requested; a completed one's is refused.
        start(&t, "acme", &a1).await;
        let r = t.call(Method::POST, &format!("/admin/v1/jobs/{a1}/cancel"), Some(&ops), None).await;
        assert_eq!((r.status, status_of(&r)), (StatusCode::ACCEPTED, "running"), "{r:?}");
        start(&t, "acme", &a2).await;
        t.db.complete(&tenant("acme"), &a2, 1, &json!({})).await.expect("complete");
        let r = t.call(Method::POST, &format!("/admin/v1/jobs/{a2}/cancel"), Some(&ops), None).await;
        assert_eq!(
            problem(&r, StatusCode::CONFLICT)["detail"],
            format!(
                "job {a2} is already completed: only a scheduled, queued or running job can be cancelled"
            )
        );
        problem(
            &t.call(Method::POST, &format!("/admin/v1/jobs/{unknown}/cancel"), Some(&ops), None).await,
            StatusCode::NOT_FOUND,
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_retry_dry_run_only_counts_and_the_real_one_retries_and_enqueues() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let globex = t.key_for("globex").await;
        let mut invalid = Vec::new();
        for i in 0..3 {
            invalid.push(failed(&t, &t.key, "acme", &format!("doc-inv-{i}"), ErrorClass::Invalid).await);
        }
        let alert = failed(&t, &t.key, "acme", "doc-alert", ErrorClass::Alert).await;
        let theirs = failed(&t, &globex, "globex", "doc-globex", ErrorClass::Invalid).await;
        let live = submitted(&t, &t.key, "doc-live").await;
        wipe_redis(&t).await;
        let bulk =
            async |body: Value| t.call(Method::POST, "/admin/v1/jobs/retry", Some(&ops), Some(body)).await;

        let r = bulk(json!({"dry_run": true})).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(
            r.json,
            json!({"matched": 5, "retried": 0, "not_enqueued": 0, "dry_run": true, "next": null})
        );
        let r = bulk(json!({"dry_run": true, "limit": 1})).await;
        assert_eq!(r.json["matched"], 5, "a dry run counts every match, whatever the limit: {r:?}");
        let r = bulk(json!({"dry_run": true, "tenant": "acme", "error_class": "invalid"})).await;
        assert_eq!(r.json["matched"], 3, "{r:?}");
        let r = bulk(json!({"dry_run": true, "kind": "triage"})).await;
        assert_eq!(r.json["matched"], 0, "{r:?}");
        for job in invalid.iter().chain([&alert]) {
            let record = t.db.get_job(&tenant("acme"), job).await.expect("get").expect("job");
            assert_eq!(record.status.as_str(), "failed", "a dry run changes nothing");
            assert!(!t.summarize.has_trace(job).await.expect("trace"));
        }
        for (body, field) in [
            (json!({"error_class": "bogus"}), "error_class"),
            (json!({"created_after": "yesterday"}), "created_after"),
            (json!({"tenant": "bad id"}), "tenant"),
            (json!({"kind": "bad kind"}), "kind"),
            (json!({"limit": 0}), "limit"),
            (json!({"limit": 10_001}), "limit"),
            (json!({"limit": 2.5}), "limit"),
            (json!({"limit": "10"}), "limit"),
            (json!({"after": -1}), "after"),
            (json!({"after": "5"}), "after"),
            (json!({"after": 18_446_744_073_709_551_615_u64}), "after"),
            (json!({"after": 3, "dry_run": true}), "after"),
        ] {
            let r = bulk(body.clone()).await;
            problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error_fields(&r), [field], "{body}");
        }
        problem(&bulk(json!({"surprise": true})).await, StatusCode::BAD_REQUEST);
        problem(&bulk(json!({"dry_run": "yes"})).await, StatusCode::BAD_REQUEST);

        // For real: acme's invalid ones, then the rest.
        let r = bulk(json!({"tenant": "acme", "error_class": "invalid"})).await;
        assert_eq!(
            r.json,
            json!({"matched": 3, "retried": 3, "not_enqueued": 0, "dry_run": false, "next": null}),
            "{r:?}"
        );
        for job in &invalid {
            let record = t.db.get_job(&tenant("acme"), job).await.expect("get").expect("job");
            assert_eq!((record.status.as_str(), record.attempts), ("queued", 1));
            assert!(t.summarize.has_trace(job).await.expect("trace"), "enqueued");
            let last = t.db.job_audit(&tenant("acme"), job).await.expect("audit").pop().expect("a row");
            assert_eq!(
                (last.action.as_str(), &last.detail["by"], &last.detail["bulk"]),
                ("retried", &json!("operator:ops"), &json!(true))
            );
        }
        assert!(!t.summarize.has_trace(&alert).await.expect("trace"), "not matched: not enqueued");
        let r = bulk(json!({})).await;
        assert_eq!((&r.json["matched"], &r.json["retried"]), (&json!(2), &json!(2)), "{r:?}");
        assert!(t.summarize.has_trace(&alert).await.expect("trace"));
        assert!(t.summarize.has_trace(&theirs).await.expect("trace"));
        let r = bulk(json!({})).await;
        assert_eq!(
            (&r.json["matched"], &r.json["retried"]),
            (&json!(0), &json!(0)),
            "nothing failed is left"
        );
        let record = t.db.get_job(&tenant("acme"), &live).await.expect("get").expect("job");
        assert_eq!(record.status.as_str(), "queued", "a live job is no failed one");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_retry_is_bounded_per_request_and_goes_on_from_its_cursor() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let mut jobs = Vec::new();
        for i in 0..5 {
            jobs.push(failed(&t, &t.key, "acme", &format!("doc-page-{i}"), ErrorClass::Invalid).await);
        }
        wipe_redis(&t).await;
        let bulk =
            async |body: Value| t.call(Method::POST, "/admin/v1/jobs/retry", Some(&ops), Some(body)).await;
        let queued = async || {
            let mut n = 0;
            for job in &jobs {
                let record = t.db.get_job(&tenant("acme"), job).await.expect("get").expect("job");
                n += usize::from(record.status.as_str() == "queued");
            }
            n
        };
        // Two per request: the oldest two, and a cursor for the rest.
        let r = bulk(json!({"limit": 2})).await;
        assert_eq!(
            (r.status, &r.json["matched"], &r.json["retried"]),
            (StatusCode::OK, &json!(2), &json!(2))
        );
        let next = r.json["next"].as_i64().unwrap_or_else(|| panic!("a cursor: {r:?}"));
        assert_eq!(queued().await, 2, "only the page was put back");
        for (i, job) in jobs.iter().enumerate() {
            assert_eq!(t.summarize.has_trace(job).await.expect("trace"), i < 2, "job {i}");
        }
        let r = bulk(json!({"dry_run": true})).await;
        assert_eq!(r.json["matched"], 3, "{r:?}");
        // The same request again (a client retrying after a timeout): it goes on where the
        // failed jobs are, since those put back are failed no more.
        let r = bulk(json!({"limit": 2})).await;
        assert_eq!((&r.json["matched"], &r.json["retried"]), (&json!(2), &json!(2)), "{r:?}");
        assert_eq!(queued().await, 4);
        // From the first answer's cursor: the last one, and no cursor after it.
        let r = bulk(json!({"limit": 2, "after": next})).await;
        assert_eq!(
            (&r.json["matched"], &r.json["retried"], &r.json["next"]),
            (&json!(1), &json!(1), &Value::Null),
            "{r:?}"
        );
        assert_eq!(queued().await, 5);
        for job in &jobs {
            assert!(t.summarize.has_trace(job).await.expect("trace"));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bulk_retry_counts_jobs_of_a_kind_it_cannot_enqueue_as_not_enqueued() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        // A failed job of a kind another service runs: this producer has no queue for it.
        let acme = tenant("acme");
        let job_id = JobId::derive(&acme, "mystery", &longhaul_core::kind::JobKey::Derived("m-1".into()));
        let new = longhaul_core::NewJob {
            job_id: job_id.clone(),
            tenant_id: acme.clone(),
            kind: "mystery".into(),
            key: "m-1".into(),
            input: json!({}),
            max_attempts: 1,
            run_at: None,
            priority: longhaul_core::Priority::Normal,
        };
        t.db.create_pending(new).await.expect("create");
        start(&t, "acme", &job_id).await;
        let failure = AttemptFailure::new(1, ErrorClass::Invalid, "no good");
        assert!(matches!(t.db.fail(&acme, &job_id, failure).await.expect("fail"), WriteOutcome::Applied(_)));
        let known = failed(&t, &t.key, "acme", "doc-known", ErrorClass::Invalid).await;
        wipe_redis(&t).await;
        let r = t.call(Method::POST, "/admin/v1/jobs/retry", Some(&ops), Some(json!({}))).await;
        assert_eq!(
            r.json,
            json!({"matched": 2, "retried": 2, "not_enqueued": 1, "dry_run": false, "next": null}),
            "{r:?}"
        );
        let record = t.db.get_job(&acme, &job_id).await.expect("get").expect("job");
        assert_eq!(record.status.as_str(), "queued", "put back, for a reconciler that knows the kind");
        assert!(t.summarize.has_trace(&known).await.expect("trace"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queues_show_their_backlog_and_pauses_which_operators_set() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        submitted(&t, &t.key, "doc-backlog").await;
        let queues = async || {
            let r = t.call(Method::GET, "/admin/v1/queues", Some(&ops), None).await;
            assert_eq!(r.status, StatusCode::OK, "{r:?}");
            r.json["queues"].as_array().expect("queues").clone()
        };
        let list = queues().await;
        let names: Vec<_> = list.iter().map(|q| q["queue"].as_str().expect("name")).collect();
        assert_eq!(names, ["summarize", "triage"]);
        let summarize = &list[0];
        assert_eq!((&summarize["paused"], &summarize["partitions"]), (&json!(false), &json!(1)));
        let stats = &summarize["stats"];
        let held = stats["waiting"].as_u64().expect("waiting") + stats["backlog"].as_u64().expect("backlog");
        assert_eq!(held, 1, "the submitted job waits: {summarize}");
        assert_eq!(
            (&stats["pending"], &stats["delayed"], &stats["dead_letters"]),
            (&json!(0), &json!(0), &json!(0))
        );
        assert_eq!(list[1]["kinds"], json!([{"scope": "kind", "name": "triage", "paused": false}]));

        let act = async |uri: &str| t.call(Method::POST, uri, Some(&ops), None).await;
        let r = act("/admin/v1/queues/summarize/pause").await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(
            (&r.json["paused"], &r.json["changed"], &r.json["paused_by"]),
            (&json!(true), &json!(true), &json!("operator:ops"))
        );
        let r = act("/admin/v1/queues/summarize/pause").await;
        assert_eq!((&r.json["paused"], &r.json["changed"]), (&json!(true), &json!(false)), "idempotent");
        let r = act("/admin/v1/kinds/triage/pause").await;
        assert_eq!((&r.json["scope"], &r.json["paused"]), (&json!("kind"), &json!(true)));
        for uri in [
            "/admin/v1/queues/nope/pause",
            "/admin/v1/kinds/nope/resume",
            "/admin/v1/queues/summarize-0/pause",
        ] {
            problem(&act(uri).await, StatusCode::NOT_FOUND);
        }
        let list = queues().await;
        assert_eq!((&list[0]["paused"], &list[0]["paused_by"]), (&json!(true), &json!("operator:ops")));
        assert_eq!(list[0]["kinds"][0]["paused"], false, "the queue is paused, not its kind");
        assert_eq!((&list[1]["paused"], &list[1]["kinds"][0]["paused"]), (&json!(false), &json!(true)));
        let paused: Vec<_> =
            t.db.paused().await.expect("paused").into_iter().map(|p| (p.scope, p.name)).collect();
        assert_eq!(
            paused,
            [(PauseScope::Queue, "summarize".to_owned()), (PauseScope::Kind, "triage".to_owned())]
        );

        let r = act("/admin/v1/queues/summarize/resume").await;
        assert_eq!((&r.json["paused"], &r.json["changed"]), (&json!(false), &json!(true)));
        act("/admin/v1/kinds/triage/resume").await;
        let list = queues().await;
        assert_eq!((&list[0]["paused"], &list[1]["kinds"][0]["paused"]), (&json!(false), &json!(false)));
        let actions: Vec<_> =
            t.db.control_audit(None, 10)
                .await
                .expect("audit")
                .into_iter()
                .map(|a| (a.action, a.detail["by"].clone()))
                .collect();
        assert_eq!(actions.len(), 4, "{actions:?}");
        assert!(actions.iter().all(|(_, by)| by == "operator:ops"), "{actions:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_are_validated_field_by_field_then_set_read_and_cleared() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let call = async |method: Method, uri: &str, body: Option<Value>| {
            t.call(method, uri, Some(&ops), body).await
        };
        let acme = "/admin/v1/limits/tenants/acme";
        let r = call(Method::PUT, acme, Some(json!({"max_running": 3, "starts_per_second": 1.5}))).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(
            (&r.json["scope"], &r.json["name"], &r.json["max_running"], &r.json["starts_per_second"]),
            (&json!("tenant"), &json!("acme"), &json!(3), &json!(1.5))
        );
        let set = r.json.clone();
        assert_eq!(call(Method::GET, acme, None).await.json, set);

        for (body, fields) in [
            (json!({"max_running": 0}), vec!["max_running"]),
            (json!({"max_running": -1}), vec!["max_running"]),
            (json!({"max_running": 1.5}), vec!["max_running"]),
            (json!({"max_running": "3"}), vec!["max_running"]),
            (json!({"max_running": 2_147_483_648_u64}), vec!["max_running"]),
            (json!({"starts_per_second": 0}), vec!["starts_per_second"]),
            (json!({"starts_per_second": -2.5}), vec!["starts_per_second"]),
            (json!({"starts_per_second": "fast"}), vec!["starts_per_second"]),
            (json!({"starts_per_second": 5e-324}), vec!["starts_per_second"]),
            (json!({"starts_per_second": 0.000_9}), vec!["starts_per_second"]),
            (json!({"starts_per_second": 1_000_001}), vec!["starts_per_second"]),
            (json!({"max_running": 0, "starts_per_second": 0}), vec!["max_running", "starts_per_second"]),
            (json!({}), vec!["max_running", "starts_per_second"]),
            (
                json!({"max_running": null, "starts_per_second": null}),
                vec!["max_running", "starts_per_second"],
            ),
            (json!({"burst": 3, "max_running": 2}), vec!["burst"]),
        ] {
            let r = call(Method::PUT, acme, Some(body.clone())).await;
            problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error_fields(&r), fields, "{body}");
        }
        let r = call(Method::PUT, acme, Some(json!({"starts_per_second": 5e-324}))).await;
        assert_eq!(
            problem(&r, StatusCode::UNPROCESSABLE_ENTITY)["errors"][0]["message"],
            "must be a number from 0.001 to 1000000, or null; got 5e-324"
        );
        assert_eq!(call(Method::GET, acme, None).await.json, set, "refused bodies change nothing");
        problem(
            &call(Method::PUT, "/admin/v1/limits/tenants/nobody", Some(json!({"max_running": 1}))).await,
            StatusCode::NOT_FOUND,
        );
        problem(&call(Method::PUT, acme, Some(json!([1]))).await, StatusCode::BAD_REQUEST);

        let kind = "/admin/v1/limits/kinds/summarize";
        for bound in [0.001, 1_000_000.0] {
            let r = call(Method::PUT, kind, Some(json!({"starts_per_second": bound}))).await;
            assert_eq!((r.status, &r.json["starts_per_second"]), (StatusCode::OK, &json!(bound)), "{r:?}");
        }
        let r = call(Method::PUT, kind, Some(json!({"starts_per_second": 10}))).await;
        assert_eq!(
            (r.status, &r.json["starts_per_second"], &r.json["max_running"]),
            (StatusCode::OK, &json!(10.0), &Value::Null),
            "{r:?}"
        );
        for (body, fields) in [
            (json!({"max_running": 1, "starts_per_second": 1}), vec!["max_running"]),
            (json!({}), vec!["starts_per_second"]),
            (json!({"starts_per_second": 0}), vec!["starts_per_second"]),
            (json!({"starts_per_second": 1e300}), vec!["starts_per_second"]),
        ] {
            let r = call(Method::PUT, kind, Some(body.clone())).await;
            problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
            assert_eq!(error_fields(&r), fields, "{body}");
        }
        problem(
            &call(Method::PUT, "/admin/v1/limits/kinds/nope", Some(json!({"starts_per_second": 1}))).await,
            StatusCode::NOT_FOUND,
        );

        let r = call(Method::GET, "/admin/v1/limits", None).await;
        let listed: Vec<_> = r.json["limits"]
            .as_array()
            .expect("limits")
            .iter()
            .map(|l| (l["scope"].clone(), l["name"].clone()))
            .collect();
        assert_eq!(listed, [(json!("tenant"), json!("acme")), (json!("kind"), json!("summarize"))]);
        let r = call(Method::DELETE, acme, None).await;
        assert_eq!((r.status, &r.json["cleared"]), (StatusCode::OK, &json!(true)), "{r:?}");
        assert_eq!(call(Method::DELETE, acme, None).await.json["cleared"], false, "idempotent");
        problem(&call(Method::GET, acme, None).await, StatusCode::NOT_FOUND);
        let audit: Vec<_> =
            t.db.control_audit(Some(&tenant("acme")), 10)
                .await
                .expect("audit")
                .into_iter()
                .map(|a| (a.action, a.detail["by"].clone()))
                .collect();
        assert_eq!(
            audit,
            [
                ("limit_cleared".to_owned(), json!("operator:ops")),
                ("limit_set".to_owned(), json!("operator:ops"))
            ]
        );
    })
    .await;
}

/// Adds a dead letter to `t`'s summarize queue: `source_id`, `reason`, then `fields`; its id.
async fn dead_letter(t: &TestApp, reason: &str, fields: &[(&str, String)]) -> String {
    let mut conn = t.queue.raw().await;
    let mut cmd = redis::cmd("XADD");
    cmd.arg(t.summarize.keys().dead()).arg("*").arg("source_id").arg("1-0").arg("reason").arg(reason);
    for (k, v) in fields {
        cmd.arg(*k).arg(v);
    }
    cmd.query_async(&mut conn).await.expect("XADD")
}

/// The fields of a first-attempt summarize entry of `who`'s job `job`.
fn entry_fields(who: &str, job: &JobId) -> Vec<(&'static str, String)> {
    vec![
        ("j", job.to_string()),
        ("t", who.to_owned()),
        ("n", "summarize".to_owned()),
        ("a", "1".to_owned()),
        ("e", "1700000000000".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dead_letters_are_listed_shown_replayed_and_purged() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let stalled = failed(&t, &t.key, "acme", "doc-stalled", ErrorClass::Retryable).await;
        let done = submitted(&t, &t.key, "doc-done").await;
        start(&t, "acme", &done).await;
        t.db.complete(&tenant("acme"), &done, 1, &json!({})).await.expect("complete");
        wipe_redis(&t).await;
        let d1 =
            dead_letter(&t, "delivered 5 times without finishing", &entry_fields("acme", &stalled)).await;
        let d2 =
            dead_letter(&t, "cannot decode: field \"j\"", &[("j", "not an id".into()), ("x", "y".into())])
                .await;
        let d3 = dead_letter(&t, "delivered 5 times without finishing", &entry_fields("acme", &done)).await;
        let call = async |method: Method, uri: &str| t.call(method, uri, Some(&ops), None).await;
        let ids = |r: &Reply| -> Vec<String> {
            r.json["dead_letters"]
                .as_array()
                .expect("list")
                .iter()
                .map(|d| d["id"].as_str().expect("id").to_owned())
                .collect()
        };

        let r = call(Method::GET, "/admin/v1/dead-letters?queue=summarize").await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(ids(&r), [d1.clone(), d2.clone(), d3.clone()], "oldest first");
        assert_eq!(
            (&r.json["dead_letters"][0]["job_id"], &r.json["dead_letters"][0]["tenant_id"]),
            (&json!(stalled.as_str()), &json!("acme"))
        );
        let r = call(Method::GET, "/admin/v1/dead-letters?queue=summarize&limit=2").await;
        assert_eq!(ids(&r), [d1.clone(), d2.clone()]);
        let after = r.json["next_after"].as_str().expect("more").to_owned();
        let r =
            call(Method::GET, &format!("/admin/v1/dead-letters?queue=summarize&limit=2&after={after}")).await;
        assert_eq!((ids(&r), &r.json["next_after"]), (vec![d3.clone()], &Value::Null));
        for (query, field) in [
            ("", "queue"),
            ("queue=summarize&after=x", "after"),
            ("queue=summarize&after=18446744073709551616-0", "after"),
            ("queue=summarize&after=1-18446744073709551616", "after"),
            ("queue=summarize&limit=0", "limit"),
        ] {
            let r = call(Method::GET, &format!("/admin/v1/dead-letters?{query}")).await;
            problem(&r, StatusCode::BAD_REQUEST);
            assert_eq!(error_fields(&r), [field], "{query}");
        }
        problem(&call(Method::GET, "/admin/v1/dead-letters?queue=nope").await, StatusCode::NOT_FOUND);

        let r = call(Method::GET, &format!("/admin/v1/dead-letters/summarize/{d2}")).await;
        assert_eq!(
            (r.status, &r.json["queue"], &r.json["fields"]),
            (StatusCode::OK, &json!("summarize"), &json!([["j", "not an id"], ["x", "y"]])),
            "{r:?}"
        );
        for uri in [
            "/admin/v1/dead-letters/summarize/1-1",
            "/admin/v1/dead-letters/summarize/bad",
            "/admin/v1/dead-letters/summarize/18446744073709551616-0",
            "/admin/v1/dead-letters/nope/1-0",
        ] {
            problem(&call(Method::GET, uri).await, StatusCode::NOT_FOUND);
        }

        // The stalled job goes back through storage: retried, enqueued, its dead letter purged.
        let r = call(Method::POST, &format!("/admin/v1/dead-letters/summarize/{d1}/replay")).await;
        assert_eq!(
            (r.status, &r.json["replayed"], &r.json["job"]["status"]),
            (StatusCode::OK, &json!("retried"), &json!("queued")),
            "{r:?}"
        );
        assert!(t.summarize.has_trace(&stalled).await.expect("trace"));
        assert_eq!(
            audit(&t, "acme", &stalled).await.last(),
            Some(&("retried".to_owned(), json!("operator:ops")))
        );
        problem(
            &call(Method::GET, &format!("/admin/v1/dead-letters/summarize/{d1}")).await,
            StatusCode::NOT_FOUND,
        );
        problem(
            &call(Method::POST, &format!("/admin/v1/dead-letters/summarize/{d1}/replay")).await,
            StatusCode::NOT_FOUND,
        );
        // The undecodable entry goes back as it was.
        let before = t.summarize_len().await;
        let r = call(Method::POST, &format!("/admin/v1/dead-letters/summarize/{d2}/replay")).await;
        assert_eq!((r.status, &r.json["replayed"]), (StatusCode::OK, &json!("raw")), "{r:?}");
        assert_eq!(t.summarize_len().await, before + 1);
        // A completed job's: nothing to replay.
        let r = call(Method::POST, &format!("/admin/v1/dead-letters/summarize/{d3}/replay")).await;
        assert!(
            problem(&r, StatusCode::CONFLICT)["detail"].as_str().unwrap_or_default().contains("completed"),
            "{r:?}"
        );

        let r = call(Method::DELETE, &format!("/admin/v1/dead-letters/summarize/{d3}")).await;
        assert_eq!((r.status, &r.json["purged"]), (StatusCode::OK, &json!(1)), "{r:?}");
        assert_eq!(
            call(Method::DELETE, &format!("/admin/v1/dead-letters/summarize/{d3}")).await.json["purged"],
            0
        );
        dead_letter(&t, "again", &[("x", "1".into())]).await;
        dead_letter(&t, "again", &[("x", "2".into())]).await;
        let r = call(Method::DELETE, "/admin/v1/dead-letters/summarize").await;
        assert_eq!((r.status, &r.json["purged"]), (StatusCode::OK, &json!(2)), "{r:?}");
        assert!(ids(&call(Method::GET, "/admin/v1/dead-letters?queue=summarize").await).is_empty());
        let actions: Vec<_> =
            t.db.control_audit(None, 10).await.expect("audit").into_iter().map(|a| a.action).collect();
        assert_eq!(
            actions,
            ["dead_letters_purged", "dead_letters_purged", "dead_letter_replayed", "dead_letter_replayed"]
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dead_letter_naming_another_tenant_than_its_jobs_is_not_replayed() {
    both(async |backend| {
        let t = TestApp::new(backend).await;
        let ops = operator(&t, "ops").await;
        let job = failed(&t, &t.key, "acme", "doc-forged", ErrorClass::Retryable).await;
        wipe_redis(&t).await;
        let before = t.db.get_job(&tenant("acme"), &job).await.expect("get").expect("job");
        // An entry naming acme's job under globex: forged, or corrupted.
        let forged =
            dead_letter(&t, "delivered 5 times without finishing", &entry_fields("globex", &job)).await;
        let uri = format!("/admin/v1/dead-letters/summarize/{forged}");
        let r = t.call(Method::POST, &format!("{uri}/replay"), Some(&ops), None).await;
        let detail = problem(&r, StatusCode::CONFLICT)["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains(&format!("job {job} of tenant globex")), "{detail}");
        assert!(detail.contains("tenant acme's"), "{detail}");
        // Nothing replayed: the job is as it was, not enqueued, and the dead letter stays.
        assert_eq!(t.db.get_job(&tenant("acme"), &job).await.expect("get").as_ref(), Some(&before));
        assert!(!t.summarize.has_trace(&job).await.expect("trace"));
        assert_eq!(t.call(Method::GET, &uri, Some(&ops), None).await.status, StatusCode::OK);
        assert!(t.db.control_audit(None, 10).await.expect("audit").is_empty(), "nothing audited");
        // The entry under the job's own tenant replays.
        let own = dead_letter(&t, "delivered 5 times without finishing", &entry_fields("acme", &job)).await;
        let r = t
            .call(Method::POST, &format!("/admin/v1/dead-letters/summarize/{own}/replay"), Some(&ops), None)
            .await;
        assert_eq!((r.status, &r.json["replayed"]), (StatusCode::OK, &json!("retried")), "{r:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_split_queues_dead_letters_are_named_by_partition() {
    let t = TestApp::new(Backend::Sqlite).await;
    let ops = operator(&t, "ops").await;
    let router = t.with_redis(&t.queue.url, &["--queue-partitions", "2"]).await;
    let get = async |uri: &str| call(&router, Method::GET, uri, Some(&ops), None, &[]).await;
    let r = get("/admin/v1/dead-letters?queue=summarize").await;
    problem(&r, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(error_fields(&r), ["queue"]);
    assert!(r.json["errors"][0]["message"].as_str().unwrap_or_default().contains("summarize-0"), "{r:?}");
    let r = get("/admin/v1/dead-letters?queue=summarize-1").await;
    assert_eq!(
        (r.status, &r.json["queue"], &r.json["dead_letters"]),
        (StatusCode::OK, &json!("summarize-1"), &json!([]))
    );
    problem(&get("/admin/v1/dead-letters?queue=summarize-2").await, StatusCode::NOT_FOUND);
    let r = get("/admin/v1/queues").await;
    assert_eq!(r.json["queues"][0]["partitions"], 2, "{r:?}");
}
