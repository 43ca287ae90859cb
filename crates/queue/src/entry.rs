//! What travels through the streams: [`JobEntry`] (a job to run) and [`Event`] (a lifecycle
//! event), with their field encodings. Decoding validates every field with the core's rules and
//! names the first bad one.
//!
//! Job entry fields: `j` job id, `t` tenant, `n` kind, `a` attempt, `e` enqueue time (ms since
//! the epoch), optionally `p`, the priority's rank digit (`0` high, `2` low; absent: normal, so
//! entries from before priorities existed are normal ones), and optionally `tp`, the W3C
//! `traceparent` of the request. The job's input is not
//! in the entry: the worker reads it from the record its start writes. Entries written before
//! kinds existed carry no `n` (and a ticket in `k`/`r`, now ignored): their kind is `None`, and
//! the record says what it is.

use std::collections::HashMap;
use std::fmt;

use longhaul_core::{JobId, Priority, TenantId};

/// A job as it travels through the jobs stream: what a worker needs to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEntry {
    /// The job.
    pub job_id: JobId,
    /// Its tenant.
    pub tenant_id: TenantId,
    /// The job's kind (`None` in entries enqueued before kinds existed).
    pub kind: Option<String>,
    /// The attempt this entry was enqueued for (1 for a first run, n+1 after a retry of n).
    pub attempt: u32,
    /// When the job was first enqueued, in ms since the Unix epoch (for latency figures).
    pub enqueued_at_ms: u64,
    /// Its priority among the queue's waiting entries (field `p`; absent means normal).
    pub priority: Priority,
    /// The W3C trace context of the request that created the job, if any.
    pub traceparent: Option<String>,
}

/// Why a stream entry could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub String);

impl JobEntry {
    /// The stream fields, as (name, value) pairs.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![("j", self.job_id.to_string()), ("t", self.tenant_id.to_string())];
        if let Some(kind) = &self.kind {
            f.push(("n", kind.clone()));
        }
        f.push(("a", self.attempt.to_string()));
        f.push(("e", self.enqueued_at_ms.to_string()));
        if self.priority != Priority::Normal {
            f.push(("p", self.priority.rank().to_string()));
        }
        if let Some(tp) = &self.traceparent {
            f.push(("tp", tp.clone()));
        }
        f
    }

    /// Decodes stream fields.
    ///
    /// # Errors
    /// [`DecodeError`] naming the missing or invalid field.
    pub fn from_fields(fields: &HashMap<String, Vec<u8>>) -> Result<Self, DecodeError> {
        let text = |name: &str| -> Result<&str, DecodeError> {
            let raw = fields.get(name).ok_or_else(|| DecodeError(format!("field {name:?} is missing")))?;
            std::str::from_utf8(raw).map_err(|_| DecodeError(format!("field {name:?} is not UTF-8")))
        };
        let number = |name: &str| -> Result<u64, DecodeError> {
            let s = text(name)?;
            s.parse().map_err(|_| DecodeError(format!("field {name:?} is not a number: {s:?}")))
        };
        let bad =
            |name: &'static str| move |e: longhaul_core::IdError| DecodeError(format!("field {name:?}: {e}"));
        // Checked in field order, so the message names the first bad field.
        let job_id = JobId::parse(text("j")?).map_err(bad("j"))?;
        let tenant_id = TenantId::parse(text("t")?).map_err(bad("t"))?;
        let kind = match fields.get("n") {
            None => None,
            Some(_) => {
                let kind = text("n")?;
                longhaul_core::kind::validate_kind_name(kind)
                    .map_err(|e| DecodeError(format!("field \"n\": {e}")))?;
                Some(kind.to_owned())
            }
        };
        let attempt = number("a")?;
        let attempt = u32::try_from(attempt)
            .ok()
            .filter(|a| *a >= 1)
            .ok_or_else(|| DecodeError(format!("field \"a\" is not a valid attempt: {attempt}")))?;
        let enqueued_at_ms = number("e")?;
        let priority = match fields.get("p") {
            None => Priority::Normal,
            Some(_) => {
                let rank = text("p")?;
                rank.parse::<u8>().ok().filter(|_| rank.len() == 1).and_then(Priority::from_rank).ok_or_else(
                    || DecodeError(format!("field \"p\" is not a priority rank (0, 1 or 2): {rank:?}")),
                )?
            }
        };
        Ok(Self {
            job_id,
            tenant_id,
            kind,
            attempt,
            enqueued_at_ms,
            priority,
            traceparent: fields.get("tp").map(|v| String::from_utf8_lossy(v).into_owned()),
        })
    }
}

