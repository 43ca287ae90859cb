//! Identity: validated tenant ids, ticket ids and client idempotency keys, and the ids derived from
//! them — stable job ids and operation ids.
//!
//! # Formats
//!
//! * **Tenant id**: 1–64 characters, **ticket id**: 1–128 characters, from the safe set
//!   `A–Z a–z 0–9 - _ . :`, starting with a letter or digit. The set is safe in URLs, Redis keys,
//!   log lines and file names without escaping.
//! * **Idempotency key** (client-supplied `Idempotency-Key`): 1–255 visible ASCII characters
//!   (`!` through `~`), no spaces or control characters.
//! * **Job id**: `job_` followed by 32 lowercase hex digits — the first 128 bits of a SHA-256 digest
//!   over a domain tag and the length-prefixed inputs: `("longhaul/job/v2", tenant, kind, key
//!   source, key)` ([`JobId::derive`]); a kind may keep the ids of an earlier scheme
//!   ([`JobId::from_fields`]; triage keeps `("longhaul/job/v1/ticket", tenant, ticket, revision)`
//!   and `("longhaul/job/v1/key", tenant, idempotency key)`).
//! * **Operation id**: `op_` followed by 32 lowercase hex digits, from `("longhaul/op/v1", job id,
//!   stage, effect)` the same way.
//!
//! Every field is prefixed by its length (8 bytes, little endian) before hashing, so no two
//! different inputs produce the same byte string. The same inputs always give the same id, on
//! every machine and in every version that keeps the `v1` tag.
//!
//! Each id's OpenAPI schema ([`utoipa::ToSchema`]) states its format: length and pattern.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Longest accepted tenant id, in characters.
pub const MAX_TENANT_ID_LEN: usize = 64;
/// Longest accepted ticket id, in characters.
pub const MAX_TICKET_ID_LEN: usize = 128;
/// Longest accepted idempotency key, in characters.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The value is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
    },
    /// The value is longer than its kind allows.
    #[error("{kind} is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// Its length in characters.
        len: usize,
        /// The maximum length.
        max: usize,
    },
    /// The value contains a character outside its kind's allowed set.
    #[error("{kind} contains {ch:?} at position {index}; allowed: {allowed}")]
    InvalidChar {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// The offending character.
        ch: char,
        /// Its position (0-based, in characters).
        index: usize,
        /// A description of the allowed set.
        allowed: &'static str,
    },
    /// A derived id (job or operation id) does not have the documented shape.
    #[error("{value:?} is not a {kind}: expected {prefix:?} followed by 32 lowercase hex digits")]
    Malformed {
        /// Which kind of identifier was being parsed.
        kind: &'static str,
        /// The expected prefix.
        prefix: &'static str,
        /// The rejected value (cut to 80 characters).
        value: String,
    },
}

const SAFE_SET: &str = "ASCII letters, digits, '-', '_', '.' and ':', starting with a letter or digit";
const KEY_SET: &str = "visible ASCII characters ('!' to '~'), no spaces";

pub(crate) fn validate_safe(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    validate_len(kind, s, max)?;
    for (index, ch) in s.chars().enumerate() {
        let ok = ch.is_ascii_alphanumeric() || (index > 0 && matches!(ch, '-' | '_' | '.' | ':'));
        if !ok {
            return Err(IdError::InvalidChar { kind, ch, index, allowed: SAFE_SET });
        }
    }
    Ok(())
}

fn validate_len(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let len = s.chars().count();
    if len > max {
        return Err(IdError::TooLong { kind, len, max });
    }
    Ok(())
}

/// A validated string id: the newtype, `parse` with `$validate`, and the conversions every id has
/// (`Display`, `FromStr`, serde through `String`, `AsRef<str>`).
macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $validate:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `s` and wraps it.
            ///
            /// # Errors
            /// [`IdError`] saying exactly what is wrong with `s`.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                let validate: fn(&'static str, &str) -> Result<(), IdError> = $validate;
                validate($kind, &s)?;
                Ok(Self(s))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A tenant: 1–64 characters from the safe set (see the [module docs](self)).
    ///
    /// ```
    /// use longhaul_core::TenantId;
    /// assert!(TenantId::parse("acme").is_ok());
    /// assert!(TenantId::parse("acme corp").is_err());
    /// ```
    TenantId,
    "tenant id",
    |kind, s| validate_safe(kind, s, MAX_TENANT_ID_LEN)
);

string_id!(
    /// A ticket within a tenant: 1–128 characters from the safe set (see the [module docs](self)).
    ///
    /// ```
    /// use longhaul_core::TicketId;
    /// assert_eq!(TicketId::parse("SUP-1042").unwrap().as_str(), "SUP-1042");
    /// ```
    TicketId,
    "ticket id",
    |kind, s| validate_safe(kind, s, MAX_TICKET_ID_LEN)
);

string_id!(
    /// A client-supplied idempotency key: 1–255 visible ASCII characters.
    ///
    /// ```
    /// use longhaul_core::IdempotencyKey;
    /// assert!(IdempotencyKey::parse("7f3c9e4e-retry-ok").is_ok());
    /// assert!(IdempotencyKey::parse("has space").is_err());
    /// ```
    IdempotencyKey,
    "idempotency key",
    |kind, s| {
        validate_len(kind, s, MAX_IDEMPOTENCY_KEY_LEN)?;
        match s.chars().enumerate().find(|(_, c)| !c.is_ascii_graphic()) {
            Some((index, ch)) => Err(IdError::InvalidChar { kind, ch, index, allowed: KEY_SET }),
            None => Ok(()),
        }
    }
);

