//! The side-effect operation log: the `operations` table, behind the core's [`OperationLog`].
//!
//! The operation log makes side effects at-most-once per [`OperationId`]: a durable step calls
//! `begin` before an effect and `finish` with its result after. A later attempt of the same job
//! that finds the operation `done` reuses the stored result instead of running the effect again;
//! one that finds it only `started` (the earlier attempt died mid-effect) runs it again with the
//! same operation id as the receiver's idempotency key.
//!
//! A `started` operation belongs to the newest attempt that began it: a begin hands it on only to
//! a newer (or the same) attempt, and a finish records it as done only for the attempt it belongs
//! to. An attempt that was taken over while it still ran (its lease ran out) and meets a step the
//! newer attempt has begun is told so ([`StoreError::Superseded`], at its begin or its finish), so
//! it stops there instead of running the step again or going on to the next; it cannot take the
//! operation back, and its late finish changes nothing: the result kept is the newer attempt's.
//!
//! Attempt numbers restart at 1 when a pruned job's id is resubmitted, so an attempt of the
//! earlier life still running is told apart only while its number is above the new record's
//! `attempts` (or the record is gone); from then on its begin, finish and outcome write cannot be
//! told from the new life's attempt of the same number. Fencing that for good needs a per-life
//! token carried by the attempt and the rows (a life counter in the job record).
//!
//! A *local* effect — a write to a table of a job kind's own in this database, such as the triage
//! kind's ticket update — may instead record its operation itself, in the transaction (or
//! statement) of its write, through [`crate::backend`]: one row inserted with
//! `INSERT … ON CONFLICT (operation_id) DO NOTHING`, with `state = 'done'` and the effect's result,
//! and read back by `operation_id` and `tenant_id` on a repeat. The row's schema is then part of
//! the contract: `operation_id` (the [`OperationId`]), `tenant_id`, `job_id`, `stage`, `effect`,
//! `state` (`'started'` or `'done'`), `attempt`, `result` (JSON), `created_at`, `updated_at`
//! (migration 0001); a change to it is a change to those writers too. [`Store::get_operation`]
//! and this log read such a row as any other.

use std::collections::HashSet;

