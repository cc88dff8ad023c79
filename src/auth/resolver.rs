//! The one place where a request's copy of its client is looked up,
//! counted, and kept, replaced or dropped afterwards (`ClientCache`). What
//! a copy may be used for is `oauth::fast`'s to decide; the bookkeeping
//! around it is the same on every path that keeps copies (introspection,
//! the token endpoint).

use std::sync::Arc;

use chrono::Utc;

use super::client::{ClientApp, ClientAuthWrite, ClientCredentials, LoadedClient};
use super::client_cache::{CacheOutcome, CachedClient, ClientCache};

/// What a request read of its client.
pub enum ClientRead<A> {
    /// The copy decided: nothing was read.
    Copy,
    /// The database was read: the app and its unrevoked secrets, or `None`
    /// when the tenant has no such app.
    Fresh(LoadedClient<A>),
}

/// One request's view of the copies of its client.
pub struct ClientResolver<'a, A> {
    cache: &'a ClientCache<A>,
    tenant_id: i64,
    client_id: String,
    copy: Option<Arc<CachedClient<A>>>,
}

impl<'a, A: ClientApp> ClientResolver<'a, A> {
    /// Looks up the copy of `creds`' client in `tenant_id` (never another
    /// tenant's).
    pub fn new(cache: &'a ClientCache<A>, tenant_id: i64, creds: &ClientCredentials) -> Self {
        ClientResolver {
            cache,
            tenant_id,
            client_id: creds.client_id.clone(),
            copy: cache.get(tenant_id, &creds.client_id),
        }
    }

    /// The copy, if one is kept: to be used only where `oauth::fast` says
    /// it may be.
    pub fn copy(&self) -> Option<Arc<CachedClient<A>>> {
        self.copy.clone()
    }

    /// After the request: counts how the copy served (a hit when it
    /// decided, stale when it was kept but the database was read, a miss
    /// when none was kept), keeps what was read as the new copy, and drops
    /// the copy when the app is gone or when `pending` is a use stamp not
    /// yet written (the copy would then be older than the database and
    /// would ask to stamp again; the next request reads afresh).
    pub fn settle(self, read: ClientRead<A>, pending: Option<&ClientAuthWrite>) {
        let stamp_pending = matches!(pending, Some(ClientAuthWrite::Touch(_)));
        let outcome = match (&read, self.copy.is_some()) {
            (ClientRead::Copy, _) => CacheOutcome::Hit,
            (ClientRead::Fresh(_), true) => CacheOutcome::Stale,
            (ClientRead::Fresh(_), false) => CacheOutcome::Miss,
        };
        self.cache.count(outcome);
        match read {
            ClientRead::Fresh(Some((app, secrets))) if !stamp_pending => {
                let copy = CachedClient::new(self.tenant_id, app, secrets, Utc::now());
                self.cache.put(copy);
            }
            ClientRead::Fresh(_) => self.cache.forget(self.tenant_id, &self.client_id),
            ClientRead::Copy if stamp_pending => self.cache.forget(self.tenant_id, &self.client_id),
            ClientRead::Copy => {}
        }
    }
}
