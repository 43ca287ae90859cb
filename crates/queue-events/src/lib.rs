//! `longhaul-queue-events`: reads the lifecycle events stream of each queue it tails in its own
//! consumer group and turns each event into one structured log line (with the queue) and metric
//! updates (labelled by queue). Replicas share the events (each is
//! handled once); a restarted replica first handles its own unacknowledged events.
//!
//! It never writes application storage — it does not even depend on the store crate. Product
//! state belongs to the producer and the worker; this is for operators.
//!
//! Metrics (OpenTelemetry instruments; OTLP and Prometheus `/metrics`):
//! - `longhaul_job_events_total{queue, event, class}` — completed, failed, retrying, stalled, alert,
//!   cancelled;
//! - `longhaul_job_duration_seconds{queue, event, kind}` — `kind="total"`: enqueue → event;
//!   `kind="run"`: the attempt's run time;
//! - `longhaul_queue_lag{queue}`, `longhaul_queue_pending{queue}`, `longhaul_queue_delayed{queue}`,
//!   `longhaul_queue_dead_letters{queue}` — the backlog, sampled every `--stats-every`.
//!
//! [`startup`] builds the service from its flags and runs it (the binary and the tests use it).

pub mod startup;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use longhaul_queue::{Event, EventKind, EventReader, Queue, QueueStats};
use longhaul_service::retry::{Backoff, sleep_unless_stopped};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};
use tokio_util::sync::CancellationToken;

/// The instruments queue-events records.
#[derive(Clone)]
pub struct EventMetrics {
    events: Counter<u64>,
    duration: Histogram<f64>,
    backlog: Arc<Mutex<BTreeMap<String, QueueStats>>>,
}

impl std::fmt::Debug for EventMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("EventMetrics")
    }
}

impl EventMetrics {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let events = meter
            .u64_counter("longhaul.job.events")
            .with_description("Lifecycle events of jobs, by event and error class")
            .build();
        let duration = meter
            .f64_histogram("longhaul.job.duration")
            .with_unit("s")
            .with_description("Job durations: kind=total from enqueue, kind=run for the attempt")
            .with_boundaries(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ])
            .build();
        let backlog = Arc::new(Mutex::new(BTreeMap::<String, QueueStats>::new()));
        let gauge = |name: &'static str, description: &'static str, pick: fn(&QueueStats) -> u64| {
            let backlog = backlog.clone();
            meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_callback(move |observer| {
                    if let Ok(queues) = backlog.lock() {
                        for (queue, stats) in queues.iter() {
                            observer.observe(pick(stats), &[KeyValue::new("queue", queue.clone())]);
                        }
                    }
                })
                .build()
        };
        // The gauges live as long as the meter provider; their handles need not be kept.
        gauge("longhaul.queue.lag", "Entries not yet delivered to the workers' group", |s| {
            s.lag.unwrap_or(0)
        });
        gauge("longhaul.queue.pending", "Entries delivered and not yet acknowledged", |s| s.pending);
        gauge("longhaul.queue.delayed", "Retries waiting for their due time", |s| s.delayed);
        gauge("longhaul.queue.dead_letters", "Entries in the dead-letter stream", |s| s.dead_letters);
        Self { events, duration, backlog }
    }

    /// Records one event of queue `queue`.
    pub fn record(&self, queue: &str, event: &Event) {
        if event.kind == EventKind::Progress {
            return;
        }
        let class = event.class.clone().unwrap_or_default();
        let queue = KeyValue::new("queue", queue.to_owned());
        let kind = KeyValue::new("event", event.kind.as_str());
        self.events.add(1, &[queue.clone(), kind.clone(), KeyValue::new("class", class)]);
        if let Some(ms) = event.total_ms {
            self.duration
                .record(ms as f64 / 1000.0, &[queue.clone(), kind.clone(), KeyValue::new("kind", "total")]);
        }
        if let Some(ms) = event.run_ms {
            self.duration.record(ms as f64 / 1000.0, &[queue, kind, KeyValue::new("kind", "run")]);
        }
    }

    /// Replaces the backlog the gauges report for queue `queue`.
    pub fn set_backlog(&self, queue: &str, stats: QueueStats) {
        if let Ok(mut b) = self.backlog.lock() {
            b.insert(queue.to_owned(), stats);
        }
    }
}

