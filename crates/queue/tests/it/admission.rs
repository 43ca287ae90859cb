//! Admission: wait lists per flow (priority, tenant, kind), fairness between flows, weighted
//! priorities, the bounded work of one admission, caps across workers, tenant and kind rates (with
//! injected clocks, and Redis's), pauses that hold back only their kind, the backlog window, defer
//! (by the delivery's owner only), promotion into wait lists, the active sets and flows and their
//! healing, and the interleavings that must not break them.

use std::time::{Duration, Instant};

use longhaul_core::{JobId, JobKey, Priority, TenantId};
use longhaul_queue::{Control, Delivery, EventKind, JobEntry, Queue, now_ms};
use redis::AsyncCommands;

use crate::harness::{entry, on_both_redis, raw, test_queue, wait_until};
use crate::protocol::{NO_WAIT, event};

/// A first-attempt entry of `tenant`'s job of `kind` keyed `key`, at `priority`.
fn flow_entry(tenant: &str, kind: &str, key: &str, priority: Priority) -> JobEntry {
    let tenant_id = TenantId::parse(tenant).expect("tenant");
    JobEntry {
        job_id: JobId::derive(&tenant_id, kind, &JobKey::Derived(key.to_owned())),
        tenant_id,
        kind: Some(kind.to_owned()),
        attempt: 1,
        enqueued_at_ms: now_ms(),
        priority,
        traceparent: None,
    }
}

fn normal(tenant: &str, key: &str) -> JobEntry {
    flow_entry(tenant, "test", key, Priority::Normal)
}

/// The entries in the jobs stream, oldest first.
async fn stream(q: &Queue) -> Vec<(String, JobEntry)> {
    let mut conn = raw().await;
    let reply: redis::streams::StreamRangeReply = conn.xrange_all(q.keys().jobs()).await.expect("xrange");
    reply
        .ids
        .into_iter()
        .map(|e| {
            let fields = e
                .map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value::<Vec<u8>>(v.clone()).expect("bytes")))
                .collect();
            (e.id, JobEntry::from_fields(&fields).expect("a valid entry"))
        })
        .collect()
}

async fn presence(q: &Queue, job: &JobId) -> Option<String> {
    let mut conn = raw().await;
    conn.get(q.keys().job(job.as_str())).await.expect("get")
}

async fn active(q: &Queue, tenant: &str) -> u64 {
    let mut conn = raw().await;
    conn.scard(q.keys().active(tenant)).await.expect("scard")
}

/// The members of priority `rank`'s ring, head first.
async fn ring(q: &Queue, rank: u8) -> Vec<String> {
    let mut conn = raw().await;
    conn.lrange(q.keys().ring(rank), 0, -1).await.expect("lrange")
}

/// The job ids waiting in a flow's list, oldest first.
async fn flow_jobs(q: &Queue, rank: u8, tenant: &str, kind: &str) -> Vec<String> {
    let mut conn = raw().await;
    let members: Vec<String> = conn.lrange(q.keys().wait(rank, tenant, kind), 0, -1).await.expect("lrange");
    members
        .iter()
        .map(|m| {
            let fields: Vec<String> = serde_json::from_str(m).expect("a JSON list");
            fields.chunks(2).find(|kv| kv[0] == "j").map(|kv| kv[1].clone()).expect("a job id")
        })
        .collect()
}

/// A token bucket's state: (tokens, last refill ms).
async fn bucket(q: &Queue, field: &str) -> Option<(f64, u64)> {
    let mut conn = raw().await;
    let s: Option<String> = conn.hget(q.keys().tokens(), field).await.expect("hget");
    s.map(|s| {
        let (t, l) = s.split_once(':').expect("tokens:last");
        (t.parse().expect("tokens"), l.parse().expect("last"))
    })
}

/// A second handle on the same queue: another worker process.
fn second_handle(q: &Queue) -> Queue {
    Queue::new(&longhaul_testkit::redis_url(), q.config().clone()).expect("second handle")
}

/// A time later than any real clock reading in these tests, so token buckets start full.
const T0: u64 = 4_000_000_000_000;

/// Admits one entry at a time until nothing is admitted; returns the admitted entries in order.
async fn admit_one_by_one(q: &Queue, now: u64) -> Vec<JobEntry> {
    let before = stream(q).await.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while q.admit_at(now, 1).await.expect("admit").admitted == 1 {
        assert!(Instant::now() < deadline, "admission did not stop");
    }
    stream(q).await.into_iter().skip(before).map(|(_, e)| e).collect()
}

on_both_redis! {
#[tokio::test]
async fn without_control_every_entry_goes_straight_into_the_stream_in_order() {
    let q = test_queue(|_| {}).await;
    let entries: Vec<JobEntry> = (0..20).map(|i| normal(["a", "b", "c"][i % 3], &format!("T-{i}"))).collect();
    for e in &entries {
        assert!(q.enqueue(e).await.expect("enqueue"));
    }
    assert_eq!(q.waiting().await.expect("waiting"), [0, 0, 0]);
    // An explicit `ahead = 0` with no limits is the same plain FIFO.
    q.set_control(&Control::default()).await.expect("control");
    let more: Vec<JobEntry> = (20..30).map(|i| normal("a", &format!("T-{i}"))).collect();
    for e in &more {
        assert!(q.enqueue(e).await.expect("enqueue"));
    }
    let got: Vec<JobEntry> = stream(&q).await.into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, entries.into_iter().chain(more).collect::<Vec<_>>());
    assert_eq!(q.admit(100).await.expect("admit"), longhaul_queue::Admitted::default());
    assert_eq!(q.stats().await.expect("stats").waiting, 0);
}

