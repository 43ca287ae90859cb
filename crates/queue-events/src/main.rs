//! The `queue-events` binary: [`startup`](longhaul_queue_events::startup) builds and runs it.

use std::process::ExitCode;

use anyhow::Context as _;
use longhaul_queue_events::startup::{Application, Config};
use longhaul_service::telemetry::TelemetryOptions;
use longhaul_service::{shutdown, startup};

/// mimalloc: less CPU per job than the system allocator in the many small allocations of a
/// request or a job (issue 19's allocator A/B in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = |config: &Config| TelemetryOptions { prometheus: true, ..config.telemetry.options() };
    startup::run(telemetry, async |config: Config, telemetry| {
        let meter = opentelemetry::global::meter("longhaul.queue-events");
        let registry = telemetry.registry().context("the Prometheus registry is missing")?;
        let app = Application::build(config, &meter, registry).await?;
        app.run_until_stopped(shutdown::on_signal()).await
    })
    .await
}
