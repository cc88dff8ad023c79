//! Resolves `{t}` in `/t/{t}/...` once per request. Tenants are cached for a
//! few seconds so that the hot OAuth paths spend no round trip on them.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::State;

use crate::db::models::{tenant::valid_slug, Tenant};
use crate::db::Db;
use crate::error::Error;

const TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct TenantCache {
    entries: RwLock<HashMap<String, (Instant, Arc<Tenant>)>>,
}

impl TenantCache {
    fn get(&self, slug: &str) -> Option<Arc<Tenant>> {
        let entries = self.entries.read().ok()?;
        entries
            .get(slug)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, t)| t.clone())
    }

    fn put(&self, tenant: Arc<Tenant>) {
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() > 10_000 {
                entries.retain(|_, (at, _)| at.elapsed() < TTL);
            }
            entries.insert(tenant.slug.clone(), (Instant::now(), tenant));
        }
    }

    /// Forgets a tenant after its settings change in this process.
    pub fn invalidate(&self, slug: &str) {
        if let Ok(mut entries) = self.entries.write() {
            entries.remove(slug);
        }
    }
}

/// The tenant named in the path. A handler that takes it only ever sees
/// that tenant's rows.
#[derive(Debug, Clone)]
pub struct CurrentTenant(pub Arc<Tenant>);

impl std::ops::Deref for CurrentTenant {
    type Target = Tenant;
    fn deref(&self) -> &Tenant {
        &self.0
    }
}

/// Why the tenant guard failed, for the catcher to describe.
#[derive(Debug, Clone, Copy)]
pub enum TenantError {
    Unknown,
    Unavailable,
}

pub async fn load_tenant(
    db: &Db,
    cache: &TenantCache,
    slug: &str,
) -> Result<Option<Arc<Tenant>>, Error> {
    if !valid_slug(slug) {
        return Ok(None);
    }
    if let Some(t) = cache.get(slug) {
        return Ok(Some(t));
    }
    let owned = slug.to_string();
    let found = db
        .run(move |conn| Tenant::find_by_slug(conn, &owned).map_err(Error::from))
        .await?;
    Ok(found.map(|t| {
        let t = Arc::new(t);
        cache.put(t.clone());
        t
    }))
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CurrentTenant {
    type Error = TenantError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let slug = match req.routed_segment(1) {
            Some(s) => s,
            None => return Outcome::Error((Status::NotFound, TenantError::Unknown)),
        };
        let (db, cache) = match (
            req.guard::<&State<Db>>().await.succeeded(),
            req.guard::<&State<TenantCache>>().await.succeeded(),
        ) {
            (Some(db), Some(cache)) => (db, cache),
            _ => return Outcome::Error((Status::InternalServerError, TenantError::Unavailable)),
        };
        match load_tenant(db, cache, slug).await {
            Ok(Some(t)) => Outcome::Success(CurrentTenant(t)),
            Ok(None) => Outcome::Error((Status::NotFound, TenantError::Unknown)),
            Err(_) => Outcome::Error((Status::ServiceUnavailable, TenantError::Unavailable)),
        }
    }
}
