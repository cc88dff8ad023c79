//! The fast paths: the common case of a request in one statement, or with
//! a copy of its client instead of a read.
//!
//! **The rule: a fast attempt may only succeed.** Each function here
//! answers `Some` only with what the rules (`oauth::rules`) would have
//! answered, and `None` for everything else, having written nothing; `None`
//! means the rules decide. A refusal never comes from here. This module is
//! also the only place that decides whether a copy of a client
//! (`ClientCache`) may be used; `auth::resolver` keeps the copies.
//!
//! Each clause of the one-statement attempts (`db::sql`) mirrors a rule:
//!
//! | statement | SQL clause | the rule it mirrors (`oauth/rules.rs` unless named) |
//! |---|---|---|
//! | exchange | `code_digest = $ AND tenant_id = $ AND app_id = $` | `AuthorizationCode::consume`: this tenant's, this app's code |
//! | exchange | `used_at IS NULL` | `consume` finds no unused code → `code_not_consumed` (replay revokes) |
//! | exchange | `expires_at > $now` | "the authorization code has expired" |
//! | exchange | `code_challenge IS NOT DISTINCT FROM $s256` | `pkce_rule` (a verifier without a challenge, or a malformed one, is left to it: [`code`]) |
//! | exchange | `end_user_id IN (… NOT disabled FOR SHARE)` | `creator_enabled` |
//! | exchange | `app_unchanged` (`auth_version = $`) | `auth::client::check_client` on a fresh read |
//! | exchange | redirect URI registered, sent | `exchange_checks`, `redirect_uri_rule` (checked here before the statement: [`code`]) |
//! | rotate | `grants.tenant_id = $ AND grants.app_id = $` and the token's grant | `lock_refresh`, `Verdict::Unknown` |
//! | rotate | `grants.revoked_at IS NULL` | `Verdict::GrantRevoked` |
//! | rotate | `refresh_tokens.used_at IS NULL AND revoked_at IS NULL` | `Verdict::Reuse`, `Verdict::GraceRetry` |
//! | rotate | `expires_at > $now` | `Verdict::Expired` |
//! | rotate | `grants.scopes <@ $allowed_scopes`, no `scope` sent | `refresh_scopes` |
//! | rotate | `FOR UPDATE` on the grant | `lock_refresh` (one rotation per family at a time) |
//! | rotate | `app_unchanged` | `check_client` on a fresh read |
//! | introspection | the token's app's `auth_version` = the copy's | `check_client` on a fresh read ([`introspection_copy_current`]) |

use diesel::pg::PgConnection;

use super::request::{CodeRequest, RefreshRequest, TokenRequest};
use super::rules::{exchange_checks, TokenResponse};
use crate::auth::client::{check_client, ClientApp, ClientCredentials, SecretRequirement};
use crate::auth::client_cache::CachedClient;
use crate::crypto::{self, TokenKind};
use crate::db::models::token::{access_token_info_if_current, TokenInfo};
use crate::db::models::{App, AppKey};
use crate::db::{self, sql};
use crate::error::{Error, OAuthError};

/// A statement's result as an attempt's: a transient failure (a deadlock, a
/// serialization failure, a statement time-out) is no answer either, so the
/// rules decide that request too.
fn attempted<T>(r: diesel::QueryResult<Option<T>>) -> Result<Option<T>, OAuthError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if db::is_transient(&e) => Ok(None),
        Err(e) => Err(OAuthError::from(Error::from(e))),
    }
}

/// Whether a copy may take part in this request at all: it holds every
/// unrevoked secret, or the presented secret is one it holds
/// (`CachedClient::can_decide`), so a refusal that could be "expired"
/// rather than "wrong" is always decided on a fresh read.
pub fn copy_decides<A>(copy: &CachedClient<A>, creds: &ClientCredentials) -> bool {
    copy.can_decide(creds.client_secret.as_deref(), chrono::Utc::now())
}

/// The token endpoint's copy, when it authenticates the request as is:
/// the secret checks out and nothing is to be written (no use to stamp, no
/// failure to audit). Anything else is decided on a fresh read.
pub fn usable_copy<'c>(
    tenant_id: i64,
    copy: Option<&'c CachedClient<App>>,
    creds: &ClientCredentials,
    requirement: SecretRequirement,
) -> Option<&'c App> {
    let copy = copy.filter(|c| copy_decides(c, creds))?;
    let (checked, write) = check_client(
        tenant_id,
        creds,
        requirement,
        None,
        Some((&copy.app, copy.secrets.as_slice())),
    );
    (checked.is_ok() && write.is_none()).then_some(&copy.app)
}

