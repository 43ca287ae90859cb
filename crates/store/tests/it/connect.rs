//! Connecting: URLs, an unreachable server, a SQLite file created on first use.

use std::time::{Duration, Instant};

use longhaul_store::{Store, StoreError, StoreOptions};

#[tokio::test]
async fn unsupported_url_scheme_is_a_clear_config_error() {
    let err = Store::connect(Some("mysql://root@127.0.0.1/test"), &StoreOptions::default())
        .await
        .expect_err("mysql is not a backend");
    assert!(matches!(&err, StoreError::UnsupportedScheme(s) if s == "mysql"), "{err:?}");
    assert_eq!(err.to_string(), "unsupported database URL scheme \"mysql\": use postgres://… or sqlite://…");
    assert!(!err.is_retryable());
    let err = Store::connect(Some("postgres://[::1"), &StoreOptions::default()).await.expect_err("bad url");
    assert!(matches!(err, StoreError::InvalidUrl { backend: "PostgreSQL", .. }), "{err:?}");
    // The message names the failure, the chain says why, once.
    assert_eq!(err.to_string(), "invalid PostgreSQL URL");
    let report = err.report();
    assert!(
        report.starts_with("invalid PostgreSQL URL: ") && report.len() > "invalid PostgreSQL URL: ".len(),
        "{report}"
    );
}

#[tokio::test]
async fn unreachable_database_fails_fast_and_retryable() {
    let options = StoreOptions { max_connections: 2, acquire_timeout: Duration::from_secs(1) };
    let started = Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = Store::connect(Some("postgres://postgres@127.0.0.1:1/postgres"), &options)
        .await
        .expect_err("nothing listens on port 1");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert!(err.is_retryable(), "{err:?}");
}

/// The errors a real outage gives — nothing listening, and a database that refuses connections
/// (`ALLOW_CONNECTIONS false`, SQLSTATE 55000) — are no batched item's fault: a batch answers
/// every item at once with a retryable error instead of trying each against a database that is
/// down.
#[tokio::test]
async fn an_outage_is_no_batched_items_fault() {
    let options = StoreOptions { max_connections: 2, acquire_timeout: Duration::from_secs(1) };
    let err = Store::connect(Some("postgres://postgres@127.0.0.1:1/postgres"), &options)
        .await
        .expect_err("nothing listens on port 1");
    let each = err.for_each_item().unwrap_or_else(|| panic!("shared by a batch's items: {err:?}"));
    assert!(each.is_retryable(), "{each:?}");

    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    db.set_reachable(false).await;
    // Past the window the pool pings its (ended) idle connection, drops it and asks for a new one,
    // which the database refuses: the refusal is what this checks, not the ended connection.
    tokio::time::sleep(longhaul_store::PING_IDLE_AFTER + Duration::from_millis(100)).await;
    let err = db.ping().await.expect_err("the database refuses connections");
    assert!(
        err.report().contains("55000") || err.report().contains("not currently accepting"),
        "{}",
        err.report()
    );
    db.set_reachable(true).await;
    assert!(err.is_retryable(), "{err:?}");
    let each = err.for_each_item().unwrap_or_else(|| panic!("shared by a batch's items: {err:?}"));
    assert!(each.is_retryable(), "{each:?}");
}

#[tokio::test]
async fn sqlite_file_is_created_on_first_use() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("fresh.db");
    assert!(!path.exists());
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect_and_migrate(Some(&url), &StoreOptions::default()).await.expect("store");
    store.migrate().await.expect("migrating twice is a no-op");
    store.ping().await.expect("ping");
    assert!(path.exists());
    store.close().await;
}

/// A pooled connection is handed out without a ping while it is fresh (`PING_IDLE_AFTER`), but one
/// that sat idle longer is pinged first: a connection the server ended meanwhile (a restart,
/// `pg_terminate_backend`) is replaced by a new one, and the caller never sees the dead one.
#[tokio::test]
async fn postgres_an_idle_connection_the_server_ended_is_replaced_unseen() {
    use sqlx::Connection as _;
    let db = longhaul_testkit::TestDb::new(longhaul_testkit::Backend::Postgres).await;
    let options = StoreOptions { max_connections: 1, acquire_timeout: Duration::from_secs(5) };
    let store = Store::connect(Some(&db.url), &options).await.expect("store");
    store.ping().await.expect("the pool's one connection answers");
    let name = db.url.rsplit('/').next().expect("database name").to_owned();
    let mut admin =
        sqlx::PgConnection::connect(&longhaul_testkit::pg_admin_url()).await.expect("admin connection");
    async fn backends(admin: &mut sqlx::PgConnection, name: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
            .bind(name)
            .fetch_one(admin)
            .await
            .expect("count backends");
        n
    }
    // The test database's own TestDb store may hold connections too; end them all.
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&name)
        .execute(&mut admin)
        .await
        .expect("terminate");
    longhaul_testkit::wait_until(Duration::from_secs(10), "the backends to end", async || {
        match backends(&mut admin, &name).await {
            0 => Ok(()),
            n => Err(n),
        }
    })
    .await;
    // Past the window the pool pings the dead connection before handing it out, and replaces it.
    tokio::time::sleep(longhaul_store::PING_IDLE_AFTER + Duration::from_millis(100)).await;
    store.ping().await.expect("the dead connection was replaced before use");
    assert_eq!(backends(&mut admin, &name).await, 1, "one new connection");
    store.close().await;
    admin.close().await.expect("close admin");
}
