//! The operation log the executors give their pipelines: the store's, with its writes batched
//! across the jobs of one lane (a queue this worker serves). Every durable step begins its
//! operation before its effect and finishes it after; one at a time, each was a transaction of its
//! own (about ten per `summarize` job). Here concurrent jobs' begins share one statement and one
//! commit, and so do their finishes ([`Batcher`]: while one batch is in flight the next gathers, so
//! a lone step waits for nothing). Each step still waits for its own write to be committed before
//! it goes on, so a begun operation is on disk before its effect runs, as with the unbatched log.
//!
//! **Outages.** A step whose write meets a storage outage waits for storage to come back
//! ([`hold`]) instead of failing its attempt, so an outage spends no attempt. Its stage's timer is
//! paused meanwhile ([`longhaul_core::stage_timer`]): the wait is not the step's. The wait ends
//! with the run: when the delivery is abandoned (shutdown past its grace period, a takeover), the
//! job's cancel is requested or its deadline passes (a promise after submission, which counts the
//! wait). So that the wait begins at once, a batch whose connection fails answers each of its items
//! with a retryable error ([`Fallback::transient`]) rather than trying them one by one against a
//! database that is down; a batch that fails for any other reason is still served one by one, so
//! one bad item fails only itself.

use longhaul_core::job::BoxFuture;
use longhaul_core::{JobContext, JobError, OperationId, OperationLog, OperationState};
use longhaul_service::batch::{Batcher, Fallback};
use longhaul_store::outage::hold;
use longhaul_store::{OperationBegin, OperationFinish, Store, StoreError};
use serde_json::Value;

/// Largest batch in one statement.
const MAX_BATCH: usize = 256;

type Began = Result<Option<OperationState>, StoreError>;

/// The store's operation log, batched.
#[derive(Debug, Clone)]
pub(crate) struct BatchedOps {
    store: Store,
    begins: Batcher<OperationBegin, Began>,
    finishes: Batcher<OperationFinish, Result<(), StoreError>>,
}

impl BatchedOps {
    /// Starts the two batching tasks (needs a Tokio runtime); they end with the last clone.
    pub(crate) fn spawn(store: Store) -> Self {
        Self {
            begins: Batcher::spawn_with_fallback(MAX_BATCH, Begins(store.clone())),
            finishes: Batcher::spawn_with_fallback(MAX_BATCH, Finishes(store.clone())),
            store,
        }
    }
}

impl OperationLog for BatchedOps {
    fn begin<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        stage: &'a str,
        effect: &'a str,
    ) -> BoxFuture<'a, Result<Option<OperationState>, JobError>> {
        Box::pin(async move {
            let begin = OperationBegin {
                ctx: ctx.clone(),
                op: op.clone(),
                stage: stage.to_owned(),
                effect: effect.to_owned(),
            };
            let began = hold(&self.store, "operation begin", std::future::pending(), || async {
                self.begins.call(begin.clone()).await.unwrap_or(Err(StoreError::Stopped("operation log")))
            })
            .await;
            Ok(began.unwrap_or(Err(StoreError::Stopped("operation log")))?)
        })
    }

    fn finish<'a>(
        &'a self,
        ctx: &'a JobContext,
        op: &'a OperationId,
        result: &'a Value,
    ) -> BoxFuture<'a, Result<(), JobError>> {
        Box::pin(async move {
            let finish = OperationFinish {
                tenant: ctx.tenant_id.clone(),
                op: op.clone(),
                attempt: ctx.attempt,
                result: result.clone(),
            };
            let finished = hold(&self.store, "operation finish", std::future::pending(), || async {
                self.finishes.call(finish.clone()).await.unwrap_or(Err(StoreError::Stopped("operation log")))
            })
            .await;
            Ok(finished.unwrap_or(Err(StoreError::Stopped("operation log")))?)
        })
    }
}

/// Begins in one statement; each alone when it fails, all at once when the connection did.
struct Begins(Store);

impl Fallback<OperationBegin> for Begins {
    type Item = Option<OperationState>;
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "operation begins"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, items: &[OperationBegin]) -> Result<Vec<Began>, StoreError> {
        self.0.begin_operations(items).await
    }

    async fn one(&self, o: &OperationBegin) -> Began {
        self.0.begin_operation(&o.ctx, &o.op, &o.stage, &o.effect).await
    }
}

/// Finishes in one statement; each alone when it fails, all at once when the connection did.
struct Finishes(Store);

impl Fallback<OperationFinish> for Finishes {
    type Item = ();
    type Error = StoreError;

