//! Migrations over data: a job recorded by the schema before job kinds (migrations up to 0003,
//! written with that schema's own SQL) reads after 0004 as a triage job, with its input and key,
//! and keeps its id and its place in the order. 0011 removes the started operations of jobs pruned
//! before it.

use longhaul_core::{JobId, JobKey, JobStatus, NewJob, OperationId, OperationState, TenantId};
use longhaul_store::{JobFilter, Store};
use longhaul_testkit::{Backend, TestDb};
use serde_json::json;

/// A tenant and a job of ticket `T-7` revision 2 as the schema of 0003 stored them (retried once
/// and now waiting, so every kind of column has a value), and an `enqueued` audit row.
const OLD_ROWS: &str = "
INSERT INTO tenants (tenant_id, name, api_key_hash, webhook_url, created_at)
VALUES ('acme', 'Acme', '\\x00', NULL, '2025-01-02T03:04:05.123456+00:00');
INSERT INTO jobs (job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts,
                  max_attempts, next_attempt_at, output, error_message, error_class, created_at,
                  updated_at, started_at, finished_at, lease_entry, lease_delivery)
VALUES ('job_0123456789abcdef0123456789abcdef', 'acme', 'T-7', 2, 'queued', NULL, 0, 1, 3,
        '2025-01-02T03:05:00+00:00', NULL, 'provider timed out', 'retryable',
        '2025-01-02T03:04:05.123456+00:00', '2025-01-02T03:04:06+00:00', '2025-01-02T03:04:05.5+00:00',
        NULL, '1-0', 1);
INSERT INTO jobs (job_id, tenant_id, ticket_id, ticket_revision, status, stage, progress, attempts,
                  max_attempts, next_attempt_at, output, error_message, error_class, created_at,
                  updated_at, started_at, finished_at, lease_entry, lease_delivery)
VALUES ('job_ffffffffffffffffffffffffffffffff', 'acme', 'SUP-1', 1, 'completed', 'apply', 100, 1, 3,
        NULL, '{\"category\": \"bug\"}', NULL, NULL,
        '2025-01-02T03:04:07+00:00', '2025-01-02T03:04:08+00:00', '2025-01-02T03:04:07+00:00',
        '2025-01-02T03:04:08+00:00', NULL, NULL);
";

/// Runs the store's migrations up to `version` on `db`, as a binary of that version would, then
/// `rows` (SQL of that schema).
async fn migrate_to(db: &TestDb, kind: Backend, version: i64, rows: &str) {
    match kind {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
            sqlx::migrate!("../../migrations/postgres").run_to(version, &pool).await.expect("migrate");
            sqlx::raw_sql(sqlx::AssertSqlSafe(rows)).execute(&pool).await.expect("rows of the old schema");
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
            sqlx::migrate!("../../migrations/sqlite").run_to(version, &pool).await.expect("migrate");
            sqlx::raw_sql(sqlx::AssertSqlSafe(rows)).execute(&pool).await.expect("rows of the old schema");
            pool.close().await;
        }
    }
}

