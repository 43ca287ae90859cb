//! Running workers against a test database and queue; test pipelines and classifiers.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use longhaul_core::{
    FailureCase, IdempotencyKey, JobError, JobId, JobKind, JobRecord, JobStatus, KindOptions, NewJob,
    Pipeline, Registry, TenantId, TicketId,
};
use longhaul_queue::{JobEntry, Queue, QueueConfig};
use longhaul_store::{Store, StoreOptions};
pub use longhaul_testkit::{Backend, TestDb, TestQueue, wait_until};
use longhaul_triage::storage::BatchedTickets;
use longhaul_triage::{
    Classification, Classifier, HttpWebhook, RuleClassifier, TicketView, TriageInput, TriagePipeline,
};
use longhaul_worker::{ControlSettings, Lane, Worker, WorkerSettings};
use tokio_util::sync::CancellationToken;

/// Settings for fast tests: short lease and heartbeat, small backoff.
pub fn settings(consumer: &str) -> WorkerSettings {
    WorkerSettings {
        consumer: consumer.into(),
        concurrency: 4,
        heartbeat: Duration::from_millis(100),
        reclaim_every: Duration::from_millis(100),
        block: Duration::from_millis(200),
        max_attempts: 10,
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        shutdown_grace: Duration::from_secs(5),
        progress_interval: Duration::ZERO,
        control: ControlSettings { poll: Duration::from_millis(100), ..ControlSettings::default() },
    }
}

/// Queue settings for fast tests: a lease of 400 ms.
pub fn fast_queue(c: &mut QueueConfig) {
    c.lease = Duration::from_millis(400);
    c.max_deliveries = 5;
}

/// A fresh database of `backend` with the store's tables and triage's (tickets) migrated.
pub async fn test_db(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    longhaul_triage::storage::migrate(&db).await.expect("migrate triage's tables");
    db
}

/// The triage kind as the tests' own pipelines run it: same name, input, queue and stages as
/// [`longhaul_triage::Triage`] (the records and entries the harness writes are of kind `triage`),
/// any JSON as output.
pub struct TestTriage;

impl JobKind for TestTriage {
    const NAME: &'static str = longhaul_triage::KIND;
    type Input = TriageInput;
    type Output = serde_json::Value;

    fn options() -> KindOptions {
        longhaul_triage::Triage::options()
    }
}

/// A worker running on the test's runtime until `stop` is cancelled.
pub struct Running {
    pub stop: CancellationToken,
    pub handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.handle.await.expect("worker task")
    }
}

/// The registry of the one kind `pipeline` runs.
pub fn registry<P: Pipeline>(pipeline: P) -> Registry {
    Registry::new().pipeline(pipeline).expect("registry")
}

/// A worker serving `queue` with the one kind `pipeline` runs.
pub fn spawn_worker<P: Pipeline>(
    store: &Store,
    queue: &Queue,
    pipeline: P,
    settings: WorkerSettings,
) -> Running {
    spawn_registry(store, queue, registry(pipeline), settings)
}

/// A worker serving `queue` with the kinds of `registry`.
pub fn spawn_registry(store: &Store, queue: &Queue, registry: Registry, settings: WorkerSettings) -> Running {
    let lanes = vec![Lane { queue: queue.clone(), concurrency: settings.concurrency }];
    spawn_lanes(store, lanes, registry, settings)
}

/// A worker serving `lanes` with the kinds of `registry`.
pub fn spawn_lanes(store: &Store, lanes: Vec<Lane>, registry: Registry, settings: WorkerSettings) -> Running {
    let stop = CancellationToken::new();
    let worker = Worker::with_lanes(store.clone(), lanes, registry, settings);
    let handle = tokio::spawn(worker.run(stop.clone()));
    Running { stop, handle }
}

/// A worker on a runtime of its own, so it can be killed outright: every task it spawned stops at
/// once, nothing is acknowledged or cleaned up — a process that died.
pub struct Killable {
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Killable {
    pub fn kill(mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().expect("worker thread");
        }
    }
}

