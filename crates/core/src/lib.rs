//! `longhaul-core`: the rules of longhaul, with no I/O.
//!
//! - [`ids`] — validated tenant and ticket ids, idempotency keys, stable job ids and operation ids.
//! - [`record`] — the user-facing [`JobRecord`] and its status machine ([`JobStatus`]), whose
//!   transitions are pure functions fenced by attempt number.
//! - [`retry`] — the guide's retry table as [`FailureCase`] → [`ErrorClass`], and the
//!   [`RetryPolicy`] (exponential backoff, full jitter, cap, attempt limit).
//! - [`kind`] — [`JobKind`]: a kind's name, typed input and output, stages, queue and limits, and
//!   how a submission is validated and keyed.
//! - [`job`] — the [`Pipeline`] a user writes, the [`Ctx`] it runs with (stages, progress,
//!   durable steps) and the [`Registry`] of kinds.
//! - [`pipeline`] — the job's identity ([`JobContext`]), stage events ([`PipelineObserver`]) and
//!   the [`OperationLog`] durable steps go through.
//! - [`report`] — [`Report`], an error with its chain of causes on one line.
//! - [`stage_timer`] — a stage's timeout, paused while storage holds a step through an outage.
//!
//! Storage (`longhaul-store`) and the queue (`longhaul-queue`) apply these rules; they never
//! restate them.

pub mod ids;
pub mod job;
pub mod kind;
pub mod pipeline;
pub mod record;
pub mod report;
pub mod retry;
pub mod stage_timer;

pub use ids::{IdError, IdempotencyKey, JobId, OperationId, TenantId, TicketId};
pub use job::{Ctx, Pipeline, Registry, RegistryError};
pub use kind::{InputError, JobKey, JobKind, KindOptions, Stage};
pub use pipeline::{JobContext, NoopObserver, OperationLog, OperationState, PipelineObserver, StageEvent};
pub use record::{JobRecord, JobStatus, Lease, NewJob, Priority, Progress, TransitionError};
pub use report::Report;
pub use retry::{Decision, ErrorClass, FailureCase, JobError, PolicyError, RetryPolicy};
