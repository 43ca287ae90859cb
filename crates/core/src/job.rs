//! Running a job: the [`Pipeline`] a user writes for a kind, the [`Ctx`] it runs with (identity,
//! stages and progress, durable steps), and the [`Registry`] of kinds a producer validates against
//! and a worker runs from. The example is the README's "Write your own pipeline":
//!
//! ```
//! use longhaul_core::kind::{InputError, JobKind, KindOptions, Stage};
//! use longhaul_core::{Ctx, FailureCase, JobError, Pipeline, Registry};
//! use serde::{Deserialize, Serialize};
//!
//! pub struct Export;                                   // the kind
//!
//! #[derive(Serialize, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct ExportInput { pub account: String, pub months: u32 }
//!
//! impl JobKind for Export {
//!     const NAME: &'static str = "export";             // what clients submit as `kind`
//!     type Input = ExportInput;
//!     type Output = String;                            // stored as the record's output
//!     fn options() -> KindOptions {
//!         const STAGES: &[Stage] = &[Stage::new("collect", 3), Stage::new("upload", 1)];
//!         KindOptions::new("exports", STAGES)          // its queue: own stream, own workers
//!             .with_max_attempts(5)
//!             .with_stage_timeout(std::time::Duration::from_secs(120))
//!             .with_deadline(std::time::Duration::from_secs(3600))
//!     }
//!     fn key(input: &ExportInput) -> Option<String> {  // same account and months: same job
//!         Some(format!("{}:{}", input.account, input.months))
//!     }
//!     fn validate(input: &ExportInput) -> Result<(), InputError> {
//!         if input.months == 0 { return Err(InputError::new("months", "must be at least 1")); }
//!         Ok(())
//!     }
//! }
//!
//! pub struct ExportPipeline;                           // holds your clients
//!
//! impl Pipeline for ExportPipeline {
//!     type Kind = Export;
//!     async fn run(&self, ctx: &Ctx, input: ExportInput) -> Result<String, JobError> {
//!         let account = &input.account;
//!         let rows: Vec<String> = ctx.stage("collect", async {
//!             let mut rows = Vec::new();
//!             for month in 0..input.months {
//!                 // One durable step per month: a retry after month 7 failed starts at month 7.
//!                 let row: String = ctx.effect(&format!("month-{month}"), |_op| async move {
//!                     Ok(format!("{account}:{month}"))
//!                 }).await?;
//!                 rows.push(row);
//!                 ctx.progress(u64::from(month) + 1, u64::from(input.months));
//!             }
//!             Ok(rows)
//!         }).await?;
//!         ctx.stage("upload", ctx.effect("upload", |op| async move {
//!             // Send `rows` with `Idempotency-Key: {op}`; map a failure onto the retry table,
//!             // e.g. a 503 is `FailureCase::ProviderUnavailable` (retryable).
//!             let _ = (op, FailureCase::ProviderUnavailable);
//!             Ok(format!("uploaded {} rows", rows.len()))
//!         })).await
//!     }
//! }
//!
//! // The producer validates and keys submissions of the kind; the worker runs its pipeline.
//! let producer_kinds = Registry::new().kind::<Export>().unwrap();
//! let worker_kinds = Registry::new().pipeline(ExportPipeline).unwrap();
//! assert_eq!(worker_kinds.queues().into_iter().collect::<Vec<_>>(), ["exports"]);
//! let tenant = longhaul_core::TenantId::parse("acme").unwrap();
//! let bad = serde_json::json!({"account": "a-1", "months": 0});
//! let err = producer_kinds.prepare(&tenant, "export", bad, None, longhaul_core::kind::random_key).unwrap_err();
//! assert_eq!(err.field, "input.months");
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::kind::{self, InputError, JobKind, KindOptions, Prepared};
use crate::pipeline::{JobContext, OperationLog, OperationState, PipelineObserver, StageEvent};
use crate::{FailureCase, IdempotencyKey, JobError, JobId, OperationId, Progress, TenantId};

/// A boxed, sendable future: what the object-safe traits here return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The code that runs one kind's jobs.
pub trait Pipeline: Send + Sync + 'static {
    /// The kind it runs.
    type Kind: JobKind;

    /// Runs one attempt. Wrap each stage in [`Ctx::stage`] and each side effect in
    /// [`Ctx::effect`].
    ///
    /// # Errors
    /// A [`JobError`] whose case decides whether the job is retried, failed or alerted on.
    fn run(
        &self,
        ctx: &Ctx,
        input: <Self::Kind as JobKind>::Input,
    ) -> impl Future<Output = Result<<Self::Kind as JobKind>::Output, JobError>> + Send;
}