#[tokio::test]
async fn the_backlog_window_holds_entries_until_workers_take_some() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { ahead: 3, ..Control::default() }).await.expect("control");
    for i in 0..10 {
        q.enqueue(&normal("acme", &format!("T-{i}"))).await.expect("enqueue");
    }
    assert_eq!(stream(&q).await.len(), 3, "three go straight in");
    assert_eq!(q.waiting().await.expect("waiting"), [0, 7, 0]);
    assert_eq!(q.stats().await.expect("stats").waiting, 7);
    let first = q.admit(100).await.expect("admit");
    assert_eq!((first.admitted, first.waiting), (0, 7), "the backlog is full");
    let mut c = q.consumer("w").expect("consumer");
    assert_eq!(c.fetch(2, NO_WAIT).await.expect("fetch").len(), 2);
    let second = q.admit(100).await.expect("admit");
    assert_eq!((second.admitted, second.waiting), (2, 5), "two taken, two admitted");
    // In order: the stream holds T-0..T-4.
    let keys: Vec<JobId> = stream(&q).await.into_iter().map(|(_, e)| e.job_id).collect();
    let want: Vec<JobId> = (0..5).map(|i| normal("acme", &format!("T-{i}")).job_id).collect();
    assert_eq!(keys, want);
}

#[tokio::test]
async fn a_tenant_s_burst_does_not_starve_another_and_each_flow_keeps_its_order() {
    let q = test_queue(|_| {}).await;
    let ahead = 5;
    q.set_control(&Control { ahead, ..Control::default() }).await.expect("control");
    let a: Vec<JobEntry> = (0..1000).map(|i| normal("tenant-a", &format!("A-{i}"))).collect();
    let b: Vec<JobEntry> = (0..10).map(|i| normal("tenant-b", &format!("B-{i}"))).collect();
    for e in a.iter().chain(&b) {
        assert!(q.enqueue(e).await.expect("enqueue"));
    }
    assert_eq!(q.waiting().await.expect("waiting"), [0, 1005, 0]);
    // A worker taking five at a time, finishing them, and admitting what the window allows.
    let mut c = q.consumer("w").expect("consumer");
    let mut order: Vec<JobEntry> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while order.len() < 1010 {
        assert!(Instant::now() < deadline, "stuck after {} deliveries", order.len());
        let got = c.fetch(5, NO_WAIT).await.expect("fetch");
        for d in &got {
            assert_eq!(d.deliveries, 1);
            assert!(q.finish(d, &event(EventKind::Completed, d)).await.expect("finish"));
        }
        order.extend(got.into_iter().map(|d| d.entry));
        let admitted = q.admit(100).await.expect("admit");
        assert!(admitted.admitted <= u64::from(ahead), "the window bounds each admission: {admitted:?}");
    }
    let positions: Vec<usize> =
        order.iter().enumerate().filter(|(_, e)| e.tenant_id.as_str() == "tenant-b").map(|(i, _)| i).collect();
    assert_eq!(positions.len(), 10);
    // Five of A went straight in; then A and B alternate.
    assert!(positions[9] < 5 + 2 * 10 + 2, "B's entries started at {positions:?}");
    let only = |t: &str| order.iter().filter(|e| e.tenant_id.as_str() == t).cloned().collect::<Vec<_>>();
    assert_eq!(only("tenant-a"), a, "A's entries all ran, in order");
    assert_eq!(only("tenant-b"), b, "B's entries in order");
    assert_eq!((active(&q, "tenant-a").await, active(&q, "tenant-b").await), (0, 0));
    assert_eq!(q.waiting().await.expect("waiting"), [0, 0, 0]);
}

/// With turns of several entries (the production setting), a flow's turn admits up to that many
/// of its entries in one go, in order, and the round robin still reaches the other flow after one
/// turn: B's first entry is admitted after at most one turn of A's, and a tenant's cap bounds a
/// turn.
#[tokio::test]
async fn a_turn_admits_several_entries_of_a_flow_and_the_next_flow_follows() {
    let q = test_queue(|c| c.admit_turn = 4).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    let a: Vec<JobEntry> = (0..10).map(|i| normal("tenant-a", &format!("A-{i}"))).collect();
    let b: Vec<JobEntry> = (0..3).map(|i| normal("tenant-b", &format!("B-{i}"))).collect();
    let c: Vec<JobEntry> = (0..6).map(|i| normal("tenant-c", &format!("C-{i}"))).collect();
    for e in a.iter().chain(&b).chain(&c) {
        assert!(q.enqueue(e).await.expect("enqueue"));
    }
    let caps = [("tenant-c".to_owned(), 2)].into_iter().collect();
    q.set_control(&Control { tenant_caps: caps, ..Control::default() }).await.expect("resume");
    assert_eq!(q.admit(100).await.expect("admit").admitted, 10 + 3 + 2, "C stops at its cap");
    let mut consumer = q.consumer("w").expect("consumer");
    let order: Vec<String> = consumer
        .fetch(100, NO_WAIT)
        .await
        .expect("fetch")
        .into_iter()
        .map(|d| d.entry.job_id.to_string())
        .collect();
    let ids = |es: &[JobEntry]| es.iter().map(|e| e.job_id.to_string()).collect::<Vec<_>>();
    let (a, b, c) = (ids(&a), ids(&b), ids(&c));
    // Turn by turn: 4 of A, all 3 of B, 2 of C (its cap), then A's remaining 6 in turns of 4.
    let expected: Vec<String> =
        [&a[..4], &b[..], &c[..2], &a[4..8], &a[8..]].into_iter().flat_map(|s| s.iter().cloned()).collect();
    assert_eq!(order, expected);
    assert_eq!(q.waiting().await.expect("waiting"), [0, 4, 0], "C's other four wait");
}

