//! The OAuth rules, each in one place: code exchange, refresh rotation with
//! its grace window and reuse detection, and revocation. Each decides
//! inside one transaction that locks what it decides on. Handlers parse and
//! authenticate; `oauth::fast` may answer the common case sooner, but only
//! ever with a success these rules would also give, and never refuses.
//!
//! A refresh is decided by a pure function, [`judge`], between a locking
//! read (the grant and the token) and the step that applies the verdict.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use super::request::{CodeRequest, RefreshRequest};
use crate::auth::AuthenticatedClient;
use crate::crypto::{self, TokenKind};
use crate::db::models::token::IssuedPair;
use crate::db::models::{AccessToken, App, AuthorizationCode, Grant, NewAuditEvent, RefreshToken};
use crate::db::schema::{end_users, grants, refresh_tokens};
use crate::db::{self, sql, DatabaseFailure};
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
    pub fn new(pair: IssuedPair, scopes: &[String]) -> Self {
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

/// Errors inside a rule's transaction: a database failure, or a refusal
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

fn refuse(e: OAuthError) -> TxError {
    TxError::Refuse(e)
}

fn finish<T>(r: Result<T, TxError>) -> Result<T, OAuthError> {
    match r {
        Ok(v) => Ok(v),
        Err(TxError::Refuse(e)) => Err(e),
        Err(TxError::Db(e)) => Err(OAuthError::from(Error::from(e))),
    }
}

/// What a rule decided; a security event commits its revocation and then
/// answers `invalid_grant`.
enum Decision {
    Issued(TokenResponse),
    Revoked(&'static str),
}

fn decided(d: Result<Decision, TxError>) -> Result<TokenResponse, OAuthError> {
    match finish(d)? {
        Decision::Issued(r) => Ok(r),
        Decision::Revoked(why) => Err(OAuthError::invalid_grant(why)),
    }
}

fn actor(client: &AuthenticatedClient) -> String {
    format!("client:{}", client.app.client_id)
}

/// What a code exchange checks before it touches the database (the fast
/// attempt too): the code's digest.
pub fn exchange_checks(
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

/// PKCE at the token step. RFC 9700 §2.1.1: a verifier for a code issued
/// without a challenge is a downgrade attempt, and a malformed one is
/// refused rather than taken as absent.
fn pkce_rule(challenge: Option<&str>, verifier: Option<&str>) -> Result<(), OAuthError> {
    let refused = match (challenge, verifier) {
        (None, None) => return Ok(()),
        (_, Some(v)) if !crypto::valid_pkce_verifier(v) => "the code_verifier is malformed",
        (None, Some(_)) => "a code_verifier was sent for a code issued without a code_challenge",
        (Some(_), None) => "the code_verifier is required",
        (Some(challenge), Some(v)) if crypto::pkce_s256_matches(v, challenge) => return Ok(()),
        (Some(_), Some(_)) => "the code_verifier does not match the code_challenge",
    };
    Err(OAuthError::invalid_grant(refused))
}

/// `grant_type=authorization_code`, in a transaction: consumes the code or
/// finds out why it cannot be (unknown, replayed: its grant is revoked,
/// expired, wrong redirect URI or verifier, disabled creator).
pub fn exchange_code(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    req: &CodeRequest,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let app = &client.app;
    let redirect_uri = req.redirect_uri.as_deref();
    let digest = exchange_checks(app, &req.code, redirect_uri)?;
    decided(db::transaction(conn, |conn| {
        let Some(row) = AuthorizationCode::consume(conn, tenant_id, app.id, &digest)? else {
            return code_not_consumed(conn, tenant_id, client, &digest, ip.clone());
        };
        if row.expires_at <= Utc::now() {
            return Err(refuse(OAuthError::invalid_grant(
                "the authorization code has expired",
            )));
        }
        redirect_uri_rule(&row, redirect_uri).map_err(refuse)?;
        pkce_rule(row.code_challenge.as_deref(), req.code_verifier.as_deref()).map_err(refuse)?;
        // The creator is not disabled, and cannot become so before this
        // commits (see `creator_enabled`).
        if !creator_enabled(conn, tenant_id, row.end_user_id)? {
            return Err(refuse(OAuthError::invalid_grant(
                "the creator's account is disabled",
            )));
        }
        // Grant, first pair and the code's link to the grant: one statement.
        let (pair, _grant_id) = sql::issue_for_code(conn, app, &row)?;
        Ok(Decision::Issued(TokenResponse::new(pair, &row.scopes)))
    }))
}

/// A code that could not be consumed: unknown, or used before, in which
/// case the replay revokes the grant it produced.
fn code_not_consumed(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    digest: &[u8],
    ip: Option<String>,
) -> Result<Decision, TxError> {
    let used = AuthorizationCode::find_by_digest(conn, tenant_id, client.app.id, digest)?;
    let Some(grant_id) = used.and_then(|c| c.grant_id) else {
        return Err(refuse(OAuthError::invalid_grant(
            "the authorization code is invalid",
        )));
    };
    Grant::revoke(conn, tenant_id, grant_id, "code_replay")?;
    NewAuditEvent::new(tenant_id, actor(client), "code.replayed")
        .object("grant", grant_id)
        .ip(ip)
        .insert(conn)?;
    Ok(Decision::Revoked("the authorization code was already used"))
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
            let requested = crate::params::split_scopes(requested);
            requested.iter().all(allowed).then_some(requested)
        }
    }
}

/// What a refresh token's state means for a refresh request, decided by
/// [`judge`] under the grant's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Unknown to this app: `invalid_grant`, nothing written.
    Unknown,
    /// The grant was revoked: `invalid_grant`, nothing written.
    GrantRevoked,
    /// Unused but past its lifetime: `invalid_grant`, nothing written.
    Expired,
    /// Live and unused: mark it used and issue its successor.
    Rotate,
    /// The immediate predecessor of the grant's live token, retried within
    /// the grace window: the unseen successor (this id) dies and a fresh
    /// pair replaces it, so one branch stays live.
    GraceRetry { successor: i64 },
    /// Any other replay: the whole grant is revoked and audited.
    Reuse,
}