/// The kinds of lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The job completed.
    Completed,
    /// The job failed for good.
    Failed,
    /// An attempt failed and a retry is scheduled.
    Retrying,
    /// The job was delivered too often without finishing, and failed.
    Stalled,
    /// A stage reported progress.
    Progress,
    /// A permission or tenancy violation: an operator must look.
    Alert,
    /// The job was cancelled at a tenant's or an operator's request.
    Cancelled,
}

impl EventKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Retrying => "retrying",
            Self::Stalled => "stalled",
            Self::Progress => "progress",
            Self::Alert => "alert",
            Self::Cancelled => "cancelled",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Completed,
            Self::Failed,
            Self::Retrying,
            Self::Stalled,
            Self::Progress,
            Self::Alert,
            Self::Cancelled,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A lifecycle event on the events stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The job.
    pub job_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// The attempt concerned.
    pub attempt: u32,
    /// When it happened, ms since the epoch.
    pub at_ms: u64,
    /// How long the attempt ran, in ms.
    pub run_ms: Option<u64>,
    /// Enqueue to this event, in ms.
    pub total_ms: Option<u64>,
    /// Why it failed (failed, retrying, stalled, alert).
    pub reason: Option<String>,
    /// The error class (`retryable`, `invalid`, `alert`).
    pub class: Option<String>,
    /// The stage (progress).
    pub stage: Option<String>,
    /// The overall progress (progress).
    pub progress: Option<u8>,
}

impl Event {
    /// An event of `kind` for a job, with the optional fields empty.
    pub fn new(kind: EventKind, job_id: &str, tenant_id: &str, attempt: u32, at_ms: u64) -> Self {
        Self {
            kind,
            job_id: job_id.to_owned(),
            tenant_id: tenant_id.to_owned(),
            attempt,
            at_ms,
            run_ms: None,
            total_ms: None,
            reason: None,
            class: None,
            stage: None,
            progress: None,
        }
    }

