//! PostgreSQL's HOT updates on a job's hot path (migration 0009): PostgreSQL updates a row in
//! place, adding no index entry, only when no column an index of the table names changes. No index
//! of `jobs` names a column that a start, a progress write or a cancel request changes (`phase`
//! stands for status in them), and no index of `operations` one that finishing or handing on an
//! operation changes — checked on the indexes' definitions, and on the table statistics of one
//! job's run, whose start and progress and whose operation's finish are HOT.

use std::collections::BTreeSet;
use std::time::Duration;

use longhaul_core::{JobContext, OperationId, Progress};
use longhaul_store::Store;
use longhaul_testkit::{Backend, TestDb, wait_until};
use serde_json::json;

use crate::harness::{applied, lease, setup_job};

/// The columns of `jobs` the writes between live statuses change: a start (status, attempts, the
/// attempt's start, stage, progress, next_attempt_at, started_at, updated_at, the lease), a
/// progress write, a cancel request of a running job, a retry's wait (these and error_message; and
/// error_class, which is indexed: a retry's wait is HOT only when the class recorded stays).
const JOBS_CHANGED: [&str; 12] = [
    "status",
    "attempts",
    "attempt_starts",
    "stage",
    "progress",
    "next_attempt_at",
    "started_at",
    "updated_at",
    "lease_entry",
    "lease_delivery",
    "error_message",
    "cancel_requested_at",
];
/// The columns of `operations` its finish and its hand-over to a later attempt change.
const OPERATIONS_CHANGED: [&str; 4] = ["state", "result", "attempt", "updated_at"];