#[tokio::test]
async fn higher_priorities_start_first_and_low_gets_its_share() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for i in 0..40 {
        for (p, t) in [(Priority::Low, "lo"), (Priority::Normal, "mid"), (Priority::High, "hi")] {
            assert!(q.enqueue(&flow_entry(t, "test", &format!("{t}-{i}"), p)).await.expect("enqueue"));
        }
    }
    assert_eq!(q.waiting().await.expect("waiting"), [40, 40, 40]);
    assert_eq!(q.admit(100).await.expect("admit").admitted, 0, "paused");
    q.set_control(&Control::default()).await.expect("resume");
    let order: Vec<Priority> = admit_one_by_one(&q, now_ms()).await.into_iter().map(|e| e.priority).collect();
    assert_eq!(order.len(), 120);
    let count = |s: &[Priority], p: Priority| s.iter().filter(|x| **x == p).count();
    // The weighted rotation: of the first 16 picks, 12 high, 3 normal, 1 low.
    let first = &order[..16];
    assert_eq!(
        (count(first, Priority::High), count(first, Priority::Normal), count(first, Priority::Low)),
        (12, 3, 1),
        "{first:?}"
    );
    assert_eq!(order[0], Priority::High);
    // High runs out first, then normal, and low is never starved: one in every 16 picks at least.
    let last_high = order.iter().rposition(|p| *p == Priority::High).expect("high");
    let last_normal = order.iter().rposition(|p| *p == Priority::Normal).expect("normal");
    assert!(last_high < last_normal, "{order:?}");
    for window in order[..last_normal].chunks(16).filter(|w| w.len() == 16) {
        assert!(count(window, Priority::Low) >= 1, "low starved in {window:?}");
    }
    assert!(order[..32].iter().filter(|p| **p == Priority::Low).count() < 4, "low is not preferred");
}

#[tokio::test]
async fn a_tenant_cap_holds_across_workers_until_a_finish_or_defer_frees_a_place() {
    let q = test_queue(|_| {}).await;
    let other_worker = second_handle(&q);
    q.set_control(&Control { default_cap: Some(2), tenant_caps: [("free".to_owned(), 0)].into(), ..Control::default() })
        .await
        .expect("control");
    let jobs: Vec<JobEntry> = (0..4).map(|i| normal("capped", &format!("C-{i}"))).collect();
    for e in &jobs[..3] {
        q.enqueue(e).await.expect("enqueue");
    }
    assert_eq!(stream(&q).await.len(), 2, "two under the cap go straight in");
    assert_eq!(active(&q, "capped").await, 2);
    // A tenant whose own cap is 0 has none, even with a default cap.
    for i in 0..5 {
        q.enqueue(&normal("free", &format!("F-{i}"))).await.expect("enqueue");
    }
    let admitted = other_worker.admit(100).await.expect("admit");
    assert_eq!((admitted.admitted, admitted.waiting), (5, 1), "the free tenant passes, the third capped one waits");
    let mut w1 = q.consumer("w1").expect("consumer");
    let mut w2 = other_worker.consumer("w2").expect("consumer");
    let d1 = w1.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let d2 = w2.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!((d1.entry.job_id.clone(), d2.entry.job_id.clone()), (jobs[0].job_id.clone(), jobs[1].job_id.clone()));
    assert_eq!(other_worker.admit(100).await.expect("admit").admitted, 0, "still at the cap");
    // Worker 2 finishes: one place frees, the third is admitted by worker 1.
    assert!(other_worker.finish(&d2, &event(EventKind::Completed, &d2)).await.expect("finish"));
    assert_eq!(q.admit(100).await.expect("admit").admitted, 1);
    q.enqueue(&jobs[3]).await.expect("enqueue the fourth");
    assert_eq!(q.admit(100).await.expect("admit").admitted, 0, "at the cap again");
    // Worker 1 defers its entry: its place frees, and the deferred entry, at the front, takes it.
    assert!(q.defer("w1", &d1).await.expect("defer"));
    assert_eq!(active(&q, "capped").await, 1);
    assert_eq!(other_worker.admit(100).await.expect("admit").admitted, 1);
    let last = stream(&q).await.pop().expect("an entry").1;
    assert_eq!(last.job_id, jobs[0].job_id, "the deferred entry went first");
    assert_eq!(q.waiting().await.expect("waiting"), [0, 1, 0], "the fourth still waits");
}

#[tokio::test]
async fn a_tenant_rate_is_a_token_bucket() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for i in 0..8 {
        q.enqueue(&normal("metered", &format!("M-{i}"))).await.expect("enqueue");
        q.enqueue(&normal("other", &format!("O-{i}"))).await.expect("enqueue");
    }
    let metered = Control {
        default_rate: Some(2.0),
        tenant_rates: [("other".to_owned(), 0.0)].into(),
        ..Control::default()
    };
    q.set_control(&metered).await.expect("rates");
    let admitted = |es: Vec<JobEntry>| es.iter().filter(|e| e.tenant_id.as_str() == "metered").count();
    // A full bucket holds two tokens; the unmetered tenant passes freely.
    let first = admit_one_by_one(&q, T0).await;
    assert_eq!((admitted(first.clone()), first.len()), (2, 10));
    assert_eq!(admitted(admit_one_by_one(&q, T0 + 499).await), 0, "not a whole token yet");
    assert_eq!(admitted(admit_one_by_one(&q, T0 + 500).await), 1);
    assert_eq!(admitted(admit_one_by_one(&q, T0 + 500).await), 0);
    // A clock behind the last refill refills nothing.
    assert_eq!(admitted(admit_one_by_one(&q, T0).await), 0);
    // A long pause refills the bucket to its size, no more.
    assert_eq!(admitted(admit_one_by_one(&q, T0 + 60_000).await), 2);
    assert_eq!(q.waiting().await.expect("waiting"), [0, 3, 0]);
}

