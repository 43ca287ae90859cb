//! The one start-up path of every binary: parse the flags (a bad value: one line, exit code 2),
//! install telemetry, run, and turn an error into one logged and printed line and exit code 1.
//! A binary's `main` is this call around its own build-and-run step.

use std::process::ExitCode;

use crate::args::{error_line, parse_cli};
use crate::telemetry::{Telemetry, TelemetryOptions};

/// Runs a binary whose flags are `C` (its clap name names it in telemetry and error lines):
/// parses them ([`parse_cli`]), installs telemetry as `telemetry(&flags)` says, then runs
/// `body(flags, &telemetry)`. Telemetry is flushed when `body` returns.
pub async fn run<C: clap::Parser>(
    telemetry: impl FnOnce(&C) -> TelemetryOptions,
    body: impl AsyncFnOnce(C, &Telemetry) -> anyhow::Result<()>,
) -> ExitCode {
    let cli: C = parse_cli();
    let name = C::command().get_name().to_owned();
    let installed = match Telemetry::init(&name, &telemetry(&cli)) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match body(cli, &installed).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = error_line(&e);
            tracing::error!(error = %line, "{name} failed");
            eprintln!("{name}: {line}");
            ExitCode::FAILURE
        }
    }
}