    fn what(&self) -> &'static str {
        "operation finishes"
    }

    fn transient(&self, error: &StoreError) -> Option<StoreError> {
        error.for_each_item()
    }

    async fn all(&self, items: &[OperationFinish]) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        self.0.finish_operations(items).await
    }

    async fn one(&self, o: &OperationFinish) -> Result<(), StoreError> {
        self.0.finish_operation(&o.tenant, &o.op, o.attempt, &o.result).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use longhaul_core::{JobId, JobKey, TenantId};
    use longhaul_testkit::{Backend, TestDb};

    use super::*;

    /// A result PostgreSQL cannot store (a NUL in JSON) fails its own finish only: the batch's
    /// statement fails, and each finish is then served alone. (On the test's one-thread runtime
    /// the eight calls queue before the batcher runs, so they share a batch; alone, the bad one
    /// would fail by itself all the same.)
    #[tokio::test]
    async fn a_bad_result_fails_its_own_finish_and_no_other() {
        let db = TestDb::new(Backend::Postgres).await;
        let log = Arc::new(BatchedOps::spawn(db.store.clone()));
        let tenant = TenantId::parse("acme").expect("tenant");
        let ctx = |n: u32| JobContext {
            job_id: JobId::derive(&tenant, "test", &JobKey::Derived(format!("T-{n}"))),
            tenant_id: tenant.clone(),
            kind: "test".into(),
            attempt: 1,
        };
        let op = |n: u32| OperationId::derive(&ctx(n).job_id, "apply", "notify");
        for n in 0..8 {
            assert_eq!(log.begin(&ctx(n), &op(n), "apply", "notify").await.expect("begin"), None);
        }
        let calls: Vec<_> = (0..8)
            .map(|n| {
                let (log, ctx, op) = (log.clone(), ctx(n), op(n));
                tokio::spawn(async move {
                    let result =
                        if n == 3 { serde_json::json!("nul \u{0} here") } else { serde_json::json!(n) };
                    log.finish(&ctx, &op, &result).await.is_ok()
                })
            })
            .collect();
        let mut ok = Vec::new();
        for call in calls {
            ok.push(call.await.expect("a call"));
        }
        assert_eq!(ok, [true, true, true, false, true, true, true, true]);
        for n in 0..8 {
            let state = db.store.get_operation(&tenant, &op(n)).await.expect("get");
            if n == 3 {
                assert_eq!(
                    state,
                    Some(OperationState::Started { attempt: 1 }),
                    "the bad finish changed nothing"
                );
            } else {
                assert_eq!(state, Some(OperationState::Done { result: serde_json::json!(n) }));
            }
        }
    }

    /// Two attempts racing to begin the same operation — in one batch or in two — never both
    /// find it new: an effect runs at most once, batched or not. Thirty-two operations, each begun
    /// by two concurrent callers, then finished by both with different results; attempt 1, the
    /// older, is told it was taken over (and stops) whenever attempt 2 holds the operation at its
    /// begin or finish, and attempt 2 is never told so. (On the test's
    /// one-thread runtime most pairs share a batch, which is the case the batch's own duplicate
    /// check must get right; pairs split over two batches meet the unique key instead.)
    #[tokio::test]
    async fn concurrent_begins_of_one_operation_find_it_new_once() {
        for backend in [Backend::Postgres, Backend::Sqlite] {
            let db = TestDb::new(backend).await;
            let log = Arc::new(BatchedOps::spawn(db.store.clone()));
            let tenant = TenantId::parse("acme").expect("tenant");
            let ctx = |n: u32, attempt| JobContext {
                job_id: JobId::derive(&tenant, "test", &JobKey::Derived(format!("T-{n}"))),
                tenant_id: tenant.clone(),
                kind: "test".into(),
                attempt,
            };
            // Their records, each with both attempts started (as the worker's start records them).
            db.store.create_tenant(&tenant, "Acme", None).await.expect("tenant");
            for n in 0..32 {
                let job = longhaul_core::NewJob {
                    job_id: ctx(n, 2).job_id,
                    tenant_id: tenant.clone(),
                    kind: "test".into(),
                    key: format!("T-{n}"),
                    input: serde_json::json!({}),
                    max_attempts: 3,
                    run_at: None,
                    priority: longhaul_core::Priority::Normal,
                };
                db.store.create_pending(job).await.expect("record");
            }
            db.store.db().execute("UPDATE jobs SET attempts = 2", &[]).await.expect("attempts");
            let mut calls = Vec::new();
            for n in 0..32 {
                for attempt in [1, 2] {
                    let (log, ctx) = (log.clone(), ctx(n, attempt));
                    calls.push(tokio::spawn(async move {
                        let op = OperationId::derive(&ctx.job_id, "apply", "notify");
                        let began = match log.begin(&ctx, &op, "apply", "notify").await {
                            Ok(began) => began,
                            Err(e) if attempt == 1 && e.to_string().contains("taken over") => {
                                return (n, false);
                            }
                            Err(e) => panic!("attempt {attempt}'s begin: {e}"),
                        };
                        match log.finish(&ctx, &op, &serde_json::json!({ "by": attempt })).await {
                            Ok(()) => {}
                            Err(e) if attempt == 1 && e.to_string().contains("taken over") => {}
                            Err(e) => panic!("attempt {attempt}'s finish: {e}"),
                        }
                        (n, began.is_none())
                    }));
                }
            }
            let mut new = vec![0; 32];
            for call in calls {
                let (n, found_new) = call.await.expect("a call");
                if found_new {
                    new[n as usize] += 1;
                }
            }
            assert_eq!(new, vec![1; 32], "{backend:?}: each operation is new to exactly one caller");
            for n in 0..32 {
                let c = ctx(n, 1);
                let op = OperationId::derive(&c.job_id, "apply", "notify");
                let state = db.store.get_operation(&tenant, &op).await.expect("get");
                assert!(
                    matches!(&state, Some(OperationState::Done { result }) if result["by"] == 1 || result["by"] == 2),
                    "{backend:?}: operation {n} is done with one caller's result: {state:?}"
                );
            }
        }
    }
}
