//! Job kinds: what a user declares about one kind of job — its name, typed input and output, its
//! stages and their weights, its queue, attempts, backoff and time limits — and how a submission
//! of it is validated and given its stable job id ([`Prepared`]).
//!
//! A kind is a type implementing [`JobKind`]; it holds no resources, so the producer (which only
//! validates and records) and the worker (which runs it, see [`crate::job`]) register the same type.
//!
//! A kind may describe its input as a JSON Schema ([`JobKind::input_schema`]; [`schema_of`] makes
//! one from a type deriving [`utoipa::ToSchema`]): the producer's OpenAPI document shows it.

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{IdempotencyKey, JobId, TenantId};

/// Longest accepted kind name, in characters.
pub const MAX_KIND_LEN: usize = 64;

/// One named stage of a kind and its share of the job's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stage {
    /// The stage name (also part of its effects' operation ids: never rename a stage of a kind
    /// that has jobs in flight).
    pub name: &'static str,
    /// Its weight: a stage of weight 2 moves progress twice as far as one of weight 1.
    pub weight: u32,
}

impl Stage {
    /// Stage `name` of weight `weight`.
    pub const fn new(name: &'static str, weight: u32) -> Self {
        Self { name, weight }
    }
}

/// How jobs of a kind are queued, retried and timed. Build with [`KindOptions::new`] and the
/// `with_*` methods; what is not set falls back to the worker's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindOptions {
    /// The queue (Redis stream) its jobs go to; a worker serves a chosen set of queues.
    pub queue: &'static str,
    /// Its stages, in order.
    pub stages: &'static [Stage],
    /// Attempts allowed in all (the producer's default when `None`; the worker's cap applies).
    pub max_attempts: Option<u32>,
    /// Backoff base and cap between attempts (the worker's when `None`).
    pub backoff: Option<(Duration, Duration)>,
    /// Longest one stage may run; past it the attempt fails as retryable.
    pub stage_timeout: Option<Duration>,
    /// Longest a job may take from its submission to its end; past it the job fails for good.
    pub deadline: Option<Duration>,
}

impl KindOptions {
    /// Jobs queued on `queue`, running `stages` in order.
    pub const fn new(queue: &'static str, stages: &'static [Stage]) -> Self {
        Self { queue, stages, max_attempts: None, backoff: None, stage_timeout: None, deadline: None }
    }

    /// Allows `n` attempts in all.
    #[must_use]
    pub const fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n);
        self
    }

    /// Backs off from `base` up to `cap` between attempts.
    #[must_use]
    pub const fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.backoff = Some((base, cap));
        self
    }

    /// Fails an attempt whose stage runs longer than `timeout` (retryable).
    #[must_use]
    pub const fn with_stage_timeout(mut self, timeout: Duration) -> Self {
        self.stage_timeout = Some(timeout);
        self
    }

    /// Fails a job for good once `deadline` has passed since its submission.
    #[must_use]
    pub const fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Progress (0–100) at the start of stage `index` and at its end.
    pub fn stage_span(&self, index: usize) -> (u8, u8) {
        let total: u64 = self.stages.iter().map(|s| u64::from(s.weight)).sum::<u64>().max(1);
        let before: u64 = self.stages.iter().take(index).map(|s| u64::from(s.weight)).sum();
        let this = self.stages.get(index).map_or(0, |s| u64::from(s.weight));
        let pct = |w: u64| u8::try_from((w * 100 / total).min(100)).unwrap_or(100);
        (pct(before), pct(before + this))
    }
}

