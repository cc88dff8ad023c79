//! The OAuth business rules, each in one place: code exchange, refresh
//! rotation with replay detection, and revocation. Handlers parse and
//! authenticate; these functions decide, inside one transaction each.

use chrono::{Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::auth::AuthenticatedClient;
use crate::crypto::{self, TokenKind};
use crate::db::models::token::{
    exchange_code_fast, issue_for_code, issue_pair_with, refresh_fast, rotate_pair, IssuedPair,
};
use crate::db::models::{AccessToken, App, AuthorizationCode, Grant, NewAuditEvent, RefreshToken};
use crate::db::schema::{end_users, grants, refresh_tokens};
use crate::db::{self, DatabaseFailure};
use crate::error::{Error, OAuthError};

/// The token endpoint's success body (Doorkeeper's shape, which Kit expects).
#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: String,
    pub created_at: i64,
}

impl TokenResponse {
    fn new(pair: IssuedPair, scopes: &[String]) -> Self {
        TokenResponse {
            access_token: pair.access_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: pair.refresh_token,
            scope: scopes.join(" "),
            created_at: pair.created_at.timestamp(),
        }
    }
}

/// Errors inside a flow's transaction: a database failure, or a refusal
/// that rolls the transaction back so bad input changes no row.
enum TxError {
    Db(diesel::result::Error),
    Refuse(OAuthError),
}

impl From<diesel::result::Error> for TxError {
    fn from(e: diesel::result::Error) -> Self {
        TxError::Db(e)
    }
}

impl DatabaseFailure for TxError {
    fn database_error(&self) -> Option<&diesel::result::Error> {
        match self {
            TxError::Db(e) => Some(e),
            TxError::Refuse(_) => None,
        }
    }
}

/// A fast attempt's result: a transient failure (a deadlock, a
/// serialization failure, a statement time-out) is not an answer either,
/// so the rules decide that request too.
fn fast<T>(r: diesel::QueryResult<Option<T>>) -> Result<Option<T>, OAuthError> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if db::is_transient(&e) => Ok(None),
        Err(e) => Err(OAuthError::from(Error::from(e))),
    }
}

fn finish<T>(r: Result<T, TxError>) -> Result<T, OAuthError> {
    match r {
        Ok(v) => Ok(v),
        Err(TxError::Refuse(e)) => Err(e),
        Err(TxError::Db(e)) => Err(OAuthError::from(Error::from(e))),
    }
}

/// What a flow decided; a security event commits its revocation and then
/// answers `invalid_grant`.
enum Decision {
    Issued(TokenResponse),
    Revoked(&'static str),
}

fn decided(d: Result<Decision, OAuthError>) -> Result<TokenResponse, OAuthError> {
    match d? {
        Decision::Issued(r) => Ok(r),
        Decision::Revoked(why) => Err(OAuthError::invalid_grant(why)),
    }
}

fn actor(client: &AuthenticatedClient) -> String {
    format!("client:{}", client.app.client_id)
}

/// What a code exchange checks before it touches the database; the code's
/// digest.
fn exchange_checks(
    app: &App,
    code: &str,
    redirect_uri: Option<&str>,
) -> Result<Vec<u8>, OAuthError> {
    if !crypto::looks_like(TokenKind::AuthorizationCode, code) {
        return Err(OAuthError::invalid_grant(
            "the authorization code is invalid",
        ));
    }
    // Kit sends a different registered URI here than at authorize, so any
    // registered one will do. Whether one is required at all depends on the
    // code (RFC 6749 §4.1.3), which `redirect_uri_rule` decides.
    if redirect_uri.is_some_and(|uri| !app.has_redirect_uri(uri)) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri is not registered for this client",
        ));
    }
    Ok(crypto::digest(code))
}

/// RFC 6749 §4.1.3: the token request must carry `redirect_uri` when the
/// authorize request that made `code` carried one, and only then.
fn redirect_uri_rule(
    code: &AuthorizationCode,
    redirect_uri: Option<&str>,
) -> Result<(), OAuthError> {
    if code.redirect_uri_sent() && redirect_uri.is_none() {
        return Err(OAuthError::invalid_request("redirect_uri is required"));
    }
    Ok(())
}

