//! Flag groups shared by the binaries. Every flag has an environment fallback; every credential
//! (database URL, Redis URL, provider API key) can also be read from a file (`…_FILE`), as mounted
//! from a Kubernetes secret. Also [`parse_cli`] and [`error_line`]: configuration errors end the
//! process with one line on stderr that names the setting; [`RetiredArgs`]: settings no longer
//! read stop a binary rather than being ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use longhaul_queue::{Queue, QueueConfig, QueueError};
use longhaul_store::{Store, StoreOptions};

use crate::telemetry::{LogFormat, TelemetryOptions};

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

/// Resolves a credential given either directly (`value`, from `--flag`/`NAME`) or as the path of a
/// file holding it (`file`, from `--flag-file`/`NAME_FILE`). The file's trailing newline is removed.
/// `name` is the environment variable, used in error messages (which never contain the secret).
///
/// # Errors
/// Both given; the file missing, unreadable, not UTF-8, or empty.
pub fn secret_setting(
    value: Option<&Secret>,
    file: Option<&Path>,
    name: &str,
) -> anyhow::Result<Option<Secret>> {
    match (value, file) {
        (Some(_), Some(_)) => bail!("set either {name} or {name}_FILE, not both"),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {name}_FILE {}", path.display()))?;
            let secret = text.trim_end_matches(['\n', '\r']);
            if secret.trim().is_empty() {
                bail!("{name}_FILE {} is empty", path.display());
            }
            Ok(Some(Secret::new(secret)))
        }
    }
}

/// Parses the command line like `C::parse()`, except that an invalid value or usage error is
/// reported as one line on stderr naming the flag and its environment variable (exit code 2).
/// `--help` and `--version` behave as usual.
pub fn parse_cli<C: clap::Parser>() -> C {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let e = match C::try_parse() {
        Ok(cli) => return cli,
        Err(e) => e,
    };
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        e.exit();
    }
    let command = C::command();
    let text = e.render().to_string();
    let first = text.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("error: invalid arguments");
    let env = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => env_of(&command, arg),
        _ => None,
    };
    let bin = command.get_name().to_owned();
    match env {
        Some(env) => eprintln!("{bin}: {first} (flag or {env}); see --help"),
        None => eprintln!("{bin}: {first}; see --help"),
    }
    std::process::exit(2);
}

/// The environment variable of the flag rendered as `arg` (`--name <NAME>`), in `command` or any
/// of its subcommands.
fn env_of(command: &clap::Command, arg: &str) -> Option<String> {
    let long = arg.strip_prefix("--")?.split([' ', '=']).next()?;
    let own = command
        .get_arguments()
        .find(|a| a.get_long() == Some(long))
        .and_then(|a| a.get_env())
        .map(|e| e.to_string_lossy().into_owned());
    own.or_else(|| command.get_subcommands().find_map(|sub| env_of(sub, arg)))
}

/// An error and its causes on one line ([`longhaul_core::Report`]: each cause once), with any line
/// breaks a message holds turned into spaces: the error line a binary prints before it exits.
pub fn error_line(e: &anyhow::Error) -> String {
    longhaul_core::Report(e.as_ref()).to_string().replace(['\n', '\r'], " ")
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

/// The Redis URL when none is configured.
pub const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Redis and queue settings.
// The field docs are --help text: `[user:password@]` there is URL syntax, not a doc link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Clone, Args)]
pub struct QueueArgs {
    /// Redis URL: redis://[user:password@]host:port[/db], or rediss:// for TLS; for a Redis Cluster,
    /// redis+cluster://[user:password@]host:port[,host:port…] (seed nodes; rediss+cluster:// for TLS).
    /// Default: redis://127.0.0.1:6379.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<Secret>,
    /// File holding the Redis URL (e.g. a mounted Kubernetes secret); instead of --redis-url.
    #[arg(long, env = "REDIS_URL_FILE")]
    pub redis_url_file: Option<PathBuf>,
    /// PEM file of the CA(s) to trust for rediss:// instead of the system's roots (a private CA).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<PathBuf>,
    /// First part of every Redis key.
    #[arg(long, env = "LONGHAUL_QUEUE_PREFIX", default_value = "longhaul")]
    pub queue_prefix: String,
    /// Upper bound on every Redis call; an outage surfaces as an error within this time.
    #[arg(long, env = "LONGHAUL_REDIS_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub redis_timeout: Duration,
    /// Approximate length the events stream is trimmed to.
    #[arg(long, env = "LONGHAUL_EVENTS_MAXLEN", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub events_maxlen: u64,
}

impl QueueArgs {
    /// Queue `name` on the Redis these flags describe, with `tweak` applied to the rest of its
    /// configuration. Further queues share its connection: [`Queue::sibling`].
    ///
    /// # Errors
    /// When the URL or names are invalid.
    pub fn queue(&self, name: &str, tweak: impl FnOnce(&mut QueueConfig)) -> anyhow::Result<Queue> {
        let url = secret_setting(self.redis_url.as_ref(), self.redis_url_file.as_deref(), "REDIS_URL")?
            .unwrap_or_else(|| Secret::new(DEFAULT_REDIS_URL));
        let mut config = QueueConfig {
            prefix: self.queue_prefix.clone(),
            queue: name.to_owned(),
            op_timeout: self.redis_timeout,
            events_maxlen: self.events_maxlen,
            ..QueueConfig::default()
        };
        if let Some(path) = &self.redis_ca_file {
            let pem = std::fs::read(path)
                .with_context(|| format!("cannot read REDIS_CA_FILE {}", path.display()))?;
            if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                bail!("REDIS_CA_FILE {} holds no PEM certificate", path.display());
            }
            config.tls_ca_pem = Some(pem);
        }
        tweak(&mut config);
        Queue::new(url.expose(), config).map_err(|e| {
            let setting = match &e {
                QueueError::Tls(_) => "REDIS_CA_FILE / REDIS_URL",
                // The error never contains the URL itself.
                QueueError::InvalidUrl { .. } => {
                    "REDIS_URL is not a valid Redis URL (redis://… or rediss://…)"
                }
                _ => "invalid queue settings (LONGHAUL_QUEUE_PREFIX, or a queue name)",
            };
            anyhow!(e).context(setting)
        })
    }
}

