//! In-memory stand-ins for application storage, a scripted classifier, a gated classifier and a
//! recording webhook.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use longhaul_core::job::BoxFuture;
use longhaul_core::{
    Ctx, JobContext, JobError, JobKind, OperationId, OperationLog, OperationState, Pipeline,
    PipelineObserver, StageEvent, TenantId, TicketId,
};
use longhaul_triage::{
    Classification, Classifier, RuleClassifier, TicketStore, TicketView, Triage, TriageInput, TriageOutput,
    WebhookSender,
};
use serde_json::Value;

/// A triage job as the tests run it: its identity and input.
#[derive(Debug, Clone)]
pub struct Job {
    pub ctx: JobContext,
    pub input: TriageInput,
}

impl Job {
    /// Attempt `attempt` of the job triaging revision 1 of `ticket` of `tenant`.
    pub fn new(tenant: &str, ticket: &str, attempt: u32) -> Self {
        let tenant_id = TenantId::parse(tenant).expect("tenant");
        let ticket_id = TicketId::parse(ticket).expect("ticket");
        Self {
            ctx: JobContext {
                job_id: longhaul_triage::job_id_for_ticket(&tenant_id, &ticket_id, 1),
                tenant_id,
                kind: longhaul_triage::KIND.into(),
                attempt,
            },
            input: TriageInput { ticket_id, revision: 1 },
        }
    }

    /// The job triaging revision `revision` of the same ticket (a job of its own: its id is that
    /// revision's).
    pub fn revision(mut self, revision: u64) -> Self {
        self.input.revision = revision;
        self.ctx.job_id =
            longhaul_triage::job_id_for_ticket(&self.ctx.tenant_id, &self.input.ticket_id, revision);
        self
    }
}

/// Runs `pipeline` on `job` as the worker does: a [`Ctx`] over the operation log `ops`,
/// reporting to `observer`.
pub async fn run<P: Pipeline<Kind = Triage>>(
    pipeline: &P,
    job: &Job,
    ops: Arc<dyn OperationLog>,
    observer: Arc<dyn PipelineObserver>,
) -> Result<TriageOutput, JobError> {
    let ctx = Ctx::new(job.ctx.clone(), None, Triage::options(), observer, ops);
    pipeline.run(&ctx, job.input.clone()).await
}

#[derive(Default)]
pub struct MemStore {
    pub tickets: Mutex<HashMap<(String, String), TicketView>>,
    pub triage_writes: Mutex<Vec<Value>>,
    /// Each ticket's stored triage, by (tenant, ticket).
    pub triage: Mutex<HashMap<(String, String), Value>>,
    pub webhooks: Mutex<HashMap<String, String>>,
    pub ops: Mutex<HashMap<String, OperationState>>,
}

impl MemStore {
    pub fn with_ticket(tenant: &str, ticket: &str, subject: &str, body: &str) -> Self {
        let s = Self::default();
        s.put(tenant, ticket, subject, body);
        s
    }

    pub fn put(&self, tenant: &str, ticket: &str, subject: &str, body: &str) {
        let view = TicketView {
            tenant_id: TenantId::parse(tenant).expect("tenant"),
            ticket_id: TicketId::parse(ticket).expect("ticket"),
            revision: 1,
            subject: subject.into(),
            body: body.into(),
            webhook_url: None,
        };
        self.tickets.lock().expect("lock").insert((tenant.into(), ticket.into()), view);
    }
}

impl TicketStore for MemStore {
    async fn load_ticket(
        &self,
        tenant: &TenantId,
        ticket: &TicketId,
    ) -> Result<Option<TicketView>, JobError> {
        let view = self.tickets.lock().expect("lock").get(&(tenant.to_string(), ticket.to_string())).cloned();
        let webhook_url = self.webhooks.lock().expect("lock").get(tenant.as_str()).cloned();
        Ok(view.map(|v| TicketView { webhook_url, ..v }))
    }
    /// As the real store: once per operation id, and never over a newer revision's triage.
    async fn write_triage(
        &self,
        ctx: &JobContext,
        ticket: &TicketId,
        op: &OperationId,
        stage: &str,
        effect: &str,
        triage: &Value,
    ) -> Result<Value, JobError> {
        assert_eq!(
            *op,
            OperationId::derive(&ctx.job_id, stage, effect),
            "the operation is named by its stage and effect"
        );
        let mut ops = self.ops.lock().expect("lock");
        if let Some(OperationState::Done { result }) = ops.get(op.as_str()) {
            return Ok(result.clone());
        }
        let revision = |t: &Value| t.get("revision").and_then(Value::as_u64).unwrap_or(0);
        let key = (ctx.tenant_id.to_string(), ticket.to_string());
        let mut stored = self.triage.lock().expect("lock");
        let result = match stored.get(&key).map(revision) {
            Some(newer) if newer > revision(triage) => {
                serde_json::json!({ "written": false, "superseded_by": newer, "triage": triage })
            }
            _ => {
                stored.insert(key, triage.clone());
                self.triage_writes.lock().expect("lock").push(triage.clone());
                serde_json::json!({ "written": true, "triage": triage })
            }
        };
        ops.insert(op.to_string(), OperationState::Done { result: result.clone() });
        Ok(result)
    }
}

