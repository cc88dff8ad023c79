//! POST /t/{t}/oauth/token and /t/{t}/oauth/refresh (the same handler), and
//! /revoke: the endpoints Kit calls.

use rocket::data::Data;
use rocket::http::Status;
use rocket::post;

use super::ctx::{read_params, NoStoreJson, OAuth};
use super::fast::{self, Attempt};
use super::request::TokenRequest;
use super::rules::{self, TokenResponse};
use crate::auth::client::authenticate_and_load;
use crate::auth::resolver::{ClientRead, ClientResolver};
use crate::auth::{authenticate_client, ClientCredentials, SecretRequirement};
use crate::error::OAuthError;
use crate::metrics::TokenOutcome;

impl From<TokenResponse> for NoStoreJson {
    fn from(r: TokenResponse) -> Self {
        NoStoreJson(Status::Ok, serde_json::to_string(&r).unwrap_or_default())
    }
}

#[post("/t/<_>/oauth/token", data = "<data>")]
pub async fn token(ctx: OAuth<'_>, data: Data<'_>) -> Result<NoStoreJson, OAuthError> {
    let mut client_id = None;
    let result = issue(&ctx, data, &mut client_id).await;
    ctx.metrics.token_outcome(match &result {
        Ok(_) => TokenOutcome::Issued,
        Err(e) if e.status == Status::TooManyRequests => TokenOutcome::Failed("rate_limited"),
        Err(e) => TokenOutcome::Failed(e.error.as_str()),
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
        ctx.stats.record(ctx.tenant.id, &client_id, result.is_ok());
    }
    result
}

/// Kit's separate "Refresh token URL": the token endpoint.
#[post("/t/<_>/oauth/refresh", data = "<data>")]
pub async fn refresh(ctx: OAuth<'_>, data: Data<'_>) -> Result<NoStoreJson, OAuthError> {
    token(ctx, data).await
}

/// Reads, types and authenticates a token request and has it decided;
/// `client_id_out` is the client it named, once its credentials parse.
async fn issue(
    ctx: &OAuth<'_>,
    data: Data<'_>,
    client_id_out: &mut Option<String>,
) -> Result<NoStoreJson, OAuthError> {
    let budget = ctx.budget();
    let params = read_params(data).await?;
    let req = TokenRequest::parse(&params)?;
    let creds = budget.credentials(&ctx.basic, &params)?;
    *client_id_out = Some(creds.client_id.clone());
    let client_id = creds.client_id.clone();
    let resolver = ClientResolver::new(ctx.apps, ctx.tenant.id, &creds);
    let (tenant_id, ip, copy) = (ctx.tenant.id, ctx.ip.0.clone(), resolver.copy());
    let (result, read) = ctx
        .db
        .run(move |conn| {
            // The common case in one statement, with the copy of the client
            // when it authenticates the request as is.
            let mut attempt = Attempt::default();
            let requirement = req.secret_requirement();
            if let Some(app) = fast::usable_copy(tenant_id, copy.as_deref(), &creds, requirement) {
                if let Some(response) = attempt.token(conn, tenant_id, app, &req)? {
                    return Ok((Ok(response), ClientRead::Copy));
                }
            }
            // Everything else, refusals included, on a fresh read of the
            // client, which becomes the copy.
            let (client, loaded) =
                authenticate_and_load(conn, tenant_id, &creds, requirement, ip.clone())?;
            let result = client.and_then(|client| {
                if let Some(response) = attempt.token(conn, tenant_id, &client.app, &req)? {
                    return Ok(response);
                }
                match &req {
                    TokenRequest::Code(req) => {
                        rules::exchange_code(conn, tenant_id, &client, req, ip)
                    }
                    TokenRequest::Refresh(req) => rules::refresh(conn, tenant_id, &client, req, ip),
                }
            });
            Ok::<_, OAuthError>((result, ClientRead::Fresh(loaded)))
        })
        .await?;
    // A fresh read already holds the use it stamped: nothing is pending.
    resolver.settle(read, None);
    Ok(budget.finish(&client_id, result)?.into())
}

#[post("/t/<_>/oauth/revoke", data = "<data>")]
pub async fn revoke(ctx: OAuth<'_>, data: Data<'_>) -> Result<NoStoreJson, OAuthError> {
    let budget = ctx.budget();
    let params = read_params(data).await?;
    let creds: ClientCredentials = budget.credentials(&ctx.basic, &params)?;
    let client_id = creds.client_id.clone();
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let (tenant_id, ip) = (ctx.tenant.id, ctx.ip.0.clone());
    let result = ctx
        .db
        .run(move |conn| {
            let required = SecretRequirement::Required;
            let client = authenticate_client(conn, tenant_id, &creds, required, ip.clone())?;
            rules::revoke(conn, tenant_id, &client, &token, ip)
        })
        .await;
    budget.finish(&client_id, result)?;
    Ok(NoStoreJson(Status::Ok, "{}".into()))
}
