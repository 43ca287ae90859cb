//! Routing a job to its partition: [`Queue::route`] and [`Queue::partitions`] give handles to the
//! partition queues (`<queue>-0` … `<queue>-<n-1>`, a hash tag each) that share the parent's
//! connection and settings; [`Queue::sibling`] another queue over the same connection. The hash itself is [`partition_name`](crate::partition_name).

use std::sync::Arc;

use crate::{KeySpace, Queue, QueueConfig, QueueError};

impl Queue {
    /// The queue a job with `routing_key` (the producers and workers use the job id) belongs to: this queue
    /// when it is not partitioned, otherwise partition
    /// [`partition_name`](crate::partition_name)`(queue, partitions, routing_key)`. The handle
    /// shares this one's connection and settings.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] if the partition's name is invalid (checked by [`Queue::new`]).
    pub fn route(&self, routing_key: &str) -> Result<Queue, QueueError> {
        if self.config.partitions <= 1 {
            return Ok(self.clone());
        }
        self.named(&crate::partition_name(&self.config.queue, self.config.partitions, routing_key))
    }

    /// Every partition (this queue itself when it is not partitioned), e.g. to prepare them all.
    ///
    /// # Errors
    /// As [`Queue::route`].
    pub fn partitions(&self) -> Result<Vec<Queue>, QueueError> {
        if self.config.partitions <= 1 {
            return Ok(vec![self.clone()]);
        }
        (0..self.config.partitions).map(|k| self.named(&format!("{}-{k}", self.config.queue))).collect()
    }

    /// Queue `name` on the same Redis, connection and settings (partitioned the same way): how
    /// one process feeds or serves several queues.
    ///
    /// # Errors
    /// [`QueueError::InvalidName`] if `name` is not a valid queue name.
    pub fn sibling(&self, name: &str) -> Result<Queue, QueueError> {
        let keys = KeySpace::new(&self.config.prefix, name)?;
        let config = QueueConfig { queue: name.to_owned(), ..(*self.config).clone() };
        Ok(Self { target: self.target.clone(), conn: self.conn.clone(), keys, config: Arc::new(config) })
    }

    /// This queue's name (a partition's is `<queue>-<k>`).
    pub fn name(&self) -> &str {
        &self.config.queue
    }

    fn named(&self, name: &str) -> Result<Queue, QueueError> {
        let keys = KeySpace::new(&self.config.prefix, name)?;
        let config = QueueConfig { queue: name.to_owned(), partitions: 1, ..(*self.config).clone() };
        Ok(Self { target: self.target.clone(), conn: self.conn.clone(), keys, config: Arc::new(config) })
    }
}
