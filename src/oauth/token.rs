//! POST /t/{t}/oauth/token and /t/{t}/oauth/refresh (the same handler),
//! /revoke and /introspect: the endpoints Kit and the tenant's backend call.

use rocket::data::Data;
use rocket::http::Status;
use rocket::response::Responder;
use rocket::{post, State};

use super::flows::{self, CommonGrant, TokenResponse};
use super::params::{parse_body, read_body, Params};
use crate::admin::stats::TokenStats;
use crate::auth::client::BasicAuth;
use crate::auth::client::{authenticate_and_load, check_client};
use crate::auth::client_cache::{CacheOutcome, CachedClient};
use crate::auth::ClientIp;
use crate::auth::{
    authenticate_client, ClientCache, ClientCredentials, CurrentTenant, SecretRequirement,
};
use crate::db::models::App;

use crate::db::Db;
use crate::error::{no_store_json, OAuthError};
use crate::metrics::{Metrics, TokenOutcome};
use crate::ratelimit::ClientAuthLimits;

/// A JSON body with `Cache-Control: no-store`.
pub struct NoStoreJson(pub Status, pub String);

impl<'r> Responder<'r, 'static> for NoStoreJson {
    fn respond_to(self, _: &'r rocket::Request<'_>) -> rocket::response::Result<'static> {
        Ok(no_store_json(self.0, self.1))
    }
}