/// Writes the operator's log line for `event` of queue `queue`.
pub fn log(queue: &str, event: &Event) {
    let (job, tenant, attempt) = (&event.job_id, &event.tenant_id, event.attempt);
    let total_ms = event.total_ms.unwrap_or_default();
    let run_ms = event.run_ms.unwrap_or_default();
    let reason = event.reason.as_deref().unwrap_or("");
    let class = event.class.as_deref().unwrap_or("");
    match event.kind {
        EventKind::Completed => {
            tracing::info!(queue, job_id = %job, tenant_id = %tenant, attempt, total_ms, run_ms, "job completed")
        }
        EventKind::Failed => {
            tracing::warn!(queue, job_id = %job, tenant_id = %tenant, attempt, total_ms, run_ms,
            failed_reason = %reason, error_class = %class, "job failed")
        }
        EventKind::Retrying => tracing::warn!(queue, job_id = %job, tenant_id = %tenant, attempt, run_ms,
            failed_reason = %reason, error_class = %class, "job retrying"),
        EventKind::Stalled => tracing::error!(queue, job_id = %job, tenant_id = %tenant, attempt, total_ms,
            failed_reason = %reason, "job stalled"),
        EventKind::Alert => tracing::error!(queue, job_id = %job, tenant_id = %tenant, attempt,
            failed_reason = %reason, error_class = %class, "ALERT: permission or tenant violation"),
        EventKind::Cancelled => tracing::info!(queue, job_id = %job, tenant_id = %tenant, attempt, total_ms,
            "job cancelled"),
        EventKind::Progress => tracing::debug!(queue, job_id = %job, tenant_id = %tenant, attempt,
            stage = event.stage.as_deref().unwrap_or(""), progress = event.progress.unwrap_or(0), "job progress"),
    }
}

/// Reads queue `queue`'s events until `stop`: logs, records, then acknowledges each batch.
/// Outages are waited out.
pub async fn run(
    queue: String,
    mut reader: EventReader,
    metrics: EventMetrics,
    batch: usize,
    stop: CancellationToken,
) {
    let mut backoff = Backoff::default();
    loop {
        let got = tokio::select! {
            () = stop.cancelled() => return,
            r = reader.read(batch, Duration::from_secs(2)) => r,
        };
        match got {
            Ok(events) => {
                backoff.reset();
                for received in &events {
                    log(&queue, &received.event);
                    metrics.record(&queue, &received.event);
                }
                let ids: Vec<String> = events.into_iter().map(|r| r.id).collect();
                if let Err(e) = reader.ack(&ids).await {
                    tracing::warn!(error = %longhaul_core::Report(&e), "cannot acknowledge events; they will be handled again");
                }
            }
            Err(e) => {
                let retry_in = backoff.next_delay();
                tracing::warn!(%queue, error = %longhaul_core::Report(&e), ?retry_in, "cannot read events; retrying");
                if !sleep_unless_stopped(retry_in, &stop).await {
                    return;
                }
            }
        }
    }
}

/// Samples the backlog every `every` until `stop`.
pub async fn sample_backlog(queue: Queue, metrics: EventMetrics, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        match queue.stats().await {
            Ok(stats) => metrics.set_backlog(queue.name(), stats),
            Err(e) => {
                tracing::warn!(queue = %queue.name(), error = %longhaul_core::Report(&e), "cannot read the backlog")
            }
        }
    }
}

/// The admin routes: `/healthz`, `/readyz` and `/metrics` (Prometheus text format from `registry`).
pub fn admin_router(
    ready: longhaul_service::health::ReadyCheck,
    registry: prometheus::Registry,
) -> axum::Router {
    longhaul_service::health::router(ready).route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                (
                    [("content-type", "text/plain; version=0.0.4")],
                    longhaul_service::telemetry::render_prometheus(&registry),
                )
            }
        }),
    )
}
