//! Delegated sign-in, the browser's side. Authorize stores a login request
//! and sends the browser to the tenant's login page with its challenge;
//! the tenant's backend accepts or rejects it through the tenant API
//! (`api::login_requests`), and sends the browser back to
//! `/t/{t}/oauth/authorize/continue?login_verifier=…`. There, four checks
//! hold before anything else: the verifier is this tenant's, the request
//! is not spent, not expired, and it returns in the browser that started
//! it (its binding cookie, compared in constant time). Then the consent
//! page, or straight to Kit for a skip-consent app or a consent given
//! before, with the code made by the same function as hosted sign-in's.

use chrono::{Duration, Utc};
use diesel::PgConnection;
use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::response::Redirect;
use rocket::{get, post};

use super::authorize::{
    consent_page, redirect_with, registered_redirect_uri, retry_after, store_code, AuthRequest,
    Hosted, PageResponse,
};
use crate::auth::{CsrfForm, CsrfToken};
use crate::crypto::{self, TokenKind};
use crate::db::models::login::{
    NewLoginRequest, Stored, LOGIN_REQUEST_TTL_SECS, MAX_REMEMBER_SECS,
};
use crate::db::models::{App, Consent, EndUser, LoginRequest, LoginSession};
use crate::error::{Error, ErrorCode, PageError};
use crate::input::Text;
use crate::ratelimit::LimitKey;

/// The cookie that binds login requests to one browser, scoped to the
/// tenant's path. Its value is random; only its digest is stored.
pub const BROWSER_COOKIE: &str = "kitauth_browser";

/// Where the error pages of an unknown request lead: Kit, where the
/// install started.
const KIT_HOME: &str = "https://app.kit.com/";

/// The browser-binding cookie of this tenant: the one the browser sent
/// when it is well-formed, else a new one. Set on the answer either way,
/// so that it lives 30 days from its latest use.
fn browser_binding(cookies: &CookieJar<'_>, slug: &str, secure: bool) -> String {
    let value = read_binding(cookies).unwrap_or_else(|| crypto::generate(TokenKind::Browser).value);
    set_binding(cookies, slug, secure, value.clone());
    value
}

fn set_binding(cookies: &CookieJar<'_>, slug: &str, secure: bool, value: String) {
    let cookie = Cookie::build((BROWSER_COOKIE, value))
        .path(format!("/t/{slug}"))
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .max_age(rocket::time::Duration::seconds(MAX_REMEMBER_SECS))
        .build();
    cookies.add(cookie);
}

fn read_binding(cookies: &CookieJar<'_>) -> Option<String> {
    cookies
        .get(BROWSER_COOKIE)
        .map(|c| c.value().to_string())
        .filter(|v| crypto::looks_like(TokenKind::Browser, v))
}