#[tokio::test]
async fn a_kind_rate_limits_the_kind_across_tenants() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for t in ["t1", "t2", "t3"] {
        for i in 0..3 {
            q.enqueue(&flow_entry(t, "quota", &format!("{t}-q-{i}"), Priority::Normal)).await.expect("enqueue");
        }
        q.enqueue(&flow_entry(t, "plain", &format!("{t}-p"), Priority::High)).await.expect("enqueue");
    }
    q.set_control(&Control { kind_rates: [("quota".to_owned(), 1.0)].into(), ..Control::default() })
        .await
        .expect("rates");
    let kinds = |es: &[JobEntry], k: &str| es.iter().filter(|e| e.kind.as_deref() == Some(k)).count();
    let first = admit_one_by_one(&q, T0).await;
    assert_eq!((kinds(&first, "plain"), kinds(&first, "quota")), (3, 1), "one token for the kind");
    assert_eq!(kinds(&admit_one_by_one(&q, T0 + 999).await, "quota"), 0);
    assert_eq!(kinds(&admit_one_by_one(&q, T0 + 1000).await, "quota"), 1);
    assert_eq!(kinds(&admit_one_by_one(&q, T0 + 3000).await, "quota"), 1, "the bucket holds one");
    assert_eq!(q.waiting().await.expect("waiting"), [0, 6, 0]);
}

#[tokio::test]
async fn a_paused_kind_waits_while_others_pass_and_starts_on_resume() {
    let q = test_queue(|_| {}).await;
    let paused = Control { paused_kinds: ["report".to_owned()].into(), ..Control::default() };
    q.set_control(&paused).await.expect("pause the kind");
    let report = flow_entry("acme", "report", "R-1", Priority::Normal);
    let other = flow_entry("globex", "test", "G-1", Priority::Normal);
    q.enqueue(&report).await.expect("enqueue");
    q.enqueue(&other).await.expect("enqueue");
    assert_eq!(stream(&q).await.len(), 0, "nothing overtakes a waiting entry");
    let a = q.admit(10).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (1, 1), "the other kind passes");
    assert_eq!(stream(&q).await[0].1.job_id, other.job_id);
    assert_eq!(presence(&q, &report.job_id).await.as_deref(), Some("1:w"));
    q.set_control(&Control::default()).await.expect("resume");
    assert_eq!(q.admit(10).await.expect("admit").admitted, 1);
    assert_eq!(stream(&q).await[1].1.job_id, report.job_id);
}

#[tokio::test]
async fn a_paused_queue_admits_nothing_but_still_takes_entries() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for i in 0..3 {
        assert!(q.enqueue(&normal("acme", &format!("P-{i}"))).await.expect("enqueue"));
    }
    let a = q.admit(10).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (0, 3));
    assert_eq!(stream(&q).await.len(), 0);
    assert!(q.control().await.expect("control").paused);
    q.set_control(&Control::default()).await.expect("resume");
    let a = q.admit(10).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (3, 0));
}

#[tokio::test]
async fn a_deferred_entry_waits_again_with_the_same_attempt_and_a_fresh_delivery_count() {
    let q = test_queue(|c| c.lease = Duration::from_secs(60)).await;
    let mut e = entry("T-defer");
    e.attempt = 3;
    e.priority = Priority::High;
    q.enqueue(&e).await.expect("enqueue");
    let mut a = q.consumer("a").expect("consumer");
    let first = a.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    // Delivered twice: handed back and taken by another worker.
    assert_eq!(q.hand_back("a", std::slice::from_ref(&first.id), Duration::ZERO).await.expect("hand back"), 1);
    let mut b = q.consumer("b").expect("consumer");
    let d = b.reclaim(10).await.expect("reclaim").deliveries.remove(0);
    assert_eq!(d.deliveries, 2);
    // Its kind is paused meanwhile: the worker defers it.
    q.set_control(&Control { paused_kinds: [longhaul_testkit::TEST_KIND.to_owned()].into(), ..Control::default() })
        .await
        .expect("pause the kind");
    assert!(q.defer("b", &d).await.expect("defer"));
    assert!(!q.defer("b", &d).await.expect("defer again"), "a second run changes nothing");
    assert_eq!(presence(&q, &e.job_id).await.as_deref(), Some("3:w"));
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
    assert!(!q.enqueue(&e).await.expect("enqueue"), "refused while it waits");
    assert_eq!(q.waiting().await.expect("waiting"), [1, 0, 0]);
    assert_eq!(active(&q, "acme").await, 0);
    let stats = q.stats().await.expect("stats");
    assert_eq!((stats.stream_length, stats.pending, stats.waiting), (0, 0, 1));
    assert_eq!(q.admit(10).await.expect("admit").admitted, 0, "paused kind");
    q.set_control(&Control::default()).await.expect("resume");
    assert_eq!(q.admit(10).await.expect("admit").admitted, 1);
    let again = b.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!(again.entry, e, "the same entry, the same attempt");
    assert_eq!(again.deliveries, 1);
    assert_ne!(again.id, d.id);
    assert_eq!(presence(&q, &e.job_id).await, Some(format!("3:{}", again.id)));
    assert_eq!(active(&q, "acme").await, 1);
}