pub fn spawn_killable<P, F>(
    db_url: &str,
    redis_url: &str,
    queue_config: QueueConfig,
    make: F,
    settings: WorkerSettings,
) -> Killable
where
    P: Pipeline,
    F: FnOnce(Store) -> P + Send + 'static,
{
    let (kill, killed) = tokio::sync::oneshot::channel::<()>();
    let (db_url, redis_url) = (db_url.to_owned(), redis_url.to_owned());
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let store = Store::connect(Some(&db_url), &StoreOptions::default()).await.expect("store");
            let queue = Queue::new(&redis_url, queue_config).expect("queue");
            let worker = Worker::new(store.clone(), queue, registry(make(store)), settings);
            tokio::select! {
                r = worker.run(CancellationToken::new()) => r.expect("worker"),
                _ = killed => {}
            }
        });
        // Drop every task of this "process" without letting it finish anything.
        rt.shutdown_background();
    });
    Killable { kill: Some(kill), thread: Some(thread) }
}

pub fn tenant() -> TenantId {
    TenantId::parse("acme").expect("tenant")
}

/// Creates the tenant (optionally with a webhook) if needed.
pub async fn ensure_tenant(store: &Store, webhook: Option<&str>) {
    if store.get_tenant(&tenant()).await.expect("tenant").is_none() {
        store.create_tenant(&tenant(), "Acme", webhook).await.expect("create tenant");
    }
}

/// What a producer does: store the ticket, write the pending record, then enqueue.
pub async fn submit(
    store: &Store,
    queue: &Queue,
    ticket: &str,
    subject: &str,
    body: &str,
    max_attempts: u32,
) -> JobId {
    let ticket_id = TicketId::parse(ticket).expect("ticket");
    let (job_id, revision) = store_ticket(store, &ticket_id, subject, body).await;
    submit_job(store, queue, &job_id, &ticket_id, revision, max_attempts).await;
    job_id
}

/// Records and enqueues a job for a ticket that may not exist.
pub async fn submit_job(
    store: &Store,
    queue: &Queue,
    job_id: &JobId,
    ticket: &TicketId,
    revision: u64,
    max_attempts: u32,
) {
    record_job(store, job_id, ticket, revision, max_attempts).await;
    queue.enqueue(&entry(job_id)).await.expect("enqueue");
}

/// Writes the pending record of a triage job of `ticket` at `revision` (not enqueued).
pub async fn record_job(store: &Store, job_id: &JobId, ticket: &TicketId, revision: u64, max_attempts: u32) {
    ensure_tenant(store, None).await;
    let job = NewJob {
        job_id: job_id.clone(),
        tenant_id: tenant(),
        kind: longhaul_triage::KIND.into(),
        key: format!("{ticket}@{revision}"),
        input: serde_json::json!({ "ticket_id": ticket, "revision": revision }),
        max_attempts,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    };
    store.create_pending(job).await.expect("pending record");
}

/// Stores revision 1 (or the next) of `ticket` and returns its triage job's id and the revision.
pub async fn store_ticket(store: &Store, ticket: &TicketId, subject: &str, body: &str) -> (JobId, u64) {
    ensure_tenant(store, None).await;
    let stored = longhaul_triage::storage::upsert_ticket(store, &tenant(), ticket, subject, body)
        .await
        .expect("ticket");
    (longhaul_triage::job_id_for_ticket(&tenant(), ticket, stored.revision), stored.revision)
}

/// A first-attempt entry of tenant `acme` for triage job `job_id`.
pub fn entry(job_id: &JobId) -> JobEntry {
    entry_of(job_id, longhaul_triage::KIND)
}

/// A first-attempt entry of tenant `acme` for job `job_id`, saying its kind is `kind`.
pub fn entry_of(job_id: &JobId, kind: &str) -> JobEntry {
    JobEntry {
        job_id: job_id.clone(),
        tenant_id: tenant(),
        kind: Some(kind.to_owned()),
        attempt: 1,
        enqueued_at_ms: longhaul_queue::now_ms(),
        priority: Default::default(),
        traceparent: None,
    }
}

/// What a producer does for a job of kind `K`: validates and keys `input` (a random key: every
/// call is a job of its own), records the job and enqueues its entry on `queue`.
pub async fn submit_kind<K: JobKind>(
    store: &Store,
    queue: &Queue,
    input: &K::Input,
    max_attempts: u32,
) -> JobId {
    let job = record_kind::<K>(store, input, max_attempts).await;
    queue.enqueue(&entry_of(&job, K::NAME)).await.expect("enqueue");
    job
}