/// Authorize in delegated mode: stores the login request of `req`, bound
/// to this browser, and redirects to the tenant's login page.
pub async fn start(hosted: &Hosted<'_>, req: &AuthRequest, login_url: &str) -> PageResponse {
    let keys = [LimitKey::LoginStartIp(hosted.tenant.id, hosted.addr())];
    if let Some(wait) = hosted.login_starts.0.blocked(&keys) {
        let page = PageError::new(
            Status::TooManyRequests,
            "Too many sign-ins",
            format!(
                "Too many sign-ins were started from your network. Try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            ),
        )
        .with_back("Back to Kit", KIT_HOME);
        return PageResponse::ErrorWith(page, retry_after(wait));
    }
    hosted.login_starts.0.record_failure(&keys);
    let binding = browser_binding(
        hosted.cookies,
        &hosted.tenant.slug,
        hosted.config.secure_cookies,
    );
    let browser_digest = crypto::digest(&binding);
    let tenant_id = hosted.tenant.id;
    let max_pending = hosted.config.max_pending_login_requests;
    let req = req.clone();
    let stored = hosted
        .db
        .run(move |conn| {
            let new = NewLoginRequest {
                tenant_id,
                app_id: req.app.id,
                challenge_digest: Vec::new(),
                browser_digest,
                redirect_uri: req.redirect_uri.clone(),
                redirect_uri_sent: req.redirect_uri_sent,
                scopes: req.scopes.clone(),
                state: req.state.clone(),
                code_challenge: req.code_challenge.clone(),
                expires_at: Utc::now() + Duration::seconds(LOGIN_REQUEST_TTL_SECS),
            };
            LoginRequest::create_bounded(conn, new, max_pending).map_err(Error::from)
        })
        .await;
    match stored {
        Ok(Stored::Challenge(challenge)) => PageResponse::Redirect(Redirect::found(redirect_with(
            login_url,
            &[("login_challenge", &challenge)],
            None,
        ))),
        // Switched to hosted a moment ago (another instance may still
        // have the old choice for a few seconds): no redirect loop, a page.
        Ok(Stored::NotDelegated) => PageError::new(
            Status::ServiceUnavailable,
            "Sign-in is changing",
            "This service has just changed how you sign in. Start the install again from Kit in a few seconds.",
        )
        .with_back("Back to Kit", KIT_HOME)
        .into(),
        Ok(Stored::Full) => PageError::new(
            Status::ServiceUnavailable,
            "Too many sign-ins in progress",
            "This service has too many sign-ins waiting right now. Try again in a few minutes.",
        )
        .with_back("Back to Kit", KIT_HOME)
        .into(),
        Err(e) => e.into(),
    }
}

/// A decided login request that passed the four checks, with what it
/// resumes.
struct Resumed {
    login: LoginRequest,
    req: AuthRequest,
    /// The creator of an accepted request; `None` for a rejected one.
    user: Option<EndUser>,
}

fn refused(status: Status, title: &str, message: &str, back: &str) -> PageError {
    PageError::new(status, title, message).with_back("Back to Kit", back)
}

fn used_already(back: &str) -> PageError {
    refused(
        Status::Conflict,
        "This sign-in was used already",
        "Each sign-in link works once. Start the install again from Kit.",
        back,
    )
}

fn disabled(back: &str) -> PageError {
    refused(
        Status::Forbidden,
        "Forbidden",
        "This account is disabled.",
        back,
    )
}

/// Where an error page about this request leads: the origin of Kit's
/// redirect URI.
fn back_of(login: &LoginRequest) -> String {
    url::Url::parse(&login.redirect_uri)
        .map(|u| u.origin().ascii_serialization() + "/")
        .unwrap_or_else(|_| KIT_HOME.to_string())
}

/// The four checks of a browser's return, then the app and authorization
/// request it resumes (the app must still be enabled and the request
/// still within its registration).
async fn resume(hosted: &Hosted<'_>, verifier: Option<&str>) -> Result<Resumed, PageError> {
    let unknown = || {
        refused(
            Status::BadRequest,
            "This sign-in link is not valid",
            "The sign-in could not be found. Start the install again from Kit.",
            KIT_HOME,
        )
    };
    let verifier = verifier.ok_or_else(unknown)?.to_string();
    let tenant_id = hosted.tenant.id;
    let found = hosted
        .db
        .run(move |conn| -> Result<_, Error> {
            let Some(login) = LoginRequest::find_by_verifier(conn, tenant_id, &verifier)? else {
                return Ok(None);
            };
            let app = App::find(conn, tenant_id, login.app_id)?;
            let user = match login.end_user_id {
                Some(id) => EndUser::find(conn, tenant_id, id)?,
                None => None,
            };
            Ok(Some((login, app, user)))
        })
        .await?;
    let (login, app, user) = found.ok_or_else(unknown)?;
    let back = back_of(&login);
    if login.completed_at.is_some() {
        return Err(used_already(&back));
    }
    if login.expires_at <= Utc::now() {
        return Err(refused(
            Status::Gone,
            "This sign-in has expired",
            "A sign-in must be finished within 10 minutes. Start the install again from Kit.",
            &back,
        ));
    }
    let same_browser = read_binding(hosted.cookies)
        .is_some_and(|b| crypto::ct_eq(&crypto::digest(&b), &login.browser_digest));
    if !same_browser {
        return Err(refused(
            Status::Forbidden,
            "This sign-in belongs to another browser",
            "Finish the sign-in in the browser where the install started.",
            &back,
        ));
    }
    let req = resumed_request(app, &login)
        .map_err(|m| refused(Status::BadRequest, "The application has changed", m, &back))?;
    // Accepted for a creator disabled since: no consent page to no end.
    if login.accepted_at.is_some() && !user.as_ref().is_some_and(|u| !u.disabled) {
        return Err(disabled(&back));
    }
    Ok(Resumed { login, req, user })
}

/// The authorization request a login request resumes, checked against the
/// app as it is now.
fn resumed_request(app: Option<App>, login: &LoginRequest) -> Result<AuthRequest, &'static str> {
    let app = app
        .filter(|a| !a.disabled)
        .ok_or("The application of this sign-in is disabled or gone.")?;
    let sent = login
        .redirect_uri_sent
        .then_some(login.redirect_uri.as_str());
    let redirect_uri = registered_redirect_uri(&app, sent)?;
    if redirect_uri != login.redirect_uri {
        return Err("The redirect URI of this request is no longer registered.");
    }
    if !login.scopes.iter().all(|s| app.allowed_scopes.contains(s)) {
        return Err("A scope of this request is no longer allowed for the application.");
    }
    Ok(AuthRequest {
        app,
        redirect_uri,
        redirect_uri_sent: login.redirect_uri_sent,
        state: login.state.clone(),
        scopes: login.scopes.clone(),
        code_challenge: login.code_challenge.clone(),
    })
}

