//! The pipeline against the real application store, on SQLite and PostgreSQL: what the ticket,
//! the operation log and the job output hold when jobs of one ticket overlap or retry.

use std::time::Duration;

use longhaul_core::{
    JobContext, JobId, NoopObserver, OperationId, OperationState, Pipeline, TenantId, TicketId,
};
use longhaul_store::Store;
use longhaul_testkit::{Backend, TestDb};
use longhaul_triage::TriagePipeline;
use serde_json::json;

use crate::fakes::{GatedClassifier, RecordingWebhook, ScriptedClassifier};

const HOOK: &str = "http://hooks.invalid/triage";

/// A store with tenant `acme` (webhook [`HOOK`]) and ticket `SUP-1` at revision 1.
async fn store_with_ticket(kind: Backend) -> (TestDb, TenantId, TicketId) {
    let db = TestDb::new(kind).await;
    let (tenant, ticket) =
        (TenantId::parse("acme").expect("tenant"), TicketId::parse("SUP-1").expect("ticket"));
    db.create_tenant(&tenant, "Acme", Some(HOOK)).await.expect("tenant");
    db.upsert_ticket(&tenant, &ticket, "Refund please", "I was charged twice").await.expect("ticket");
    (db, tenant, ticket)
}

fn ctx(tenant: &TenantId, ticket: &TicketId, revision: u64, attempt: u32) -> JobContext {
    JobContext {
        job_id: JobId::for_ticket(tenant, ticket, revision),
        tenant_id: tenant.clone(),
        ticket_id: ticket.clone(),
        ticket_revision: revision,
        attempt,
    }
}

/// A revision-1 job is held in its provider while the ticket moves to revision 2 and the
/// revision-2 job completes; then the revision-1 job finishes. The ticket keeps revision 2's
/// triage, the revision-1 job's update is recorded as superseded and sends no webhook.
async fn an_older_revision_never_replaces_a_newer_triage(kind: Backend) {
    let (db, tenant, ticket) = store_with_ticket(kind).await;
    let store: &Store = &db;
    let (classifier, webhook) = (GatedClassifier::at_revision(1), RecordingWebhook::default());
    let pipeline = TriagePipeline::new(store, store, &classifier, &webhook);
    let (old, new) = (ctx(&tenant, &ticket, 1, 1), ctx(&tenant, &ticket, 2, 1));

    let slow = pipeline.run(&old, &NoopObserver);
    let meanwhile = async {
        classifier.arrived.notified().await;
        store
            .upsert_ticket(&tenant, &ticket, "Site is down", "Production down since 9am")
            .await
            .expect("rev 2");
        let out = pipeline.run(&new, &NoopObserver).await.expect("revision 2");
        classifier.open.notify_one();
        out
    };
    let (slow, fast) = tokio::time::timeout(Duration::from_secs(30), async { tokio::join!(slow, meanwhile) })
        .await
        .expect("both jobs finish");
    let slow = slow.expect("revision 1");

    let stored =
        store.get_ticket(&tenant, &ticket).await.expect("read").expect("ticket").triage.expect("triage");
    assert_eq!(stored["revision"], 2, "the newer triage stays: {stored}");
    assert_eq!(stored["job_id"], new.job_id.as_str());
    assert_eq!(stored["classification"], json!(fast.classification));
    assert_eq!((fast.ticket_revision, fast.superseded_by), (2, None));

    assert_eq!((slow.ticket_revision, slow.superseded_by, &slow.webhook), (1, Some(2), &None));
    let op = OperationId::derive(&old.job_id, "apply", "ticket-update");
    assert_eq!(
        store.get_operation(&tenant, &op).await.expect("op"),
        Some(OperationState::Done {
            result: json!({ "written": false, "superseded_by": 2, "triage": {
                "classification": slow.classification, "job_id": old.job_id, "revision": 1 } })
        }),
        "the skipped write is recorded, so a retry gets the same answer"
    );
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let hook_op = |c: &JobContext| OperationId::derive(&c.job_id, "apply", "webhook").to_string();
    assert_eq!(deliveries, [(HOOK.to_owned(), hook_op(&new))], "only the newer triage is announced");

    // A retry of the superseded job changes nothing and says the same.
    let again = pipeline.run(&ctx(&tenant, &ticket, 1, 2), &NoopObserver).await.expect("retry");
    assert_eq!(again, slow);
    let after = store.get_ticket(&tenant, &ticket).await.expect("read").expect("ticket").triage;
    assert_eq!(after, Some(stored));
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
    let store: &Store = &db;
    let (first, second) = crate::pipeline::answers();
    let classifier = ScriptedClassifier::default();
    classifier.answers.lock().expect("lock").extend([Ok(first.clone()), Ok(second)]);
    let webhook = RecordingWebhook::failing_first(1);
    let pipeline = TriagePipeline::new(store, store, &classifier, &webhook);
    pipeline.run(&ctx(&tenant, &ticket, 1, 1), &NoopObserver).await.expect_err("the webhook timed out");
    let out = pipeline.run(&ctx(&tenant, &ticket, 1, 2), &NoopObserver).await.expect("attempt 2");

    let stored =
        store.get_ticket(&tenant, &ticket).await.expect("read").expect("ticket").triage.expect("triage");
    assert_eq!(stored["classification"], json!(first), "the ticket keeps the first answer");
    assert_eq!(out.classification, first, "the output is what the ticket holds");
    assert_eq!(out.webhook, Some(json!({ "delivered": true })));
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let payloads = webhook.payloads.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0], deliveries[1], "one idempotency key");
    assert_eq!(payloads[0], payloads[1], "one payload per idempotency key");
    assert_eq!(payloads[0]["classification"], json!(first));
}

#[tokio::test]
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored_sqlite() {
    a_retry_reports_and_delivers_what_the_first_attempt_stored(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored_postgres() {
    a_retry_reports_and_delivers_what_the_first_attempt_stored(Backend::Postgres).await;
}