#[tokio::test]
async fn enqueue_of_a_waiting_job_is_refused() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    let e = entry("T-waiting");
    assert!(q.enqueue(&e).await.expect("first"));
    assert!(!q.enqueue(&e).await.expect("second"));
    assert!(!q.enqueue_at(&e, now_ms() + 1000).await.expect("delayed"));
    assert!(!q.enqueue(&JobEntry { attempt: 2, ..e.clone() }).await.expect("another attempt"));
    assert!(q.has_trace(&e.job_id).await.expect("trace"));
    assert_eq!(q.waiting().await.expect("waiting"), [0, 1, 0]);
    let mut conn = raw().await;
    let waiting: Vec<String> = conn.lrange(q.keys().wait(1, "acme", longhaul_testkit::TEST_KIND), 0, -1).await.expect("lrange");
    assert_eq!(waiting.len(), 1);
}

#[tokio::test]
async fn due_retries_are_promoted_into_their_wait_lists_when_entries_wait() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-retry");
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!(active(&q, "acme").await, 1);
    let next = JobEntry { attempt: 2, priority: Priority::Low, ..d.entry.clone() };
    let due = now_ms();
    q.retry(&d, &next, due, &event(EventKind::Retrying, &d)).await.expect("retry");
    assert_eq!(active(&q, "acme").await, 0, "a retried job leaves its active set");
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    assert_eq!(q.promote_due(due, 10).await.expect("promote").count, 1);
    assert_eq!(presence(&q, &e.job_id).await.as_deref(), Some("2:w"));
    assert_eq!(q.waiting().await.expect("waiting"), [0, 0, 1], "its priority's wait list");
    assert_eq!(stream(&q).await.len(), 0);
    assert!(!q.enqueue(&e).await.expect("enqueue"), "still one live entry");
    q.set_control(&Control::default()).await.expect("resume");
    assert_eq!(q.admit(10).await.expect("admit").admitted, 1);
    let promoted = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!(promoted.entry, next);
    assert_eq!(presence(&q, &e.job_id).await, Some(format!("2:{}", promoted.id)));
    assert_eq!(active(&q, "acme").await, 1);
}

#[tokio::test]
async fn finishing_twice_frees_one_place_once() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-twice");
    q.enqueue(&e).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!(active(&q, "acme").await, 1);
    let ev = event(EventKind::Failed, &d);
    assert!(q.finish(&d, &ev).await.expect("finish"));
    assert_eq!(active(&q, "acme").await, 0);
    // The job runs again (a retry on request), then the first finish is sent again.
    assert!(q.enqueue(&JobEntry { attempt: 2, ..e.clone() }).await.expect("enqueue again"));
    assert_eq!(active(&q, "acme").await, 1);
    assert!(!q.finish(&d, &ev).await.expect("finish again"));
    assert_eq!(active(&q, "acme").await, 1, "the second finish took nothing from the active set");
    // A duplicate dropped while the job's key names another entry keeps the job active.
    let d2 = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let mut conn = raw().await;
    let _: () = conn.set(q.keys().job(e.job_id.as_str()), "2:9999999999999-0").await.expect("set");
    let item = longhaul_queue::Finish { delivery: &d2, event: None, release: false };
    assert_eq!(q.finish_batch(&[item], "w", 0).await.expect("drop duplicate").0, 1);
    assert_eq!(active(&q, "acme").await, 1);
}

