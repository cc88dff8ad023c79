//! What the OAuth endpoints that authenticate a client need, bundled in
//! one request guard ([`OAuth`]), and the per-caller failure budget of
//! client authentication ([`ClientAuthBudget`]).

use rocket::data::Data;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Responder;

use super::introspect::AccessTokenLookups;
use crate::auth::client::{parse_basic, BasicAuth};
use crate::auth::tenant::TenantError;
use crate::auth::{client_ip, ClientCache, ClientCredentials, ClientIp, CurrentTenant};
use crate::config::AppConfig;
use crate::db::batch::Batcher;
use crate::db::models::{App, AppKey};
use crate::db::Db;
use crate::error::{no_store_json, OAuthError};
use crate::metrics::Metrics;
use crate::params::{parse_body, read_body, Params};
use crate::ratelimit::ClientAuthLimits;
use crate::stats::TokenStats;

/// The tenant, the caller and the shared state of a token, revoke or
/// introspection request.
pub struct OAuth<'r> {
    pub tenant: CurrentTenant,
    pub basic: BasicAuth,
    pub ip: ClientIp,
    pub db: &'r Db,
    pub config: &'r AppConfig,
    pub limits: &'r ClientAuthLimits,
    pub metrics: &'r Metrics,
    pub stats: &'r TokenStats,
    /// The token endpoint's copies of clients (whole app rows).
    pub apps: &'r ClientCache<App>,
    /// Introspection's copies of clients (the key columns).
    pub keys: &'r ClientCache<AppKey>,
    /// Access-token lookups shared with userinfo (`db::batch`).
    pub lookups: &'r Batcher<AccessTokenLookups>,
}

impl OAuth<'_> {
    /// The failure budget of this request's caller.
    pub fn budget(&self) -> ClientAuthBudget<'_> {
        ClientAuthBudget::new(self.limits, self.tenant.id, &self.ip)
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for OAuth<'r> {
    type Error = TenantError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let tenant = rocket::outcome::try_outcome!(req.guard::<CurrentTenant>().await);
        let basic = parse_basic(req.headers().get_one("Authorization"));
        let ip = ClientIp(client_ip(req));
        let r = req.rocket();
        let state = (|| {
            Some(OAuth {
                tenant,
                basic,
                ip,
                db: r.state()?,
                config: r.state()?,
                limits: r.state()?,
                metrics: r.state()?,
                stats: r.state()?,
                apps: r.state()?,
                keys: r.state()?,
                lookups: r.state()?,
            })
        })();
        match state {
            Some(ctx) => Outcome::Success(ctx),
            None => Outcome::Error((Status::InternalServerError, TenantError::Unavailable)),
        }
    }
}

/// A JSON body with `Cache-Control: no-store`.
pub struct NoStoreJson(pub Status, pub String);

impl<'r> Responder<'r, 'static> for NoStoreJson {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        Ok(no_store_json(self.0, self.1))
    }
}

/// Reads and sniffs the body; every failure is an `invalid_request`.
pub async fn read_params(data: Data<'_>) -> Result<Params, OAuthError> {
    let bytes = read_body(data)
        .await
        .map_err(|e| OAuthError::invalid_request(e.description()))?;
    parse_body(&bytes).map_err(|e| OAuthError::invalid_request(e.description()))
}

/// The client-authentication failure budget of one request's caller: refuses
/// with `429` when exhausted, and counts `invalid_client` answers (only
/// failures count, so a client with the right secret is never slowed down
/// by anyone else's failures). See `ClientAuthLimits`.
pub struct ClientAuthBudget<'a> {
    limits: &'a ClientAuthLimits,
    tenant_id: i64,
    ip: String,
}

impl<'a> ClientAuthBudget<'a> {
    pub fn new(limits: &'a ClientAuthLimits, tenant_id: i64, ip: &ClientIp) -> Self {
        ClientAuthBudget {
            limits,
            tenant_id,
            ip: ip.0.clone().unwrap_or_default(),
        }
    }

    /// `Err(429)` when this caller (its IP, or its IP with this client_id)
    /// has failed too often.
    pub fn check(&self, client_id: Option<&str>) -> Result<(), OAuthError> {
        match self.limits.blocked(self.tenant_id, client_id, &self.ip) {
            Some(wait) => Err(OAuthError::too_many_failures(
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            )),
            None => Ok(()),
        }
    }

    /// Counts `result` against the budget when it is an authentication failure.
    pub fn note<T>(&self, client_id: Option<&str>, result: &Result<T, OAuthError>) {
        if let Err(e) = result {
            if e.is_client_auth_failure() {
                self.limits
                    .record_failure(self.tenant_id, client_id, &self.ip);
            }
        }
    }

    /// The credentials of a request; malformed ones count against the IP.
    /// Nothing is refused up front: a client whose credentials verify is
    /// never refused, whoever else has failed with its client_id.
    pub fn credentials(
        &self,
        basic: &BasicAuth,
        params: &Params,
    ) -> Result<ClientCredentials, OAuthError> {
        let mut creds = ClientCredentials::from_parts(
            basic,
            params.get("client_id"),
            params.get("client_secret"),
        );
        self.note(None, &creds);
        if let Ok(c) = creds.as_mut() {
            // Over budget already: a failure now is aggregated in the
            // audit log (one event per caller and window), not a row each.
            if self.check(Some(&c.client_id)).is_err() {
                c.throttled = Some(self.limits.window_secs());
            }
        }
        creds
    }

    /// Counts an authentication failure, and turns it into `429` with
    /// `Retry-After` once this caller (its IP in this tenant, or its IP with
    /// this client_id) is over budget.
    pub fn finish<T>(
        &self,
        client_id: &str,
        result: Result<T, OAuthError>,
    ) -> Result<T, OAuthError> {
        let over_budget = self.check(Some(client_id));
        self.note(Some(client_id), &result);
        match result {
            Err(e) if e.is_client_auth_failure() => {
                over_budget?;
                Err(e)
            }
            other => other,
        }
    }
}
