//! A partitioned queue on the Redis Cluster: the API sends each job to its job id's partition, and
//! the reconciler restores lost entries into the same partition.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{Method, StatusCode};
use longhaul_core::{TenantId, TicketId};
use longhaul_producer::{Queues, reconcile_once};
use longhaul_queue::partition_name;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jobs_go_to_their_partition_and_are_reconciled_there() {
    let db = TestDb::new(Backend::Sqlite).await;
    let q = TestQueue::cluster(|c| c.partitions = 3).await;
    let partitions = q.partitions().expect("partitions");
    for p in &partitions {
        p.prepare(None).await.expect("prepare partition");
    }
    let tenant = TenantId::parse("acme").expect("tenant");
    let (_, key) = db.create_tenant(&tenant, "Acme", None).await.expect("tenant");
    let key = key.expose().to_owned();
    let router = build(&db, &q.url, &q.prefix, &["--queue-partitions", "3"]).await.router();

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for i in 0..12 {
        let ticket = format!("T-{i}");
        let body = serde_json::json!({"ticket_id": ticket, "subject": "Refund", "body": "Charged twice"});
        let r = call(&router, Method::POST, "/v1/tickets", Some(&key), Some(body), &[]).await;
        assert!(r.status.is_success(), "{r:?}");
        let r =
            call(&router, Method::POST, &format!("/v1/tickets/{ticket}/triage"), Some(&key), None, &[]).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        let job = longhaul_triage::job_id_for_ticket(&tenant, &TicketId::parse(&ticket).expect("ticket"), 1);
        assert_eq!(r.json["job_id"], job.as_str());
        *expected.entry(partition_name("triage", 3, job.as_str())).or_default() += 1;
    }
    assert!(expected.len() >= 2, "12 jobs over 3 partitions: {expected:?}");
    let lengths = async || -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for p in &partitions {
            let n = p.stats().await.expect("stats").stream_length;
            if n > 0 {
                out.insert(p.config().queue.clone(), n);
            }
        }
        out
    };
    assert_eq!(lengths().await, expected, "each job in its job id's partition");
    assert_eq!(q.stats().await.expect("stats").stream_length, 0, "nothing in the unsplit queue");

    // One partition loses its keys; the reconciler restores exactly its jobs, into it.
    let lost = expected.keys().next().expect("a partition").clone();
    let mut conn = q.raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:{{{lost}}}:*", q.prefix))
        .query_async(&mut conn)
        .await
        .expect("keys");
    let _: u64 = redis::cmd("DEL").arg(&keys).query_async(&mut conn).await.expect("del");
    for p in &partitions {
        p.prepare(None).await.expect("groups back");
    }
    let registry = longhaul_producer::startup::builtin().expect("kinds");
    let queues = Queues::new(&q, &registry).expect("queues");
    let restored = reconcile_once(&db, &registry, &queues, Duration::ZERO).await.expect("reconcile");
    assert_eq!(restored as u64, expected[&lost]);
    assert_eq!(lengths().await, expected);
    for i in 0..12 {
        let ticket = TicketId::parse(format!("T-{i}")).expect("ticket");
        let job = longhaul_triage::job_id_for_ticket(&tenant, &ticket, 1);
        assert!(q.route(job.as_str()).expect("route").has_trace(&job).await.expect("trace"));
    }
}
