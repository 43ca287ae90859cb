//! The side-effect operation log: the `operations` table, behind the core's [`OperationLog`].
//!
//! The operation log makes side effects at-most-once per [`OperationId`]: a durable step calls
//! `begin` before an effect and `finish` with its result after. A later attempt of the same job
//! that finds the operation `done` reuses the stored result instead of running the effect again;
//! one that finds it only `started` (the earlier attempt died mid-effect) runs it again with the
//! same operation id as the receiver's idempotency key.
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

use longhaul_core::job::BoxFuture;
use longhaul_core::{JobContext, JobError, OperationId, OperationLog, OperationState, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::backend::Arg;
use crate::{Store, StoreError, now};

const BEGIN: &str = include_str!("../sql/common/operations/begin.sql");
const SELECT: &str = include_str!("../sql/common/operations/select.sql");
const RESTART: &str = include_str!("../sql/common/operations/restart.sql");
const FINISH: &str = include_str!("../sql/common/operations/finish.sql");
const SELECT_STATE: &str = include_str!("../sql/common/operations/select_state.sql");

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
    /// [`StoreError::Database`]; [`StoreError::Corrupt`] for an unknown stored state.
    pub async fn begin_operation(
        &self,
        ctx: &JobContext,
        op: &OperationId,
        stage: &str,
        effect: &str,
    ) -> Result<Option<OperationState>, StoreError> {
        let now = now();
        let attempt = i32::try_from(ctx.attempt).unwrap_or(i32::MAX);
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
        let inserted: Option<(String,)> = db.fetch_optional(BEGIN, &args).await?;
        if inserted.is_some() {
            return Ok(None);
        }
        let row: OperationRow = db
            .fetch_optional(SELECT, &[op.into(), tenant.into()])
            .await?
            .ok_or(StoreError::NotFound("operation"))?;
        let state = OperationState::try_from(row)?;
        if let OperationState::Started { .. } = state {
            db.execute(RESTART, &[op.into(), tenant.into(), attempt.into(), now.into()]).await?;
        }
        Ok(Some(state))
    }

    /// Records that operation `op` finished with `result`. Finishing an operation that is already
    /// done keeps the first result.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when `op` was never begun; [`StoreError::Database`].
    pub async fn finish_operation(
        &self,
        tenant: &TenantId,
        op: &OperationId,
        result: &Value,
    ) -> Result<(), StoreError> {
        let now = now();
        let (op, tenant) = (op.as_str(), tenant.as_str());
        let mut db = self.db.connect().await?;
        if db.execute(FINISH, &[op.into(), tenant.into(), result.into(), now.into()]).await? == 1 {
            return Ok(());
        }
        let found: Option<(String,)> = db.fetch_optional(SELECT_STATE, &[op.into(), tenant.into()]).await?;
        found.map(|_| ()).ok_or(StoreError::NotFound("operation"))
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
        Box::pin(async move { Ok(self.finish_operation(&ctx.tenant_id, op, result).await?) })
    }
}
