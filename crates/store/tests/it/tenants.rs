//! Tenants and their API keys, and values the database cannot hold.

use longhaul_core::{ErrorClass, JobError, NewJob};
use longhaul_store::{BackendKind, Store, StoreError};
use serde_json::json;

use crate::harness::{conformance, setup_job, tenant};

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

conformance!(text_the_database_cannot_hold_is_refused_for_good, |store: Store| async move {
    let job = setup_job(&store, "acme", "T-nul", 3).await;
    let named = store.create_tenant(&tenant("nul"), "a\u{0}b", None).await;
    let input = store.create_pending(NewJob { input: json!({ "text": "a\u{0}b" }), ..job }).await;
    match store.kind() {
        // SQLite holds NUL; the API refuses it on both backends all the same.
        BackendKind::Sqlite => {
            assert_eq!(named.expect("sqlite stores NUL in text").0.name, "a\u{0}b");
            assert_eq!(input.expect("sqlite stores NUL in JSON").0.input["text"], "a\u{0}b");
        }
        // PostgreSQL text and jsonb cannot: a permanent error about the input, not an outage.
        BackendKind::Postgres => {
            for err in [named.expect_err("text cannot hold NUL"), input.expect_err("jsonb cannot hold NUL")] {
                assert!(err.is_unstorable(), "{err:?}");
                assert!(!err.is_retryable(), "retrying cannot help: {err:?}");
                assert_eq!(JobError::from(err).class(), ErrorClass::Invalid);
            }
        }
    }
    let dup = store.create_tenant(&tenant("acme"), "Again", None).await.expect_err("duplicate tenant");
    assert!(!dup.is_unstorable(), "{dup}");
});
