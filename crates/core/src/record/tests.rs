//! Unit tests of [`super`].
use chrono::TimeZone;
use serde_json::json;

use super::*;

fn t(s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, s).single().expect("time")
}

fn record(status: JobStatus, attempts: u32) -> JobRecord {
    let tenant = TenantId::parse("acme").expect("tenant");
    let key = crate::kind::JobKey::Derived("T-1@1".into());
    let job = NewJob {
        job_id: JobId::derive(&tenant, "triage", &key),
        tenant_id: tenant,
        kind: "triage".into(),
        key: key.as_str().to_owned(),
        input: json!({"ticket_id": "T-1", "revision": 1}),
        max_attempts: 3,
        run_at: None,
        priority: Priority::Normal,
    };
    JobRecord { status, attempts, ..JobRecord::pending(job, t(0)) }
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Start,
    Progress,
    Complete,
    Fail,
    Retry,
    Cancel,
    EndCancelled,
}

fn apply(r: &JobRecord, op: Op, attempt: u32) -> Result<JobRecord, TransitionError> {
    match op {
        Op::Start => r.start(attempt, t(1)),
        Op::Progress => r.progress(attempt, "classify", Progress::new(50).expect("p"), t(1)),
        Op::Complete => r.complete(attempt, json!({"ok": true}), t(1)),
        Op::Fail => r.fail(attempt, ErrorClass::Invalid, "bad", t(1)),
        Op::Retry => r.retry(attempt, ErrorClass::Retryable, "slow", t(9), t(1)),
        Op::Cancel => r.cancel(t(1)),
        Op::EndCancelled => r.cancelled(attempt, t(1)),
    }
}