async fn jobs_before_kinds_read_as_triage_jobs(kind: Backend) {
    let db = TestDb::unmigrated(kind).await;
    migrate_to(&db, kind, 3, OLD_ROWS).await;
    let store: &Store = &db;
    store.migrate().await.expect("0004");

    let acme = TenantId::parse("acme").expect("tenant");
    let old = JobId::parse("job_0123456789abcdef0123456789abcdef").expect("id");
    let r = store.get_job(&acme, &old).await.expect("get").expect("the job is still there");
    assert_eq!(r.kind, "triage", "{kind:?}");
    assert_eq!(r.key.as_deref(), Some("T-7@2"), "{kind:?}");
    assert_eq!(r.input, json!({"ticket_id": "T-7", "revision": 2}), "{kind:?}");
    // Nothing else moved.
    assert_eq!((r.status, r.attempts, r.max_attempts), (JobStatus::Queued, 1, 3));
    assert_eq!(r.error_message.as_deref(), Some("provider timed out"));
    assert_eq!(r.created_at.to_rfc3339(), "2025-01-02T03:04:05.123456+00:00");
    assert_eq!(r.lease.map(|l| (l.entry, l.delivery)), Some(("1-0".to_owned(), 1)));
    let done = JobId::parse("job_ffffffffffffffffffffffffffffffff").expect("id");
    let d = store.get_job(&acme, &done).await.expect("get").expect("present");
    assert_eq!((d.kind.as_str(), d.key.as_deref()), ("triage", Some("SUP-1@1")));
    assert_eq!(
        (d.input, d.output),
        (json!({"ticket_id": "SUP-1", "revision": 1}), Some(json!({"category": "bug"})))
    );

    // Their order and seq are kept: a job recorded now lists before them, and a cursor issued
    // below the new job pages through the old ones.
    let new = NewJob {
        job_id: JobId::derive(&acme, "export", &JobKey::Derived("e-1".into())),
        tenant_id: acme.clone(),
        kind: "export".into(),
        key: "e-1".into(),
        input: json!({"format": "csv"}),
        max_attempts: 3,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    };
    store.create_pending(new.clone()).await.expect("a job of a new kind");
    let page = store.list_jobs(&acme, &JobFilter::default(), 1, None).await.expect("list");
    assert_eq!(page.jobs[0].job_id, new.job_id);
    let rest =
        store.list_jobs(&acme, &JobFilter::default(), 10, page.next_cursor.as_deref()).await.expect("list");
    assert_eq!(rest.jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(), [done.clone(), old.clone()]);
    let triage = JobFilter { kind: Some("triage".into()), ..JobFilter::default() };
    assert_eq!(store.list_jobs(&acme, &triage, 10, None).await.expect("list").jobs.len(), 2);
    store.migrate().await.expect("migrating again is a no-op");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_before_kinds_read_as_triage_jobs_sqlite() {
    jobs_before_kinds_read_as_triage_jobs(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_before_kinds_read_as_triage_jobs_postgres() {
    jobs_before_kinds_read_as_triage_jobs(Backend::Postgres).await;
}

/// Operations as 0010 left them, of `job_0…0` (the job of OLD_ROWS, kept: one started by its
/// attempt 1, one by attempt 4 of an earlier life of its id) and of `job_e…e` (pruned, its step
/// `open` still started by its last attempt and its step `sent` done).
fn operations_0010(
    kept: &OperationId,
    open: &OperationId,
    sent: &OperationId,
    older: &OperationId,
) -> String {
    format!(
        "INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result,
                                 created_at, updated_at)
         VALUES ('{kept}', 'acme', 'job_0123456789abcdef0123456789abcdef', 'apply', 'webhook', 'started', 1,
                 NULL, '2025-01-02T03:04:06+00:00', '2025-01-02T03:04:06+00:00'),
                ('{open}', 'acme', 'job_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'apply', 'open', 'started', 3,
                 NULL, '2025-01-02T03:04:06+00:00', '2025-01-02T03:04:06+00:00'),
                ('{sent}', 'acme', 'job_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', 'apply', 'sent', 'done', 3,
                 '{{\"sent\": 1}}', '2025-01-02T03:04:06+00:00', '2025-01-02T03:04:06+00:00'),
                ('{older}', 'acme', 'job_0123456789abcdef0123456789abcdef', 'apply', 'older', 'started', 4,
                 NULL, '2025-01-01T03:04:06+00:00', '2025-01-01T03:04:06+00:00');",
        kept = kept.as_str(),
        open = open.as_str(),
        sent = sent.as_str(),
        older = older.as_str(),
    )
}

/// 0011 removes the started operations an earlier life of their job id left (the record pruned, or
/// created again with fewer attempts than their owner) and keeps done ones and this life's.
async fn orphan_started_operations_go(kind: Backend) {
    let (kept_job, pruned_job) = (
        JobId::parse("job_0123456789abcdef0123456789abcdef").expect("id"),
        JobId::parse("job_eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee").expect("id"),
    );
    let kept = OperationId::derive(&kept_job, "apply", "webhook");
    let (open, sent) = (
        OperationId::derive(&pruned_job, "apply", "open"),
        OperationId::derive(&pruned_job, "apply", "sent"),
    );
    let older = OperationId::derive(&kept_job, "apply", "older");
    let db = TestDb::unmigrated(kind).await;
    migrate_to(&db, kind, 3, OLD_ROWS).await;
    migrate_to(&db, kind, 10, &operations_0010(&kept, &open, &sent, &older)).await;
    let store: &Store = &db;
    store.migrate().await.expect("0011");
    let acme = TenantId::parse("acme").expect("tenant");
    let state = async |op: &OperationId| store.get_operation(&acme, op).await.expect("get");
    assert_eq!(state(&open).await, None, "{kind:?}");
    assert_eq!(state(&sent).await, Some(OperationState::Done { result: json!({"sent": 1}) }), "{kind:?}");
    assert_eq!(state(&kept).await, Some(OperationState::Started { attempt: 1 }), "{kind:?}");
    assert_eq!(state(&older).await, None, "above the record's attempts: {kind:?}");
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphan_started_operations_go_sqlite() {
    orphan_started_operations_go(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn orphan_started_operations_go_postgres() {
    orphan_started_operations_go(Backend::Postgres).await;
}