/// The common case of a code exchange in one statement; it writes nothing
/// unless the code is unused, unexpired and its PKCE challenge (if any) is
/// met, and the app is still at the version `app` was read with.
fn exchange_common(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    digest: &[u8],
    code_verifier: Option<&str>,
) -> Result<Option<TokenResponse>, OAuthError> {
    // A malformed verifier is refused by the rules, never taken as absent.
    if code_verifier.is_some_and(|v| !crypto::valid_pkce_verifier(v)) {
        return Ok(None);
    }
    let pkce_s256 = code_verifier.map(crypto::pkce_s256);
    Ok(
        fast(exchange_code_fast(conn, tenant_id, app, digest, pkce_s256))?
            .map(|(pair, scopes)| TokenResponse::new(pair, &scopes)),
    )
}

/// The token endpoint with a client authenticated from its copy (`app`):
/// the common case of either grant, or `None` for anything else (nothing
/// was written), which the caller then decides with a fresh read of the
/// client. A copy can make a request succeed with one statement; it never
/// refuses one.
pub fn issue_if_common(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    grant: &CommonGrant<'_>,
) -> Result<Option<TokenResponse>, OAuthError> {
    match *grant {
        CommonGrant::Code {
            code,
            redirect_uri,
            code_verifier,
        } => match exchange_checks(app, code, redirect_uri) {
            // Without a redirect_uri, only the code row can tell whether
            // one was required: that is for the rules to decide. Kit always
            // sends one.
            Ok(digest) if redirect_uri.is_some() => {
                exchange_common(conn, tenant_id, app, &digest, code_verifier)
            }
            _ => Ok(None),
        },
        CommonGrant::Refresh { token, scope } => {
            if scope.is_some() || !crypto::looks_like(TokenKind::RefreshToken, token) {
                return Ok(None);
            }
            refresh_common(conn, tenant_id, app, token)
        }
    }
}

/// A token request's grant, as `issue_if_common` takes it.
pub enum CommonGrant<'a> {
    Code {
        code: &'a str,
        redirect_uri: Option<&'a str>,
        code_verifier: Option<&'a str>,
    },
    Refresh {
        token: &'a str,
        scope: Option<&'a str>,
    },
}

fn refresh_common(
    conn: &mut PgConnection,
    tenant_id: i64,
    app: &App,
    token: &str,
) -> Result<Option<TokenResponse>, OAuthError> {
    let digest = crypto::digest(token);
    Ok(fast(refresh_fast(conn, tenant_id, app, &digest))?
        .map(|(pair, scopes)| TokenResponse::new(pair, &scopes)))
}

/// `grant_type=authorization_code`.
pub fn exchange_code(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    code: &str,
    redirect_uri: Option<&str>,
    code_verifier: Option<&str>,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let app = &client.app;
    let digest = exchange_checks(app, code, redirect_uri)?;
    if redirect_uri.is_some() {
        if let Some(response) = exchange_common(conn, tenant_id, app, &digest, code_verifier)? {
            return Ok(response);
        }
    }
    // Otherwise find out why, with the same rules, in a transaction of its own.
    let result = db::transaction(conn, |conn| -> Result<Decision, TxError> {
        let Some(row) = AuthorizationCode::consume(conn, tenant_id, app.id, &digest)? else {
            // Either unknown, or used before: a replay revokes what it produced.
            let used = AuthorizationCode::find_by_digest(conn, tenant_id, app.id, &digest)?;
            if let Some(grant_id) = used.and_then(|c| c.grant_id) {
                Grant::revoke(conn, tenant_id, grant_id, "code_replay")?;
                NewAuditEvent::new(tenant_id, actor(client), "code.replayed")
                    .object("grant", grant_id)
                    .ip(ip.clone())
                    .insert(conn)?;
                return Ok(Decision::Revoked("the authorization code was already used"));
            }
            return Err(TxError::Refuse(OAuthError::invalid_grant(
                "the authorization code is invalid",
            )));
        };
        if row.expires_at <= Utc::now() {
            return Err(TxError::Refuse(OAuthError::invalid_grant(
                "the authorization code has expired",
            )));
        }
        redirect_uri_rule(&row, redirect_uri).map_err(TxError::Refuse)?;
        // RFC 9700 §2.1.1: a verifier for a code issued without a
        // challenge is a downgrade attempt, and a malformed one is refused
        // rather than taken as absent.
        let pkce = match (row.code_challenge.as_deref(), code_verifier) {
            (None, None) => Ok(()),
            (_, Some(v)) if !crypto::valid_pkce_verifier(v) => {
                Err("the code_verifier is malformed")
            }
            (None, Some(_)) => {
                Err("a code_verifier was sent for a code issued without a code_challenge")
            }
            (Some(_), None) => Err("the code_verifier is required"),
            (Some(challenge), Some(v)) if crypto::pkce_s256_matches(v, challenge) => Ok(()),
            (Some(_), Some(_)) => Err("the code_verifier does not match the code_challenge"),
        };
        pkce.map_err(|why| TxError::Refuse(OAuthError::invalid_grant(why)))?;
        // The creator is not disabled, and cannot become so before this
        // commits (see `creator_enabled`).
        if !creator_enabled(conn, tenant_id, row.end_user_id)? {
            return Err(TxError::Refuse(OAuthError::invalid_grant(
                "the creator's account is disabled",
            )));
        }
        // Grant, first pair and the code's link to the grant: one statement.
        let (pair, _grant_id) = issue_for_code(conn, app, &row)?;
        Ok(Decision::Issued(TokenResponse::new(pair, &row.scopes)))
    });
    decided(finish(result))
}

