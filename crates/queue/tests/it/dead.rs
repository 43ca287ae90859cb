//! Dead letters: undecodable and stalled entries in the dead stream, listed in pages, inspected,
//! replayed (the raw fields back in the jobs stream, byte for byte; a repeated replay reports the
//! first one's success) and purged; a replay racing a purge of the same dead letter: exactly one of
//! them takes it.

use longhaul_queue::{DeadLetter, EventKind, QueueError};
use redis::AsyncCommands;

use crate::harness::{TestQueue, entry, on_both_redis, raw, test_queue};
use crate::protocol::{NO_WAIT, event};

/// Adds an entry with `fields` to the jobs stream, raw.
async fn xadd_raw(q: &TestQueue, fields: &[(&str, &[u8])]) -> String {
    let mut conn = raw().await;
    conn.xadd(q.keys().jobs(), "*", fields).await.expect("xadd")
}

/// The fields of every entry of `stream`, raw, oldest first.
async fn raw_entries(stream: &str) -> Vec<(String, Vec<(Vec<u8>, Vec<u8>)>)> {
    let mut conn = raw().await;
    let reply: Vec<(String, Vec<Vec<u8>>)> =
        redis::cmd("XRANGE").arg(stream).arg("-").arg("+").query_async(&mut conn).await.expect("xrange");
    reply
        .into_iter()
        .map(|(id, flat)| (id, flat.chunks(2).map(|kv| (kv[0].clone(), kv[1].clone())).collect()))
        .collect()
}

/// Has a consumer read every entry of the jobs stream, dead-lettering the undecodable ones;
/// returns the ones it could decode.
async fn drain(q: &TestQueue, consumer: &str) -> Vec<longhaul_queue::Delivery> {
    q.consumer(consumer).expect("consumer").fetch(100, NO_WAIT).await.expect("fetch")
}

fn field<'a>(d: &'a DeadLetter, name: &str) -> Option<&'a str> {
    d.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

