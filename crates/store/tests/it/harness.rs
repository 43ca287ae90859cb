//! Test databases and the `conformance!` macro that runs one test body on both backends.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use longhaul_core::{JobId, NewJob, TenantId, TicketId};
use longhaul_store::{Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// The PostgreSQL server tests create their databases on (`LONGHAUL_TEST_PG_URL`, default: the
/// local server as `postgres`).
pub fn pg_admin_url() -> String {
    std::env::var("LONGHAUL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn unique_name() -> String {
    let mut bytes = [0u8; 8];
    getrandom::fill(&mut bytes).expect("random");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("longhaul_test_{hex}")
}

/// Which backend a conformance test runs on.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// Runs `body` against a fresh, migrated store of `kind`, then removes the database, also when
/// `body` panics.
pub async fn with_store<F, Fut>(kind: Kind, body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    match kind {
        Kind::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("longhaul.db").display());
            let store =
                Store::connect_and_migrate(Some(&url), &StoreOptions::default()).await.expect("sqlite store");
            let result = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
            store.close().await;
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
        Kind::Postgres => {
            let admin = pg_admin_url();
            let name = unique_name();
            let mut conn = PgConnection::connect(&admin).await.expect("PostgreSQL admin connection");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut conn)
                .await
                .expect("create test database");
            let url = match admin.rfind('/') {
                Some(i) => format!("{}/{name}", &admin[..i]),
                None => panic!("LONGHAUL_TEST_PG_URL has no database path: {admin}"),
            };
            let store =
                Store::connect_and_migrate(Some(&url), &StoreOptions::default()).await.expect("pg store");
            let result = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
            store.close().await;
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&mut conn)
                .await
                .expect("drop test database");
            if let Err(panic) = result {
                std::panic::resume_unwind(panic);
            }
        }
    }
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
