//! The operator surface of the store on both backends: operator keys (never a tenant's), pauses
//! and limits (idempotent, audited under the tenant or `*`), an operator's job list across
//! tenants, and the bulk retry of failed jobs with its dry run.

use std::num::NonZeroU32;

use chrono::Utc;
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus};
use longhaul_store::{
    AdminJobFilter, AttemptFailure, FailedFilter, LimitScope, OperatorName, PauseScope, Rate, Store,
};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job_of, status_filter, tenant};

conformance!(operator_keys_authenticate_operators_only, |store: Store| async move {
    let ops = OperatorName::parse("ops").expect("name");
    let (op, key) = store.create_operator(&ops).await.expect("create");
    assert_eq!(op.name, "ops");
    assert!(key.expose().starts_with(longhaul_store::operators::OPERATOR_KEY_PREFIX));
    assert_eq!(store.authenticate_operator(key.expose()).await.expect("auth"), Some("ops".to_owned()));
    // A tenant's key is no operator's, and an operator's key is no tenant's.
    let (_, tenant_key) = store.create_tenant(&tenant("acme"), "Acme", None).await.expect("tenant");
    assert_eq!(store.authenticate_operator(tenant_key.expose()).await.expect("auth"), None);
    assert_eq!(store.authenticate(key.expose()).await.expect("auth"), None);
    for bad in ["", "lho_", "lho_00", &key.expose()[..key.expose().len() - 1]] {
        assert_eq!(store.authenticate_operator(bad).await.expect("auth"), None, "{bad:?}");
    }
    // Names are unique; the list shows names, never keys.
    assert!(store.create_operator(&ops).await.is_err(), "a second operator named ops");
    let (_, other) =
        store.create_operator(&OperatorName::parse("alice").expect("name")).await.expect("create");
    assert_ne!(other, key);
    let names: Vec<_> = store.operators().await.expect("list").into_iter().map(|o| o.name).collect();
    assert_eq!(names, ["alice", "ops"]);
    // Revoked: the key stops working at once.
    assert!(store.revoke_operator("ops").await.expect("revoke"));
    assert!(!store.revoke_operator("ops").await.expect("revoke again"));
    assert_eq!(store.authenticate_operator(key.expose()).await.expect("auth"), None);
});

conformance!(pauses_are_idempotent_listed_and_audited_queue_wide, |store: Store| async move {
    assert!(store.paused().await.expect("paused").is_empty());
    assert!(store.pause(PauseScope::Queue, "summarize", "operator:ops").await.expect("pause"));
    assert!(store.pause(PauseScope::Kind, "triage", "operator:alice").await.expect("pause"));
    // Again: nothing changes; the first pause's author stays.
    assert!(!store.pause(PauseScope::Queue, "summarize", "operator:alice").await.expect("again"));
    let paused: Vec<_> =
        store.paused().await.expect("paused").into_iter().map(|p| (p.scope, p.name, p.paused_by)).collect();
    assert_eq!(
        paused,
        [
            (PauseScope::Queue, "summarize".to_owned(), "operator:ops".to_owned()),
            (PauseScope::Kind, "triage".to_owned(), "operator:alice".to_owned()),
        ]
    );
    // A queue and a kind of the same name are different pauses.
    assert!(!store.resume(PauseScope::Kind, "summarize", "operator:ops").await.expect("resume"));
    assert!(store.resume(PauseScope::Queue, "summarize", "operator:ops").await.expect("resume"));
    assert!(!store.resume(PauseScope::Queue, "summarize", "operator:ops").await.expect("again"));
    assert_eq!(store.paused().await.expect("paused").len(), 1);
    let audit: Vec<_> = store
        .control_audit(None, 10)
        .await
        .expect("audit")
        .into_iter()
        .map(|a| (a.action, a.detail["scope"].clone(), a.detail["name"].clone(), a.detail["by"].clone()))
        .collect();
    assert_eq!(
        audit,
        [
            ("resumed".to_owned(), json!("queue"), json!("summarize"), json!("operator:ops")),
            ("paused".to_owned(), json!("kind"), json!("triage"), json!("operator:alice")),
            ("paused".to_owned(), json!("queue"), json!("summarize"), json!("operator:ops")),
        ],
        "newest first, one row per change"
    );
});