    /// The stream fields.
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        let mut f = vec![
            ("type", self.kind.as_str().to_owned()),
            ("job", self.job_id.clone()),
            ("tenant", self.tenant_id.clone()),
            ("attempt", self.attempt.to_string()),
            ("at", self.at_ms.to_string()),
        ];
        let optional = [
            ("run_ms", self.run_ms.map(|v| v.to_string())),
            ("total_ms", self.total_ms.map(|v| v.to_string())),
            ("reason", self.reason.clone()),
            ("class", self.class.clone()),
            ("stage", self.stage.clone()),
            ("progress", self.progress.map(|v| v.to_string())),
        ];
        f.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        f
    }

    /// Decodes stream fields.
    ///
    /// # Errors
    /// [`DecodeError`] naming the missing or invalid field.
    pub fn from_fields(fields: &HashMap<String, Vec<u8>>) -> Result<Self, DecodeError> {
        let text = |name: &str| fields.get(name).map(|v| String::from_utf8_lossy(v).into_owned());
        let required =
            |name: &str| text(name).ok_or_else(|| DecodeError(format!("field {name:?} is missing")));
        let number = |name: &str| -> Result<Option<u64>, DecodeError> {
            text(name)
                .map(|s| s.parse().map_err(|_| DecodeError(format!("field {name:?} is not a number: {s:?}"))))
                .transpose()
        };
        let kind_name = required("type")?;
        let kind = EventKind::parse(&kind_name)
            .ok_or_else(|| DecodeError(format!("unknown event type {kind_name:?}")))?;
        let attempt = number("attempt")?.ok_or_else(|| DecodeError("field \"attempt\" is missing".into()))?;
        Ok(Self {
            kind,
            job_id: required("job")?,
            tenant_id: required("tenant")?,
            attempt: u32::try_from(attempt)
                .map_err(|_| DecodeError(format!("attempt {attempt} out of range")))?,
            at_ms: number("at")?.ok_or_else(|| DecodeError("field \"at\" is missing".into()))?,
            run_ms: number("run_ms")?,
            total_ms: number("total_ms")?,
            reason: text("reason"),
            class: text("class"),
            stage: text("stage"),
            progress: number("progress")?.map(|p| u8::try_from(p.min(100)).unwrap_or(100)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> HashMap<String, Vec<u8>> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec())).collect()
    }

    fn entry() -> JobEntry {
        let tenant = TenantId::parse("acme").expect("tenant");
        let key = longhaul_core::JobKey::Derived("T-1".into());
        JobEntry {
            job_id: JobId::derive(&tenant, "triage", &key),
            tenant_id: tenant,
            kind: Some("triage".into()),
            attempt: 1,
            enqueued_at_ms: 1_700_000_000_000,
            priority: Priority::Low,
            traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        }
    }

    #[test]
    fn job_entry_round_trips() {
        let e = entry();
        let f: HashMap<String, Vec<u8>> =
            e.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v.into_bytes())).collect();
        assert_eq!(JobEntry::from_fields(&f), Ok(e));
    }

    #[test]
    fn job_entry_decode_errors_name_the_field() {
        let good = entry();
        let base: Vec<(&str, String)> = good.to_fields();
        let cases: &[(&str, Option<&str>, &str)] = &[
            ("j", None, "field \"j\" is missing"),
            ("j", Some("job_xyz"), "field \"j\": \"job_xyz\" is not a job id"),
            ("t", Some("a b"), "field \"t\": tenant id contains ' '"),
            ("n", Some("no kind"), "field \"n\": kind contains ' '"),
            ("e", Some("two"), "field \"e\" is not a number: \"two\""),
            ("a", Some("0"), "field \"a\" is not a valid attempt: 0"),
            ("a", Some("99999999999"), "not a valid attempt"),
            ("e", None, "field \"e\" is missing"),
            ("p", Some("3"), "field \"p\" is not a priority rank (0, 1 or 2): \"3\""),
            ("p", Some("high"), "field \"p\" is not a priority rank"),
            ("p", Some("+1"), "field \"p\" is not a priority rank"),
            ("p", Some(""), "field \"p\" is not a priority rank"),
        ];
        for (field, value, want) in cases {
            let mut pairs: Vec<(&str, &str)> =
                base.iter().filter(|(k, _)| k != field).map(|(k, v)| (*k, v.as_str())).collect();
            if let Some(v) = value {
                pairs.push((field, v));
            }
            let err = JobEntry::from_fields(&fields(&pairs)).expect_err("must fail");
            assert!(err.0.contains(want), "{field}: {err} lacks {want}");
        }
        let mut binary: HashMap<String, Vec<u8>> =
            base.iter().map(|(k, v)| ((*k).to_owned(), v.clone().into_bytes())).collect();
        binary.insert("j".into(), vec![0xff, 0xfe]);
        assert!(JobEntry::from_fields(&binary).expect_err("binary").0.contains("not UTF-8"));
    }

    #[test]
    fn priority_travels_as_a_rank_digit_and_normal_as_no_field() {
        for (priority, field) in
            [(Priority::High, Some("0")), (Priority::Normal, None), (Priority::Low, Some("2"))]
        {
            let e = JobEntry { priority, ..entry() };
            let fields = e.to_fields();
            let p = fields.iter().find(|(k, _)| *k == "p").map(|(_, v)| v.as_str());
            assert_eq!(p, field, "{priority}");
            let f: HashMap<String, Vec<u8>> =
                fields.into_iter().map(|(k, v)| (k.to_owned(), v.into_bytes())).collect();
            assert_eq!(JobEntry::from_fields(&f), Ok(e));
        }
    }

    #[test]
    fn an_entry_from_before_kinds_decodes_without_one() {
        let legacy = fields(&[
            ("j", "job_db718bad4249ee9f433bba3033392195"),
            ("t", "acme"),
            ("k", "SUP-1"),
            ("r", "1"),
            ("a", "1"),
            ("e", "1700000000000"),
        ]);
        let entry = JobEntry::from_fields(&legacy).expect("decodes");
        assert_eq!(entry.kind, None);
        assert_eq!(entry.priority, Priority::Normal, "no `p`: a normal entry");
        assert_eq!(entry.job_id.as_str(), "job_db718bad4249ee9f433bba3033392195");
    }

    #[test]
    fn event_round_trips_and_validates() {
        let mut e = Event::new(EventKind::Failed, "job_1", "acme", 3, 42);
        e.reason = Some("provider returned 400".into());
        e.class = Some("invalid".into());
        e.run_ms = Some(17);
        let f: HashMap<String, Vec<u8>> =
            e.to_fields().into_iter().map(|(k, v)| (k.to_owned(), v.into_bytes())).collect();
        assert_eq!(Event::from_fields(&f), Ok(e));
        let bad =
            fields(&[("type", "exploded"), ("job", "j"), ("tenant", "t"), ("attempt", "1"), ("at", "1")]);
        assert_eq!(Event::from_fields(&bad), Err(DecodeError("unknown event type \"exploded\"".into())));
    }
}
