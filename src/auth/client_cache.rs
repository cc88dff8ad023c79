//! In-process copies of what client authentication reads of an app and
//! its unrevoked secrets, for the paths that authenticate a client on every
//! call: introspection (`ClientCache<AppKey>`, the key columns) and the
//! token endpoint (`ClientCache<App>`, the whole row: code exchange reads
//! the redirect URIs, both grants the token lifetimes).
//!
//! A copy is never trusted on its own. It carries the app's `auth_version`
//! as read with it, and the statement that uses it reads the app's current
//! `auth_version` in the same snapshot: introspection's token lookup
//! returns it, and the token endpoint's one-statement exchange and refresh
//! write only if it still matches (`app_unchanged` in `db/sql/`). Triggers give the app a new number in the
//! transaction that changes any column of the app but `updated_at`
//! (migrations 000004 and 000005), or any of its secrets (created, revoked,
//! expiry set, deleted). So a copy whose number still matches is exactly
//! what the database holds at that snapshot, and a revoked secret or a
//! disabled app is refused by the first request after the commit, as
//! without the copy. When the number differs, the request reads the app and
//! its secrets again (one more round trip) and replaces the copy. The token
//! endpoint goes further: a copy only ever makes a request succeed in one
//! statement; anything else, every refusal included, is decided on a fresh
//! read, exactly as without a copy.
//!
//! Only apps that exist are kept, so unknown client ids cannot fill it, and
//! it is bounded: when full it is emptied and refills from the requests.
//! A request names a tenant, and only that tenant's copies are read or
//! dropped. Versions are random numbers, not counters (see migration
//! 000004).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::client::ClientApp;
use crate::db::models::client_secret::SecretCheck;
use crate::db::models::{AppKey, SecretKey};

/// At most this many apps are kept per cache: a few hundred bytes each
/// for introspection's key columns, up to a few KiB for the token
/// endpoint's whole rows (redirect URIs, scopes).
const CAPACITY: usize = 10_000;

/// A copy keeps at most this many of the secrets that had expired when it
/// was read (the most recent ones), so that a secret used just after its
/// grace is answered from the copy; the others are left out.
const KEPT_EXPIRED: usize = 2;

/// One app's copy: what `client_and_access_token_info` read (`AppKey`,
/// introspection) or `load_client` (the whole `App`, the token endpoint),
/// less the secrets that `new` leaves out. Revoked secrets are never read.
#[derive(Debug)]
pub struct CachedClient<A = AppKey> {
    pub tenant_id: i64,
    pub app: A,
    pub secrets: Vec<SecretKey>,
    /// Whether expired secrets were left out: then a presented secret that
    /// matches none of `secrets` may be one of them, and only a full read
    /// can tell "expired" (`client_secret.used_after_grace`) from "wrong"
    /// (see `can_decide`).
    pub partial: bool,
}

impl<A> CachedClient<A> {
    /// The copy of `app` and its unrevoked `secrets` as read at `now`:
    /// every secret still valid (in its grace or without expiry) and the
    /// `KEPT_EXPIRED` most recently expired ones. So an app rotated a
    /// thousand times has a copy of a few secrets, not a thousand.
    pub fn new(tenant_id: i64, app: A, mut secrets: Vec<SecretKey>, now: DateTime<Utc>) -> Self {
        let expired = |s: &SecretKey| s.expires_at.is_some_and(|e| e <= now);
        let expired_count = secrets.iter().filter(|s| expired(s)).count();
        let partial = expired_count > KEPT_EXPIRED;
        if partial {
            // Live secrets first, then the expired ones, latest expiry first.
            secrets.sort_by_key(|s| (expired(s), std::cmp::Reverse(s.expires_at)));
            secrets.truncate(secrets.len() - (expired_count - KEPT_EXPIRED));
        }
        CachedClient {
            tenant_id,
            app,
            secrets,
            partial,
        }
    }

    /// Whether the copy can decide a request that presents `secret`: it
    /// holds every unrevoked secret, or `secret` matches one it holds. A
    /// copy may make a request succeed; a refusal that could be "expired"
    /// rather than "wrong" is decided on a full read, so the answer and the
    /// audit are those without the copy.
    pub fn can_decide(&self, secret: Option<&str>, now: DateTime<Utc>) -> bool {
        !self.partial
            || secret.map_or(true, |s| {
                !matches!(
                    SecretKey::check(&self.secrets, s, now),
                    SecretCheck::Invalid
                )
            })
    }
}

/// How the copies served, for `/metrics` and the tests.
#[derive(Debug, Default)]
pub struct ClientCacheStats {
    /// A copy was used: its version matched the database's.
    pub hits: AtomicU64,
    /// No copy: the app and its secrets were read with the token.
    pub misses: AtomicU64,
    /// A copy was out of date and was read again.
    pub stale: AtomicU64,
}

/// The copies, by client_id (unique across tenants); the tenant is checked
/// on use.
#[derive(Debug)]
pub struct ClientCache<A = AppKey> {
    entries: RwLock<HashMap<String, Arc<CachedClient<A>>>>,
    stats: ClientCacheStats,
    /// Off (`client_copies = false`): nothing is kept, every request reads.
    enabled: bool,
}

