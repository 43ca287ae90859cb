//! The pipeline against the real application store, on SQLite and PostgreSQL: what the ticket,
//! the operation log and the job output hold when jobs of one ticket overlap or retry. The store
//! is both the pipeline's [`longhaul_triage::TicketStore`] and the operation log its durable steps
//! go through, as in the worker.

use std::sync::Arc;
use std::time::Duration;

use longhaul_core::{NoopObserver, OperationId, OperationState, TenantId, TicketId};
use longhaul_store::Store;
use longhaul_testkit::{Backend, TestDb};
use longhaul_triage::{TriagePipeline, storage};
use serde_json::{Value, json};

use crate::fakes::{GatedClassifier, Job, RecordingWebhook, ScriptedClassifier, run};

const HOOK: &str = "http://hooks.invalid/triage";

/// A store migrated by the store and by triage, with tenant `acme` (webhook [`HOOK`]) and ticket
/// `SUP-1` at revision 1.
async fn store_with_ticket(kind: Backend) -> (TestDb, TenantId, TicketId) {
    let db = TestDb::new(kind).await;
    storage::migrate(&db).await.expect("triage migrations");
    let (tenant, ticket) =
        (TenantId::parse("acme").expect("tenant"), TicketId::parse("SUP-1").expect("ticket"));
    db.create_tenant(&tenant, "Acme", Some(HOOK)).await.expect("tenant");
    storage::upsert_ticket(&db, &tenant, &ticket, "Refund please", "I was charged twice")
        .await
        .expect("ticket");
    (db, tenant, ticket)
}

/// Attempt `attempt` of the triage job of revision `revision` of `SUP-1` of `acme`.
fn job(revision: u64, attempt: u32) -> Job {
    Job::new("acme", "SUP-1", attempt).revision(revision)
}

/// Records `job` with `attempts` started, as the worker's start does before a run (the operation
/// log checks a step's owner against the record's attempts).
async fn recorded(store: &Store, job: &Job, attempts: i32) {
    let new = longhaul_core::NewJob {
        job_id: job.ctx.job_id.clone(),
        tenant_id: job.ctx.tenant_id.clone(),
        kind: job.ctx.kind.clone(),
        key: format!("{}@{}", job.input.ticket_id.as_str(), job.input.revision),
        input: serde_json::to_value(&job.input).expect("input"),
        max_attempts: 3,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    };
    store.create_pending(new).await.expect("record");
    let args: [longhaul_store::backend::Arg<'_>; 2] = [attempts.into(), job.ctx.job_id.as_str().into()];
    store.db().execute("UPDATE jobs SET attempts = $1 WHERE job_id = $2", &args).await.expect("attempts");
}

/// The triage ticket `ticket` of `tenant` holds.
async fn stored_triage(store: &Store, tenant: &TenantId, ticket: &TicketId) -> Option<Value> {
    storage::get_ticket(store, tenant, ticket).await.expect("read").expect("ticket").triage
}

/// A revision-1 job is held in its provider while the ticket moves to revision 2 and the
/// revision-2 job completes; then the revision-1 job finishes. The ticket keeps revision 2's
/// triage, the revision-1 job's update is recorded as superseded and sends no webhook.
async fn an_older_revision_never_replaces_a_newer_triage(kind: Backend) {
    let (db, tenant, ticket) = store_with_ticket(kind).await;
    let store: Store = db.store.clone();
    let (classifier, webhook) =
        (Arc::new(GatedClassifier::at_revision(1)), Arc::new(RecordingWebhook::default()));
    let pipeline = TriagePipeline::new(store.clone(), classifier.clone(), webhook.clone());
    let (ops, observer) = (Arc::new(store.clone()), Arc::new(NoopObserver));
    let (old, new) = (job(1, 1), job(2, 1));
    assert_ne!(old.ctx.job_id, new.ctx.job_id, "a new revision is a new job");

    let slow = run(&pipeline, &old, ops.clone(), observer.clone());
    let meanwhile = async {
        classifier.arrived.notified().await;
        let rev2 =
            storage::upsert_ticket(&store, &tenant, &ticket, "Site is down", "Production down since 9am")
                .await
                .expect("rev 2");
        assert_eq!(rev2.revision, 2);
        let out = run(&pipeline, &new, ops.clone(), observer.clone()).await.expect("revision 2");
        classifier.open.notify_one();
        out
    };
    let (slow, fast) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(slow, meanwhile) })
        .await
        .expect("both jobs finish");
    let slow = slow.expect("revision 1");

    let stored = stored_triage(&store, &tenant, &ticket).await.expect("triage");
    assert_eq!(stored["revision"], 2, "the newer triage stays: {stored}");
    assert_eq!(stored["job_id"], new.ctx.job_id.as_str());
    assert_eq!(stored["classification"], json!(fast.classification));
    assert_eq!((fast.ticket_revision, fast.superseded_by), (2, None));

    assert_eq!((slow.ticket_revision, slow.superseded_by, &slow.webhook), (1, Some(2), &None));
    let op = OperationId::derive(&old.ctx.job_id, "apply", "ticket-update");
    assert_eq!(
        store.get_operation(&tenant, &op).await.expect("op"),
        Some(OperationState::Done {
            result: json!({ "written": false, "superseded_by": 2, "triage": {
                "classification": slow.classification, "job_id": old.ctx.job_id, "revision": 1 } })
        }),
        "the skipped write is recorded, so a retry gets the same answer"
    );
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let hook_op = |j: &Job| OperationId::derive(&j.ctx.job_id, "apply", "webhook").to_string();
    assert_eq!(deliveries, [(HOOK.to_owned(), hook_op(&new))], "only the newer triage is announced");
    assert_eq!(
        store
            .get_operation(&tenant, &OperationId::derive(&old.ctx.job_id, "apply", "webhook"))
            .await
            .expect("op"),
        None,
        "the superseded job never began a delivery"
    );

    // A retry of the superseded job changes nothing and says the same.
    let again = run(&pipeline, &job(1, 2), ops.clone(), observer.clone()).await.expect("retry");
    assert_eq!(again, slow);
    assert_eq!(stored_triage(&store, &tenant, &ticket).await, Some(stored));
    assert_eq!(webhook.deliveries.lock().expect("lock").len(), 1);
}

