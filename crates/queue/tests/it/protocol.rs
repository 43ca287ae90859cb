//! The Redis Streams protocol, taking entries: enqueue, consume, lease, heartbeat, reclaim, stalled
//! entries. Finishing them (ack, retry, promotion, events, dead letters) is in `finishing`.

use std::time::Duration;

use longhaul_queue::{Event, EventKind, Finish, now_ms};
use redis::AsyncCommands;

use crate::harness::{entry, on_both_redis, raw, test_queue, wait_until};

pub(crate) const NO_WAIT: Duration = Duration::from_millis(1);

pub(crate) fn event(kind: EventKind, d: &longhaul_queue::Delivery) -> Event {
    Event::new(kind, d.entry.job_id.as_str(), d.entry.tenant_id.as_str(), d.entry.attempt, now_ms())
}

async fn idle_ms(q: &longhaul_queue::Queue, id: &str) -> (u64, u64) {
    let mut conn = raw().await;
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(q.keys().jobs())
        .arg("workers")
        .arg(id)
        .arg(id)
        .arg(1)
        .query_async(&mut conn)
        .await
        .expect("xpending");
    let (_, _, idle, deliveries) = rows.into_iter().next().expect("pending");
    (idle, deliveries)
}

on_both_redis! {
#[tokio::test]
async fn duplicate_enqueue_makes_one_entry() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-1");
    assert!(q.enqueue(&e).await.expect("first"));
    assert!(!q.enqueue(&e).await.expect("second"));
    assert!(!q.enqueue(&e).await.expect("third"));
    let mut conn = raw().await;
    let len: u64 = conn.xlen(q.keys().jobs()).await.expect("xlen");
    assert_eq!(len, 1);
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
}

#[tokio::test]
async fn a_delayed_enqueue_waits_until_due_and_is_idempotent() {
    let q = test_queue(|_| {}).await;
    let mut e = entry("T-later");
    e.attempt = 3;
    let due = now_ms() + 60_000;
    assert!(q.enqueue_at(&e, due).await.expect("scheduled"));
    assert!(!q.enqueue_at(&e, due).await.expect("again"), "one live entry per job");
    assert!(!q.enqueue(&e).await.expect("immediate"), "the delayed entry counts as live");
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
    let mut conn = raw().await;
    let (delayed, len): (u64, u64) =
        (conn.zcard(q.keys().delayed()).await.expect("zcard"), conn.xlen(q.keys().jobs()).await.expect("xlen"));
    assert_eq!((delayed, len), (1, 0));
    // Not before it is due; then into the stream, as the entry it was.
    assert_eq!(q.promote_due(due - 1, 10).await.expect("early").count, 0);
    assert_eq!(q.promote_due(due, 10).await.expect("due").count, 1);
    let mut consumer = q.consumer("c1").expect("consumer");
    let got = consumer.fetch(10, NO_WAIT).await.expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry, e);
}

/// A scheduled job cancelled before its run_at: unscheduling drops its delayed entry (not another
/// job's due at the same time) and its presence key, so the job can be enqueued again at once; run
/// twice, it changes nothing more.
#[tokio::test]
async fn unscheduling_drops_the_delayed_entry_and_frees_the_job() {
    let q = test_queue(|_| {}).await;
    let (e, other) = (entry("T-cancelled"), entry("T-kept"));
    let due = now_ms() + 3_600_000;
    assert!(q.enqueue_at(&e, due).await.expect("scheduled"));
    assert!(q.enqueue_at(&other, due).await.expect("scheduled"));
    assert_eq!(q.unschedule(&e.job_id, e.attempt, due).await.expect("unschedule"), 1);
    assert_eq!(q.unschedule(&e.job_id, e.attempt, due).await.expect("again"), 0);
    assert!(!q.has_trace(&e.job_id).await.expect("trace"), "no trace of the cancelled job");
    assert!(q.has_trace(&other.job_id).await.expect("trace"), "the other job still waits");
    let mut conn = raw().await;
    let delayed: u64 = conn.zcard(q.keys().delayed()).await.expect("zcard");
    assert_eq!(delayed, 1);
    // A retry of the job enqueues it at once.
    assert!(q.enqueue(&e).await.expect("enqueue after unschedule"));
    // A wrong due time or attempt drops nothing.
    assert_eq!(q.unschedule(&other.job_id, other.attempt, due + 1).await.expect("other due"), 0);
    assert!(q.has_trace(&other.job_id).await.expect("trace"));
}

