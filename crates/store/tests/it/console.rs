//! The console's storage on both backends: login sessions (valid until they expire, their
//! operator revoked, or logged out; pruned), and its pages' reads — a job's operation log, the
//! live jobs per kind (with the longest wait) and per tenant, and the jobs finished per minute.

use std::time::Duration;

use chrono::Utc;
use longhaul_core::{ErrorClass, JobContext, OperationId};
use longhaul_store::{AttemptFailure, OperatorName, Store};
use serde_json::json;

use crate::harness::{applied, conformance, lease, setup_job_of, tenant};

conformance!(console_sessions_live_until_expiry_logout_or_revocation, |store: Store| async move {
    store.create_operator(&OperatorName::parse("ops").expect("name")).await.expect("operator");
    let (token, session) =
        store.create_console_session("ops", Duration::from_secs(3600)).await.expect("session");
    assert!(token.expose().starts_with(longhaul_store::console::SESSION_TOKEN_PREFIX));
    assert_eq!(session.operator, "ops");
    assert_eq!(session.csrf.len(), 64, "a 256-bit CSRF token, hex");
    let read = store.console_session(token.expose()).await.expect("read").expect("valid");
    assert_eq!(read, session);
    // Another token, a truncated one, or an operator's key open nothing.
    let (_, other) = store.create_console_session("ops", Duration::from_secs(3600)).await.expect("session");
    assert_ne!(other.csrf, session.csrf, "each session has its own CSRF token");
    let truncated = &token.expose()[..token.expose().len() - 1];
    for bad in ["", "lhc_", truncated, "lho_00"] {
        assert_eq!(store.console_session(bad).await.expect("read"), None, "{bad:?}");
    }
    // No such operator: refused by the foreign key.
    assert!(store.create_console_session("nobody", Duration::from_secs(60)).await.is_err());

    // Expired: refused, then pruned.
    let (expired, _) = store.create_console_session("ops", Duration::ZERO).await.expect("session");
    assert_eq!(store.console_session(expired.expose()).await.expect("read"), None);
    assert!(store.prune_console_sessions().await.expect("prune") >= 1);

    // Logged out: gone.
    assert!(store.delete_console_session(token.expose()).await.expect("logout"));
    assert!(!store.delete_console_session(token.expose()).await.expect("again"));
    assert_eq!(store.console_session(token.expose()).await.expect("read"), None);

    // Revoked: every session of the operator stops at once, also after a new operator of the
    // same name is created.
    let (kept, _) = store.create_console_session("ops", Duration::from_secs(3600)).await.expect("session");
    assert!(store.console_session(kept.expose()).await.expect("read").is_some());
    assert!(store.revoke_operator("ops").await.expect("revoke"));
    assert_eq!(store.console_session(kept.expose()).await.expect("read"), None);
    store.create_operator(&OperatorName::parse("ops").expect("name")).await.expect("operator again");
    assert_eq!(store.console_session(kept.expose()).await.expect("read"), None);
});

conformance!(a_jobs_operation_log_lists_its_steps_in_order, |store: Store| async move {
    let job = applied_job(&store, "acme", "a").await;
    let other = applied_job(&store, "acme", "b").await;
    let ctx = JobContext {
        job_id: job.job_id.clone(),
        tenant_id: job.tenant_id.clone(),
        attempt: 1,
        kind: job.kind.clone(),
    };
    let first = OperationId::derive(&job.job_id, "load", "fetch");
    let second = OperationId::derive(&job.job_id, "apply", "webhook");
    store.begin_operation(&ctx, &first, "load", "fetch").await.expect("begin");
    store.finish_operation(&job.tenant_id, &first, 1, &json!({"rows": 3})).await.expect("finish");
    store.begin_operation(&ctx, &second, "apply", "webhook").await.expect("begin");
    // Another job's step is not this job's.
    let other_ctx = JobContext { job_id: other.job_id.clone(), ..ctx.clone() };
    let theirs = OperationId::derive(&other.job_id, "load", "fetch");
    store.begin_operation(&other_ctx, &theirs, "load", "fetch").await.expect("begin");

    let steps = store.job_operations(&job.tenant_id, &job.job_id).await.expect("steps");
    let shown: Vec<_> = steps
        .iter()
        .map(|s| (s.operation_id.as_str(), s.stage.as_str(), s.effect.as_str(), s.state.as_str(), s.attempt))
        .collect();
    assert_eq!(
        shown,
        [(first.as_str(), "load", "fetch", "done", 1), (second.as_str(), "apply", "webhook", "started", 1)]
    );
    assert_eq!(steps[0].result, Some(json!({"rows": 3})));
    assert_eq!(steps[1].result, None);
    // Scoped by tenant as well.
    assert!(store.job_operations(&tenant("globex"), &job.job_id).await.expect("steps").is_empty());
});