conformance!(limits_are_set_replaced_cleared_and_audited, |store: Store| async move {
    let acme = tenant("acme");
    let cap = NonZeroU32::new(5);
    let rate = Rate::new(2.5).ok();
    let set = store.set_tenant_limit(&acme, cap, rate, "operator:ops").await.expect("set").expect("a limit");
    assert_eq!(
        (set.scope, set.name.as_str(), set.max_running, set.starts_per_second),
        (LimitScope::Tenant, "acme", Some(5), Some(2.5))
    );
    // The whole limit is replaced: the rate left out goes back to the default.
    let set = store
        .set_tenant_limit(&acme, NonZeroU32::new(7), None, "operator:ops")
        .await
        .expect("set")
        .expect("a limit");
    assert_eq!((set.max_running, set.starts_per_second), (Some(7), None));
    let kind =
        store.set_kind_limit("summarize", Rate::new(0.5).expect("rate"), "operator:ops").await.expect("kind");
    assert_eq!((kind.scope, kind.max_running, kind.starts_per_second), (LimitScope::Kind, None, Some(0.5)));
    // A cap beyond what the database holds saturates.
    let big = store
        .set_tenant_limit(&tenant("big"), NonZeroU32::new(u32::MAX), None, "operator:ops")
        .await
        .expect("set");
    assert_eq!(big.and_then(|l| l.max_running), Some(i32::MAX as u32));
    let listed: Vec<_> = store
        .limits()
        .await
        .expect("limits")
        .into_iter()
        .map(|l| (l.scope, l.name, l.max_running, l.starts_per_second))
        .collect();
    assert_eq!(
        listed,
        [
            (LimitScope::Tenant, "acme".to_owned(), Some(7), None),
            (LimitScope::Tenant, "big".to_owned(), Some(i32::MAX as u32), None),
            (LimitScope::Kind, "summarize".to_owned(), None, Some(0.5)),
        ]
    );
    assert_eq!(store.limit(LimitScope::Kind, "summarize").await.expect("one"), Some(kind));
    // Cleared, twice: the second changes nothing. Nothing set clears too.
    assert!(store.clear_limit(LimitScope::Kind, "summarize", "operator:ops").await.expect("clear"));
    assert!(!store.clear_limit(LimitScope::Kind, "summarize", "operator:ops").await.expect("again"));
    assert_eq!(store.set_tenant_limit(&acme, None, None, "operator:ops").await.expect("clear"), None);
    assert_eq!(store.limit(LimitScope::Tenant, "acme").await.expect("one"), None);
    // A tenant's limit is audited under the tenant; a kind's under `*`.
    let actions = |rows: Vec<longhaul_store::AuditEntry>| -> Vec<(String, serde_json::Value)> {
        rows.into_iter().map(|a| (a.action, a.detail["max_running"].clone())).collect()
    };
    assert_eq!(
        actions(store.control_audit(Some(&acme), 10).await.expect("audit")),
        [
            ("limit_cleared".to_owned(), serde_json::Value::Null),
            ("limit_set".to_owned(), json!(7)),
            ("limit_set".to_owned(), json!(5)),
        ]
    );
    let wide = store.control_audit(None, 10).await.expect("audit");
    let wide: Vec<_> = wide
        .into_iter()
        .map(|a| (a.action, a.detail["name"].clone(), a.detail["starts_per_second"].clone()))
        .collect();
    assert_eq!(
        wide,
        [
            ("limit_cleared".to_owned(), json!("summarize"), serde_json::Value::Null),
            ("limit_set".to_owned(), json!("summarize"), json!(0.5)),
        ]
    );
});

/// Jobs of kinds `alpha`/`beta` for tenants `acme`/`globex`, some failed (`invalid` or `alert`),
/// one queued (6), one completed (7); in creation order.
async fn mixed(store: &Store) -> Vec<JobRecord> {
    let mut out = Vec::new();
    for i in 0..8 {
        let who = ["acme", "globex"][i % 2];
        let kind = ["alpha", "beta"][(i / 2) % 2];
        let job = setup_job_of(store, who, kind, &format!("M-{i}"), 2).await;
        let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
        store.create_pending(job).await.expect("create");
        match i {
            6 => {}
            7 => {
                applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
                applied(store.complete(&t, &j, 1, &json!({})).await.expect("complete"));
            }
            _ => {
                let class = if i == 5 { ErrorClass::Alert } else { ErrorClass::Invalid };
                applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
                applied(store.fail(&t, &j, AttemptFailure::new(1, class, "no")).await.expect("fail"));
            }
        }
        out.push(store.get_job(&t, &j).await.expect("get").expect("present"));
    }
    out
}

