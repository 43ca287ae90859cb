//! The triage result written onto a ticket, at most once per operation id, atomically with the
//! operation's `done` record in the store's operation log (`operations`, whose row schema
//! `longhaul_store::ops` documents for such local effects) — a local side effect of the
//! pipeline's apply stage. The stage and effect names the operation is recorded under come from
//! the pipeline with each write.
//!
//! PostgreSQL writes one triage in one statement, and a batch of them in one statement; SQLite
//! writes each in one transaction of single-row statements.

use std::collections::{HashMap, HashSet};

use longhaul_core::{JobContext, OperationId, TicketId};
use longhaul_store::backend::{Arg, Db, Session};
use longhaul_store::{BackendKind, Store, StoreError, now};
use serde_json::{Value, json};
use sqlx::types::Json;

/// The single write; see the file.
const PG_WRITE: &str = include_str!("../../sql/postgres/tickets/write_triage.sql");
/// Many writes naming distinct tickets and operations; see the file.
const PG_WRITE_MANY: &str = include_str!("../../sql/postgres/tickets/write_triage_many.sql");
/// `$1` operation ids.
const PG_SELECT_RESULTS: &str = include_str!("../../sql/postgres/operations/select_results.sql");
const SELECT_RESULT: &str = include_str!("../../sql/common/operations/select_result.sql");
const SQLITE_INSERT_OPERATION: &str = include_str!("../../sql/sqlite/tickets/insert_operation.sql");
const SQLITE_SELECT_REVISION: &str = include_str!("../../sql/sqlite/tickets/select_triage_revision.sql");
const SQLITE_UPDATE_TRIAGE: &str = include_str!("../../sql/sqlite/tickets/update_triage.sql");
const SQLITE_UPDATE_RESULT: &str = include_str!("../../sql/sqlite/tickets/update_operation_result.sql");

/// One ticket triage write: which job's attempt writes it, onto which ticket, under which
/// operation (its id, and the stage and effect names the operation log records), and the triage
/// JSON.
#[derive(Debug, Clone, Copy)]
pub struct TriageWrite<'a> {
    /// The job's context: tenant, job and attempt.
    pub ctx: &'a JobContext,
    /// The ticket written, of the job's tenant.
    pub ticket: &'a TicketId,
    /// The operation id, derived from the job, the stage and the effect.
    pub op: &'a OperationId,
    /// The pipeline stage that writes it.
    pub stage: &'a str,
    /// The side effect's name within the stage.
    pub effect: &'a str,
    /// The triage JSON (its `revision` field says which ticket revision it was made from).
    pub triage: &'a Value,
}

/// The result the ticket-update operation records, with the `triage` it is about:
/// `"written": true` when the triage was written, `"written": false, "superseded_by": N` when the
/// ticket already held the triage of the newer revision `N` and was left alone.
fn triage_result(triage: &Value, superseded_by: Option<i64>) -> Value {
    match superseded_by {
        None => json!({ "written": true, "triage": triage }),
        Some(n) => json!({ "written": false, "superseded_by": n, "triage": triage }),
    }
}

/// The ticket revision a triage JSON was made from (its `revision` field; 0 without one).
fn triage_revision(triage: &Value) -> i64 {
    triage.get("revision").and_then(Value::as_i64).unwrap_or(0)
}

fn attempt(ctx: &JobContext) -> i32 {
    i32::try_from(ctx.attempt).unwrap_or(i32::MAX)
}

/// The stored result of operation `op` of `tenant`, if it is recorded.
async fn stored_result(
    session: &mut Session,
    op: &OperationId,
    tenant: &str,
) -> Result<Option<Value>, StoreError> {
    let stored: Option<(Option<Json<Value>>,)> =
        session.fetch_optional(SELECT_RESULT, &[op.as_str().into(), tenant.into()]).await?;
    Ok(stored.map(|(r,)| r.map(|j| j.0).unwrap_or(Value::Null)))
}

