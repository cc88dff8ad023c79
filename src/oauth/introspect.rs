//! RFC 7662 introspection (the app's backend authenticates with the app's
//! client credentials and sees only its own tokens) and userinfo.

use diesel::pg::PgConnection;
use diesel::QueryResult;
use rocket::data::Data;
use rocket::http::Status;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Responder;
use rocket::{get, post, State};
use serde::Serialize;
use serde_json::json;

use super::ctx::{read_params, NoStoreJson, OAuth};
use super::fast;
use crate::auth::client::{check_client, collect_client};
use crate::auth::client_cache::CachedClient;
use crate::auth::resolver::{ClientRead, ClientResolver};
use crate::auth::{authenticate_client, ClientCredentials, CurrentTenant, SecretRequirement};
use crate::config::AppConfig;
use crate::crypto::{self, TokenKind};
use crate::db::batch::{BatchQuery, Batcher};
use crate::db::models::token::{
    access_token_infos, client_and_access_token_info, refresh_token_info, TokenInfo, INFO_BATCH,
};
use crate::db::models::AppKey;
use crate::db::Db;
use crate::error::{Error, ErrorCode, OAuthError};

/// An active token's introspection answer (RFC 7662 §2.2), serialised
/// straight from borrowed fields: the hot path builds no JSON tree.
#[derive(Serialize)]
struct Introspection<'a> {
    active: bool,
    scope: String,
    client_id: &'a str,
    /// The creator's email, or the subject of a delegated creator without one.
    username: &'a str,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    token_type: &'static str,
    exp: i64,
    iat: i64,
    iss: &'a str,
    grant_id: i64,
}

#[derive(Serialize)]
struct UserInfo<'a> {
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    scope: String,
    client_id: &'a str,
}

fn to_json<T: Serialize>(value: &T) -> NoStoreJson {
    match serde_json::to_string(value) {
        Ok(body) => NoStoreJson(Status::Ok, body),
        Err(_) => NoStoreJson(
            Status::InternalServerError,
            r#"{"error":"server_error"}"#.into(),
        ),
    }
}

fn inactive() -> NoStoreJson {
    NoStoreJson(Status::Ok, json!({"active": false}).to_string())
}

/// The introspection answer for what the database said about the token:
/// active only when it is live and belongs to the authenticated app.
fn answer(
    info: Option<TokenInfo>,
    app_id: i64,
    token_type: &'static str,
    issuer: &str,
) -> NoStoreJson {
    match info {
        Some(info) if info.active && info.app_id == app_id => to_json(&Introspection {
            active: true,
            scope: info.scopes.join(" "),
            client_id: &info.client_id,
            username: info
                .email
                .as_deref()
                .or(info.subject.as_deref())
                .unwrap_or_default(),
            sub: info.sub(),
            email: info.email.as_deref(),
            name: info.name.as_deref(),
            token_type,
            exp: info.expires_at.timestamp(),
            iat: info.issued_at.timestamp(),
            iss: issuer,
            grant_id: info.grant_id,
        }),
        _ => inactive(),
    }
}

#[post("/t/<_>/oauth/introspect", data = "<data>")]
pub async fn introspect(ctx: OAuth<'_>, data: Data<'_>) -> Result<NoStoreJson, OAuthError> {
    let budget = ctx.budget();
    let params = read_params(data).await?;
    let creds = budget.credentials(&ctx.basic, &params)?;
    let client_id = creds.client_id.clone();
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?
        .to_string();
    let issuer = ctx.config.tenant_url(&ctx.tenant.slug);
    // token_type_hint is not needed: the prefix says which kind of token it is.
    let result = if crypto::looks_like(TokenKind::AccessToken, &token)
        && crate::db::models::app::looks_like_client_id(&creds.client_id)
    {
        introspect_access(&ctx, creds, &token, &issuer).await
    } else {
        introspect_other(&ctx, creds, token, issuer).await
    };
    budget.finish(&client_id, result)
}

/// The hot path: an access token, the client and the token in one read on
/// the worker; with a current copy of the client, only the token (through
/// the lookups userinfo shares) and the copy's version.
async fn introspect_access(
    ctx: &OAuth<'_>,
    creds: ClientCredentials,
    token: &str,
    issuer: &str,
) -> Result<NoStoreJson, OAuthError> {
    let tenant_id = ctx.tenant.id;
    let resolver = ClientResolver::new(ctx.keys, tenant_id, &creds);
    let copy = resolver.copy().filter(|c| fast::copy_decides(c, &creds));
    let digest = crypto::digest(token);
    let batched = match copy.as_deref() {
        Some(copy) => {
            let found = ctx.lookups.get(ctx.db, (tenant_id, digest.clone())).await?;
            fast::introspection_copy_current(copy, found)
        }
        None => None,
    };
    // Else, and for a token the lookups did not find (or not the copy's
    // app's): one read of the client and the token.
    let (read, info) = match batched {
        Some(info) => (ClientRead::Copy, Some(info)),
        None => {
            let (copy, client_id) = (copy.clone(), creds.client_id.clone());
            ctx.db
                .read(move |conn| {
                    read_client_and_token(conn, tenant_id, copy.as_deref(), &client_id, &digest)
                })
                .await?
        }
    };
    // The client as read (every unrevoked secret, not only those the copy
    // keeps), or the copy.
    let client = match &read {
        ClientRead::Fresh(fresh) => fresh.as_ref().map(|(app, s)| (app, s.as_slice())),
        ClientRead::Copy => copy.as_deref().map(|c| (&c.app, c.secrets.as_slice())),
    };
    let required = SecretRequirement::Required;
    let (client, write) = check_client(tenant_id, &creds, required, ctx.ip.0.clone(), client);
    let app_id = client.map(|c| c.app.id);
    resolver.settle(read, write.as_ref());
    // A use to record (once a minute) or a failure to audit: a write, so on
    // a blocking thread, and made before the answer. Neither changes the
    // answer when it cannot be made: a wrong secret stays a 401 (and counts
    // against the caller's budget) even when the pool is saturated, and the
    // use is stamped by a later request.
    if let Some(write) = write {
        let what = write.kind();
        if let Err(e) = ctx.db.run(move |conn| write.apply(conn)).await {
            tracing::warn!(write = what, error = %e, "client authentication write failed");
        }
    }
    app_id.map(|app_id| answer(info, app_id, "Bearer", issuer))
}

