//! Tenants, with API keys stored as SHA-256 hashes, and tickets, whose revision bumps on every
//! update (a new revision is a new triage job).
//!
//! API keys are 256-bit random tokens, so a fast hash is enough: nobody can brute-force the
//! preimage, and authentication stays one indexed lookup on the request path — and none at all for
//! a key verified in the last [`AUTH_CACHE_TTL`] (the hot path submits two requests per ticket).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use longhaul_core::{TenantId, TicketId};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::types::Json;

use crate::{Store, StoreError, now};

/// How long a verified API key is trusted without asking the database again. Keys are never
/// revoked through the API; a key deleted from the database by hand stops working after this long.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// At most this many keys are remembered; the cache starts over when full.
const AUTH_CACHE_MAX: usize = 10_000;

/// Recently verified keys, by SHA-256 hash (the keys themselves are never kept). Only successful
/// lookups are remembered, so unknown keys cannot grow it.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, (TenantId, Instant)>>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCache")
    }
}

impl AuthCache {
    fn get(&self, hash: &[u8], now: Instant) -> Option<TenantId> {
        let entries = self.entries.lock().ok()?;
        let (tenant, at) = entries.get(hash)?;
        (now.saturating_duration_since(*at) < AUTH_CACHE_TTL).then(|| tenant.clone())
    }

    fn put(&self, hash: Vec<u8>, tenant: TenantId, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= AUTH_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (tenant, now));
        }
    }
}

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "lh_";

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub tenant_id: TenantId,
    /// A display name.
    pub name: String,
    /// Where triage results are delivered, if anywhere.
    pub webhook_url: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A freshly issued API key. Shown to its owner once; its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The secret, to print once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
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
struct TenantRow {
    tenant_id: String,
    name: String,
    webhook_url: Option<String>,
    created_at: DateTime<Utc>,
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

fn corrupt(table: &'static str) -> impl Fn(String) -> StoreError {
    move |detail| StoreError::Corrupt { table, detail }
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            tenant_id: TenantId::parse(r.tenant_id).map_err(|e| corrupt("tenants")(e.to_string()))?,
            name: r.name,
            webhook_url: r.webhook_url,
            created_at: r.created_at,
        })
    }
}

