//! Admission: fairness between tenants, priorities, caps, rate limits and pauses, in Redis.
//!
//! An entry that may not go straight into the jobs stream (see [`Queue::enqueue`]) waits in the
//! list of its **flow** — its priority, tenant and kind — and [`Queue::admit`] moves entries from
//! the flows into the stream while the stream's backlog (entries no worker has taken yet) is under
//! the window [`Control::ahead`]: each pick prefers a priority by a weighted rotation (of every 16
//! picks, 12 prefer high, 3 normal, 1 low, falling through to the others, so under backlog higher
//! priorities start first and none starves), then takes the next flow of that priority's ring
//! (round robin, so a tenant's burst does not starve the others) that passes its tenant's cap
//! (admitted and unfinished jobs of the tenant, all kinds: its **active set**), the tenant's rate
//! and the kind's rate (token buckets, on Redis's clock) and the kind's pause. Within a flow,
//! entries keep their order. Nothing is admitted while the queue is paused.
//!
//! Because a flow is one kind, a paused or rate-limited kind holds back only its own flows: the
//! tenant's other kinds in the same queue pass. Round robin is over flows, so a tenant with
//! several kinds waiting in one queue gets a share per kind (queues usually carry one kind).
//!
//! One call's work is bounded: a flow found blocked is set aside for the rest of the call and put
//! back at its ring's tail at the end (as if passed over once), so a call visits at most `max` +
//! the flows in the rings, however many are blocked ([`Admitted::visited`]).
//!
//! Entries leave the active set when they leave the stream: finished ([`Queue::finish`]), retried
//! ([`Queue::retry`]) or deferred ([`Queue::defer`] — put back at the front of their flow by the
//! worker that must not start them, without burning an attempt or a delivery). [`Queue::heal`]
//! drops members whose finish was lost, so a crash cannot hold a cap for ever, and puts back in its
//! ring a flow that lost its place there.
//!
//! The scripts are `lua/admit.lua`, `lua/defer.lua` and `lua/heal.lua`, with the helpers they share
//! with `enqueue.lua` and `promote.lua` in `lua/admission.lua`; the keys are listed in
//! [`keys`](crate::keys).
//!
//! [`Control::ahead`]: crate::Control::ahead

use longhaul_core::Priority;

use crate::jobs::delayed_member;
use crate::{Delivery, Queue, QueueError, scripts};

/// What [`Queue::admit`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Admitted {
    /// Entries moved from wait lists into the jobs stream.
    pub admitted: u64,
    /// Entries still waiting (all priorities) after this call.
    pub waiting: u64,
    /// Flows looked at (admitted from, found blocked, or found empty): the call's work, at most
    /// the entries admitted plus the flows waiting.
    pub visited: u64,
}