/// The token endpoint's one-statement attempt, made at most once per
/// version of the client: a request whose attempt found nothing with its
/// copy is not tried again with a fresh read of the same version (the
/// statement would find the same), only with a newer one.
#[derive(Debug, Default)]
pub struct Attempt {
    tried_at: Option<i64>,
}

impl Attempt {
    /// The common case of either grant for a client authenticated as `app`
    /// (from its copy or a fresh read), or `None`.
    pub fn token(
        &mut self,
        conn: &mut PgConnection,
        tenant_id: i64,
        app: &App,
        req: &TokenRequest,
    ) -> Result<Option<TokenResponse>, OAuthError> {
        if self.tried_at == Some(app.auth_version) {
            return Ok(None);
        }
        self.tried_at = Some(app.auth_version);
        match req {
            TokenRequest::Code(req) => code(conn, tenant_id, app, req),
            TokenRequest::Refresh(req) => refresh(conn, tenant_id, app, req),
        }
    }
}

/// A code exchange in one statement (`sql::exchange_code`), when the
/// request is one the statement can decide.
fn code(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    req: &CodeRequest,
) -> Result<Option<TokenResponse>, OAuthError> {
    // Without a redirect_uri, only the code row can tell whether one was
    // required: that is for the rules. Kit always sends one.
    if req.redirect_uri.is_none() {
        return Ok(None);
    }
    let Ok(digest) = exchange_checks(app, &req.code, req.redirect_uri.as_deref()) else {
        return Ok(None);
    };
    // A malformed verifier is refused by the rules, never taken as absent.
    let verifier = req.code_verifier.as_deref();
    if verifier.is_some_and(|v| !crypto::valid_pkce_verifier(v)) {
        return Ok(None);
    }
    let pkce_s256 = verifier.map(crypto::pkce_s256);
    Ok(
        attempted(sql::exchange_code(conn, tenant_id, app, &digest, pkce_s256))?
            .map(|(pair, scopes)| TokenResponse::new(pair, &scopes)),
    )
}

/// A refresh rotation in one statement (`sql::rotate_refresh`), when no
/// scope is asked for (narrowing is the rules').
fn refresh(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    req: &RefreshRequest,
) -> Result<Option<TokenResponse>, OAuthError> {
    if req.scope.is_some() || !crypto::looks_like(TokenKind::RefreshToken, &req.refresh_token) {
        return Ok(None);
    }
    let digest = crypto::digest(&req.refresh_token);
    Ok(
        attempted(sql::rotate_refresh(conn, tenant_id, app, &digest))?
            .map(|(pair, scopes)| TokenResponse::new(pair, &scopes)),
    )
}

/// Introspection with a copy: what the batched token lookup found
/// (`(auth_version, info)` of the token's app), when it may stand for a
/// fresh read of the client: the token is the copy's app's, and that app is
/// still at the copy's version, read in the same statement as the token.
pub fn introspection_copy_current(
    copy: &CachedClient<AppKey>,
    found: Option<(i64, TokenInfo)>,
) -> Option<TokenInfo> {
    found
        .filter(|(version, info)| {
            *version == copy.app.auth_version
                && info.app_id == copy.app.id()
                && info.client_id == copy.app.client_id()
        })
        .map(|(_, info)| info)
}

/// Introspection with a copy, for a token the batched lookup did not give
/// (unknown, or another app's): the token and the app's current version in
/// one query. `Some(info)` when the copy is current (`info` is then what a
/// fresh read would say of the token), `None` when the app changed or is
/// gone.
pub fn introspection_with_copy(
    conn: &mut PgConnection,
    tenant_id: i64,
    copy: &CachedClient<AppKey>,
    digest: &[u8],
) -> Result<Option<Option<TokenInfo>>, OAuthError> {
    access_token_info_if_current(conn, tenant_id, &copy.app, digest)
        .map_err(|e| OAuthError::from(Error::from(e)))
}
