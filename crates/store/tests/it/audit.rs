//! Jobs' audit trails on both backends: `enqueued` and `completed` are read from the record, never
//! stored as rows, and so is each attempt's `started` on PostgreSQL (a row on SQLite); every other
//! event is a row, in the order appended, and the trail reads the same as if all were rows.

use chrono::Duration;
use longhaul_core::{JobStatus, NewJob, Priority};
use longhaul_store::backend::Arg;
use longhaul_store::{BackendKind, Store};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job};

/// The rows `audit_log` holds for `job`, as (action, detail), in the order appended.
async fn stored(store: &Store, job: &NewJob) -> Vec<(String, serde_json::Value)> {
    let args: [Arg<'_>; 1] = [job.job_id.as_str().into()];
    let rows: Vec<(String, sqlx::types::Json<serde_json::Value>)> = store
        .db()
        .fetch_all("SELECT action, detail FROM audit_log WHERE job_id = $1 ORDER BY seq", &args)
        .await
        .expect("rows");
    rows.into_iter().map(|(a, d)| (a, d.0)).collect()
}

/// The `started` rows a backend stores for attempts `attempts`: none on PostgreSQL, which keeps
/// each attempt's start in the record; one per attempt on SQLite.
fn started_rows(store: &Store, attempts: &[u32]) -> Vec<(String, serde_json::Value)> {
    match store.kind() {
        BackendKind::Postgres => Vec::new(),
        BackendKind::Sqlite => {
            attempts.iter().map(|a| ("started".to_owned(), json!({"attempt": a}))).collect()
        }
    }
}

/// `job`'s trail as (action, the attempt its detail names).
async fn by_attempt(store: &Store, job: &NewJob) -> Vec<(String, Option<serde_json::Value>)> {
    let audit = store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit");
    audit.into_iter().map(|e| (e.action, e.detail.get("attempt").cloned())).collect()
}

async fn actions(store: &Store, job: &NewJob) -> Vec<String> {
    let audit = store.job_audit(&job.tenant_id, &job.job_id).await.expect("audit");
    audit.into_iter().map(|e| e.action).collect()
}

conformance!(enqueued_and_completed_are_read_from_the_record, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-trail", 3).await;
    let run_at = longhaul_store::now() + Duration::minutes(30);
    let job = NewJob { run_at: Some(run_at), priority: Priority::High, ..job };
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    let created = store.create_pending(job.clone()).await.expect("create").0;
    assert!(stored(&store, &job).await.is_empty(), "creating writes no audit row");
    let started = applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    let done = applied(store.complete(&t, &j, 1, &json!({"ok": true})).await.expect("complete"));
    assert_eq!(done.status, JobStatus::Completed);

    assert_eq!(stored(&store, &job).await, started_rows(&store, &[1]), "a start is a row on SQLite only");
    let audit = store.job_audit(&t, &j).await.expect("audit");
    let trail: Vec<_> =
        audit.iter().map(|e| (e.action.as_str(), &e.detail, e.at, e.job_id.as_deref())).collect();
    let detail = json!({"kind": "test", "key": "T-trail", "run_at": run_at, "priority": "high"});
    let id = Some(j.as_str());
    assert_eq!(
        trail,
        [
            ("enqueued", &detail, created.created_at, id),
            ("started", &json!({"attempt": 1}), started.started_at.expect("started at"), id),
            ("completed", &json!({"attempt": 1}), done.finished_at.expect("finished at"), id),
        ]
    );
    // From a record already read, the same trail.
    assert_eq!(store.job_audit_of(&done).await.expect("audit of"), audit);
    // Another tenant's trail of the job is empty, as its record reads as missing.
    setup_job(&store, "other", "T-x", 3).await;
    let other = crate::harness::tenant("other");
    assert!(store.job_audit(&other, &j).await.expect("other").is_empty());
});

conformance!(duplicates_are_rows_around_the_read_entries, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-dup", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    store.create_pending(job.clone()).await.expect("duplicate");
    assert_eq!(actions(&store, &job).await, ["enqueued", "duplicate_enqueue"]);
    let dup = json!({"kind": "test", "key": "T-dup"});
    assert_eq!(stored(&store, &job).await, [("duplicate_enqueue".to_owned(), dup.clone())]);

    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    applied(store.complete(&t, &j, 1, &json!({})).await.expect("complete"));
    // A request for the finished job comes after its completion.
    store.create_pending(job.clone()).await.expect("duplicate of the finished job");
    assert_eq!(
        actions(&store, &job).await,
        ["enqueued", "duplicate_enqueue", "started", "completed", "duplicate_enqueue"]
    );
    let rows: Vec<String> = stored(&store, &job).await.into_iter().map(|(a, _)| a).collect();
    match store.kind() {
        BackendKind::Postgres => assert_eq!(rows, ["duplicate_enqueue", "duplicate_enqueue"]),
        BackendKind::Sqlite => assert_eq!(rows, ["duplicate_enqueue", "started", "duplicate_enqueue"]),
    }
});

conformance!(a_stored_enqueued_or_completed_is_not_read_twice, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-rows", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    store
        .append_audit(&t, Some(&j), "enqueued", &json!({"kind": "test", "key": "T-rows"}))
        .await
        .expect("row");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    applied(store.complete(&t, &j, 1, &json!({})).await.expect("complete"));
    store.append_audit(&t, Some(&j), "completed", &json!({"attempt": 1})).await.expect("row");
    assert_eq!(actions(&store, &job).await, ["enqueued", "started", "completed"]);
});