use longhaul_core::job::BoxFuture;
use longhaul_core::{JobContext, JobError, OperationId, OperationLog, OperationState, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::backend::{Arg, Db};
use crate::{Store, StoreError, now};

const BEGIN: &str = include_str!("../sql/common/operations/begin.sql");
const SELECT: &str = include_str!("../sql/common/operations/select.sql");
const RESTART: &str = include_str!("../sql/common/operations/restart.sql");
const FINISH: &str = include_str!("../sql/common/operations/finish.sql");
const JOB_ATTEMPTS: &str = include_str!("../sql/common/operations/job_attempts.sql");
const TAKE_OVER: &str = include_str!("../sql/common/operations/take_over.sql");
const OWNER_JOB_ATTEMPTS: &str = include_str!("../sql/common/operations/owner_job_attempts.sql");
/// `$1` operations, `$2` tenants, `$3` jobs, `$4` stages, `$5` effects, `$6` attempts, `$7` time.
const BEGIN_MANY: &str = include_str!("../sql/postgres/operations/begin_many.sql");
/// `$1` operations, `$2` tenants, `$3` results, `$4` time, `$5` attempts.
const FINISH_MANY: &str = include_str!("../sql/postgres/operations/finish_many.sql");

/// One [`Store::begin_operation`] of a batch ([`Store::begin_operations`]).
#[derive(Debug, Clone)]
pub struct OperationBegin {
    /// The attempt about to run the operation.
    pub ctx: JobContext,
    /// The operation.
    pub op: OperationId,
    /// Its stage.
    pub stage: String,
    /// Its effect.
    pub effect: String,
}

/// One [`Store::finish_operation`] of a batch ([`Store::finish_operations`]).
#[derive(Debug, Clone)]
pub struct OperationFinish {
    /// The operation's tenant.
    pub tenant: TenantId,
    /// The operation.
    pub op: OperationId,
    /// The attempt that ran it.
    pub attempt: u32,
    /// Its result.
    pub result: Value,
}

/// An attempt number as the `attempt` column holds it.
fn attempt_arg(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

/// Per item, whether it is the first of its operation in the batch: only those go into a batch
/// statement (which must name each operation once); a repeat takes the one-item path after it,
/// as if it had come later.
fn firsts<'a>(ops: impl Iterator<Item = &'a OperationId>) -> Vec<bool> {
    let mut seen = HashSet::new();
    ops.map(|op| seen.insert(op.as_str())).collect()
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    state: String,
    attempt: i32,
    result: Option<Json<Value>>,
}

impl TryFrom<OperationRow> for OperationState {
    type Error = StoreError;
    fn try_from(r: OperationRow) -> Result<Self, StoreError> {
        match r.state.as_str() {
            "done" => Ok(OperationState::Done { result: r.result.map(|j| j.0).unwrap_or(Value::Null) }),
            "started" => Ok(OperationState::Started { attempt: u32::try_from(r.attempt).unwrap_or(0) }),
            other => Err(StoreError::Corrupt { table: "operations", detail: format!("state = {other:?}") }),
        }
    }
}

impl Store {
    /// Records that `ctx.attempt` is about to run operation `op`; returns the state it was in
    /// before (`None` the first time). See the module docs.
    ///
    /// # Errors
    /// [`StoreError::Superseded`] when a later attempt of the job's record has begun `op` and not
    /// finished it (this attempt was taken over and must not run the step; a step left started by
    /// an earlier life of the job id — an attempt above the record's — is taken over instead, and
    /// an attempt of an earlier life, above the record's attempts, is itself superseded);
    /// [`StoreError::Database`];
    /// [`StoreError::Corrupt`] for an unknown stored state.
    pub async fn begin_operation(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> Result<Option<OperationState>, StoreError> {
        let now = now();
        let attempt = attempt_arg(ctx.attempt);
        let (op, tenant) = (op.as_str(), ctx.tenant_id.as_str());
        let mut db = self.db.connect().await?;
        let args = [
            op.into(),
            tenant.into(),
            ctx.job_id.as_str().into(),
            stage.into(),
            effect.into(),
            attempt.into(),
            now.into(),
        ];
        // A round that does not answer saw the row change between its read and its restart: done,
        // taken by a newer attempt, or taken over from an earlier life (after which its owner is
        // at most the record's attempts, so that happens once); each is final for this begin by
        // the next round. (An operation of the same id under another tenant is `NotFound`.)
        loop {
            let inserted: Option<(String,)> = db.fetch_optional(BEGIN, &args).await?;
            if inserted.is_some() {
                return Ok(None);
            }
            let row: OperationRow = db
                .fetch_optional(SELECT, &[op.into(), tenant.into()])
                .await?
                .ok_or(StoreError::NotFound("operation"))?;
            let state = OperationState::try_from(row)?;
            if let OperationState::Started { attempt: owner } = state {
                let restart = if owner == ctx.attempt {
                    // The same attempt repeating its begin.
                    db.execute(RESTART, &[op.into(), tenant.into(), attempt.into(), now.into()]).await?
                } else {
                    // Another attempt's: the record's attempts tell which life each attempt is
                    // of (a record starts an attempt before it runs, so this life's attempts are
                    // at most its count). This attempt above it is of an earlier life, still
                    // running: it must not take the step; an owner above it is of an earlier life
                    // and is taken over; an owner above this attempt within it took this one over.
                    let started: Option<(i32,)> =
                        db.fetch_optional(JOB_ATTEMPTS, &[ctx.job_id.as_str().into(), tenant.into()]).await?;
                    let started = started.map(|(n,)| i64::from(n));
                    let (mine, theirs) = (i64::from(ctx.attempt), i64::from(owner));
                    match started {
                        Some(n) if mine <= n && theirs > n => {
                            let from = attempt_arg(owner);
                            let args = [op.into(), tenant.into(), attempt.into(), now.into(), from.into()];
                            db.execute(TAKE_OVER, &args).await?
                        }
                        Some(n) if mine <= n && theirs < mine => {
                            db.execute(RESTART, &[op.into(), tenant.into(), attempt.into(), now.into()])
                                .await?
                        }
                        _ => return Err(StoreError::Superseded(owner)),
                    }
                };
                if restart == 0 {
                    continue;
                }
            }
            return Ok(Some(state));
        }
    }

    /// Records that attempt `attempt` finished operation `op` with `result`. Finishing an
    /// operation that is already done keeps the first result; one that a later attempt has begun
    /// since (this attempt was superseded) is left to that attempt, whose result is the one kept.
    ///
    /// # Errors
    /// [`StoreError::Superseded`] when a later attempt has begun or finished `op` since, or when
    /// this attempt is of an earlier life of the job id (above the record's attempts, or no
    /// record) whose step the new life took over; [`StoreError::NotFound`] when `op` was never
    /// begun; [`StoreError::Corrupt`] when it is started by an earlier attempt only (this one
    /// never began it); [`StoreError::Database`].
    pub async fn finish_operation(
        &self,
        tenant: &TenantId,
        op: &OperationId,
        attempt: u32,
        result: &Value,
    ) -> Result<(), StoreError> {
        let now = now();
        let (op, tenant) = (op.as_str(), tenant.as_str());
        let args = [op.into(), tenant.into(), result.into(), now.into(), attempt_arg(attempt).into()];
        let mut db = self.db.connect().await?;
        if db.execute(FINISH, &args).await? == 1 {
            return Ok(());
        }
        let row: OperationRow = db
            .fetch_optional(SELECT, &[op.into(), tenant.into()])
            .await?
            .ok_or(StoreError::NotFound("operation"))?;
        // A finish follows its own attempt's begin, which left the row started by this attempt; an
        // owner or finisher above it is a newer attempt of this life that took the step over.
        let owner = u32::try_from(row.attempt).unwrap_or(0);
        match OperationState::try_from(row)? {
            _ if owner > attempt => Err(StoreError::Superseded(owner)),
            OperationState::Done { .. } => Ok(()),
            OperationState::Started { .. } => {
                // Started by a lower attempt: an attempt of an earlier life of the job id (above
                // the record's attempts, or with no record) after the new life took the step
                // over; otherwise this attempt never began it.
                let started: Option<(i32,)> =
                    db.fetch_optional(OWNER_JOB_ATTEMPTS, &[op.into(), tenant.into()]).await?;
                if started.is_none_or(|(n,)| i64::from(n) < i64::from(attempt)) {
                    return Err(StoreError::Superseded(owner));
                }
                Err(StoreError::Corrupt {
                    table: "operations",
                    detail: format!(
                        "finished by attempt {attempt}, which never began it (started by attempt {owner})"
                    ),
                })
            }
        }
    }

    /// [`Store::begin_operation`] for many operations: on PostgreSQL one statement records every
    /// new one (its own transaction, committed before this returns); an operation recorded already
    /// (a repeat, rare) then takes the one-item path. Answers per item, in order, as the one-item
    /// calls in that order would.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the batch statement fails: then it recorded nothing.
    pub async fn begin_operations(
        &self,
        ops: &[OperationBegin],
    ) -> Result<Vec<Result<Option<OperationState>, StoreError>>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            let mut out = Vec::with_capacity(ops.len());
            for o in ops {
                out.push(self.begin_operation(&o.ctx, &o.op, &o.stage, &o.effect).await);
            }
            return Ok(out);
        };
        let first = firsts(ops.iter().map(|o| &o.op));
        // In operation id order, so two batches sharing operations lock them in one order.
        let mut batch: Vec<&OperationBegin> =
            ops.iter().zip(&first).filter(|(_, f)| **f).map(|(o, _)| o).collect();
        batch.sort_unstable_by(|a, b| a.op.as_str().cmp(b.op.as_str()));
        let column = |f: fn(&OperationBegin) -> &str| batch.iter().map(|o| f(o)).collect::<Vec<&str>>();
        let inserted: Vec<(String,)> = sqlx::query_as(BEGIN_MANY)
            .bind(column(|o| o.op.as_str()))
            .bind(column(|o| o.ctx.tenant_id.as_str()))
            .bind(column(|o| o.ctx.job_id.as_str()))
            .bind(column(|o| o.stage.as_str()))
            .bind(column(|o| o.effect.as_str()))
            .bind(batch.iter().map(|o| attempt_arg(o.ctx.attempt)).collect::<Vec<_>>())
            .bind(now())
            .fetch_all(pool)
            .await?;
        let inserted: HashSet<String> = inserted.into_iter().map(|(op,)| op).collect();
        let mut out = Vec::with_capacity(ops.len());
        for (o, first) in ops.iter().zip(first) {
            if first && inserted.contains(o.op.as_str()) {
                out.push(Ok(None));
            } else {
                out.push(self.begin_operation(&o.ctx, &o.op, &o.stage, &o.effect).await);
            }
        }
        Ok(out)
    }

    /// [`Store::finish_operation`] for many operations: on PostgreSQL one statement finishes every
    /// started one (its own transaction, committed before this returns); the rest (done already,
    /// or never begun) take the one-item path. Answers per item, in order.
    ///
    /// # Errors
    /// [`StoreError::Database`] when the batch statement fails: then it finished nothing.
    pub async fn finish_operations(
        &self,
        ops: &[OperationFinish],
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let Db::Postgres(pool) = &self.db else {
            let mut out = Vec::with_capacity(ops.len());
            for o in ops {
                out.push(self.finish_operation(&o.tenant, &o.op, o.attempt, &o.result).await);
            }
            return Ok(out);
        };
        let first = firsts(ops.iter().map(|o| &o.op));
        // In operation id order, so two batches sharing operations lock them in one order.
        let mut batch: Vec<&OperationFinish> =
            ops.iter().zip(&first).filter(|(_, f)| **f).map(|(o, _)| o).collect();
        batch.sort_unstable_by(|a, b| a.op.as_str().cmp(b.op.as_str()));
        let finished: Vec<(String,)> = sqlx::query_as(FINISH_MANY)
            .bind(batch.iter().map(|o| o.op.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|o| o.tenant.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|o| Json(&o.result)).collect::<Vec<_>>())
            .bind(now())
            .bind(batch.iter().map(|o| attempt_arg(o.attempt)).collect::<Vec<_>>())
            .fetch_all(pool)
            .await?;
        let finished: HashSet<String> = finished.into_iter().map(|(op,)| op).collect();
        let mut out = Vec::with_capacity(ops.len());
        for (o, first) in ops.iter().zip(first) {
            if first && finished.contains(o.op.as_str()) {
                out.push(Ok(()));
            } else {
                out.push(self.finish_operation(&o.tenant, &o.op, o.attempt, &o.result).await);
            }
        }
        Ok(out)
    }

    /// The state of operation `op`, if it was ever begun.
    ///
    /// # Errors
    /// [`StoreError::Database`]; [`StoreError::Corrupt`] for an unknown stored state.
    pub async fn get_operation(
        &self,
        tenant: &TenantId,
        op: &OperationId,
    ) -> Result<Option<OperationState>, StoreError> {
        let args: [Arg<'_>; 2] = [op.as_str().into(), tenant.as_str().into()];
        let row: Option<OperationRow> = self.db.fetch_optional(SELECT, &args).await?;
        row.map(OperationState::try_from).transpose()
    }
}

impl OperationLog for Store {
    fn begin<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        stage: &'a str,
        effect: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, JobError>> {
        Box::pin(async move { Ok(self.begin_operation(ctx, op, stage, effect).await?) })
    }

    fn finish<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        result: &'a Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move { Ok(self.finish_operation(&ctx.tenant_id, op, ctx.attempt, result).await?) })
    }
}
