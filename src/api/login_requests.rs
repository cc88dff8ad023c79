//! Delegated sign-in through the tenant API: the tenant's login service
//! reads a login request, accepts it with the subject it signed in, or
//! rejects it (`login` scope); remembered logins of a subject end with
//! `DELETE /subjects/{subject}/sessions`. The creator sign-in choice
//! itself is `GET`/`PUT /sign-in` (`read`/`write`).

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use rocket::{delete, get, post, put, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Answer, ApiJson, ApiResult, LoginKey, Problem, ReadKey, WriteKey};
use crate::auth::TenantCache;
use crate::config::AppConfig;
use crate::db::models::end_user::{valid_email, valid_name, valid_subject};
use crate::db::models::login::{Acceptance, DecideError, Decided, Rejection};
use crate::db::models::tenant::CreatorSignin;
use crate::db::models::{App, LoginRequest, LoginSession, NewAuditEvent, Tenant};
use crate::db::Db;

/// A login request as the login service sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LoginRequestView {
    /// The app the creator is installing.
    #[schema(example = "Newsletter sync")]
    pub app_name: String,
    #[schema(example = "kit_3q2Zb8hK1mXcTnQ0aWvR5yLp")]
    pub client_id: String,
    #[schema(example = json!(["public"]))]
    pub scopes: Vec<String>,
    pub requested_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// pending, accepted, rejected, completed or expired.
    #[schema(example = "pending")]
    pub status: String,
    /// The subject this browser is remembered as (an earlier accept with
    /// `remember_for`): accept with it to skip your sign-in form.
    #[schema(example = "user-8841")]
    pub remembered_subject: Option<String>,
}

/// Who the login service signed in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AcceptLogin {
    /// Your own id of the user: `sub` of every token of this install.
    /// 1 to 255 printable characters.
    #[schema(example = "user-8841")]
    pub subject: String,
    #[schema(example = "creator@example.com")]
    pub email: Option<String>,
    #[schema(example = "Ada Creator")]
    pub name: Option<String>,
    /// Remember this browser as the subject for this many seconds (at most
    /// 30 days; longer asks are cut to 30 days). Omitted or 0: not at all.
    #[schema(example = 86400, minimum = 0)]
    pub remember_for: Option<i64>,
}

/// Why the login service refuses the sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectLogin {
    /// An OAuth error code for Kit: access_denied, invalid_request,
    /// invalid_scope, unauthorized_client, server_error or
    /// temporarily_unavailable.
    #[schema(example = "access_denied")]
    pub error: String,
    /// Up to 500 characters of printable ASCII, without `"` and `\`.
    #[schema(example = "the user cancelled")]
    pub error_description: Option<String>,
}

/// Where to send the browser next.
#[derive(Debug, Serialize, ToSchema)]
pub struct RedirectTo {
    #[schema(
        example = "https://kitauth.example/t/acme/oauth/authorize/continue?login_verifier=klv_…"
    )]
    pub redirect_to: String,
}

/// How many remembered logins a call ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionsRevoked {
    #[schema(example = 1)]
    pub revoked: usize,
}

/// Who signs the tenant's creators in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// hosted (kitauth's accounts) or delegated (your login service).
    #[schema(example = "delegated")]
    pub creator_signin: String,
    /// Your login page (delegated); kitauth adds `login_challenge`.
    #[schema(example = "https://example.com/kit/login")]
    pub login_url: Option<String>,
}

impl SignIn {
    fn of(t: &Tenant) -> SignIn {
        let s = t.signin();
        SignIn {
            creator_signin: s.mode().to_string(),
            login_url: s.login_url().map(str::to_string),
        }
    }
}

const OAUTH_ERRORS: [&str; 6] = [
    "access_denied",
    "invalid_request",
    "invalid_scope",
    "unauthorized_client",
    "server_error",
    "temporarily_unavailable",
];

/// RFC 6749 §4.1.2.1: `error_description` is %x20-21 / %x23-5B / %x5D-7E.
fn valid_description(d: &str) -> bool {
    d.len() <= 500
        && d.bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\')
}

fn check_accept(a: &AcceptLogin) -> Result<Acceptance, Problem> {
    if !valid_subject(&a.subject) {
        return Err(Problem::invalid(
            "subject",
            "1 to 255 printable characters (no control, format or private-use ones), no space at either end",
        ));
    }
    let email = a.email.as_deref().map(str::trim);
    if email.is_some_and(|e| !valid_email(e)) {
        return Err(Problem::invalid("email", "not a valid email address"));
    }
    let name = a.name.as_deref().map(str::trim);
    if name.is_some_and(|n| !valid_name(n)) {
        return Err(Problem::invalid("name", "1 to 200 printable characters"));
    }
    if a.remember_for.is_some_and(|s| s < 0) {
        return Err(Problem::invalid("remember_for", "seconds, 0 or more"));
    }
    Ok(Acceptance {
        subject: a.subject.clone(),
        email: email.map(str::to_string),
        name: name.map(str::to_string),
        remember_for: a.remember_for,
    })
}