/// Every identifier in the definitions of the indexes of `table` (key and INCLUDE columns,
/// predicates, expressions), with each index's definition for the message.
async fn indexed_names(store: &Store, table: &str) -> (BTreeSet<String>, Vec<String>) {
    let rows: Vec<(String,)> = store
        .db()
        .fetch_all(
            "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1",
            &[table.into()],
        )
        .await
        .expect("index definitions");
    let defs: Vec<String> = rows.into_iter().map(|(d,)| d).collect();
    let names = defs
        .iter()
        .flat_map(|d| d.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')))
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect();
    (names, defs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_no_index_names_a_column_the_hot_writes_change() {
    let db = TestDb::new(Backend::Postgres).await;
    let (names, defs) = indexed_names(&db, "jobs").await;
    assert!(names.contains("phase"), "the live jobs and the statuses are indexed by phase: {defs:#?}");
    for column in JOBS_CHANGED {
        assert!(!names.contains(column), "an index of jobs names {column}: {defs:#?}");
    }
    let (names, defs) = indexed_names(&db, "operations").await;
    assert!(names.contains("created_at"), "{defs:#?}");
    for column in OPERATIONS_CHANGED {
        assert!(!names.contains(column), "an index of operations names {column}: {defs:#?}");
    }
}

/// Updates of `table` so far, and how many of them were HOT, once the statistics show at least
/// `updates`: each backend sends its counts when it goes idle, at most a second later.
async fn updates(store: &Store, table: &str, updates: i64) -> (i64, i64) {
    wait_until(
        Duration::from_secs(30),
        &format!("the statistics of {updates} updates of {table}"),
        async || {
            let row: Option<(i64, i64)> = store
                .db()
                .fetch_optional(
                    "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = $1",
                    &[table.into()],
                )
                .await
                .expect("statistics");
            match row {
                Some((n, hot)) if n >= updates => Ok((n, hot)),
                other => Err(other),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_start_a_progress_write_and_an_operations_finish_are_hot_updates() {
    let db = TestDb::new(Backend::Postgres).await;
    let store: &Store = &db;
    let job = setup_job(store, "acme", "hot-1", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    let half = Progress::new(50).expect("progress");
    applied(store.record_progress(&t, &j, 1, "apply", half).await.expect("progress"));
    let ctx = JobContext { job_id: j.clone(), tenant_id: t.clone(), kind: job.kind.clone(), attempt: 1 };
    let op = OperationId::derive(&j, "apply", "notify");
    store.begin_operation(&ctx, &op, "apply", "notify").await.expect("begin");
    store.finish_operation(&t, &op, 1, &json!({"sent": true})).await.expect("finish");
    applied(store.complete(&t, &j, 1, &json!({"done": true})).await.expect("complete"));

    // The start and the progress write in place; the completion leaves the live phase, so it is
    // not HOT (jobs_live, jobs_finished and the others take its new version).
    assert_eq!(updates(store, "jobs", 3).await, (3, 2), "updates of jobs, of which HOT");
    assert_eq!(updates(store, "operations", 1).await, (1, 1), "updates of operations, of which HOT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_a_progress_write_its_completion_supersedes_in_a_batch_is_not_written_alone() {
    use longhaul_store::Write;
    let db = TestDb::new(Backend::Postgres).await;
    let store: &Store = &db;
    // Every row update of jobs leaves a row here (test instrumentation of this database).
    let longhaul_store::backend::Db::Postgres(pool) = store.db() else { panic!("PostgreSQL") };
    sqlx::raw_sql(
        "CREATE TABLE job_updates (seq BIGSERIAL PRIMARY KEY, job_id TEXT NOT NULL, stage TEXT);
         CREATE FUNCTION job_update() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO job_updates (job_id, stage) VALUES (NEW.job_id, NEW.stage); RETURN NULL; END $$;
         CREATE TRIGGER job_update AFTER UPDATE ON jobs FOR EACH ROW EXECUTE FUNCTION job_update();",
    )
    .execute(pool)
    .await
    .expect("trigger");
    let (a, b) = (setup_job(store, "acme", "fold-a", 3).await, setup_job(store, "acme", "fold-b", 3).await);
    for j in [&a, &b] {
        store.create_pending(j.clone()).await.expect("create");
        applied(store.start_next(&j.tenant_id, &j.job_id, lease("1-0", 1), 1).await.expect("start"));
    }
    let p = Progress::new(50).expect("progress");
    // a: progress and completion of attempt 1 (folded); b: progress of attempt 1 and a completion
    // of attempt 2, which is refused (not folded: the progress is written on its own).
    let progress = [(&a.tenant_id, &a.job_id, 1, "apply", p), (&b.tenant_id, &b.job_id, 1, "classify", p)];
    let complete = |j: &longhaul_core::NewJob, attempt| Write::Complete {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        attempt,
        output: json!({}),
    };
    let (applied_progress, outcomes) =
        store.write_batch(&progress, &[complete(&a, 1), complete(&b, 2)]).await.expect("batch");
    assert_eq!(applied_progress, [true, true]);
    let done = applied(outcomes.into_iter().next().expect("a").expect("a's completion"));
    assert_eq!((done.stage.as_deref(), done.progress), (Some("apply"), Progress::DONE));
    let updates = |job: &longhaul_core::JobId| {
        let job = job.as_str().to_owned();
        async move {
            let rows: Vec<(Option<String>,)> = store
                .db()
                .fetch_all(
                    "SELECT stage FROM job_updates WHERE job_id = $1 ORDER BY seq",
                    &[job.as_str().into()],
                )
                .await
                .expect("updates");
            rows.into_iter().map(|(s,)| s).collect::<Vec<_>>()
        }
    };
    // a: its start, then one update (the completion, with the stage); b: its start, its progress.
    assert_eq!(updates(&a.job_id).await, [None, Some("apply".to_owned())]);
    assert_eq!(updates(&b.job_id).await, [None, Some("classify".to_owned())]);
    let b_now = store.get_job(&b.tenant_id, &b.job_id).await.expect("b").expect("b");
    assert_eq!((b_now.status, b_now.stage.as_deref()), (longhaul_core::JobStatus::Running, Some("classify")));

    // c: a later delivery of its entry takes the job over between its progress and its completion,
    // so the batch is written one write at a time: the progress is written on its own, before the
    // start, and the completion of the superseded attempt is refused.
    let c = setup_job(store, "acme", "fold-c", 3).await;
    store.create_pending(c.clone()).await.expect("create");
    applied(store.start_next(&c.tenant_id, &c.job_id, lease("1-0", 1), 1).await.expect("start"));
    let takeover = Write::StartNext {
        tenant: c.tenant_id.clone(),
        job: c.job_id.clone(),
        lease: lease("1-0", 2),
        entry_attempt: 1,
    };
    let progress = [(&c.tenant_id, &c.job_id, 1, "check", p)];
    let (applied_progress, outcomes) =
        store.write_batch(&progress, &[takeover, complete(&c, 1)]).await.expect("batch");
    assert_eq!(applied_progress, [true], "written before the takeover");
    assert!(matches!(&outcomes[0], Ok(longhaul_store::WriteOutcome::Applied(r)) if r.attempts == 2));
    assert!(matches!(&outcomes[1], Ok(longhaul_store::WriteOutcome::Refused { .. })), "{:?}", outcomes[1]);
    assert_eq!(updates(&c.job_id).await, [None, Some("check".to_owned()), None]);
}

/// Sequential scans of `jobs` so far, once the statistics show at least `updates` updates of it:
/// a backend sends both counts of a table in one report, so the scans of every update counted are
/// counted too.
async fn seq_scans_by(store: &Store, updates: i64) -> i64 {
    wait_until(Duration::from_secs(30), &format!("the statistics of {updates} updates of jobs"), async || {
        let (n, scans): (i64, i64) = store
            .db()
            .fetch_optional("SELECT n_tup_upd, seq_scan FROM pg_stat_user_tables WHERE relname = 'jobs'", &[])
            .await
            .expect("statistics")
            .expect("jobs");
        if n >= updates { Ok(scans) } else { Err(n) }
    })
    .await
}

/// A plan cached while `jobs` was small must not go on scanning the whole table once it is large:
/// the batched starts, progress writes and completions, run many times on a new table (as a new
/// deployment's first jobs run), then once on a table of thousands of jobs, reach their rows
/// through an index.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_batched_writes_use_the_index_once_jobs_is_large() {
    use longhaul_store::{StoreOptions, Write};
    let db = TestDb::new(Backend::Postgres).await;
    let base = setup_job(&db, "acme", "plan-base", 3).await;
    // One connection runs everything from here on: it runs each statement often enough for a plan
    // to be cached (a generic plan is made at the sixth call), and it is the only backend whose
    // statistics can still arrive — the setup's connections send theirs as they close.
    let longhaul_store::backend::Db::Postgres(setup) = db.db() else { panic!("PostgreSQL") };
    setup.close().await;
    let one = StoreOptions { max_connections: 1, ..StoreOptions::default() };
    let store = &Store::connect(Some(&db.url), &one).await.expect("one-connection store");
    let job = |key: String| longhaul_core::NewJob {
        job_id: longhaul_core::JobId::derive(
            &base.tenant_id,
            &base.kind,
            &longhaul_core::JobKey::Derived(key.clone()),
        ),
        key,
        ..base.clone()
    };
    let start = |j: &longhaul_core::NewJob| Write::StartNext {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        lease: lease("1-0", 1),
        entry_attempt: 1,
    };
    let complete = |j: &longhaul_core::NewJob| Write::Complete {
        tenant: j.tenant_id.clone(),
        job: j.job_id.clone(),
        attempt: 1,
        output: json!({}),
    };
    let half = Progress::new(50).expect("progress");
    // A round: two new jobs, started in one batch, their progress written in another and completed
    // in a third (6 updates).
    let round = async |tag: String| {
        let pair = [job(format!("{tag}-a")), job(format!("{tag}-b"))];
        store
            .create_pending_many(pair.to_vec())
            .await
            .expect("create")
            .into_iter()
            .for_each(|r| drop(r.expect("new")));
        let (_, outcomes) =
            store.write_batch(&[], &pair.iter().map(start).collect::<Vec<_>>()).await.expect("starts");
        outcomes.into_iter().for_each(|o| drop(applied(o.expect("start"))));
        let progress: Vec<_> = pair.iter().map(|j| (&j.tenant_id, &j.job_id, 1, "apply", half)).collect();
        let (written, _) = store.write_batch(&progress, &[]).await.expect("progress");
        assert_eq!(written, [true, true], "progress of round {tag}");
        let (_, outcomes) = store
            .write_batch(&[], &pair.iter().map(complete).collect::<Vec<_>>())
            .await
            .expect("completions");
        outcomes.into_iter().for_each(|o| drop(applied(o.expect("completion"))));
    };
    let rounds = 20;
    for i in 0..rounds {
        round(format!("small-{i}")).await;
    }
    let grown: Vec<_> = (0..4000).map(|i| job(format!("bulk-{i}"))).collect();
    for chunk in grown.chunks(1000) {
        for created in store.create_pending_many(chunk.to_vec()).await.expect("bulk create") {
            assert!(created.expect("each").1, "every job is new");
        }
    }
    let before = seq_scans_by(store, 6 * rounds).await;
    round("large".to_owned()).await;
    let after = seq_scans_by(store, 6 * rounds + 6).await;
    assert_eq!(after, before, "the batched writes on a table of 4 000 jobs scanned it whole");
}