#[tokio::test]
async fn an_older_revision_never_replaces_a_newer_triage_sqlite() {
    an_older_revision_never_replaces_a_newer_triage(Backend::Sqlite).await;
}

#[tokio::test]
async fn an_older_revision_never_replaces_a_newer_triage_postgres() {
    an_older_revision_never_replaces_a_newer_triage(Backend::Postgres).await;
}

/// Attempt 1 writes the ticket and the webhook times out; attempt 2's provider answers
/// differently. The ticket, the output and every delivery under the webhook's key carry the first
/// answer.
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored(kind: Backend) {
    let (db, tenant, ticket) = store_with_ticket(kind).await;
    let store: Store = db.store.clone();
    let (first, second) = crate::pipeline::answers();
    let classifier = Arc::new(ScriptedClassifier::default());
    classifier.answers.lock().expect("lock").extend([Ok(first.clone()), Ok(second)]);
    let webhook = Arc::new(RecordingWebhook::failing_first(1));
    let pipeline = TriagePipeline::new(store.clone(), classifier.clone(), webhook.clone());
    let (ops, observer) = (Arc::new(store.clone()), Arc::new(NoopObserver));
    recorded(&store, &job(1, 1), 2).await;
    run(&pipeline, &job(1, 1), ops.clone(), observer.clone()).await.expect_err("the webhook timed out");
    let hook_op = OperationId::derive(&job(1, 1).ctx.job_id, "apply", "webhook");
    assert_eq!(
        store.get_operation(&tenant, &hook_op).await.expect("op"),
        Some(OperationState::Started { attempt: 1 }),
        "attempt 1 began the delivery and never recorded it"
    );
    let out = run(&pipeline, &job(1, 2), ops.clone(), observer.clone()).await.expect("attempt 2");

    let stored = stored_triage(&store, &tenant, &ticket).await.expect("triage");
    assert_eq!(stored["classification"], json!(first), "the ticket keeps the first answer");
    assert_eq!(out.classification, first, "the output is what the ticket holds");
    assert_eq!(out.webhook, Some(json!({ "delivered": true })));
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let payloads = webhook.payloads.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0], deliveries[1], "one idempotency key");
    assert_eq!(payloads[0], payloads[1], "one payload per idempotency key");
    assert_eq!(payloads[0]["classification"], json!(first));
    assert_eq!(deliveries[0].1, hook_op.to_string(), "the interrupted delivery is redone under its id");
    assert_eq!(
        store.get_operation(&tenant, &hook_op).await.expect("op"),
        Some(OperationState::Done { result: json!({ "delivered": true }) }),
        "the delivery is recorded once it succeeds"
    );
}

#[tokio::test]
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored_sqlite() {
    a_retry_reports_and_delivers_what_the_first_attempt_stored(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored_postgres() {
    a_retry_reports_and_delivers_what_the_first_attempt_stored(Backend::Postgres).await;
}

/// The same job run twice against the store (the worker died before acking): the ticket is
/// written once and the webhook delivered once, under one operation id.
async fn effects_are_not_repeated_when_the_same_job_runs_again(kind: Backend) {
    let (db, tenant, ticket) = store_with_ticket(kind).await;
    let store: Store = db.store.clone();
    let (classifier, webhook) =
        (Arc::new(ScriptedClassifier::default()), Arc::new(RecordingWebhook::default()));
    let pipeline = TriagePipeline::new(store.clone(), classifier.clone(), webhook.clone());
    let (ops, observer) = (Arc::new(store.clone()), Arc::new(NoopObserver));
    let first = run(&pipeline, &job(1, 1), ops.clone(), observer.clone()).await.expect("first");
    let second = run(&pipeline, &job(1, 2), ops.clone(), observer.clone()).await.expect("second");
    assert_eq!(first, second, "the stored results are reused");
    let stored = stored_triage(&store, &tenant, &ticket).await.expect("triage");
    assert_eq!(stored["job_id"], job(1, 1).ctx.job_id.as_str());
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let hook_op = OperationId::derive(&job(1, 1).ctx.job_id, "apply", "webhook");
    assert_eq!(deliveries, [(HOOK.to_owned(), hook_op.to_string())], "one webhook per operation id");
}

#[tokio::test]
async fn effects_are_not_repeated_when_the_same_job_runs_again_sqlite() {
    effects_are_not_repeated_when_the_same_job_runs_again(Backend::Sqlite).await;
}

#[tokio::test]
async fn effects_are_not_repeated_when_the_same_job_runs_again_postgres() {
    effects_are_not_repeated_when_the_same_job_runs_again(Backend::Postgres).await;
}
