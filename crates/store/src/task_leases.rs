//! Task leases: the `task_leases` table, which keeps a background task (the worker's pruner) running
//! in one process at a time across replicas. A process runs the task only while it holds the
//! task's lease, extends it as it goes, and gives it up when it stops; a lease its holder did not
//! extend in time (a crashed process) expires, and another process takes it.
//!
//! Taking and giving up are one statement each, so they are atomic on both backends: of any
//! number of processes racing for a free or expired lease, exactly one gets it. Expiry is judged by
//! the callers' clocks (the time each passes in), so replicas' clocks should agree to well within
//! a lease's length.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::Arg;
use crate::{Store, StoreError, now};

/// `$1` task, `$2` holder, `$3` time, `$4` expiry.
const ACQUIRE: &str = include_str!("../sql/common/task_leases/acquire.sql");
/// `$1` task, `$2` holder.
const RELEASE: &str = include_str!("../sql/common/task_leases/release.sql");
/// `$1` task.
const SELECT: &str = include_str!("../sql/common/task_leases/select.sql");

/// A task's lease as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TaskLease {
    /// Who holds (or last held) it.
    pub holder: String,
    /// Until when; after it, anyone may take it.
    pub expires_at: DateTime<Utc>,
}

/// The longest lease [`Store::acquire_task_lease`] grants; longer requests are clamped to it.
const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

impl Store {
    /// Takes the lease of task `name` for `holder` for `ttl` from now — when nobody holds it, when
    /// it expired, or when `holder` holds it already (then it is extended). Returns whether
    /// `holder` holds it now. `ttl` is clamped to a week.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn acquire_task_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = now();
        let ttl = chrono::Duration::from_std(ttl.min(MAX_TTL)).unwrap_or(chrono::Duration::zero());
        let until = now + ttl;
        let args: [Arg<'_>; 4] = [name.into(), holder.into(), now.into(), until.into()];
        let row: Option<(String,)> = self.db.fetch_optional(ACQUIRE, &args).await?;
        Ok(row.is_some())
    }

    /// Gives up the lease of task `name` if `holder` holds it (expired or not), so another process
    /// may take it at once. Returns whether it did.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn release_task_lease(&self, name: &str, holder: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(RELEASE, &[name.into(), holder.into()]).await? == 1)
    }

    /// The lease of task `name` as stored, expired or not; `None` when nobody took it (or it was
    /// given up).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn task_lease(&self, name: &str) -> Result<Option<TaskLease>, StoreError> {
        self.db.fetch_optional(SELECT, &[name.into()]).await
    }
}
