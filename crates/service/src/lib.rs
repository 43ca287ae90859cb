//! `longhaul-service`: what every longhaul binary shares, written once.
//!
//! - [`batch`] — [`Batcher`], group commit: concurrent callers' requests served in batches.
//! - [`args`] — clap flag groups with environment fallbacks (Redis and queue, database, logging)
//!   and [`Secret`], a string that never prints.
//! - [`telemetry`] — logs (JSON or text), OpenTelemetry traces and metrics (OTLP, Prometheus text),
//!   set up from named [`TelemetryOptions`](telemetry::TelemetryOptions).
//! - [`trace`] — W3C trace context into and out of a queue entry.
//! - [`shutdown`] — one [`CancellationToken`](tokio_util::sync::CancellationToken) cancelled by
//!   SIGTERM or ctrl-c.
//! - [`health`] — the `/healthz` and `/readyz` admin endpoints, the readiness check and the admin
//!   server.
//! - [`retry`] — the backoff every loop uses to wait out an outage.
//! - [`startup`] — parse, telemetry, run, error line and exit code: each binary's `main`.

pub mod args;
pub mod batch;
pub mod health;
pub mod retry;
pub mod shutdown;
pub mod startup;
pub mod telemetry;
pub mod trace;

pub use args::{ConsumerArgs, DatabaseArgs, QueueArgs, RetiredArgs, Secret, TelemetryArgs};
pub use batch::Batcher;
