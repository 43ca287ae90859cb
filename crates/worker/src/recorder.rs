//! The recorder: the one way the executors write job records. One task takes every write —
//! starts, progress, completions, failures, retries and cancellations — in the order sent, so a
//! job's writes land in the order its executor made them: its progress (and `progress` events) no
//! later than its outcome, whatever that outcome is.
//!
//! Starts, progress and completions of whatever has queued up are written in one transaction per
//! batch (group commit; on PostgreSQL at most three multi-row statements per batch, each write on
//! its own if the batch fails — [`all_or_each`] — unless the connection failed, when every write
//! gets a retryable error at once and its executor holds its delivery until storage is back). Failures, retries and cancellations have no
//! batched form in storage: each is its own transaction, begun once the batch it arrived with has
//! committed and its events are out, and run beside the next batches. An executor waits for each
//! of its writes to be committed before it goes on, so nothing is acknowledged that storage does
//! not hold, but concurrent jobs share one commit instead of paying one each.
//!
//! **The batch's tail.** After its commit a batch emits its `progress` events (a Redis round
//! trip). That tail runs beside the next batch's write to storage, not before it, so the next
//! batch's commit does not wait for the previous batch's events. The order still holds: a batch
//! answers no executor and emits nothing before the previous batch's tail is done (so every earlier
//! event is out), and an executor whose job has a `progress` event in its own batch is answered
//! only after that event (with the failures, retries and cancellations, which begin after it too).
//! A tail that panics is logged; the executors it would have answered see the recorder as gone.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobContext, JobId, Progress, TenantId};
use longhaul_queue::{Event, EventKind, Queue, now_ms};
use longhaul_service::batch::{Fallback, SLOW_BATCH, all_or_each};
use longhaul_store::{AttemptFailure, ProgressWrite, Store, StoreError, Write, WriteOutcome};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::progress::Throttle;

/// A write to a job's record.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordWrite {
    /// A start or completion, written in the batch's transaction.
    Batched(Write),
    /// [`Store::fail`]: fails the job for good.
    Fail {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The attempt failed under.
        attempt: u32,
        /// The failure's class.
        class: ErrorClass,
        /// What went wrong.
        message: String,
    },
    /// [`Store::schedule_retry`]: queues the next attempt after `attempt` failed.
    Retry {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The attempt that failed.
        attempt: u32,
        /// The failure's class.
        class: ErrorClass,
        /// What went wrong.
        message: String,
        /// When the next attempt is due.
        at: DateTime<Utc>,
    },
    /// [`Store::end_cancelled`]: ends running attempt `attempt`, whose cancel was requested, as
    /// cancelled.
    Cancelled {
        /// The tenant.
        tenant: TenantId,
        /// The job.
        job: JobId,
        /// The running attempt.
        attempt: u32,
    },
}

type Reply = oneshot::Sender<Result<WriteOutcome, StoreError>>;

/// A message to the recorder.
#[derive(Debug)]
pub enum Request {
    /// A write, answered once committed.
    Write(RecordWrite, Reply),
    /// A stage event of a running attempt (persisted if the throttle lets it; never answered).
    Progress {
        /// The attempt.
        ctx: JobContext,
        /// The stage.
        stage: String,
        /// Overall progress.
        progress: Progress,
    },
}

/// Largest batch in one transaction.
const MAX_BATCH: usize = 256;

/// What a batch leaves to do once committed: emit its `progress` events, then answer the
/// executors of the jobs they name and begin its failures, retries and cancellations.
type Tail = JoinHandle<()>;

