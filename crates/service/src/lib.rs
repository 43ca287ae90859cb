//! `longhaul-service`: what every longhaul binary shares, written once.
//!
//! - [`args`] — clap flag groups with environment fallbacks (Redis and queue, database, logging)
//!   and [`Secret`], a string that never prints.
//! - [`telemetry`] — tracing set-up: JSON lines when stdout is not a terminal, text on a terminal.
//! - [`shutdown`] — one [`CancellationToken`](tokio_util::sync::CancellationToken) cancelled by
//!   SIGTERM or ctrl-c.
//! - [`health`] — the `/healthz` and `/readyz` admin endpoints.

pub mod args;
pub mod health;
pub mod shutdown;
pub mod telemetry;

pub use args::{DatabaseArgs, LogArgs, QueueArgs, Secret};