/// The refresh decision, on what the locking read found: the grant and the
/// token (`None` when unknown), the grant's live refresh tokens (read only
/// when the token was used; empty otherwise), the app's id and grace
/// window, and the time.
///
/// Reuse is decided before anything else about the request (such as a
/// scope it asks for), so that a thief cannot probe a stolen token without
/// revoking its grant. A used token is judged as a replay even when
/// expired.
pub fn judge(
    found: Option<(&Grant, &RefreshToken)>,
    live: &[RefreshToken],
    app_id: i64,
    grace_secs: i32,
    now: DateTime<Utc>,
) -> Verdict {
    let Some((grant, token)) = found.filter(|(g, _)| g.app_id == app_id) else {
        return Verdict::Unknown;
    };
    if grant.revoked_at.is_some() {
        return Verdict::GrantRevoked;
    }
    if token.revoked_at.is_some() {
        return Verdict::Reuse;
    }
    let Some(used_at) = token.used_at else {
        return if token.expires_at <= now {
            Verdict::Expired
        } else {
            Verdict::Rotate
        };
    };
    let within_grace = now - used_at <= Duration::seconds(grace_secs.into());
    match live {
        [successor] if within_grace && successor.parent_id == Some(token.id) => {
            Verdict::GraceRetry {
                successor: successor.id,
            }
        }
        _ => Verdict::Reuse,
    }
}

/// Locks the grant of the refresh token with `digest`, and the token with
/// it, in one statement: every rotation of a family is serialised on the
/// grant row (locked first), and the row lock makes PostgreSQL re-read the
/// token's current state after any wait, so `judge` sees what the previous
/// holder of the lock committed.
fn lock_refresh(
    conn: &mut PgConnection,
    tenant_id: i64,
    digest: &[u8],
) -> QueryResult<Option<(Grant, RefreshToken)>> {
    grants::table
        .inner_join(refresh_tokens::table)
        .filter(grants::tenant_id.eq(tenant_id))
        .filter(refresh_tokens::token_digest.eq(digest))
        .filter(refresh_tokens::tenant_id.eq(tenant_id))
        .select((Grant::as_select(), RefreshToken::as_select()))
        .for_update()
        .first(conn)
        .optional()
}