fn ids(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|r| r.job_id.clone()).collect()
}

conformance!(an_operator_lists_and_reads_jobs_of_every_tenant, |store: Store| async move {
    let all = mixed(&store).await;
    let newest_first: Vec<_> = all.iter().rev().cloned().collect();
    // Every tenant's, newest first, two at a time through the cursor.
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let page =
            store.list_jobs_admin(&AdminJobFilter::default(), 2, cursor.as_deref()).await.expect("page");
        assert!(page.jobs.len() <= 2);
        seen.extend(page.jobs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, newest_first);
    // One tenant's; failed ones of a kind and class; a time range.
    let acme = AdminJobFilter { tenant: Some(tenant("acme")), ..Default::default() };
    let page = store.list_jobs_admin(&acme, 100, None).await.expect("page");
    assert_eq!(
        ids(&page.jobs),
        ids(&newest_first.iter().filter(|r| r.tenant_id.as_str() == "acme").cloned().collect::<Vec<_>>())
    );
    let filter = AdminJobFilter {
        kind: Some("alpha".into()),
        status: Some(JobStatus::Failed),
        error_class: Some(ErrorClass::Alert),
        ..Default::default()
    };
    assert_eq!(
        ids(&store.list_jobs_admin(&filter, 100, None).await.expect("page").jobs),
        [all[5].job_id.clone()]
    );
    let filter = AdminJobFilter { created_after: Some(all[6].created_at), ..Default::default() };
    assert_eq!(
        ids(&store.list_jobs_admin(&filter, 100, None).await.expect("page").jobs),
        [all[7].job_id.clone(), all[6].job_id.clone()]
    );
    assert!(store.list_jobs_admin(&AdminJobFilter::default(), 10, Some("x")).await.is_err());
    // Any job by id; an unknown id is none.
    assert_eq!(store.get_job_admin(&all[1].job_id).await.expect("get").as_ref(), Some(&all[1]));
    let unknown = JobId::parse(format!("job_{}", "0".repeat(32))).expect("id");
    assert_eq!(store.get_job_admin(&unknown).await.expect("get"), None);
});

conformance!(an_operator_finds_jobs_by_their_key_across_tenants, |store: Store| async move {
    let all = mixed(&store).await;
    // Job 3 (globex's, failed) is keyed M-3; acme records a job of its own under the same key.
    let again = setup_job_of(&store, "acme", "alpha", "M-3", 2).await;
    let again_id = again.job_id.clone();
    store.create_pending(again).await.expect("create");
    let by_key = |key: &str| AdminJobFilter { key: Some(key.to_owned()), ..Default::default() };
    let list = async |filter: &AdminJobFilter| {
        ids(&store.list_jobs_admin(filter, 100, None).await.expect("page").jobs)
    };
    // Every tenant's jobs with exactly that key, newest first.
    assert_eq!(list(&by_key("M-3")).await, [again_id.clone(), all[3].job_id.clone()]);
    assert_eq!(list(&by_key("M-5")).await, [all[5].job_id.clone()]);
    // Exact: no prefix, no other case, no unknown key.
    for other in ["M-", "m-3", "M-3 ", "M-30", "nope"] {
        assert_eq!(list(&by_key(other)).await, Vec::<JobId>::new(), "{other:?}");
    }
    // With the other filters.
    let acme = AdminJobFilter { tenant: Some(tenant("acme")), ..by_key("M-3") };
    assert_eq!(list(&acme).await, std::slice::from_ref(&again_id));
    let failed = AdminJobFilter { status: Some(JobStatus::Failed), ..by_key("M-3") };
    assert_eq!(list(&failed).await, [all[3].job_id.clone()]);
    let beta = AdminJobFilter { kind: Some("beta".into()), ..by_key("M-3") };
    assert_eq!(list(&beta).await, [all[3].job_id.clone()], "acme's is of kind alpha");
    let queued = AdminJobFilter { status: Some(JobStatus::Queued), ..by_key("M-5") };
    assert_eq!(list(&queued).await, Vec::<JobId>::new(), "job 5 failed");
    // Through the cursor, one at a time.
    let first = store.list_jobs_admin(&by_key("M-3"), 1, None).await.expect("page");
    assert_eq!(ids(&first.jobs), [again_id]);
    let cursor = first.next_cursor.expect("a second page");
    let second = store.list_jobs_admin(&by_key("M-3"), 1, Some(&cursor)).await.expect("page");
    assert_eq!((ids(&second.jobs), second.next_cursor), (vec![all[3].job_id.clone()], None));
    // What the filter takes: not empty, at most MAX_KEY_FILTER_LEN bytes.
    let max = longhaul_store::MAX_KEY_FILTER_LEN;
    assert!(AdminJobFilter::check_key("").is_err());
    assert!(AdminJobFilter::check_key(&"k".repeat(max)).is_ok());
    let long = AdminJobFilter::check_key(&"k".repeat(max + 1)).expect_err("too long");
    assert!(long.contains(&max.to_string()), "{long}");
    assert!(AdminJobFilter::check_key("a\0b").expect_err("NUL").contains("NUL"));
});