/// What one attempt runs with: who and what it is for, where it reports progress, and the
/// operation log its durable steps go through.
pub struct Ctx {
    job: JobContext,
    key: Option<String>,
    options: KindOptions,
    observer: Arc<dyn PipelineObserver>,
    ops: Arc<dyn OperationLog>,
}

tokio::task_local! {
    /// The stage whose work is being polled (an index into the kind's stages): set by
    /// [`Ctx::stage`] for exactly the future it wraps, so a step is filed under the stage that runs
    /// it — also when stages run concurrently — and a step outside every stage is refused.
    static STAGE: usize;
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("job", &self.job).field("key", &self.key).finish_non_exhaustive()
    }
}

impl Ctx {
    /// The context of attempt `job` of a job of a kind with `options`, reporting to `observer`
    /// and logging effects in `ops`.
    pub fn new(
        job: JobContext,
        key: Option<String>,
        options: KindOptions,
        observer: Arc<dyn PipelineObserver>,
        ops: Arc<dyn OperationLog>,
    ) -> Self {
        Self { job, key, options, observer, ops }
    }

    /// The job, tenant, kind and attempt.
    pub fn job(&self) -> &JobContext {
        &self.job
    }

    /// The job id.
    pub fn job_id(&self) -> &JobId {
        &self.job.job_id
    }

    /// The tenant: every read and write of the attempt is scoped to it.
    pub fn tenant_id(&self) -> &TenantId {
        &self.job.tenant_id
    }

    /// The attempt being run (1-based).
    pub fn attempt(&self) -> u32 {
        self.job.attempt
    }

    /// The key the job id was derived from (`None` for jobs recorded before keys were kept).
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn emit(&self, event: StageEvent<'_>) {
        self.observer.on_event(&self.job, event);
    }

    fn percent(p: u8) -> Progress {
        Progress::new(p.min(100)).unwrap_or(Progress::DONE)
    }

    /// Runs stage `name` (one of the kind's stages): reports its start and end, and fails the
    /// attempt as retryable when it runs past the kind's stage timeout (time the operation log
    /// spends holding a step through a storage outage does not count: [`crate::stage_timer`]).
    /// Steps ([`Ctx::effect`]) and progress inside `work` belong to this stage — also when stages
    /// run concurrently; work handed to another task (`tokio::spawn`) runs outside it, so keep
    /// steps in `work` itself.
    ///
    /// # Errors
    /// `work`'s error; a stage timeout; an invalid-data error when the kind declares no stage
    /// `name` (a bug in the pipeline).
    pub async fn stage<T>(
        &self,
        name: &str,
        work: impl Future<Output = Result<T, JobError>>,
    ) -> Result<T, JobError> {
        let Some(index) = self.options.stages.iter().position(|s| s.name == name) else {
            return Err(JobError::new(
                FailureCase::InvalidJobData,
                format!("kind {} declares no stage {name:?}", self.job.kind),
            ));
        };
        let stage = self.options.stages[index].name;
        let (from, to) = self.options.stage_span(index);
        self.emit(StageEvent::Started { stage, progress: Self::percent(from) });
        let work = STAGE.scope(index, work);
        let result = match self.options.stage_timeout {
            None => work.await,
            Some(limit) => match crate::stage_timer::run(limit, work).await {
                Some(result) => result,
                None => Err(JobError::new(
                    FailureCase::StageTimeout,
                    format!("stage {stage} ran longer than its timeout of {limit:?}"),
                )),
            },
        };
        if result.is_ok() {
            self.emit(StageEvent::Finished { stage, progress: Self::percent(to) });
        }
        result
    }

    /// Reports `done` of `total` units of the current stage's work (a no-op outside a stage).
    pub fn progress(&self, done: u64, total: u64) {
        let Ok(index) = STAGE.try_with(|i| *i) else {
            return;
        };
        let (from, to) = self.options.stage_span(index);
        let within = if total == 0 { 1.0 } else { (done.min(total) as f64) / (total as f64) };
        let percent = f64::from(from) + (f64::from(to) - f64::from(from)) * within;
        let stage = self.options.stages[index].name;
        self.emit(StageEvent::Progress { stage, progress: Self::percent(percent.floor() as u8) });
    }