#[tokio::test]
async fn a_promoted_retry_points_its_job_key_at_the_new_entry() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-promoted");
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let next = longhaul_queue::JobEntry { attempt: 2, ..d.entry.clone() };
    let due = now_ms();
    q.retry(&d, &next, due, &event(EventKind::Retrying, &d)).await.expect("retry");
    let mut conn = raw().await;
    let key = q.keys().job(e.job_id.as_str());
    let v: String = conn.get(&key).await.expect("get");
    assert_eq!(v, "2:d", "a delayed job's key marks it delayed");
    assert_eq!(q.promote_due(due, 10).await.expect("promote").count, 1);
    let promoted = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let v: String = conn.get(&key).await.expect("get");
    assert_eq!(v, format!("2:{}", promoted.id));
    // Deleted while pending, the promoted entry is no trace any more.
    let _: u64 = conn.xdel(q.keys().jobs(), &[promoted.id.as_str()]).await.expect("xdel");
    assert!(!q.has_trace(&e.job_id).await.expect("trace"));
}

#[tokio::test]
async fn a_deleted_pending_entry_leaves_no_trace_and_the_job_can_be_enqueued_again() {
    let q = test_queue(|c| c.lease = Duration::from_millis(50)).await;
    let e = entry("T-deleted");
    q.enqueue(&e).await.expect("enqueue");
    let mut dead = q.consumer("dead").expect("consumer");
    let d = dead.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
    // Someone deletes the pending entry: the presence key stays, but it names nothing.
    let mut conn = raw().await;
    let _: u64 = conn.xdel(q.keys().jobs(), &[d.id.as_str()]).await.expect("xdel");
    assert!(!q.has_trace(&e.job_id).await.expect("trace"), "a key naming a deleted entry is no trace");
    let mut rescuer = q.consumer("rescuer").expect("consumer");
    let r = wait_until(Duration::from_secs(5), "the reclaim reports the deleted entry", async || {
        let r = rescuer.reclaim(10).await.expect("reclaim");
        if r.deleted.is_empty() { Err(r) } else { Ok(r) }
    })
    .await;
    assert_eq!(r.deleted, vec![d.id.clone()]);
    // The reconciler's enqueue replaces the dead key with a live entry.
    assert!(q.enqueue(&e).await.expect("enqueue again"), "enqueued again");
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
    assert!(!q.enqueue(&e).await.expect("duplicate"), "still one live entry");
    let again = rescuer.fetch(1, NO_WAIT).await.expect("fetch");
    assert_eq!(again.len(), 1);
    assert_ne!(again[0].id, d.id);
}

#[tokio::test]
async fn finish_and_retry_run_twice_change_nothing_the_second_time() {
    let q = test_queue(|_| {}).await;
    for t in ["T-twice-a", "T-twice-b"] {
        q.enqueue(&entry(t)).await.expect("enqueue");
    }
    let mut c = q.consumer("w").expect("consumer");
    let ds = c.fetch(2, NO_WAIT).await.expect("fetch");
    let (done, retried) = (&ds[0], &ds[1]);
    let ev = event(EventKind::Completed, done);
    let item = [Finish { delivery: done, event: Some(&ev), release: true }];
    assert_eq!(q.finish_batch(&item, "w", 0).await.expect("finish").0, 1);
    // As a cluster client re-sending the call after an I/O error would.
    assert_eq!(q.finish_batch(&item, "w", 0).await.expect("again").0, 0);
    let next = longhaul_queue::JobEntry { attempt: 2, ..retried.entry.clone() };
    let rev = event(EventKind::Retrying, retried);
    q.retry(retried, &next, now_ms() + 60_000, &rev).await.expect("retry");
    q.retry(retried, &next, now_ms() + 60_000, &rev).await.expect("retry again");
    let stats = q.stats().await.expect("stats");
    assert_eq!(
        (stats.events_length, stats.delayed, stats.pending, stats.stream_length),
        (2, 1, 0, 0),
        "one event each, one delayed entry"
    );
}

