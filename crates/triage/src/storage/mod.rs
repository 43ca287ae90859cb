//! The triage kind's own storage: tickets, whose revision bumps on every update (a new revision is
//! a new triage job), in the `tickets` table of the store's database. Written by the producer
//! ([`upsert_ticket`]), read by the pipeline's load stage ([`load_ticket_view`], batched as
//! [`load_ticket_views`]), and given their triage by the apply stage ([`write_ticket_triage`],
//! batched as [`write_ticket_triage_many`]), which records its operation in the store's operation
//! log in the same transaction (see `longhaul_store::ops`).
//!
//! Every statement is a `.sql` file under `crates/triage/sql/`, laid out as the store's
//! (`common/`, `postgres/`, `sqlite/`), run on the store's pool through `longhaul_store::backend`.
//! Reads and writes of concurrent jobs are batched ([`BatchedTickets`], [`TicketReader`]).
//! The table has migrations of its own under `crates/triage/migrations/{postgres,sqlite}`, applied
//! by [`migrate`] with a history of their own ([`MIGRATIONS_TABLE`]).

mod batched;
mod triage;

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use longhaul_core::{TenantId, TicketId};
use longhaul_store::backend::{Arg, Db};
use longhaul_store::{Store, StoreError, now};
use serde_json::Value;
use sqlx::migrate::Migrator;
use sqlx::types::Json;

pub use batched::{BatchedTickets, TicketReader};
pub use triage::{TriageWrite, write_ticket_triage, write_ticket_triage_many};

use crate::TicketView;

const UPSERT: &str = include_str!("../../sql/common/tickets/upsert.sql");
const SELECT: &str = include_str!("../../sql/common/tickets/select.sql");
const SELECT_VIEW: &str = include_str!("../../sql/common/tickets/select_view.sql");
/// `$1` tenants, `$2` tickets.
const PG_SELECT_VIEWS: &str = include_str!("../../sql/postgres/tickets/select_views.sql");

/// The table in which [`migrate`] keeps the history of the triage migrations, apart from the
/// store's `_sqlx_migrations`: each history lists only its own migrations, so neither migrator
/// sees the other's as unknown, and their version numbers never collide.
pub const MIGRATIONS_TABLE: &str = "_longhaul_triage_migrations";

/// Applies the triage migrations that have not run yet on the store's database, recording them in
/// [`MIGRATIONS_TABLE`]. Run it after [`Store::migrate`] (tickets belong to tenants). Safe to call
/// from several processes at once, as [`Store::migrate`].
///
/// # Errors
/// [`StoreError::Migrate`] when a migration fails or the applied history differs from the
/// embedded one.
pub async fn migrate(store: &Store) -> Result<(), StoreError> {
    match store.db() {
        Db::Postgres(pool) => {
            let mut migrator: Migrator = sqlx::migrate!("migrations/postgres");
            migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
            migrator.run(pool).await?;
        }
        Db::Sqlite(pool) => {
            let mut migrator: Migrator = sqlx::migrate!("migrations/sqlite");
            migrator.dangerous_set_table_name(MIGRATIONS_TABLE);
            migrator.run(pool).await?;
        }
    }
    Ok(())
}

/// A ticket as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ticket {
    /// The owning tenant.
    pub tenant_id: TenantId,
    /// Its id.
    pub ticket_id: TicketId,
    /// Bumped on every update, starting at 1.
    pub revision: u64,
    /// Subject line.
    pub subject: String,
    /// Body text.
    pub body: String,
    /// What triage applied, if anything.
    pub triage: Option<Value>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    tenant_id: String,
    ticket_id: String,
    revision: i64,
    subject: String,
    body: String,
    triage: Option<Json<Value>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow, Clone)]
struct TicketViewRow {
    tenant_id: String,
    ticket_id: String,
    revision: i64,
    subject: String,
    body: String,
    webhook_url: Option<String>,
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { table: "tickets", detail: detail.to_string() }
}