    /// The current stage's name.
    ///
    /// # Errors
    /// An invalid-data error outside a stage (a bug in the pipeline).
    pub fn current_stage(&self) -> Result<&'static str, JobError> {
        let current = STAGE.try_with(|i| *i).ok().filter(|i| *i < self.options.stages.len());
        current.map(|i| self.options.stages[i].name).ok_or_else(|| {
            JobError::new(FailureCase::InvalidJobData, "a durable step ran outside a stage".to_owned())
        })
    }

    /// The operation id of step `name` of the current stage: what [`Ctx::effect`] keys it by,
    /// and what a receiver should get as its idempotency key.
    ///
    /// # Errors
    /// As [`Ctx::current_stage`].
    pub fn operation_id(&self, name: &str) -> Result<OperationId, JobError> {
        Ok(OperationId::derive(&self.job.job_id, self.current_stage()?, name))
    }

    /// A durable step: runs `run` at most once per operation id (job, current stage, `name`) and
    /// stores its result; on a retry a finished step returns the stored result without running.
    /// A step begun but not known to have finished runs again with the same operation id, which
    /// `run` passes to its receiver as an idempotency key.
    ///
    /// # Errors
    /// `run`'s error, the operation log's, or an invalid-data error when a stored result no
    /// longer reads as `T`.
    pub async fn effect<T, F, Fut>(&self, name: &str, run: F) -> Result<T, JobError>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(OperationId) -> Fut,
        Fut: Future<Output = Result<T, JobError>>,
    {
        let stage = self.current_stage()?;
        let op = OperationId::derive(&self.job.job_id, stage, name);
        if let Some(OperationState::Done { result }) = self.ops.begin(&self.job, &op, stage, name).await? {
            return serde_json::from_value(result).map_err(|e| {
                JobError::new(
                    FailureCase::InvalidJobData,
                    format!("the stored result of step {stage}/{name} is unreadable: {e}"),
                )
            });
        }
        let value = run(op.clone()).await?;
        let stored = serde_json::to_value(&value).map_err(|e| {
            JobError::new(FailureCase::InvalidJobData, format!("step {stage}/{name} result is not JSON: {e}"))
        })?;
        self.ops.finish(&self.job, &op, &stored).await?;
        Ok(value)
    }
}

/// A registered pipeline with its types erased: JSON in, JSON out.
pub trait Runner: Send + Sync {
    /// Decodes `input`, runs the pipeline, encodes its output.
    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>>;
}

struct Typed<P>(P);

impl<P: Pipeline> Runner for Typed<P> {
    fn run<'a>(
        &'a self,
        ctx: &'a Ctx,
        input: serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Value, JobError>> {
        Box::pin(async move {
            let input = kind::decode_input::<P::Kind>(input).map_err(|e| {
                JobError::new(FailureCase::InvalidJobData, format!("the job's input does not decode: {e}"))
            })?;
            let output = self.0.run(ctx, input).await?;
            serde_json::to_value(output).map_err(|e| {
                JobError::new(FailureCase::InvalidJobData, format!("output is not serialisable: {e}"))
            })
        })
    }
}

type PrepareFn = fn(
    &TenantId,
    serde_json::Value,
    Option<IdempotencyKey>,
    &mut dyn FnMut() -> String,
) -> Result<Prepared, InputError>;

/// One registered kind.
#[derive(Clone)]
struct Registered {
    options: KindOptions,
    prepare: PrepareFn,
    runner: Option<Arc<dyn Runner>>,
    /// [`JobKind::input_schema`], checked.
    input_schema: Arc<serde_json::Value>,
}

/// Why a kind cannot be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// Two registrations of one name.
    #[error("job kind {0:?} is registered twice")]
    Duplicate(&'static str),
    /// The name or the options are not valid.
    #[error("job kind {kind:?}: {message}")]
    Invalid {
        /// The kind.
        kind: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The job kinds a process knows, by name: the producer validates and keys submissions with it,
/// the worker runs pipelines from it.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: BTreeMap<&'static str, Registered>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("kinds", &self.kinds.keys().collect::<Vec<_>>()).finish()
    }
}

impl Registry {
    /// No kinds.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds kind `K` (to validate and record submissions; it cannot run here).
    ///
    /// # Errors
    /// A duplicate name, an invalid name or queue name, or a kind without stages.
    pub fn kind<K: JobKind>(self) -> Result<Self, RegistryError> {
        self.add::<K>(None)
    }

