//! `longhaul-core`: the rules of longhaul, with no I/O.
//!
//! - [`ids`] — validated tenant and ticket ids, idempotency keys, stable job ids and operation ids.
//! - [`record`] — the user-facing [`JobRecord`] and its status machine ([`JobStatus`]), whose
//!   transitions are pure functions fenced by attempt number.
//! - [`retry`] — the guide's retry table as [`FailureCase`] → [`ErrorClass`], and the
//!   [`RetryPolicy`] (exponential backoff, full jitter, cap, attempt limit).
//! - [`pipeline`] — the [`Pipeline`], [`PipelineObserver`], [`OperationLog`] and [`TicketStore`] traits.
//! - [`report`] — [`Report`], an error with its chain of causes on one line.
//!
//! Storage (`longhaul-store`) and the queue (`longhaul-queue`) apply these rules; they never
//! restate them.

pub mod ids;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod retry;

pub use ids::{IdError, IdempotencyKey, JobId, OperationId, TenantId, TicketId};
pub use pipeline::{
    JobContext, NoopObserver, OperationLog, OperationState, Pipeline, PipelineObserver, StageEvent,
    TicketStore, TicketView, run_effect,
};
pub use record::{JobRecord, JobStatus, Lease, NewJob, Progress, TransitionError};
pub use report::Report;
pub use retry::{Decision, ErrorClass, FailureCase, JobError, PolicyError, RetryPolicy};
