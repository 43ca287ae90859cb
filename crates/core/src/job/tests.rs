//! Unit tests of [`super`]: stages and progress, durable steps, the registry.
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::*;
use crate::kind::Stage;

/// An operation log in memory.
#[derive(Default)]
struct MemLog(Mutex<HashMap<String, OperationState>>);

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

#[derive(Default)]
struct Events(Mutex<Vec<(String, u8)>>);

impl PipelineObserver for Events {
    fn on_event(&self, _ctx: &JobContext, event: StageEvent<'_>) {
        self.0.lock().expect("lock").push((event.stage().to_owned(), event.progress().percent()));
    }
}

struct Chunks;

#[derive(Serialize, Deserialize)]
struct ChunksInput {
    n: u32,
    /// Fail at this chunk (once per counter value).
    fail_at: Option<u32>,
}

impl JobKind for Chunks {
    const NAME: &'static str = "chunks";
    type Input = ChunksInput;
    type Output = Vec<u32>;
    fn options() -> KindOptions {
        const STAGES: &[Stage] = &[Stage::new("split", 1), Stage::new("each", 2), Stage::new("slow", 1)];
        KindOptions::new("chunks", STAGES).with_stage_timeout(Duration::from_millis(50))
    }
}

struct ChunksPipeline {
    calls: AtomicU32,
}

impl Pipeline for ChunksPipeline {
    type Kind = Chunks;
    async fn run(&self, ctx: &Ctx, input: ChunksInput) -> Result<Vec<u32>, JobError> {
        ctx.stage("split", async { Ok(()) }).await?;
        let out = ctx
            .stage("each", async {
                let mut out = Vec::new();
                for i in 0..input.n {
                    let v = ctx
                        .effect(&format!("chunk-{i}"), |_op| async move {
                            self.calls.fetch_add(1, Ordering::SeqCst);
                            if input.fail_at == Some(i) && ctx.attempt() == 1 {
                                return Err(JobError::new(FailureCase::ProviderUnavailable, "503"));
                            }
                            Ok(i * 10)
                        })
                        .await?;
                    out.push(v);
                    ctx.progress(u64::from(i) + 1, u64::from(input.n));
                }
                Ok(out)
            })
            .await?;
        Ok(out)
    }
}

fn ctx(attempt: u32, log: &Arc<MemLog>, events: &Arc<Events>) -> Ctx {
    let job = JobContext {
        job_id: JobId::parse("job_0123456789abcdef0123456789abcdef").expect("id"),
        tenant_id: TenantId::parse("acme").expect("tenant"),
        kind: "chunks".into(),
        attempt,
    };
    Ctx::new(job, Some("k".into()), Chunks::options(), events.clone(), log.clone())
}

#[tokio::test]
async fn a_retry_runs_only_the_steps_that_did_not_finish() {
    let registry = Registry::new().pipeline(ChunksPipeline { calls: AtomicU32::new(0) }).expect("registry");
    let runner = registry.runner("chunks").expect("runner");
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());

    let first = runner.run(&ctx(1, &log, &events), json!({"n": 10, "fail_at": 6})).await;
    assert_eq!(first.expect_err("chunk 7 fails").case, FailureCase::ProviderUnavailable);
    let second = runner.run(&ctx(2, &log, &events), json!({"n": 10, "fail_at": 6})).await;
    assert_eq!(second.expect("retry completes"), json!([0, 10, 20, 30, 40, 50, 60, 70, 80, 90]));
    let events = events.0.lock().expect("lock").clone();
    assert!(events.contains(&("split".into(), 0)));
    // "each" spans 25–75 %: ten chunks move it 5 points each.
    let each: Vec<u8> = events.iter().filter(|(s, _)| s == "each").map(|(_, p)| *p).collect();
    assert!(each.contains(&30) && each.contains(&55) && each.contains(&75), "{events:?}");
    assert!(!events.iter().any(|(s, _)| s == "slow"), "an unused stage reports nothing");
}