#[test]
fn transition_table() {
    use JobStatus::*;
    use Op::*;
    // (status, attempts, op, attempt, Ok(new status) | Err(kind))
    type Row = (JobStatus, u32, Op, u32, Result<JobStatus, &'static str>);
    let table: &[Row] = &[
        (Scheduled, 0, Start, 1, Ok(Running)), // its run_at came: the queue released it
        (Scheduled, 0, Start, 2, Err("stale")),
        (Scheduled, 0, Progress, 1, Err("stale")),
        (Scheduled, 0, Complete, 1, Err("stale")),
        (Scheduled, 0, Fail, 1, Ok(Failed)), // invalid before running
        (Scheduled, 0, Retry, 1, Err("stale")),
        (Scheduled, 0, Cancel, 0, Ok(Cancelled)), // at once, like a queued job
        (Scheduled, 0, EndCancelled, 1, Err("stale")),
        (Queued, 0, Start, 1, Ok(Running)),
        (Queued, 0, Start, 2, Err("stale")),
        (Queued, 1, Start, 1, Err("stale")), // duplicate delivery of attempt 1
        (Queued, 1, Start, 2, Ok(Running)),  // after a scheduled retry
        (Running, 1, Start, 2, Ok(Running)), // takeover of a stalled attempt
        (Running, 1, Start, 1, Err("stale")),
        (Running, 3, Start, 4, Err("exhausted")),
        (Completed, 1, Start, 2, Err("terminal")),
        (Failed, 1, Start, 2, Err("terminal")),
        (Running, 1, Progress, 1, Ok(Running)),
        (Running, 2, Progress, 1, Err("stale")),
        (Queued, 1, Progress, 1, Err("stale")),
        (Running, 1, Complete, 1, Ok(Completed)),
        (Running, 2, Complete, 1, Err("stale")), // the stalled worker comes back late
        (Queued, 0, Complete, 1, Err("stale")),
        (Completed, 1, Complete, 1, Err("terminal")),
        (Failed, 1, Complete, 1, Err("terminal")),
        (Running, 1, Fail, 1, Ok(Failed)),
        (Queued, 0, Fail, 1, Ok(Failed)),  // invalid before running
        (Running, 3, Fail, 4, Ok(Failed)), // stalled too often
        (Running, 2, Fail, 1, Err("stale")),
        (Completed, 1, Fail, 1, Err("terminal")),
        (Running, 1, Retry, 1, Ok(Queued)),
        (Running, 3, Retry, 3, Err("no attempts left")),
        (Running, 2, Retry, 1, Err("stale")),
        (Queued, 1, Retry, 1, Err("stale")),
        (Failed, 1, Retry, 1, Err("terminal")),
        (Queued, 0, Cancel, 0, Ok(Cancelled)),
        (Queued, 1, Cancel, 0, Ok(Cancelled)), // a retry waiting
        (Running, 1, Cancel, 0, Ok(Running)),  // requested: its worker ends it
        (Completed, 1, Cancel, 0, Err("terminal")),
        (Failed, 1, Cancel, 0, Err("terminal")),
        (Cancelled, 0, Cancel, 0, Err("terminal")),
        (Cancelled, 0, Start, 1, Err("terminal")), // a cancelled job never starts
        (Running, 1, EndCancelled, 1, Ok(Cancelled)),
        (Running, 2, EndCancelled, 1, Err("stale")),
        (Queued, 0, EndCancelled, 1, Err("stale")),
        (Completed, 1, EndCancelled, 1, Err("terminal")),
    ];
    for (status, attempts, op, attempt, want) in table {
        let before = record(*status, *attempts);
        let got = apply(&before, *op, *attempt);
        match (want, &got) {
            (Ok(s), Ok(after)) => assert_eq!(after.status, *s, "{status} {attempts} {op:?}({attempt})"),
            (Err(kind), Err(e)) => {
                let kind_of = match e {
                    TransitionError::Terminal { .. } => "terminal",
                    TransitionError::StaleAttempt { .. } => "stale",
                    TransitionError::AttemptsExhausted { .. } => "exhausted",
                    TransitionError::NoAttemptsLeft { .. } => "no attempts left",
                    TransitionError::Superseded { .. } => "superseded",
                    TransitionError::CancelRequested => "cancel requested",
                    TransitionError::NotRetryable { .. } => "not retryable",
                };
                assert_eq!(kind_of, *kind, "{status} {attempts} {op:?}({attempt}): {e}");
            }
            _ => panic!("{status} {attempts} {op:?}({attempt}): want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn a_start_by_delivery_is_fenced_by_the_delivery() {
    let lease = |entry: &str, delivery| Lease { entry: entry.to_owned(), delivery };
    let kind = |r: Result<JobRecord, TransitionError>| match r {
        Ok(r) => format!("started {}", r.attempts),
        Err(TransitionError::Superseded { .. }) => "superseded".to_owned(),
        Err(TransitionError::AttemptsExhausted { .. }) => "exhausted".to_owned(),
        Err(TransitionError::Terminal { .. }) => "terminal".to_owned(),
        Err(e) => format!("{e}"),
    };
    let queued = record(JobStatus::Queued, 0);
    let first = queued.start_delivery(&lease("1-0", 1), 1, t(1)).expect("first");
    assert_eq!((first.attempts, first.lease.clone()), (1, Some(lease("1-0", 1))));
    // A later delivery of the same entry takes over; the same or an earlier one never does.
    assert_eq!(kind(first.start_delivery(&lease("1-0", 2), 1, t(2))), "started 2");
    assert_eq!(kind(first.start_delivery(&lease("1-0", 1), 1, t(2))), "superseded");
    // Another entry only when enqueued for an attempt not started yet.
    assert_eq!(kind(first.start_delivery(&lease("2-0", 1), 1, t(2))), "superseded");
    assert_eq!(kind(first.start_delivery(&lease("2-0", 1), 2, t(2))), "started 2");
    // A retry waiting: the entry that ran the failed attempt cannot start again, whatever its
    // delivery count; the retry's entry can.
    let waiting = first.retry(1, ErrorClass::Retryable, "slow", t(9), t(3)).expect("retry");
    assert_eq!(waiting.lease, Some(lease("1-0", 1)), "kept: it names the entry that ran");
    assert_eq!(kind(waiting.start_delivery(&lease("1-0", 5), 1, t(4))), "superseded");
    assert_eq!(kind(waiting.start_delivery(&lease("3-0", 1), 2, t(4))), "started 2");
    // Started without a delivery (by hand, or before deliveries were recorded): any delivery.
    let legacy = queued.start(1, t(1)).expect("start");
    assert_eq!(legacy.lease, None);
    assert_eq!(kind(legacy.start_delivery(&lease("1-0", 1), 1, t(2))), "started 2");
    // Out of attempts, and finished.
    let last = record(JobStatus::Running, 3);
    assert_eq!(kind(last.start_delivery(&lease("1-0", 1), 4, t(2))), "exhausted");
    assert_eq!(kind(record(JobStatus::Completed, 1).start_delivery(&lease("1-0", 9), 9, t(2))), "terminal");
}

#[test]
fn transitions_set_the_fields_users_see() {
    let r = record(JobStatus::Queued, 0).start(1, t(1)).expect("start");
    assert_eq!((r.attempts, r.started_at, r.updated_at), (1, Some(t(1)), t(1)));
    let p = r.progress(1, "load", Progress::new(33).expect("p"), t(2)).expect("progress");
    assert_eq!((p.stage.as_deref(), p.progress.percent()), (Some("load"), 33));

    let q = p.retry(1, ErrorClass::Retryable, "provider timeout", t(30), t(3)).expect("retry");
    assert_eq!(q.status, JobStatus::Queued);
    assert_eq!(q.next_attempt_at, Some(t(30)));
    assert_eq!(q.error_message.as_deref(), Some("provider timeout"));
    assert_eq!((q.progress, q.stage.clone()), (Progress::ZERO, None));

    let r2 = q.start(2, t(31)).expect("second attempt");
    assert_eq!(r2.next_attempt_at, None);
    let done = r2.complete(2, json!({"category": "billing"}), t(32)).expect("complete");
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.progress, Progress::DONE);
    assert_eq!(done.output, Some(json!({"category": "billing"})));
    assert_eq!((done.error_message.clone(), done.error_class), (None, None));
    assert_eq!(done.finished_at, Some(t(32)));

    let failed = r2.fail(2, ErrorClass::Alert, "tenant mismatch", t(33)).expect("fail");
    assert_eq!(failed.error_class, Some(ErrorClass::Alert));
    assert_eq!(failed.finished_at, Some(t(33)));
}

#[test]
fn refused_transitions_explain_themselves() {
    let done = record(JobStatus::Completed, 1);
    let e = done.start(2, t(1)).expect_err("terminal");
    assert_eq!(e.to_string(), "job is already completed; terminal statuses are final");
    let e = record(JobStatus::Running, 2).complete(1, json!(null), t(1)).expect_err("stale");
    assert_eq!(e.to_string(), "attempt 1 is stale: the job is running with 2 attempt(s) started");
}

#[test]
fn status_and_progress_parsing() {
    for s in JobStatus::ALL {
        assert_eq!(JobStatus::parse(s.as_str()), Ok(s));
    }
    assert!(JobStatus::parse("done").expect_err("bad").contains("expected scheduled, queued"));
    assert_eq!(JobStatus::parse("scheduled"), Ok(JobStatus::Scheduled));
    assert!(!JobStatus::Scheduled.is_terminal());
    assert!(Progress::new(100).is_ok());
    assert_eq!(Progress::new(101), Err("progress must be between 0 and 100, got 101".into()));
    assert!(serde_json::from_str::<Progress>("150").is_err());
}

#[test]
fn a_cancel_request_on_a_running_job_is_kept_and_stops_retries() {
    let running = record(JobStatus::Running, 1);
    let requested = running.cancel(t(2)).expect("requested");
    assert_eq!((requested.status, requested.cancel_requested_at), (JobStatus::Running, Some(t(2))));
    // A second request keeps the first time.
    assert_eq!(requested.cancel(t(5)).expect("again").cancel_requested_at, Some(t(2)));
    // The attempt may still complete (it finished before it noticed), but not be retried.
    assert!(requested.complete(1, json!({}), t(3)).is_ok());
    assert_eq!(
        requested.retry(1, ErrorClass::Retryable, "slow", t(9), t(3)),
        Err(TransitionError::CancelRequested)
    );
    let done = requested.cancelled(1, t(4)).expect("cancelled");
    assert_eq!((done.status, done.finished_at), (JobStatus::Cancelled, Some(t(4))));
    assert!(JobStatus::Cancelled.is_terminal());
    assert_eq!(JobStatus::parse("cancelled"), Ok(JobStatus::Cancelled));
}

#[test]
fn a_failed_or_cancelled_job_is_requeued_with_a_fresh_budget() {
    let failed = JobRecord {
        error_class: Some(ErrorClass::Retryable),
        error_message: Some("gave up".into()),
        finished_at: Some(t(3)),
        ..record(JobStatus::Failed, 3)
    };
    let again = failed.requeue(3, t(4)).expect("requeued");
    assert_eq!((again.status, again.attempts, again.max_attempts), (JobStatus::Queued, 3, 6));
    assert_eq!((again.error_class, again.error_message.as_deref(), again.finished_at), (None, None, None));
    // The next attempt is the 4th: an entry enqueued for it starts it.
    let lease = Lease { entry: "9-0".into(), delivery: 1 };
    assert_eq!(again.start_delivery(&lease, 4, t(5)).expect("start").attempts, 4);
    let cancelled = record(JobStatus::Running, 1).cancelled(1, t(2)).expect("cancelled");
    assert_eq!(cancelled.requeue(2, t(3)).expect("requeued").max_attempts, 3);
    for status in [JobStatus::Queued, JobStatus::Running, JobStatus::Completed] {
        assert_eq!(record(status, 1).requeue(3, t(3)), Err(TransitionError::NotRetryable { status }));
    }
}

#[test]
fn priorities_round_trip_by_name_and_rank() {
    for p in Priority::ALL {
        assert_eq!(Priority::parse(p.as_str()), Ok(p));
        assert_eq!(Priority::from_rank(p.rank()), Some(p));
        assert_eq!(serde_json::to_value(p).expect("json"), serde_json::json!(p.as_str()));
    }
    assert_eq!(Priority::from_rank(3), None);
    assert!(Priority::parse("urgent").expect_err("unknown").contains("high, normal or low"));
    assert_eq!(Priority::default(), Priority::Normal);
}

fn new_job(run_at: Option<DateTime<Utc>>, priority: Priority) -> NewJob {
    let tenant = TenantId::parse("acme").expect("tenant");
    let key = crate::kind::JobKey::Derived("T-1@1".into());
    NewJob {
        job_id: JobId::derive(&tenant, "triage", &key),
        tenant_id: tenant,
        kind: "triage".into(),
        key: key.as_str().to_owned(),
        input: json!({"ticket_id": "T-1", "revision": 1}),
        max_attempts: 3,
        run_at,
        priority,
    }
}

#[test]
fn a_job_with_a_future_run_at_is_recorded_scheduled() {
    let later = JobRecord::pending(new_job(Some(t(30)), Priority::High), t(0));
    assert_eq!(
        (later.status, later.run_at, later.priority),
        (JobStatus::Scheduled, Some(t(30)), Priority::High)
    );
    // Now or in the past: it runs at once; the time asked for is kept.
    for at in [t(0), t(0) - chrono::Duration::days(1)] {
        let now = JobRecord::pending(new_job(Some(at), Priority::Low), t(0));
        assert_eq!((now.status, now.run_at, now.priority), (JobStatus::Queued, Some(at), Priority::Low));
    }
    let plain = JobRecord::pending(new_job(None, Priority::Normal), t(0));
    assert_eq!((plain.status, plain.run_at), (JobStatus::Queued, None));
}

#[test]
fn a_scheduled_job_starts_or_is_cancelled_like_a_queued_one() {
    let scheduled = JobRecord::pending(new_job(Some(t(30)), Priority::Normal), t(0));
    let lease = Lease { entry: "1-0".into(), delivery: 1 };
    let started = scheduled.start_delivery(&lease, 1, t(31)).expect("start");
    assert_eq!((started.status, started.attempts, started.run_at), (JobStatus::Running, 1, Some(t(30))));
    // An entry for an attempt already started never starts it again.
    let again = started.start_delivery(&Lease { entry: "2-0".into(), delivery: 1 }, 1, t(32));
    assert!(matches!(again, Err(TransitionError::Superseded { .. })), "{again:?}");
    let cancelled = scheduled.cancel(t(5)).expect("cancel");
    assert_eq!((cancelled.status, cancelled.finished_at), (JobStatus::Cancelled, Some(t(5))));
    assert_eq!(cancelled.cancel_requested_at, None, "ended at once, not requested");
    assert!(matches!(cancelled.start(1, t(31)), Err(TransitionError::Terminal { .. })));
}

#[test]
fn nothing_moves_a_job_back_to_scheduled() {
    let ops = [Op::Start, Op::Progress, Op::Complete, Op::Fail, Op::Retry, Op::Cancel, Op::EndCancelled];
    for status in JobStatus::ALL.into_iter().filter(|s| *s != JobStatus::Scheduled) {
        for attempts in 0..=3 {
            for op in ops {
                for attempt in 0..=4 {
                    if let Ok(after) = apply(&record(status, attempts), op, attempt) {
                        assert_ne!(
                            after.status,
                            JobStatus::Scheduled,
                            "{status} {attempts} {op:?}({attempt})"
                        );
                    }
                }
            }
        }
        let requeued = record(status, 1).requeue(3, t(3));
        assert!(requeued.is_err() || requeued.is_ok_and(|r| r.status == JobStatus::Queued), "{status}");
    }
}

#[test]
fn run_at_and_priority_in_json() {
    let scheduled = JobRecord::pending(new_job(Some(t(30)), Priority::High), t(0));
    let v = serde_json::to_value(&scheduled).expect("json");
    assert_eq!((v["status"].clone(), v["priority"].clone()), (json!("scheduled"), json!("high")));
    assert_eq!(v["run_at"], json!(t(30)));
    let plain = serde_json::to_value(record(JobStatus::Queued, 0)).expect("json");
    assert_eq!(plain["priority"], json!("normal"), "always present");
    assert!(plain.get("run_at").is_none(), "left out when not set: {plain}");
    // A record serialized before these fields existed reads as normal and unscheduled.
    let mut old = plain.clone();
    old.as_object_mut().expect("object").remove("priority");
    let back: JobRecord = serde_json::from_value(old).expect("decodes");
    assert_eq!((back.priority, back.run_at), (Priority::Normal, None));
}