/// The recorder task. Runs until `stop`, then handles what is already queued and waits for the
/// last batch's tail and the failures, retries and cancellations it began.
pub(crate) async fn run(
    store: Store,
    queue: Queue,
    progress_interval: Duration,
    mut rx: mpsc::UnboundedReceiver<Request>,
    stop: CancellationToken,
) {
    let mut recorder = Recorder { store, queue, progress_interval, throttle: Throttle::default() };
    let singles = TaskTracker::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut tail = None;
    loop {
        tokio::select! {
            biased;
            n = rx.recv_many(&mut batch, MAX_BATCH) => if n == 0 { break },
            () = stop.cancelled() => {
                while let Ok(request) = rx.try_recv() {
                    batch.push(request);
                }
                tail = recorder.write(std::mem::take(&mut batch), &singles, tail).await;
                break;
            }
        }
        tail = recorder.write(std::mem::take(&mut batch), &singles, tail).await;
    }
    if let Some(tail) = tail {
        finished(tail).await;
    }
    singles.close();
    singles.wait().await;
}

struct Recorder {
    store: Store,
    queue: Queue,
    progress_interval: Duration,
    throttle: Throttle,
}

impl Recorder {
    /// Writes one batch of requests: the batched writes and due progress in one transaction. Then,
    /// once `previous` (the last batch's tail) is done, answers the executors whose jobs have no
    /// `progress` event in this batch; the rest of the batch — its events, then the answers they
    /// name and the failures, retries and cancellations — is the tail returned (`None` when the
    /// batch has no event: then nothing is left).
    async fn write(
        &mut self,
        batch: Vec<Request>,
        singles: &TaskTracker,
        previous: Option<Tail>,
    ) -> Option<Tail> {
        let mut progress: Vec<(JobContext, String, Progress)> = Vec::new();
        let (mut writes, mut replies, mut later) = (Vec::new(), Vec::new(), Vec::new());
        let now = Instant::now();
        for request in batch {
            match request {
                Request::Write(write, reply) => {
                    if let Some((job, attempt)) = ended(&write) {
                        self.throttle.end(job.as_str(), attempt);
                    }
                    match write {
                        RecordWrite::Batched(write) => {
                            writes.push(write);
                            replies.push(reply);
                        }
                        single => later.push((single, reply)),
                    }
                }
                Request::Progress { ctx, stage, progress: p } => {
                    if self.throttle.due(&ctx, &stage, self.progress_interval, now) {
                        progress.push((ctx, stage, p));
                    }
                }
            }
        }
        let group = Group { store: &self.store, progress: &progress, applied: OnceLock::new() };
        let outcomes = all_or_each(&group, &writes).await;
        let applied = group.applied.into_inner().unwrap_or_default();
        let events = progress_events(&progress, &applied);
        // Every earlier event is out before this batch answers anyone or emits its own.
        if let Some(previous) = previous {
            finished(previous).await;
        }
        let announced: HashSet<&str> = events.iter().map(|e| e.job_id.as_str()).collect();
        let mut held = Vec::new();
        for ((write, reply), outcome) in writes.iter().zip(replies).zip(outcomes) {
            if announced.contains(written_job(write).as_str()) {
                held.push((reply, outcome));
            } else {
                let _ = reply.send(outcome);
            }
        }
        let begin = {
            let (store, singles) = (self.store.clone(), singles.clone());
            move || {
                for (write, reply) in later {
                    let store = store.clone();
                    singles.spawn(async move {
                        let _ = reply.send(single(&store, &write).await);
                    });
                }
            }
        };
        if events.is_empty() {
            begin();
            return None;
        }
        let queue = self.queue.clone();
        Some(tokio::spawn(async move {
            let started = Instant::now();
            publish(&queue, &events).await;
            let took = started.elapsed();
            if took >= SLOW_BATCH {
                // Every executor answered after these events waited as long.
                tracing::warn!(
                    events = events.len(),
                    took_ms = took.as_millis() as u64,
                    "publishing progress events was slow"
                );
            }
            for (reply, outcome) in held {
                let _ = reply.send(outcome);
            }
            begin();
        }))
    }
}

/// Waits for `tail`; one that panicked is logged (the answers it held are dropped: their
/// executors see the recorder as gone and leave their entries to be delivered again).
async fn finished(tail: Tail) {
    if let Err(e) = tail.await {
        tracing::error!(error = %e, "a batch's tail (its progress events and the answers after them) failed");
    }
}

