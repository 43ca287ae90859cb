//! The `queue-events` binary from flags to a running service, in two steps (as zero2prod's
//! `startup.rs`): [`Application::build`] opens the queues, creates the instruments and binds the
//! admin server; [`Application::run_until_stopped`] waits for Redis, then reads each queue's events, samples
//! its backlog and serves `/healthz`, `/readyz` and `/metrics` until the shutdown token. `main` and the
//! in-process tests both go through `build`.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;
use longhaul_queue::Queue;
use longhaul_service::args::{
    ConsumerArgs, QueueArgs, RetiredArgs, TelemetryArgs, parse_positive_duration, parse_queue_name,
};
use longhaul_service::health::{self, AdminServer};
use longhaul_service::retry;
use opentelemetry::metrics::Meter;
use tokio_util::sync::CancellationToken;

use crate::{EventMetrics, admin_router, run, sample_backlog};

/// longhaul queue-events: reads job lifecycle events and turns them into structured log lines
/// (completed info, failed/retrying warn, stalled/alert error) and metrics (OTLP, and Prometheus
/// text on /metrics). Never writes application storage.
#[derive(Debug, Clone, Parser)]
#[command(name = "queue-events", version)]
pub struct Config {
    /// Redis and the queue.
    #[command(flatten)]
    pub queue: QueueArgs,
    /// Logs, traces and metrics.
    #[command(flatten)]
    pub telemetry: TelemetryArgs,
    /// The queues (or partitions) whose events to tail.
    #[arg(long, env = "LONGHAUL_QUEUES", value_delimiter = ',', value_parser = parse_queue_name, default_value = "triage,summarize")]
    pub queues: Vec<String>,
    /// Consumer group on the events streams; replicas in one group share the events.
    #[arg(long, env = "LONGHAUL_EVENTS_GROUP", default_value = "queue-events")]
    pub group: String,
    /// The name in the consumer group.
    #[command(flatten)]
    pub consumer: ConsumerArgs,
    /// Events read per call.
    #[arg(long, env = "LONGHAUL_EVENTS_BATCH", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch: u32,
    /// How often the backlog gauges are sampled.
    #[arg(long, env = "LONGHAUL_STATS_EVERY", default_value = "15s", value_parser = parse_positive_duration)]
    pub stats_every: Duration,
    /// Address of the admin server (/healthz, /readyz, /metrics).
    #[arg(long, env = "LONGHAUL_ADMIN_ADDR", default_value = "0.0.0.0:9092")]
    pub admin_addr: SocketAddr,
    /// Settings no longer read (hidden; set, they stop the binary).
    #[command(flatten)]
    pub retired: RetiredArgs,
}

/// queue-events, built and bound, not yet reading.
#[derive(Debug)]
pub struct Application {
    queues: Vec<Queue>,
    group: String,
    consumer: String,
    batch: usize,
    stats_every: Duration,
    metrics: EventMetrics,
    admin: AdminServer,
}

impl Application {
    /// Opens the queues, creates the instruments on `meter`, and binds the admin server, whose
    /// `/metrics` renders `registry` (the Prometheus registry `meter`'s provider reads into).
    ///
    /// # Errors
    /// Invalid Redis settings; an admin address that cannot be bound.
    pub async fn build(
        config: Config,
        meter: &Meter,
        registry: prometheus::Registry,
    ) -> anyhow::Result<Self> {
        let Some(first) = config.queues.first() else { bail!("--queues names no queue") };
        let base = config.queue.queue(first, |_| {})?;
        let queues = config.queues.iter().map(|name| base.sibling(name)).collect::<Result<Vec<_>, _>>()?;
        let consumer = config.consumer.name("queue-events");
        let metrics = EventMetrics::new(meter);
        let router = admin_router(health::dependencies(None, &queues), registry);
        let admin = AdminServer::bind(config.admin_addr, router).await?;
        Ok(Self {
            queues,
            group: config.group,
            consumer,
            batch: config.batch as usize,
            stats_every: config.stats_every,
            metrics,
            admin,
        })
    }

    /// The admin server's address (`--admin-addr` with port 0 picks one).
    ///
    /// # Errors
    /// When the socket cannot tell (it can once bound).
    pub fn admin_addr(&self) -> std::io::Result<SocketAddr> {
        self.admin.local_addr()
    }

    /// The admin routes, for driving requests without the listener (`oneshot`).
    pub fn admin_router(&self) -> axum::Router {
        self.admin.router()
    }

    /// Waits for Redis (creating the consumer group), then handles events, samples the backlog
    /// and serves the admin routes until `shutdown`.
    ///
    /// # Errors
    /// When the events reader cannot be created.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let group = self.group.as_str();
        for queue in &self.queues {
            if retry::until_ok("Redis is not available yet", &shutdown, || queue.prepare(Some(group)))
                .await
                .is_none()
            {
                return Ok(());
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        for queue in &self.queues {
            let reader = queue
                .event_reader(group, &self.consumer)
                .with_context(|| format!("failed to create the events reader of queue {}", queue.name()))?;
            tasks.spawn(run(
                queue.name().to_owned(),
                reader,
                self.metrics.clone(),
                self.batch,
                shutdown.clone(),
            ));
            tasks.spawn(sample_backlog(
                queue.clone(),
                self.metrics.clone(),
                self.stats_every,
                shutdown.clone(),
            ));
        }
        let queues: Vec<_> = self.queues.iter().map(|q| q.name().to_owned()).collect();
        tracing::info!(admin = %self.admin.local_addr()?, group, consumer = %self.consumer, ?queues, "queue-events started");
        let admin = self.admin.spawn(shutdown.clone());
        shutdown.cancelled().await;
        while tasks.join_next().await.is_some() {}
        let _ = admin.await;
        tracing::info!("queue-events stopped");
        Ok(())
    }
}
