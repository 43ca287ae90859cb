//! Scheduling and priority on both backends: a job with a `run_at` in the future is recorded
//! `scheduled` (now or past: `queued`), keeps its `run_at` and priority through every write, starts
//! from `scheduled` like a queued job, is cancelled at once, shows in the reconciler's scan, and is
//! listed by status and priority; a duplicate returns the first record unchanged.

use chrono::Duration;
use longhaul_core::{ErrorClass, JobStatus, NewJob, Priority, TransitionError};
use longhaul_store::{AttemptFailure, JobFilter, Store, WriteOutcome};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job, tenant};

async fn scheduled_job(store: &Store, key: &str, minutes: i64, priority: Priority) -> NewJob {
    let job = setup_job(store, "acme", key, 3).await;
    NewJob { run_at: Some(longhaul_store::now() + Duration::minutes(minutes)), priority, ..job }
}

conformance!(
    a_future_run_at_records_a_scheduled_job_that_starts_like_a_queued_one,
    |store: Store| async move {
        let job = scheduled_job(&store, "T-s", 60, Priority::High).await;
        let (t, j, run_at) = (job.tenant_id.clone(), job.job_id.clone(), job.run_at);
        let (created, new) = store.create_pending(job).await.expect("create");
        assert!(new);
        assert_eq!(
            (created.status, created.run_at, created.priority),
            (JobStatus::Scheduled, run_at, Priority::High)
        );
        let read = store.get_job(&t, &j).await.expect("get").expect("present");
        assert_eq!(read, created, "read back as written");
        let audit = store.job_audit(&t, &j).await.expect("audit");
        assert_eq!(audit[0].action, "enqueued");
        assert_eq!(audit[0].detail["priority"], json!("high"));
        assert_eq!(audit[0].detail["run_at"], json!(run_at));

        // Its entry, released by the queue at run_at, starts it; the schedule stays on the record.
        let started = applied(store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start"));
        assert_eq!((started.status, started.attempts), (JobStatus::Running, 1));
        assert_eq!((started.run_at, started.priority), (run_at, Priority::High));
        // Another entry for the same attempt does not start it again.
        let stale = store.start_next(&t, &j, lease("2-0", 1), 1).await.expect("stale");
        assert!(matches!(stale, WriteOutcome::Refused { reason: TransitionError::Superseded { .. }, .. }));
        let failure = AttemptFailure::new(1, ErrorClass::Retryable, "later");
        let due = longhaul_store::now() + Duration::seconds(30);
        let retry = applied(store.schedule_retry(&t, &j, failure, due).await.expect("retry"));
        assert_eq!(retry.status, JobStatus::Queued, "a retry waits as queued, never scheduled again");
        assert_eq!((retry.run_at, retry.priority), (run_at, Priority::High));
    }
);

conformance!(a_run_at_now_or_past_records_a_queued_job, |store: Store| async move {
    let job = scheduled_job(&store, "T-p", -5, Priority::Low).await;
    let run_at = job.run_at;
    let (created, _) = store.create_pending(job).await.expect("create");
    assert_eq!(
        (created.status, created.run_at, created.priority),
        (JobStatus::Queued, run_at, Priority::Low)
    );
    let plain = setup_job(&store, "acme", "T-n", 3).await;
    let (created, _) = store.create_pending(plain).await.expect("create");
    assert_eq!(
        (created.status, created.run_at, created.priority),
        (JobStatus::Queued, None, Priority::Normal)
    );
    let audit = store.job_audit(&created.tenant_id, &created.job_id).await.expect("audit");
    assert_eq!(audit[0].detail, json!({"kind": "test", "key": "T-n"}), "defaults are not repeated");
});

conformance!(a_scheduled_job_is_cancelled_at_once_or_failed_before_it_starts, |store: Store| async move {
    let job = scheduled_job(&store, "T-c", 60, Priority::Normal).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    let cancelled = applied(store.cancel(&t, &j, "tenant").await.expect("cancel"));
    assert_eq!(cancelled.status, JobStatus::Cancelled);
    assert!(cancelled.finished_at.is_some() && cancelled.cancel_requested_at.is_none());
    let late = store.start_next(&t, &j, lease("1-0", 1), 1).await.expect("start");
    assert!(
        matches!(
            late,
            WriteOutcome::Refused { reason: TransitionError::Terminal { status: JobStatus::Cancelled }, .. }
        ),
        "{late:?}"
    );
    let actions: Vec<_> =
        store.job_audit(&t, &j).await.expect("audit").into_iter().map(|a| a.action).collect();
    assert_eq!(actions, ["enqueued", "cancelled"]);

    // A scheduled job found invalid fails without running.
    let job = scheduled_job(&store, "T-f", 60, Priority::Normal).await;
    let (t, j) = (job.tenant_id.clone(), job.job_id.clone());
    store.create_pending(job).await.expect("create");
    let failed =
        applied(store.fail(&t, &j, AttemptFailure::new(1, ErrorClass::Invalid, "bad")).await.expect("fail"));
    assert_eq!((failed.status, failed.attempts), (JobStatus::Failed, 1));
});

conformance!(
    scheduled_jobs_are_live_for_the_reconciler_and_listed_by_status_and_priority,
    |store: Store| async move {
        let scheduled = scheduled_job(&store, "T-1", 60, Priority::High).await;
        let queued_low = NewJob { priority: Priority::Low, ..setup_job(&store, "acme", "T-2", 3).await };
        let queued = setup_job(&store, "acme", "T-3", 3).await;
        let done = setup_job(&store, "acme", "T-4", 3).await;
        let ids = [&scheduled, &queued_low, &queued, &done].map(|j| j.job_id.clone());
        for job in [scheduled, queued_low, queued, done.clone()] {
            store.create_pending(job).await.expect("create");
        }
        applied(store.start_next(&done.tenant_id, &done.job_id, lease("1-0", 1), 1).await.expect("start"));
        applied(store.complete(&done.tenant_id, &done.job_id, 1, &json!({})).await.expect("complete"));

        let scan = async |cutoff| -> Vec<_> {
            let rows = store.stale_live_jobs(cutoff, 0, 100).await.expect("scan");
            rows.into_iter().map(|(_, r)| r.job_id).collect()
        };
        // A scheduled job is looked at only once its run_at is before the cutoff too.
        let soon = longhaul_store::now() + Duration::seconds(1);
        assert_eq!(
            scan(soon).await,
            ids[1..3],
            "queued, queued; not the one scheduled later, nor the completed one"
        );
        let later = longhaul_store::now() + Duration::minutes(61);
        assert_eq!(scan(later).await, ids[..3], "scheduled (now due), queued, queued; not the completed one");

        let t = tenant("acme");
        let list = |filter: JobFilter| {
            let store = store.clone();
            let t = t.clone();
            async move {
                let page = store.list_jobs(&t, &filter, 100, None).await.expect("list");
                page.jobs.into_iter().map(|r| r.job_id).collect::<Vec<_>>()
            }
        };
        let by_status = JobFilter { status: Some(JobStatus::Scheduled), ..JobFilter::default() };
        assert_eq!(list(by_status).await, [ids[0].clone()]);
        let high = JobFilter { priority: Some(Priority::High), ..JobFilter::default() };
        assert_eq!(list(high).await, [ids[0].clone()]);
        let low = JobFilter { priority: Some(Priority::Low), ..JobFilter::default() };
        assert_eq!(list(low).await, [ids[1].clone()]);
        let normal = JobFilter { priority: Some(Priority::Normal), ..JobFilter::default() };
        assert_eq!(list(normal).await, [ids[3].clone(), ids[2].clone()], "newest first");
        let queued_normal = JobFilter {
            priority: Some(Priority::Normal),
            status: Some(JobStatus::Queued),
            ..JobFilter::default()
        };
        assert_eq!(list(queued_normal).await, [ids[2].clone()]);
    }
);

conformance!(a_duplicate_returns_the_first_record_unchanged, |store: Store| async move {
    let first = scheduled_job(&store, "T-d", 60, Priority::Low).await;
    let (t, j) = (first.tenant_id.clone(), first.job_id.clone());
    // The same id asked for at once now and later, with another priority: one record, the first's.
    let again = NewJob { run_at: None, priority: Priority::High, ..first.clone() };
    let out: Vec<_> = store
        .create_pending_many(vec![first.clone(), again.clone()])
        .await
        .expect("batch")
        .into_iter()
        .map(|r| r.expect("each"))
        .collect();
    assert_eq!((out[0].1, out[1].1), (true, false));
    for (record, _) in &out {
        assert_eq!(
            (record.status, record.run_at, record.priority),
            (JobStatus::Scheduled, first.run_at, Priority::Low)
        );
    }
    let (later, created) = store.create_pending(again).await.expect("again");
    assert!(!created);
    assert_eq!(later, store.get_job(&t, &j).await.expect("get").expect("present"));
    assert_eq!((later.status, later.priority), (JobStatus::Scheduled, Priority::Low));
});
