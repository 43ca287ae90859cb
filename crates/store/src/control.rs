//! What operators steer with, as the database keeps it (the truth; workers mirror it into Redis):
//! pauses of a queue or a kind (`paused`), and limits (`limits`) — a tenant's cap on jobs running
//! at once and its starts per second, a kind's starts per second — overriding the configured
//! defaults. Each change is audited in the transaction that makes it, as a row without a job:
//! under the tenant for a tenant's limit, under [`QUEUE_WIDE`] (`*`) for a pause, a resume or a
//! kind's limit. Pausing what is paused, resuming what is not, or clearing a limit not set changes
//! nothing and records nothing (idempotent). Other operator actions on no one tenant (dead letters
//! replayed or purged) are recorded under `*` too ([`Store::append_control_audit`]).
//!
//! The store knows no registry: which queues and kinds exist is the caller's to check.

use std::num::NonZeroU32;

use chrono::{DateTime, Utc};
use longhaul_core::TenantId;
use serde_json::{Value, json};
use sqlx::types::Json;

use crate::audit::{AuditEntry, QUEUE_WIDE, append_as};
use crate::backend::Arg;
use crate::{Store, StoreError, now};

const PAUSE: &str = include_str!("../sql/common/control/pause.sql");
const RESUME: &str = include_str!("../sql/common/control/resume.sql");
const SELECT_PAUSED: &str = include_str!("../sql/common/control/select_paused.sql");
const SET_LIMIT: &str = include_str!("../sql/common/control/set_limit.sql");
const CLEAR_LIMIT: &str = include_str!("../sql/common/control/clear_limit.sql");
const SELECT_LIMITS: &str = include_str!("../sql/common/control/select_limits.sql");
const SELECT_AUDIT: &str = include_str!("../sql/common/control/select_audit.sql");

/// What a pause stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PauseScope {
    /// A whole queue: its workers fetch nothing from it.
    Queue,
    /// One kind, in whichever queue: its jobs wait.
    Kind,
}

impl PauseScope {
    /// `queue` or `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queue => "queue",
            Self::Kind => "kind",
        }
    }

    /// The scope named `s`.
    ///
    /// # Errors
    /// Any other text.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "queue" => Ok(Self::Queue),
            "kind" => Ok(Self::Kind),
            other => Err(format!("unknown pause scope {other:?}; expected queue or kind")),
        }
    }
}

/// A pause in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    /// A queue or a kind.
    pub scope: PauseScope,
    /// Its name.
    pub name: String,
    /// Who paused it (`operator:<name>`, …).
    pub paused_by: String,
    /// When.
    pub paused_at: DateTime<Utc>,
}

/// What a limit applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitScope {
    /// One tenant's jobs: a cap on those running at once, and starts per second.
    Tenant,
    /// One kind's jobs: starts per second.
    Kind,
}

impl LimitScope {
    /// `tenant` or `kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tenant => "tenant",
            Self::Kind => "kind",
        }
    }

    /// The scope named `s`.
    ///
    /// # Errors
    /// Any other text.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "tenant" => Ok(Self::Tenant),
            "kind" => Ok(Self::Kind),
            other => Err(format!("unknown limit scope {other:?}; expected tenant or kind")),
        }
    }
}

/// A rate of starts per second: from [`Rate::MIN`] (one start in about 17 minutes) to
/// [`Rate::MAX`]. A smaller one would act as a pause nobody can see (`5e-324` is one start in
/// never); pause the kind or the queue instead.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Rate(f64);

impl Rate {
    /// The smallest rate: 0.001 starts per second.
    pub const MIN: f64 = 0.001;
    /// The largest rate: 1 000 000 starts per second.
    pub const MAX: f64 = 1_000_000.0;

    /// `per_second` starts per second.
    ///
    /// # Errors
    /// A message when it is not a number from [`Rate::MIN`] to [`Rate::MAX`].
    pub fn new(per_second: f64) -> Result<Self, String> {
        if (Self::MIN..=Self::MAX).contains(&per_second) {
            Ok(Self(per_second))
        } else {
            Err(format!("must be a number from 0.001 to 1000000, got {per_second}"))
        }
    }

    /// Starts per second.
    pub fn per_second(self) -> f64 {
        self.0
    }
}