fn check_reject(r: &RejectLogin) -> Result<Rejection, Problem> {
    if !OAUTH_ERRORS.contains(&r.error.as_str()) {
        return Err(Problem::invalid(
            "error",
            format!("one of {}", OAUTH_ERRORS.join(", ")),
        ));
    }
    if r.error_description
        .as_deref()
        .is_some_and(|d| !valid_description(d))
    {
        return Err(Problem::invalid(
            "error_description",
            "up to 500 characters of printable ASCII, without \" and \\",
        ));
    }
    Ok(Rejection {
        error: r.error.clone(),
        description: r.error_description.clone(),
    })
}

fn decide_problem(e: DecideError) -> Problem {
    match e {
        DecideError::Unknown => Problem::not_found(),
        DecideError::Expired => Problem::new(
            rocket::http::Status::Gone,
            "login-request-expired",
            "Login request expired",
            "the login request is older than 10 minutes; the creator must start again in Kit",
        ),
        DecideError::Decided => Problem::new(
            rocket::http::Status::Conflict,
            "login-request-decided",
            "Login request decided already",
            "this login request was accepted or rejected already",
        ),
        DecideError::Disabled => Problem::new(
            rocket::http::Status::Conflict,
            "creator-disabled",
            "Creator disabled",
            "the creator of this subject is disabled in kitauth; enable it in the dashboard first",
        )
        .with_field("subject", "this subject's creator is disabled"),
        DecideError::Db(e) => Problem::from(e),
    }
}

fn redirect_to(config: &AppConfig, slug: &str, d: &Decided) -> RedirectTo {
    RedirectTo {
        redirect_to: format!(
            "{}/oauth/authorize/continue?login_verifier={}",
            config.tenant_url(slug),
            d.verifier
        ),
    }
}

fn status_of(r: &LoginRequest) -> &'static str {
    if r.completed_at.is_some() {
        "completed"
    } else if r.accepted_at.is_some() {
        "accepted"
    } else if r.rejected_at.is_some() {
        "rejected"
    } else if r.expires_at <= Utc::now() {
        "expired"
    } else {
        "pending"
    }
}