/// Whether the creator `end_user_id` exists and is not disabled, with a
/// share lock on the row until the transaction ends: a disable in progress
/// is waited for (and then seen), and a disable that comes later waits for
/// this transaction, so its revocation sees what this one wrote.
pub fn creator_enabled(
    conn: &mut PgConnection,
    tenant_id: i64,
    end_user_id: i64,
) -> QueryResult<bool> {
    end_users::table
        .filter(end_users::tenant_id.eq(tenant_id))
        .filter(end_users::id.eq(end_user_id))
        .filter(end_users::disabled.eq(false))
        .select(end_users::id)
        .for_share()
        .first::<i64>(conn)
        .optional()
        .map(|found| found.is_some())
}

/// The scopes a refresh issues (RFC 6749 §6): the requested ones, or the
/// grant's when none are requested, and never one the app no longer has.
/// `None`: a requested scope exceeds what the grant (or the app) allows.
fn refresh_scopes(grant: &Grant, app: &App, requested: Option<&str>) -> Option<Vec<String>> {
    let allowed = |s: &String| grant.scopes.contains(s) && app.allowed_scopes.contains(s);
    match requested {
        None => Some(
            grant
                .scopes
                .iter()
                .filter(|s| allowed(s))
                .cloned()
                .collect(),
        ),
        Some(requested) => {
            let requested = super::params::split_scopes(requested);
            requested.iter().all(allowed).then_some(requested)
        }
    }
}