/// `grant_type=refresh_token`, in a transaction that locks the grant:
/// read, [`judge`], apply.
pub fn refresh(
    conn: &mut PgConnection,
    tenant_id: i64,
    client: &AuthenticatedClient,
    req: &RefreshRequest,
    ip: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid");
    if !crypto::looks_like(TokenKind::RefreshToken, &req.refresh_token) {
        return Err(invalid());
    }
    let digest = crypto::digest(&req.refresh_token);
    let app = &client.app;
    decided(db::transaction(conn, |conn| {
        let found = lock_refresh(conn, tenant_id, &digest)?;
        let live = match &found {
            Some((grant, token)) if token.used_at.is_some() => {
                RefreshToken::live_of_grant(conn, grant.id)?
            }
            _ => Vec::new(),
        };
        let found = found.as_ref().map(|(g, t)| (g, t));
        let verdict = judge(found, &live, app.id, app.refresh_grace_secs, Utc::now());
        match (verdict, found) {
            (Verdict::Unknown, _) | (_, None) => Err(refuse(invalid())),
            (Verdict::GrantRevoked, _) => Err(refuse(OAuthError::invalid_grant(
                "the refresh token has been revoked",
            ))),
            (Verdict::Expired, _) => Err(refuse(OAuthError::invalid_grant(
                "the refresh token has expired",
            ))),
            (Verdict::Reuse, Some((grant, token))) => {
                reuse_detected(conn, client, grant, token, ip.clone())
            }
            (verdict, Some((grant, token))) => {
                let scopes = refresh_scopes(grant, app, req.scope.as_deref()).ok_or_else(|| {
                    refuse(OAuthError::invalid_scope(
                        "the requested scope exceeds the scope of the grant",
                    ))
                })?;
                let successor = match verdict {
                    Verdict::GraceRetry { successor } => live.iter().find(|t| t.id == successor),
                    _ => None,
                };
                let pair = match successor {
                    Some(successor) => {
                        grace_retry(conn, client, grant, token, successor, &scopes, ip.clone())?
                    }
                    // Marks the token used, issues its successor and
                    // stamps the grant: one statement.
                    _ => sql::issue_rotation(conn, grant, app, token, &scopes)?,
                };
                Ok(Decision::Issued(TokenResponse::new(pair, &scopes)))
            }
        }
    }))
}

/// `Verdict::Reuse`: the grant is revoked and the reuse audited.
fn reuse_detected(
    conn: &mut PgConnection,
    client: &AuthenticatedClient,
    grant: &Grant,
    token: &RefreshToken,
    ip: Option<String>,
) -> Result<Decision, TxError> {
    Grant::revoke(conn, grant.tenant_id, grant.id, "refresh_token_reuse")?;
    NewAuditEvent::new(grant.tenant_id, actor(client), "refresh.reuse_detected")
        .object("grant", grant.id)
        .ip(ip)
        .details(serde_json::json!({"refresh_token": token.hint}))
        .insert(conn)?;
    Ok(Decision::Revoked(
        "the refresh token was already used; the grant has been revoked",
    ))
}