impl TryFrom<TicketRow> for Ticket {
    type Error = StoreError;
    fn try_from(r: TicketRow) -> Result<Self, StoreError> {
        let bad = corrupt("tickets");
        Ok(Ticket {
            tenant_id: TenantId::parse(r.tenant_id).map_err(|e| bad(e.to_string()))?,
            ticket_id: TicketId::parse(r.ticket_id).map_err(|e| bad(e.to_string()))?,
            revision: u64::try_from(r.revision).map_err(|_| bad(format!("revision = {}", r.revision)))?,
            subject: r.subject,
            body: r.body,
            triage: r.triage.map(|j| j.0),
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn new_api_key() -> Result<ApiKey, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Config(format!("the OS random source failed: {e}")))?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(ApiKey(format!("{API_KEY_PREFIX}{hex}")))
}

impl Store {
    /// Creates a tenant and issues its API key (returned once, stored only as a hash).
    ///
    /// # Errors
    /// [`StoreError::Database`], including a unique violation when the tenant exists.
    pub async fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        webhook_url: Option<&str>,
    ) -> Result<(Tenant, ApiKey), StoreError> {
        let key = new_api_key()?;
        let hash = hash_key(key.expose());
        let now = now();
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO tenants (tenant_id, name, api_key_hash, webhook_url, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant.as_str())
            .bind(name)
            .bind(&hash)
            .bind(webhook_url)
            .bind(now)
            .execute(pool)
            .await
            .map(|_| ())
        })?;
        let tenant = Tenant {
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            webhook_url: webhook_url.map(str::to_owned),
            created_at: now,
        };
        Ok((tenant, key))
    }

    /// Reads a tenant.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = on_pool!(self, pool => {
            sqlx::query_as("SELECT tenant_id, name, webhook_url, created_at FROM tenants WHERE tenant_id = $1")
                .bind(tenant.as_str())
                .fetch_optional(pool)
                .await
        })?;
        row.map(Tenant::try_from).transpose()
    }

    /// The tenant owning `api_key`, or `None` for an unknown key.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<TenantId>, StoreError> {
        let hash = hash_key(api_key);
        if let Some(tenant) = self.auth_cache.get(&hash, Instant::now()) {
            return Ok(Some(tenant));
        }
        let row: Option<(String, Vec<u8>)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT tenant_id, api_key_hash FROM tenants WHERE api_key_hash = $1")
                .bind(&hash)
                .fetch_optional(pool)
                .await
        })?;
        match row {
            Some((tenant, stored)) if constant_time_eq(&stored, &hash) => {
                let tenant = TenantId::parse(tenant).map_err(|e| corrupt("tenants")(e.to_string()))?;
                self.auth_cache.put(hash, tenant.clone(), Instant::now());
                Ok(Some(tenant))
            }
            _ => Ok(None),
        }
    }

    /// Creates ticket `ticket` at revision 1, or updates its subject and body and bumps its
    /// revision. Returns the ticket as stored.
    ///
    /// # Errors
    /// [`StoreError::Database`] (a foreign-key violation for an unknown tenant).
    pub async fn upsert_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
        subject: &str,
        body: &str,
    ) -> Result<Ticket, StoreError> {
        let now = now();
        let row: TicketRow = on_pool!(self, pool => {
            sqlx::query_as(
                "INSERT INTO tickets (tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at) \
                 VALUES ($1, $2, 1, $3, $4, NULL, $5, $5) \
                 ON CONFLICT (tenant_id, ticket_id) DO UPDATE SET revision = tickets.revision + 1, \
                 subject = excluded.subject, body = excluded.body, updated_at = excluded.updated_at \
                 RETURNING tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at",
            )
            .bind(tenant.as_str())
            .bind(ticket.as_str())
            .bind(subject)
            .bind(body)
            .bind(now)
            .fetch_one(pool)
            .await
        })?;
        row.try_into()
    }

    /// Reads one ticket of `tenant`; another tenant's ticket reads as `None`.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<Ticket>, StoreError> {
        let row: Option<TicketRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT tenant_id, ticket_id, revision, subject, body, triage, created_at, updated_at \
                 FROM tickets WHERE tenant_id = $1 AND ticket_id = $2",
            )
            .bind(tenant.as_str())
            .bind(ticket.as_str())
            .fetch_optional(pool)
            .await
        })?;
        row.map(Ticket::try_from).transpose()
    }
}

fn ticket_view(r: TicketViewRow) -> Result<longhaul_core::TicketView, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt { table: "tickets", detail };
    Ok(longhaul_core::TicketView {
        tenant_id: TenantId::parse(r.tenant_id).map_err(|e| corrupt(e.to_string()))?,
        ticket_id: TicketId::parse(r.ticket_id).map_err(|e| corrupt(e.to_string()))?,
        revision: u64::try_from(r.revision).map_err(|_| corrupt(format!("revision = {}", r.revision)))?,
        subject: r.subject,
        body: r.body,
        webhook_url: r.webhook_url,
    })
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

