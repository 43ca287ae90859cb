//! The pruner: a worker with a short retention deletes old finished jobs (and their audit rows)
//! and keeps recent and live ones; of two workers only the one holding the `pruner` lease prunes,
//! and when it stops the other takes over; a retention shorter for operations than for records is
//! refused at start-up.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::Parser as _;
use longhaul_core::{JobId, TicketId};
use longhaul_store::Store;
use longhaul_store::backend::Arg;
use longhaul_testkit::{TestQueue, wait_until};
use longhaul_triage::RuleClassifier;
use longhaul_worker::startup::{self, Application, Config};
use longhaul_worker::{Lane, PRUNER_LEASE, Retention, Worker};
use tokio_util::sync::CancellationToken;

use crate::harness::{
    Backend, Running, audit_actions, both_backends, fast_queue, record_job, registry, settings, tenant,
    test_db, triage,
};

/// Retention for tests: records older than an hour go, checked every 50 ms, two rows a batch.
fn retention() -> Retention {
    Retention {
        retain_finished: Duration::from_secs(3600),
        retain_operations: Duration::from_secs(3600),
        every: Duration::from_millis(50),
        batch: 2,
        pause: Duration::from_millis(5),
        lease_ttl: Duration::from_secs(30),
    }
}

/// A worker named `consumer` serving `q` and running the pruner.
fn spawn_pruning(store: &Store, q: &TestQueue, consumer: &str) -> Running {
    let s = settings(consumer);
    let lanes = vec![Lane { queue: q.queue.clone(), concurrency: s.concurrency }];
    let worker = Worker::with_lanes(store.clone(), lanes, registry(triage(store, RuleClassifier)), s)
        .with_retention(Some(retention()));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(worker.run(stop.clone()));
    Running { stop, handle }
}

fn hours_ago(h: i64) -> DateTime<Utc> {
    longhaul_store::now() - chrono::Duration::hours(h)
}

/// A triage job recorded for `ticket` and, unless `live`, run to completion in storage, finished
/// at `finished` (not enqueued: the pruner alone acts on it).
async fn job(store: &Store, ticket: &str, finished: Option<DateTime<Utc>>) -> JobId {
    let t = TicketId::parse(ticket).expect("ticket");
    let id = longhaul_triage::job_id_for_ticket(&tenant(), &t, 1);
    record_job(store, &id, &t, 1, 3).await;
    let Some(at) = finished else { return id };
    let lease = longhaul_core::Lease { entry: format!("{ticket}-0"), delivery: 1 };
    store.start_next(&tenant(), &id, lease, 1).await.expect("start").applied().expect("started");
    store
        .complete(&tenant(), &id, 1, &serde_json::json!({}))
        .await
        .expect("complete")
        .applied()
        .expect("done");
    let args: [Arg<'_>; 2] = [at.into(), id.as_str().into()];
    let n =
        store.db().execute("UPDATE jobs SET finished_at = $1 WHERE job_id = $2", &args).await.expect("age");
    assert_eq!(n, 1);
    id
}

async fn gone(store: &Store, job: &JobId) -> Result<(), String> {
    match store.get_job(&tenant(), job).await.expect("read") {
        None => Ok(()),
        Some(r) => Err(format!("{job} still {}", r.status)),
    }
}

/// The consumer whose pruner holds the lease (holders are `<consumer>-<suffix>`).
async fn lease_holder(store: &Store) -> Option<String> {
    let lease = store.task_lease(PRUNER_LEASE).await.expect("read the lease")?;
    Some(
        lease.holder.rsplit_once('-').map(|(consumer, _)| consumer.to_owned()).expect("holder with a suffix"),
    )
}

both_backends!(a_worker_prunes_old_finished_jobs_and_keeps_the_rest, |backend: Backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let mut old = Vec::new();
    for i in 0..5 {
        old.push(job(&db, &format!("OLD-{i}"), Some(hours_ago(2))).await);
    }
    let recent = job(&db, "RECENT-1", Some(hours_ago(0))).await;
    let live = job(&db, "LIVE-1", None).await;
    assert_eq!(audit_actions(&db, &old[0]).await, ["enqueued", "started", "completed"]);

    let worker = spawn_pruning(&db, &q, "pruner-w");
    for job in &old {
        wait_until(Duration::from_secs(10), "old job pruned", async || gone(&db, job).await).await;
        assert!(audit_actions(&db, job).await.is_empty(), "its audit rows go with it");
    }
    assert!(db.get_job(&tenant(), &recent).await.expect("read").is_some(), "a recent job is kept");
    assert!(db.get_job(&tenant(), &live).await.expect("read").is_some(), "a live job is kept");
    assert_eq!(audit_actions(&db, &recent).await.len(), 3);
    assert_eq!(lease_holder(&db).await.as_deref(), Some("pruner-w"));
    worker.shutdown().await.expect("stopped cleanly");
    assert_eq!(db.task_lease(PRUNER_LEASE).await.expect("read"), None, "the lease is given up on shutdown");
});

both_backends!(of_two_workers_only_the_lease_holder_prunes, |backend: Backend| async move {
    let db = test_db(backend).await;
    let q = TestQueue::new(fast_queue).await;
    let first = job(&db, "OLD-A", Some(hours_ago(2))).await;
    let a = spawn_pruning(&db, &q, "pruner-a");
    let b = spawn_pruning(&db, &q, "pruner-b");
    wait_until(Duration::from_secs(10), "first old job pruned", async || gone(&db, &first).await).await;

    // While both run, one holds the lease and extends it every pass; the other never takes it.
    let holder = lease_holder(&db).await.expect("held");
    let mut extended = 0;
    let mut last = db.task_lease(PRUNER_LEASE).await.expect("read").expect("held").expires_at;
    wait_until(Duration::from_secs(10), "the holder extending its lease three times", async || {
        let lease = db.task_lease(PRUNER_LEASE).await.expect("read").expect("held");
        assert_eq!(lease_holder(&db).await.as_deref(), Some(holder.as_str()), "the lease changed hands");
        if lease.expires_at > last {
            extended += 1;
            last = lease.expires_at;
        }
        if extended >= 3 { Ok(()) } else { Err(extended) }
    })
    .await;

    // The holder stops (giving the lease up): the other takes over and prunes what is old now.
    let (stopped, other, other_name) =
        if holder == "pruner-a" { (a, b, "pruner-b") } else { (b, a, "pruner-a") };
    stopped.shutdown().await.expect("stopped cleanly");
    let second = job(&db, "OLD-B", Some(hours_ago(2))).await;
    wait_until(Duration::from_secs(10), "the other worker taking the lease over", async || {
        let now = lease_holder(&db).await;
        if now.as_deref() == Some(other_name) { Ok(()) } else { Err(now) }
    })
    .await;
    wait_until(Duration::from_secs(10), "second old job pruned", async || gone(&db, &second).await).await;
    other.shutdown().await.expect("stopped cleanly");
});

#[tokio::test]
async fn operations_kept_shorter_than_records_are_refused() {
    // Refused before anything is connected: these URLs are never dialled.
    let config = Config::try_parse_from([
        "worker",
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "--redis-url",
        "redis://127.0.0.1:1",
        "--admin-addr",
        "127.0.0.1:0",
        "--retain-finished",
        "14d",
        "--retain-operations",
        "7d",
    ])
    .expect("flags");
    let refused = Application::build(config, startup::builtin).await.expect_err("operations kept shorter");
    assert!(
        refused
            .to_string()
            .contains("--retain-operations (7days) must be at least --retain-finished (14days)"),
        "{refused:#}"
    );
}