/// Writes the triage result onto ticket `w.ticket` of `w.ctx`'s tenant at most once per operation
/// id `w.op`, atomically with the operation's `done` record (on PostgreSQL one statement, on SQLite
/// one transaction). Returns the stored result: the first write's, on a repeat.
///
/// The result carries the triage it is about, so whoever repeats the write learns what the first
/// one decided: `{"written": true, "triage": …}`. A stored triage is never replaced by one of an
/// older ticket revision (the `revision` field of the triage JSON; a triage without one counts as
/// revision 0): when the ticket already holds a newer triage, the ticket is left alone and the
/// operation is still recorded as done, with
/// `{"written": false, "superseded_by": <stored revision>, "triage": …}`, so a retry gets the same
/// answer.
///
/// # Errors
/// [`StoreError::NotFound`] when the ticket does not exist for the tenant; [`StoreError::Database`].
pub async fn write_ticket_triage(store: &Store, w: TriageWrite<'_>) -> Result<Value, StoreError> {
    match store.kind() {
        BackendKind::Postgres => write_pg(store.db(), w).await,
        BackendKind::Sqlite => write_sqlite(store.db(), w).await,
    }
}

/// [`write_ticket_triage`] for many jobs: how a worker writes the apply stages of its concurrent
/// jobs together. On PostgreSQL one statement (one commit) when the batch names each ticket and
/// operation once; otherwise, and on SQLite, one write after another. Returns each write's stored
/// result, or its error ([`StoreError::NotFound`] for a missing ticket), in order. The revision
/// guard of [`write_ticket_triage`] holds for each write.
///
/// # Errors
/// [`StoreError::Database`] when the batch statement fails: then none was written.
pub async fn write_ticket_triage_many(
    store: &Store,
    writes: &[TriageWrite<'_>],
) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
    let mut tickets = HashSet::new();
    let mut ops = HashSet::new();
    let distinct =
        writes.iter().all(|w| tickets.insert((&w.ctx.tenant_id, w.ticket)) && ops.insert(w.op.as_str()));
    match store.db() {
        Db::Postgres(pool) if distinct && writes.len() > 1 => write_many_pg(pool, writes).await,
        _ => {
            let mut out = Vec::with_capacity(writes.len());
            for w in writes {
                out.push(write_ticket_triage(store, *w).await);
            }
            Ok(out)
        }
    }
}

/// PostgreSQL: the write in one statement; a repeat reads the stored result.
async fn write_pg(db: &Db, w: TriageWrite<'_>) -> Result<Value, StoreError> {
    let (written, skipped) = (triage_result(w.triage, None), triage_result(w.triage, Some(0)));
    let args: [Arg<'_>; 12] = [
        w.op.as_str().into(),
        w.ctx.tenant_id.as_str().into(),
        w.ctx.job_id.as_str().into(),
        attempt(w.ctx).into(),
        (&written).into(),
        now().into(),
        w.ticket.as_str().into(),
        w.triage.into(),
        triage_revision(w.triage).into(),
        (&skipped).into(),
        w.stage.into(),
        w.effect.into(),
    ];
    let mut db = db.connect().await?;
    let inserted: Option<(Json<Value>,)> = db.fetch_optional(PG_WRITE, &args).await?;
    if let Some((result,)) = inserted {
        return Ok(result.0);
    }
    stored_result(&mut db, w.op, w.ctx.tenant_id.as_str()).await?.ok_or(StoreError::NotFound("ticket"))
}