conformance!(an_operator_lists_a_window_of_creation_time_however_it_is_read, |store: Store| async move {
    let all = mixed(&store).await;
    let window = |after: Option<usize>, before: usize| AdminJobFilter {
        created_after: after.map(|i| all[i].created_at),
        created_before: Some(all[before].created_at),
        ..Default::default()
    };
    let pages = async |filter: &AdminJobFilter, limit: u32| {
        let (mut seen, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let page = store.list_jobs_admin(filter, limit, cursor.as_deref()).await.expect("page");
            seen.extend(ids(&page.jobs));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return seen,
            }
        }
    };
    let newest_first = |range: std::ops::Range<usize>| -> Vec<JobId> {
        range.rev().map(|i| all[i].job_id.clone()).collect()
    };
    // Jobs 1 and 2, with 5 created since: on PostgreSQL, read window first.
    assert_eq!(pages(&window(Some(1), 3), 100).await, newest_first(1..3));
    assert_eq!(pages(&window(Some(1), 3), 1).await, newest_first(1..3), "through the cursor");
    // Jobs 0 to 6, with 1 created since: walked down.
    assert_eq!(pages(&window(None, 7), 100).await, newest_first(0..7));
    assert_eq!(pages(&window(None, 7), 2).await, newest_first(0..7), "through the cursor");
    // Read window first, with the other filters (jobs 1 and 2 failed; 1 is globex's alpha job, 2
    // acme's beta job).
    let with = |f: AdminJobFilter| AdminJobFilter { created_after: Some(all[1].created_at), ..f };
    let failed = with(AdminJobFilter { status: Some(JobStatus::Failed), ..window(None, 3) });
    assert_eq!(pages(&failed, 1).await, newest_first(1..3));
    let queued = with(AdminJobFilter { status: Some(JobStatus::Queued), ..window(None, 3) });
    assert_eq!(pages(&queued, 100).await, Vec::<JobId>::new());
    let globex = with(AdminJobFilter { tenant: Some(tenant("globex")), ..window(None, 3) });
    assert_eq!(pages(&globex, 100).await, [all[1].job_id.clone()]);
    let beta = with(AdminJobFilter { kind: Some("beta".into()), ..window(None, 3) });
    assert_eq!(pages(&beta, 100).await, [all[2].job_id.clone()]);
    // An empty window.
    assert_eq!(pages(&window(Some(3), 3), 100).await, Vec::<JobId>::new());
});