/// A consumer's name in its Redis consumer group (worker, queue-events).
#[derive(Debug, Clone, Args)]
pub struct ConsumerArgs {
    /// Name in the consumer group; keep it stable across restarts of one pod, so a restarted
    /// process takes back its own pending entries. Default: $HOSTNAME-PID (the process id).
    #[arg(long, env = "LONGHAUL_CONSUMER_NAME")]
    pub consumer_name: Option<String>,
    /// The default name's first part (the pod's name in Kubernetes).
    #[arg(long, env = "HOSTNAME", hide = true)]
    pub hostname: Option<String>,
}

impl ConsumerArgs {
    /// The configured name, or `$HOSTNAME-PID` (`binary-PID` without a host name).
    pub fn name(&self, binary: &str) -> String {
        self.consumer_name.clone().unwrap_or_else(|| {
            format!("{}-{}", self.hostname.as_deref().unwrap_or(binary), std::process::id())
        })
    }
}

/// Application-storage settings.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// Application storage: postgres://… for production, sqlite://path for the embedded default.
    /// Unset: sqlite://longhaul.db in the working directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<Secret>,
    /// File holding the database URL (e.g. a mounted Kubernetes secret); instead of --database-url.
    #[arg(long, env = "DATABASE_URL_FILE")]
    pub database_url_file: Option<PathBuf>,
    /// Connections in the pool.
    #[arg(long, env = "LONGHAUL_DB_POOL", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool: u32,
    /// How long a request waits for a database connection before failing as retryable.
    #[arg(long, env = "LONGHAUL_DB_TIMEOUT", default_value = "2s", value_parser = parse_positive_duration)]
    pub db_timeout: Duration,
}

impl DatabaseArgs {
    /// The configured database URL (`None`: the embedded default).
    ///
    /// # Errors
    /// As [`secret_setting`].
    pub fn url(&self) -> anyhow::Result<Option<Secret>> {
        secret_setting(self.database_url.as_ref(), self.database_url_file.as_deref(), "DATABASE_URL")
    }

    /// The store these flags describe, connected (not migrated).
    ///
    /// # Errors
    /// As [`DatabaseArgs::url`]; when the URL is invalid or the database does not answer.
    pub async fn connect(&self) -> anyhow::Result<Store> {
        let options = StoreOptions { max_connections: self.db_pool, acquire_timeout: self.db_timeout };
        let url = self.url()?;
        Store::connect(url.as_ref().map(Secret::expose), &options)
            .await
            .context("failed to connect to application storage (DATABASE_URL)")
    }

    /// As [`DatabaseArgs::connect`], then applies pending migrations unless `skip` (the
    /// `--skip-migrations` flag of the binary).
    ///
    /// # Errors
    /// As [`DatabaseArgs::connect`]; when a migration fails.
    pub async fn connect_and_migrate(&self, skip: bool) -> anyhow::Result<Store> {
        let store = self.connect().await?;
        if !skip {
            store.migrate().await.context("failed to apply migrations")?;
        }
        Ok(store)
    }
}