/// With a copy, the token and the copy's version (`fast`); else, or when
/// the copy is out of date, the app, its secrets and the token.
fn read_client_and_token(
    conn: &mut PgConnection,
    tenant_id: i64,
    copy: Option<&CachedClient<AppKey>>,
    client_id: &str,
    digest: &[u8],
) -> Result<(ClientRead<AppKey>, Option<TokenInfo>), OAuthError> {
    if let Some(copy) = copy {
        if let Some(info) = fast::introspection_with_copy(conn, tenant_id, copy, digest)? {
            return Ok((ClientRead::Copy, info));
        }
    }
    let (rows, info) =
        client_and_access_token_info(conn, tenant_id, client_id, digest).map_err(Error::from)?;
    Ok((ClientRead::Fresh(collect_client(rows)), info))
}

/// A refresh token (or anything else): authenticated on a fresh read.
async fn introspect_other(
    ctx: &OAuth<'_>,
    creds: ClientCredentials,
    token: String,
    issuer: String,
) -> Result<NoStoreJson, OAuthError> {
    let (tenant_id, ip) = (ctx.tenant.id, ctx.ip.0.clone());
    ctx.db
        .run(move |conn| {
            let required = SecretRequirement::Required;
            let client = authenticate_client(conn, tenant_id, &creds, required, ip)?;
            Ok(if crypto::looks_like(TokenKind::RefreshToken, &token) {
                let digest = crypto::digest(&token);
                let info = refresh_token_info(conn, tenant_id, &digest).map_err(Error::from)?;
                answer(info, client.app.id, "refresh_token", &issuer)
            } else {
                inactive()
            })
        })
        .await
}

/// A Bearer token from the `Authorization` header.
pub struct BearerToken(Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BearerToken {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let token = req.headers().get_one("Authorization").and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| value.trim().to_string())
        });
        Outcome::Success(BearerToken(token))
    }
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750 §3).
pub struct BearerError(OAuthError);

impl<'r> Responder<'r, 'static> for BearerError {
    fn respond_to(self, req: &'r Request<'_>) -> rocket::response::Result<'static> {
        let challenge = if self.0.status == Status::Unauthorized {
            Some(format!(
                "Bearer realm=\"kitauth\", error=\"{}\", error_description=\"{}\"",
                self.0.error, self.0.description
            ))
        } else {
            None
        };
        let mut inner = self.0;
        inner.www_authenticate = challenge;
        inner.respond_to(req)
    }
}

/// Access-token lookups, batched (`db::batch`) across userinfo and
/// introspection: (tenant, token digest) to the token's app's
/// `auth_version` and what the token says.
pub struct AccessTokenLookups;

impl BatchQuery for AccessTokenLookups {
    type Item = (i64, Vec<u8>);
    type Out = Option<(i64, TokenInfo)>;
    const MAX_BATCH: usize = INFO_BATCH;

    fn run(conn: &mut PgConnection, items: &[Self::Item]) -> QueryResult<Vec<Self::Out>> {
        access_token_infos(conn, items)
    }
}

#[get("/t/<_>/oauth/userinfo")]
pub async fn userinfo(
    tenant: CurrentTenant,
    db: &State<Db>,
    lookups: &State<Batcher<AccessTokenLookups>>,
    bearer: BearerToken,
) -> Result<NoStoreJson, BearerError> {
    let invalid = || {
        BearerError(OAuthError::new(
            Status::Unauthorized,
            ErrorCode::InvalidToken,
            "the access token is missing, expired or revoked",
        ))
    };
    let token = bearer.0.ok_or_else(invalid)?;
    if !crypto::looks_like(TokenKind::AccessToken, &token) {
        return Err(invalid());
    }
    let digest = crypto::digest(&token);
    let info: Option<TokenInfo> = lookups
        .get(db, (tenant.id, digest))
        .await
        .map_err(|e| BearerError(OAuthError::from(e)))?
        .map(|(_, info)| info);
    match info {
        Some(info) if info.active => Ok(to_json(&UserInfo {
            sub: info.sub(),
            email: info.email.as_deref(),
            name: info.name.as_deref(),
            scope: info.scopes.join(" "),
            client_id: &info.client_id,
        })),
        _ => Err(invalid()),
    }
}

#[get("/t/<_>/.well-known/oauth-authorization-server")]
pub async fn metadata(tenant: CurrentTenant, config: &State<AppConfig>) -> NoStoreJson {
    let base = config.tenant_url(&tenant.slug);
    NoStoreJson(
        Status::Ok,
        json!({
            "issuer": base,
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "revocation_endpoint": format!("{base}/oauth/revoke"),
            "introspection_endpoint": format!("{base}/oauth/introspect"),
            "userinfo_endpoint": format!("{base}/oauth/userinfo"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        })
        .to_string(),
    )
}
