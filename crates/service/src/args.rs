//! Flag groups shared by the binaries. Every flag has an environment fallback.

use std::time::Duration;

use clap::Args;
use longhaul_queue::{Queue, QueueConfig};

use crate::telemetry::LogFormat;

/// A string that must never be printed (URLs with passwords, API keys). `Debug` and `Display`
/// show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Parses a duration such as `500ms`, `30s` or `2m`.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (expected a duration such as 500ms, 30s or 2m)"))
}

/// Parses a duration that must be greater than zero.
///
/// # Errors
/// As [`parse_duration`], or when it is zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() { Err("must be greater than zero".into()) } else { Ok(d) }
}

/// Redis and queue settings.
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS; for a Redis Cluster,
    /// redis+cluster://[user:password@]host:port[,host:port…] (seed nodes; rediss+cluster:// for TLS).
    #[arg(long, env = "REDIS_URL", hide_env_values = true, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: Secret,
    /// First part of every Redis key.
    #[arg(long, env = "LONGHAUL_QUEUE_PREFIX", default_value = "longhaul")]
    pub queue_prefix: String,
    /// Queue name (also the Redis Cluster hash tag).
    #[arg(long, env = "LONGHAUL_QUEUE", default_value = "triage")]
    pub queue: String,
    /// Upper bound on every Redis call; an outage surfaces as an error within this time.
    #[arg(long, env = "LONGHAUL_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub redis_timeout: Duration,
    /// Approximate length the events stream is trimmed to.
    #[arg(long, env = "LONGHAUL_EVENTS_MAXLEN", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub events_maxlen: u64,
}

impl QueueArgs {
    /// The queue these flags describe, with `tweak` applied to the rest of its configuration.
    ///
    /// # Errors
    /// When the URL or names are invalid.
    pub fn queue(&self, tweak: impl FnOnce(&mut QueueConfig)) -> anyhow::Result<Queue> {
        let mut config = QueueConfig {
            prefix: self.queue_prefix.clone(),
            queue: self.queue.clone(),
            op_timeout: self.redis_timeout,
            events_maxlen: self.events_maxlen,
            ..QueueConfig::default()
        };
        tweak(&mut config);
        Ok(Queue::new(self.redis_url.expose(), config)?)
    }
}

/// Application-storage settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Application storage: postgres://… for production, sqlite://path for the embedded default.
    /// Unset: sqlite://longhaul.db in the working directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// Connections in the pool.
    #[arg(long, env = "LONGHAUL_DB_POOL", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: u32,
    /// How long a request waits for a database connection before failing as retryable.
    #[arg(long, env = "LONGHAUL_DB_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub db_timeout: Duration,
}

/// Logging, tracing and metrics export settings.
#[derive(Debug, Clone, Args)]
pub struct TelemetryArgs {
    /// Log format: auto (JSON unless stdout is a terminal), json or text. RUST_LOG filters.
    #[arg(long, env = "LONGHAUL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// OTLP/HTTP collector base URL (e.g. http://otel-collector:4318); traces and metrics are
    /// exported there when set.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
}
