//! Test databases and the `conformance!` macro that runs one test body on both backends.

use std::future::Future;

use longhaul_core::{JobId, JobRecord, Lease, NewJob, TenantId, TicketId};
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

pub fn ticket(s: &str) -> TicketId {
    TicketId::parse(s).expect("ticket id")
}

/// Creates `tenant` and returns a pending-job request for `ticket` revision 1.
pub async fn setup_job(store: &Store, tenant_id: &str, ticket_id: &str, max_attempts: u32) -> NewJob {
    let t = tenant(tenant_id);
    if store.get_tenant(&t).await.expect("get tenant").is_none() {
        store.create_tenant(&t, tenant_id, None).await.expect("create tenant");
    }
    let k = ticket(ticket_id);
    NewJob {
        job_id: JobId::for_ticket(&t, &k, 1),
        tenant_id: t,
        ticket_id: k,
        ticket_revision: 1,
        max_attempts,
    }
}

/// The record a write produced; panics when it was refused.
pub fn applied(outcome: WriteOutcome) -> JobRecord {
    match outcome {
        WriteOutcome::Applied(r) => r,
        WriteOutcome::Refused { reason, .. } => panic!("write refused: {reason}"),
    }
}

/// Delivery `delivery` of stream entry `entry`.
pub fn lease(entry: &str, delivery: u32) -> Lease {
    Lease { entry: entry.to_owned(), delivery }
}