/// `grant_type=refresh_token`: rotate, with replay detection and a grace
/// window for a client that lost the answer to its last refresh.
pub fn refresh(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    token: &str,
    scope: Option<&str>,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    if !crypto::looks_like(TokenKind::RefreshToken, token) {
        return Err(OAuthError::invalid_grant("the refresh token is invalid"));
    }
    // The common case (no scope narrowing) in one statement; it writes
    // nothing unless the token is live and unused in a live grant of this
    // app, and the app is at the version `client` was authenticated with.
    if scope.is_none() {
        if let Some(response) = refresh_common(conn, tenant_id, &client.app, token)? {
            return Ok(response);
        }
    }
    let digest = crypto::digest(token);
    let app = &client.app;
    // Otherwise the rules, in a transaction that locks the grant.
    let result = db::transaction(conn, |conn| -> Result<Decision, TxError> {
        let invalid = || TxError::Refuse(OAuthError::invalid_grant("the refresh token is invalid"));
        // Lock the token's grant, and the token with it, in one statement:
        // every rotation of a family is serialised on the grant row (locked
        // first), and the row lock makes PostgreSQL re-read the token's
        // current state after any wait, so the checks below see what the
        // previous holder of the lock committed.
        let found: Option<(Grant, RefreshToken)> = grants::table
            .inner_join(refresh_tokens::table)
            .filter(grants::tenant_id.eq(tenant_id))
            .filter(refresh_tokens::token_digest.eq(&digest))
            .filter(refresh_tokens::tenant_id.eq(tenant_id))
            .select((Grant::as_select(), RefreshToken::as_select()))
            .for_update()
            .first(conn)
            .optional()?;
        let (grant, rt) = found.ok_or_else(invalid)?;
        if grant.app_id != app.id {
            return Err(invalid());
        }
        if grant.revoked_at.is_some() {
            return Err(TxError::Refuse(OAuthError::invalid_grant(
                "the refresh token has been revoked",
            )));
        }
        let now = Utc::now();
        let reuse = |conn: &mut PgConnection| -> Result<Decision, TxError> {
            Grant::revoke(conn, tenant_id, grant.id, "refresh_token_reuse")?;
            NewAuditEvent::new(tenant_id, actor(client), "refresh.reuse_detected")
                .object("grant", grant.id)
                .ip(ip.clone())
                .details(serde_json::json!({"refresh_token": rt.hint}))
                .insert(conn)?;
            Ok(Decision::Revoked(
                "the refresh token was already used; the grant has been revoked",
            ))
        };
        if rt.revoked_at.is_some() {
            return reuse(conn);
        }
        // A used token is judged as a replay (below) even when expired.
        if rt.used_at.is_none() && rt.expires_at <= now {
            return Err(TxError::Refuse(OAuthError::invalid_grant(
                "the refresh token has expired",
            )));
        }
        // Reuse is decided first (above, and for a used token below, before
        // any other check), so that nothing else about the request, such
        // as an invalid scope, lets a thief probe a stolen token without
        // revoking its grant.
        let retry_of = match rt.used_at {
            None => None,
            Some(used_at) => {
                // A retry of the immediate predecessor of the live token,
                // within the grace window: the unseen successor dies and a
                // fresh pair replaces it, so one branch stays live.
                let grace = Duration::seconds(app.refresh_grace_secs.into());
                let live = RefreshToken::live_of_grant(conn, grant.id)?;
                let retry =
                    now - used_at <= grace && live.len() == 1 && live[0].parent_id == Some(rt.id);
                if !retry {
                    return reuse(conn);
                }
                live.into_iter().next()
            }
        };
        let scopes = refresh_scopes(&grant, app, scope).ok_or_else(|| {
            TxError::Refuse(OAuthError::invalid_scope(
                "the requested scope exceeds the scope of the grant",
            ))
        })?;
        let pair = match retry_of {
            // The common case: one statement marks the token used, issues
            // its successor and stamps the grant.
            None => {
                return Ok(Decision::Issued(TokenResponse::new(
                    rotate_pair(conn, &grant, app, &rt, &scopes)?,
                    &scopes,
                )))
            }
            Some(successor) => {
                RefreshToken::revoke_with_access(conn, &successor)?;
                NewAuditEvent::new(tenant_id, actor(client), "refresh.retried_within_grace")
                    .object("grant", grant.id)
                    .ip(ip.clone())
                    .insert(conn)?;
                issue_pair_with(conn, &grant, app, &scopes, Some(rt.id))?
            }
        };
        diesel::update(grants::table.find(grant.id))
            .set(grants::last_refreshed_at.eq(diesel::dsl::now))
            .execute(conn)?;
        Ok(Decision::Issued(TokenResponse::new(pair, &scopes)))
    });
    decided(finish(result))
}

/// RFC 7009: revoking an access or a refresh token ends the whole grant.
/// Unknown tokens, and tokens of other clients, are a silent success.
pub fn revoke(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    token: &str,
    ip: Option<String>,
) -> Result<(), OAuthError> {
    let digest = crypto::digest(token);
    let grant_id = if crypto::looks_like(TokenKind::AccessToken, token) {
        AccessToken::find_by_digest(conn, tenant_id, &digest)
            .map_err(Error::from)?
            .map(|t| t.grant_id)
    } else if crypto::looks_like(TokenKind::RefreshToken, token) {
        RefreshToken::find_by_digest(conn, tenant_id, &digest)
            .map_err(Error::from)?
            .map(|t| t.grant_id)
    } else {
        None
    };
    let Some(grant_id) = grant_id else {
        return Ok(());
    };
    let result = db::transaction(conn, |conn| -> Result<(), TxError> {
        let Some(grant) = Grant::lock(conn, tenant_id, grant_id)? else {
            return Ok(());
        };
        if grant.app_id != client.app.id {
            return Ok(());
        }
        if Grant::revoke(conn, tenant_id, grant.id, "revoked_by_client")? {
            NewAuditEvent::new(tenant_id, actor(client), "grant.revoked")
                .object("grant", grant.id)
                .ip(ip.clone())
                .insert(conn)?;
        }
        Ok(())
    });
    finish(result)
}