/// `Verdict::GraceRetry`: the unseen successor (and its access token) die,
/// the retry is audited, and a fresh pair becomes the token's child.
fn grace_retry(
    conn: &mut PgConnection,
    client: &AuthenticatedClient,
    grant: &Grant,
    token: &RefreshToken,
    successor: &RefreshToken,
    scopes: &[String],
    ip: Option<String>,
) -> Result<IssuedPair, TxError> {
    RefreshToken::revoke_with_access(conn, successor)?;
    NewAuditEvent::new(
        grant.tenant_id,
        actor(client),
        "refresh.retried_within_grace",
    )
    .object("grant", grant.id)
    .ip(ip)
    .insert(conn)?;
    let pair = sql::issue_in_grant(conn, grant, &client.app, scopes, Some(token.id))?;
    Grant::stamp_refreshed(conn, grant.id)?;
    Ok(pair)
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
    finish(db::transaction(conn, |conn| -> Result<(), TxError> {
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
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: i64 = 7;
    const GRACE: i32 = 60;

    fn grant(app_id: i64, revoked: bool, now: DateTime<Utc>) -> Grant {
        Grant {
            id: 1,
            tenant_id: 1,
            app_id,
            end_user_id: 1,
            scopes: vec!["read".into()],
            created_at: now - Duration::hours(1),
            last_refreshed_at: None,
            revoked_at: revoked.then_some(now),
            revoked_reason: None,
        }
    }

    fn token(id: i64, parent_id: Option<i64>, now: DateTime<Utc>) -> RefreshToken {
        RefreshToken {
            id,
            tenant_id: 1,
            grant_id: 1,
            token_digest: Vec::new(),
            hint: "krt_abcd".into(),
            parent_id,
            access_token_id: None,
            created_at: now - Duration::minutes(10),
            expires_at: now + Duration::days(30),
            used_at: None,
            revoked_at: None,
            scopes: vec!["read".into()],
        }
    }

    fn used(mut t: RefreshToken, ago_secs: i64, now: DateTime<Utc>) -> RefreshToken {
        t.used_at = Some(now - Duration::seconds(ago_secs));
        t
    }

    #[test]
    fn a_live_unused_token_rotates_and_an_expired_one_is_refused() {
        let now = Utc::now();
        let g = grant(APP, false, now);
        let t = token(10, None, now);
        assert_eq!(judge(Some((&g, &t)), &[], APP, GRACE, now), Verdict::Rotate);
        let mut expired = t.clone();
        expired.expires_at = now;
        assert_eq!(
            judge(Some((&g, &expired)), &[], APP, GRACE, now),
            Verdict::Expired
        );
    }

    #[test]
    fn an_unknown_token_another_apps_or_a_revoked_grants_is_refused_without_writes() {
        let now = Utc::now();
        let t = token(10, None, now);
        assert_eq!(judge(None, &[], APP, GRACE, now), Verdict::Unknown);
        let other = grant(APP + 1, false, now);
        assert_eq!(
            judge(Some((&other, &t)), &[], APP, GRACE, now),
            Verdict::Unknown
        );
        let revoked = grant(APP, true, now);
        assert_eq!(
            judge(Some((&revoked, &t)), &[], APP, GRACE, now),
            Verdict::GrantRevoked
        );
    }

    #[test]
    fn the_immediate_predecessor_within_grace_is_a_retry_and_every_other_replay_is_reuse() {
        let now = Utc::now();
        let g = grant(APP, false, now);
        let parent = used(token(10, None, now), 5, now);
        let successor = token(11, Some(10), now);
        assert_eq!(
            judge(
                Some((&g, &parent)),
                std::slice::from_ref(&successor),
                APP,
                GRACE,
                now
            ),
            Verdict::GraceRetry { successor: 11 }
        );
        // After the grace window.
        let late = used(token(10, None, now), i64::from(GRACE) + 1, now);
        assert_eq!(
            judge(
                Some((&g, &late)),
                std::slice::from_ref(&successor),
                APP,
                GRACE,
                now
            ),
            Verdict::Reuse
        );
        // An older ancestor: the live token is not its child.
        let grandchild = token(12, Some(11), now);
        assert_eq!(
            judge(Some((&g, &parent)), &[grandchild], APP, GRACE, now),
            Verdict::Reuse
        );
        // Two live branches, or none: never a retry.
        let twin = token(13, Some(10), now);
        assert_eq!(
            judge(Some((&g, &parent)), &[successor, twin], APP, GRACE, now),
            Verdict::Reuse
        );
        assert_eq!(
            judge(Some((&g, &parent)), &[], APP, GRACE, now),
            Verdict::Reuse
        );
    }

    #[test]
    fn reuse_is_judged_before_expiry_and_a_revoked_token_is_reuse() {
        let now = Utc::now();
        let g = grant(APP, false, now);
        let mut expired_used = used(token(10, None, now), 3600, now);
        expired_used.expires_at = now - Duration::minutes(1);
        assert_eq!(
            judge(Some((&g, &expired_used)), &[], APP, GRACE, now),
            Verdict::Reuse
        );
        let mut revoked = token(10, None, now);
        revoked.revoked_at = Some(now);
        assert_eq!(
            judge(Some((&g, &revoked)), &[], APP, GRACE, now),
            Verdict::Reuse
        );
    }

    #[test]
    fn pkce_refuses_downgrades_malformed_and_wrong_verifiers() {
        let verifier = "a".repeat(43);
        let challenge = crypto::pkce_s256(&verifier);
        assert!(pkce_rule(None, None).is_ok());
        assert!(pkce_rule(Some(&challenge), Some(&verifier)).is_ok());
        for (c, v) in [
            (None, Some(verifier.as_str())),
            (Some(challenge.as_str()), None),
            (Some(challenge.as_str()), Some("short")),
            (Some(challenge.as_str()), Some(&"b".repeat(43))),
        ] {
            let e = pkce_rule(c, v).unwrap_err();
            assert_eq!(
                e.error,
                crate::error::ErrorCode::InvalidGrant,
                "{c:?} {v:?}"
            );
        }
    }
}
