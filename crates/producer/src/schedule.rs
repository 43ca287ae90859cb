//! A submission's schedule — when the job may start (`run_at`) and its priority — as the API's
//! body and the CLI's flags give it, checked alike for both: `run_at` is an RFC 3339 time at most
//! [`MAX_SCHEDULE_DAYS`] ahead (now or in the past: the job runs at once), `priority` one of
//! `high`, `normal` (the default) or `low`.

use chrono::{DateTime, SubsecRound as _, Utc};
use longhaul_core::Priority;
use serde_json::Value;

use crate::error::FieldError;

/// How far ahead a job may be scheduled, in days.
pub const MAX_SCHEDULE_DAYS: i64 = 366;

/// When a job may start and where it stands among its queue's waiting jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Schedule {
    /// When the job may start (`None`: at once). Kept at millisecond precision, the queue's.
    pub run_at: Option<DateTime<Utc>>,
    /// Its priority.
    pub priority: Priority,
}

impl Schedule {
    /// The schedule of a submission body's `run_at` and `priority` fields (absent or `null`: the
    /// defaults), judged at `now`.
    ///
    /// # Errors
    /// One [`FieldError`] per bad field, named `run_at` or `priority`.
    pub fn from_body(
        run_at: Option<&Value>,
        priority: Option<&Value>,
        now: DateTime<Utc>,
    ) -> Result<Self, Vec<FieldError>> {
        let mut errors = Vec::new();
        let run_at = match run_at {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => {
                parse_run_at(text, now).map_err(|e| errors.push(FieldError::new("run_at", e))).ok()
            }
            Some(other) => {
                errors.push(FieldError::new(
                    "run_at",
                    format!("must be an RFC 3339 time as a string, got {other}"),
                ));
                None
            }
        };
        let priority = match priority {
            None | Some(Value::Null) => Priority::Normal,
            Some(Value::String(text)) => Priority::parse(text)
                .map_err(|e| errors.push(FieldError::new("priority", e)))
                .unwrap_or_default(),
            Some(other) => {
                errors.push(FieldError::new(
                    "priority",
                    format!("must be one of high, normal or low as a string, got {other}"),
                ));
                Priority::Normal
            }
        };
        if errors.is_empty() { Ok(Self { run_at, priority }) } else { Err(errors) }
    }
}

/// Parses `text` as a `run_at` judged at `now`: an RFC 3339 time (any offset), at most
/// [`MAX_SCHEDULE_DAYS`] after `now`, truncated to milliseconds.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_run_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("{text:?} is not an RFC 3339 time (e.g. 2030-01-31T09:30:00Z): {e}"))?
        .with_timezone(&Utc)
        .trunc_subsecs(3);
    let latest = now + chrono::Duration::days(MAX_SCHEDULE_DAYS);
    if at > latest {
        return Err(format!(
            "must be at most {MAX_SCHEDULE_DAYS} days ahead (until {}), got {}",
            latest.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone as _;
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().expect("time")
    }

    fn fields(errors: &[FieldError]) -> Vec<&str> {
        errors.iter().map(|e| e.field.as_str()).collect()
    }

    #[test]
    fn absent_or_null_fields_are_the_defaults() {
        assert_eq!(Schedule::from_body(None, None, now()), Ok(Schedule::default()));
        let null = json!(null);
        assert_eq!(Schedule::from_body(Some(&null), Some(&null), now()), Ok(Schedule::default()));
    }

    #[test]
    fn run_at_in_any_offset_up_to_366_days_ahead() {
        let at = json!("2026-03-02T14:00:00.123456+02:00");
        let s = Schedule::from_body(Some(&at), Some(&json!("high")), now()).expect("valid");
        let want = Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).single().expect("t")
            + chrono::Duration::milliseconds(123);
        assert_eq!(s, Schedule { run_at: Some(want), priority: Priority::High });
        // The past and now are accepted (the job runs at once).
        for past in ["2020-01-01T00:00:00Z", "2026-03-01T12:00:00Z"] {
            assert!(Schedule::from_body(Some(&json!(past)), None, now()).is_ok(), "{past}");
        }
        let edge = now() + chrono::Duration::days(366);
        assert_eq!(parse_run_at(&edge.to_rfc3339(), now()), Ok(edge));
        let over = (edge + chrono::Duration::seconds(1)).to_rfc3339();
        let e = parse_run_at(&over, now()).expect_err("too far");
        assert!(e.contains("at most 366 days ahead"), "{e}");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (json!("tomorrow"), json!("normal"), vec!["run_at"]),
            (json!("2026-03-02"), json!("normal"), vec!["run_at"]),
            (json!(1_772_400_000), json!("normal"), vec!["run_at"]),
            (json!("2030-01-01T00:00:00Z"), json!("normal"), vec!["run_at"]),
            (json!(null), json!("urgent"), vec!["priority"]),
            (json!(null), json!("HIGH"), vec!["priority"]),
            (json!(null), json!(0), vec!["priority"]),
            (json!("soon"), json!(["high"]), vec!["run_at", "priority"]),
        ];
        for (run_at, priority, want) in cases {
            let errors = Schedule::from_body(Some(&run_at), Some(&priority), now()).expect_err("invalid");
            assert_eq!(fields(&errors), want, "{run_at} {priority}: {errors:?}");
        }
        let e = Schedule::from_body(None, Some(&json!("urgent")), now()).expect_err("invalid");
        assert!(e[0].message.contains("expected high, normal or low"), "{e:?}");
    }
}
