//! The API key guards: `Authorization: Bearer kak_…`, bound to the tenant
//! of `/t/{t}/api/v1/…`. One guard per scope ([`ReadKey`], [`WriteKey`],
//! [`LoginKey`]), so a handler states its scope in its signature and cannot
//! forget the check.

use std::marker::PhantomData;
use std::time::Duration;

use chrono::Utc;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};

use super::problem::{fail, Problem};
use crate::auth::{client_ip, CurrentTenant};
use crate::config::AppConfig;
use crate::db::models::api_key::KeyRefusal;
use crate::db::models::{ApiKey, ApiScope, NewAuditEvent};
use crate::db::Db;
use crate::error::Error;
use crate::ratelimit::{LimitKey, RateLimiter};

/// The API's budgets, in process (see `ratelimit`): requests per key per
/// minute, and failed key authentications per tenant and IP.
pub struct ApiLimits {
    pub per_key: RateLimiter,
    pub auth_ip: RateLimiter,
}

impl ApiLimits {
    pub fn from_config(c: &AppConfig) -> ApiLimits {
        ApiLimits {
            per_key: RateLimiter::new(c.api_requests_per_minute, Duration::from_secs(60)),
            auth_ip: RateLimiter::new(
                c.api_auth_max_failures,
                Duration::from_secs(c.api_auth_window_secs),
            ),
        }
    }
}

/// An authenticated API caller: the tenant of the path, its key, its IP.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: CurrentTenant,
    pub key: ApiKey,
    pub ip: Option<String>,
}

impl Caller {
    pub fn tenant_id(&self) -> i64 {
        self.tenant.id
    }

    /// `api_key:<name>`, the audit actor of every change made with the key.
    pub fn actor(&self) -> String {
        format!("api_key:{}", self.key.name)
    }

    /// An audit record of a change made with this key: actor, IP, and the
    /// key's id merged into `details`.
    pub fn audit(
        &self,
        action: &str,
        object_type: &str,
        object_id: impl ToString,
        details: serde_json::Value,
    ) -> NewAuditEvent {
        let mut details = match details {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        details.insert("api_key_id".into(), self.key.id.to_string().into());
        NewAuditEvent::new(self.tenant.id, self.actor(), action)
            .object(object_type, object_id)
            .ip(self.ip.clone())
            .details(serde_json::Value::Object(details))
    }
}

/// The bearer value of `Authorization`, if the scheme is Bearer.
fn bearer<'a>(req: &'a Request<'_>) -> Option<&'a str> {
    let h = req.headers().get_one("Authorization")?.trim();
    let (scheme, value) = h.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| value.trim())
}

/// Authenticates the caller and checks `scope`; on refusal records the
/// problem for the catcher and returns its status.
pub async fn authenticate(req: &Request<'_>, scope: ApiScope) -> Result<Caller, Status> {
    let tenant = match req.guard::<CurrentTenant>().await {
        Outcome::Success(t) => t,
        Outcome::Error((Status::NotFound, _)) | Outcome::Forward(_) => {
            return Err(fail(req, Problem::not_found()))
        }
        Outcome::Error(_) => return Err(fail(req, Problem::unavailable())),
    };
    let (Some(db), Some(limits)) = (
        req.rocket().state::<Db>(),
        req.rocket().state::<ApiLimits>(),
    ) else {
        return Err(fail(req, Problem::server_error()));
    };
    let ip = client_ip(req);
    let ip_key = [LimitKey::ApiAuthIp(
        tenant.id,
        ip.clone().unwrap_or_else(|| "unknown".into()),
    )];
    let key = verify_key(req, db, limits, tenant.id, &ip_key).await?;
    let budget = [LimitKey::ApiKey(key.id)];
    if let Some(wait) = limits.per_key.blocked(&budget) {
        return Err(fail(
            req,
            Problem::too_many(
                wait.as_secs() + 1,
                "this API key is over its request budget",
            ),
        ));
    }
    limits.per_key.record_failure(&budget);
    if !key.has_scope(scope) {
        return Err(fail(
            req,
            Problem::forbidden(format!(
                "this call needs an API key with the `{}` scope",
                scope.as_str()
            )),
        ));
    }
    // Coalesced: at most one write a minute per key (`ApiKey::stamp_due`).
    if key.stamp_due(Utc::now()) {
        let (tenant_id, id) = (tenant.id, key.id);
        let _ = db
            .run(move |conn| ApiKey::touch(conn, tenant_id, id).map_err(Error::from))
            .await;
    }
    Ok(Caller { tenant, key, ip })
}

/// The live API key of the tenant that the request presents. A refused key
/// counts against the address's budget, and over it answers 429.
async fn verify_key(
    req: &Request<'_>,
    db: &Db,
    limits: &ApiLimits,
    tenant_id: i64,
    ip_key: &[LimitKey],
) -> Result<ApiKey, Status> {
    let Some(presented) = bearer(req) else {
        return Err(fail(
            req,
            Problem::unauthorized("send an API key as `Authorization: Bearer kak_…`")
                .with_field("Authorization", "missing or not a Bearer credential"),
        ));
    };
    let presented = presented.to_string();
    let found = db
        .run(move |conn| {
            ApiKey::authenticate(conn, tenant_id, &presented, Utc::now()).map_err(Error::from)
        })
        .await;
    match found {
        Ok(Ok(key)) => Ok(key),
        Ok(Err(why)) => {
            // Over budget, a refused key answers 429 instead of 401; a key
            // that verifies is never refused here (as on the OAuth endpoints).
            limits.auth_ip.record_failure(ip_key);
            if let Some(wait) = limits.auth_ip.blocked(ip_key) {
                return Err(fail(
                    req,
                    Problem::too_many(
                        wait.as_secs() + 1,
                        "too many failed API key authentications from this address",
                    ),
                ));
            }
            let detail = match why {
                KeyRefusal::Unknown => "the API key is not valid for this tenant",
                KeyRefusal::Revoked => "the API key has been revoked",
                KeyRefusal::Expired => "the API key has expired",
            };
            Err(fail(req, Problem::unauthorized(detail)))
        }
        Err(e) => Err(fail(req, Problem::from(e))),
    }
}

/// Which scope a guard demands.
pub trait ScopeOf: Send + Sync + 'static {
    const SCOPE: ApiScope;
}
pub struct Read;
pub struct Write;
pub struct Login;
impl ScopeOf for Read {
    const SCOPE: ApiScope = ApiScope::Read;
}
impl ScopeOf for Write {
    const SCOPE: ApiScope = ApiScope::Write;
}
impl ScopeOf for Login {
    const SCOPE: ApiScope = ApiScope::Login;
}

/// A caller whose key has scope `S`.
pub struct Scoped<S: ScopeOf>(pub Caller, PhantomData<S>);

impl<S: ScopeOf> std::ops::Deref for Scoped<S> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

/// Every GET.
pub type ReadKey = Scoped<Read>;
/// Every change.
pub type WriteKey = Scoped<Write>;
/// Only the delegated sign-in calls.
pub type LoginKey = Scoped<Login>;

#[rocket::async_trait]
impl<'r, S: ScopeOf> FromRequest<'r> for Scoped<S> {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match authenticate(req, S::SCOPE).await {
            Ok(c) => Outcome::Success(Scoped(c, PhantomData)),
            Err(status) => Outcome::Error((status, ())),
        }
    }
}
