//! The triage kind's storage (`longhaul_triage::storage`) on SQLite and PostgreSQL, each test on a
//! database of its own migrated by the store and then by triage: tickets and their revisions, the
//! pipeline's reads of them, the triage written onto them with its operation record, and the
//! triage migrations' own history.

mod tickets;

use std::future::Future;

use longhaul_core::{JobId, TenantId, TicketId};
use longhaul_store::Store;
use longhaul_testkit::{Backend, TestDb};

/// Runs `body` against a fresh store of `kind`, migrated by the store and by triage; the database
/// is removed afterwards, also when `body` panics.
pub async fn with_store<F, Fut>(kind: Backend, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let db = TestDb::new(kind).await;
    longhaul_triage::storage::migrate(&db).await.expect("triage migrations");
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
                $crate::with_store(longhaul_testkit::Backend::Sqlite, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                $crate::with_store(longhaul_testkit::Backend::Postgres, $body).await;
            }
        }
    };
}
pub(crate) use conformance;

/// Tenant `s`.
pub fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).expect("tenant id")
}

/// Ticket `s`.
pub fn ticket(s: &str) -> TicketId {
    TicketId::parse(s).expect("ticket id")
}

/// The id triage gives revision `revision` of `ticket`.
pub fn job_id(tenant: &TenantId, ticket: &TicketId, revision: u64) -> JobId {
    JobId::from_fields(
        "longhaul/job/v1/ticket",
        &[tenant.as_str().as_bytes(), ticket.as_str().as_bytes(), &revision.to_le_bytes()],
    )
}

/// Creates `tenant` if it does not exist yet.
pub async fn ensure_tenant(store: &Store, tenant: &TenantId) {
    if store.get_tenant(tenant).await.expect("get tenant").is_none() {
        store.create_tenant(tenant, tenant.as_str(), None).await.expect("create tenant");
    }
}