/// A kind of job. Implement it on a unit type; register it with the producer (to validate and
/// record submissions) and, through its [`crate::job::Pipeline`], with the worker.
pub trait JobKind: Send + Sync + 'static {
    /// The kind's stable name: what clients submit as `kind`. 1–64 characters from the safe set
    /// of tenant ids.
    const NAME: &'static str;
    /// What a submission carries (the `input` of `POST /v1/jobs`), checked by serde and
    /// [`JobKind::validate`].
    type Input: Serialize + DeserializeOwned + Send + Sync + 'static;
    /// What a completed job stores as its output.
    type Output: Serialize + DeserializeOwned + Send + 'static;

    /// Queue, stages and limits.
    fn options() -> KindOptions;

    /// A key derived from the input, when the kind has a natural one: two submissions with the
    /// same derived key are the same job. `None`: without a client `Idempotency-Key`, every
    /// submission is a new job.
    fn key(_input: &Self::Input) -> Option<String> {
        None
    }

    /// Checks what serde cannot; the error names the field.
    ///
    /// # Errors
    /// An [`InputError`] naming the first field that is wrong.
    fn validate(_input: &Self::Input) -> Result<(), InputError> {
        Ok(())
    }

    /// The job id for `key` submitted by `tenant`: [`JobId::derive`] unless the kind keeps ids of
    /// its own from before kinds existed.
    fn job_id(tenant: &TenantId, key: &JobKey, _input: &Self::Input) -> JobId {
        JobId::derive(tenant, Self::NAME, key)
    }

    /// The JSON Schema (as OpenAPI 3.1 takes it) of [`JobKind::Input`], for the producer's OpenAPI
    /// document: documentation only — submissions are checked by serde and
    /// [`JobKind::validate`], never against it. By default [`unconstrained_input_schema`]; a kind
    /// whose input derives [`utoipa::ToSchema`] returns [`schema_of`] it, any other writes it
    /// (`serde_json::json!`). It must be a JSON object, self-contained (no `$ref` to the
    /// document), or the registry refuses the kind.
    fn input_schema() -> serde_json::Value {
        unconstrained_input_schema(Self::NAME)
    }
}

/// The input schema of a kind that describes none: any JSON value, said so.
pub fn unconstrained_input_schema(kind: &str) -> serde_json::Value {
    serde_json::json!({
        "description": format!(
            "The input of a `{kind}` job. The kind describes no schema: any JSON value is shown here, \
             and the kind checks what it accepts."
        )
    })
}

/// The JSON Schema of `T` as [`JobKind::input_schema`] returns it: its OpenAPI schema, with every
/// schema it refers to (`#/components/schemas/…`) written in place, so it stands alone. A type
/// that refers to itself keeps, at the second level, an unconstrained schema.
pub fn schema_of<T: utoipa::ToSchema>() -> serde_json::Value {
    let mut named = Vec::new();
    T::schemas(&mut named);
    let named: std::collections::BTreeMap<String, serde_json::Value> = named
        .into_iter()
        .map(|(name, schema)| (name, serde_json::to_value(schema).unwrap_or_default()))
        .collect();
    let mut root = serde_json::to_value(T::schema()).unwrap_or_default();
    inline_refs(&mut root, &named, &mut Vec::new());
    root
}

/// Replaces each `{"$ref": "#/components/schemas/<name>"}` in `value` with `named[name]`, itself
/// inlined; `open` holds the names being inlined (a reference back to one becomes `{}`).
fn inline_refs(
    value: &mut serde_json::Value,
    named: &std::collections::BTreeMap<String, serde_json::Value>,
    open: &mut Vec<String>,
) {
    const PREFIX: &str = "#/components/schemas/";
    match value {
        serde_json::Value::Object(map) => {
            let target = map.get("$ref").and_then(|r| r.as_str()).and_then(|r| r.strip_prefix(PREFIX));
            if let Some(name) = target.map(str::to_owned) {
                let mut schema = match named.get(&name) {
                    Some(schema) if !open.contains(&name) => schema.clone(),
                    _ => serde_json::json!({}),
                };
                open.push(name);
                inline_refs(&mut schema, named, open);
                open.pop();
                map.remove("$ref");
                // Keywords beside the reference (a field's description) win over the target's.
                if let serde_json::Value::Object(target) = schema {
                    for (k, v) in target {
                        map.entry(k).or_insert(v);
                    }
                }
                return;
            }
            for v in map.values_mut() {
                inline_refs(v, named, open);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| inline_refs(v, named, open)),
        _ => {}
    }
}

/// Where a job's key came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobKey {
    /// The client's `Idempotency-Key`.
    Client(IdempotencyKey),
    /// Derived by the kind from the input ([`JobKind::key`]).
    Derived(String),
    /// Neither: a random key, so the submission is a job of its own.
    Generated(String),
}