#[tokio::test]
async fn heal_drops_active_members_no_longer_in_the_stream() {
    let q = test_queue(|_| {}).await;
    let running = entry("T-running");
    q.enqueue(&running).await.expect("enqueue");
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    // Stale members: a finish lost with its worker (no presence key), a job whose entry was
    // deleted, one that waits, of two tenants.
    let mut conn = raw().await;
    let gone = normal("acme", "T-gone");
    let deleted = normal("globex", "T-deleted");
    let waiting = normal("globex", "T-waiting");
    let _: () = conn.set(q.keys().job(deleted.job_id.as_str()), "1:1-0").await.expect("set");
    let _: () = conn.set(q.keys().job(waiting.job_id.as_str()), "1:w").await.expect("set");
    let _: u64 = conn.sadd(q.keys().active("acme"), gone.job_id.as_str()).await.expect("sadd");
    for j in [&deleted, &waiting] {
        let _: u64 = conn.sadd(q.keys().active("globex"), j.job_id.as_str()).await.expect("sadd");
    }
    let _: u64 = conn.zadd(q.keys().tenants(), "globex", 0).await.expect("zadd");
    assert_eq!((active(&q, "acme").await, active(&q, "globex").await), (2, 2));
    // A little at a time: bounded work per call, going on where it stopped.
    let mut dropped = 0;
    for _ in 0..10 {
        dropped += q.heal(1).await.expect("heal");
    }
    assert_eq!(dropped, 3);
    assert_eq!((active(&q, "acme").await, active(&q, "globex").await), (1, 0));
    let members: Vec<String> = conn.smembers(q.keys().active("acme")).await.expect("smembers");
    assert_eq!(members, vec![running.job_id.to_string()], "the running job stays");
    let tenants: Vec<String> = conn.zrange(q.keys().tenants(), 0, -1).await.expect("zrange");
    assert_eq!(tenants, vec!["acme".to_owned()], "a tenant with no active jobs leaves the index");
    assert_eq!(q.heal(100).await.expect("heal"), 0);
    assert!(q.finish(&d, &event(EventKind::Completed, &d)).await.expect("finish"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_defer_racing_a_finish_of_the_same_entry_loses_or_wins_whole() {
    let q = test_queue(|_| {}).await;
    let mut c = q.consumer("w").expect("consumer");
    let mut deferred_wins = 0;
    for i in 0..20 {
        let e = normal("acme", &format!("T-race-{i}"));
        q.enqueue(&e).await.expect("enqueue");
        let d: Delivery = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
        let (q1, q2, d1, d2) = (q.queue.clone(), q.queue.clone(), d.clone(), d.clone());
        let ev = event(EventKind::Completed, &d);
        let defer = tokio::spawn(async move { q1.defer("w", &d1).await.expect("defer") });
        let finish = tokio::spawn(async move { q2.finish(&d2, &ev).await.expect("finish") });
        let (deferred, finished) = (defer.await.expect("task"), finish.await.expect("task"));
        assert!(deferred ^ finished, "exactly one wins: deferred {deferred}, finished {finished}");
        let waiting = q.waiting().await.expect("waiting");
        if deferred {
            deferred_wins += 1;
            assert_eq!(waiting, [0, 1, 0]);
            assert_eq!(presence(&q, &e.job_id).await.as_deref(), Some("1:w"));
            // Let it run and finish, so the next round starts clean.
            assert_eq!(q.admit(10).await.expect("admit").admitted, 1);
            let again = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
            assert!(q.finish(&again, &event(EventKind::Completed, &again)).await.expect("finish"));
        } else {
            assert_eq!(waiting, [0, 0, 0]);
        }
        assert_eq!(presence(&q, &e.job_id).await, None);
        assert_eq!(active(&q, "acme").await, 0);
        assert_eq!(stream(&q).await.len(), 0);
    }
    eprintln!("defer won {deferred_wins} of 20 races");
}

#[tokio::test]
async fn a_waiting_job_s_presence_survives_other_admissions() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { default_cap: Some(1), ..Control::default() }).await.expect("cap");
    let first = normal("capped", "K-1");
    let held = normal("capped", "K-2");
    q.enqueue(&first).await.expect("enqueue");
    q.enqueue(&held).await.expect("enqueue");
    for i in 0..5 {
        q.enqueue(&normal(&format!("other-{i}"), "O")).await.expect("enqueue");
    }
    let a = q.admit(100).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (5, 1));
    assert_eq!(presence(&q, &held.job_id).await.as_deref(), Some("1:w"));
    assert!(q.has_trace(&held.job_id).await.expect("trace"));
    assert!(!q.enqueue(&held).await.expect("enqueue"), "still waiting: refused");
    // The first one finishes; the held one is admitted and its key names its entry.
    let mut c = q.consumer("w").expect("consumer");
    let d = c.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    assert_eq!(d.entry.job_id, first.job_id);
    q.finish(&d, &event(EventKind::Completed, &d)).await.expect("finish");
    assert_eq!(q.admit(100).await.expect("admit").admitted, 1);
    let (id, admitted) = stream(&q).await.pop().expect("entry");
    assert_eq!(admitted.job_id, held.job_id);
    assert_eq!(presence(&q, &held.job_id).await, Some(format!("1:{id}")));
}

#[tokio::test]
async fn one_admission_visits_each_blocked_flow_once_and_the_ring_keeps_turning() {
    let q = test_queue(|_| {}).await;
    let free = ["a", "b", "c"];
    let caps = free.iter().map(|t| ((*t).to_owned(), 0)).collect();
    q.set_control(&Control { default_cap: Some(1), tenant_caps: caps, ..Control::default() })
        .await
        .expect("control");
    // 200 tenants at their cap, each with one more entry waiting: 200 blocked flows.
    let blocked = 200;
    for i in 0..blocked {
        assert!(q.enqueue(&normal(&format!("capped-{i}"), "first")).await.expect("enqueue"));
    }
    assert_eq!(stream(&q).await.len(), blocked, "under the cap: straight in");
    for i in 0..blocked {
        assert!(q.enqueue(&normal(&format!("capped-{i}"), "second")).await.expect("enqueue"));
    }
    for i in 0..200 {
        for t in free {
            assert!(q.enqueue(&normal(t, &format!("{t}-{i}"))).await.expect("enqueue"));
        }
    }
    let flows = blocked as u64 + 3;
    assert_eq!(ring(&q, 1).await.len() as u64, flows);
    // Round robin across calls, the blocked flows passed over once per call.
    let mut order = Vec::new();
    for _ in 0..6 {
        let a = q.admit(1).await.expect("admit");
        assert_eq!(a.admitted, 1);
        assert!(a.visited <= 1 + flows, "{a:?}");
        order.push(stream(&q).await.pop().expect("an entry").1.tenant_id.to_string());
    }
    assert_eq!(order, ["a", "b", "c", "a", "b", "c"]);
    // One big call: its work is bounded by what it admits plus the flows, not their product.
    let started = Instant::now();
    let a = q.admit(512).await.expect("admit");
    eprintln!("admit(512) past {blocked} blocked flows: {a:?} in {:?}", started.elapsed());
    assert_eq!(a.admitted, 512);
    assert!(a.visited <= 512 + flows, "each blocked flow visited once: {a:?}");
    assert!(a.visited >= 512 + blocked as u64, "every blocked flow was looked at: {a:?}");
    // Every flow is still in the ring, once; the free tenants got equal shares.
    let members = ring(&q, 1).await;
    let unique: std::collections::BTreeSet<&String> = members.iter().collect();
    assert_eq!((members.len() as u64, unique.len() as u64), (flows, flows), "{members:?}");
    let got = stream(&q).await;
    let share = |t: &str| got.iter().filter(|(_, e)| e.tenant_id.as_str() == t).count();
    let shares = [share("a"), share("b"), share("c")];
    assert_eq!(shares.iter().sum::<usize>(), 518);
    assert!(shares.iter().max().expect("max") - shares.iter().min().expect("min") <= 1, "{shares:?}");
}

