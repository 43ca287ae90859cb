//! The SQL guards agree with the core status machine: random writes go through the store — the
//! batched forms production runs, several jobs (of several kinds) and kinds of write per batch, and
//! the single forms of the writes that are never batched — and through the core rules on a model of
//! each record; both must agree on every outcome and on the records that result, the kind, key and
//! input every write returns included.

use chrono::Utc;
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, Lease, Progress, TenantId, TransitionError};
use longhaul_store::{AttemptFailure, ProgressWrite, Store, Write, WriteOutcome};
use serde_json::{Value, json};

use crate::harness::{conformance, lease, setup_job_of};

/// What a write decides about a record, and what it must keep (timestamps aside: the store takes
/// its own clock).
type Key = (
    (String, Option<String>, Value, Option<chrono::DateTime<Utc>>, longhaul_core::Priority),
    (JobStatus, u32, Option<String>, Progress, Option<Value>, Option<ErrorClass>, Option<Lease>),
);

fn key(r: &JobRecord) -> Key {
    (
        (r.kind.clone(), r.key.clone(), r.input.clone(), r.run_at, r.priority),
        (r.status, r.attempts, r.stage.clone(), r.progress, r.output.clone(), r.error_class, r.lease.clone()),
    )
}

/// The `n`th job of the walk: of one of two kinds, with an input of its own; every third one
/// scheduled (so the walk starts, fails and cancels scheduled jobs too), of one of the priorities.
async fn new_job(store: &Store, n: u32) -> longhaul_core::NewJob {
    let kind = ["model-a", "model-b"][n as usize % 2];
    let job = setup_job_of(store, "model", kind, &format!("T-{n}"), 3).await;
    longhaul_core::NewJob {
        input: json!({ "n": n, "kind": kind, "text": "é\u{1F600}" }),
        run_at: n.is_multiple_of(3).then(|| longhaul_store::now() + chrono::Duration::hours(1)),
        priority: longhaul_core::Priority::ALL[n as usize % 3],
        ..job
    }
}

/// A deterministic pseudo-random source: `next(n)` is in `0..n`.
fn rng() -> impl FnMut(u64) -> u32 {
    let mut seed: u64 = 0x5eed_1234_abcd_9876;
    move |n| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        u32::try_from((seed >> 33) % n).expect("small")
    }
}

/// Checks a write's outcome against what the core rule said of it (`want`), where `model` is the
/// record the refusal must report.
fn agree(outcome: &WriteOutcome, want: &Result<JobRecord, TransitionError>, model: &JobRecord) {
    match (outcome, want) {
        (WriteOutcome::Applied(got), Ok(want)) => assert_eq!(key(got), key(want)),
        (WriteOutcome::Refused { current, reason }, Err(want)) => {
            assert_eq!(reason, want);
            assert_eq!(key(current), key(model));
        }
        (got, want) => panic!("store and core disagree on {model:?}: store {got:?}, core {want:?}"),
    }
}