impl Store {
    /// Reads ticket `ticket` of `tenant` as the pipeline sees it, with the tenant's webhook URL —
    /// one query for both.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn load_ticket_view(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<longhaul_core::TicketView>, StoreError> {
        let row: Option<TicketViewRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT t.tenant_id, t.ticket_id, t.revision, t.subject, t.body, n.webhook_url \
                 FROM tickets t JOIN tenants n ON n.tenant_id = t.tenant_id \
                 WHERE t.tenant_id = $1 AND t.ticket_id = $2",
            )
            .bind(tenant.as_str())
            .bind(ticket.as_str())
            .fetch_optional(pool)
            .await
        })?;
        row.map(ticket_view).transpose()
    }

    /// [`Store::load_ticket_view`] for many tickets: on PostgreSQL one query for the batch, on
    /// SQLite one per ticket. Returns each ticket (or `None`) in order.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn load_ticket_views(
        &self,
        keys: &[(&TenantId, &TicketId)],
    ) -> Result<Vec<Option<longhaul_core::TicketView>>, StoreError> {
        let pool = match &self.backend {
            crate::Backend::Postgres(pool) if keys.len() > 1 => pool,
            _ => {
                let mut out = Vec::with_capacity(keys.len());
                for (tenant, ticket) in keys {
                    out.push(self.load_ticket_view(tenant, ticket).await?);
                }
                return Ok(out);
            }
        };
        let rows: Vec<TicketViewRow> = sqlx::query_as(
            // One primary-key lookup per key: the LATERAL subquery with LIMIT cannot be turned
            // into a hash join over the whole table, whatever plan the statistics suggest.
            "SELECT t.tenant_id, t.ticket_id, t.revision, t.subject, t.body, n.webhook_url \
             FROM UNNEST($1::text[], $2::text[]) AS k(tenant, ticket) \
             CROSS JOIN LATERAL (SELECT * FROM tickets WHERE tenant_id = k.tenant AND ticket_id = k.ticket LIMIT 1) t \
             JOIN tenants n ON n.tenant_id = t.tenant_id",
        )
        .bind(keys.iter().map(|(tenant, _)| tenant.as_str()).collect::<Vec<_>>())
        .bind(keys.iter().map(|(_, ticket)| ticket.as_str()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            found.insert((row.tenant_id.clone(), row.ticket_id.clone()), row);
        }
        keys.iter()
            .map(|(tenant, ticket)| {
                found
                    .get(&(tenant.as_str().to_owned(), ticket.as_str().to_owned()))
                    .map(|r| ticket_view(r.clone()))
                    .transpose()
            })
            .collect()
    }

    /// [`Store::load_ticket_views`] with each key's own result, for batching callers: when the
    /// batch query fails, the keys are read one by one, so one bad read cannot fail the others.
    pub async fn load_ticket_views_each(
        &self,
        keys: &[(&TenantId, &TicketId)],
    ) -> Vec<Result<Option<longhaul_core::TicketView>, StoreError>> {
        match self.load_ticket_views(keys).await {
            Ok(views) => views.into_iter().map(Ok).collect(),
            Err(e) if keys.len() > 1 => {
                tracing::warn!(error = %e, reads = keys.len(), "batched ticket reads failed; reading them one by one");
                let mut out = Vec::with_capacity(keys.len());
                for (tenant, ticket) in keys {
                    out.push(self.load_ticket_view(tenant, ticket).await);
                }
                out
            }
            Err(e) => vec![Err(e)],
        }
    }

    /// Writes the triage result onto the ticket of `ctx` at most once per operation id `op`,
    /// atomically with the operation's `done` record (on PostgreSQL one statement, on SQLite one
    /// transaction). Returns the stored result: the first write's, on a repeat.
    ///
    /// The result carries the triage it is about, so whoever repeats the write learns what the
    /// first one decided: `{"written": true, "triage": …}`. A stored triage is never replaced by
    /// one of an older ticket revision (the `revision` field of the triage JSON; a triage without
    /// one counts as revision 0): when the ticket already holds a newer triage, the ticket is left
    /// alone and the operation is still recorded as done, with
    /// `{"written": false, "superseded_by": <stored revision>, "triage": …}`, so a retry gets the
    /// same answer.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when the ticket does not exist for the tenant; [`StoreError::Database`].
    pub async fn write_ticket_triage(
        &self,
        ctx: &longhaul_core::JobContext,
        op: &longhaul_core::OperationId,
        triage: &Value,
    ) -> Result<Value, StoreError> {
        let now = now();
        let written = triage_result(triage, None);
        let revision = triage_revision(triage);
        let attempt = i32::try_from(ctx.attempt).unwrap_or(i32::MAX);
        if let crate::Backend::Postgres(pool) = &self.backend {
            let inserted: Option<(Json<Value>,)> = sqlx::query_as(PG_TRIAGE_ONE_SQL)
                .bind(op.as_str())
                .bind(ctx.tenant_id.as_str())
                .bind(ctx.job_id.as_str())
                .bind(attempt)
                .bind(Json(&written))
                .bind(now)
                .bind(ctx.ticket_id.as_str())
                .bind(Json(triage))
                .bind(revision)
                .bind(Json(&triage_result(triage, Some(0))))
                .fetch_optional(pool)
                .await?;
            if let Some((result,)) = inserted {
                return Ok(result.0);
            }
            let stored: Option<(Option<Json<Value>>,)> =
                sqlx::query_as("SELECT result FROM operations WHERE operation_id = $1 AND tenant_id = $2")
                    .bind(op.as_str())
                    .bind(ctx.tenant_id.as_str())
                    .fetch_optional(pool)
                    .await?;
            return match stored {
                Some((r,)) => Ok(r.map(|j| j.0).unwrap_or(Value::Null)),
                None => Err(StoreError::NotFound("ticket")),
            };
        }
        on_pool!(self, pool => {
            // The first statement writes, so the transaction holds the write lock from the start:
            // the stored revision cannot change between the check and the update.
            let mut tx = pool.begin().await?;
            let inserted: Option<(String,)> = sqlx::query_as(
                "INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result, \
                 created_at, updated_at) VALUES ($1, $2, $3, 'apply', 'ticket-update', 'done', $4, $5, $6, $6) \
                 ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id",
            )
            .bind(op.as_str())
            .bind(ctx.tenant_id.as_str())
            .bind(ctx.job_id.as_str())
            .bind(attempt)
            .bind(Json(&written))
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if inserted.is_none() {
                let stored: Option<(Option<Json<Value>>,)> = sqlx::query_as(
                    "SELECT result FROM operations WHERE operation_id = $1 AND tenant_id = $2",
                )
                .bind(op.as_str())
                .bind(ctx.tenant_id.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                return Ok(stored.and_then(|(r,)| r).map(|j| j.0).unwrap_or(Value::Null));
            }
            let stored: Option<(i64,)> = sqlx::query_as(
                "SELECT COALESCE(json_extract(triage, '$.revision'), 0) FROM tickets \
                 WHERE tenant_id = $1 AND ticket_id = $2",
            )
            .bind(ctx.tenant_id.as_str())
            .bind(ctx.ticket_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let Some((stored,)) = stored else { return Err(StoreError::NotFound("ticket")) };
            let result = if stored <= revision {
                sqlx::query("UPDATE tickets SET triage = $3, updated_at = $4 WHERE tenant_id = $1 AND ticket_id = $2")
                    .bind(ctx.tenant_id.as_str())
                    .bind(ctx.ticket_id.as_str())
                    .bind(Json(triage))
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                written
            } else {
                let skipped = triage_result(triage, Some(stored));
                sqlx::query("UPDATE operations SET result = $2 WHERE operation_id = $1")
                    .bind(op.as_str())
                    .bind(Json(&skipped))
                    .execute(&mut *tx)
                    .await?;
                skipped
            };
            tx.commit().await?;
            Ok(result)
        })
    }
}

/// The result the ticket-update operation records, with the `triage` it is about:
/// `"written": true` when the triage was written, `"written": false, "superseded_by": N` when the
/// ticket already held the triage of the newer revision `N` and was left alone.
fn triage_result(triage: &Value, superseded_by: Option<i64>) -> Value {
    match superseded_by {
        None => serde_json::json!({ "written": true, "triage": triage }),
        Some(n) => serde_json::json!({ "written": false, "superseded_by": n, "triage": triage }),
    }
}

/// The ticket revision a triage JSON was made from (its `revision` field; 0 without one).
fn triage_revision(triage: &Value) -> i64 {
    triage.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

/// PostgreSQL: one ticket triage write in one statement. The ticket row is locked first (`cur`), so
/// the stored revision it reads is the latest and stays so until the update; the operation row is
/// inserted only while the ticket exists (tickets are never deleted), with the written result
/// when the stored triage is not newer and the superseded one otherwise; the ticket is updated
/// only if the operation row was new and says written. Returns the new operation's result, or
/// nothing when the operation was already recorded or the ticket is missing. `$1` operation id,
/// `$2` tenant, `$3` job, `$4` attempt, `$5` written result, `$6` time, `$7` ticket, `$8` triage,
/// `$9` its revision, `$10` the superseded result (its `superseded_by` is set here).
const PG_TRIAGE_ONE_SQL: &str = "WITH cur AS (SELECT COALESCE((triage->>'revision')::bigint, 0) AS stored \
     FROM tickets WHERE tenant_id = $2 AND ticket_id = $7 FOR UPDATE), \
     o AS (INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, \
     attempt, result, created_at, updated_at) \
     SELECT $1, $2, $3, 'apply', 'ticket-update', 'done', $4, \
     CASE WHEN cur.stored <= $9 THEN $5 ELSE $10::jsonb || jsonb_build_object('superseded_by', cur.stored) END, \
     $6, $6 FROM cur \
     ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id, result), \
     u AS (UPDATE tickets SET triage = $8, updated_at = $6 FROM o \
     WHERE tenant_id = $2 AND ticket_id = $7 AND (o.result->>'written')::boolean RETURNING 1) \
     SELECT result FROM o";

/// A ticket triage write: the job's context, the operation id, the triage JSON.
pub type TriageWrite<'a> = (&'a longhaul_core::JobContext, &'a longhaul_core::OperationId, &'a Value);

/// PostgreSQL: many ticket triage writes in one statement, as [`PG_TRIAGE_ONE_SQL`] for each row
/// (the batch names each ticket once). `$1` operation ids, `$2` tenants, `$3` jobs, `$4`
/// attempts, `$5` tickets, `$6` triage values, `$7` their revisions, `$8` written results, `$9`
/// superseded results, `$10` time. Returns each new operation's id and result.
const PG_TRIAGE_MANY_SQL: &str = "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[], \
     $5::text[], $6::jsonb[], $7::int8[], $8::jsonb[], $9::jsonb[]) \
     AS v(op, tenant, job, attempt, ticket, triage, revision, written, skipped)), \
     cur AS (SELECT k.tenant_id, k.ticket_id, COALESCE((k.triage->>'revision')::bigint, 0) AS stored \
     FROM tickets k JOIN v ON k.tenant_id = v.tenant AND k.ticket_id = v.ticket \
     ORDER BY k.tenant_id, k.ticket_id FOR UPDATE OF k), \
     o AS (INSERT INTO operations (operation_id, tenant_id, job_id, stage, effect, state, attempt, result, \
     created_at, updated_at) \
     SELECT v.op, v.tenant, v.job, 'apply', 'ticket-update', 'done', v.attempt, \
     CASE WHEN cur.stored <= v.revision THEN v.written \
     ELSE v.skipped || jsonb_build_object('superseded_by', cur.stored) END, $10, $10 \
     FROM v JOIN cur ON cur.tenant_id = v.tenant AND cur.ticket_id = v.ticket \
     ON CONFLICT (operation_id) DO NOTHING RETURNING operation_id, result), \
     u AS (UPDATE tickets t SET triage = v.triage, updated_at = $10 FROM o JOIN v ON v.op = o.operation_id \
     WHERE t.tenant_id = v.tenant AND t.ticket_id = v.ticket AND (o.result->>'written')::boolean RETURNING 1) \
     SELECT operation_id, result FROM o";

impl Store {
    /// [`Store::write_ticket_triage`] for many jobs: how a worker writes the apply stages of its
    /// concurrent jobs together. On PostgreSQL one statement (one commit) when the batch names
    /// each ticket and operation once; otherwise, and on SQLite, one write after another. Returns
    /// each write's stored result, or its error ([`StoreError::NotFound`] for a missing ticket), in
    /// order. The revision guard of [`Store::write_ticket_triage`] holds for each write.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the batch statement fails: then none was written.
    pub async fn write_ticket_triage_many(
        &self,
        writes: &[TriageWrite<'_>],
    ) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
        let mut tickets = std::collections::HashSet::new();
        let mut ops = std::collections::HashSet::new();
        let distinct = writes
            .iter()
            .all(|(ctx, op, _)| tickets.insert((&ctx.tenant_id, &ctx.ticket_id)) && ops.insert(op.as_str()));
        let pool = match &self.backend {
            crate::Backend::Postgres(pool) if distinct && writes.len() > 1 => pool,
            _ => {
                let mut out = Vec::with_capacity(writes.len());
                for (ctx, op, triage) in writes {
                    out.push(self.write_ticket_triage(ctx, op, triage).await);
                }
                return Ok(out);
            }
        };
        let now = now();
        // In ticket order, so concurrent batches lock tickets in the same order.
        let mut sorted: Vec<&TriageWrite<'_>> = writes.iter().collect();
        sorted.sort_unstable_by_key(|(ctx, ..)| (ctx.tenant_id.as_str(), ctx.ticket_id.as_str()));
        let written: Vec<(String, Json<Value>)> = sqlx::query_as(PG_TRIAGE_MANY_SQL)
            .bind(sorted.iter().map(|(_, op, _)| op.as_str()).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(ctx, ..)| ctx.tenant_id.as_str()).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(ctx, ..)| ctx.job_id.as_str()).collect::<Vec<_>>())
            .bind(
                sorted
                    .iter()
                    .map(|(ctx, ..)| i32::try_from(ctx.attempt).unwrap_or(i32::MAX))
                    .collect::<Vec<_>>(),
            )
            .bind(sorted.iter().map(|(ctx, ..)| ctx.ticket_id.as_str()).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(.., triage)| Json(*triage)).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(.., triage)| triage_revision(triage)).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(.., triage)| Json(triage_result(triage, None))).collect::<Vec<_>>())
            .bind(sorted.iter().map(|(.., triage)| Json(triage_result(triage, Some(0)))).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(pool)
            .await?;
        let written: std::collections::HashMap<String, Value> =
            written.into_iter().map(|(op, result)| (op, result.0)).collect();
        // The rest: written by an earlier attempt (its stored result), or the ticket is missing.
        let rest: Vec<&str> =
            writes.iter().map(|(_, op, _)| op.as_str()).filter(|op| !written.contains_key(*op)).collect();
        let mut stored = std::collections::HashMap::new();
        if !rest.is_empty() {
            let rows: Vec<(String, String, Option<Json<Value>>)> = sqlx::query_as(
                "SELECT operation_id, tenant_id, result FROM operations WHERE operation_id = ANY($1)",
            )
            .bind(&rest)
            .fetch_all(pool)
            .await?;
            for (op, tenant, r) in rows {
                stored.insert(op, (tenant, r.map(|j| j.0).unwrap_or(Value::Null)));
            }
        }
        Ok(writes
            .iter()
            .map(|(ctx, op, _)| {
                if let Some(result) = written.get(op.as_str()) {
                    return Ok(result.clone());
                }
                match stored.get(op.as_str()) {
                    Some((tenant, r)) if tenant == ctx.tenant_id.as_str() => Ok(r.clone()),
                    _ => Err(StoreError::NotFound("ticket")),
                }
            })
            .collect())
    }
}