/// The job a batched write is of.
fn written_job(write: &Write) -> &JobId {
    match write {
        Write::StartNext { job, .. } | Write::Complete { job, .. } => job,
    }
}

/// The attempt whose outcome `write` is (a completion, failure, retry or cancellation), if any.
fn ended(write: &RecordWrite) -> Option<(&JobId, u32)> {
    match write {
        RecordWrite::Batched(Write::Complete { job, attempt, .. })
        | RecordWrite::Fail { job, attempt, .. }
        | RecordWrite::Retry { job, attempt, .. }
        | RecordWrite::Cancelled { job, attempt, .. } => Some((job, *attempt)),
        RecordWrite::Batched(Write::StartNext { .. }) => None,
    }
}

/// A failure, retry or cancellation, in its own transaction.
async fn single(store: &Store, write: &RecordWrite) -> Result<WriteOutcome, StoreError> {
    match write {
        RecordWrite::Batched(write) => one(store, write).await,
        RecordWrite::Fail { tenant, job, attempt, class, message } => {
            store.fail(tenant, job, AttemptFailure::new(*attempt, *class, message)).await
        }
        RecordWrite::Retry { tenant, job, attempt, class, message, at } => {
            store.schedule_retry(tenant, job, AttemptFailure::new(*attempt, *class, message), *at).await
        }
        RecordWrite::Cancelled { tenant, job, attempt } => store.end_cancelled(tenant, job, *attempt).await,
    }
}

/// A batched write on its own.
async fn one(store: &Store, write: &Write) -> Result<WriteOutcome, StoreError> {
    match store.write_many(std::slice::from_ref(write)).await {
        Ok(mut outcomes) => outcomes.pop().unwrap_or(Err(StoreError::NotFound("job"))),
        Err(e) => Err(e),
    }
}

/// One batch's starts and completions with its progress: one transaction; each write on its own
/// if that fails (progress is best effort: it is dropped). `applied` holds, once the transaction
/// committed, which progress writes it applied.
struct Group<'a> {
    store: &'a Store,
    progress: &'a [(JobContext, String, Progress)],
    applied: OnceLock<Vec<bool>>,
}

impl Fallback<Write> for Group<'_> {
    type Item = WriteOutcome;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "job record writes"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, writes: &[Write]) -> Result<Vec<Result<WriteOutcome, StoreError>>, StoreError> {
        let progress_writes: Vec<ProgressWrite<'_>> = self
            .progress
            .iter()
            .map(|(ctx, stage, p)| (&ctx.tenant_id, &ctx.job_id, ctx.attempt, stage.as_str(), *p))
            .collect();
        match self.store.write_batch(&progress_writes, writes).await {
            Ok((applied, outcomes)) => {
                // `all_or_each` calls `all` once; were it called again, the first answer stands.
                let _ = self.applied.set(applied);
                Ok(outcomes)
            }
            Err(e) => {
                if !self.progress.is_empty() {
                    tracing::warn!(error = %longhaul_core::Report(&e), progress = self.progress.len(), "batched write failed; progress dropped");
                }
                Err(e)
            }
        }
    }

    async fn one(&self, write: &Write) -> Result<WriteOutcome, StoreError> {
        one(self.store, write).await
    }

    /// A lone write is answered with the batch's error only when nothing else was in the batch
    /// (progress could have been what failed it).
    fn shared_blame(&self, writes: &[Write]) -> bool {
        writes.len() > 1 || !self.progress.is_empty()
    }
}

/// The `progress` events of the applied progress writes.
fn progress_events(progress: &[(JobContext, String, Progress)], applied: &[bool]) -> Vec<Event> {
    progress
        .iter()
        .zip(applied)
        .filter(|(_, applied)| **applied)
        .map(|((ctx, stage, progress), _)| {
            let mut event = Event::new(
                EventKind::Progress,
                ctx.job_id.as_str(),
                ctx.tenant_id.as_str(),
                ctx.attempt,
                now_ms(),
            );
            event.stage = Some(stage.clone());
            event.progress = Some(progress.percent());
            event
        })
        .collect()
}

