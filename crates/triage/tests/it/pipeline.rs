//! The pipeline, run directly: no Redis, no database.

use std::sync::Arc;

use longhaul_core::{ErrorClass, FailureCase, JobError, OperationId, OperationState, TenantId, TicketId};
use longhaul_triage::{Category, Classification, Priority, TicketView, TriagePipeline};

use crate::fakes::{Job, MemStore, RecordingObserver, RecordingWebhook, ScriptedClassifier, run};

fn ctx(tenant: &str, ticket: &str, attempt: u32) -> Job {
    Job::new(tenant, ticket, attempt)
}

type Triage = TriagePipeline<Arc<MemStore>, Arc<ScriptedClassifier>, Arc<RecordingWebhook>>;

fn pipeline(
    store: &Arc<MemStore>,
    classifier: &Arc<ScriptedClassifier>,
    webhook: &Arc<RecordingWebhook>,
) -> Triage {
    TriagePipeline::new(store.clone(), classifier.clone(), webhook.clone())
}

#[tokio::test]
async fn success_produces_the_classification_and_applies_it() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Refund please", "I was charged twice"));
    store.webhooks.lock().expect("lock").insert("acme".into(), "http://hooks.invalid/triage".into());
    let (classifier, webhook, observer) = (
        Arc::new(ScriptedClassifier::default()),
        Arc::new(RecordingWebhook::default()),
        Arc::new(RecordingObserver::default()),
    );
    let out = run(
        &pipeline(&store, &classifier, &webhook),
        &ctx("acme", "SUP-1", 1),
        store.clone(),
        observer.clone(),
    )
    .await
    .expect("run");
    assert_eq!(
        (out.classification.category, out.classification.priority),
        (Category::Billing, Priority::High)
    );
    assert_eq!(out.ticket_revision, 1);
    assert_eq!(out.webhook, Some(serde_json::json!({ "delivered": true })));
    let writes = store.triage_writes.lock().expect("lock").clone();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0]["classification"]["category"], "billing");
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let job = ctx("acme", "SUP-1", 1).ctx.job_id;
    assert_eq!(
        deliveries,
        [(
            "http://hooks.invalid/triage".to_string(),
            OperationId::derive(&job, "apply", "webhook").to_string()
        )]
    );
}

#[tokio::test]
async fn progress_sequence_is_reported_in_order() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Hello", "Thanks"));
    let (classifier, webhook, observer) = (
        Arc::new(ScriptedClassifier::default()),
        Arc::new(RecordingWebhook::default()),
        Arc::new(RecordingObserver::default()),
    );
    run(&pipeline(&store, &classifier, &webhook), &ctx("acme", "SUP-1", 1), store.clone(), observer.clone())
        .await
        .expect("run");
    let events = observer.events.lock().expect("lock").clone();
    let expected: Vec<(&str, String, u8)> = vec![
        ("started", "load".into(), 0),
        ("finished", "load".into(), 33),
        ("started", "classify".into(), 33),
        ("finished", "classify".into(), 66),
        ("started", "apply".into(), 66),
        ("progress", "apply".into(), 83),
        ("finished", "apply".into(), 100),
    ];
    assert_eq!(events, expected);
}

#[tokio::test]
async fn each_error_class_is_reported() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Hello", "Thanks"));
    // A ticket stored under another tenant id than the one it was loaded for: a forged or
    // misrouted job must not touch it.
    store.tickets.lock().expect("lock").insert(
        ("acme".into(), "SUP-X".into()),
        TicketView {
            tenant_id: TenantId::parse("globex").expect("tenant"),
            ticket_id: TicketId::parse("SUP-X").expect("ticket"),
            revision: 1,
            subject: "s".into(),
            body: "b".into(),
            webhook_url: None,
        },
    );
    let webhook = Arc::new(RecordingWebhook::default());
    let observer = Arc::new(RecordingObserver::default());
    let cases: Vec<(Job, ScriptedClassifier, FailureCase, ErrorClass, &str)> = vec![
        (
            ctx("acme", "SUP-404", 1),
            ScriptedClassifier::default(),
            FailureCase::InvalidJobData,
            ErrorClass::Invalid,
            "ticket SUP-404 does not exist",
        ),
        (
            ctx("acme", "SUP-X", 1),
            ScriptedClassifier::default(),
            FailureCase::PermissionDenied,
            ErrorClass::Alert,
            "tenant mismatch",
        ),
        (
            ctx("acme", "SUP-1", 1).revision(5),
            ScriptedClassifier::default(),
            FailureCase::InvalidJobData,
            ErrorClass::Invalid,
            "revision 5 was requested",
        ),
        (
            ctx("acme", "SUP-1", 1),
            ScriptedClassifier::failing_with(vec![JobError::new(
                FailureCase::ProviderTimeout,
                "classifier timed out",
            )]),
            FailureCase::ProviderTimeout,
            ErrorClass::Retryable,
            "timed out",
        ),
        (
            ctx("acme", "SUP-1", 1),
            ScriptedClassifier {
                answers: std::sync::Mutex::new(
                    [Ok(Classification {
                        category: Category::Bug,
                        priority: Priority::Low,
                        labels: vec![],
                        summary: "text PostgreSQL cannot store: \u{0}".into(),
                    })]
                    .into(),
                ),
            },
            FailureCase::ProviderRejected,
            ErrorClass::Invalid,
            "must not contain NUL",
        ),
        (
            ctx("acme", "SUP-1", 1),
            ScriptedClassifier::failing_with(vec![JobError::new(
                FailureCase::ProviderRejected,
                "answer out of schema",
            )]),
            FailureCase::ProviderRejected,
            ErrorClass::Invalid,
            "out of schema",
        ),
    ];
    for (ctx, classifier, case, class, message) in cases {
        let classifier = Arc::new(classifier);
        let err = run(&pipeline(&store, &classifier, &webhook), &ctx, store.clone(), observer.clone())
            .await
            .expect_err(message);
        assert_eq!((err.case, err.class()), (case, class), "{message}");
        assert!(err.message.contains(message), "{}", err.message);
    }
    assert!(store.triage_writes.lock().expect("lock").is_empty(), "no failed run applied anything");
    assert!(webhook.deliveries.lock().expect("lock").is_empty());
}