/// [`submit_kind`] without the enqueue: only the pending record.
pub async fn record_kind<K: JobKind>(store: &Store, input: &K::Input, max_attempts: u32) -> JobId {
    ensure_tenant(store, None).await;
    let input = serde_json::to_value(input).expect("input as JSON");
    let prepared = longhaul_core::kind::prepare::<K>(&tenant(), input, None, longhaul_core::kind::random_key)
        .expect("input");
    let job = NewJob {
        job_id: prepared.job_id.clone(),
        tenant_id: tenant(),
        kind: prepared.kind.into(),
        key: prepared.key.as_str().to_owned(),
        input: prepared.input,
        max_attempts,
        run_at: None,
        priority: longhaul_core::Priority::Normal,
    };
    store.create_pending(job).await.expect("pending record");
    prepared.job_id
}

/// The audit actions of `job`, oldest first.
pub async fn audit_actions(store: &Store, job: &JobId) -> Vec<String> {
    store.job_audit(&tenant(), job).await.expect("audit").into_iter().map(|a| a.action).collect()
}

/// A job id for a ticket that does not exist.
pub fn orphan_job(ticket: &str) -> (JobId, TicketId) {
    let ticket = TicketId::parse(ticket).expect("ticket");
    let key = IdempotencyKey::parse(format!("orphan-{ticket}")).expect("key");
    (JobId::for_idempotency_key(&tenant(), &key), ticket)
}

/// The lifecycle events of `job` published so far, oldest first (read by a group of its own).
pub async fn events_of(queue: &Queue, job: &JobId) -> Vec<longhaul_queue::Event> {
    let mut reader =
        queue.event_reader("queue-events", &format!("t-{}", longhaul_testkit::random_hex())).expect("reader");
    let mut all = Vec::new();
    loop {
        let got = reader.read(1000, Duration::from_millis(1)).await.expect("read events");
        if got.is_empty() {
            break;
        }
        reader.ack(&got.iter().map(|r| r.id.clone()).collect::<Vec<_>>()).await.expect("ack");
        all.extend(got.into_iter().map(|r| r.event).filter(|e| e.job_id == job.as_str()));
    }
    all
}

/// Waits until the job reaches `status`.
pub async fn wait_status(store: &Store, job: &JobId, status: JobStatus) -> JobRecord {
    wait_until(Duration::from_secs(15), &format!("job {job} {status}"), async || {
        let r = store.get_job(&tenant(), job).await.expect("read record").expect("record exists");
        if r.status == status { Ok(r) } else { Err((r.status, r.attempts, r.error_message)) }
    })
    .await
}

/// Fails with `case` for the first `failures` calls, then classifies by the rules.
pub struct FlakyClassifier {
    pub failures: AtomicU32,
    pub case: FailureCase,
    pub calls: AtomicU32,
}

impl FlakyClassifier {
    pub fn new(failures: u32, case: FailureCase) -> Arc<Self> {
        Arc::new(Self { failures: AtomicU32::new(failures), case, calls: AtomicU32::new(0) })
    }
}

impl Classifier for FlakyClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let left = self.failures.load(Ordering::SeqCst);
        if left > 0 {
            self.failures.store(left - 1, Ordering::SeqCst);
            return Err(JobError::new(self.case, format!("provider {:?} (scripted)", self.case)));
        }
        Ok(RuleClassifier::classify_now(ticket))
    }
}

pub type Triage<C> = TriagePipeline<BatchedTickets, C, HttpWebhook>;

/// The real triage pipeline with classifier `c`, wired as production wires it: ticket reads and
/// writes batched across jobs (needs a Tokio runtime).
pub fn triage<C: Classifier>(store: &Store, c: C) -> Triage<C> {
    TriagePipeline::new(
        BatchedTickets::spawn(store),
        c,
        HttpWebhook::new(Duration::from_secs(5)).expect("webhook"),
    )
}

/// Defines a test that runs on SQLite and on PostgreSQL (with one Redis server), and on SQLite
/// with the queue on the 3-primary test Redis Cluster.
macro_rules! both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                let body = $body;
                body($crate::harness::Backend::Sqlite).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite_redis_cluster() {
                let body = $body;
                longhaul_testkit::on_redis(
                    longhaul_testkit::RedisKind::Cluster,
                    body($crate::harness::Backend::Sqlite),
                )
                .await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                let body = $body;
                body($crate::harness::Backend::Postgres).await;
            }
        }
    };
}
pub(crate) use both_backends;
