//! Tenants, API keys and tickets.

use longhaul_core::{ErrorClass, JobError};
use longhaul_store::{BackendKind, Store, StoreError};

use crate::harness::{conformance, tenant, ticket};

conformance!(api_keys_authenticate_their_tenant_only, |store: Store| async move {
    let (acme, acme_key) =
        store.create_tenant(&tenant("acme"), "Acme", Some("http://127.0.0.1:9/hook")).await.expect("acme");
    let (_, globex_key) = store.create_tenant(&tenant("globex"), "Globex", None).await.expect("globex");
    assert_eq!(acme.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    assert_ne!(acme_key, globex_key);
    assert_eq!(store.authenticate(acme_key.expose()).await.expect("auth"), Some(tenant("acme")));
    assert_eq!(store.authenticate(globex_key.expose()).await.expect("auth"), Some(tenant("globex")));
    for bad in ["", "lh_", "lh_0000000000000000000000000000000000000000000000000000000000000000", "Bearer x"]
    {
        assert_eq!(store.authenticate(bad).await.expect("auth"), None, "{bad:?}");
    }
    let mut almost = acme_key.expose().to_string();
    almost.pop();
    assert_eq!(store.authenticate(&almost).await.expect("auth"), None);

    let got = store.get_tenant(&tenant("acme")).await.expect("get").expect("present");
    assert_eq!(got, acme);
    let dup = store.create_tenant(&tenant("acme"), "Again", None).await.expect_err("duplicate tenant");
    assert!(matches!(dup, StoreError::Database(_)), "{dup}");
    assert!(!dup.is_retryable());
});

conformance!(ticket_revisions_bump_and_stay_in_tenant, |store: Store| async move {
    store.create_tenant(&tenant("acme"), "Acme", None).await.expect("acme");
    store.create_tenant(&tenant("globex"), "Globex", None).await.expect("globex");
    let t1 = store
        .upsert_ticket(&tenant("acme"), &ticket("SUP-1"), "Refund", "Charged twice")
        .await
        .expect("create");
    assert_eq!((t1.revision, t1.subject.as_str()), (1, "Refund"));
    let t2 = store
        .upsert_ticket(&tenant("acme"), &ticket("SUP-1"), "Refund!", "Charged 3x")
        .await
        .expect("update");
    assert_eq!((t2.revision, t2.body.as_str()), (2, "Charged 3x"));
    assert_eq!(t2.created_at, t1.created_at);
    assert_eq!(store.get_ticket(&tenant("acme"), &ticket("SUP-1")).await.expect("get"), Some(t2));
    assert_eq!(store.get_ticket(&tenant("globex"), &ticket("SUP-1")).await.expect("get"), None);
    // A ticket for an unknown tenant is refused by the foreign key.
    let err = store.upsert_ticket(&tenant("nobody"), &ticket("SUP-1"), "s", "b").await.expect_err("fk");
    assert!(matches!(err, StoreError::Database(_)), "{err}");
});

conformance!(the_pipeline_reads_a_ticket_with_its_tenants_webhook_in_one_query, |store: Store| async move {
    let (acme, globex) = (tenant("acme"), tenant("globex"));
    store.create_tenant(&acme, "Acme", Some("http://127.0.0.1:9/hook")).await.expect("acme");
    store.create_tenant(&globex, "Globex", None).await.expect("globex");
    store.upsert_ticket(&acme, &ticket("T-1"), "s1", "b1").await.expect("ticket");
    store.upsert_ticket(&acme, &ticket("T-1"), "s2", "b2").await.expect("revision 2");
    store.upsert_ticket(&globex, &ticket("T-2"), "s", "b").await.expect("ticket");

    let view = store.load_ticket_view(&acme, &ticket("T-1")).await.expect("load").expect("exists");
    assert_eq!((view.revision, view.subject.as_str(), view.body.as_str()), (2, "s2", "b2"));
    assert_eq!(view.webhook_url.as_deref(), Some("http://127.0.0.1:9/hook"));
    let view = store.load_ticket_view(&globex, &ticket("T-2")).await.expect("load").expect("exists");
    assert_eq!((view.tenant_id, view.webhook_url), (globex.clone(), None));
    assert_eq!(
        store.load_ticket_view(&globex, &ticket("T-1")).await.expect("load"),
        None,
        "scoped by tenant"
    );
});

conformance!(text_the_database_cannot_hold_is_refused_for_good, |store: Store| async move {
    store.create_tenant(&tenant("acme"), "Acme", None).await.expect("acme");
    let stored = store.upsert_ticket(&tenant("acme"), &ticket("SUP-0"), "a\u{0}b", "b").await;
    match store.kind() {
        // SQLite holds NUL; the API refuses it on both backends all the same.
        BackendKind::Sqlite => assert_eq!(stored.expect("sqlite stores NUL").subject, "a\u{0}b"),
        // PostgreSQL text cannot: a permanent error about the input, not an outage.
        BackendKind::Postgres => {
            let err = stored.expect_err("PostgreSQL text cannot hold NUL");
            assert!(err.is_unstorable(), "{err:?}");
            assert!(!err.is_retryable(), "retrying cannot help: {err:?}");
            assert_eq!(JobError::from(err).class(), ErrorClass::Invalid);
        }
    }
    let dup = store.create_tenant(&tenant("acme"), "Again", None).await.expect_err("duplicate tenant");
    assert!(!dup.is_unstorable(), "{dup}");
});
