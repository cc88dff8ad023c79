//! Delegated sign-in's rows: login requests (an authorization request
//! waiting for the tenant's login service), remembered logins (a browser
//! known to be a subject) and remembered consents. A decision (accept,
//! reject) first locks the undecided request's row and a completion is one
//! update guarded by the row's state, so that of racing callers exactly
//! one wins.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;

use crate::crypto::{self, TokenKind};
use crate::db::models::{EndUser, NewAuditEvent};
use crate::db::schema::{consents, end_users, login_requests, login_sessions};

/// How long a login request waits for the tenant's login service and the
/// browser's return.
pub const LOGIN_REQUEST_TTL_SECS: i64 = 600;

/// The longest a remembered login lasts, whatever `remember_for` asks.
pub const MAX_REMEMBER_SECS: i64 = 30 * 86400;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = login_requests)]
pub struct LoginRequest {
    pub id: i64,
    pub tenant_id: i64,
    pub app_id: i64,
    pub challenge_digest: Vec<u8>,
    pub browser_digest: Vec<u8>,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub end_user_id: Option<i64>,
    pub remember_for_secs: Option<i32>,
    pub verifier_digest: Option<Vec<u8>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub reject_error: Option<String>,
    pub reject_description: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A login request to store: the validated authorization request and the
/// browser it is bound to.
#[derive(Debug, Insertable)]
#[diesel(table_name = login_requests)]
pub struct NewLoginRequest {
    pub tenant_id: i64,
    pub app_id: i64,
    pub challenge_digest: Vec<u8>,
    pub browser_digest: Vec<u8>,
    pub redirect_uri: String,
    pub redirect_uri_sent: bool,
    pub scopes: Vec<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// Who the tenant's login service says the browser's user is.
#[derive(Debug, Clone)]
pub struct Acceptance {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Seconds to remember this browser as the subject (0 or none: not at all).
    pub remember_for: Option<i64>,
}

/// An OAuth error the login service ends the request with.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub error: String,
    pub description: Option<String>,
}

/// Why a login request cannot be decided (accepted or rejected).
#[derive(Debug)]
pub enum DecideError {
    /// No such challenge in this tenant.
    Unknown,
    /// Its 10 minutes are over.
    Expired,
    /// Accepted or rejected already.
    Decided,
    /// The subject's creator is disabled here.
    Disabled,
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for DecideError {
    fn from(e: diesel::result::Error) -> Self {
        DecideError::Db(e)
    }
}

/// A decided request: the verifier for the browser's return (shown once).
#[derive(Debug)]
pub struct Decided {
    pub verifier: String,
}

/// The tenant's login request whose `$column` is the digest of `$value`,
/// a credential of `$kind` (anything else is no request).
macro_rules! find_by {
    ($conn:expr, $tenant_id:expr, $column:ident, $kind:expr, $value:expr) => {{
        if !crypto::looks_like($kind, $value) {
            return Ok(None);
        }
        login_requests::table
            .filter(login_requests::tenant_id.eq($tenant_id))
            .filter(login_requests::$column.eq(crypto::digest($value)))
            .select(LoginRequest::as_select())
            .first($conn)
            .optional()
    }};
}

/// What `create_bounded` did.
#[derive(Debug)]
pub enum Stored {
    /// Stored: the challenge for the login service.
    Challenge(String),
    /// The tenant has its bound of pending requests.
    Full,
    /// The tenant left delegated mode meanwhile.
    NotDelegated,
}

/// Whether the tenant is in delegated mode, its row share-locked until the
/// transaction ends (a sign-in switch updates it, so the two are ordered).
fn still_delegated(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<bool> {
    use crate::db::schema::tenants;
    let mode: Option<String> = tenants::table
        .find(tenant_id)
        .select(tenants::creator_signin)
        .for_share()
        .first(conn)
        .optional()?;
    Ok(mode.as_deref() == Some("delegated"))
}

/// Pending requests of a tenant: not completed and not expired.
macro_rules! pending_of {
    ($tenant_id:expr) => {
        login_requests::table
            .filter(login_requests::tenant_id.eq($tenant_id))
            .filter(login_requests::expires_at.gt(diesel::dsl::now))
            .filter(login_requests::completed_at.is_null())
    };
}

impl LoginRequest {
    /// Stores a login request while the tenant is in delegated mode and
    /// has fewer than `max_pending` pending ones; otherwise nothing is
    /// written. The challenge to send to the login service is shown once;
    /// only its digest is stored.
    pub fn create_bounded(
        conn: &mut PgConnection,
        mut new: NewLoginRequest,
        max_pending: i64,
    ) -> QueryResult<Stored> {
        conn.transaction(|conn| {
            // One start of the tenant at a time counts and inserts, so that
            // racing starts cannot pass the bound together.
            diesel::sql_query("SELECT pg_advisory_xact_lock($1) IS NULL AS n")
                .bind::<diesel::sql_types::BigInt, _>(new.tenant_id)
                .execute(conn)?;
            if !still_delegated(conn, new.tenant_id)? {
                return Ok(Stored::NotDelegated);
            }
            // Is there a `max_pending`-th pending request? One index row is
            // read past the others, none is sent.
            let full = pending_of!(new.tenant_id)
                .select(login_requests::id)
                .offset(max_pending.max(1) - 1)
                .limit(1)
                .first::<i64>(conn)
                .optional()?
                .is_some();
            if full {
                return Ok(Stored::Full);
            }
            let challenge = crypto::generate(TokenKind::LoginChallenge);
            new.challenge_digest = challenge.digest;
            diesel::insert_into(login_requests::table)
                .values(&new)
                .execute(conn)?;
            Ok(Stored::Challenge(challenge.value))
        })
    }

    /// The tenant's login request of a challenge, whatever its state.
    pub fn find_by_challenge(
        conn: &mut PgConnection,
        tenant_id: i64,
        challenge: &str,
    ) -> QueryResult<Option<LoginRequest>> {
        find_by!(
            conn,
            tenant_id,
            challenge_digest,
            TokenKind::LoginChallenge,
            challenge
        )
    }

    /// The tenant's login request of a verifier (the browser's return).
    pub fn find_by_verifier(
        conn: &mut PgConnection,
        tenant_id: i64,
        verifier: &str,
    ) -> QueryResult<Option<LoginRequest>> {
        find_by!(
            conn,
            tenant_id,
            verifier_digest,
            TokenKind::LoginVerifier,
            verifier
        )
    }

    /// Locks the tenant's undecided, unexpired request of `challenge` for
    /// the rest of the transaction: racing decisions wait here, and once
    /// the winner commits they see it decided. Else why it cannot be.
    fn lock_undecided(
        conn: &mut PgConnection,
        tenant_id: i64,
        challenge: &str,
    ) -> Result<i64, DecideError> {
        if !crypto::looks_like(TokenKind::LoginChallenge, challenge) {
            return Err(DecideError::Unknown);
        }
        let locked: Option<i64> = login_requests::table
            .filter(login_requests::tenant_id.eq(tenant_id))
            .filter(login_requests::challenge_digest.eq(crypto::digest(challenge)))
            .filter(login_requests::accepted_at.is_null())
            .filter(login_requests::rejected_at.is_null())
            .filter(login_requests::expires_at.gt(diesel::dsl::now))
            .select(login_requests::id)
            .for_update()
            .first(conn)
            .optional()?;
        match locked {
            Some(id) => Ok(id),
            None => Err(LoginRequest::why_undecidable(conn, tenant_id, challenge)?),
        }
    }

    /// Why `challenge` could not be decided, read after the lock found no
    /// undecided request.
    fn why_undecidable(
        conn: &mut PgConnection,
        tenant_id: i64,
        challenge: &str,
    ) -> Result<DecideError, DecideError> {
        Ok(
            match LoginRequest::find_by_challenge(conn, tenant_id, challenge)? {
                None => DecideError::Unknown,
                Some(r) if r.accepted_at.is_some() || r.rejected_at.is_some() => {
                    DecideError::Decided
                }
                Some(_) => DecideError::Expired,
            },
        )
    }

    /// The login service's accept: the subject's creator is made or
    /// updated, the request accepted, a verifier issued and the accept
    /// audited, in one transaction. Of racing accepts (and rejects) of one
    /// challenge exactly one wins; the others get [`DecideError::Decided`].
    pub fn accept(
        conn: &mut PgConnection,
        tenant_id: i64,
        challenge: &str,
        acceptance: &Acceptance,
        audit: NewAuditEvent,
    ) -> Result<Decided, DecideError> {
        conn.transaction(|conn| {
            // The request's row first: only the winner writes a creator.
            let request_id = LoginRequest::lock_undecided(conn, tenant_id, challenge)?;
            let verifier = crypto::generate(TokenKind::LoginVerifier);
            let user = EndUser::upsert_subject(
                conn,
                tenant_id,
                &acceptance.subject,
                acceptance.email.as_deref(),
                acceptance.name.as_deref(),
            )?;
            if user.disabled {
                // Rolls back: nothing of this accept is written.
                return Err(DecideError::Disabled);
            }
            let remember = acceptance
                .remember_for
                .filter(|s| *s > 0)
                .map(|s| s.min(MAX_REMEMBER_SECS) as i32);
            diesel::update(login_requests::table.find(request_id))
                .set((
                    login_requests::accepted_at.eq(diesel::dsl::now),
                    login_requests::verifier_digest.eq(&verifier.digest),
                    login_requests::end_user_id.eq(user.id),
                    login_requests::remember_for_secs.eq(remember),
                ))
                .execute(conn)?;
            audit
                .action("login.accepted")
                .object("login_request", request_id)
                .merge_details(serde_json::json!({
                    "subject": acceptance.subject,
                    "end_user": user.id.to_string(),
                    "remember_for": remember,
                }))
                .insert(conn)?;
            Ok(Decided {
                verifier: verifier.value,
            })
        })
    }

    /// The login service's reject: the request ends with `rejection`, sent
    /// to Kit when the browser returns. One transaction with its audit row;
    /// racing decisions as for [`LoginRequest::accept`].
    pub fn reject(
        conn: &mut PgConnection,
        tenant_id: i64,
        challenge: &str,
        rejection: &Rejection,
        audit: NewAuditEvent,
    ) -> Result<Decided, DecideError> {
        conn.transaction(|conn| {
            let request_id = LoginRequest::lock_undecided(conn, tenant_id, challenge)?;
            let verifier = crypto::generate(TokenKind::LoginVerifier);
            diesel::update(login_requests::table.find(request_id))
                .set((
                    login_requests::rejected_at.eq(diesel::dsl::now),
                    login_requests::reject_error.eq(&rejection.error),
                    login_requests::reject_description.eq(&rejection.description),
                    login_requests::verifier_digest.eq(&verifier.digest),
                ))
                .execute(conn)?;
            audit
                .action("login.rejected")
                .object("login_request", request_id)
                .merge_details(serde_json::json!({"error": rejection.error}))
                .insert(conn)?;
            Ok(Decided {
                verifier: verifier.value,
            })
        })
    }

    /// Spends a decided request: for the one caller that completes it
    /// before it expires, while the tenant is still delegated, the
    /// `remember_for_secs` the row holds now (a revocation since the
    /// return cleared it); `None` for every later or concurrent completion.
    /// Runs in the caller's transaction (with the code it issues).
    pub fn complete(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
    ) -> QueryResult<Option<Option<i32>>> {
        // Shares the tenant row with a sign-in switch: it either came first
        // (and expired this request) or waits for this completion.
        if !still_delegated(conn, tenant_id)? {
            return Ok(None);
        }
        diesel::update(
            login_requests::table
                .filter(login_requests::tenant_id.eq(tenant_id))
                .filter(login_requests::id.eq(id))
                .filter(login_requests::completed_at.is_null())
                .filter(login_requests::expires_at.gt(diesel::dsl::now)),
        )
        .set(login_requests::completed_at.eq(diesel::dsl::now))
        .returning(login_requests::remember_for_secs)
        .get_result(conn)
        .optional()
    }
}

impl LoginRequest {
    /// Ends the creator's login requests that are not completed (all of
    /// its installs were revoked: nothing in flight may make another).
    pub fn expire_for_end_user(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
    ) -> QueryResult<usize> {
        diesel::update(
            login_requests::table
                .filter(login_requests::tenant_id.eq(tenant_id))
                .filter(login_requests::end_user_id.eq(end_user_id))
                .filter(login_requests::completed_at.is_null())
                .filter(login_requests::expires_at.gt(diesel::dsl::now)),
        )
        .set(login_requests::expires_at.eq(diesel::dsl::now))
        .execute(conn)
    }

    /// Ends every delegated sign-in of a tenant that leaves delegated mode:
    /// its pending requests expire and its remembered logins go.
    pub fn end_delegation(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<()> {
        diesel::update(pending_of!(tenant_id))
            .set(login_requests::expires_at.eq(diesel::dsl::now))
            .execute(conn)?;
        diesel::delete(login_sessions::table.filter(login_sessions::tenant_id.eq(tenant_id)))
            .execute(conn)?;
        Ok(())
    }
}

/// Remembered logins: a browser (the digest of its binding cookie) known
/// to be a subject of one tenant, until `expires_at`.
pub struct LoginSession;

impl LoginSession {
    /// Remembers this browser as the creator for `secs` (at most 30 days),
    /// replacing what it was remembered as.
    pub fn remember(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
        browser_digest: &[u8],
        secs: i64,
    ) -> QueryResult<()> {
        let expires = Utc::now() + Duration::seconds(secs.clamp(0, MAX_REMEMBER_SECS));
        diesel::insert_into(login_sessions::table)
            .values((
                login_sessions::tenant_id.eq(tenant_id),
                login_sessions::end_user_id.eq(end_user_id),
                login_sessions::browser_digest.eq(browser_digest),
                login_sessions::expires_at.eq(expires),
            ))
            .on_conflict((login_sessions::tenant_id, login_sessions::browser_digest))
            .do_update()
            .set((
                login_sessions::end_user_id.eq(end_user_id),
                login_sessions::created_at.eq(diesel::dsl::now),
                login_sessions::expires_at.eq(expires),
            ))
            .execute(conn)?;
        Ok(())
    }

    /// The enabled creator this browser is remembered as, in this tenant.
    pub fn remembered(
        conn: &mut PgConnection,
        tenant_id: i64,
        browser_digest: &[u8],
    ) -> QueryResult<Option<EndUser>> {
        login_sessions::table
            .inner_join(end_users::table)
            .filter(login_sessions::tenant_id.eq(tenant_id))
            .filter(end_users::tenant_id.eq(tenant_id))
            .filter(login_sessions::browser_digest.eq(browser_digest))
            .filter(login_sessions::expires_at.gt(diesel::dsl::now))
            .filter(end_users::disabled.eq(false))
            .select(EndUser::as_select())
            .first(conn)
            .optional()
    }

    /// Ends every remembered login of a creator, and of the creator's
    /// accepted requests still on their way back none will remember one.
    pub fn end_all(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
    ) -> QueryResult<usize> {
        diesel::update(
            login_requests::table
                .filter(login_requests::tenant_id.eq(tenant_id))
                .filter(login_requests::end_user_id.eq(end_user_id))
                .filter(login_requests::completed_at.is_null()),
        )
        .set(login_requests::remember_for_secs.eq(None::<i32>))
        .execute(conn)?;
        diesel::delete(
            login_sessions::table
                .filter(login_sessions::tenant_id.eq(tenant_id))
                .filter(login_sessions::end_user_id.eq(end_user_id)),
        )
        .execute(conn)
    }

    /// Ends every remembered login of a subject, audited in the same
    /// transaction. `None` when the tenant has no such subject.
    pub fn end_for_subject(
        conn: &mut PgConnection,
        tenant_id: i64,
        subject: &str,
        audit: NewAuditEvent,
    ) -> QueryResult<Option<usize>> {
        conn.transaction(|conn| {
            let Some(user) = EndUser::find_by_subject(conn, tenant_id, subject)? else {
                return Ok(None);
            };
            let n = LoginSession::end_all(conn, tenant_id, user.id)?;
            audit
                .action("login.sessions_revoked")
                .object("end_user", user.id)
                .merge_details(serde_json::json!({"subject": subject, "revoked": n}))
                .insert(conn)?;
            Ok(Some(n))
        })
    }
}

/// Remembered consents: a creator allowed an app some scopes.
pub struct Consent;

impl Consent {
    /// Whether the creator allowed the app every one of `scopes` before.
    pub fn covers(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        end_user_id: i64,
        scopes: &[String],
    ) -> QueryResult<bool> {
        let granted: Option<Vec<String>> = consents::table
            .filter(consents::tenant_id.eq(tenant_id))
            .filter(consents::app_id.eq(app_id))
            .filter(consents::end_user_id.eq(end_user_id))
            .select(consents::scopes)
            .first(conn)
            .optional()?;
        Ok(granted.is_some_and(|g| scopes.iter().all(|s| g.contains(s))))
    }

    /// Remembers that the creator allowed the app `scopes` (added to what
    /// it allowed before).
    pub fn remember(
        conn: &mut PgConnection,
        tenant_id: i64,
        app_id: i64,
        end_user_id: i64,
        scopes: &[String],
    ) -> QueryResult<()> {
        // One statement, so that two tabs allowing different scopes at
        // once keep both.
        diesel::sql_query(
            "INSERT INTO consents (tenant_id, app_id, end_user_id, scopes) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (app_id, end_user_id) DO UPDATE SET granted_at = now(), \
             scopes = ARRAY(SELECT DISTINCT s FROM unnest(consents.scopes || EXCLUDED.scopes) s ORDER BY s)",
        )
        .bind::<diesel::sql_types::BigInt, _>(tenant_id)
        .bind::<diesel::sql_types::BigInt, _>(app_id)
        .bind::<diesel::sql_types::BigInt, _>(end_user_id)
        .bind::<diesel::sql_types::Array<diesel::sql_types::Text>, _>(scopes)
        .execute(conn)?;
        Ok(())
    }

    /// Forgets every consent of a creator.
    pub fn forget_all(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
    ) -> QueryResult<usize> {
        diesel::delete(
            consents::table
                .filter(consents::tenant_id.eq(tenant_id))
                .filter(consents::end_user_id.eq(end_user_id)),
        )
        .execute(conn)
    }
}
