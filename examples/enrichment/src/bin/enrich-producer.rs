//! The project's producer: longhaul's API and CLI (the same as the shipped `producer`) accepting
//! the project's kind.

use std::process::ExitCode;

use enrichment_example::EnrichContact;
use longhaul_core::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    match Registry::new().kind::<EnrichContact>() {
        Ok(registry) => longhaul_producer::cli::main(registry).await,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