impl From<TokenResponse> for NoStoreJson {
    fn from(r: TokenResponse) -> Self {
        NoStoreJson(Status::Ok, serde_json::to_string(&r).unwrap_or_default())
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
            if e.error == "invalid_client" && e.status == Status::Unauthorized {
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
        let mut creds = ClientCredentials::from_parts(basic, params);
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
            Err(e) if e.error == "invalid_client" && e.status == Status::Unauthorized => {
                over_budget?;
                Err(e)
            }
            other => other,
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[post("/t/<_>/oauth/token", data = "<data>")]
pub async fn token(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    metrics: &State<Metrics>,
    stats: &State<TokenStats>,
    limits: &State<ClientAuthLimits>,
    cache: &State<ClientCache<App>>,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    let tenant_id = tenant.id;
    let mut client_id = None;
    let result = token_inner(tenant, db, basic, ip, limits, cache, data, &mut client_id).await;
    metrics.token_outcome(match &result {
        Ok(_) => TokenOutcome::Issued,
        Err(e) if e.status == Status::TooManyRequests => TokenOutcome::Failed("rate_limited"),
        Err(e) => TokenOutcome::Failed(e.error),
    });
    // Per-app stats count only clients that authenticated: an issued token,
    // or a grant refused (400) after the client's credentials verified. An
    // unknown client_id or a wrong secret (401, 429) is no app's traffic,
    // and must not grow the stats (the limiter and metrics count those).
    let authenticated = match &result {
        Ok(_) => true,
        Err(e) => e.status == Status::BadRequest,
    };
    if let (Some(client_id), true) = (client_id, authenticated) {
        stats.record(tenant_id, &client_id, result.is_ok());
    }
    result
}

#[allow(clippy::too_many_arguments)]
#[post("/t/<_>/oauth/refresh", data = "<data>")]
pub async fn refresh(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    metrics: &State<Metrics>,
    stats: &State<TokenStats>,
    limits: &State<ClientAuthLimits>,
    cache: &State<ClientCache<App>>,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    token(tenant, db, basic, ip, metrics, stats, limits, cache, data).await
}

#[allow(clippy::too_many_arguments)]
async fn token_inner(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    limits: &ClientAuthLimits,
    cache: &ClientCache<App>,
    data: Data<'_>,
    client_id_out: &mut Option<String>,
) -> Result<NoStoreJson, OAuthError> {
    let budget = ClientAuthBudget::new(limits, tenant.id, &ip);
    let params = read_params(data).await?;
    let grant_type = params
        .get("grant_type")
        .ok_or_else(|| OAuthError::invalid_request("grant_type is required"))?
        .to_string();
    let requirement = match grant_type.as_str() {
        "authorization_code" => SecretRequirement::Required,
        "refresh_token" => SecretRequirement::OptionalIfAppAllows,
        _ => {
            return Err(OAuthError::unsupported_grant_type(
                "grant_type must be authorization_code or refresh_token",
            ))
        }
    };
    let creds = budget.credentials(&basic, &params)?;
    *client_id_out = Some(creds.client_id.clone());
    let client_id = creds.client_id.clone();
    let tenant_id = tenant.id;
    let ip = ip.0;
    let copy = cache.get(tenant_id, &client_id);
    let (response, outcome, fresh) = db
        .run(move |conn| {
            let code = params.get("code");
            let refresh_token = params.get("refresh_token");
            let grant = if grant_type == "authorization_code" {
                code.map(|code| CommonGrant::Code {
                    code,
                    redirect_uri: params.get("redirect_uri"),
                    code_verifier: params.get("code_verifier"),
                })
            } else {
                refresh_token.map(|token| CommonGrant::Refresh {
                    token,
                    scope: params.get("scope"),
                })
            };
            // With a copy of the client that authenticates the request as
            // is (no use to stamp): the common case in one statement, which
            // also checks that the app is still at the copy's version.
            if let (Some(copy), Some(grant)) = (copy.as_deref(), &grant) {
                let (checked, write) = check_client(
                    tenant_id,
                    &creds,
                    requirement,
                    ip.clone(),
                    Some((&copy.app, copy.secrets.as_slice())),
                );
                if checked.is_ok() && write.is_none() {
                    if let Some(response) =
                        flows::issue_if_common(conn, tenant_id, &copy.app, grant)?
                    {
                        return Ok((Ok(response), CacheOutcome::Hit, None));
                    }
                }
            }
            // Everything else, refusals included, on a fresh read of the
            // client, which becomes the copy.
            let outcome = match copy {
                Some(_) => CacheOutcome::Stale,
                None => CacheOutcome::Miss,
            };
            let (client, loaded) =
                authenticate_and_load(conn, tenant_id, &creds, requirement, ip.clone())?;
            let fresh = loaded.map(|(app, secrets)| {
                CachedClient::new(tenant_id, app, secrets, chrono::Utc::now())
            });
            let result = client.and_then(|client| match grant {
                Some(CommonGrant::Code {
                    code,
                    redirect_uri,
                    code_verifier,
                }) => flows::exchange_code(
                    conn,
                    tenant_id,
                    &client,
                    code,
                    redirect_uri,
                    code_verifier,
                    ip,
                ),
                Some(CommonGrant::Refresh { token, scope }) => {
                    flows::refresh(conn, tenant_id, &client, token, scope, ip)
                }
                None if grant_type == "authorization_code" => {
                    Err(OAuthError::invalid_request("code is required"))
                }
                None => Err(OAuthError::invalid_request("refresh_token is required")),
            });
            Ok::<_, OAuthError>((result, outcome, Some(fresh)))
        })
        .await?;
    cache.count(outcome);
    match fresh {
        Some(Some(copy)) => cache.put(copy),
        Some(None) => cache.forget(tenant_id, &client_id),
        None => {}
    }
    Ok(budget.finish(&client_id, response)?.into())
}

#[post("/t/<_>/oauth/revoke", data = "<data>")]
pub async fn revoke(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    limits: &State<ClientAuthLimits>,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    let budget = ClientAuthBudget::new(limits, tenant.id, &ip);
    let params = read_params(data).await?;
    let creds = budget.credentials(&basic, &params)?;
    let client_id = creds.client_id.clone();
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let tenant_id = tenant.id;
    let ip = ip.0;
    let result = db
        .run(move |conn| {
            let client = authenticate_client(
                conn,
                tenant_id,
                &creds,
                SecretRequirement::Required,
                ip.clone(),
            )?;
            flows::revoke(conn, tenant_id, &client, &token, ip)
        })
        .await;
    budget.finish(&client_id, result)?;
    Ok(NoStoreJson(Status::Ok, "{}".into()))
}