#[tokio::test]
async fn effects_are_not_repeated_when_the_same_job_runs_again() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Bug", "It crashes"));
    store.webhooks.lock().expect("lock").insert("acme".into(), "http://hooks.invalid/t".into());
    let (classifier, webhook, observer) = (
        Arc::new(ScriptedClassifier::default()),
        Arc::new(RecordingWebhook::default()),
        Arc::new(RecordingObserver::default()),
    );
    let p = pipeline(&store, &classifier, &webhook);
    let first = run(&p, &ctx("acme", "SUP-1", 1), store.clone(), observer.clone()).await.expect("first");
    // The worker died before acking: the same job runs again as attempt 2.
    let second = run(&p, &ctx("acme", "SUP-1", 2), store.clone(), observer.clone()).await.expect("second");
    assert_eq!(first, second, "the stored results are reused");
    assert_eq!(store.triage_writes.lock().expect("lock").len(), 1, "ticket written once");
    assert_eq!(webhook.deliveries.lock().expect("lock").len(), 1, "webhook delivered once");
}

#[tokio::test]
async fn an_interrupted_effect_is_redone_with_the_same_operation_id() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Bug", "It crashes"));
    store.webhooks.lock().expect("lock").insert("acme".into(), "http://hooks.invalid/t".into());
    let c = ctx("acme", "SUP-1", 2);
    let op = OperationId::derive(&c.ctx.job_id, "apply", "webhook");
    // Attempt 1 began the delivery and died before recording it.
    store.ops.lock().expect("lock").insert(op.to_string(), OperationState::Started { attempt: 1 });
    let (classifier, webhook, observer) = (
        Arc::new(ScriptedClassifier::default()),
        Arc::new(RecordingWebhook::default()),
        Arc::new(RecordingObserver::default()),
    );
    run(&pipeline(&store, &classifier, &webhook), &c, store.clone(), observer.clone()).await.expect("run");
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].1, op.to_string(), "the receiver sees the same idempotency key");
}

/// Two different answers from the provider, one per call.
pub(crate) fn answers() -> (Classification, Classification) {
    let answer = |category, priority, summary: &str| Classification {
        category,
        priority,
        labels: vec![summary.split(' ').next().unwrap_or_default().to_owned()],
        summary: summary.to_owned(),
    };
    (
        answer(Category::Bug, Priority::High, "first answer"),
        answer(Category::Billing, Priority::Low, "second answer"),
    )
}

#[tokio::test]
async fn a_retry_reports_and_delivers_what_the_first_attempt_stored() {
    let store = Arc::new(MemStore::with_ticket("acme", "SUP-1", "Bug", "It crashes"));
    store.webhooks.lock().expect("lock").insert("acme".into(), "http://hooks.invalid/t".into());
    let (first, second) = answers();
    // The provider answers differently per call; the receiver times out once (after applying).
    let classifier = Arc::new(ScriptedClassifier::default());
    classifier.answers.lock().expect("lock").extend([Ok(first.clone()), Ok(second)]);
    let (webhook, observer) =
        (Arc::new(RecordingWebhook::failing_first(1)), Arc::new(RecordingObserver::default()));
    let p = pipeline(&store, &classifier, &webhook);
    let err = run(&p, &ctx("acme", "SUP-1", 1), store.clone(), observer.clone())
        .await
        .expect_err("the webhook failed");
    assert_eq!(err.class(), ErrorClass::Retryable);
    let out = run(&p, &ctx("acme", "SUP-1", 2), store.clone(), observer.clone()).await.expect("attempt 2");

    let ticket = store.triage.lock().expect("lock")[&("acme".to_owned(), "SUP-1".to_owned())].clone();
    assert_eq!(ticket["classification"], serde_json::json!(first), "the ticket keeps the first answer");
    assert_eq!(out.classification, first, "the output is what the ticket holds");
    let deliveries = webhook.deliveries.lock().expect("lock").clone();
    let payloads = webhook.payloads.lock().expect("lock").clone();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0], deliveries[1], "one idempotency key");
    assert_eq!(payloads[0], payloads[1], "one payload per idempotency key");
    assert_eq!(payloads[0]["classification"], serde_json::json!(first));
}
