//! POST /t/{t}/oauth/token and /t/{t}/oauth/refresh (the same handler),
//! /revoke and /introspect: the endpoints Kit and the tenant's backend call.

use rocket::data::Data;
use rocket::http::Status;
use rocket::response::Responder;
use rocket::{post, State};

use super::flows::{self, TokenResponse};
use super::params::{parse_body, read_body, Params};
use crate::admin::stats::TokenStats;
use crate::auth::client::BasicAuth;
use crate::auth::ClientIp;
use crate::auth::{authenticate_client, ClientCredentials, CurrentTenant, SecretRequirement};
use crate::db::Db;
use crate::error::{no_store_json, OAuthError};
use crate::metrics::{Metrics, TokenOutcome};

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

#[post("/t/<_>/oauth/token", data = "<data>")]
pub async fn token(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    metrics: &State<Metrics>,
    stats: &State<TokenStats>,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    let tenant_id = tenant.id;
    let mut client_id = None;
    let result = token_inner(tenant, db, basic, ip, data, &mut client_id).await;
    metrics.token_outcome(match &result {
        Ok(_) => TokenOutcome::Issued,
        Err(e) => TokenOutcome::Failed(e.error),
    });
    if let Some(client_id) = client_id {
        stats.record(tenant_id, &client_id, result.is_ok());
    }
    result
}

#[post("/t/<_>/oauth/refresh", data = "<data>")]
pub async fn refresh(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    metrics: &State<Metrics>,
    stats: &State<TokenStats>,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    token(tenant, db, basic, ip, metrics, stats, data).await
}

async fn token_inner(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    data: Data<'_>,
    client_id: &mut Option<String>,
) -> Result<NoStoreJson, OAuthError> {
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
    let creds = ClientCredentials::from_parts(&basic, &params)?;
    *client_id = Some(creds.client_id.clone());
    let tenant_id = tenant.id;
    let ip = ip.0;
    let response = db
        .run(move |conn| {
            let client = authenticate_client(conn, tenant_id, &creds, requirement, ip.clone())?;
            if grant_type == "authorization_code" {
                let code = params
                    .get("code")
                    .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
                flows::exchange_code(
                    conn,
                    tenant_id,
                    &client,
                    code,
                    params.get("redirect_uri"),
                    params.get("code_verifier"),
                    ip,
                )
            } else {
                let token = params
                    .get("refresh_token")
                    .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
                flows::refresh(conn, tenant_id, &client, token, params.get("scope"), ip)
            }
        })
        .await?;
    Ok(response.into())
}

#[post("/t/<_>/oauth/revoke", data = "<data>")]
pub async fn revoke(
    tenant: CurrentTenant,
    db: &State<Db>,
    basic: BasicAuth,
    ip: ClientIp,
    data: Data<'_>,
) -> Result<NoStoreJson, OAuthError> {
    let params = read_params(data).await?;
    let creds = ClientCredentials::from_parts(&basic, &params)?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let tenant_id = tenant.id;
    let ip = ip.0;
    db.run(move |conn| {
        let client = authenticate_client(
            conn,
            tenant_id,
            &creds,
            SecretRequirement::Required,
            ip.clone(),
        )?;
        flows::revoke(conn, tenant_id, &client, &token, ip)
    })
    .await?;
    Ok(NoStoreJson(Status::Ok, "{}".into()))
}