/// SHA-256 over a domain tag and length-prefixed fields; returns the first 128 bits as hex.
fn derive_hex(tag: &str, fields: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for field in std::iter::once(&tag.as_bytes()).chain(fields) {
        hasher.update((field.len() as u64).to_le_bytes());
        hasher.update(field);
    }
    let digest = hasher.finalize();
    let mut out = String::with_capacity(32);
    for byte in &digest[..16] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn parse_derived(kind: &'static str, prefix: &'static str, s: &str) -> Result<(), IdError> {
    let ok =
        s.strip_prefix(prefix).is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| HEX.contains(&b)));
    if ok { Ok(()) } else { Err(IdError::Malformed { kind, prefix, value: s.chars().take(80).collect() }) }
}

/// A derived id: [`string_id!`] with the validator that checks the prefix and 32 hex digits, and
/// the prefix as a constant.
macro_rules! derived_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        string_id!($(#[$doc])* $name, $kind, |kind, s| parse_derived(kind, $prefix, s));

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;
        }
    };
}

derived_id!(
    /// The stable id of one logical job. See the [module docs](self) for the format.
    JobId,
    "job id",
    "job_"
);

derived_id!(
    /// The id of one side effect of one job: `(job id, stage, effect)`. A retried job derives the
    /// same id, finds the effect in the operation log and does not run it again.
    ///
    /// ```
    /// use longhaul_core::{JobId, OperationId};
    /// let job = JobId::parse("job_0123456789abcdef0123456789abcdef").unwrap();
    /// let op = OperationId::derive(&job, "apply", "webhook");
    /// assert_eq!(op, OperationId::derive(&job, "apply", "webhook"));
    /// assert_ne!(op, OperationId::derive(&job, "apply", "ticket-update"));
    /// ```
    OperationId,
    "operation id",
    "op_"
);

impl JobId {
    /// The job id of a job of `kind` submitted by `tenant` under `key`: from
    /// `("longhaul/job/v2", tenant, kind, key source, key)`.
    ///
    /// ```
    /// use longhaul_core::{JobId, TenantId, kind::JobKey};
    /// let tenant = TenantId::parse("acme").unwrap();
    /// let key = JobKey::Derived("doc-7".into());
    /// let a = JobId::derive(&tenant, "summarize", &key);
    /// assert_eq!(a, JobId::derive(&tenant, "summarize", &key)); // stable
    /// assert_ne!(a, JobId::derive(&tenant, "export", &key)); // another kind, another job
    /// assert!(a.as_str().starts_with("job_") && a.as_str().len() == 36);
    /// ```
    pub fn derive(tenant: &TenantId, kind: &str, key: &crate::kind::JobKey) -> Self {
        Self::from_fields(
            "longhaul/job/v2",
            &[tenant.as_str().as_bytes(), kind.as_bytes(), key.source().as_bytes(), key.as_str().as_bytes()],
        )
    }

    /// A job id from a domain tag and fields, hashed as described in the [module docs](self): for
    /// a kind that keeps the ids of a scheme it had before kinds existed (see
    /// [`crate::kind::JobKind::job_id`]).
    pub fn from_fields(tag: &str, fields: &[&[u8]]) -> Self {
        Self(format!("{}{}", Self::PREFIX, derive_hex(tag, fields)))
    }

    /// The job id a client `Idempotency-Key` gave before kinds existed: from
    /// `("longhaul/job/v1/key", tenant, key)`.
    pub fn for_idempotency_key(tenant: &TenantId, key: &IdempotencyKey) -> Self {
        Self::from_fields("longhaul/job/v1/key", &[tenant.as_str().as_bytes(), key.as_str().as_bytes()])
    }
}

impl OperationId {
    /// The operation id of side effect `effect` in stage `stage` of job `job`.
    pub fn derive(job: &JobId, stage: &str, effect: &str) -> Self {
        let hex =
            derive_hex("longhaul/op/v1", &[job.as_str().as_bytes(), stage.as_bytes(), effect.as_bytes()]);
        Self(format!("{}{hex}", Self::PREFIX))
    }
}

/// The OpenAPI schema of a string id: `description`, its length bounds and its `pattern`.
macro_rules! string_schema {
    ($name:ident, $description:expr, $min:expr, $max:expr, $pattern:expr) => {
        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::schema::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .min_length(Some($min))
                    .max_length(Some($max))
                    .pattern(Some($pattern))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The safe set as a regular expression: a letter or digit, then letters, digits, `-`, `_`, `.`, `:`.
const SAFE_PATTERN: &str = "^[A-Za-z0-9][A-Za-z0-9._:-]*$";

string_schema!(
    TenantId,
    "A tenant id: 1–64 characters from A–Z a–z 0–9 - _ . :, starting with a letter or digit.",
    1,
    MAX_TENANT_ID_LEN,
    SAFE_PATTERN
);
string_schema!(
    TicketId,
    "A ticket id: 1–128 characters from A–Z a–z 0–9 - _ . :, starting with a letter or digit.",
    1,
    MAX_TICKET_ID_LEN,
    SAFE_PATTERN
);
string_schema!(
    IdempotencyKey,
    "A client idempotency key: 1–255 visible ASCII characters (! to ~), no spaces.",
    1,
    MAX_IDEMPOTENCY_KEY_LEN,
    "^[!-~]+$"
);
string_schema!(
    JobId,
    "A job id: `job_` and 32 lowercase hex digits, stable for the tenant, kind and key.",
    36,
    36,
    "^job_[0-9a-f]{32}$"
);

#[cfg(test)]
mod tests;