/// How a resumed request ends.
enum Outcome {
    /// The creator allowed (or consent is skipped): a code for Kit, and
    /// whether the login is remembered (under a new binding cookie).
    Code(String, bool),
    /// An OAuth error for Kit (a reject, or the creator's deny).
    Error(String, Option<String>),
    /// The creator was disabled meanwhile.
    Disabled,
    /// Another tab or request completed it first.
    Spent,
    /// The app was disabled, or its registration changed, since the return.
    AppChanged(&'static str),
}

/// Spends the login request and, when allowed, makes the code, remembers
/// the consent and the login as asked: one transaction, so a request
/// completes once, with everything or nothing.
///
/// The app is read again in the transaction (and locked): disabled or
/// changed since the return's checks, no code. A remembered login is
/// stored under `rebind`, the digest of the binding cookie the browser gets
/// now, so that a binding value known before the sign-in (planted, say)
/// is never the one the subject is remembered by.
fn finish(
    conn: &mut PgConnection,
    r: &Resumed,
    decision: Result<bool, (String, Option<String>)>,
    ip: Option<String>,
    rebind: &[u8],
) -> diesel::QueryResult<Outcome> {
    let tenant_id = r.login.tenant_id;
    let Some(remember_for) = LoginRequest::complete(conn, tenant_id, r.login.id)? else {
        return Ok(Outcome::Spent);
    };
    let (user, remember_consent) = match (decision, &r.user) {
        (Err((error, description)), _) => return Ok(Outcome::Error(error, description)),
        (Ok(_), None) => return Ok(Outcome::Disabled),
        (Ok(remember), Some(user)) => (user, remember),
    };
    let app = App::find_for_update(conn, tenant_id, r.login.app_id)?;
    let req = match resumed_request(app, &r.login) {
        Ok(req) => req,
        Err(why) => return Ok(Outcome::AppChanged(why)),
    };
    let Some(code) = store_code(conn, tenant_id, &req, user.id, ip)? else {
        return Ok(Outcome::Disabled);
    };
    if remember_consent {
        Consent::remember(conn, tenant_id, req.app.id, user.id, &req.scopes)?;
    }
    let remembered = remember_for.filter(|s| *s > 0);
    if let Some(secs) = remembered {
        LoginSession::remember(conn, tenant_id, user.id, rebind, i64::from(secs))?;
    }
    Ok(Outcome::Code(code, remembered.is_some()))
}

/// Runs [`finish`] and answers with its redirect or page.
async fn conclude(
    hosted: &Hosted<'_>,
    r: Resumed,
    decision: Result<bool, (String, Option<String>)>,
) -> PageResponse {
    let ip = hosted.ip.clone();
    let rebind = crypto::generate(TokenKind::Browser);
    let digest = rebind.digest.clone();
    let (r, outcome) = match hosted
        .db
        .run(move |conn| {
            let outcome = crate::db::transaction(conn, |conn| {
                finish(conn, &r, decision.clone(), ip.clone(), &digest)
            });
            outcome.map(|o| (r, o)).map_err(Error::from)
        })
        .await
    {
        Ok(done) => done,
        Err(e) => return e.into(),
    };
    match outcome {
        Outcome::Code(code, remembered) => {
            if remembered {
                let (slug, secure) = (&hosted.tenant.slug, hosted.config.secure_cookies);
                set_binding(hosted.cookies, slug, secure, rebind.value);
            }
            PageResponse::Redirect(r.req.redirect(&[("code", &code)]))
        }
        Outcome::AppChanged(why) => refused(
            Status::BadRequest,
            "The application has changed",
            why,
            &back_of(&r.login),
        )
        .into(),
        Outcome::Error(error, description) => {
            let mut pairs = vec![("error", error.as_str())];
            if let Some(d) = description.as_deref() {
                pairs.push(("error_description", d));
            }
            PageResponse::Redirect(r.req.redirect(&pairs))
        }
        Outcome::Disabled => disabled(&back_of(&r.login)).into(),
        Outcome::Spent => used_already(&back_of(&r.login)).into(),
    }
}

/// What a rejected request sends to Kit.
fn rejection_of(login: &LoginRequest) -> Option<(String, Option<String>)> {
    login.rejected_at.map(|_| {
        (
            login
                .reject_error
                .clone()
                .unwrap_or_else(|| ErrorCode::AccessDenied.as_str().into()),
            login.reject_description.clone(),
        )
    })
}

/// The browser's return from the tenant's login page.
#[get("/t/<_>/oauth/authorize/continue?<login_verifier>")]
pub async fn continue_get(
    hosted: Hosted<'_>,
    csrf: CsrfToken,
    login_verifier: Option<&str>,
) -> PageResponse {
    let r = match resume(&hosted, login_verifier).await {
        Ok(r) => r,
        Err(page) => return page.into(),
    };
    if let Some(rejection) = rejection_of(&r.login) {
        return conclude(&hosted, r, Err(rejection)).await;
    }
    let Some(user) = r.user.clone() else {
        return disabled(&back_of(&r.login)).into();
    };
    let (tenant_id, app_id, user_id, scopes) = (
        hosted.tenant.id,
        r.req.app.id,
        user.id,
        r.req.scopes.clone(),
    );
    let consented = if r.req.app.skip_consent {
        Ok(true)
    } else {
        hosted
            .db
            .run(move |conn| {
                Consent::covers(conn, tenant_id, app_id, user_id, &scopes).map_err(Error::from)
            })
            .await
    };
    match consented {
        Ok(true) => conclude(&hosted, r, Ok(false)).await,
        Ok(false) => PageResponse::Page(consent_page(
            &hosted.tenant,
            &r.req,
            &user,
            csrf.value(),
            login_verifier,
        )),
        Err(e) => e.into(),
    }
}

/// The consent form of a delegated sign-in.
#[derive(Debug, FromForm)]
pub struct DelegatedConsentForm {
    login_verifier: Text,
    decision: Text<100>,
}

/// The creator's decision on the consent page of a delegated sign-in.
#[post("/t/<_>/oauth/authorize/continue", data = "<form>")]
pub async fn continue_post(
    hosted: Hosted<'_>,
    form: CsrfForm<DelegatedConsentForm>,
) -> PageResponse {
    let r = match resume(&hosted, form.login_verifier.get()).await {
        Ok(r) => r,
        Err(page) => return page.into(),
    };
    if let Some(rejection) = rejection_of(&r.login) {
        return conclude(&hosted, r, Err(rejection)).await;
    }
    let decision = match form.decision.as_str() {
        "allow" => Ok(true),
        "deny" => Err((
            ErrorCode::AccessDenied.as_str().to_string(),
            Some("the user denied the request".to_string()),
        )),
        _ => return PageError::bad_request("Choose Allow or Deny.").into(),
    };
    conclude(&hosted, r, decision).await
}