#[tokio::test]
async fn provider_calls_are_counted_once_per_finished_step() {
    let pipeline = ChunksPipeline { calls: AtomicU32::new(0) };
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());
    let input = || ChunksInput { n: 10, fail_at: Some(6) };
    assert!(pipeline.run(&ctx(1, &log, &events), input()).await.is_err());
    assert_eq!(pipeline.calls.load(Ordering::SeqCst), 7);
    pipeline.run(&ctx(2, &log, &events), input()).await.expect("retry");
    assert_eq!(pipeline.calls.load(Ordering::SeqCst), 11, "the retry calls only for chunks 7–10");
}

#[tokio::test]
async fn a_stage_past_its_timeout_is_a_retryable_failure() {
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());
    let c = ctx(1, &log, &events);
    let err = c
        .stage("slow", async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        })
        .await
        .expect_err("times out");
    assert_eq!(err.case, FailureCase::StageTimeout);
    assert_eq!(err.case.class(), crate::ErrorClass::Retryable);
    assert!(err.message.contains("slow"), "{err}");
}

#[tokio::test]
async fn undeclared_stages_and_steps_outside_stages_are_pipeline_bugs() {
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());
    let c = ctx(1, &log, &events);
    let err = c.stage("nope", async { Ok(()) }).await.expect_err("undeclared");
    assert!(err.message.contains("nope"), "{err}");
    let err = c.effect("x", |_| async { Ok(1) }).await.expect_err("outside a stage");
    assert_eq!(err.case, FailureCase::InvalidJobData);
    // After a stage ends, a step is outside every stage again.
    c.stage("split", async { Ok(()) }).await.expect("stage");
    let err = c.effect("x", |_| async { Ok(1) }).await.expect_err("after the stage");
    assert_eq!(err.case, FailureCase::InvalidJobData);
}

#[tokio::test]
async fn concurrent_stages_file_each_step_under_its_own_stage() {
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());
    let c = ctx(1, &log, &events);
    let step = |name: &'static str| {
        let c = &c;
        async move {
            tokio::task::yield_now().await;
            c.operation_id(name)
        }
    };
    let (a, b) =
        tokio::join!(c.stage("split", async { step("s").await }), c.stage("each", async { step("s").await }));
    let job = c.job_id().clone();
    assert_eq!(a.expect("split"), OperationId::derive(&job, "split", "s"));
    assert_eq!(b.expect("each"), OperationId::derive(&job, "each", "s"));
}

#[tokio::test]
async fn a_stored_result_that_no_longer_reads_is_invalid() {
    let log = Arc::new(MemLog::default());
    let events = Arc::new(Events::default());
    let c = ctx(1, &log, &events);
    let stored: String =
        c.stage("split", c.effect("s", |_| async { Ok("text".to_owned()) })).await.expect("ok");
    assert_eq!(stored, "text");
    let err = c.stage("split", c.effect::<u32, _, _>("s", |_| async { Ok(1) })).await.expect_err("bad type");
    assert_eq!(err.case, FailureCase::InvalidJobData);
}

#[test]
fn the_registry_refuses_duplicates_and_bad_kinds() {
    let registry = Registry::new().kind::<Chunks>().expect("first");
    assert_eq!(registry.clone().kind::<Chunks>().expect_err("dup"), RegistryError::Duplicate("chunks"));
    assert!(registry.runner("chunks").is_none(), "a kind without its pipeline does not run here");
    assert_eq!(registry.queues().into_iter().collect::<Vec<_>>(), ["chunks"]);

    struct Bad;
    impl JobKind for Bad {
        const NAME: &'static str = "bad kind";
        type Input = Value;
        type Output = Value;
        fn options() -> KindOptions {
            KindOptions::new("q", &[])
        }
    }
    assert!(matches!(Registry::new().kind::<Bad>(), Err(RegistryError::Invalid { .. })));

    let tenant = TenantId::parse("acme").expect("tenant");
    let err = registry.prepare(&tenant, "nope", json!({}), None, || "r".into()).expect_err("unknown");
    assert_eq!(err.field, "kind");
    assert!(err.message.contains("chunks"), "{err}");
}