on_both_redis! {
#[tokio::test]
async fn dead_letters_are_listed_inspected_and_purged() {
    let q = test_queue(|_| {}).await;
    let poison = xadd_raw(&q, &[("j", b"not-a-job"), ("t", b"acme")]).await;
    let e = entry("T-stalled");
    q.enqueue(&e).await.expect("enqueue");
    let got = drain(&q, "w").await;
    assert_eq!(got.len(), 1, "the poison entry is dead-lettered, the job delivered");
    let d = &got[0];
    // The job stalls: its delivery is dead-lettered, once, while it is pending.
    let stalled =
        q.dead_letter_stalled(d, "stalled: delivered 6 times without finishing").await.expect("dead-letter");
    assert!(stalled.is_some());
    assert_eq!(q.dead_letter_stalled(d, "again").await.expect("repeat"), None, "a repeat adds nothing");
    q.finish(d, &event(EventKind::Stalled, d)).await.expect("finish");
    assert_eq!(q.dead_letter_stalled(d, "late").await.expect("late"), None, "finished: not pending");
    let late = xadd_raw(&q, &[("junk", b"1")]).await;
    assert!(drain(&q, "w2").await.is_empty());

    let all = q.dead_letters(None, 10).await.expect("list");
    let sources: Vec<&str> = all.iter().map(|d| d.source_id.as_str()).collect();
    assert_eq!(sources, [poison.as_str(), d.id.as_str(), late.as_str()], "oldest first");
    let (first, second) = (&all[0], &all[1]);
    assert!(first.reason.contains("\"j\": \"not-a-job\" is not a job id"), "{}", first.reason);
    assert_eq!((first.job_id.as_deref(), first.tenant_id.as_deref(), first.kind.as_deref()), (Some("not-a-job"), Some("acme"), None));
    assert!(first.entry().is_err());
    assert_eq!(second.reason, "stalled: delivered 6 times without finishing");
    assert_eq!(second.job_id.as_deref(), Some(e.job_id.as_str()));
    assert_eq!(second.kind.as_deref(), Some("test"));
    assert_eq!(second.entry().expect("a stalled entry decodes"), e);
    assert_eq!(Some(second.id.clone()), stalled);
    assert!(second.at_ms > 0 && second.at_ms <= longhaul_queue::now_ms());
    assert_eq!(field(second, "a"), Some("1"));

    // Pages: after the last id of a page comes the next.
    let page = q.dead_letters(None, 2).await.expect("page 1");
    assert_eq!(page, all[..2]);
    let next = q.dead_letters(Some(&page[1].id), 2).await.expect("page 2");
    assert_eq!(next, all[2..]);
    assert!(q.dead_letters(Some(&all[2].id), 2).await.expect("past the end").is_empty());
    assert!(q.dead_letters(None, 0).await.expect("none asked").is_empty());

    assert_eq!(q.dead_letter(&second.id).await.expect("get"), Some(second.clone()));
    assert_eq!(q.dead_letter("1-1").await.expect("get a missing one"), None);
    for bad in ["abc", "1-x", ""] {
        let err = q.dead_letter(bad).await.expect_err("not an id");
        assert!(matches!(err, QueueError::DeadLetter { .. }), "{bad}: {err:?}");
        assert!(q.dead_letters(Some(bad), 5).await.is_err());
    }
    // A bad id among others deletes nothing.
    assert!(q.purge_dead(&[first.id.clone(), "nope".into()]).await.is_err());
    assert_eq!(q.purge_dead(&[first.id.clone(), "1-1".into()]).await.expect("purge"), 1);
    assert_eq!(q.purge_dead(std::slice::from_ref(&first.id)).await.expect("purge again"), 0);
    assert_eq!(q.dead_letter(&first.id).await.expect("get"), None);
    assert_eq!(q.purge_all_dead().await.expect("purge all"), 2);
    assert_eq!(q.purge_all_dead().await.expect("purge all again"), 0);
    assert_eq!(q.stats().await.expect("stats").dead_letters, 0);
}

#[tokio::test]
async fn a_stalled_entry_deleted_from_the_stream_is_dead_lettered_as_delivered() {
    let q = test_queue(|_| {}).await;
    let e = entry("T-deleted-stalled");
    q.enqueue(&e).await.expect("enqueue");
    let d = drain(&q, "w").await.remove(0);
    let mut conn = raw().await;
    let _: u64 = conn.xdel(q.keys().jobs(), &[d.id.as_str()]).await.expect("xdel");
    let id = q.dead_letter_stalled(&d, "stalled").await.expect("dead-letter").expect("still pending");
    let dead = q.dead_letter(&id).await.expect("get").expect("there");
    assert_eq!((dead.source_id.as_str(), dead.entry().expect("decodes")), (d.id.as_str(), e));
}

#[tokio::test]
async fn a_replay_puts_the_raw_fields_back_in_the_jobs_stream() {
    let q = test_queue(|_| {}).await;
    let fields: [(&str, &[u8]); 3] = [("j", b"not-a-job"), ("junk", b"\xff\xfe\x00 binary"), ("reason", b"raw")];
    xadd_raw(&q, &fields).await;
    assert!(drain(&q, "w").await.is_empty());
    let dead = q.dead_letters(None, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(field(&dead[0], "reason"), Some("raw"), "a raw field named like a leading one is kept");
    assert!(raw_entries(&q.keys().jobs()).await.is_empty(), "dead-lettered entries leave the stream");

    assert!(q.replay_dead(&dead[0].id).await.expect("replay"));
    let back = raw_entries(&q.keys().jobs()).await;
    assert_eq!(back.len(), 1, "{back:?}");
    let want: Vec<(Vec<u8>, Vec<u8>)> = fields.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.to_vec())).collect();
    assert_eq!(back[0].1, want, "the raw fields, in order, byte for byte");
    assert!(q.dead_letters(None, 10).await.expect("list").is_empty());
    // Run again (a client's retry after a lost reply): the same success, nothing added.
    assert!(q.replay_dead(&dead[0].id).await.expect("replay again"), "replayed already");
    assert_eq!(raw_entries(&q.keys().jobs()).await, back, "no second copy");
    // Once forgotten, a replayed dead letter is simply gone.
    let mut conn = raw().await;
    let _: u64 = conn.del(q.keys().replayed(&dead[0].id)).await.expect("del");
    assert!(!q.replay_dead(&dead[0].id).await.expect("replay later"), "gone");
    // Still undecodable, it is dead-lettered again when read.
    assert!(drain(&q, "w").await.is_empty());
    assert_eq!(q.dead_letters(None, 10).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_dead_letter_with_nothing_to_replay_is_refused_and_kept() {
    let q = test_queue(|_| {}).await;
    q.enqueue(&entry("T-vanished")).await.expect("enqueue");
    let d = drain(&q, "w").await.remove(0);
    let mut conn = raw().await;
    let _: u64 = conn.xdel(q.keys().jobs(), &[d.id.as_str()]).await.expect("xdel");
    // Read again by its consumer, the pending entry has no fields left: dead-lettered bare.
    assert!(drain(&q, "w").await.is_empty());
    let dead = q.dead_letters(None, 10).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert!(dead[0].fields.is_empty(), "{:?}", dead[0]);
    let err = q.replay_dead(&dead[0].id).await.expect_err("nothing to replay");
    assert!(err.to_string().contains("no fields to put back"), "{err}");
    assert_eq!(q.dead_letters(None, 10).await.expect("list"), dead, "kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replay_racing_a_purge_lets_exactly_one_take_the_dead_letter() {
    let q = test_queue(|_| {}).await;
    for round in 0..20 {
        xadd_raw(&q, &[("round", round.to_string().as_bytes()), ("j", b"bad")]).await;
        assert!(drain(&q, &format!("w{round}")).await.is_empty());
        let id = q.dead_letters(None, 1).await.expect("list").remove(0).id;
        let (a, b) = (q.queue.clone(), q.queue.clone());
        let (replay_id, purge_id) = (id.clone(), vec![id.clone()]);
        let replay = tokio::spawn(async move { a.replay_dead(&replay_id).await.expect("replay") });
        let purge = tokio::spawn(async move { b.purge_dead(&purge_id).await.expect("purge") });
        let (replayed, purged) = (replay.await.expect("task"), purge.await.expect("task"));
        assert_eq!(u64::from(replayed) + purged, 1, "round {round}: replayed {replayed}, purged {purged}");
        assert!(q.dead_letters(None, 10).await.expect("list").is_empty(), "round {round}");
        // A replay is one entry back in the jobs stream, never two; a purge, none.
        let back = raw_entries(&q.keys().jobs()).await;
        assert_eq!(back.len(), usize::from(replayed), "round {round}: {back:?}");
        // Empty the stream (keeping its group) for the next round.
        let mut conn = raw().await;
        let _: u64 = redis::cmd("XTRIM").arg(q.keys().jobs()).arg("MAXLEN").arg(0).query_async(&mut conn).await.expect("xtrim");
    }
}
}
