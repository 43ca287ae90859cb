//! The Redis Streams protocol, finishing entries: ack and delete with the event, retries and their
//! promotion, dead letters, the events stream and its order.

use std::time::{Duration, Instant};

use longhaul_queue::{Event, EventKind, Finish, now_ms};
use redis::AsyncCommands;

use crate::harness::{entry, on_both_redis, raw, test_queue, wait_until};

use crate::protocol::{NO_WAIT, event};

on_both_redis! {
#[tokio::test]
async fn finish_acks_deletes_and_appends_the_event_atomically() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-done");
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let mut ev = event(EventKind::Completed, &d);
    ev.run_ms = Some(12);
    assert!(q.finish(&d, &ev).await.expect("finish"));
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending, stats.events_length), (0, 0, 1));
    assert!(!q.has_trace(&e.job_id).await.expect("trace"), "job key dropped");
    // A second finish of the same delivery (a redelivered duplicate) is harmless.
    assert!(!q.finish(&d, &ev).await.expect("finish again"));
}

#[tokio::test]
async fn retry_is_promoted_at_its_due_time_and_not_before() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-retry");
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);

    let due = now_ms() + 60_000;
    let next = longhaul_queue::JobEntry { attempt: 2, ..d.entry.clone() };
    let mut ev = event(EventKind::Retrying, &d);
    ev.reason = Some("provider timed out".into());
    q.retry(&d, &next, due, &ev).await.expect("retry");
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending, stats.delayed), (0, 0, 1));
    assert!(q.has_trace(&e.job_id).await.expect("trace"), "a delayed job still has a trace");
    assert!(!q.enqueue(&e).await.expect("enqueue"), "no second live entry while delayed");

    let early = q.promote_due(due - 1, 100).await.expect("promote");
    assert_eq!(early.count, 0);
    assert_eq!(early.next_due_ms, Some(due));
    let on_time = q.promote_due(due, 100).await.expect("promote");
    assert_eq!((on_time.count, on_time.next_due_ms), (1, None));
    let again = c.fetch(1, NO_WAIT).await.expect("fetch");
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].entry, next);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_promoters_promote_each_job_once() {
    let q = test_queue(|_| {}).await;
    let mut c = q.consumer("w").expect("consumer");
    for i in 0..60 {
        q.enqueue(&entry(&format!("T-{i}"))).await.expect("enqueue");
    }
    let now = now_ms();
    for d in c.fetch(100, NO_WAIT).await.expect("fetch") {
        let next = longhaul_queue::JobEntry { attempt: 2, ..d.entry.clone() };
        q.retry(&d, &next, now, &event(EventKind::Retrying, &d)).await.expect("retry");
    }
    let promoters = (0..8).map(|_| {
        let queue = q.queue.clone();
        tokio::spawn(async move {
            let mut total = 0;
            loop {
                let p = queue.promote_due(now, 7).await.expect("promote");
                total += p.count;
                if p.count == 0 {
                    return total;
                }
            }
        })
    });
    let total: u64 = futures::future::join_all(promoters).await.into_iter().map(|r| r.expect("task")).sum();
    assert_eq!(total, 60);
    let all = c.fetch(1000, NO_WAIT).await.expect("fetch");
    let mut jobs: Vec<_> = all.iter().map(|d| d.entry.job_id.clone()).collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!((all.len(), jobs.len()), (60, 60), "each job exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_reader_sees_a_promoted_job_promptly() {
    let q = test_queue(|_| {}).await;
    q.enqueue(&entry("T-wake")).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let next = longhaul_queue::JobEntry { attempt: 2, ..d.entry.clone() };
    let due = now_ms() + 100_000;
    q.retry(&d, &next, due, &event(EventKind::Retrying, &d)).await.expect("retry");

    let block = Duration::from_secs(20);
    let reader = tokio::spawn(async move {
        let started = Instant::now();
        let got = c.fetch(1, block).await.expect("blocking fetch");
        (got, started.elapsed())
    });
    // Promote once the reader is blocked: the group shows it as a consumer with a recent read.
    wait_until(Duration::from_secs(5), "reader blocked", async || {
        // On a cluster, the primary holding the queue's slot is where the reader blocks.
        let mut conn = raw().await;
        let clients = conn.query_on_slot(redis::cmd("CLIENT").arg("LIST"), q.keys().slot()).await;
        let clients: String = redis::from_redis_value(clients.expect("client list")).expect("text");
        if clients.lines().any(|l| l.contains("cmd=xreadgroup") && l.contains("flags=b")) {
            Ok(())
        } else {
            Err("not blocked")
        }
    })
    .await;
    assert_eq!(q.promote_due(due, 10).await.expect("promote").count, 1);
    let (got, waited) = reader.await.expect("reader");
    assert_eq!(got.len(), 1);
    assert!(waited < block / 2, "the blocked reader waited {waited:?}; it must wake at promotion");
}

#[tokio::test]
async fn poison_entry_is_dead_lettered_and_the_consumer_continues() {
    let q = test_queue(|_| {}).await;
    let mut conn = raw().await;
    let _: String =
        conn.xadd(q.keys().jobs(), "*", &[("j", "not-a-job"), ("junk", "\u{1F4A3}")]).await.expect("xadd");
    q.enqueue(&entry("T-good")).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let got = c.fetch(10, NO_WAIT).await.expect("fetch");
    assert_eq!(got.len(), 1, "only the valid entry is handed out");
    assert_eq!(got[0].entry.job_id, longhaul_testkit::test_job_id("T-good"));

    let dead: redis::streams::StreamRangeReply = conn.xrange_all(q.keys().dead()).await.expect("xrange");
    assert_eq!(dead.ids.len(), 1);
    let fields = &dead.ids[0].map;
    let reason: String = redis::from_redis_value(fields["reason"].clone()).expect("reason");
    assert!(reason.contains("\"j\": \"not-a-job\" is not a job id"), "{reason}");
    let junk: String = redis::from_redis_value(fields["junk"].clone()).expect("raw field kept");
    assert_eq!(junk, "\u{1F4A3}");
    let stats = q.stats().await.expect("stats");
    assert_eq!(
        (stats.pending, stats.stream_length, stats.dead_letters),
        (1, 1, 1),
        "poison acked and deleted"
    );
}

#[tokio::test]
async fn events_of_a_job_arrive_in_order() {
    let q = test_queue(|_| {}).await;
    q.enqueue(&entry("T-events")).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    for (stage, p) in [("load", 33), ("classify", 66), ("apply", 99)] {
        let mut ev = event(EventKind::Progress, &d);
        ev.stage = Some(stage.into());
        ev.progress = Some(p);
        q.publish(&ev).await.expect("publish");
    }
    q.finish(&d, &event(EventKind::Completed, &d)).await.expect("finish");

    let mut reader = q.event_reader("queue-events", "qe-1").expect("reader");
    let got = reader.read(100, NO_WAIT).await.expect("read");
    let seen: Vec<_> = got.iter().map(|r| (r.event.kind, r.event.stage.clone())).collect();
    assert_eq!(
        seen,
        [
            (EventKind::Progress, Some("load".into())),
            (EventKind::Progress, Some("classify".into())),
            (EventKind::Progress, Some("apply".into())),
            (EventKind::Completed, None),
        ]
    );
    assert!(got.iter().all(|r| r.event.job_id == d.entry.job_id.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_event_readers_share_events_each_once() {
    let q = test_queue(|_| {}).await;
    for i in 0..200 {
        q.publish(&Event::new(EventKind::Completed, &format!("job-{i}"), "acme", 1, now_ms()))
            .await
            .expect("publish");
    }
    let mut a = q.event_reader("queue-events", "qe-a").expect("reader");
    let mut b = q.event_reader("queue-events", "qe-b").expect("reader");
    let mut seen = Vec::new();
    loop {
        let ra = a.read(7, NO_WAIT).await.expect("read a");
        let rb = b.read(5, NO_WAIT).await.expect("read b");
        if ra.is_empty() && rb.is_empty() {
            break;
        }
        a.ack(&ra.iter().map(|r| r.id.clone()).collect::<Vec<_>>()).await.expect("ack");
        b.ack(&rb.iter().map(|r| r.id.clone()).collect::<Vec<_>>()).await.expect("ack");
        seen.extend(ra.into_iter().chain(rb).map(|r| r.event.job_id));
    }
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!((total, seen.len()), (200, 200));
}

#[tokio::test]
async fn events_stream_is_trimmed() {
    let q = test_queue(|c| c.events_maxlen = 100).await;
    for i in 0..3000 {
        q.publish(&Event::new(EventKind::Progress, &format!("job-{i}"), "acme", 1, now_ms()))
            .await
            .expect("publish");
    }
    let len = q.stats().await.expect("stats").events_length;
    // Approximate trimming removes whole radix-tree nodes (100 entries by default).
    assert!((100..=300).contains(&len), "events stream holds {len} entries");
}

#[tokio::test]
async fn finish_batch_takes_new_entries_for_the_freed_capacity() {
    let q = test_queue(|_| {}).await;
    for i in 0..5 {
        q.enqueue(&entry(&format!("T-{i}"))).await.expect("enqueue");
    }
    let mut c = q.consumer("w").expect("consumer");
    let first = c.fetch(2, NO_WAIT).await.expect("fetch");
    let events: Vec<Event> = first.iter().map(|d| event(EventKind::Completed, d)).collect();
    let items: Vec<Finish<'_>> = first
        .iter()
        .zip(&events)
        .map(|(d, e)| Finish { delivery: d, event: Some(e), release: true })
        .collect();
    let (acked, next) = q.finish_batch(&items, "w", 2).await.expect("finish and take");
    assert_eq!(acked, 2);
    let jobs: Vec<_> = next.iter().map(|d| d.entry.job_id.clone()).collect();
    assert_eq!(jobs, [longhaul_testkit::test_job_id("T-2"), longhaul_testkit::test_job_id("T-3")]);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending, stats.events_length), (3, 2, 2));

    // Acking a duplicate without an event and without releasing keeps the job's trace.
    let dup = &next[0];
    let (acked, none) = q
        .finish_batch(&[Finish { delivery: dup, event: None, release: false }], "w", 0)
        .await
        .expect("ack dup");
    assert_eq!((acked, none.len()), (1, 0));
    // Its key named this very entry, which is gone now: the key goes too (the job lives on only if
    // another entry holds it, and then the key names that one).
    let mut conn = raw().await;
    let key: Option<String> = conn.get(q.keys().job(dup.entry.job_id.as_str())).await.expect("get");
    assert_eq!(key, None);
    assert!(!q.has_trace(&dup.entry.job_id).await.expect("trace"));
    // A duplicate whose job key names another entry keeps that key.
    let other = &next[1];
    let other_key = q.keys().job(other.entry.job_id.as_str());
    let _: () = conn.set(&other_key, "1:9999999999999-0").await.expect("set");
    q.finish_batch(&[Finish { delivery: other, event: None, release: false }], "w", 0).await.expect("ack");
    let kept: Option<String> = conn.get(&other_key).await.expect("get");
    assert_eq!(kept.as_deref(), Some("1:9999999999999-0"));
    assert_eq!(q.stats().await.expect("stats").events_length, 2, "no event for a dropped duplicate");
}
}
