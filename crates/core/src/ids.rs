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
//!   over a domain tag and the length-prefixed inputs: `("longhaul/job/v1/ticket", tenant, ticket,
//!   revision)` or `("longhaul/job/v1/key", tenant, idempotency key)`.
//! * **Operation id**: `op_` followed by 32 lowercase hex digits, from `("longhaul/op/v1", job id,
//!   stage, effect)` the same way.
//!
//! Every field is prefixed by its length (8 bytes, little endian) before hashing, so no two
//! different inputs produce the same byte string. The same inputs always give the same id, on
//! every machine and in every version that keeps the `v1` tag.

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

fn validate_safe(kind: &'static str, s: &str, max: usize) -> Result<(), IdError> {
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

macro_rules! derived_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// Parses an id in the documented format (for ids read back from storage or a queue).
            ///
            /// # Errors
            /// [`IdError::Malformed`] when `s` is not the prefix followed by 32 lowercase hex digits.
            pub fn parse(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                parse_derived($kind, $prefix, &s)?;
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

derived_id!(
    /// The stable id of one logical triage request. See the [module docs](self) for the format.
    ///
    /// ```
    /// use longhaul_core::{JobId, TenantId, TicketId};
    /// let tenant = TenantId::parse("acme").unwrap();
    /// let ticket = TicketId::parse("SUP-1").unwrap();
    /// let a = JobId::for_ticket(&tenant, &ticket, 3);
    /// assert_eq!(a, JobId::for_ticket(&tenant, &ticket, 3)); // stable
    /// assert_ne!(a, JobId::for_ticket(&tenant, &ticket, 4)); // a new revision is a new job
    /// assert!(a.as_str().starts_with("job_") && a.as_str().len() == 36);
    /// ```
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
    /// The job id for triaging revision `revision` of a ticket.
    pub fn for_ticket(tenant: &TenantId, ticket: &TicketId, revision: u64) -> Self {
        let hex = derive_hex(
            "longhaul/job/v1/ticket",
            &[tenant.as_str().as_bytes(), ticket.as_str().as_bytes(), &revision.to_le_bytes()],
        );
        Self(format!("{}{hex}", Self::PREFIX))
    }

    /// The job id for a request carrying a client `Idempotency-Key`.
    pub fn for_idempotency_key(tenant: &TenantId, key: &IdempotencyKey) -> Self {
        let hex = derive_hex("longhaul/job/v1/key", &[tenant.as_str().as_bytes(), key.as_str().as_bytes()]);
        Self(format!("{}{hex}", Self::PREFIX))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(s: &str) -> TenantId {
        TenantId::parse(s).expect("valid tenant")
    }
    fn ticket(s: &str) -> TicketId {
        TicketId::parse(s).expect("valid ticket")
    }

    #[test]
    fn tenant_and_ticket_validation_table() {
        let long_tenant = "a".repeat(MAX_TENANT_ID_LEN + 1);
        let long_ticket = "t".repeat(MAX_TICKET_ID_LEN + 1);
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("tenant", "acme", None),
            ("tenant", "acme-eu_1.prod:x", None),
            ("tenant", "", Some("tenant id must not be empty")),
            ("tenant", &long_tenant, Some("tenant id is 65 characters long; at most 64 are allowed")),
            ("tenant", "acme corp", Some("tenant id contains ' ' at position 4")),
            ("tenant", "-acme", Some("tenant id contains '-' at position 0")),
            ("tenant", "acmé", Some("tenant id contains 'é' at position 3")),
            ("tenant", "a/b", Some("'/' at position 1")),
            ("ticket", "SUP-1042", None),
            ("ticket", &"t".repeat(MAX_TICKET_ID_LEN), None),
            ("ticket", &long_ticket, Some("ticket id is 129 characters long")),
            ("ticket", "x\ny", Some("ticket id contains '\\n' at position 1")),
            ("ticket", "{triage}", Some("'{' at position 0")),
        ];
        for (kind, input, want) in cases {
            let got = match *kind {
                "tenant" => TenantId::parse(*input).map(|_| ()),
                _ => TicketId::parse(*input).map(|_| ()),
            };
            match (want, got) {
                (None, Ok(())) => {}
                (Some(w), Err(e)) => {
                    assert!(e.to_string().contains(w), "{kind} {input:?}: {e} lacks {w:?}")
                }
                (w, g) => panic!("{kind} {input:?}: want {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn idempotency_key_validation_table() {
        let cases: &[(&str, bool)] = &[
            ("abc", true),
            ("550e8400-e29b-41d4-a716-446655440000", true),
            ("!~{}[]", true),
            ("", false),
            ("with space", false),
            ("tab\t", false),
            ("ünïcode", false),
            (&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN), true),
            (&"k".repeat(MAX_IDEMPOTENCY_KEY_LEN + 1), false),
        ];
        for (input, ok) in cases {
            assert_eq!(IdempotencyKey::parse(*input).is_ok(), *ok, "{input:?}");
        }
    }

    #[test]
    fn job_ids_are_stable_and_distinct() {
        let a = JobId::for_ticket(&tenant("acme"), &ticket("T-1"), 1);
        // Pinned: changing the derivation would silently break deduplication of live jobs.
        assert_eq!(a.as_str(), JobId::for_ticket(&tenant("acme"), &ticket("T-1"), 1).as_str());
        assert_eq!(JobId::parse(a.as_str()), Ok(a.clone()));
        let others = [
            JobId::for_ticket(&tenant("acme"), &ticket("T-1"), 2),
            JobId::for_ticket(&tenant("acme"), &ticket("T-2"), 1),
            JobId::for_ticket(&tenant("acme2"), &ticket("T-1"), 1),
            // Field boundaries matter: ("acm", "eT-1") must not collide with ("acme", "T-1").
            JobId::for_ticket(&tenant("acm"), &ticket("eT-1"), 1),
            JobId::for_idempotency_key(&tenant("acme"), &IdempotencyKey::parse("T-1").expect("key")),
        ];
        for other in &others {
            assert_ne!(&a, other);
        }
    }

    #[test]
    fn job_id_format_is_pinned() {
        // Regression pin: these values must never change within the v1 tag.
        let id = JobId::for_ticket(&tenant("acme"), &ticket("SUP-1"), 1);
        assert_eq!(id.as_str(), PINNED_JOB_ID);
        let op = OperationId::derive(&id, "apply", "webhook");
        assert_eq!(op.as_str(), PINNED_OP_ID);
    }

    // Computed independently from the documented format (Python hashlib), not copied from this code.
    const PINNED_JOB_ID: &str = "job_db718bad4249ee9f433bba3033392195";
    const PINNED_OP_ID: &str = "op_aa9a90c0e481ea75098bfd23e71841e0";

    #[test]
    fn derived_id_parse_table() {
        let cases: &[(&str, bool)] = &[
            ("job_0123456789abcdef0123456789abcdef", true),
            ("job_0123456789ABCDEF0123456789abcdef", false),
            ("job_0123456789abcdef0123456789abcde", false),
            ("op_0123456789abcdef0123456789abcdef", false),
            ("", false),
            ("job_", false),
        ];
        for (input, ok) in cases {
            assert_eq!(JobId::parse(*input).is_ok(), *ok, "{input:?}");
        }
        let err = JobId::parse("nope").expect_err("malformed");
        assert_eq!(
            err.to_string(),
            "\"nope\" is not a job id: expected \"job_\" followed by 32 lowercase hex digits"
        );
    }

    #[test]
    fn serde_validates_on_the_way_in() {
        let ok: TenantId = serde_json::from_str("\"acme\"").expect("valid");
        assert_eq!(ok.as_str(), "acme");
        let err = serde_json::from_str::<TenantId>("\"a b\"").expect_err("invalid");
        assert!(err.to_string().contains("tenant id contains ' '"), "{err}");
        let err = serde_json::from_str::<JobId>("\"job_x\"").expect_err("invalid");
        assert!(err.to_string().contains("not a job id"), "{err}");
    }
}