/// Emits `events` in one round trip (best effort: a failure is logged).
async fn publish(queue: &Queue, events: &[Event]) {
    if let Err(e) = queue.publish_many(events).await {
        tracing::warn!(error = %longhaul_core::Report(&e), events = events.len(), "cannot publish progress events");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use longhaul_core::{JobKey, Lease, NewJob, Priority};
    use longhaul_queue::{QueueConfig, RedisConnection};
    use longhaul_testkit::gate::TcpGate;
    use longhaul_testkit::{Backend, TestDb, TestQueue, wait_until};
    use serde_json::Value;

    /// The `progress` events on the events stream `key`, in order: (job, stage, percent).
    async fn stream_progress(conn: &mut RedisConnection, key: &str) -> Vec<(String, String, String)> {
        let entries: Vec<(String, std::collections::HashMap<String, String>)> =
            redis::cmd("XRANGE").arg(key).arg("-").arg("+").query_async(conn).await.expect("XRANGE");
        entries
            .into_iter()
            .filter(|(_, f)| f.get("type").map(String::as_str) == Some("progress"))
            .map(|(_, mut f)| {
                let mut take = |k: &str| f.remove(k).unwrap_or_default();
                (take("job"), take("stage"), take("progress"))
            })
            .collect()
    }

    /// A batch is written to storage while the previous batch's `progress` events are held (here
    /// its Redis link is), so its commit does not wait for them; the order holds all the same: no
    /// answer of the next batch before those events are out, and a job's completion answered only
    /// after the event of its own last stage.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_is_written_while_the_last_events_are_held_and_answers_wait_for_them() {
        let db = TestDb::new(Backend::Postgres).await;
        let tq = TestQueue::new(|_| {}).await;
        let (gate, gated) = TcpGate::for_url(&tq.url).await;
        // A long operation timeout: a held publish waits for the gate instead of failing.
        let config = QueueConfig { op_timeout: Duration::from_secs(60), ..tq.queue.config().clone() };
        let queue = Queue::new(&gated, config).expect("queue");
        queue.ping().await.expect("the gated link is up");

        let tenant = TenantId::parse("acme").expect("tenant");
        db.create_tenant(&tenant, "Acme", None).await.expect("tenant");
        let mut ctx = Vec::new();
        for key in ["T-a", "T-b"] {
            let job = NewJob {
                job_id: JobId::derive(&tenant, "test", &JobKey::Derived(key.into())),
                tenant_id: tenant.clone(),
                kind: "test".into(),
                key: key.into(),
                input: Value::Null,
                max_attempts: 3,
                run_at: None,
                priority: Priority::Normal,
            };
            db.create_pending(job.clone()).await.expect("create");
            let lease = Lease { entry: "1-0".into(), delivery: 1 };
            db.start_next(&tenant, &job.job_id, lease, 1).await.expect("start");
            ctx.push(JobContext {
                job_id: job.job_id,
                tenant_id: tenant.clone(),
                kind: "test".into(),
                attempt: 1,
            });
        }
        let (a, b) = (ctx[0].clone(), ctx[1].clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let recorder = tokio::spawn(run(db.store.clone(), queue, Duration::ZERO, rx, stop.clone()));
        let progress = |ctx: &JobContext, stage: &str, percent: u8| Request::Progress {
            ctx: ctx.clone(),
            stage: stage.into(),
            progress: Progress::new(percent).expect("percent"),
        };
        let complete = |ctx: &JobContext| {
            let (reply, answer) = oneshot::channel();
            let write = Write::Complete {
                tenant: ctx.tenant_id.clone(),
                job: ctx.job_id.clone(),
                attempt: 1,
                output: Value::Bool(true),
            };
            (Request::Write(RecordWrite::Batched(write), reply), answer)
        };
        let state = async |ctx: &JobContext| {
            let record = db.get_job(&ctx.tenant_id, &ctx.job_id).await.expect("get").expect("record");
            (record.stage, record.status)
        };

        // A batch of progress alone, its events held at the gate once written.
        gate.hold(true);
        tx.send(progress(&a, "load", 30)).expect("send");
        wait_until(Duration::from_secs(10), "a's progress written", async || {
            let (stage, status) = state(&a).await;
            if stage.as_deref() == Some("load") { Ok(()) } else { Err((stage, status)) }
        })
        .await;
        // The next batch, b's completion, is written meanwhile; b is answered only after the held
        // events are out.
        let (request, mut b_answer) = complete(&b);
        tx.send(request).expect("send");
        wait_until(Duration::from_secs(10), "b's completion written", async || {
            let (stage, status) = state(&b).await;
            if status == longhaul_core::JobStatus::Completed { Ok(()) } else { Err((stage, status)) }
        })
        .await;
        assert!(b_answer.try_recv().is_err(), "b was answered before the earlier events were out");
        let events = tq.queue.keys().events();
        let mut conn = tq.raw().await;
        assert_eq!(stream_progress(&mut conn, &events).await, []);
        gate.hold(false);
        let b_outcome = b_answer.await.expect("b's answer").expect("b completed");
        assert!(matches!(b_outcome, WriteOutcome::Applied(_)), "{b_outcome:?}");
        let load = (a.job_id.to_string(), "load".to_owned(), "30".to_owned());
        assert_eq!(stream_progress(&mut conn, &events).await, std::slice::from_ref(&load));

        // a's last stage and its completion, their events held again: what the stream holds
        // when a is answered (read at once) must include that stage's event.
        gate.hold(true);
        tx.send(progress(&a, "apply", 90)).expect("send");
        let (request, a_answer) = complete(&a);
        tx.send(request).expect("send");
        let answered = tokio::spawn(async move {
            let outcome = a_answer.await;
            (outcome, stream_progress(&mut conn, &events).await)
        });
        wait_until(Duration::from_secs(10), "a's completion written", async || {
            let (stage, status) = state(&a).await;
            if status == longhaul_core::JobStatus::Completed { Ok(()) } else { Err((stage, status)) }
        })
        .await;
        gate.hold(false);
        let (outcome, seen) = answered.await.expect("the answer's watcher");
        let outcome = outcome.expect("a's answer").expect("a completed");
        assert!(matches!(outcome, WriteOutcome::Applied(_)), "{outcome:?}");
        let apply = (a.job_id.to_string(), "apply".to_owned(), "90".to_owned());
        assert_eq!(seen, [load, apply], "a's events, in order, all out when a was answered");
        stop.cancel();
        recorder.await.expect("the recorder ends");
    }

    #[test]
    fn every_outcome_ends_its_attempt_and_a_start_does_not() {
        let tenant = TenantId::parse("acme").expect("tenant");
        let job = JobId::derive(&tenant, "test", &JobKey::Derived("T-1".into()));
        let (t, j) = (tenant.clone(), job.clone());
        let outcomes = [
            RecordWrite::Batched(Write::Complete {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                output: Value::Null,
            }),
            RecordWrite::Fail {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                class: ErrorClass::Invalid,
                message: "bad".into(),
            },
            RecordWrite::Retry {
                tenant: t.clone(),
                job: j.clone(),
                attempt: 2,
                class: ErrorClass::Retryable,
                message: "later".into(),
                at: Utc::now(),
            },
            RecordWrite::Cancelled { tenant: t.clone(), job: j.clone(), attempt: 2 },
        ];
        for write in &outcomes {
            assert_eq!(ended(write), Some((&job, 2)), "{write:?}");
        }
        let start = RecordWrite::Batched(Write::StartNext {
            tenant: t,
            job: j,
            lease: Lease { entry: "1-0".into(), delivery: 1 },
            entry_attempt: 1,
        });
        assert_eq!(ended(&start), None);
    }
}
