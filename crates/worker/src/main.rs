//! The `worker` binary: [`startup`](longhaul_worker::startup) builds and runs it.

use std::process::ExitCode;

use longhaul_service::{shutdown, startup};
use longhaul_worker::startup::{Application, Config};

#[tokio::main]
async fn main() -> ExitCode {
    startup::run(
        |config: &Config| config.telemetry.options(),
        async |config: Config, _| {
            Application::build(config).await?.run_until_stopped(shutdown::on_signal()).await
        },
    )
    .await
}