/// A limit in force: an override of the configured defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct Limit {
    /// A tenant or a kind.
    pub scope: LimitScope,
    /// Its name.
    pub name: String,
    /// Jobs running at once, at most (tenants only); `None`: the default.
    pub max_running: Option<u32>,
    /// Starts per second, at most; `None`: the default.
    pub starts_per_second: Option<f64>,
    /// When it was last set.
    pub updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct PauseRow {
    scope: String,
    name: String,
    paused_by: String,
    paused_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct LimitRow {
    scope: String,
    name: String,
    max_running: Option<i32>,
    starts_per_second: Option<f64>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    job_id: Option<String>,
    action: String,
    detail: Json<Value>,
    at: DateTime<Utc>,
}

fn corrupt(table: &'static str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { table, detail: detail.to_string() }
}

impl TryFrom<PauseRow> for Pause {
    type Error = StoreError;
    fn try_from(r: PauseRow) -> Result<Self, StoreError> {
        Ok(Pause {
            scope: PauseScope::parse(&r.scope).map_err(|e| corrupt("paused", e))?,
            name: r.name,
            paused_by: r.paused_by,
            paused_at: r.paused_at,
        })
    }
}

impl TryFrom<LimitRow> for Limit {
    type Error = StoreError;
    fn try_from(r: LimitRow) -> Result<Self, StoreError> {
        let max_running = r
            .max_running
            .map(|m| u32::try_from(m).map_err(|_| corrupt("limits", format!("max_running = {m}"))))
            .transpose()?;
        Ok(Limit {
            scope: LimitScope::parse(&r.scope).map_err(|e| corrupt("limits", e))?,
            name: r.name,
            max_running,
            starts_per_second: r.starts_per_second,
            updated_at: r.updated_at,
        })
    }
}

impl Store {
    /// Pauses queue or kind `name` at `by`'s request (audited as `paused` under [`QUEUE_WIDE`]).
    /// Returns whether this call paused it (`false`: it was paused already; nothing changes, the
    /// first pause's author and time stay).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn pause(&self, scope: PauseScope, name: &str, by: &str) -> Result<bool, StoreError> {
        let now = now();
        let mut tx = self.db.begin().await?;
        let args: [Arg<'_>; 4] = [scope.as_str().into(), name.into(), by.into(), now.into()];
        let paused = tx.execute(PAUSE, &args).await? > 0;
        if paused {
            let detail = json!({ "by": by, "scope": scope.as_str(), "name": name });
            append_as(&mut tx, QUEUE_WIDE, None, "paused", &detail, now).await?;
        }
        tx.commit().await?;
        Ok(paused)
    }

    /// Resumes queue or kind `name` at `by`'s request (audited as `resumed` under
    /// [`QUEUE_WIDE`]). Returns whether it was paused.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn resume(&self, scope: PauseScope, name: &str, by: &str) -> Result<bool, StoreError> {
        let now = now();
        let mut tx = self.db.begin().await?;
        let resumed = tx.execute(RESUME, &[scope.as_str().into(), name.into()]).await? > 0;
        if resumed {
            let detail = json!({ "by": by, "scope": scope.as_str(), "name": name });
            append_as(&mut tx, QUEUE_WIDE, None, "resumed", &detail, now).await?;
        }
        tx.commit().await?;
        Ok(resumed)
    }

    /// Every pause in force: queues first, then kinds, each by name.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn paused(&self) -> Result<Vec<Pause>, StoreError> {
        let rows: Vec<PauseRow> = self.db.fetch_all(SELECT_PAUSED, &[]).await?;
        rows.into_iter().map(Pause::try_from).collect()
    }

    /// Sets tenant `tenant`'s limits at `by`'s request — the whole limit: a value left `None` goes
    /// back to the default (audited as `limit_set` under the tenant). Both `None` clears the limit
    /// ([`Store::clear_limit`]) and returns `None`. A cap beyond what the database holds
    /// (2³¹ − 1) is stored as that.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn set_tenant_limit(
        &self,
        tenant: &TenantId,
        max_running: Option<NonZeroU32>,
        starts_per_second: Option<Rate>,
        by: &str,
    ) -> Result<Option<Limit>, StoreError> {
        if max_running.is_none() && starts_per_second.is_none() {
            self.clear_limit(LimitScope::Tenant, tenant.as_str(), by).await?;
            return Ok(None);
        }
        let cap = max_running.map(|m| i32::try_from(m.get()).unwrap_or(i32::MAX));
        self.set_limit(LimitScope::Tenant, tenant.as_str(), cap, starts_per_second, by).await.map(Some)
    }

    /// Sets kind `kind`'s starts per second at `by`'s request (audited as `limit_set` under
    /// [`QUEUE_WIDE`]).
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn set_kind_limit(
        &self,
        kind: &str,
        starts_per_second: Rate,
        by: &str,
    ) -> Result<Limit, StoreError> {
        self.set_limit(LimitScope::Kind, kind, None, Some(starts_per_second), by).await
    }

    async fn set_limit(
        &self,
        scope: LimitScope,
        name: &str,
        max_running: Option<i32>,
        starts_per_second: Option<Rate>,
        by: &str,
    ) -> Result<Limit, StoreError> {
        let now = now();
        let rate = starts_per_second.map(Rate::per_second);
        let args: [Arg<'_>; 5] =
            [scope.as_str().into(), name.into(), max_running.into(), rate.into(), now.into()];
        let mut tx = self.db.begin().await?;
        let row: Option<LimitRow> = tx.fetch_optional(SET_LIMIT, &args).await?;
        let limit = Limit::try_from(row.ok_or(StoreError::NotFound("limit"))?)?;
        let detail = json!({
            "by": by,
            "scope": scope.as_str(),
            "name": name,
            "max_running": limit.max_running,
            "starts_per_second": limit.starts_per_second,
        });
        append_as(&mut tx, audit_tenant(scope, name), None, "limit_set", &detail, now).await?;
        tx.commit().await?;
        Ok(limit)
    }

    /// Clears the limit of tenant or kind `name` at `by`'s request: back to the defaults (audited
    /// as `limit_cleared`, under the tenant or [`QUEUE_WIDE`]). Returns whether one was set.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn clear_limit(&self, scope: LimitScope, name: &str, by: &str) -> Result<bool, StoreError> {
        let now = now();
        let mut tx = self.db.begin().await?;
        let cleared = tx.execute(CLEAR_LIMIT, &[scope.as_str().into(), name.into()]).await? > 0;
        if cleared {
            let detail = json!({ "by": by, "scope": scope.as_str(), "name": name });
            append_as(&mut tx, audit_tenant(scope, name), None, "limit_cleared", &detail, now).await?;
        }
        tx.commit().await?;
        Ok(cleared)
    }

    /// Every limit set: tenants first, then kinds, each by name.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn limits(&self) -> Result<Vec<Limit>, StoreError> {
        let rows: Vec<LimitRow> = self.db.fetch_all(SELECT_LIMITS, &[]).await?;
        rows.into_iter().map(Limit::try_from).collect()
    }

    /// The limit of tenant or kind `name`, if one is set.
    ///
    /// # Errors
    /// As [`Store::limits`].
    pub async fn limit(&self, scope: LimitScope, name: &str) -> Result<Option<Limit>, StoreError> {
        Ok(self.limits().await?.into_iter().find(|l| l.scope == scope && l.name == name))
    }

    /// Records an operator's action on no one tenant — a dead letter replayed or purged, say — as
    /// an audit row `action` with `detail` (which should say `by`) under [`QUEUE_WIDE`].
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn append_control_audit(&self, action: &str, detail: &Value) -> Result<(), StoreError> {
        append_as(&mut self.db.connect().await?, QUEUE_WIDE, None, action, detail, now()).await
    }

    /// The control actions recorded under `tenant` (its limits), or under [`QUEUE_WIDE`] when
    /// `None` (pauses, resumes, kinds' limits): audit rows without a job, newest first, at most
    /// `limit`.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn control_audit(
        &self,
        tenant: Option<&TenantId>,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let who = tenant.map_or(QUEUE_WIDE, TenantId::as_str);
        let rows: Vec<AuditRow> =
            self.db.fetch_all(SELECT_AUDIT, &[who.into(), i64::from(limit).into()]).await?;
        Ok(rows
            .into_iter()
            .map(|r| AuditEntry { job_id: r.job_id, action: r.action, detail: r.detail.0, at: r.at })
            .collect())
    }
}

/// The `tenant_id` of the audit row of a change to the limit of `scope` `name`.
fn audit_tenant(scope: LimitScope, name: &str) -> &str {
    match scope {
        LimitScope::Tenant => name,
        LimitScope::Kind => QUEUE_WIDE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_bounded() {
        for good in [2.5, 0.001, 1_000_000.0] {
            assert_eq!(Rate::new(good).map(Rate::per_second), Ok(good));
        }
        for bad in
            [0.0, -1.0, 5e-324, 0.000_999, 1_000_000.5, f64::MAX, f64::NAN, f64::INFINITY, f64::NEG_INFINITY]
        {
            let e = Rate::new(bad).expect_err("out of range");
            assert!(e.contains("from 0.001 to 1000000"), "{bad}: {e}");
        }
    }

    #[test]
    fn scopes_round_trip() {
        for s in [PauseScope::Queue, PauseScope::Kind] {
            assert_eq!(PauseScope::parse(s.as_str()), Ok(s));
        }
        for s in [LimitScope::Tenant, LimitScope::Kind] {
            assert_eq!(LimitScope::parse(s.as_str()), Ok(s));
        }
        assert!(PauseScope::parse("tenant").is_err());
        assert!(LimitScope::parse("queue").is_err());
    }
}