impl Queue {
    /// Admits up to `max` waiting entries into the jobs stream (see the module documentation of
    /// `admit`: weighted priorities, round robin over flows, caps, rates, pauses, the backlog
    /// window). The rate limits' token buckets refill on Redis's clock, so no caller's clock
    /// counts. Atomic; any number of admitters may run at once. Call it in a loop while it admits
    /// something, and again when entries may have become admissible (a worker finished, time
    /// passed, the limits changed).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn admit(&self, max: usize) -> Result<Admitted, QueueError> {
        self.admit_with_clock(None, max).await
    }

    /// [`Queue::admit`] with the token buckets refilled up to `now_ms` instead of Redis's clock:
    /// for tests that step a clock.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    #[doc(hidden)]
    pub async fn admit_at(&self, now_ms: u64, max: usize) -> Result<Admitted, QueueError> {
        self.admit_with_clock(Some(now_ms), max).await
    }

    async fn admit_with_clock(&self, now_ms: Option<u64>, max: usize) -> Result<Admitted, QueueError> {
        let mut inv = scripts::ADMIT.prepare_invoke();
        inv.key(self.keys.jobs())
            .key(self.keys.control())
            .key(self.keys.waiting())
            .key(self.keys.turn())
            .key(self.keys.flows())
            .arg(self.keys.base())
            .arg(&self.config.group)
            .arg(now_ms.map(|n| n.to_string()).unwrap_or_default())
            .arg(max)
            .arg(self.config.admit_turn.max(1));
        let (admitted, waiting, visited): (u64, u64, u64) = self.run(&inv).await?;
        Ok(Admitted { admitted, waiting, visited })
    }

    /// Puts a delivery back: acks and deletes its entry and puts the same entry (same attempt)
    /// at the front of its flow's wait list, marking the job waiting (`<attempt>:w`) and taking it
    /// out of its tenant's active set — atomically. For a worker handed an entry it must not start
    /// (its kind or queue is paused): the job waits again without burning an attempt, and when
    /// admitted again it is a new stream entry, delivered for the first time. Its flow is its
    /// kind's, so it holds back none of the tenant's other kinds.
    ///
    /// Only the delivery's owner defers it: `consumer` must be the consumer it is pending with. A
    /// worker that stalled past its lease, whose entry another worker reclaimed meanwhile (and may
    /// be running), gets `false` and changes nothing. Returns whether the entry was deferred
    /// (false when a finish, or an earlier defer, got there first, or another consumer owns it).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn defer(&self, consumer: &str, delivery: &Delivery) -> Result<bool, QueueError> {
        let entry = &delivery.entry;
        let mut inv = scripts::DEFER.prepare_invoke();
        inv.key(self.keys.jobs())
            .key(self.keys.job(entry.job_id.as_str()))
            .arg(self.keys.base())
            .arg(&self.config.group)
            .arg(&delivery.id)
            .arg(entry.attempt)
            .arg(entry.tenant_id.as_str())
            .arg(entry.priority.rank())
            .arg(entry.job_id.as_str())
            .arg(delayed_member(entry)?)
            .arg(entry.kind.as_deref().unwrap_or(""))
            .arg(consumer);
        let deferred: u64 = self.run(&inv).await?;
        Ok(deferred == 1)
    }

    /// Repairs admission's state a bounded step at a time, going on from where the last call
    /// stopped (after the last tenant or flow, the next call starts over): drops members of the
    /// tenants' active sets whose job is no longer in the stream (its presence key is gone, marks
    /// it delayed or waiting, or names an entry the stream no longer holds), looking at about
    /// `count` members per call — so a finish lost with a worker cannot hold a tenant's cap for
    /// ever; and checks about `count` flows of the flows index: one with waiting entries that is
    /// missing from its priority's ring (lost to eviction or tampering, so admission would never
    /// visit it) goes back at the ring's tail, an empty one leaves the index. Returns how many
    /// repairs it made (members dropped plus flows put back). A periodic task.
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn heal(&self, count: usize) -> Result<u64, QueueError> {
        let mut inv = scripts::HEAL.prepare_invoke();
        inv.key(self.keys.tenants())
            .key(self.keys.heal())
            .key(self.keys.jobs())
            .key(self.keys.flows())
            .arg(self.keys.base())
            .arg(count.max(1));
        self.run(&inv).await
    }

    /// Entries waiting for admission, per priority: `[high, normal, low]` (indexed by
    /// [`Priority::rank`]).
    ///
    /// # Errors
    /// When Redis cannot be reached in time.
    pub async fn waiting(&self) -> Result<[u64; 3], QueueError> {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.keys.waiting());
        for p in Priority::ALL {
            cmd.arg(p.rank());
        }
        let counts: Vec<Option<i64>> = self.call(&cmd).await?;
        Ok(waiting_counts(&counts))
    }
}

/// `HMGET <waiting> 0 1 2` → counts (absent or negative: 0).
pub(crate) fn waiting_counts(counts: &[Option<i64>]) -> [u64; 3] {
    let mut out = [0; 3];
    for (slot, n) in out.iter_mut().zip(counts) {
        *slot = n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    }
    out
}
