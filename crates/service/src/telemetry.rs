//! Telemetry shared by the binaries: logs, traces and metrics, set up once.
//!
//! - **Logs**: JSON lines when stdout is not a terminal (or `--log-format json`), text on a terminal;
//!   `RUST_LOG` filters (default `info`). Lines inside a span carry its fields (`job_id`,
//!   `tenant_id`, `attempt` for a job) under `span`.
//! - **Traces**: every `tracing` span is also an OpenTelemetry span (W3C trace context); exported
//!   over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. See [`crate::trace`] for carrying the
//!   context through a queue entry.
//! - **Metrics**: OpenTelemetry instruments, exported over OTLP when configured and, for binaries
//!   that ask for it, rendered in Prometheus text format for a `/metrics` scrape.
//!
//! [`subscriber`] builds the log subscriber without installing it, so tests can capture lines.

use std::io::IsTerminal;

use opentelemetry::global;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _, Registry};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text when it is.
    #[default]
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable text.
    Text,
}

impl LogFormat {
    /// Whether this format writes JSON, given whether stdout is a terminal.
    pub fn is_json(self, stdout_is_terminal: bool) -> bool {
        match self {
            Self::Json => true,
            Self::Text => false,
            Self::Auto => !stdout_is_terminal,
        }
    }
}

/// A log subscriber writing to `writer`, bridging spans to `tracer` when given. Not installed.
pub fn subscriber<W>(json: bool, writer: W, tracer: Option<Tracer>) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer().with_target(false).with_writer(writer).boxed()
    };
    let otel = tracer.map(|t| tracing_opentelemetry::layer().with_tracer(t));
    Registry::default().with(fmt).with(otel).with(filter)
}

/// The installed telemetry. Dropping it flushes and shuts down the exporters.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    registry: Option<prometheus::Registry>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("prometheus", &self.registry.is_some()).finish()
    }
}

/// Builds the tracer and meter providers for `service`: OTLP/HTTP export when `otlp_endpoint` is
/// given (`/v1/traces` and `/v1/metrics` are appended), a Prometheus registry when `prometheus`.
///
/// # Errors
/// When an exporter cannot be built.
pub fn providers(
    service: &str,
    otlp_endpoint: Option<&str>,
    prometheus: bool,
) -> anyhow::Result<(SdkTracerProvider, SdkMeterProvider, Option<prometheus::Registry>)> {
    let resource = Resource::builder().with_service_name(service.to_owned()).build();
    let mut traces = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut metrics = SdkMeterProvider::builder().with_resource(resource);
    if let Some(endpoint) = otlp_endpoint {
        let base = endpoint.trim_end_matches('/');
        use opentelemetry_otlp::WithExportConfig as _;
        let spans = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/traces"))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP span exporter: {e}"))?;
        traces = traces.with_batch_exporter(spans);
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{base}/v1/metrics"))
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the OTLP metric exporter: {e}"))?;
        metrics = metrics.with_periodic_exporter(exporter);
    }
    let registry = if prometheus {
        let registry = prometheus::Registry::new();
        let exporter = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the Prometheus exporter: {e}"))?;
        metrics = metrics.with_reader(exporter);
        Some(registry)
    } else {
        None
    };
    Ok((traces.build(), metrics.build(), registry))
}

/// Renders a Prometheus registry in the text exposition format.
pub fn render_prometheus(registry: &prometheus::Registry) -> String {
    use prometheus::Encoder as _;
    let mut out = Vec::new();
    if let Err(e) = prometheus::TextEncoder::new().encode(&registry.gather(), &mut out) {
        tracing::warn!(error = %longhaul_core::Report(&e), "cannot encode metrics");
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Where a binary's log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogOutput {
    /// Standard output: services.
    #[default]
    Stdout,
    /// Standard error: commands whose standard output is their result (a key, a JSON record).
    Stderr,
}

/// How [`Telemetry::init`] sets a binary up. [`crate::TelemetryArgs::options`] gives the
/// configured part; a binary sets the rest by name:
/// `TelemetryOptions { prometheus: true, ..cli.telemetry.options() }`.
#[derive(Debug, Clone, Default)]
pub struct TelemetryOptions {
    /// How log lines are written.
    pub format: LogFormat,
    /// OTLP/HTTP collector base URL; traces and metrics are exported there when set.
    pub otlp_endpoint: Option<String>,
    /// Keep a Prometheus registry for a `/metrics` scrape ([`Telemetry::registry`]).
    pub prometheus: bool,
    /// Where log lines go.
    pub logs: LogOutput,
}

impl Telemetry {
    /// Installs logs, traces and metrics for `service` globally, as `options` say. Call once, at
    /// the top of `main` ([`crate::startup::run`] does).
    ///
    /// # Errors
    /// When an exporter cannot be built or a subscriber is already installed.
    pub fn init(service: &str, options: &TelemetryOptions) -> anyhow::Result<Self> {
        global::set_text_map_propagator(TraceContextPropagator::new());
        let (tracer_provider, meter_provider, registry) =
            providers(service, options.otlp_endpoint.as_deref(), options.prometheus)?;
        global::set_tracer_provider(tracer_provider.clone());
        global::set_meter_provider(meter_provider.clone());
        let tracer = tracer_provider.tracer(service.to_owned());
        let format = options.format;
        let installed = match options.logs {
            LogOutput::Stdout => {
                subscriber(format.is_json(std::io::stdout().is_terminal()), std::io::stdout, Some(tracer))
                    .try_init()
            }
            LogOutput::Stderr => {
                subscriber(format.is_json(std::io::stderr().is_terminal()), std::io::stderr, Some(tracer))
                    .try_init()
            }
        };
        installed.map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
        Ok(Self { tracer_provider, meter_provider, registry })
    }

    /// The metrics in Prometheus text format (empty unless set up with `prometheus`).
    pub fn prometheus_text(&self) -> String {
        self.registry.as_ref().map(render_prometheus).unwrap_or_default()
    }

    /// The Prometheus registry, if any.
    pub fn registry(&self) -> Option<prometheus::Registry> {
        self.registry.clone()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.tracer_provider.shutdown() {
            eprintln!("telemetry: flushing traces failed: {e}");
        }
        if let Err(e) = self.meter_provider.shutdown() {
            eprintln!("telemetry: flushing metrics failed: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_follows_the_terminal() {
        assert!(LogFormat::Auto.is_json(false));
        assert!(!LogFormat::Auto.is_json(true));
        assert!(LogFormat::Json.is_json(true));
        assert!(!LogFormat::Text.is_json(false));
    }
}