#[tokio::test]
async fn a_paused_or_limited_kind_holds_back_only_its_own_flows() {
    let q = test_queue(|c| c.lease = Duration::from_secs(60)).await;
    let report = |key: &str| flow_entry("acme", "report", key, Priority::Normal);
    // A report entry is delivered, then its kind is paused: the worker defers it.
    let r0 = report("R-0");
    assert!(q.enqueue(&r0).await.expect("enqueue"));
    let mut w = q.consumer("w").expect("consumer");
    let d = w.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    let control = Control {
        paused_kinds: ["report".to_owned()].into(),
        kind_rates: [("quota".to_owned(), 1.0)].into(),
        ..Control::default()
    };
    q.set_control(&control).await.expect("control");
    assert!(q.defer("w", &d).await.expect("defer"));
    // Then the same tenant, same queue and priority, enqueues other kinds behind it.
    let r1 = report("R-1");
    let tests: Vec<JobEntry> = (0..3).map(|i| normal("acme", &format!("T-{i}"))).collect();
    let quota: Vec<JobEntry> =
        (0..3).map(|i| flow_entry("acme", "quota", &format!("Q-{i}"), Priority::Normal)).collect();
    let legacy = JobEntry { kind: None, ..normal("acme", "L-0") };
    for e in [&r1].into_iter().chain(&tests).chain(&quota).chain([&legacy]) {
        assert!(q.enqueue(e).await.expect("enqueue"));
    }
    assert_eq!(stream(&q).await.len(), 0, "nothing overtakes a waiting entry");
    let a = q.admit_at(T0, 100).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (5, 4), "{a:?}");
    let got: Vec<JobEntry> = stream(&q).await.into_iter().map(|(_, e)| e).collect();
    let kind = |k: Option<&str>| got.iter().filter(|e| e.kind.as_deref() == k).cloned().collect::<Vec<_>>();
    assert_eq!(kind(Some("test")), tests, "the other kind passes, in order");
    assert_eq!(kind(Some("quota")), quota[..1], "one token for the limited kind");
    assert_eq!(kind(None), std::slice::from_ref(&legacy), "an entry without a kind is its own flow");
    assert!(kind(Some("report")).is_empty());
    // Each kind waits in its own flow, the deferred entry at the front of its own.
    let ids = |es: &[&JobEntry]| es.iter().map(|e| e.job_id.to_string()).collect::<Vec<_>>();
    assert_eq!(flow_jobs(&q, 1, "acme", "report").await, ids(&[&r0, &r1]));
    assert_eq!(flow_jobs(&q, 1, "acme", "quota").await, ids(&[&quota[1], &quota[2]]));
    assert!(flow_jobs(&q, 1, "acme", "").await.is_empty());
    let mut members = ring(&q, 1).await;
    members.sort();
    assert_eq!(members, ["acme/quota", "acme/report"]);
    // Resumed: the report entries go, the deferred one first.
    q.set_control(&Control::default()).await.expect("resume");
    assert_eq!(q.admit(100).await.expect("admit").admitted, 4);
    let tail: Vec<JobId> = stream(&q).await.into_iter().skip(5).map(|(_, e)| e.job_id).collect();
    let reports: Vec<JobId> = tail.into_iter().filter(|j| *j == r0.job_id || *j == r1.job_id).collect();
    assert_eq!(reports, [r0.job_id.clone(), r1.job_id.clone()]);
}

#[tokio::test]
async fn token_buckets_go_by_redis_s_clock_not_the_caller_s() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { default_rate: Some(1.0), ..Control::default() }).await.expect("rate");
    // A worker whose clock runs a minute ahead promotes a due retry: it goes straight in, and
    // the bucket is stamped by Redis's clock (these tests' Redis shares this machine's clock).
    let e = entry("T-fast-clock");
    assert!(q.enqueue_at(&e, now_ms()).await.expect("schedule"));
    let fast = now_ms() + 60_000;
    assert_eq!(q.promote_due(fast, 10).await.expect("promote").count, 1);
    assert_eq!(stream(&q).await.len(), 1, "the bucket was full");
    let (tokens, last) = bucket(&q, "t:acme").await.expect("a bucket");
    let now = now_ms();
    assert!(tokens < 1.0, "{tokens}");
    assert!(last <= now + 1000 && last + 5000 >= now, "stamped {last}, Redis's time about {now}");
}

#[tokio::test]
async fn a_refill_stamped_in_the_future_starves_nobody() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for i in 0..3 {
        q.enqueue(&normal("acme", &format!("F-{i}"))).await.expect("enqueue");
    }
    q.set_control(&Control { default_rate: Some(4.0), ..Control::default() }).await.expect("rate");
    // The bucket as a caller a minute fast left it (an older version's, or a clock before a
    // failover): empty, refilled "a minute from now".
    let mut conn = raw().await;
    let future = now_ms() + 60_000;
    let _: u64 = conn.hset(q.keys().tokens(), "t:acme", format!("0.000000:{future}")).await.expect("hset");
    assert_eq!(q.admit(10).await.expect("admit").admitted, 0, "no token now");
    let (_, restamped) = bucket(&q, "t:acme").await.expect("a bucket");
    assert!(restamped < future, "restamped at Redis's time: {restamped}");
    // It refills from now on, at its rate (4 per second), not a minute later.
    let started = Instant::now();
    wait_until(Duration::from_secs(10), "a token", async || match q.admit(10).await.expect("admit").admitted {
        0 => Err("none yet"),
        _ => Ok(()),
    })
    .await;
    eprintln!("first token after {:?}", started.elapsed());
}