/// SQLite: the write in one transaction. Its first statement writes, so the transaction holds the
/// write lock from the start: the stored revision cannot change between the check and the update.
async fn write_sqlite(db: &Db, w: TriageWrite<'_>) -> Result<Value, StoreError> {
    let (now, tenant, ticket) = (now(), w.ctx.tenant_id.as_str(), w.ticket.as_str());
    let written = triage_result(w.triage, None);
    let revision = triage_revision(w.triage);
    let mut tx = db.begin().await?;
    let args: [Arg<'_>; 8] = [
        w.op.as_str().into(),
        tenant.into(),
        w.ctx.job_id.as_str().into(),
        attempt(w.ctx).into(),
        (&written).into(),
        now.into(),
        w.stage.into(),
        w.effect.into(),
    ];
    let inserted: Option<(String,)> = tx.fetch_optional(SQLITE_INSERT_OPERATION, &args).await?;
    if inserted.is_none() {
        return Ok(stored_result(&mut tx, w.op, tenant).await?.unwrap_or(Value::Null));
    }
    let stored: Option<(i64,)> =
        tx.fetch_optional(SQLITE_SELECT_REVISION, &[tenant.into(), ticket.into()]).await?;
    let Some((stored,)) = stored else { return Err(StoreError::NotFound("ticket")) };
    let result = if stored <= revision {
        let args = [tenant.into(), ticket.into(), w.triage.into(), now.into()];
        tx.execute(SQLITE_UPDATE_TRIAGE, &args).await?;
        written
    } else {
        let skipped = triage_result(w.triage, Some(stored));
        tx.execute(SQLITE_UPDATE_RESULT, &[w.op.as_str().into(), (&skipped).into()]).await?;
        skipped
    };
    tx.commit().await?;
    Ok(result)
}

/// PostgreSQL: many writes naming distinct tickets and operations in one statement; the writes it
/// did not record (repeats, missing tickets) read their stored results in one more.
async fn write_many_pg(
    pool: &sqlx::PgPool,
    writes: &[TriageWrite<'_>],
) -> Result<Vec<Result<Value, StoreError>>, StoreError> {
    // In ticket order, so concurrent batches lock tickets in the same order.
    let mut sorted: Vec<&TriageWrite<'_>> = writes.iter().collect();
    sorted.sort_unstable_by_key(|w| (w.ctx.tenant_id.as_str(), w.ticket.as_str()));
    let column =
        |f: for<'w> fn(&'w TriageWrite<'w>) -> &'w str| sorted.iter().map(|w| f(w)).collect::<Vec<&str>>();
    let json = |f: &dyn Fn(&Value) -> Value| sorted.iter().map(|w| Json(f(w.triage))).collect::<Vec<_>>();
    // Planned for each batch (an unnamed statement): a generic plan cached while `tickets` was
    // new and small would scan the whole table on every call (see longhaul_store's batched job
    // writes, which do the same).
    let written: Vec<(String, Json<Value>)> = sqlx::query_as(PG_WRITE_MANY)
        .persistent(false)
        .bind(column(|w| w.op.as_str()))
        .bind(column(|w| w.ctx.tenant_id.as_str()))
        .bind(column(|w| w.ctx.job_id.as_str()))
        .bind(sorted.iter().map(|w| attempt(w.ctx)).collect::<Vec<_>>())
        .bind(column(|w| w.ticket.as_str()))
        .bind(sorted.iter().map(|w| Json(w.triage)).collect::<Vec<_>>())
        .bind(sorted.iter().map(|w| triage_revision(w.triage)).collect::<Vec<_>>())
        .bind(json(&|t| triage_result(t, None)))
        .bind(json(&|t| triage_result(t, Some(0))))
        .bind(now())
        .bind(column(|w| w.stage))
        .bind(column(|w| w.effect))
        .fetch_all(pool)
        .await?;
    let written: HashMap<String, Value> = written.into_iter().map(|(op, result)| (op, result.0)).collect();
    // The rest: written by an earlier attempt (its stored result), or the ticket is missing.
    let rest: Vec<&str> =
        writes.iter().map(|w| w.op.as_str()).filter(|op| !written.contains_key(*op)).collect();
    let mut stored = HashMap::new();
    if !rest.is_empty() {
        let rows: Vec<(String, String, Option<Json<Value>>)> =
            sqlx::query_as(PG_SELECT_RESULTS).persistent(false).bind(&rest).fetch_all(pool).await?;
        for (op, tenant, r) in rows {
            stored.insert(op, (tenant, r.map(|j| j.0).unwrap_or(Value::Null)));
        }
    }
    Ok(writes
        .iter()
        .map(|w| {
            if let Some(result) = written.get(w.op.as_str()) {
                return Ok(result.clone());
            }
            match stored.get(w.op.as_str()) {
                Some((tenant, r)) if tenant == w.ctx.tenant_id.as_str() => Ok(r.clone()),
                _ => Err(StoreError::NotFound("ticket")),
            }
        })
        .collect())
}
