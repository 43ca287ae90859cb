//! The project's worker: longhaul's start-up path (flags, telemetry, health, shutdown — the same
//! as the shipped `worker`) running the project's kind. `ENRICH_PROVIDER_URL` says where the
//! enrichment provider is.

use std::process::ExitCode;

use anyhow::Context as _;
use enrichment_example::EnrichPipeline;
use longhaul_core::Registry;

#[tokio::main]
async fn main() -> ExitCode {
    longhaul_worker::startup::main(async |_resources| {
        let provider = std::env::var("ENRICH_PROVIDER_URL").context("set ENRICH_PROVIDER_URL")?;
        Ok(Registry::new().pipeline(EnrichPipeline::new(provider)?)?)
    })
    .await
}