/// Settings no binary reads any more. Flattened into the binaries that used to read them, so a
/// deployment still setting one stops at start-up with a message naming what replaced it, instead
/// of running with the setting silently ignored. Hidden from `--help`.
#[derive(Debug, Clone, Args)]
pub struct RetiredArgs {
    /// Was the producer's default and the worker's cap on attempts: two meanings, now two settings.
    #[arg(long = "max-attempts", env = "LONGHAUL_MAX_ATTEMPTS", hide = true, value_parser = retired(RETIRED_MAX_ATTEMPTS))]
    pub max_attempts: Option<String>,
    /// Was the one queue every binary used; queues now come from job kinds.
    #[arg(long = "queue", env = "LONGHAUL_QUEUE", hide = true, value_parser = retired(RETIRED_QUEUE))]
    pub queue: Option<String>,
}

const RETIRED_QUEUE: &str = "LONGHAUL_QUEUE is no longer read: each job kind names its queue; a worker serves \
     the queues in LONGHAUL_QUEUES (default: every queue of its kinds), queue-events tails those in LONGHAUL_QUEUES";

const RETIRED_MAX_ATTEMPTS: &str = "LONGHAUL_MAX_ATTEMPTS is no longer read: set LONGHAUL_DEFAULT_MAX_ATTEMPTS \
     (producer: attempts each new job gets) or LONGHAUL_MAX_ATTEMPTS_CAP (worker: cap on any job's attempts)";

/// A value parser that refuses every value with `message`.
fn retired(message: &'static str) -> impl Fn(&str) -> Result<String, String> + Clone + Send + Sync + 'static {
    move |_| Err(message.to_owned())
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

impl TelemetryArgs {
    /// The telemetry these flags configure: logs on stdout, no Prometheus registry.
    pub fn options(&self) -> TelemetryOptions {
        TelemetryOptions {
            format: self.log_format,
            otlp_endpoint: self.otlp_endpoint.clone(),
            ..TelemetryOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_comes_from_the_value_or_the_file_never_both() {
        let dir = std::env::temp_dir().join(format!("longhaul-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("url");
        std::fs::write(&file, "redis://u:p@h:6379\r\n").expect("write");
        let from_file = secret_setting(None, Some(&file), "REDIS_URL").expect("file").expect("some");
        assert_eq!(from_file.expose(), "redis://u:p@h:6379", "the trailing newline is dropped");
        let value = Secret::new("redis://x");
        assert_eq!(secret_setting(Some(&value), None, "REDIS_URL").expect("value"), Some(value.clone()));
        assert_eq!(secret_setting(None, None, "REDIS_URL").expect("none"), None);
        let both = secret_setting(Some(&value), Some(&file), "REDIS_URL").expect_err("both");
        assert_eq!(both.to_string(), "set either REDIS_URL or REDIS_URL_FILE, not both");
        let missing = secret_setting(None, Some(&dir.join("nope")), "REDIS_URL").expect_err("missing");
        assert!(format!("{missing:#}").starts_with("cannot read REDIS_URL_FILE "), "{missing:#}");
        std::fs::write(&file, " \n").expect("write");
        let empty = secret_setting(None, Some(&file), "REDIS_URL").expect_err("empty");
        assert!(empty.to_string().contains("is empty"), "{empty}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn error_lines_do_not_repeat_a_quoted_cause() {
        #[derive(Debug)]
        struct Inner;
        impl std::fmt::Display for Inner {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("pool timed out")
            }
        }
        impl std::error::Error for Inner {}
        #[derive(Debug)]
        struct Outer(Inner);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "database error: {}", self.0)
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Outer(Inner)).context("failed to connect (DATABASE_URL)");
        assert_eq!(error_line(&e), "failed to connect (DATABASE_URL): database error: pool timed out");
        assert_eq!(error_line(&anyhow!("two\nlines")), "two lines");
    }
}

/// One queue a process serves (`--queues name[=concurrency],…`), with how many of its jobs run
/// at once when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueChoice {
    /// The queue (or partition) name.
    pub name: String,
    /// Jobs of it run at once (the process's default when `None`).
    pub concurrency: Option<u32>,
}

/// Parses `name` or `name=concurrency` (concurrency 1–4096).
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_queue_choice(s: &str) -> Result<QueueChoice, String> {
    let (name, concurrency) = match s.split_once('=') {
        None => (s, None),
        Some((name, n)) => {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (1..=4096).contains(n))
                .ok_or_else(|| format!("{n:?} is not a concurrency from 1 to 4096"))?;
            (name, Some(n))
        }
    };
    longhaul_core::kind::validate_queue_name(name).map_err(|e| format!("queue {name:?}: {e}"))?;
    Ok(QueueChoice { name: name.to_owned(), concurrency })
}

/// Parses a queue (or partition) name: 1–64 characters from the tenant ids' safe set.
///
/// # Errors
/// A message naming what is wrong.
pub fn parse_queue_name(s: &str) -> Result<String, String> {
    longhaul_core::kind::validate_queue_name(s).map_err(|e| format!("queue {s:?}: {e}"))?;
    Ok(s.to_owned())
}