conformance!(a_bulk_retry_takes_exactly_the_matching_failed_jobs_in_batches, |store: Store| async move {
    let all = mixed(&store).await;
    let failed = |r: &&JobRecord| r.status == JobStatus::Failed;
    assert_eq!(all.iter().filter(failed).count(), 6);
    // Dry runs count without changing anything.
    assert_eq!(store.count_failed(&FailedFilter::default()).await.expect("count"), 6);
    let acme_alpha =
        FailedFilter { tenant: Some(tenant("acme")), kind: Some("alpha".into()), ..Default::default() };
    assert_eq!(store.count_failed(&acme_alpha).await.expect("count"), 2, "jobs 0 and 4");
    let alert = FailedFilter { error_class: Some(ErrorClass::Alert), ..Default::default() };
    assert_eq!(store.count_failed(&alert).await.expect("count"), 1);
    let late = FailedFilter {
        created_after: Some(all[4].created_at),
        created_before: Some(Utc::now()),
        ..Default::default()
    };
    assert_eq!(store.count_failed(&late).await.expect("count"), 2, "jobs 4 and 5");
    assert_eq!(store.count_failed(&FailedFilter::default()).await.expect("count"), 6, "still");

    // The alert one alone.
    let b = store.retry_failed_batch(&alert, 0, 10, |_| 3, "operator:ops").await.expect("batch");
    assert_eq!((b.matched, ids(&b.retried), b.next), (1, vec![all[5].job_id.clone()], None));
    assert_eq!((b.retried[0].status, b.retried[0].max_attempts), (JobStatus::Queued, 4));
    // The rest, two per batch, with a budget per kind.
    let (mut matched, mut retried, mut after, mut batches) = (0, Vec::new(), 0, 0);
    loop {
        let budget = |kind: &str| if kind == "alpha" { 2 } else { 5 };
        let b = store
            .retry_failed_batch(&FailedFilter::default(), after, 2, budget, "operator:ops")
            .await
            .expect("batch");
        batches += 1;
        matched += b.matched;
        retried.extend(b.retried);
        match b.next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!((matched, retried.len(), batches), (5, 5, 3), "2 + 2 + 1");
    let expected: Vec<_> = [0, 1, 2, 3, 4].iter().map(|&i| all[i].job_id.clone()).collect();
    assert_eq!(ids(&retried), expected, "in creation order");
    for r in &retried {
        let budget = if r.kind == "alpha" { 2 } else { 5 };
        assert_eq!(
            (r.status, r.attempts, r.max_attempts, r.error_class),
            (JobStatus::Queued, 1, 1 + budget, None)
        );
        let audit = store.job_audit(&r.tenant_id, &r.job_id).await.expect("audit");
        let last = audit.last().expect("a row");
        assert_eq!(
            (last.action.as_str(), &last.detail),
            ("retried", &json!({"by": "operator:ops", "budget": budget, "bulk": true, "attempt": 1}))
        );
    }
    assert_eq!(store.count_failed(&FailedFilter::default()).await.expect("count"), 0);
    // Nothing left: an empty batch. The completed and queued jobs were never touched.
    let b = store
        .retry_failed_batch(&FailedFilter::default(), 0, 100, |_| 1, "operator:ops")
        .await
        .expect("batch");
    assert_eq!((b.matched, b.retried.len(), b.next), (0, 0, None));
    for i in [6, 7] {
        assert_eq!(
            store.get_job(&all[i].tenant_id, &all[i].job_id).await.expect("get").as_ref(),
            Some(&all[i])
        );
    }
});

conformance!(a_bulk_retry_puts_back_only_jobs_still_failed_and_matching, |store: Store| async move {
    // Four jobs failed `invalid`; a bulk retry of the `invalid` ones finds them all …
    let mut jobs = Vec::new();
    for i in 0..4 {
        let job = setup_job_of(&store, "acme", "alpha", &format!("R-{i}"), 1).await;
        let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
        store.create_pending(job).await.expect("create");
        applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
        applied(store.fail(&t, &j, AttemptFailure::new(1, ErrorClass::Invalid, "no")).await.expect("fail"));
        jobs.push((t, j));
    }
    let invalid = FailedFilter { error_class: Some(ErrorClass::Invalid), ..Default::default() };
    assert_eq!(store.count_failed(&invalid).await.expect("count"), 4);
    let found = store.failed_batch(&invalid, 0, 10).await.expect("found");
    let found_ids: Vec<_> = found.jobs.iter().map(|f| f.job_id.clone()).collect();
    assert_eq!(found_ids, jobs.iter().map(|(_, j)| j.clone()).collect::<Vec<_>>());
    assert_eq!(found.next, None);
    // … then, before it puts them back: the tenant retries job 0 and cancels it; job 1 is retried
    // and fails again, `alert` now; job 2 is retried and fails again, still `invalid`.
    let (t0, j0) = &jobs[0];
    applied(store.requeue(t0, j0, 1, "tenant").await.expect("requeue"));
    applied(store.cancel(t0, j0, "tenant").await.expect("cancel"));
    for (i, class) in [(1, ErrorClass::Alert), (2, ErrorClass::Invalid)] {
        let (t, j) = &jobs[i];
        applied(store.requeue(t, j, 1, "tenant").await.expect("requeue"));
        applied(store.start_next(t, j, lease("2-0", 1), 2).await.expect("start"));
        applied(store.fail(t, j, AttemptFailure::new(2, class, "again")).await.expect("fail"));
    }
    let before: Vec<_> = [0, 1].iter().map(|&i| jobs[i].clone()).collect();
    let mut unchanged = Vec::new();
    for (t, j) in &before {
        unchanged.push(store.get_job(t, j).await.expect("get").expect("present"));
    }
    let retried = store.retry_failed(&invalid, &found.jobs, |_| 3, "operator:ops").await.expect("retry");
    // Only jobs 2 and 3 — still failed, still `invalid` — are put back.
    assert_eq!(ids(&retried), [jobs[2].1.clone(), jobs[3].1.clone()]);
    assert!(retried.iter().all(|r| r.status == JobStatus::Queued));
    // The cancel stands; the `alert` failure is left for a filter that matches it.
    for ((t, j), was) in before.iter().zip(&unchanged) {
        assert_eq!(store.get_job(t, j).await.expect("get").as_ref(), Some(was));
        let last = store.job_audit(t, j).await.expect("audit").pop().expect("a row");
        assert_ne!(last.action, "retried", "{j}: {last:?}");
    }
    assert_eq!(unchanged[0].status, JobStatus::Cancelled);
    assert_eq!((unchanged[1].status, unchanged[1].error_class), (JobStatus::Failed, Some(ErrorClass::Alert)));
    // A filter's tenant is checked too: another tenant's filter puts nothing back.
    let (t1, j1) = &jobs[1];
    let theirs = FailedFilter { tenant: Some(tenant("globex")), ..Default::default() };
    let job1 = longhaul_store::FailedJob { job_id: j1.clone(), tenant_id: t1.clone(), kind: "alpha".into() };
    assert!(store.retry_failed(&theirs, &[job1], |_| 3, "operator:ops").await.expect("retry").is_empty());
    // Through the batch call: the `alert` one alone is left, and a filter for it takes it.
    let alert = FailedFilter { error_class: Some(ErrorClass::Alert), ..Default::default() };
    let b = store.retry_failed_batch(&invalid, 0, 10, |_| 3, "operator:ops").await.expect("batch");
    assert_eq!((b.matched, b.retried.len()), (0, 0));
    let b = store.retry_failed_batch(&alert, 0, 10, |_| 3, "operator:ops").await.expect("batch");
    assert_eq!((b.matched, ids(&b.retried)), (1, vec![j1.clone()]));
});

/// On PostgreSQL each filter of the operator's list across tenants reads through the index 0007
/// gives it (a status through its phase, 0009; a live one through jobs_live), never the whole
/// table: the list statement planned with its values, as `list_jobs_admin` runs it (uncached) —
/// the window-first form for a window of creation time — over 20 000 jobs of 20 tenants, a few
/// failed, cancelled, queued or of a rare kind; and the bulk retry's statements likewise.
/// docs/QUERY_PLANS.md shows the same plans on a million jobs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_plans_read_every_tenants_jobs_through_the_console_indexes() {
    const PAGE: &str = include_str!("../../sql/common/jobs/select_page_admin.sql");
    const WINDOW: &str = include_str!("../../sql/postgres/jobs/select_page_admin_window.sql");
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    // Fewer rows than ANALYZE samples, so the statistics, and the plans, are the same on every run.
    let fill = "
        INSERT INTO tenants (tenant_id, name, api_key_hash, created_at)
        SELECT 't' || i, 't', decode(md5(i::text), 'hex'), now() FROM generate_series(0, 19) i;
        INSERT INTO jobs (job_id, tenant_id, kind, job_key, input, status, progress, attempts, max_attempts,
                          error_class, created_at, updated_at)
        SELECT 'job_' || i, 't' || (i % 20), CASE WHEN i % 401 = 0 THEN 'export' ELSE 'triage' END, 'k' || i,
               '{}', CASE WHEN i % 101 = 1 THEN 'failed' WHEN i % 307 = 2 THEN 'cancelled'
                          WHEN i % 211 = 5 THEN 'queued' ELSE 'completed' END,
               100, 1, 3, CASE WHEN i % 101 = 1 AND i % 5 = 0 THEN 'alert' WHEN i % 101 = 1 THEN 'invalid' END,
               now() - make_interval(secs => 20000 - i), now()
        FROM generate_series(1, 20000) i;
        ANALYZE jobs;";
    sqlx::raw_sql(fill).execute(&pool).await.expect("fill");
    let window = Utc::now() - chrono::Duration::seconds(10000);
    let f = AdminJobFilter::default;
    let cases = [
        (PAGE, AdminJobFilter { status: Some(JobStatus::Failed), ..f() }, "jobs_failed_cancelled"),
        (PAGE, AdminJobFilter { status: Some(JobStatus::Cancelled), ..f() }, "jobs_failed_cancelled"),
        (PAGE, AdminJobFilter { status: Some(JobStatus::Queued), ..f() }, "jobs_live"),
        (PAGE, AdminJobFilter { error_class: Some(ErrorClass::Alert), ..f() }, "jobs_by_error"),
        (PAGE, AdminJobFilter { key: Some("k1234".into()), ..f() }, "jobs_by_key"),
        (
            WINDOW,
            AdminJobFilter {
                created_after: Some(window),
                created_before: Some(window + chrono::Duration::seconds(600)),
                ..f()
            },
            "jobs_by_created",
        ),
    ];
    for (sql, filter, index) in cases {
        let explain = format!("EXPLAIN (FORMAT JSON) {sql}");
        let (plan,): (sqlx::types::Json<serde_json::Value>,) =
            sqlx::query_as(sqlx::AssertSqlSafe(explain.as_str()))
                .persistent(false)
                .bind(filter.tenant.as_ref().map(longhaul_core::TenantId::as_str))
                .bind(i64::MAX)
                .bind(51_i64)
                .bind(filter.kind.as_deref())
                .bind(status_filter(filter.status).1)
                .bind(filter.error_class.map(ErrorClass::as_str))
                .bind(filter.created_after)
                .bind(filter.created_before)
                .bind(filter.priority.map(longhaul_core::Priority::as_str))
                .bind(filter.key.as_deref())
                .bind(status_filter(filter.status).0)
                .fetch_one(&pool)
                .await
                .expect("explain");
        let text = plan.0.to_string();
        assert!(text.contains(&format!("\"Index Name\":\"{index}\"")), "{filter:?}: {text}");
        assert!(!text.contains("Seq Scan"), "{filter:?}: {text}");
    }
    // The bulk retry: its dry run counts from jobs_failed_cancelled alone; a batch reads it, or a
    // tenant's failed jobs from jobs_by_tenant_phase.
    const COUNT: &str = include_str!("../../sql/common/jobs/count_failed.sql");
    const BATCH: &str = include_str!("../../sql/common/jobs/select_failed.sql");
    let explain = format!("EXPLAIN (FORMAT JSON) {COUNT}");
    let (plan,): (sqlx::types::Json<serde_json::Value>,) =
        sqlx::query_as(sqlx::AssertSqlSafe(explain.as_str()))
            .persistent(false)
            .bind(None::<&str>)
            .bind(Some("triage"))
            .bind(None::<&str>)
            .bind(None::<chrono::DateTime<Utc>>)
            .bind(None::<chrono::DateTime<Utc>>)
            .fetch_one(&pool)
            .await
            .expect("explain count");
    let text = plan.0.to_string();
    assert!(text.contains("\"Node Type\":\"Index Only Scan\""), "{text}");
    assert!(text.contains("\"Index Name\":\"jobs_failed_cancelled\""), "{text}");
    let explain = format!("EXPLAIN (FORMAT JSON) {BATCH}");
    for (tenant, indexes) in [
        (None, &["jobs_failed_cancelled"][..]),
        (Some("t3"), &["jobs_by_tenant_phase", "jobs_failed_cancelled"]),
    ] {
        let (plan,): (sqlx::types::Json<serde_json::Value>,) =
            sqlx::query_as(sqlx::AssertSqlSafe(explain.as_str()))
                .persistent(false)
                .bind(0_i64)
                .bind(100_i64)
                .bind(tenant)
                .bind(None::<&str>)
                .bind(None::<&str>)
                .bind(None::<chrono::DateTime<Utc>>)
                .bind(None::<chrono::DateTime<Utc>>)
                .fetch_one(&pool)
                .await
                .expect("explain batch");
        let text = plan.0.to_string();
        assert!(
            indexes.iter().any(|i| text.contains(&format!("\"Index Name\":\"{i}\""))),
            "{tenant:?}: {text}"
        );
        assert!(!text.contains("Seq Scan"), "{tenant:?}: {text}");
    }
    pool.close().await;
}
