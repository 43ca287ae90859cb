//! The `worker` binary: the built-in kinds ([`builtin`](longhaul_worker::startup::builtin)) run
//! by [`startup::main`](longhaul_worker::startup::main), the same start-up path a user's own worker
//! binary calls with its kinds.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    longhaul_worker::startup::main(longhaul_worker::startup::builtin).await
}
