//! The job record's columns as read from either backend, and their decoding into a
//! [`JobRecord`] — written once for every statement that returns records.

use chrono::{DateTime, Utc};
use longhaul_core::{ErrorClass, JobId, JobRecord, JobStatus, Lease, Priority, Progress, TenantId};
use serde_json::Value;
use sqlx::types::Json;

use crate::StoreError;

/// The record's columns, as every statement returning records lists them.
#[derive(sqlx::FromRow)]
pub(super) struct JobRow {
    pub(super) job_id: String,
    tenant_id: String,
    kind: String,
    job_key: Option<String>,
    input: Json<Value>,
    status: String,
    stage: Option<String>,
    progress: i32,
    pub(super) attempts: i32,
    max_attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    output: Option<Json<Value>>,
    error_message: Option<String>,
    error_class: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    lease_entry: Option<String>,
    lease_delivery: Option<i32>,
    cancel_requested_at: Option<DateTime<Utc>>,
    run_at: Option<DateTime<Utc>>,
    priority: String,
}

/// A record with its position in creation order (`seq`), for pagination.
#[derive(sqlx::FromRow)]
pub(super) struct PagedJobRow {
    pub(super) seq: i64,
    #[sqlx(flatten)]
    pub(super) job: JobRow,
}

/// A filter by status as the list statements take it: the value of the column `phase` (migration
/// 0009) for the status, and the status itself where the phase does not say it — `("live",
/// status)` for a live status, `(status, None)` for a terminal one, whose phase is the status (the
/// column's definition in the migrations says the same). The indexes of jobs name phase instead of
/// status, so that a write between live statuses (a start, a cancel request) is a HOT update on
/// PostgreSQL: a statement finds a status's jobs through the index of its phase. A terminal status
/// is filtered by its phase alone: PostgreSQL takes the two conditions as independent and would
/// expect too few rows, then read and sort every match instead of walking down to the first page.
pub(super) fn status_filter(status: Option<JobStatus>) -> (Option<&'static str>, Option<&'static str>) {
    match status {
        None => (None, None),
        Some(s @ (JobStatus::Scheduled | JobStatus::Queued | JobStatus::Running)) => {
            (Some("live"), Some(s.as_str()))
        }
        Some(s @ (JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled)) => {
            (Some(s.as_str()), None)
        }
    }
}

pub(super) fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { table: "jobs", detail: detail.to_string() }
}

fn to_u32(field: &str, v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(format!("{field} = {v} is out of range")))
}

/// A count as the database stores it (`integer`); counts beyond it saturate, so a guard comparing
/// them refuses.
pub(super) fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl TryFrom<JobRow> for JobRecord {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let percent = u8::try_from(r.progress).map_err(|_| corrupt(format!("progress = {}", r.progress)))?;
        Ok(JobRecord {
            job_id: JobId::parse(r.job_id).map_err(corrupt)?,
            tenant_id: TenantId::parse(r.tenant_id).map_err(corrupt)?,
            kind: r.kind,
            key: r.job_key,
            input: r.input.0,
            status: JobStatus::parse(&r.status).map_err(corrupt)?,
            stage: r.stage,
            progress: Progress::new(percent).map_err(corrupt)?,
            attempts: to_u32("attempts", r.attempts.into())?,
            max_attempts: to_u32("max_attempts", r.max_attempts.into())?,
            next_attempt_at: r.next_attempt_at,
            output: r.output.map(|j| j.0),
            error_message: r.error_message,
            error_class: r.error_class.as_deref().map(ErrorClass::parse).transpose().map_err(corrupt)?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
            cancel_requested_at: r.cancel_requested_at,
            run_at: r.run_at,
            priority: Priority::parse(&r.priority).map_err(corrupt)?,
            lease: match (r.lease_entry, r.lease_delivery) {
                (Some(entry), Some(delivery)) => {
                    Some(Lease { entry, delivery: to_u32("lease_delivery", delivery.into())? })
                }
                _ => None,
            },
        })
    }
}