/// A login request: which app asks, for which scopes, and whether this
/// browser is remembered as a subject.
#[utoipa::path(
    operation_id = "login_request_get",
    tag = "sign-in",
    security(("api_key" = ["login"])),
    params(("t" = String, Path, description = "tenant slug"), ("challenge" = String, Path, description = "the login_challenge kitauth sent to your login page")),
    responses(
        (status = 200, body = LoginRequestView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/login-requests/<challenge>")]
pub async fn get(t: &str, challenge: &str, key: LoginKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let tenant_id = key.tenant_id();
    let challenge = challenge.to_string();
    let view = db
        .run(move |conn| -> Result<_, Problem> {
            let r = LoginRequest::find_by_challenge(conn, tenant_id, &challenge)?
                .ok_or_else(Problem::not_found)?;
            let app = App::find(conn, tenant_id, r.app_id)?.ok_or_else(Problem::not_found)?;
            // Read now, not when the request was made: a login revoked
            // since, expired or of a disabled creator is no longer known.
            let remembered = LoginSession::remembered(conn, tenant_id, &r.browser_digest)?
                .and_then(|u| u.subject);
            Ok(LoginRequestView {
                app_name: app.name,
                client_id: app.client_id,
                scopes: r.scopes.clone(),
                requested_at: r.created_at,
                expires_at: r.expires_at,
                status: status_of(&r).to_string(),
                remembered_subject: remembered,
            })
        })
        .await?;
    Ok(Answer::ok(view))
}

/// Accepts a login request with the subject your login service signed in;
/// send the browser to `redirect_to`. A second accept (or an accept after
/// a reject) answers 409.
#[utoipa::path(
    operation_id = "login_request_accept",
    tag = "sign-in",
    security(("api_key" = ["login"])),
    params(("t" = String, Path, description = "tenant slug"), ("challenge" = String, Path, description = "the login_challenge")),
    request_body(content = AcceptLogin, example = json!({"subject": "user-8841", "email": "creator@example.com", "name": "Ada Creator", "remember_for": 86400})),
    responses(
        (status = 200, body = RedirectTo),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/login-requests/<challenge>/accept", data = "<body>")]
pub async fn accept(
    t: &str,
    challenge: &str,
    key: LoginKey,
    body: ApiJson<AcceptLogin>,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    let acceptance = check_accept(&body.value)?;
    decide(
        &key,
        db,
        config,
        challenge,
        "login.accepted",
        move |conn, t, c, audit| LoginRequest::accept(conn, t, c, &acceptance, audit),
    )
    .await
}

/// Runs a decision on `challenge` (with its audit row) and answers where
/// the browser goes next.
async fn decide(
    key: &LoginKey,
    db: &Db,
    config: &AppConfig,
    challenge: &str,
    action: &str,
    decision: impl FnOnce(&mut PgConnection, i64, &str, NewAuditEvent) -> Result<Decided, DecideError>
        + Send
        + 'static,
) -> ApiResult {
    let tenant_id = key.tenant_id();
    let audit = key.audit(action, "login_request", 0, serde_json::json!({}));
    let challenge = challenge.to_string();
    let decided = db
        .run(move |conn| decision(conn, tenant_id, &challenge, audit).map_err(decide_problem))
        .await?;
    Ok(Answer::ok(redirect_to(config, &key.tenant.slug, &decided)))
}

/// Rejects a login request: the browser, sent to `redirect_to`, returns to
/// Kit with the OAuth error (and Kit's `state`).
#[utoipa::path(
    operation_id = "login_request_reject",
    tag = "sign-in",
    security(("api_key" = ["login"])),
    params(("t" = String, Path, description = "tenant slug"), ("challenge" = String, Path, description = "the login_challenge")),
    request_body(content = RejectLogin, example = json!({"error": "access_denied", "error_description": "the user cancelled"})),
    responses(
        (status = 200, body = RedirectTo),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 410, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/login-requests/<challenge>/reject", data = "<body>")]
pub async fn reject(
    t: &str,
    challenge: &str,
    key: LoginKey,
    body: ApiJson<RejectLogin>,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    let rejection = check_reject(&body.value)?;
    decide(
        &key,
        db,
        config,
        challenge,
        "login.rejected",
        move |conn, t, c, audit| LoginRequest::reject(conn, t, c, &rejection, audit),
    )
    .await
}

/// Ends every remembered login of a subject: its next install goes
/// through your login page again.
#[utoipa::path(
    operation_id = "subject_sessions_revoke",
    tag = "sign-in",
    security(("api_key" = ["login"])),
    params(("t" = String, Path, description = "tenant slug"), ("subject" = String, Path, description = "your id of the user")),
    responses(
        (status = 200, body = SessionsRevoked),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/t/<t>/api/v1/subjects/<subject>/sessions")]
pub async fn revoke_sessions(t: &str, subject: &str, key: LoginKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let tenant_id = key.tenant_id();
    let audit = key.audit(
        "login.sessions_revoked",
        "end_user",
        0,
        serde_json::json!({}),
    );
    let subject = subject.to_string();
    let n = db
        .run(move |conn| {
            crate::db::models::LoginSession::end_for_subject(conn, tenant_id, &subject, audit)
                .map_err(Problem::from)
        })
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Answer::ok(SessionsRevoked { revoked: n }))
}

/// Who signs the tenant's creators in.
#[utoipa::path(
    operation_id = "signin_get",
    tag = "sign-in",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug")),
    responses(
        (status = 200, body = SignIn),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/sign-in")]
pub async fn signin_get(t: &str, key: ReadKey) -> ApiResult {
    let _ = t;
    Ok(Answer::ok(SignIn::of(&key.tenant)))
}

/// Chooses who signs the tenant's creators in: `hosted`, or `delegated`
/// with the login URL of your login page (https; loopback only where the
/// operator allows private networks). As on the dashboard, for owners: the
/// key must have been made by an owner of the workspace (or with the
/// command line); another key answers 403.
#[utoipa::path(
    operation_id = "signin_put",
    tag = "sign-in",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug")),
    request_body(content = SignIn, example = json!({"creator_signin": "delegated", "login_url": "https://example.com/kit/login"})),
    responses(
        (status = 200, body = SignIn),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[put("/t/<t>/api/v1/sign-in", data = "<body>")]
pub async fn signin_put(
    t: &str,
    key: WriteKey,
    body: ApiJson<SignIn>,
    db: &State<Db>,
    config: &State<AppConfig>,
    cache: &State<TenantCache>,
) -> ApiResult {
    let _ = t;
    let b = body.value;
    let signin = CreatorSignin::parse(
        &b.creator_signin,
        b.login_url.as_deref(),
        config.allow_private_networks,
    )
    .map_err(|(f, m)| Problem::invalid(f, m))?;
    let tenant_id = key.tenant_id();
    let audit = key.audit(
        "tenant.signin_changed",
        "tenant",
        tenant_id,
        serde_json::json!({}),
    );
    let api_key = key.key.clone();
    let tenant = db
        .run(move |conn| -> Result<_, Problem> {
            if !api_key.acts_as_owner(conn)? {
                return Err(Problem::forbidden(
                    "choosing who signs creators in is for owners: use a key an owner of this workspace made, or one made with the command line",
                ));
            }
            Ok(Tenant::set_signin(conn, tenant_id, &signin, audit)?)
        })
        .await?;
    cache.invalidate(&tenant.slug);
    Ok(Answer::ok(SignIn::of(&tenant)))
}