impl JobKey {
    /// The key's text, as stored on the record.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Client(k) => k.as_str(),
            Self::Derived(k) | Self::Generated(k) => k,
        }
    }

    /// The source's tag in the job id's derivation.
    pub(crate) fn source(&self) -> &'static str {
        match self {
            Self::Client(_) => "client",
            Self::Derived(_) => "derived",
            Self::Generated(_) => "generated",
        }
    }
}

/// Why a submission's input is rejected: the field (a JSON path such as `input.chunks[2]`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    /// The offending field's path.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// Field `field` is wrong because `message`.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// A submission validated and keyed: what the producer records and enqueues.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The kind's name.
    pub kind: &'static str,
    /// The stable job id.
    pub job_id: JobId,
    /// The key the id was derived from.
    pub key: JobKey,
    /// The input, as the kind's type serialises it.
    pub input: serde_json::Value,
    /// The kind's queue.
    pub queue: &'static str,
    /// The kind's attempt allowance, if it sets one.
    pub max_attempts: Option<u32>,
}

/// Validates `input` as kind `K`'s input and derives its job id: the client's key if given,
/// else the kind's derived key, else `generated` (a fresh random key).
///
/// # Errors
/// [`InputError`] naming the first wrong field, with paths under `input`.
pub fn prepare<K: JobKind>(
    tenant: &TenantId,
    input: serde_json::Value,
    client_key: Option<IdempotencyKey>,
    generated: impl FnOnce() -> String,
) -> Result<Prepared, InputError> {
    let typed: K::Input = decode_input::<K>(input)?;
    K::validate(&typed).map_err(|e| InputError::new(format!("input.{}", e.field), e.message))?;
    let key = match (client_key, K::key(&typed)) {
        (Some(client), _) => JobKey::Client(client),
        (None, Some(derived)) => JobKey::Derived(derived),
        (None, None) => JobKey::Generated(generated()),
    };
    let job_id = K::job_id(tenant, &key, &typed);
    let input = serde_json::to_value(&typed)
        .map_err(|e| InputError::new("input", format!("cannot be stored: {e}")))?;
    let options = K::options();
    Ok(Prepared {
        kind: K::NAME,
        job_id,
        key,
        input,
        queue: options.queue,
        max_attempts: options.max_attempts,
    })
}

/// Decodes `input` as `K::Input`, naming the field serde stopped at.
///
/// # Errors
/// [`InputError`] with the path of the offending field under `input`.
pub fn decode_input<K: JobKind>(input: serde_json::Value) -> Result<K::Input, InputError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let field = match path.as_str() {
            "." => "input".to_owned(),
            p if p.starts_with('[') => format!("input{p}"),
            p => format!("input.{p}"),
        };
        InputError::new(field, e.into_inner().to_string())
    })
}

/// A fresh random key (128 bits, hex) for a submission with neither a client key nor a derived
/// one ([`JobKey::Generated`]).
pub fn random_key() -> String {
    let mut bytes = [0u8; 16];
    // The OS source does not fail on the platforms longhaul runs on; should it, the time keeps
    // keys distinct enough for a job of its own.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        bytes = nanos.as_nanos().to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a queue (or partition) name: 1–64 characters from the tenant ids' safe set.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_queue_name(name: &str) -> Result<(), String> {
    crate::ids::validate_safe("queue name", name, MAX_KIND_LEN).map_err(|e| e.to_string())
}

/// Checks a kind name: 1–64 characters from the tenant ids' safe set.
///
/// # Errors
/// A message saying what is wrong.
pub fn validate_kind_name(name: &str) -> Result<(), String> {
    crate::ids::validate_safe("kind", name, MAX_KIND_LEN).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests;
