//! The `queue-events` binary: flags and wiring.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use longhaul_queue_events::{EventMetrics, admin_router, run, sample_backlog};
use longhaul_service::args::{QueueArgs, TelemetryArgs, error_line, parse_cli, parse_positive_duration};
use longhaul_service::telemetry::Telemetry;
use longhaul_service::{health, shutdown};

/// longhaul queue-events: reads job lifecycle events and turns them into structured log lines
/// (completed info, failed/retrying warn, stalled/alert error) and metrics (OTLP, and Prometheus
/// text on /metrics). Never writes application storage.
#[derive(Debug, Parser)]
#[command(name = "queue-events", version)]
struct Cli {
    #[command(flatten)]
    queue: QueueArgs,
    #[command(flatten)]
    telemetry: TelemetryArgs,
    /// Consumer group on the events stream; replicas in one group share the events.
    #[arg(long, env = "LONGHAUL_EVENTS_GROUP", default_value = "queue-events")]
    group: String,
    /// Name in the group; keep it stable per pod. Default: $HOSTNAME-PID (the process id).
    #[arg(long, env = "LONGHAUL_CONSUMER_NAME")]
    consumer_name: Option<String>,
    #[arg(long, env = "HOSTNAME", hide = true)]
    hostname: Option<String>,
    /// Events read per call.
    #[arg(long, env = "LONGHAUL_EVENTS_BATCH", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch: u32,
    /// How often the backlog gauges are sampled.
    #[arg(long, env = "LONGHAUL_STATS_EVERY", default_value = "15s", value_parser = parse_positive_duration)]
    stats_every: Duration,
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "LONGHAUL_ADMIN_ADDR", default_value = "0.0.0.0:9092")]
    admin_addr: SocketAddr,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli: Cli = parse_cli();
    let telemetry = match Telemetry::init(
        "queue-events",
        cli.telemetry.log_format,
        cli.telemetry.otlp_endpoint.as_deref(),
        true,
        false,
    ) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("queue-events: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match serve(cli, &telemetry).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let line = error_line(&e);
            tracing::error!(error = %line, "queue-events failed");
            eprintln!("queue-events: {line}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, telemetry: &Telemetry) -> anyhow::Result<()> {
    let queue = cli.queue.queue(|_| {})?;
    let shutdown = shutdown::on_signal();
    let mut backoff = Duration::from_millis(100);
    while let Err(e) = queue.prepare(Some(&cli.group)).await {
        tracing::warn!(error = %e, retry_in = ?backoff, "Redis is not available yet");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    let name = cli.consumer_name.clone().unwrap_or_else(|| {
        format!("{}-{}", cli.hostname.as_deref().unwrap_or("queue-events"), std::process::id())
    });
    let reader = queue.event_reader(&cli.group, &name).context("failed to create the events reader")?;
    let metrics = EventMetrics::new(&opentelemetry::global::meter("longhaul.queue-events"));

    let ready: health::ReadyCheck = {
        let queue = queue.clone();
        Arc::new(move || {
            let queue = queue.clone();
            Box::pin(async move { queue.ping().await.map_err(|e| format!("redis: {e}")) })
        })
    };
    let registry = telemetry.registry().context("the Prometheus registry is missing")?;
    let router = admin_router(ready, registry);
    let listener = tokio::net::TcpListener::bind(cli.admin_addr)
        .await
        .with_context(|| format!("cannot bind the admin address {}", cli.admin_addr))?;
    tracing::info!(admin = %listener.local_addr()?, group = %cli.group, consumer = %name, "queue-events started");
    let admin = tokio::spawn(
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );
    let sampler =
        tokio::spawn(sample_backlog(queue.clone(), metrics.clone(), cli.stats_every, shutdown.clone()));
    run(reader, metrics, cli.batch as usize, shutdown.clone()).await;
    shutdown.cancel();
    let _ = sampler.await;
    let _ = admin.await;
    tracing::info!("queue-events stopped");
    Ok(())
}
