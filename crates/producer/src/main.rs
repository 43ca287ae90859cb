//! The `producer` binary: the HTTP API and the operator CLI ([`cli`](longhaul_producer::cli)) with
//! the built-in kinds.

use std::process::ExitCode;

/// mimalloc: less CPU per job than the system allocator in the many small allocations of a
/// request or a job (issue 19's allocator A/B in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
