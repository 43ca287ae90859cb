//! Retention on both backends: pruning deletes exactly the finished jobs older than the cutoff with
//! their audit rows, the audit rows of no job, and the old operations of no live job, in batches,
//! oldest first — and keeps live jobs and recent ones. Task leases: of holders racing from two
//! stores exactly one wins; a holder extends its own lease; an expired lease is taken over.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobContext, JobId, JobStatus, NewJob, OperationId, TenantId};
use longhaul_store::backend::Arg;
use longhaul_store::{AttemptFailure, Pruned, Store, StoreOptions};
use longhaul_testkit::{Backend, TestDb};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job};

/// Defines a test that runs on SQLite and on PostgreSQL with the [`TestDb`] (its URL opens a second
/// store on the same database).
macro_rules! on_both_dbs {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let db = TestDb::new(Backend::Sqlite).await;
                ($body)(&db).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let db = TestDb::new(Backend::Postgres).await;
                ($body)(&db).await;
            }
        }
    };
}

fn days_ago(days: i64) -> DateTime<Utc> {
    longhaul_store::now() - chrono::Duration::days(days)
}

/// Backdates a job's finish (and its audit rows) to `at`.
async fn finished_at(store: &Store, job: &JobId, at: DateTime<Utc>) {
    let args: [Arg<'_>; 2] = [at.into(), job.as_str().into()];
    let n = store
        .db()
        .execute("UPDATE jobs SET finished_at = $1 WHERE job_id = $2", &args)
        .await
        .expect("update");
    assert_eq!(n, 1, "job {job} backdated");
    store.db().execute("UPDATE audit_log SET at = $1 WHERE job_id = $2", &args).await.expect("audit");
}

/// A job of `tenant` keyed `key` brought to `status` (a running one started, a finished one run
/// once).
async fn job_in(store: &Store, key: &str, status: JobStatus) -> NewJob {
    let job = setup_job(store, "acme", key, 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    if status == JobStatus::Queued {
        return job;
    }
    if status == JobStatus::Cancelled {
        applied(store.cancel(&t, &j, "tenant").await.expect("cancel"));
        return job;
    }
    applied(store.start_next(&t, &j, lease(&format!("{key}-0"), 1), 1).await.expect("start"));
    match status {
        JobStatus::Completed => {
            applied(store.complete(&t, &j, 1, &json!({"ok": true})).await.expect("complete"));
        }
        JobStatus::Failed => {
            let failure = AttemptFailure::new(1, ErrorClass::Invalid, "bad input");
            applied(store.fail(&t, &j, failure).await.expect("fail"));
        }
        _ => {}
    }
    job
}

/// The audit rows one start writes: one on SQLite; none on PostgreSQL, which keeps each attempt's
/// start in the record.
fn start_rows(store: &Store) -> u64 {
    match store.kind() {
        longhaul_store::BackendKind::Postgres => 0,
        longhaul_store::BackendKind::Sqlite => 1,
    }
}

async fn exists(store: &Store, job: &NewJob) -> bool {
    store.get_job(&job.tenant_id, &job.job_id).await.expect("read").is_some()
}

async fn audit_count(store: &Store, job: &NewJob) -> usize {
    store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit").len()
}

/// The rows `audit_log` holds for `job` (its trail's `enqueued` and `completed` are read from the
/// record, not stored).
async fn stored_audit(store: &Store, job: &NewJob) -> i64 {
    let args: [Arg<'_>; 1] = [job.job_id.as_str().into()];
    let row: Option<(i64,)> = store
        .db()
        .fetch_optional("SELECT COUNT(*) FROM audit_log WHERE job_id = $1", &args)
        .await
        .expect("count");
    row.map_or(0, |r| r.0)
}

/// Audit rows of no job, as a service appends them.
async fn count_jobless_audit(store: &Store) -> i64 {
    let row: Option<(i64,)> = store
        .db()
        .fetch_optional("SELECT COUNT(*) FROM audit_log WHERE job_id IS NULL", &[])
        .await
        .expect("count");
    row.map_or(0, |r| r.0)
}

conformance!(pruning_deletes_exactly_the_old_finished_jobs_and_their_audit, |store: Store| async move {
    let cutoff = days_ago(7);
    let mut old = Vec::new();
    for (key, status) in [
        ("old-done", JobStatus::Completed),
        ("old-failed", JobStatus::Failed),
        ("old-cancelled", JobStatus::Cancelled),
    ] {
        let job = job_in(&store, key, status).await;
        finished_at(&store, &job.job_id, days_ago(8)).await;
        assert!(audit_count(&store, &job).await >= 2);
        // A completed job's trail is all its record's on PostgreSQL (starts included).
        let rows = if start_rows(&store) == 0 && status == JobStatus::Completed { 0 } else { 1 };
        assert!(stored_audit(&store, &job).await >= rows);
        old.push(job);
    }
    let recent = job_in(&store, "recent-done", JobStatus::Completed).await;
    finished_at(&store, &recent.job_id, days_ago(6)).await;
    // Live jobs with old audit rows are never touched, nor are their audit rows (the queued one's
    // row: a duplicate request's).
    let queued = job_in(&store, "queued", JobStatus::Queued).await;
    store.create_pending(queued.clone()).await.expect("duplicate");
    let running = job_in(&store, "running", JobStatus::Running).await;
    for live in [&queued, &running] {
        let args: [Arg<'_>; 2] = [days_ago(30).into(), live.job_id.as_str().into()];
        store.db().execute("UPDATE audit_log SET at = $1 WHERE job_id = $2", &args).await.expect("age");
    }
    // A live job written to look finished long ago (its status says live) is kept too.
    let args: [Arg<'_>; 2] = [days_ago(30).into(), running.job_id.as_str().into()];
    store.db().execute("UPDATE jobs SET finished_at = $1 WHERE job_id = $2", &args).await.expect("odd");
    // Audit rows of no job: an old one goes, a recent one stays.
    let t = TenantId::parse("acme").expect("tenant");
    store.append_audit(&t, None, "note", &json!({"n": 1})).await.expect("append");
    let args: [Arg<'_>; 1] = [days_ago(9).into()];
    store.db().execute("UPDATE audit_log SET at = $1 WHERE job_id IS NULL", &args).await.expect("age it");
    store.append_audit(&t, None, "note", &json!({"n": 2})).await.expect("append");

    let mut kept_rows = Vec::new();
    for job in [&recent, &queued, &running] {
        kept_rows.push(stored_audit(&store, job).await);
    }
    let pruned = store.prune(cutoff, days_ago(30), 100).await.expect("prune");
    assert_eq!(pruned.jobs, 3, "{pruned:?}");
    assert!(!pruned.more);
    for job in &old {
        assert!(!exists(&store, job).await, "{} pruned", job.key);
        assert_eq!(stored_audit(&store, job).await, 0, "{}'s audit rows pruned", job.key);
        assert_eq!(audit_count(&store, job).await, 0, "{}'s trail is gone", job.key);
    }
    for (job, rows) in [&recent, &queued, &running].into_iter().zip(kept_rows) {
        assert!(exists(&store, job).await, "{} kept", job.key);
        assert_eq!(stored_audit(&store, job).await, rows, "{}'s audit rows kept", job.key);
        assert!(audit_count(&store, job).await >= 2, "{}'s trail kept", job.key);
    }
    assert!(stored_audit(&store, &queued).await >= 1, "the duplicate request's row");
    assert_eq!(count_jobless_audit(&store).await, 1, "the recent note is kept");
    // The rows: started; started, failed; cancelled (enqueued and completed are the records', and
    // on PostgreSQL the starts too).
    let audit_of_old: u64 = start_rows(&store) + (start_rows(&store) + 1) + 1;
    assert_eq!(pruned.audit_rows, audit_of_old + 1, "their rows and the old note: {pruned:?}");
    // Nothing left: a second round deletes nothing.
    assert_eq!(store.prune(cutoff, days_ago(30), 100).await.expect("again"), Pruned::default());
});

conformance!(pruning_goes_in_batches_oldest_first, |store: Store| async move {
    let mut jobs = Vec::new();
    for i in 0..5_i64 {
        let job = job_in(&store, &format!("b-{i}"), JobStatus::Completed).await;
        // b-4 finished first (oldest), b-0 last.
        finished_at(&store, &job.job_id, days_ago(10 + i)).await;
        jobs.push(job);
    }
    let first = store.prune(days_ago(7), days_ago(30), 2).await.expect("first batch");
    // Each completed job has one audit row, its start — on SQLite; none on PostgreSQL.
    assert_eq!((first.jobs, first.audit_rows, first.more), (2, 2 * start_rows(&store), true));
    let kept: Vec<bool> = futures::future::join_all(jobs.iter().map(|j| exists(&store, j))).await;
    assert_eq!(kept, [true, true, true, false, false], "the two oldest went first");
    let second = store.prune(days_ago(7), days_ago(30), 2).await.expect("second batch");
    assert_eq!((second.jobs, second.more), (2, true));
    let third = store.prune(days_ago(7), days_ago(30), 2).await.expect("third batch");
    assert_eq!((third.jobs, third.more), (1, false));
    for job in &jobs {
        assert!(!exists(&store, job).await);
    }
    // A batch of 0 is clamped to 1, not an endless no-op.
    let one = job_in(&store, "b-zero", JobStatus::Completed).await;
    finished_at(&store, &one.job_id, days_ago(10)).await;
    assert_eq!(store.prune(days_ago(7), days_ago(30), 0).await.expect("zero").jobs, 1);
});

conformance!(operations_are_kept_longer_and_never_those_of_a_live_job, |store: Store| async move {
    let log_op = async |job: &NewJob, effect: &str, at: DateTime<Utc>| {
        let ctx = JobContext {
            job_id: job.job_id.clone(),
            tenant_id: job.tenant_id.clone(),
            kind: job.kind.clone(),
            attempt: 1,
        };
        let op = OperationId::derive(&job.job_id, "apply", effect);
        store.begin_operation(&ctx, &op, "apply", effect).await.expect("begin");
        store.finish_operation(&job.tenant_id, &op, 1, &json!({"sent": effect})).await.expect("finish");
        let args: [Arg<'_>; 2] = [at.into(), op.as_str().into()];
        store
            .db()
            .execute("UPDATE operations SET created_at = $1, updated_at = $1 WHERE operation_id = $2", &args)
            .await
            .expect("age");
        op
    };
    let done = job_in(&store, "ops-done", JobStatus::Completed).await;
    let very_old = log_op(&done, "very-old", days_ago(40)).await;
    let old = log_op(&done, "old", days_ago(20)).await;
    // Begun long ago, last written (handed to a later attempt) within the cutoff: kept.
    let handed_on = log_op(&done, "handed-on", days_ago(40)).await;
    let args: [Arg<'_>; 2] = [days_ago(20).into(), handed_on.as_str().into()];
    store
        .db()
        .execute("UPDATE operations SET updated_at = $1 WHERE operation_id = $2", &args)
        .await
        .expect("age");
    finished_at(&store, &done.job_id, days_ago(20)).await;
    let running = job_in(&store, "ops-live", JobStatus::Running).await;
    let live_op = log_op(&running, "live", days_ago(40)).await;
    // A job that ran long ago and finished recently: its record is kept, and so are its steps,
    // however old — a retry of it must find them done.
    let recent = job_in(&store, "ops-recent", JobStatus::Completed).await;
    let recent_op = log_op(&recent, "early-step", days_ago(40)).await;
    finished_at(&store, &recent.job_id, days_ago(1)).await;

    let pruned = store.prune(days_ago(7), days_ago(30), 100).await.expect("prune");
    assert_eq!((pruned.jobs, pruned.operations), (1, 1), "{pruned:?}");
    let state =
        async |job: &NewJob, op: &OperationId| store.get_operation(&job.tenant_id, op).await.expect("get");
    assert_eq!(state(&done, &very_old).await, None, "past the operations' cutoff");
    // The record is gone, its operation is kept: a resubmission under the same id reuses it.
    assert!(state(&done, &old).await.is_some(), "within the operations' cutoff");
    assert!(state(&done, &handed_on).await.is_some(), "last written within the operations' cutoff");
    assert!(state(&running, &live_op).await.is_some(), "a live job's operation is kept");
    assert!(state(&recent, &recent_op).await.is_some(), "a kept record's operation is kept");
    store.create_pending(done.clone()).await.expect("resubmit");
    assert_eq!(
        state(&done, &old).await,
        Some(longhaul_core::OperationState::Done { result: json!({"sent": "old"}) })
    );
});

/// `n` holders, half through each store, ask for lease `name` at once; returns who got it.
/// Writes operation `op` (stage `apply`, effect `effect`) as a step an earlier life of `job` left
/// started by attempt `attempt`, nine days ago.
async fn old_life_step(store: &Store, job: &NewJob, op: &OperationId, effect: &str, attempt: i32) {
    let args: [Arg<'_>; 6] = [
        op.as_str().into(),
        job.tenant_id.as_str().into(),
        job.job_id.as_str().into(),
        effect.into(),
        attempt.into(),
        days_ago(9).into(),
    ];
    let insert = "INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt,
                                          result, created_at, updated_at)
                  VALUES ($1, $2, $3, 'apply', $4, 'started', $5, NULL, $6, $6)";
    store.db().execute(insert, &args).await.expect("an old life's step");
}

async fn race(stores: [&Store; 2], name: &str, n: usize) -> Vec<String> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let tasks = (0..n).map(|i| {
        let (store, barrier, name) = (stores[i % 2].clone(), barrier.clone(), name.to_owned());
        tokio::spawn(async move {
            let holder = format!("holder-{i}");
            barrier.wait().await;
            store
                .acquire_task_lease(&name, &holder, Duration::from_secs(60))
                .await
                .expect("acquire")
                .then_some(holder)
        })
    });
    futures::future::join_all(tasks).await.into_iter().filter_map(|r| r.expect("task")).collect()
}

async fn expire(store: &Store, name: &str) {
    let args: [Arg<'_>; 2] = [days_ago(1).into(), name.into()];
    let n = store
        .db()
        .execute("UPDATE task_leases SET expires_at = $1 WHERE name = $2", &args)
        .await
        .expect("expire");
    assert_eq!(n, 1);
}

on_both_dbs!(holders_racing_from_two_stores_get_one_lease, async |db: &TestDb| {
    let other = Store::connect(Some(&db.url), &StoreOptions::default()).await.expect("second store");
    for round in 0..10 {
        let name = format!("task-{round}");
        let winners = race([&db.store, &other], &name, 8).await;
        assert_eq!(winners.len(), 1, "round {round} free lease: {winners:?}");
        let lease = db.task_lease(&name).await.expect("read").expect("held");
        assert_eq!(lease.holder, winners[0]);
        // Expired, it is raced for again: again exactly one wins.
        expire(&db.store, &name).await;
        let winners = race([&db.store, &other], &name, 8).await;
        assert_eq!(winners.len(), 1, "round {round} expired lease: {winners:?}");
    }
    other.close().await;
});

conformance!(a_holder_extends_its_lease_and_an_expired_one_is_taken_over, |store: Store| async move {
    let hour = Duration::from_secs(3600);
    assert!(store.acquire_task_lease("pruner", "a", hour).await.expect("a takes"));
    let first = store.task_lease("pruner").await.expect("read").expect("held").expires_at;
    assert!(!store.acquire_task_lease("pruner", "b", hour).await.expect("b refused"));
    assert!(store.acquire_task_lease("pruner", "a", hour).await.expect("a extends"));
    let second = store.task_lease("pruner").await.expect("read").expect("held");
    assert_eq!(second.holder, "a");
    assert!(second.expires_at > first, "extended: {first} → {}", second.expires_at);
    // Another task's lease is another row.
    assert!(store.acquire_task_lease("other", "b", hour).await.expect("b takes another task"));

    // a stops extending: once expired, b takes it, and a can neither extend nor release it.
    expire(&store, "pruner").await;
    assert!(store.acquire_task_lease("pruner", "b", hour).await.expect("b takes over"));
    assert!(!store.acquire_task_lease("pruner", "a", hour).await.expect("a lost it"));
    assert!(!store.release_task_lease("pruner", "a").await.expect("a cannot release"));
    assert_eq!(store.task_lease("pruner").await.expect("read").expect("held").holder, "b");
    // Released, it is free at once.
    assert!(store.release_task_lease("pruner", "b").await.expect("b releases"));
    assert_eq!(store.task_lease("pruner").await.expect("read"), None);
    assert!(store.acquire_task_lease("pruner", "c", hour).await.expect("c takes"));
});

conformance!(
    a_pruned_jobs_started_steps_go_with_it_and_a_resubmission_begins_them_anew,
    |store: Store| async move {
        // The job's third and last attempt began two steps; one finished, the other's effect failed.
        let job = job_in(&store, "ops-life", JobStatus::Failed).await;
        let ctx = |attempt| JobContext {
            job_id: job.job_id.clone(),
            tenant_id: job.tenant_id.clone(),
            kind: job.kind.clone(),
            attempt,
        };
        let (done_op, open_op) = (
            OperationId::derive(&job.job_id, "apply", "sent"),
            OperationId::derive(&job.job_id, "apply", "open"),
        );
        store.begin_operation(&ctx(3), &done_op, "apply", "sent").await.expect("begin");
        store.finish_operation(&job.tenant_id, &done_op, 3, &json!({"sent": 1})).await.expect("finish");
        store.begin_operation(&ctx(3), &open_op, "apply", "open").await.expect("begin");
        finished_at(&store, &job.job_id, days_ago(10)).await;

        let pruned = store.prune(days_ago(7), days_ago(30), 100).await.expect("prune");
        assert_eq!((pruned.jobs, pruned.operations), (1, 1), "the record and its started step: {pruned:?}");
        assert_eq!(store.get_operation(&job.tenant_id, &open_op).await.expect("get"), None);

        // A resubmission under the same id is a new life: its attempt 1 finds the unfinished step new
        // (not owned by the old life's attempt 3) and finishes it; the finished one is reused.
        store.create_pending(job.clone()).await.expect("resubmit");
        assert_eq!(
            store.begin_operation(&ctx(1), &open_op, "apply", "open").await.expect("begin anew"),
            None
        );
        store
            .finish_operation(&job.tenant_id, &open_op, 1, &json!({"opened": 1}))
            .await
            .expect("finish anew");
        assert_eq!(
            store.get_operation(&job.tenant_id, &open_op).await.expect("get"),
            Some(longhaul_core::OperationState::Done { result: json!({"opened": 1}) })
        );
        assert_eq!(
            store.begin_operation(&ctx(1), &done_op, "apply", "sent").await.expect("begin done"),
            Some(longhaul_core::OperationState::Done { result: json!({"sent": 1}) })
        );

        // A step the old life left started that pruning did not remove (a pruner of an older
        // release) is taken over by the new life's attempt 1, since the record has started fewer
        // attempts than its owner; attempt 1 then finishes it.
        let left = OperationId::derive(&job.job_id, "apply", "left");
        old_life_step(&store, &job, &left, "left", 3).await;
        let args: [Arg<'_>; 1] = [job.job_id.as_str().into()];
        store.db().execute("UPDATE jobs SET attempts = 1 WHERE job_id = $1", &args).await.expect("started");
        assert_eq!(
            store.begin_operation(&ctx(1), &left, "apply", "left").await.expect("take over"),
            Some(longhaul_core::OperationState::Started { attempt: 3 })
        );
        // The old life's attempt 3, still running, finishes late: superseded, not corruption,
        // and the step stays the new life's.
        assert!(matches!(
            store.finish_operation(&job.tenant_id, &left, 3, &json!({"old": 3})).await,
            Err(longhaul_store::StoreError::Superseded(1))
        ));
        assert_eq!(
            store.get_operation(&job.tenant_id, &left).await.expect("get"),
            Some(longhaul_core::OperationState::Started { attempt: 1 })
        );
        store.finish_operation(&job.tenant_id, &left, 1, &json!({"left": 1})).await.expect("finish");
        assert_eq!(
            store.get_operation(&job.tenant_id, &left).await.expect("get"),
            Some(longhaul_core::OperationState::Done { result: json!({"left": 1}) })
        );

        // An attempt of the old life still running (above the record's attempts) cannot take a
        // step of the new life back.
        let step = OperationId::derive(&job.job_id, "apply", "step");
        assert_eq!(store.begin_operation(&ctx(1), &step, "apply", "step").await.expect("begin"), None);
        assert!(matches!(
            store.begin_operation(&ctx(5), &step, "apply", "step").await,
            Err(longhaul_store::StoreError::Superseded(1))
        ));
        assert_eq!(
            store.get_operation(&job.tenant_id, &step).await.expect("get"),
            Some(longhaul_core::OperationState::Started { attempt: 1 })
        );
        // Within the new life, a finish by a later attempt that never began the step is
        // corruption, not a late finish of an earlier life.
        let args: [Arg<'_>; 1] = [job.job_id.as_str().into()];
        store.db().execute("UPDATE jobs SET attempts = 2 WHERE job_id = $1", &args).await.expect("attempt 2");
        let err =
            store.finish_operation(&job.tenant_id, &step, 2, &json!({})).await.expect_err("never began");
        assert!(matches!(err, longhaul_store::StoreError::Corrupt { .. }), "{err:?}");
        store.db().execute("UPDATE jobs SET attempts = 1 WHERE job_id = $1", &args).await.expect("attempt 1");
        // Nor can it take over a step its own life left started by another of its attempts.
        let stray = OperationId::derive(&job.job_id, "apply", "stray");
        old_life_step(&store, &job, &stray, "stray", 6).await;
        assert!(matches!(
            store.begin_operation(&ctx(5), &stray, "apply", "stray").await,
            Err(longhaul_store::StoreError::Superseded(6))
        ));
        assert_eq!(
            store.get_operation(&job.tenant_id, &stray).await.expect("get"),
            Some(longhaul_core::OperationState::Started { attempt: 6 })
        );
    }
);
