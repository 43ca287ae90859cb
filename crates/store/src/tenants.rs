//! Tenants, with API keys stored as SHA-256 hashes, and the cache of recently verified keys.
//!
//! API keys are 256-bit random tokens, so a fast hash is enough: nobody can brute-force the
//! preimage, and authentication stays one indexed lookup on the request path — and none at all for
//! a key verified in the last [`AUTH_CACHE_TTL`] (the hot path submits two requests per ticket).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use longhaul_core::TenantId;
use sha2::{Digest, Sha256};

use crate::{Store, StoreError, now};

const INSERT: &str = include_str!("../sql/common/tenants/insert.sql");
const SELECT: &str = include_str!("../sql/common/tenants/select.sql");
const AUTHENTICATE: &str = include_str!("../sql/common/tenants/authenticate.sql");

/// How long a verified API key is trusted without asking the database again. Keys are never
/// revoked through the API; a key deleted from the database by hand stops working after this long.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(10);

/// At most this many keys are remembered; the cache starts over when full.
const AUTH_CACHE_MAX: usize = 10_000;

/// Recently verified keys, by SHA-256 hash (the keys themselves are never kept). Only successful
/// lookups are remembered, so unknown keys cannot grow it.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<Vec<u8>, (TenantId, Instant)>>,
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCache")
    }
}

impl AuthCache {
    fn get(&self, hash: &[u8], now: Instant) -> Option<TenantId> {
        let entries = self.entries.lock().ok()?;
        let (tenant, at) = entries.get(hash)?;
        (now.saturating_duration_since(*at) < AUTH_CACHE_TTL).then(|| tenant.clone())
    }

    fn put(&self, hash: Vec<u8>, tenant: TenantId, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= AUTH_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (tenant, now));
        }
    }
}

/// The prefix of every API key.
pub const API_KEY_PREFIX: &str = "lh_";

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    /// Its id.
    pub tenant_id: TenantId,
    /// A display name.
    pub name: String,
    /// Where triage results are delivered, if anywhere.
    pub webhook_url: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A freshly issued API key. Shown to its owner once; its `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The secret, to print once to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

#[derive(sqlx::FromRow)]
struct TenantRow {
    tenant_id: String,
    name: String,
    webhook_url: Option<String>,
    created_at: DateTime<Utc>,
}

fn corrupt(detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt { table: "tenants", detail: detail.to_string() }
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;
    fn try_from(r: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            tenant_id: TenantId::parse(r.tenant_id).map_err(corrupt)?,
            name: r.name,
            webhook_url: r.webhook_url,
            created_at: r.created_at,
        })
    }
}

pub(crate) fn hash_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// Compares two byte strings in time independent of where they differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A new 256-bit random token, hex, after `prefix` (tenants' API keys, operators' keys).
pub(crate) fn random_token(prefix: &str) -> Result<String, StoreError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(StoreError::Random)?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}

fn new_api_key() -> Result<ApiKey, StoreError> {
    random_token(API_KEY_PREFIX).map(ApiKey)
}

impl Store {
    /// Creates a tenant and issues its API key (returned once, stored only as a hash).
    ///
    /// # Errors
    /// [`StoreError::Database`], including a unique violation when the tenant exists.
    pub async fn create_tenant(
        &self,
        tenant: &TenantId,
        name: &str,
        webhook_url: Option<&str>,
    ) -> Result<(Tenant, ApiKey), StoreError> {
        let key = new_api_key()?;
        let hash = hash_key(key.expose());
        let now = now();
        let args =
            [tenant.as_str().into(), name.into(), hash.as_slice().into(), webhook_url.into(), now.into()];
        self.db.execute(INSERT, &args).await?;
        let tenant = Tenant {
            tenant_id: tenant.clone(),
            name: name.to_owned(),
            webhook_url: webhook_url.map(str::to_owned),
            created_at: now,
        };
        Ok((tenant, key))
    }

    /// Reads a tenant.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn get_tenant(&self, tenant: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let row: Option<TenantRow> = self.db.fetch_optional(SELECT, &[tenant.as_str().into()]).await?;
        row.map(Tenant::try_from).transpose()
    }

    /// The tenant owning `api_key`, or `None` for an unknown key.
    ///
    /// # Errors
    /// [`StoreError::Database`] or [`StoreError::Corrupt`].
    pub async fn authenticate(&self, api_key: &str) -> Result<Option<TenantId>, StoreError> {
        let hash = hash_key(api_key);
        if let Some(tenant) = self.auth_cache.get(&hash, Instant::now()) {
            return Ok(Some(tenant));
        }
        let row: Option<(String, Vec<u8>)> =
            self.db.fetch_optional(AUTHENTICATE, &[hash.as_slice().into()]).await?;
        match row {
            Some((tenant, stored)) if constant_time_eq(&stored, &hash) => {
                let tenant = TenantId::parse(tenant).map_err(corrupt)?;
                self.auth_cache.put(hash, tenant.clone(), Instant::now());
                Ok(Some(tenant))
            }
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_are_random_prefixed_and_redacted() {
        let a = new_api_key().expect("key");
        let b = new_api_key().expect("key");
        assert_ne!(a, b);
        assert!(a.expose().starts_with(API_KEY_PREFIX));
        assert_eq!(a.expose().len(), API_KEY_PREFIX.len() + 64);
        assert_eq!(format!("{a:?}"), "ApiKey(<redacted>)");
    }

    #[test]
    fn constant_time_eq_table() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn the_auth_cache_remembers_verified_keys_for_its_ttl_and_stays_bounded() {
        let cache = AuthCache::default();
        let t0 = Instant::now();
        let acme = TenantId::parse("acme").expect("tenant");
        assert_eq!(cache.get(&hash_key("k"), t0), None);
        cache.put(hash_key("k"), acme.clone(), t0);
        assert_eq!(cache.get(&hash_key("k"), t0 + Duration::from_secs(1)), Some(acme.clone()));
        assert_eq!(cache.get(&hash_key("other"), t0), None, "another key is not the tenant's");
        assert_eq!(cache.get(&hash_key("k"), t0 + AUTH_CACHE_TTL), None, "expired");
        for i in 0..AUTH_CACHE_MAX + 1 {
            cache.put(hash_key(&i.to_string()), acme.clone(), t0);
        }
        assert!(cache.entries.lock().expect("lock").len() <= AUTH_CACHE_MAX);
    }
}
