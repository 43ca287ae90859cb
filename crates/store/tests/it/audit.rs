//! Jobs' audit trails on both backends: `enqueued` and `completed` are read from the record, never
//! stored as rows; every other event is a row, in the order appended, and the trail reads the same
//! as if all were rows.

use chrono::Duration;
use longhaul_core::{JobStatus, NewJob, Priority};
use longhaul_store::Store;
use longhaul_store::backend::Arg;
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

    assert_eq!(stored(&store, &job).await, [("started".to_owned(), json!({"attempt": 1}))], "one row");
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
    assert_eq!(rows, ["duplicate_enqueue", "started", "duplicate_enqueue"]);
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