#[tokio::test]
async fn handed_back_entries_are_reclaimable_at_once_with_their_delivery_count() {
    let q = test_queue(|c| c.lease = Duration::from_secs(60)).await;
    q.enqueue(&entry("T-handback")).await.expect("enqueue");
    let mut stopping = q.consumer("stopping").expect("consumer");
    let d = stopping.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let mut other = q.consumer("other").expect("consumer");
    assert!(other.reclaim(10).await.expect("reclaim").deliveries.is_empty(), "leased for a minute");
    // An entry delivered just now is not handed back by a sweep for idle ones.
    let ids = std::slice::from_ref(&d.id);
    assert_eq!(q.hand_back("stopping", ids, Duration::from_secs(30)).await.expect("sweep"), 0);
    // Another consumer's entry is not ours to hand back.
    assert_eq!(q.hand_back("other", ids, Duration::ZERO).await.expect("not owned"), 0);
    assert_eq!(q.hand_back("stopping", ids, Duration::ZERO).await.expect("hand back"), 1);
    let r = other.reclaim(10).await.expect("reclaim");
    assert_eq!(r.deliveries.len(), 1, "{r:?}");
    assert_eq!((r.deliveries[0].id.as_str(), r.deliveries[0].deliveries), (d.id.as_str(), 2));
    assert_eq!(q.idle_owned("stopping", Duration::ZERO, 10).await.expect("owned"), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_enqueues_make_one_entry() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-race");
    let calls = (0..50).map(|_| {
        let queue = q.queue.clone();
        let e = e.clone();
        tokio::spawn(async move { queue.enqueue(&e).await })
    });
    let added = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("enqueue"))
        .filter(|new| *new)
        .count();
    assert_eq!(added, 1);
    let mut conn = raw().await;
    let len: u64 = conn.xlen(q.keys().jobs()).await.expect("xlen");
    assert_eq!(len, 1);
}

#[tokio::test]
async fn entry_carries_what_a_worker_needs() {
    let q = test_queue(|_| {}).await;
    let mut e = entry("T-ctx");
    e.traceparent = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into());
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w1").expect("consumer");
    let got = c.fetch(10, NO_WAIT).await.expect("fetch");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].entry, e);
    assert_eq!(got[0].deliveries, 1);
}

#[tokio::test]
async fn fetch_takes_at_most_the_free_capacity() {
    let q = test_queue(|_| {}).await;
    for i in 0..5 {
        q.enqueue(&entry(&format!("T-{i}"))).await.expect("enqueue");
    }
    let mut c = q.consumer("w1").expect("consumer");
    assert_eq!(c.fetch(0, NO_WAIT).await.expect("fetch").len(), 0);
    assert_eq!(c.fetch(2, NO_WAIT).await.expect("fetch").len(), 2);
    assert_eq!(c.fetch(10, NO_WAIT).await.expect("fetch").len(), 3);
}

#[tokio::test]
async fn group_creation_is_idempotent() {
    let q = test_queue(|_| {}).await;
    q.prepare(Some("queue-events")).await.expect("again");
    q.ensure_group(&q.keys().jobs(), "workers").await.expect("BUSYGROUP tolerated");
}

#[tokio::test]
async fn restarted_consumer_takes_back_its_own_pending_entries_first() {
    let q = test_queue(|_| {}).await;
    for i in 0..3 {
        q.enqueue(&entry(&format!("T-{i}"))).await.expect("enqueue");
    }
    let mut first = q.consumer("pod-a").expect("consumer");
    let held = first.fetch(2, NO_WAIT).await.expect("fetch");
    assert_eq!(held.len(), 2);
    drop(first); // the process dies without acking

    let mut restarted = q.consumer("pod-a").expect("consumer");
    let again = restarted.fetch(10, NO_WAIT).await.expect("fetch own pending");
    let ids: Vec<_> = again.iter().map(|d| d.id.clone()).collect();
    assert_eq!(ids, held.iter().map(|d| d.id.clone()).collect::<Vec<_>>());
    assert!(again.iter().all(|d| d.deliveries == 2), "{again:?}");
    // Then the new entry.
    let new = restarted.fetch(10, NO_WAIT).await.expect("fetch new");
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].entry.job_id, longhaul_testkit::test_job_id("T-2"));
}

