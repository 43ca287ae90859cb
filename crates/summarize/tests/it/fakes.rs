//! In-memory collaborators: an operation log, an observer recording stage events, a summarizer
//! that counts its calls, the tenants' webhooks, and the context of one attempt.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use longhaul_core::job::{BoxFuture, Ctx, Registry, Runner};
use longhaul_core::kind::JobKind;
use longhaul_core::{
    FailureCase, JobContext, JobError, JobId, OperationId, OperationLog, OperationState, PipelineObserver,
    StageEvent, TenantId,
};
use longhaul_providers::WebhookSender;
use longhaul_summarize::{Summarize, SummarizePipeline, Summarizer, TenantWebhooks};
use serde_json::Value;

/// The job every test runs.
pub fn job_id() -> JobId {
    JobId::parse("job_0123456789abcdef0123456789abcdef").expect("job id")
}

/// An operation log in memory.
#[derive(Default)]
pub struct MemLog(Mutex<HashMap<String, OperationState>>);

impl MemLog {
    /// How many steps are done.
    pub fn done(&self) -> usize {
        let map = self.0.lock().expect("lock");
        map.values().filter(|s| matches!(s, OperationState::Done { .. })).count()
    }
}

impl OperationLog for MemLog {
    fn begin<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        _stage: &'a str,
        _effect: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, JobError>> {
        Box::pin(async move {
            let mut map = self.0.lock().expect("lock");
            let before = map.get(op.as_str()).cloned();
            if !matches!(before, Some(OperationState::Done { .. })) {
                map.insert(op.to_string(), OperationState::Started { attempt: ctx.attempt });
            }
            Ok(before)
        })
    }

    fn finish<'a>(
        &'a self,
        _ctx: &'a JobContext,
        op: &'a OperationId,
        result: &'a Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            self.0
                .lock()
                .expect("lock")
                .insert(op.to_string(), OperationState::Done { result: result.clone() });
            Ok(())
        })
    }
}

/// One recorded stage event: attempt, kind of event, stage, overall percent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The attempt that reported it.
    pub attempt: u32,
    /// `started`, `progress` or `finished`.
    pub what: &'static str,
    /// The stage.
    pub stage: String,
    /// Overall progress.
    pub percent: u8,
}

/// Records stage events.
#[derive(Default)]
pub struct Events(Mutex<Vec<Event>>);

impl Events {
    /// Everything recorded so far.
    pub fn all(&self) -> Vec<Event> {
        self.0.lock().expect("lock").clone()
    }

    /// The progress events of `stage` reported by `attempt`, as percents.
    pub fn progress(&self, attempt: u32, stage: &str) -> Vec<u8> {
        self.all()
            .into_iter()
            .filter(|e| e.attempt == attempt && e.what == "progress" && e.stage == stage)
            .map(|e| e.percent)
            .collect()
    }
}

impl PipelineObserver for Events {
    fn on_event(&self, ctx: &JobContext, event: StageEvent<'_>) {
        let what = match event {
            StageEvent::Started { .. } => "started",
            StageEvent::Progress { .. } => "progress",
            StageEvent::Finished { .. } => "finished",
        };
        self.0.lock().expect("lock").push(Event {
            attempt: ctx.attempt,
            what,
            stage: event.stage().to_owned(),
            percent: event.progress().percent(),
        });
    }
}

/// A summarizer that counts the calls it passes on.
pub struct Counting<S> {
    /// The summarizer called.
    pub inner: S,
    /// Calls to `summarize` and `combine`.
    pub calls: AtomicUsize,
}

impl<S> Counting<S> {
    /// Counts the calls to `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner, calls: AtomicUsize::new(0) }
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl<S: Summarizer> Summarizer for Counting<S> {
    async fn summarize(&self, text: &str) -> Result<String, JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.summarize(text).await
    }

    async fn combine(&self, partials: &[String]) -> Result<String, JobError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.combine(partials).await
    }
}

/// The tenants' webhook URLs in memory, as an operator configured them; can be made unreachable.
#[derive(Default)]
pub struct Tenants {
    urls: Mutex<HashMap<String, String>>,
    down: AtomicBool,
    lookups: AtomicUsize,
}

impl Tenants {
    /// Tenant `tenant`'s webhook is `url`.
    pub fn with(tenant: &str, url: &str) -> Self {
        let tenants = Self::default();
        tenants.set(tenant, url);
        tenants
    }

    /// Sets (or changes) tenant `tenant`'s webhook.
    pub fn set(&self, tenant: &str, url: &str) {
        self.urls.lock().expect("lock").insert(tenant.into(), url.into());
    }

    /// While `down`, every lookup fails as storage out of reach.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Lookups so far.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::SeqCst)
    }
}

impl TenantWebhooks for Tenants {
    async fn webhook_url(&self, tenant: &TenantId) -> Result<Option<String>, JobError> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        if self.down.load(Ordering::SeqCst) {
            return Err(JobError::new(FailureCase::TemporaryInfrastructure, "tenant storage is down"));
        }
        Ok(self.urls.lock().expect("lock").get(tenant.as_str()).cloned())
    }
}

/// A job's runs: the registered pipeline, its operation log and its recorded events, shared by
/// every attempt.
pub struct Harness {
    runner: Arc<dyn Runner>,
    /// The operation log.
    pub log: Arc<MemLog>,
    /// The stage events.
    pub events: Arc<Events>,
}

impl Harness {
    /// Registers `SummarizePipeline::new(summarizer, webhook, tenants)` — where no tenant has a
    /// webhook — and runs it from the registry.
    pub fn new<S, W>(summarizer: S, webhook: W) -> Self
    where
        S: Summarizer + 'static,
        W: WebhookSender + 'static,
    {
        Self::with_tenants(summarizer, webhook, Tenants::default())
    }

    /// Registers `SummarizePipeline::new(summarizer, webhook, tenants)` and runs it from the
    /// registry.
    pub fn with_tenants<S, W, T>(summarizer: S, webhook: W, tenants: T) -> Self
    where
        S: Summarizer + 'static,
        W: WebhookSender + 'static,
        T: TenantWebhooks + 'static,
    {
        let registry =
            Registry::new().pipeline(SummarizePipeline::new(summarizer, webhook, tenants)).expect("registry");
        let runner = registry.runner(Summarize::NAME).expect("runner");
        Self { runner, log: Arc::default(), events: Arc::default() }
    }

    /// The context of attempt `attempt`.
    pub fn ctx(&self, attempt: u32) -> Ctx {
        let job = JobContext {
            job_id: job_id(),
            tenant_id: TenantId::parse("acme").expect("tenant"),
            kind: Summarize::NAME.into(),
            attempt,
        };
        Ctx::new(job, Some("doc-1:key".into()), Summarize::options(), self.events.clone(), self.log.clone())
    }

    /// Runs attempt `attempt` on `input` (the JSON a producer stored).
    pub async fn run(&self, attempt: u32, input: &Value) -> Result<Value, JobError> {
        self.runner.run(&self.ctx(attempt), input.clone()).await
    }
}
