//! [`QueueStats`]: the backlog of one queue for metrics and autoscaling — stream lengths and the
//! entries waiting for admission in one pipelined round trip, then the workers' group's pending
//! count and lag from `XINFO GROUPS`.

use redis::Value;

use crate::admit::waiting_counts;
use crate::reply::group_backlog;
use crate::{Queue, QueueError};

/// The backlog, for metrics and autoscaling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Entries in the jobs stream (waiting or in flight).
    pub stream_length: u64,
    /// Entries delivered but not yet acknowledged.
    pub pending: u64,
    /// Entries not yet delivered to the group (`None` when Redis cannot tell).
    pub lag: Option<u64>,
    /// Retries waiting for their due time.
    pub delayed: u64,
    /// Entries waiting for admission, all priorities (see [`Queue::waiting`] for each).
    pub waiting: u64,
    /// Entries in the dead-letter stream.
    pub dead_letters: u64,
    /// Entries in the events stream.
    pub events_length: u64,
}

impl Queue {
    /// The backlog.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut pipe = redis::pipe();
        pipe.cmd("XLEN").arg(self.keys.jobs());
        pipe.cmd("ZCARD").arg(self.keys.delayed());
        pipe.cmd("XLEN").arg(self.keys.dead());
        pipe.cmd("XLEN").arg(self.keys.events());
        pipe.cmd("HMGET").arg(self.keys.waiting()).arg(0).arg(1).arg(2);
        let (stream_length, delayed, dead_letters, events_length, waiting): (
            u64,
            u64,
            u64,
            u64,
            Vec<Option<i64>>,
        ) = self.call_pipe(&pipe).await?;
        let waiting = waiting_counts(&waiting).iter().sum();
        let mut stats =
            QueueStats { stream_length, delayed, waiting, dead_letters, events_length, ..Default::default() };
        let mut cmd = redis::cmd("XINFO");
        cmd.arg("GROUPS").arg(self.keys.jobs());
        let groups: Value = match self.call(&cmd).await {
            Ok(v) => v,
            Err(QueueError::Redis(e)) if e.code().is_none() || e.to_string().contains("no such key") => {
                return Ok(stats);
            }
            Err(e) => return Err(e),
        };
        if let Some((pending, lag)) = group_backlog(&groups, &self.config.group) {
            stats.pending = pending;
            stats.lag = lag;
        }
        Ok(stats)
    }
}