#[tokio::test]
async fn unacked_entry_is_reclaimed_after_the_lease() {
    let q = test_queue(|c| c.lease = Duration::from_millis(200)).await;
    q.enqueue(&entry("T-stall")).await.expect("enqueue");
    let mut dead = q.consumer("dead-worker").expect("consumer");
    let taken = dead.fetch(1, NO_WAIT).await.expect("fetch");
    assert_eq!(taken.len(), 1);

    let mut rescuer = q.consumer("rescuer").expect("consumer");
    // Not before the lease ran out.
    let early = rescuer.reclaim(10).await.expect("reclaim");
    assert!(early.deliveries.is_empty(), "reclaimed before the lease expired: {early:?}");
    let reclaimed = wait_until(Duration::from_secs(5), "reclaim after the lease", async || {
        let r = rescuer.reclaim(10).await.expect("reclaim");
        if r.deliveries.is_empty() { Err(r) } else { Ok(r) }
    })
    .await;
    assert_eq!(reclaimed.deliveries.len(), 1);
    let d = &reclaimed.deliveries[0];
    assert_eq!((d.id.as_str(), d.deliveries), (taken[0].id.as_str(), 2));
    // The old owner has lost the lease and is told so.
    assert_eq!(dead.heartbeat(std::slice::from_ref(&d.id)).await.expect("heartbeat"), vec![d.id.clone()]);
}

#[tokio::test]
async fn heartbeat_prevents_reclaim_without_bumping_deliveries() {
    let q = test_queue(|c| c.lease = Duration::from_millis(300)).await;
    q.enqueue(&entry("T-alive")).await.expect("enqueue");
    let mut worker = q.consumer("alive").expect("consumer");
    let d = worker.fetch(1, NO_WAIT).await.expect("fetch").remove(0);

    // Let the entry go idle past the lease, then heartbeat just before anyone reclaims.
    wait_until(Duration::from_secs(5), "entry idle past the lease", async || {
        let (idle, _) = idle_ms(&q, &d.id).await;
        if idle >= 300 { Ok(()) } else { Err(idle) }
    })
    .await;
    assert!(worker.heartbeat(std::slice::from_ref(&d.id)).await.expect("heartbeat").is_empty(), "lease kept");
    let (idle, deliveries) = idle_ms(&q, &d.id).await;
    assert!(idle < 300, "idle time reset, got {idle}");
    assert_eq!(deliveries, 1, "heartbeat must not count as a delivery");

    let mut other = q.consumer("other").expect("consumer");
    let r = other.reclaim(10).await.expect("reclaim");
    assert!(r.deliveries.is_empty() && r.stalled.is_empty(), "heartbeated entry was reclaimed: {r:?}");
}

#[tokio::test]
async fn entries_delivered_too_often_are_reported_stalled() {
    let q = test_queue(|c| {
        c.lease = Duration::from_millis(50);
        c.max_deliveries = 2;
    })
    .await;
    q.enqueue(&entry("T-poison-pill")).await.expect("enqueue");
    let mut a = q.consumer("a").expect("consumer");
    a.fetch(1, NO_WAIT).await.expect("fetch"); // delivery 1
    let mut b = q.consumer("b").expect("consumer");
    let second = wait_until(Duration::from_secs(5), "second delivery", async || {
        let r = b.reclaim(10).await.expect("reclaim");
        if r.deliveries.is_empty() { Err(r) } else { Ok(r) }
    })
    .await;
    assert_eq!(second.deliveries[0].deliveries, 2);
    let third = wait_until(Duration::from_secs(5), "third delivery", async || {
        let r = a.reclaim(10).await.expect("reclaim");
        if r.stalled.is_empty() { Err(r) } else { Ok(r) }
    })
    .await;
    assert!(third.deliveries.is_empty());
    let stalled = &third.stalled[0];
    assert_eq!(stalled.deliveries, 3);
    // The worker fails it in storage, then finishes it with a stalled event.
    q.finish(stalled, &event(EventKind::Stalled, stalled)).await.expect("finish");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.pending, stats.stream_length), (0, 0));
}
}
