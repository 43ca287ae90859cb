//! The `worker` binary: the built-in kinds ([`builtin`](longhaul_worker::startup::builtin)) run
//! by [`startup::main`](longhaul_worker::startup::main), the same start-up path a user's own worker
//! binary calls with its kinds.

use std::process::ExitCode;

/// mimalloc: less CPU per job than the system allocator in the many small allocations of a
/// request or a job (issue 19's allocator A/B in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    longhaul_worker::startup::main(longhaul_worker::startup::builtin).await
}