    /// Adds `pipeline`, which runs its kind.
    ///
    /// # Errors
    /// As [`Registry::kind`].
    pub fn pipeline<P: Pipeline>(self, pipeline: P) -> Result<Self, RegistryError> {
        self.add::<P::Kind>(Some(Arc::new(Typed(pipeline))))
    }

    fn add<K: JobKind>(mut self, runner: Option<Arc<dyn Runner>>) -> Result<Self, RegistryError> {
        let invalid = |message: String| RegistryError::Invalid { kind: K::NAME, message };
        kind::validate_kind_name(K::NAME).map_err(invalid)?;
        let options = K::options();
        kind::validate_queue_name(options.queue).map_err(invalid)?;
        if options.stages.is_empty() {
            return Err(invalid("declares no stage".into()));
        }
        let names: BTreeSet<_> = options.stages.iter().map(|s| s.name).collect();
        if names.len() != options.stages.len() {
            return Err(invalid("declares a stage name twice".into()));
        }
        if options.max_attempts == Some(0) {
            return Err(invalid("max_attempts must be at least 1".into()));
        }
        if self.kinds.contains_key(K::NAME) {
            return Err(RegistryError::Duplicate(K::NAME));
        }
        let input_schema = K::input_schema();
        check_input_schema(&input_schema).map_err(|e| invalid(format!("input_schema: {e}")))?;
        let prepare: PrepareFn =
            |tenant, input, key, generated| kind::prepare::<K>(tenant, input, key, generated);
        let input_schema = Arc::new(input_schema);
        self.kinds.insert(K::NAME, Registered { options, prepare, runner, input_schema });
        Ok(self)
    }

    /// The kinds' names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.kinds.keys().copied()
    }

    /// The queues the kinds go to, sorted, without repeats.
    pub fn queues(&self) -> BTreeSet<&'static str> {
        self.kinds.values().map(|k| k.options.queue).collect()
    }

    /// The names of the kinds queued on `queue`.
    pub fn kinds_of_queue<'a>(&'a self, queue: &'a str) -> impl Iterator<Item = &'static str> + 'a {
        self.kinds.iter().filter(move |(_, k)| k.options.queue == queue).map(|(name, _)| *name)
    }

    /// Kind `kind`'s options.
    pub fn options(&self, kind: &str) -> Option<&KindOptions> {
        self.kinds.get(kind).map(|k| &k.options)
    }

    /// The JSON Schema of kind `kind`'s input ([`JobKind::input_schema`]).
    pub fn input_schema(&self, kind: &str) -> Option<&serde_json::Value> {
        self.kinds.get(kind).map(|k| &*k.input_schema)
    }

    /// The pipeline of `kind`, when this registry runs it.
    pub fn runner(&self, kind: &str) -> Option<Arc<dyn Runner>> {
        self.kinds.get(kind).and_then(|k| k.runner.clone())
    }

    /// Validates a submission of `kind` and derives its job id (see [`kind::prepare`]).
    ///
    /// # Errors
    /// [`InputError`] on field `kind` for a kind not registered here, else naming the input's
    /// first wrong field.
    pub fn prepare(
        &self,
        tenant: &TenantId,
        kind: &str,
        input: serde_json::Value,
        client_key: Option<IdempotencyKey>,
        mut generated: impl FnMut() -> String,
    ) -> Result<Prepared, InputError> {
        let registered = self.kinds.get(kind).ok_or_else(|| {
            let known: Vec<_> = self.kinds.keys().copied().collect();
            InputError::new("kind", format!("unknown kind {kind:?}; known kinds: {}", known.join(", ")))
        })?;
        (registered.prepare)(tenant, input, client_key, &mut generated)
    }
}

/// Checks a kind's input schema: a JSON object that stands alone — no `$ref` into the document it
/// is shown in (`#…`), which would resolve against the OpenAPI document rather than the schema.
fn check_input_schema(schema: &serde_json::Value) -> Result<(), String> {
    fn local_ref(value: &serde_json::Value) -> Option<&str> {
        match value {
            serde_json::Value::Object(map) => map
                .get("$ref")
                .and_then(|r| r.as_str())
                .filter(|r| r.starts_with('#'))
                .or_else(|| map.values().find_map(local_ref)),
            serde_json::Value::Array(items) => items.iter().find_map(local_ref),
            _ => None,
        }
    }
    if !schema.is_object() {
        return Err(format!("must be a JSON object (a JSON Schema), got {schema}"));
    }
    match local_ref(schema) {
        Some(r) => Err(format!(
            "refers to {r:?}: write the schema out in place (kind::schema_of does it for a ToSchema type)"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
