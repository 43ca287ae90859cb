//! Operators: the credentials of the operator API (`/admin/v1`) and of nobody else. An operator
//! key is a 256-bit random token like a tenant's API key, with its own prefix
//! ([`OPERATOR_KEY_PREFIX`]), shown once and stored as a SHA-256 hash in `operator_keys` — a table
//! of its own, so a tenant's key never authenticates an operator and an operator's key never
//! authenticates a tenant. No cache: the operator API is not a hot path, and a revoked key stops
//! working at once.

use chrono::{DateTime, Utc};

use crate::tenants::{constant_time_eq, hash_key, random_token};
use crate::{Store, StoreError, now};

const INSERT: &str = include_str!("../sql/common/operators/insert.sql");
const AUTHENTICATE: &str = include_str!("../sql/common/operators/authenticate.sql");
const SELECT_ALL: &str = include_str!("../sql/common/operators/select_all.sql");
const DELETE: &str = include_str!("../sql/common/operators/delete.sql");

/// The prefix of every operator key (a tenant's starts with
/// [`API_KEY_PREFIX`](crate::tenants::API_KEY_PREFIX)).
pub const OPERATOR_KEY_PREFIX: &str = "lho_";

/// An operator's name: 1–64 of `A–Z a–z 0–9 - _ . @`. It is who audit rows say asked
/// (`operator:<name>`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OperatorName(String);

impl OperatorName {
    /// Checks `name`.
    ///
    /// # Errors
    /// A message saying what is wrong with it.
    pub fn parse(name: impl Into<String>) -> Result<Self, String> {
        let name = name.into();
        if name.is_empty() || name.len() > 64 {
            return Err(format!("an operator name has 1 to 64 characters, got {}", name.len()));
        }
        if let Some(c) =
            name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@')))
        {
            return Err(format!("{c:?} is not allowed in an operator name (A-Z a-z 0-9 - _ . @)"));
        }
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for OperatorName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An operator (never its key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    /// Its name.
    pub name: String,
    /// When its key was issued.
    pub created_at: DateTime<Utc>,
}

/// A freshly issued operator key. Shown to its owner once; its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct OperatorKey(String);

impl OperatorKey {
    /// The secret, to print once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for OperatorKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorKey(<redacted>)")
    }
}

#[derive(sqlx::FromRow)]
struct OperatorRow {
    name: String,
    created_at: DateTime<Utc>,
}

impl Store {
    /// Creates operator `name` and issues its key (returned once, stored only as a hash).
    ///
    /// # Errors
    /// [`StoreError::Database`], including a unique violation when the operator exists.
    pub async fn create_operator(&self, name: &OperatorName) -> Result<(Operator, OperatorKey), StoreError> {
        let key = OperatorKey(random_token(OPERATOR_KEY_PREFIX)?);
        let hash = hash_key(key.expose());
        let now = now();
        self.db.execute(INSERT, &[name.as_str().into(), hash.as_slice().into(), now.into()]).await?;
        Ok((Operator { name: name.as_str().to_owned(), created_at: now }, key))
    }

    /// The name of the operator owning `key`, or `None` for a key that is no operator's (a
    /// tenant's key included).
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn authenticate_operator(&self, key: &str) -> Result<Option<String>, StoreError> {
        let hash = hash_key(key);
        let row: Option<(String, Vec<u8>)> =
            self.db.fetch_optional(AUTHENTICATE, &[hash.as_slice().into()]).await?;
        Ok(row.filter(|(_, stored)| constant_time_eq(stored, &hash)).map(|(name, _)| name))
    }

    /// Every operator, by name.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn operators(&self) -> Result<Vec<Operator>, StoreError> {
        let rows: Vec<OperatorRow> = self.db.fetch_all(SELECT_ALL, &[]).await?;
        Ok(rows.into_iter().map(|r| Operator { name: r.name, created_at: r.created_at }).collect())
    }

    /// Revokes operator `name`'s key; whether there was one.
    ///
    /// # Errors
    /// [`StoreError::Database`].
    pub async fn revoke_operator(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.db.execute(DELETE, &[name.into()]).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_names_are_checked() {
        for ok in ["ops", "alice@example.com", "on-call_1.b", &"a".repeat(64)] {
            assert_eq!(OperatorName::parse(ok).map(|n| n.to_string()), Ok(ok.to_owned()));
        }
        for bad in ["", "has space", "x/y", "é", &"a".repeat(65)] {
            assert!(OperatorName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(format!("{:?}", OperatorKey("lho_x".into())), "OperatorKey(<redacted>)");
    }
}