impl longhaul_core::TicketStore for Store {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<longhaul_core::TicketView>, longhaul_core::JobError> {
        Ok(self.load_ticket_view(tenant, ticket).await?)
    }

    async fn write_triage(
        &self,
        ctx: &longhaul_core::JobContext,
        op: &longhaul_core::OperationId,
        triage: &Value,
    ) -> Result<Value, longhaul_core::JobError> {
        Ok(self.write_ticket_triage(ctx, op, triage).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_prefixed_and_redacted() {
        let a = new_api_key().expect("key");
        let b = new_api_key().expect("key");
        assert_ne!(a, b);
        assert!(a.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(a.expose().len(), API_KEY_PREFIX.len() + 64);
        assert_eq!(format!("{a:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn constant_time_eq_table() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn the_auth_cache_remembers_verified_keys_for_its_ttl_and_stays_bounded() {
        let cache = AuthCache::default();
        let t0 = Instant::now();
        let acme = TenantId::parse("acme").expect("tenant");
        assert_eq!(cache.get(&hash_key("k"), t0), None);
        cache.put(hash_key("k"), acme.clone(), t0);
        assert_eq!(cache.get(&hash_key("k"), t0 + Duration::from_secs(1)), Some(acme.clone()));
        assert_eq!(cache.get(&hash_key("other"), t0), None, "another key is not the tenant's");
        assert_eq!(cache.get(&hash_key("k"), t0 + AUTH_CACHE_TTL), None, "expired");
        for i in 0..AUTH_CACHE_MAX + 1 {
            cache.put(hash_key(&i.to_string()), acme.clone(), t0);
        }
        assert!(cache.entries.lock().expect("lock").len() <= AUTH_CACHE_MAX);
    }
}
