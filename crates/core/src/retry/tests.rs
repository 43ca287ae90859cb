//! Unit tests of [`super`].
use chrono::TimeZone;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn every_case_maps_to_the_guides_class() {
    use FailureCase::*;
    let table = [
        (ProviderTimeout, ErrorClass::Retryable),
        (ProviderUnreachable, ErrorClass::Retryable),
        (ProviderRateLimited, ErrorClass::Retryable),
        (ProviderUnavailable, ErrorClass::Retryable),
        (TemporaryInfrastructure, ErrorClass::Retryable),
        (StagePanicked, ErrorClass::Retryable),
        (InvalidJobData, ErrorClass::Invalid),
        (ProviderRejected, ErrorClass::Invalid),
        (PermissionDenied, ErrorClass::Alert),
    ];
    for (case, class) in table {
        assert_eq!(case.class(), class, "{case:?}");
    }
}

#[test]
fn messages_never_carry_nul() {
    let e = JobError::new(FailureCase::ProviderRejected, "unknown variant `a\0b`\0");
    assert_eq!(e.message, "unknown variant `a\\0b`\\0");
    assert_eq!(JobError::new(FailureCase::ProviderRejected, "plain").message, "plain");
}

#[test]
fn error_class_names_round_trip() {
    for class in [ErrorClass::Retryable, ErrorClass::Invalid, ErrorClass::Alert] {
        assert_eq!(ErrorClass::parse(class.as_str()), Ok(class));
    }
    assert_eq!(ErrorClass::parse("oops"), Err("unknown error class \"oops\"".to_string()));
}

#[test]
fn policy_validation() {
    assert_eq!(RetryPolicy::new(0, secs(1), secs(2)), Err(PolicyError::NoAttempts));
    assert_eq!(RetryPolicy::new(1, Duration::ZERO, secs(2)), Err(PolicyError::ZeroBase));
    assert_eq!(
        RetryPolicy::new(1, secs(3), secs(2)),
        Err(PolicyError::CapBelowBase { base: secs(3), cap: secs(2) })
    );
    assert!(RetryPolicy::new(1, secs(2), secs(2)).is_ok());
}

#[test]
fn backoff_table() {
    let p = RetryPolicy::new(10, Duration::from_millis(500), secs(10)).expect("policy");
    // (attempt, unit, expected delay ms)
    let table = [
        (1, 0.0, 0),
        (1, 0.999_999, 499),
        (1, 1.0, 500),
        (2, 0.5, 500),
        (3, 0.5, 1_000),
        (5, 1.0, 8_000),
        (6, 1.0, 10_000), // capped: 16 s > 10 s
        (60, 1.0, 10_000),
        (u32::MAX, 0.25, 2_500),
        (2, -3.0, 0), // clamped
        (2, 7.0, 1_000),
        (2, f64::NAN, 0),
    ];
    for (attempt, unit, ms) in table {
        assert_eq!(p.delay(attempt, unit), Duration::from_millis(ms), "attempt {attempt} unit {unit}");
    }
}

#[test]
fn decision_table() {
    let p = RetryPolicy::new(3, secs(2), secs(60)).expect("policy");
    let now = Utc.with_ymd_and_hms(2026, 11, 28, 12, 0, 0).single().expect("time");
    let at = |s: i64| Decision::Retry { at: now + chrono::Duration::seconds(s) };
    let fail = |class, exhausted| Decision::Fail { class, alert: class == ErrorClass::Alert, exhausted };
    let err = |case| JobError::new(case, "boom");
    use FailureCase::*;
    let table = [
        (err(ProviderTimeout), 1, 1.0, at(2)),
        (err(ProviderTimeout), 2, 1.0, at(4)),
        (err(ProviderTimeout), 3, 1.0, fail(ErrorClass::Retryable, true)),
        (err(TemporaryInfrastructure), 2, 0.5, at(2)),
        // Retry-After is a floor on the jittered delay.
        (err(ProviderRateLimited).with_retry_after(secs(30)), 1, 0.0, at(30)),
        (err(ProviderRateLimited).with_retry_after(secs(1)), 2, 1.0, at(4)),
        // A panic is retried once, then fails.
        (err(StagePanicked), 1, 1.0, at(2)),
        (err(StagePanicked), 2, 1.0, fail(ErrorClass::Retryable, true)),
        // Invalid and alert fail at once, whatever attempts remain.
        (err(InvalidJobData), 1, 1.0, fail(ErrorClass::Invalid, false)),
        (err(ProviderRejected), 1, 1.0, fail(ErrorClass::Invalid, false)),
        (err(PermissionDenied), 1, 1.0, fail(ErrorClass::Alert, false)),
    ];
    for (error, attempt, unit, want) in table {
        assert_eq!(p.decide(&error, attempt, now, unit), want, "{:?} attempt {attempt}", error.case);
    }
}

#[test]
fn single_attempt_policy_never_retries() {
    let p = RetryPolicy::new(1, secs(1), secs(1)).expect("policy");
    let now = Utc::now();
    let d = p.decide(&JobError::new(FailureCase::ProviderTimeout, "t"), 1, now, 0.3);
    assert!(matches!(d, Decision::Fail { exhausted: true, .. }));
}
