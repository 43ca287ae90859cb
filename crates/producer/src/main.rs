//! The `producer` binary: the HTTP API and the operator CLI ([`cli`](longhaul_producer::cli)) with
//! the built-in kinds.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    match longhaul_producer::startup::builtin() {
        Ok(registry) => longhaul_producer::cli::main(registry).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