#[tokio::test]
async fn only_the_owner_of_a_delivery_defers_it() {
    let q = test_queue(|c| c.lease = Duration::from_secs(60)).await;
    let e = entry("T-owner");
    q.enqueue(&e).await.expect("enqueue");
    let mut a = q.consumer("a").expect("consumer");
    let stale = a.fetch(1, NO_WAIT).await.expect("fetch").remove(0);
    // Worker a stalls past its lease: b reclaims the entry and runs it.
    assert_eq!(q.hand_back("a", std::slice::from_ref(&stale.id), Duration::ZERO).await.expect("hand back"), 1);
    let mut b = q.consumer("b").expect("consumer");
    let running = b.reclaim(10).await.expect("reclaim").deliveries.remove(0);
    assert_eq!((running.id.as_str(), running.deliveries), (stale.id.as_str(), 2));
    // a wakes up with its kind paused and defers its stale delivery: nothing happens.
    q.set_control(&Control { paused_kinds: [longhaul_testkit::TEST_KIND.to_owned()].into(), ..Control::default() })
        .await
        .expect("pause the kind");
    assert!(!q.defer("a", &stale).await.expect("defer"), "b owns the entry");
    assert!(!q.defer("nobody", &stale).await.expect("defer"), "nor does an unknown consumer");
    assert_eq!(q.waiting().await.expect("waiting"), [0, 0, 0]);
    assert_eq!(presence(&q, &e.job_id).await, Some(format!("1:{}", running.id)));
    assert_eq!(active(&q, "acme").await, 1);
    assert_eq!(q.stats().await.expect("stats").pending, 1);
    // b finishes what it runs.
    assert!(q.finish(&running, &event(EventKind::Completed, &running)).await.expect("finish"));
    assert_eq!(active(&q, "acme").await, 0);
}

#[tokio::test]
async fn heal_puts_a_flow_that_lost_its_ring_entry_back() {
    let q = test_queue(|_| {}).await;
    q.set_control(&Control { paused: true, ..Control::default() }).await.expect("pause");
    for i in 0..3 {
        q.enqueue(&normal("lost", &format!("L-{i}"))).await.expect("enqueue");
    }
    for i in 0..2 {
        q.enqueue(&normal("kept", &format!("K-{i}"))).await.expect("enqueue");
    }
    // The ring loses a flow (eviction, tampering); the index holds stale and bad members.
    let mut conn = raw().await;
    let _: u64 = conn.lrem(q.keys().ring(1), 0, "lost/test").await.expect("lrem");
    let _: u64 = conn.sadd(q.keys().flows(), &["1:ghost/test", "junk"]).await.expect("sadd");
    q.set_control(&Control::default()).await.expect("resume");
    let a = q.admit(100).await.expect("admit");
    assert_eq!((a.admitted, a.waiting), (2, 3), "the lost flow is never visited");
    // A little at a time: the index is walked with a cursor.
    let mut repaired = 0;
    for _ in 0..10 {
        repaired += q.heal(1).await.expect("heal");
    }
    assert_eq!(repaired, 1, "one flow put back");
    assert_eq!(ring(&q, 1).await, ["lost/test"]);
    let mut index: Vec<String> = conn.smembers(q.keys().flows()).await.expect("smembers");
    index.sort();
    assert_eq!(index, ["1:lost/test"], "stale and bad members leave the index");
    assert_eq!(q.admit(100).await.expect("admit").admitted, 3);
    let flows: u64 = conn.exists(q.keys().flows()).await.expect("exists");
    assert_eq!(flows, 0, "an emptied flow leaves the index");
    assert_eq!(q.heal(100).await.expect("heal"), 0, "nothing left to repair");
    assert_eq!(ring(&q, 1).await, Vec::<String>::new());
}

#[tokio::test]
async fn the_control_mirror_round_trips_and_refuses_bad_values() {
    let q = test_queue(|_| {}).await;
    assert_eq!(q.control().await.expect("control"), Control::default(), "none written");
    let c = Control {
        ahead: 64,
        default_cap: Some(4),
        default_rate: Some(0.5),
        tenant_caps: [("acme".to_owned(), 10)].into(),
        tenant_rates: [("acme".to_owned(), 3.25)].into(),
        kind_rates: [("triage".to_owned(), 7.0)].into(),
        paused: false,
        paused_kinds: ["report".to_owned()].into(),
    };
    q.set_control(&c).await.expect("set");
    assert_eq!(q.control().await.expect("control"), c);
    // Replaced whole: what the new mirror lacks is gone.
    let smaller = Control { ahead: 8, ..Control::default() };
    q.set_control(&smaller).await.expect("set");
    assert_eq!(q.control().await.expect("control"), smaller);
    let bad = Control { tenant_rates: [("acme".to_owned(), -2.0)].into(), ..Control::default() };
    let err = q.set_control(&bad).await.expect_err("refused").to_string();
    assert!(err.contains("tenant_rates") && err.contains("acme: -2"), "{err}");
    assert_eq!(q.control().await.expect("control"), smaller, "nothing written");
}
}