conformance!(live_jobs_are_counted_per_kind_and_tenant_with_the_longest_wait, |store: Store| async move {
    let t0 = Utc::now();
    // summarize: one running, one queued (waiting since its submission), one retry not yet due.
    let running = applied_job_of(&store, "acme", "summarize", "r").await;
    applied(store.start_next(&running.tenant_id, &running.job_id, lease("1-0", 1), 1).await.expect("start"));
    let queued = applied_job_of(&store, "acme", "summarize", "q").await;
    let retry = applied_job_of(&store, "globex", "summarize", "later").await;
    applied(store.start_next(&retry.tenant_id, &retry.job_id, lease("2-0", 1), 1).await.expect("start"));
    let later = Utc::now() + chrono::Duration::hours(1);
    let failure = AttemptFailure::new(1, ErrorClass::Retryable, "busy");
    applied(store.schedule_retry(&retry.tenant_id, &retry.job_id, failure, later).await.expect("retry"));
    // triage: one finished (not live).
    let done = applied_job_of(&store, "acme", "triage", "d").await;
    applied(store.start_next(&done.tenant_id, &done.job_id, lease("3-0", 1), 1).await.expect("start"));
    applied(store.complete(&done.tenant_id, &done.job_id, 1, &json!("ok")).await.expect("complete"));

    let now = Utc::now();
    let load = store.kind_load(now).await.expect("load");
    assert_eq!(load.len(), 1, "only kinds with live jobs: {load:?}");
    assert_eq!((load[0].kind.as_str(), load[0].running, load[0].queued), ("summarize", 1, 2));
    let since = load[0].waiting_since.expect("the queued job waits");
    assert_eq!(since, queued.created_at, "the queued job waits since it was queued, not the retry");
    assert!(since >= t0 - chrono::Duration::seconds(1) && since <= now);
    // Once the retry falls due, it waits since then, and it is older than the queued job's wait
    // only if it fell due earlier: at `later + 1h` both wait, the queued job since earlier.
    let much_later = later + chrono::Duration::hours(1);
    let load = store.kind_load(much_later).await.expect("load");
    assert_eq!(load[0].waiting_since, Some(queued.created_at));
    // Before anything was queued, nothing waited yet.
    let load = store.kind_load(t0 - chrono::Duration::hours(1)).await.expect("load");
    assert_eq!(load[0].waiting_since, None);

    let tenants = store.tenant_load(100).await.expect("tenants");
    let shown: Vec<_> = tenants.iter().map(|t| (t.tenant_id.as_str(), t.running, t.queued)).collect();
    assert_eq!(shown, [("acme", 1, 1), ("globex", 0, 1)]);
    assert_eq!(store.tenant_load(1).await.expect("tenants").len(), 1, "bounded by the limit");
});

conformance!(finished_jobs_are_counted_per_kind_and_minute, |store: Store| async move {
    for (kind, key) in [("summarize", "a"), ("summarize", "b"), ("triage", "c")] {
        let job = applied_job_of(&store, "acme", kind, key).await;
        applied(store.start_next(&job.tenant_id, &job.job_id, lease("1-0", 1), 1).await.expect("start"));
        applied(store.complete(&job.tenant_id, &job.job_id, 1, &json!("ok")).await.expect("complete"));
    }
    let failed = applied_job_of(&store, "acme", "triage", "f").await;
    applied(store.start_next(&failed.tenant_id, &failed.job_id, lease("2-0", 1), 1).await.expect("start"));
    let failure = AttemptFailure::new(1, ErrorClass::Invalid, "bad");
    applied(store.fail(&failed.tenant_id, &failed.job_id, failure).await.expect("fail"));
    // A live job is not counted.
    applied_job_of(&store, "acme", "triage", "live").await;

    let shown = |rows: Vec<longhaul_store::KindThroughput>| -> Vec<(String, [u64; 5])> {
        rows.into_iter().map(|r| (r.kind, r.per_minute)).collect()
    };
    let now = Utc::now();
    let rows = shown(store.kind_throughput(now).await.expect("throughput"));
    assert_eq!(rows, [("summarize".to_owned(), [0, 0, 0, 0, 2]), ("triage".to_owned(), [0, 0, 0, 0, 2])]);
    // Seen two minutes later, they finished in the third minute of five.
    let rows = shown(store.kind_throughput(now + chrono::Duration::minutes(2)).await.expect("throughput"));
    assert_eq!(rows, [("summarize".to_owned(), [0, 0, 2, 0, 0]), ("triage".to_owned(), [0, 0, 2, 0, 0])]);
    // Five minutes later, they are out of the window.
    let rows = store.kind_throughput(now + chrono::Duration::minutes(6)).await.expect("throughput");
    assert!(rows.is_empty(), "{rows:?}");
});

async fn applied_job(store: &Store, tenant: &str, key: &str) -> longhaul_core::JobRecord {
    applied_job_of(store, tenant, crate::harness::KIND, key).await
}

async fn applied_job_of(store: &Store, tenant: &str, kind: &str, key: &str) -> longhaul_core::JobRecord {
    let job = setup_job_of(store, tenant, kind, key, 3).await;
    store.create_pending(job).await.expect("create").0
}
