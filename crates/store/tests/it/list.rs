//! Listing a tenant's jobs: each filter alone and combined, always against the records as they
//! stand, page by page; and a cursor that stays put while new jobs arrive.

use chrono::Utc;
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, TenantId};
use longhaul_store::{AttemptFailure, JobFilter, Store};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job_of, status_filter, tenant};

/// Every job of `tenant` matching `filter`, newest first, read `limit` at a time through the
/// cursor.
async fn list_all(store: &Store, tenant: &TenantId, filter: &JobFilter, limit: u32) -> Vec<JobRecord> {
    let (mut out, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let page = store.list_jobs(tenant, filter, limit, cursor.as_deref()).await.expect("page");
        assert!(page.jobs.len() <= limit as usize);
        out.extend(page.jobs);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}

/// What `filter` says of `r`, as the store must apply it.
fn matches(filter: &JobFilter, r: &JobRecord) -> bool {
    filter.kind.as_ref().is_none_or(|k| &r.kind == k)
        && filter.status.is_none_or(|s| r.status == s)
        && filter.error_class.is_none_or(|c| r.error_class == Some(c))
        && filter.created_after.is_none_or(|t| r.created_at >= t)
        && filter.created_before.is_none_or(|t| r.created_at < t)
        && filter.priority.is_none_or(|p| r.priority == p)
}

fn ids(records: &[JobRecord]) -> Vec<JobId> {
    records.iter().map(|r| r.job_id.clone()).collect()
}

conformance!(each_filter_alone_and_combined_lists_exactly_its_jobs, |store: Store| async move {
    let t = tenant("lister");
    // Twelve jobs of three kinds, created one after another (so in seq order), then moved to every
    // status and error class; and jobs of another tenant, which no filter ever shows.
    let mut created = Vec::new();
    for i in 0..12 {
        let kind = ["alpha", "beta", "gamma"][i % 3];
        let job = setup_job_of(&store, "lister", kind, &format!("J-{i}"), 3).await;
        created.push(store.create_pending(job).await.expect("create").0);
        let other = setup_job_of(&store, "other", kind, &format!("J-{i}"), 3).await;
        store.create_pending(other).await.expect("create other");
    }
    let at = |i: usize| (created[i].tenant_id.clone(), created[i].job_id.clone());
    for i in [1, 2, 3, 4, 5, 7, 8, 10] {
        let (t, j) = at(i);
        applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    }
    for i in [2, 8] {
        let (t, j) = at(i);
        applied(store.complete(&t, &j, 1, &json!({"ok": i})).await.expect("complete"));
    }
    let due = Utc::now() + chrono::Duration::seconds(60);
    for (i, class) in [(3, ErrorClass::Invalid), (4, ErrorClass::Alert), (10, ErrorClass::Invalid)] {
        let (t, j) = at(i);
        applied(store.fail(&t, &j, AttemptFailure::new(1, class, "no")).await.expect("fail"));
    }
    for i in [5, 7] {
        let (t, j) = at(i);
        let failure = AttemptFailure::new(1, ErrorClass::Retryable, "later");
        applied(store.schedule_retry(&t, &j, failure, due).await.expect("retry"));
    }
    // Job 6 fails before it starts.
    let (t6, j6) = at(6);
    applied(
        store.fail(&t6, &j6, AttemptFailure::new(1, ErrorClass::Invalid, "bad input")).await.expect("fail"),
    );

    let mut all = Vec::new();
    for r in &created {
        all.push(store.get_job(&r.tenant_id, &r.job_id).await.expect("get").expect("present"));
    }
    all.reverse(); // newest first
    let (mid, late) = (all[6].created_at, all[2].created_at);
    let f = JobFilter::default;
    let filters = [
        f(),
        JobFilter { kind: Some("alpha".into()), ..f() },
        JobFilter { kind: Some("beta".into()), ..f() },
        JobFilter { kind: Some("delta".into()), ..f() },
        JobFilter { status: Some(JobStatus::Queued), ..f() },
        JobFilter { status: Some(JobStatus::Running), ..f() },
        JobFilter { status: Some(JobStatus::Completed), ..f() },
        JobFilter { status: Some(JobStatus::Failed), ..f() },
        JobFilter { error_class: Some(ErrorClass::Invalid), ..f() },
        JobFilter { error_class: Some(ErrorClass::Alert), ..f() },
        JobFilter { error_class: Some(ErrorClass::Retryable), ..f() },
        JobFilter { created_after: Some(mid), ..f() },
        JobFilter { created_before: Some(mid), ..f() },
        JobFilter { created_after: Some(mid), created_before: Some(late), ..f() },
        JobFilter { created_after: Some(late), created_before: Some(mid), ..f() },
        JobFilter { kind: Some("alpha".into()), status: Some(JobStatus::Failed), ..f() },
        JobFilter { kind: Some("beta".into()), error_class: Some(ErrorClass::Retryable), ..f() },
        JobFilter { status: Some(JobStatus::Failed), error_class: Some(ErrorClass::Invalid), ..f() },
        JobFilter { status: Some(JobStatus::Queued), error_class: Some(ErrorClass::Retryable), ..f() },
        JobFilter { kind: Some("gamma".into()), created_after: Some(mid), ..f() },
        JobFilter {
            kind: Some("alpha".into()),
            status: Some(JobStatus::Failed),
            error_class: Some(ErrorClass::Invalid),
            created_after: Some(all[11].created_at),
            created_before: Some(late),
            priority: Some(longhaul_core::Priority::Normal),
        },
    ];
    let mut nonempty = 0;
    for filter in &filters {
        let want: Vec<JobRecord> = all.iter().filter(|r| matches(filter, r)).cloned().collect();
        nonempty += usize::from(!want.is_empty());
        for limit in [1, 2, 5, 100] {
            let got = list_all(&store, &t, filter, limit).await;
            assert_eq!(ids(&got), ids(&want), "{filter:?}, {limit} a page");
        }
        // The records listed are the records as they stand.
        assert_eq!(list_all(&store, &t, filter, 100).await, want, "{filter:?}");
    }
    assert!(nonempty >= 17, "the filters select something: {nonempty}");
    // Spot checks, so the model above is not the only judge.
    let alpha = list_all(&store, &t, &JobFilter { kind: Some("alpha".into()), ..f() }, 100).await;
    assert_eq!(ids(&alpha), [9, 6, 3, 0].map(|i| created[i].job_id.clone()));
    let invalid = JobFilter { error_class: Some(ErrorClass::Invalid), ..f() };
    assert_eq!(
        ids(&list_all(&store, &t, &invalid, 100).await),
        [10, 6, 3].map(|i| created[i].job_id.clone())
    );
    let before = list_all(&store, &t, &JobFilter { created_before: Some(mid), ..f() }, 100).await;
    assert!(before.iter().all(|r| r.created_at < mid) && !before.iter().any(|r| r.job_id == all[6].job_id));
    let since = list_all(&store, &t, &JobFilter { created_after: Some(mid), ..f() }, 100).await;
    assert_eq!(since.last().map(|r| &r.job_id), Some(&all[6].job_id), "the lower bound is inclusive");
    // Another tenant's jobs of the same kinds are never listed.
    assert!(all.iter().all(|r| r.tenant_id == t));
    let other = list_all(&store, &tenant("other"), &f(), 100).await;
    assert_eq!(other.len(), 12);
    assert!(other.iter().all(|r| !created.iter().any(|c| c.job_id == r.job_id)));
});

conformance!(a_cursor_stays_put_while_new_jobs_arrive, |store: Store| async move {
    let t = tenant("pager");
    let alpha = JobFilter { kind: Some("alpha".into()), ..JobFilter::default() };
    let mut first = Vec::new();
    for i in 0..10 {
        let kind = if i % 3 == 2 { "beta" } else { "alpha" };
        let job = setup_job_of(&store, "pager", kind, &format!("old-{i}"), 3).await;
        let record = store.create_pending(job).await.expect("create").0;
        if kind == "alpha" {
            first.push(record.job_id);
        }
    }
    first.reverse();
    // Page through the alpha jobs three at a time; before each next page, new jobs of both kinds
    // arrive, one of them a duplicate request for a listed job (which creates nothing).
    let (mut seen, mut cursor, mut arrived) = (Vec::new(), None::<String>, Vec::new());
    let mut pages = 0;
    loop {
        let page = store.list_jobs(&t, &alpha, 3, cursor.as_deref()).await.expect("page");
        pages += 1;
        seen.extend(page.jobs.iter().map(|r| r.job_id.clone()));
        let Some(next) = page.next_cursor else { break };
        for kind in ["alpha", "beta"] {
            let job = setup_job_of(&store, "pager", kind, &format!("new-{pages}"), 3).await;
            let (record, created) = store.create_pending(job).await.expect("create");
            assert!(created);
            if kind == "alpha" {
                arrived.push(record.job_id);
            }
        }
        let again = setup_job_of(&store, "pager", "alpha", "old-0", 3).await;
        assert!(!store.create_pending(again).await.expect("duplicate").1);
        cursor = Some(next);
    }
    assert_eq!(pages, 3, "7 alpha jobs, 3 a page");
    assert_eq!(
        seen, first,
        "every job there was at the first page, once, newest first; none that came later"
    );
    // The cursor of a page names a position, not a job: it works for the same filter after any
    // number of inserts, and a listing from the top starts with what arrived, newest first.
    arrived.reverse();
    let top = store.list_jobs(&t, &alpha, 100, None).await.expect("top");
    assert_eq!(ids(&top.jobs), [arrived, first].concat());
    assert_eq!(top.next_cursor, None);
});

/// On PostgreSQL a selective filter reads through its index keyed by tenant — the tenant's jobs in
/// seq order, or those of its kind, status (by its phase, 0009) or error class — never the whole
/// table: the list statement planned with its values, as `list_jobs` runs it (uncached), over a
/// table of many tenants, one of them small. (An unselective filter on a large tenant may walk the
/// table newest first instead, filtering as it goes, which the limit keeps short.) A window of
/// creation time, read window first (as `list_jobs` reads one that many newer jobs follow), is read
/// through jobs_by_created (0007), the window of every tenant: only the window is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_plans_read_a_tenants_jobs_through_its_indexes() {
    const SELECT_PAGE: &str = include_str!("../../sql/common/jobs/select_page.sql");
    const WINDOW: &str = include_str!("../../sql/postgres/jobs/select_page_window.sql");
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
    // 20 tenants of about 1 000 jobs, one job in 401 of a rare kind and one in 101 failed, created
    // a second apart; and a small tenant of 100 jobs among them. Fewer rows than ANALYZE samples,
    // so the statistics, and the plans, are the same on every run.
    let fill = "
        INSERT INTO tenants (tenant_id, name, api_key_hash, created_at)
        SELECT 't' || i, 't', decode(md5(i::text), 'hex'), now() FROM generate_series(0, 20) i;
        INSERT INTO jobs (job_id, tenant_id, kind, job_key, input, status, progress, attempts, max_attempts,
                          error_class, created_at, updated_at)
        SELECT 'job_' || i, CASE WHEN i % 200 = 7 THEN 't20' ELSE 't' || (i % 20) END,
               CASE WHEN i % 401 = 0 THEN 'export' ELSE 'triage' END, 'k' || i, '{}',
               CASE WHEN i % 101 = 1 THEN 'failed' WHEN i % 211 = 5 THEN 'running' ELSE 'completed' END,
               100, 1, 3,
               CASE WHEN i % 101 = 1 THEN 'invalid' END,
               now() - make_interval(secs => 20000 - i), now()
        FROM generate_series(1, 20000) i;
        ANALYZE jobs;";
    sqlx::raw_sql(fill).execute(&pool).await.expect("fill");
    let window = Utc::now() - chrono::Duration::seconds(10000);
    let f = JobFilter::default;
    let cases = [
        (SELECT_PAGE, "t20", f(), &["jobs_by_tenant"][..]),
        (SELECT_PAGE, "t3", JobFilter { kind: Some("export".into()), ..f() }, &["jobs_by_tenant_kind"]),
        (SELECT_PAGE, "t3", JobFilter { status: Some(JobStatus::Failed), ..f() }, &["jobs_by_tenant_phase"]),
        // few live jobs in all: those of every tenant may be read as well
        (
            SELECT_PAGE,
            "t3",
            JobFilter { status: Some(JobStatus::Running), ..f() },
            &["jobs_by_tenant_phase", "jobs_live"],
        ),
        (
            SELECT_PAGE,
            "t3",
            JobFilter { error_class: Some(ErrorClass::Invalid), ..f() },
            &["jobs_by_tenant_error"],
        ),
        (
            WINDOW,
            "t3",
            JobFilter {
                created_after: Some(window),
                created_before: Some(window + chrono::Duration::seconds(600)),
                ..f()
            },
            &["jobs_by_created"],
        ),
    ];
    for (sql, tenant, filter, indexes) in cases {
        let explain = format!("EXPLAIN (FORMAT JSON) {sql}");
        let (plan,): (sqlx::types::Json<serde_json::Value>,) =
            sqlx::query_as(sqlx::AssertSqlSafe(explain.as_str()))
                .persistent(false)
                .bind(tenant)
                .bind(i64::MAX)
                .bind(21_i64)
                .bind(filter.kind.as_deref())
                .bind(status_filter(filter.status).1)
                .bind(filter.error_class.map(ErrorClass::as_str))
                .bind(filter.created_after)
                .bind(filter.created_before)
                .bind(filter.priority.map(longhaul_core::Priority::as_str))
                .bind(status_filter(filter.status).0)
                .fetch_one(&pool)
                .await
                .expect("explain");
        let text = plan.0.to_string();
        assert!(
            indexes.iter().any(|index| text.contains(&format!("\"Index Name\":\"{index}\""))),
            "{tenant} {filter:?}: {text}"
        );
        assert!(!text.contains("Seq Scan"), "{tenant} {filter:?}: {text}");
    }
    pool.close().await;
}
