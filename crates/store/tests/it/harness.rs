//! Test databases and the `conformance!` macro that runs one test body on both backends.

use std::future::Future;

use longhaul_core::{JobId, JobKey, JobRecord, JobStatus, Lease, NewJob, TenantId};
use longhaul_store::{Store, WriteOutcome};

pub use longhaul_testkit::Backend as Kind;

/// Runs `body` against a fresh, migrated store of `kind`; the database is removed afterwards, also
/// when `body` panics.
pub async fn with_store<F, Fut>(kind: Kind, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = longhaul_testkit::TestDb::new(kind).await;
    body(db.store.clone()).await;
    db.store.close().await;
}

/// Defines a test that runs the same body on SQLite and on PostgreSQL:
/// `conformance!(name, |store| async move { … });` becomes `name::sqlite` and `name::postgres`.
macro_rules! conformance {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                $crate::harness::with_store($crate::harness::Kind::Sqlite, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::harness::with_store($crate::harness::Kind::Postgres, $body).await;
            }
        }
    };
}
pub(crate) use conformance;

pub fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

/// The kind of the jobs [`setup_job`] makes.
pub const KIND: &str = "test";

/// Creates `tenant` and returns a pending-job request of kind [`KIND`] keyed `key`.
pub async fn setup_job(store: &Store, tenant_id: &str, key: &str, max_attempts: u32) -> NewJob {
    setup_job_of(store, tenant_id, KIND, key, max_attempts).await
}

/// Creates `tenant` and returns a pending-job request of kind `kind` keyed `key`, whose input
/// names the key.
pub async fn setup_job_of(
    store: &Store,
    tenant_id: &str,
    kind: &str,
    key: &str,
    max_attempts: u32,
) -> NewJob {
    let t = tenant(tenant_id);
    if store.get_tenant(&t).await.expect("get tenant").is_none() {
        store.create_tenant(&t, tenant_id, None).await.expect("create tenant");
    }
    NewJob {
        job_id: JobId::derive(&t, kind, &JobKey::Derived(key.to_owned())),
        tenant_id: t,
        kind: kind.to_owned(),
        key: key.to_owned(),
        input: serde_json::json!({ "key": key, "n": [1, 2.5, null, {"deep": true}] }),
        max_attempts,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    }
}

/// The record a write produced; panics when it was refused.
pub fn applied(outcome: WriteOutcome) -> JobRecord {
    match outcome {
        WriteOutcome::Applied(r) => r,
        WriteOutcome::Refused { reason, .. } => panic!("write refused: {reason}"),
    }
}

/// A status filter as the store binds it to the list statements: the status's phase (migration
/// 0009), and the status where the phase does not say it — `("live", status)` for a live status,
/// `(status, None)` for a terminal one.
pub fn status_filter(status: Option<JobStatus>) -> (Option<&'static str>, Option<&'static str>) {
    match status {
        None => (None, None),
        Some(s @ (JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running)) => {
            (Some("live"), Some(s.as_str()))
        }
        Some(s) => (Some(s.as_str()), None),
    }
}

/// Delivery `delivery` of stream entry `entry`.
pub fn lease(entry: &str, delivery: u32) -> Lease {
    Lease { entry: entry.to_owned(), delivery }
}