conformance!(a_cancel_request_before_the_completion_stays_before_it, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-cancel", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
    // The cancel request of the running job is committed first; the completion (its batch's
    // clock read earlier, or another host's clock) carries an earlier time than the request.
    store.cancel(&t, &j, "tenant").await.expect("cancel");
    let done = applied(store.complete(&t, &j, 1, &json!({})).await.expect("complete"));
    let args: [Arg<'_>; 2] =
        [(done.finished_at.expect("finished") - Duration::seconds(5)).into(), j.as_str().into()];
    store.db().execute("UPDATE jobs SET finished_at = $1 WHERE job_id = $2", &args).await.expect("skew");
    store.create_pending(job.clone()).await.expect("duplicate of the finished job");
    assert_eq!(
        actions(&store, &job).await,
        ["enqueued", "started", "cancel_requested", "completed", "duplicate_enqueue"]
    );
});

conformance!(each_attempts_start_sits_between_the_attempts_rows, |store: Store| async move {
    use longhaul_store::AttemptFailure;
    let job = setup_job(&store, "acme", "T-attempts", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    let first = applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start 1"));
    let due = longhaul_store::now();
    let failure = AttemptFailure::new(1, longhaul_core::ErrorClass::Retryable, "provider timed out");
    store.schedule_retry(&t, &j, failure, due).await.expect("retry");
    // The second attempt's delivery carries an earlier clock reading than the retry row: it still
    // follows it, as its attempt does.
    let second = applied(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    let skewed = first.started_at.expect("started") - Duration::seconds(1);
    if store.kind() == BackendKind::Postgres {
        let args: [Arg<'_>; 2] = [skewed.into(), j.as_str().into()];
        store
            .db()
            .execute("UPDATE jobs SET attempt_starts[2] = $1 WHERE job_id = $2", &args)
            .await
            .expect("skew");
    }
    // A duplicate request while attempt 2 runs is placed by time.
    store.create_pending(job.clone()).await.expect("duplicate");
    let done = applied(store.complete(&t, &j, 2, &json!({})).await.expect("complete"));
    let audit = store.job_audit(&t, &j).await.expect("audit");
    let trail: Vec<_> = audit.iter().map(|e| (e.action.as_str(), e.detail.get("attempt").cloned())).collect();
    let n = |a: u32| Some(json!(a));
    assert_eq!(
        trail,
        [
            ("enqueued", None),
            ("started", n(1)),
            ("retry_scheduled", n(1)),
            ("started", n(2)),
            ("duplicate_enqueue", None),
            ("completed", n(2)),
        ]
    );
    assert_eq!(audit[1].at, first.started_at.expect("first start"));
    if store.kind() == BackendKind::Sqlite {
        assert_eq!(audit[3].at, second.started_at.expect("second start"));
    }
    assert_eq!(store.job_audit_of(&done).await.expect("audit of"), audit);
    let rows: Vec<String> = stored(&store, &job).await.into_iter().map(|(a, _)| a).collect();
    match store.kind() {
        BackendKind::Postgres => assert_eq!(rows, ["retry_scheduled", "duplicate_enqueue"]),
        BackendKind::Sqlite => {
            assert_eq!(rows, ["started", "retry_scheduled", "started", "duplicate_enqueue"])
        }
    }
});

conformance!(a_start_stored_as_a_row_is_not_read_twice, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-old-start", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    // A job started before migration 0010 has a row for its first attempt's start; the record
    // keeps the second's.
    if store.kind() == BackendKind::Postgres {
        store.append_audit(&t, Some(&j), "started", &json!({"attempt": 1})).await.expect("row");
        let args: [Arg<'_>; 1] = [j.as_str().into()];
        store.db().execute("UPDATE jobs SET attempts = 1 WHERE job_id = $1", &args).await.expect("attempt 1");
    } else {
        applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start 1"));
    }
    applied(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    let trail = by_attempt(&store, &job).await;
    let started = |a: u32| ("started".to_owned(), Some(json!(a)));
    assert_eq!(trail, [("enqueued".to_owned(), None), started(1), started(2)]);
});

conformance!(rows_written_during_or_after_an_attempt_follow_its_start, |store: Store| async move {
    use longhaul_store::AttemptFailure;
    let job = setup_job(&store, "acme", "T-follow", 3).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job.clone()).await.expect("create");
    // On PostgreSQL each start below is moved a minute later than it was: a cancel request that
    // read its clock before the start took the row, or a host whose clock runs ahead.
    let skew = async |attempt: i32| {
        if store.kind() == BackendKind::Postgres {
            let args: [Arg<'_>; 2] = [attempt.into(), j.as_str().into()];
            store
                .db()
                .execute(
                    "UPDATE jobs SET attempt_starts[$1] = attempt_starts[$1] + interval '1 minute' WHERE job_id = $2",
                    &args,
                )
                .await
                .expect("skew");
        }
    };
    applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start 1"));
    skew(1).await;
    applied(store.cancel(&t, &j, "tenant").await.expect("cancel request"));
    let failure = AttemptFailure::new(1, longhaul_core::ErrorClass::Invalid, "bad input");
    applied(store.fail(&t, &j, failure).await.expect("fail"));
    applied(store.requeue(&t, &j, 1, "operator:ann").await.expect("retry"));
    applied(store.start_next(&t, &j, lease("2-0", 1), 2).await.expect("start 2"));
    skew(2).await;
    let trail = by_attempt(&store, &job).await;
    let entry = |action: &str, attempt: Option<u32>| (action.to_owned(), attempt.map(|a| json!(a)));
    assert_eq!(
        trail,
        [
            entry("enqueued", None),
            entry("started", Some(1)),
            entry("cancel_requested", Some(1)),
            entry("failed", Some(1)),
            entry("retried", Some(1)),
            entry("started", Some(2)),
        ]
    );
});