fn revision(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("revision = {v}")))
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;
    fn try_from(r: TicketRow) -> Result<Self, StoreError> {
        Ok(Ticket {
            tenant_id: TenantId::parse(r.tenant_id).map_err(corrupt)?,
            ticket_id: TicketId::parse(r.ticket_id).map_err(corrupt)?,
            revision: revision(r.revision)?,
            subject: r.subject,
            body: r.body,
            triage: r.triage.map(|j| j.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

impl TryFrom<TicketViewRow> for TicketView {
    type Error = StoreError;
    fn try_from(r: TicketViewRow) -> Result<Self, StoreError> {
        Ok(TicketView {
            tenant_id: TenantId::parse(r.tenant_id).map_err(corrupt)?,
            ticket_id: TicketId::parse(r.ticket_id).map_err(corrupt)?,
            revision: revision(r.revision)?,
            subject: r.subject,
            body: r.body,
            webhook_url: r.webhook_url,
        })
    }
}

/// Creates ticket `ticket` at revision 1, or updates its subject and body and bumps its revision.
/// Returns the ticket as stored.
///
/// # Errors
/// [`StoreError::Database`] (a foreign-key violation for an unknown tenant).
pub async fn upsert_ticket(
    store: &Store,
    tenant: &TenantId,
    ticket: &TicketId,
    subject: &str,
    body: &str,
) -> Result<Ticket, StoreError> {
    let args = [tenant.as_str().into(), ticket.as_str().into(), subject.into(), body.into(), now().into()];
    let row: Option<TicketRow> = store.db().fetch_optional(UPSERT, &args).await?;
    row.ok_or(StoreError::Database(sqlx::Error::RowNotFound))?.try_into()
}

/// Reads one ticket of `tenant`; another tenant's ticket reads as `None`.
///
/// # Errors
/// [`StoreError::Database`] or [`StoreError::Corrupt`].
pub async fn get_ticket(
    store: &Store,
    tenant: &TenantId,
    ticket: &TicketId,
) -> Result<Option<Ticket>, StoreError> {
    let args: [Arg<'_>; 2] = [tenant.as_str().into(), ticket.as_str().into()];
    let row: Option<TicketRow> = store.db().fetch_optional(SELECT, &args).await?;
    row.map(Ticket::try_from).transpose()
}

/// Reads ticket `ticket` of `tenant` as the pipeline sees it, with the tenant's webhook URL — one
/// query for both.
///
/// # Errors
/// [`StoreError::Database`] or [`StoreError::Corrupt`].
pub async fn load_ticket_view(
    store: &Store,
    tenant: &TenantId,
    ticket: &TicketId,
) -> Result<Option<TicketView>, StoreError> {
    let args: [Arg<'_>; 2] = [tenant.as_str().into(), ticket.as_str().into()];
    let row: Option<TicketViewRow> = store.db().fetch_optional(SELECT_VIEW, &args).await?;
    row.map(TicketView::try_from).transpose()
}

/// [`load_ticket_view`] for many tickets: on PostgreSQL one query for the batch, on SQLite one per
/// ticket. Returns each ticket (or `None`) in order.
///
/// # Errors
/// [`StoreError::Database`] or [`StoreError::Corrupt`].
pub async fn load_ticket_views(
    store: &Store,
    keys: &[(&TenantId, &TicketId)],
) -> Result<Vec<Option<TicketView>>, StoreError> {
    let pool = match store.db() {
        Db::Postgres(pool) if keys.len() > 1 => pool,
        _ => {
            let mut out = Vec::with_capacity(keys.len());
            for (tenant, ticket) in keys {
                out.push(load_ticket_view(store, tenant, ticket).await?);
            }
            return Ok(out);
        }
    };
    let rows: Vec<TicketViewRow> = sqlx::query_as(PG_SELECT_VIEWS)
        .bind(keys.iter().map(|(tenant, _)| tenant.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|(_, ticket)| ticket.as_str()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in rows {
        found.insert((row.tenant_id.clone(), row.ticket_id.clone()), row);
    }
    keys.iter()
        .map(|(tenant, ticket)| {
            found
                .get(&(tenant.as_str().to_owned(), ticket.as_str().to_owned()))
                .map(|r| TicketView::try_from(r.clone()))
                .transpose()
        })
        .collect()
}