impl<A> Default for ClientCache<A> {
    fn default() -> Self {
        Self::new(true)
    }
}

impl<A> ClientCache<A> {
    pub fn new(enabled: bool) -> Self {
        ClientCache {
            entries: RwLock::default(),
            stats: ClientCacheStats::default(),
            enabled,
        }
    }
}

impl<A: ClientApp> ClientCache<A> {
    /// The copy of `client_id` of `tenant_id`, if one is kept.
    pub fn get(&self, tenant_id: i64, client_id: &str) -> Option<Arc<CachedClient<A>>> {
        let entries = self.entries.read().unwrap_or_else(|e| e.into_inner());
        entries
            .get(client_id)
            .filter(|c| c.tenant_id == tenant_id)
            .cloned()
    }

    /// Keeps `client`, replacing any older copy of the app.
    pub fn put(&self, client: CachedClient<A>) {
        if !self.enabled {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= CAPACITY && !entries.contains_key(client.app.client_id()) {
            entries.clear();
        }
        entries.insert(client.app.client_id().to_string(), Arc::new(client));
    }

    /// Drops the copy of `client_id` of `tenant_id` (never another
    /// tenant's): the app is gone, or the copy's `last_used_at` was just
    /// stamped in the database.
    pub fn forget(&self, tenant_id: i64, client_id: &str) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if entries
            .get(client_id)
            .is_some_and(|c| c.tenant_id == tenant_id)
        {
            entries.remove(client_id);
        }
    }

    pub fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn stats(&self) -> &ClientCacheStats {
        &self.stats
    }

    pub(crate) fn count(&self, outcome: CacheOutcome) {
        let counter = match outcome {
            CacheOutcome::Hit => &self.stats.hits,
            CacheOutcome::Miss => &self.stats.misses,
            CacheOutcome::Stale => &self.stats.stale,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What one request made of the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Hit,
    Miss,
    Stale,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(tenant_id: i64, client_id: &str, version: i64) -> CachedClient {
        CachedClient {
            tenant_id,
            app: AppKey {
                id: 1,
                client_id: client_id.into(),
                refresh_without_secret: false,
                disabled: false,
                auth_version: version,
            },
            secrets: Vec::new(),
            partial: false,
        }
    }

    #[test]
    fn a_copy_is_found_only_under_its_own_tenant_and_is_replaced_by_a_newer_one() {
        let cache = ClientCache::default();
        cache.put(client(1, "kit_a", 3));
        assert!(cache.get(2, "kit_a").is_none(), "another tenant's app");
        assert!(cache.get(1, "kit_b").is_none());
        cache.put(client(1, "kit_a", 4));
        assert_eq!(cache.get(1, "kit_a").map(|c| c.app.auth_version), Some(4));
        assert_eq!(cache.len(), 1);
        cache.forget(2, "kit_a");
        assert!(
            cache.get(1, "kit_a").is_some(),
            "another tenant cannot drop it"
        );
        cache.forget(1, "kit_a");
        assert!(cache.get(1, "kit_a").is_none());
    }

    fn secret(id: i64, value: &str, expires_at: Option<DateTime<Utc>>) -> SecretKey {
        SecretKey {
            id,
            secret_digest: crate::crypto::digest(value),
            expires_at,
            revoked_at: None,
            last_used_at: None,
        }
    }

    #[test]
    fn a_copy_keeps_live_secrets_and_the_latest_expired_ones_and_knows_what_it_left_out() {
        let now = Utc::now();
        let ago = |m: i64| Some(now - chrono::Duration::minutes(m));
        let secrets = vec![
            secret(1, "kcs_oldest", ago(50)),
            secret(2, "kcs_live", None),
            secret(3, "kcs_latest", ago(1)),
            secret(4, "kcs_grace", Some(now + chrono::Duration::minutes(5))),
            secret(5, "kcs_middle", ago(10)),
            secret(6, "kcs_older", ago(20)),
        ];
        let copy = CachedClient::new(1, (), secrets.clone(), now);
        let mut kept: Vec<i64> = copy.secrets.iter().map(|s| s.id).collect();
        kept.sort();
        assert_eq!(kept, vec![2, 3, 4, 5]);
        assert!(copy.partial);
        for (value, decides) in [
            ("kcs_live", true),
            ("kcs_grace", true),
            ("kcs_latest", true),
            ("kcs_oldest", false),
            ("kcs_wrong", false),
        ] {
            assert_eq!(copy.can_decide(Some(value), now), decides, "{value}");
        }
        assert!(copy.can_decide(None, now), "no secret: decided by the app");

        // Nothing left out: the copy decides everything, as before.
        let whole = CachedClient::new(1, (), secrets[1..4].to_vec(), now);
        assert_eq!(whole.secrets.len(), 3);
        assert!(!whole.partial);
        assert!(whole.can_decide(Some("kcs_wrong"), now));
    }

    #[test]
    fn the_cache_never_holds_more_than_its_capacity() {
        let cache = ClientCache::default();
        for i in 0..CAPACITY + 5 {
            cache.put(client(1, &format!("kit_{i}"), 0));
            assert!(cache.len() <= CAPACITY);
        }
        assert!(cache.get(1, &format!("kit_{}", CAPACITY + 4)).is_some());
    }
}