impl OperationLog for MemStore {
    fn begin<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        _stage: &'a str,
        _effect: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, JobError>> {
        Box::pin(async move {
            let mut ops = self.ops.lock().expect("lock");
            let before = ops.get(op.as_str()).cloned();
            if !matches!(before, Some(OperationState::Done { .. })) {
                ops.insert(op.to_string(), OperationState::Started { attempt: ctx.attempt });
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
            self.ops
                .lock()
                .expect("lock")
                .insert(op.to_string(), OperationState::Done { result: result.clone() });
            Ok(())
        })
    }
}

/// Answers from a script, then falls back to the rules.
#[derive(Default)]
pub struct ScriptedClassifier {
    pub answers: Mutex<VecDeque<Result<Classification, JobError>>>,
}

impl ScriptedClassifier {
    pub fn failing_with(errors: Vec<JobError>) -> Self {
        Self { answers: Mutex::new(errors.into_iter().map(Err).collect()) }
    }
}

impl Classifier for ScriptedClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        let next = self.answers.lock().expect("lock").pop_front();
        match next {
            Some(answer) => answer,
            None => Ok(RuleClassifier::classify_now(ticket)),
        }
    }
}

/// The rules, except that classifying a ticket at revision `gated` waits at a gate: `arrived` is
/// notified when the call gets there, and it answers once `open` is notified. Models a provider
/// that takes its time with one job while others go on.
pub struct GatedClassifier {
    pub gated: u64,
    pub arrived: tokio::sync::Notify,
    pub open: tokio::sync::Notify,
}

impl GatedClassifier {
    pub fn at_revision(gated: u64) -> Self {
        Self { gated, arrived: tokio::sync::Notify::new(), open: tokio::sync::Notify::new() }
    }
}

impl Classifier for GatedClassifier {
    async fn classify(&self, ticket: &TicketView) -> Result<Classification, JobError> {
        if ticket.revision == self.gated {
            self.arrived.notify_one();
            self.open.notified().await;
        }
        Ok(RuleClassifier::classify_now(ticket))
    }
}

/// Records every delivery; fails the first `fail_first` ones after "sending" (to model a crash
/// between the effect and its record).
#[derive(Default)]
pub struct RecordingWebhook {
    /// (url, idempotency key) of each delivery.
    pub deliveries: Mutex<Vec<(String, String)>>,
    /// The payload of each delivery.
    pub payloads: Mutex<Vec<Value>>,
    pub fail_first: usize,
}

impl RecordingWebhook {
    pub fn failing_first(fail_first: usize) -> Self {
        Self { fail_first, ..Self::default() }
    }
}

impl WebhookSender for RecordingWebhook {
    async fn deliver(&self, url: &str, op: &OperationId, payload: &Value) -> Result<Value, JobError> {
        let mut deliveries = self.deliveries.lock().expect("lock");
        deliveries.push((url.to_owned(), op.to_string()));
        self.payloads.lock().expect("lock").push(payload.clone());
        if deliveries.len() <= self.fail_first {
            return Err(JobError::new(
                longhaul_core::FailureCase::ProviderTimeout,
                "webhook receiver timed out",
            ));
        }
        Ok(serde_json::json!({ "delivered": true }))
    }
}

/// Records stage events as (kind, stage, percent).
#[derive(Default)]
pub struct RecordingObserver {
    pub events: Mutex<Vec<(&'static str, String, u8)>>,
}

impl PipelineObserver for RecordingObserver {
    fn on_event(&self, _ctx: &JobContext, event: StageEvent<'_>) {
        let kind = match event {
            StageEvent::Started { .. } => "started",
            StageEvent::Progress { .. } => "progress",
            StageEvent::Finished { .. } => "finished",
        };
        self.events.lock().expect("lock").push((kind, event.stage().to_owned(), event.progress().percent()));
    }
}