conformance!(sql_guards_agree_with_core_rules, |store: Store| async move {
    let mut next = rng();
    let mut jobs: Vec<(TenantId, JobId)> = Vec::new();
    let mut models: Vec<JobRecord> = Vec::new();
    let mut created = 0;
    for _ in 0..6 {
        let job = new_job(&store, created).await;
        created += 1;
        jobs.push((job.tenant_id.clone(), job.job_id.clone()));
        models.push(store.create_pending(job).await.expect("create").0);
    }
    let p = Progress::new(40).expect("p");
    let stages: Vec<String> = (0..5).map(|a| format!("stage-{a}")).collect();
    let (mut batches, mut applied_writes, mut from_scheduled) = (0, 0, 0);
    for _ in 0..80 {
        // A finished job makes room for a new one, so the walk keeps visiting live records.
        for j in 0..jobs.len() {
            if models[j].status.is_terminal() && next(3) == 0 {
                let job = new_job(&store, created).await;
                created += 1;
                jobs[j] = (job.tenant_id.clone(), job.job_id.clone());
                models[j] = store.create_pending(job).await.expect("create").0;
            }
        }
        let now = Utc::now();
        if next(4) == 3 {
            // A write that is never batched, on one job.
            let j = next(6) as usize;
            let ((t, id), attempt) = (&jobs[j], next(5));
            let (outcome, want) = if next(2) == 0 {
                (
                    store.fail(t, id, AttemptFailure::new(attempt, ErrorClass::Invalid, "bad")).await,
                    models[j].fail(attempt, ErrorClass::Invalid, "bad", now),
                )
            } else {
                (
                    store
                        .schedule_retry(
                            t,
                            id,
                            AttemptFailure::new(attempt, ErrorClass::Retryable, "slow"),
                            now,
                        )
                        .await,
                    models[j].retry(attempt, ErrorClass::Retryable, "slow", now, now),
                )
            };
            let outcome = outcome.expect("write");
            agree(&outcome, &want, &models[j]);
            from_scheduled += usize::from(models[j].status == JobStatus::Scheduled && want.is_ok());
            if let WriteOutcome::Applied(got) = outcome {
                models[j] = got;
            }
            continue;
        }
        // A batch: each job gets a progress write, a start or completion, both, or nothing.
        let mut progress: Vec<(usize, u32)> = Vec::new();
        let mut writes: Vec<(usize, Write)> = Vec::new();
        for (j, (t, id)) in jobs.iter().enumerate() {
            let what = next(4);
            if what & 1 == 1 {
                progress.push((j, next(5)));
            }
            if what & 2 == 2 {
                let write = if next(2) == 0 {
                    // A delivery of one of two entries, enqueued for some attempt.
                    let l = lease(["1-0", "2-0"][next(2) as usize], next(3) + 1);
                    Write::StartNext { tenant: t.clone(), job: id.clone(), lease: l, entry_attempt: next(5) }
                } else {
                    let attempt = next(5);
                    Write::Complete {
                        tenant: t.clone(),
                        job: id.clone(),
                        attempt,
                        output: json!({"n": attempt}),
                    }
                };
                writes.push((j, write));
            }
        }
        if progress.is_empty() && writes.is_empty() {
            continue;
        }
        // Both backends write a batch's progress first, then its other writes; each job here has at
        // most one of each, so the model applies them in that order.
        let mut expected = models.clone();
        let mut want_progress = Vec::new();
        for &(j, attempt) in &progress {
            let r = expected[j].progress(attempt, &stages[attempt as usize], p, now);
            want_progress.push(r.is_ok());
            if let Ok(r) = r {
                expected[j] = r;
            }
        }
        let mut want_writes = Vec::new();
        for (j, w) in &writes {
            let r = match w {
                Write::StartNext { lease, entry_attempt, .. } => {
                    expected[*j].start_delivery(lease, *entry_attempt, now)
                }
                Write::Complete { attempt, output, .. } => {
                    expected[*j].complete(*attempt, output.clone(), now)
                }
            };
            if let Ok(r) = &r {
                from_scheduled += usize::from(expected[*j].status == JobStatus::Scheduled);
                expected[*j] = r.clone();
            }
            want_writes.push(r);
        }
        let progress_writes: Vec<ProgressWrite<'_>> = progress
            .iter()
            .map(|&(j, attempt)| (&jobs[j].0, &jobs[j].1, attempt, stages[attempt as usize].as_str(), p))
            .collect();
        let batch: Vec<Write> = writes.iter().map(|(_, w)| w.clone()).collect();
        let (applied, outcomes) = store.write_batch(&progress_writes, &batch).await.expect("batch");
        assert_eq!(applied, want_progress, "progress of {progress:?}");
        for (((j, _), outcome), want) in writes.iter().zip(&outcomes).zip(&want_writes) {
            agree(outcome.as_ref().expect("write"), want, &expected[*j]);
        }
        for (j, (t, id)) in jobs.iter().enumerate() {
            let stored = store.get_job(t, id).await.expect("get").expect("present");
            assert_eq!(key(&stored), key(&expected[j]), "job {j} after the batch");
            models[j] = stored;
        }
        batches += 1;
        applied_writes += want_writes.iter().filter(|w| w.is_ok()).count();
    }
    // The walk reached the interesting states: batches wrote, jobs finished, scheduled jobs moved.
    assert!(from_scheduled > 2, "only {from_scheduled} writes moved a scheduled job");
    assert!(batches > 40 && applied_writes > 30, "{batches} batches, {applied_writes} writes applied");
    assert!(created > 12, "only {created} jobs finished and were replaced");
});
