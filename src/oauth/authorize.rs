//! The browser side: GET/POST authorize with hosted sign-in, sign-up and
//! consent pages, branded for the tenant.

use chrono::{Duration, Utc};
use rocket::data::Data;
use rocket::http::{ContentType, CookieJar, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{get, post, Responder, State};
use rocket_dyn_templates::{context, Template};

use super::params::{parse_body, read_body, split_scopes, Params};
use crate::auth::{csrf, ClientIp, CreatorSessionCookie, CsrfToken, CurrentTenant};
use crate::config::AppConfig;
use crate::crypto::{self, TokenKind};
use crate::db::models::code::{NewAuthorizationCode, CODE_TTL_SECS};
use crate::db::models::end_user::{valid_email, validate_password};
use crate::db::models::{App, AuthorizationCode, EndUser, EndUserSession, NewAuditEvent, Tenant};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::ratelimit::{LimitKey, RateLimiter};

/// What the hosted pages answer: a page, a redirect, or an error page.
#[derive(Responder)]
pub enum PageResponse {
    Page(Template),
    Redirect(Redirect),
    Status((Status, Template)),
    /// `429` with `Retry-After` (seconds).
    #[response(status = 429)]
    Throttled(Template, Header<'static>),
    Error(PageError),
}

/// The `Retry-After` header for a wait, in whole seconds (at least 1).
pub fn retry_after(wait: std::time::Duration) -> Header<'static> {
    let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
    Header::new("Retry-After", secs.to_string())
}

impl From<PageError> for PageResponse {
    fn from(e: PageError) -> Self {
        PageResponse::Error(e)
    }
}

impl From<Error> for PageResponse {
    fn from(e: Error) -> Self {
        PageResponse::Error(e.into())
    }
}

/// The raw query string, parsed with the same strict rules as bodies.
pub struct RawQuery(Result<Params, String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for RawQuery {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let raw = req
            .uri()
            .query()
            .map(|q| q.as_str().to_string())
            .unwrap_or_default();
        let parsed = if raw.is_empty() {
            Ok(Params::default())
        } else {
            parse_body(raw.as_bytes()).map_err(|e| e.description())
        };
        Outcome::Success(RawQuery(parsed))
    }
}

/// A validated authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub app: App,
    /// Where the answer goes: the request's `redirect_uri`, or the app's
    /// only registered one when the request carried none (RFC 6749 §3.1.2.3).
    pub redirect_uri: String,
    /// Whether the request carried `redirect_uri`; only then must the token
    /// request carry one too (RFC 6749 §4.1.3).
    pub redirect_uri_sent: bool,
    pub state: Option<String>,
    pub scopes: Vec<String>,
    pub code_challenge: Option<String>,
}

impl AuthRequest {
    /// The authorize URL that leads back to this request (after sign-in).
    fn resume_path(&self, slug: &str) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        ser.append_pair("client_id", &self.app.client_id)
            .append_pair("response_type", "code");
        if self.redirect_uri_sent {
            ser.append_pair("redirect_uri", &self.redirect_uri);
        }
        ser.append_pair("scope", &self.scopes.join(" "));
        if let Some(s) = &self.state {
            ser.append_pair("state", s);
        }
        if let Some(c) = &self.code_challenge {
            ser.append_pair("code_challenge", c)
                .append_pair("code_challenge_method", "S256");
        }
        format!("/t/{slug}/oauth/authorize?{}", ser.finish())
    }

    fn redirect(&self, pairs: &[(&str, &str)]) -> Redirect {
        Redirect::found(redirect_with(
            &self.redirect_uri,
            pairs,
            self.state.as_deref(),
        ))
    }
}

/// `uri` with `pairs` (and `state`, when there is one) added to its query.
pub fn redirect_with(uri: &str, pairs: &[(&str, &str)], state: Option<&str>) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in pairs {
                    q.append_pair(k, v);
                }
                if let Some(s) = state {
                    q.append_pair("state", s);
                }
            }
            url.to_string()
        }
        Err(_) => uri.to_string(),
    }
}

/// Either an error page (the client or redirect URI cannot be trusted) or a
/// redirect with an error code (RFC 6749 §4.1.2.1).
// A short-lived value on the error path; boxing would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum AuthorizeFailure {
    Page(PageError),
    /// The URL to redirect to, error parameters included.
    Redirect(String),
}

impl From<Error> for AuthorizeFailure {
    fn from(e: Error) -> Self {
        AuthorizeFailure::Page(e.into())
    }
}

impl From<AuthorizeFailure> for PageResponse {
    fn from(f: AuthorizeFailure) -> Self {
        match f {
            AuthorizeFailure::Page(p) => PageResponse::Error(p),
            AuthorizeFailure::Redirect(url) => PageResponse::Redirect(Redirect::found(url)),
        }
    }
}

fn page_bad(msg: &str) -> AuthorizeFailure {
    AuthorizeFailure::Page(PageError::bad_request(msg.to_string()))
}

/// Validates an authorization request against the app's registration.
#[allow(clippy::result_large_err)]
pub fn validate_request(
    app: Option<App>,
    params: &Params,
) -> Result<AuthRequest, AuthorizeFailure> {
    let client_id = params.get("client_id");
    if client_id.is_none() {
        return Err(page_bad(
            "The request does not name an application (client_id is missing).",
        ));
    }
    let app = app.ok_or_else(|| page_bad("The application in this request is not known here."))?;
    if app.disabled {
        return Err(page_bad("This application is disabled."));
    }
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if app.has_redirect_uri(uri) => uri.to_string(),
        Some(_) => {
            return Err(page_bad(
                "The redirect URI in this request is not registered for this application.",
            ))
        }
        None if app.redirect_uris.len() == 1 => app.redirect_uris[0].clone(),
        None => return Err(page_bad("The request has no redirect_uri.")),
    };
    let state = params.get("state").map(str::to_string);
    let redirect_uri_sent = params.get("redirect_uri").is_some();
    let mut req = AuthRequest {
        app,
        redirect_uri,
        redirect_uri_sent,
        state,
        scopes: Vec::new(),
        code_challenge: None,
    };
    let fail = |req: &AuthRequest, error: &str, description: &str| {
        AuthorizeFailure::Redirect(redirect_with(
            &req.redirect_uri,
            &[("error", error), ("error_description", description)],
            req.state.as_deref(),
        ))
    };
    match params.get("response_type") {
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                &req,
                "unsupported_response_type",
                "only response_type=code is supported",
            ))
        }
        None => return Err(fail(&req, "invalid_request", "response_type is required")),
    }
    let requested = params.get("scope").map(split_scopes).unwrap_or_default();
    req.scopes = if requested.is_empty() {
        req.app.allowed_scopes.clone()
    } else if requested.iter().all(|s| req.app.allowed_scopes.contains(s)) {
        requested
    } else {
        return Err(fail(
            &req,
            "invalid_scope",
            "a requested scope is not allowed for this application",
        ));
    };
    match (
        params.get("code_challenge"),
        params.get("code_challenge_method"),
    ) {
        (None, None) => {}
        (Some(c), Some("S256")) if crypto::valid_pkce_challenge(c) => {
            req.code_challenge = Some(c.to_string())
        }
        (Some(_), Some("S256")) => {
            return Err(fail(&req, "invalid_request", "code_challenge is malformed"))
        }
        (Some(_), None) | (Some(_), Some("plain")) => {
            return Err(fail(
                &req,
                "invalid_request",
                "only code_challenge_method=S256 is supported",
            ))
        }
        _ => {
            return Err(fail(
                &req,
                "invalid_request",
                "code_challenge_method needs a code_challenge",
            ))
        }
    }
    Ok(req)
}

async fn load_and_validate(
    db: &Db,
    tenant_id: i64,
    params: &Params,
) -> Result<AuthRequest, AuthorizeFailure> {
    let app = match params.get("client_id") {
        Some(id) if crate::db::models::app::looks_like_client_id(id) => {
            let id = id.to_string();
            db.run(move |conn| App::find_by_client_id(conn, tenant_id, &id).map_err(Error::from))
                .await?
        }
        _ => None,
    };
    validate_request(app, params)
}

async fn current_creator(
    db: &Db,
    tenant_id: i64,
    cookies: &CookieJar<'_>,
) -> Result<Option<EndUser>, Error> {
    let Some(token) = CreatorSessionCookie::read(cookies) else {
        return Ok(None);
    };
    db.run(move |conn| EndUserSession::authenticate(conn, tenant_id, &token).map_err(Error::from))
        .await
}

/// Branding values for the hosted pages.
fn brand(tenant: &Tenant) -> serde_json::Value {
    serde_json::json!({
        "slug": tenant.slug,
        "name": tenant.display_name(),
        "logo_url": tenant.brand_logo_url.as_deref().filter(|u| u.starts_with("https://")),
        "signup_allowed": tenant.signup_allowed,
    })
}

fn consent_page(tenant: &Tenant, req: &AuthRequest, user: &EndUser, csrf: &str) -> Template {
    Template::render(
        "oauth/consent",
        context! {
            tenant: brand(tenant),
            app_name: &req.app.name,
            scopes: &req.scopes,
            scope: req.scopes.join(" "),
            client_id: &req.app.client_id,
            redirect_uri: &req.redirect_uri,
            redirect_uri_sent: req.redirect_uri_sent,
            redirect_host: url::Url::parse(&req.redirect_uri).ok().and_then(|u| u.host_str().map(str::to_string)),
            state: &req.state,
            code_challenge: &req.code_challenge,
            email: &user.email,
            csrf_token: csrf,
        },
    )
}

fn login_page(
    tenant: &Tenant,
    next: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
) -> Template {
    login_page_with_notice(tenant, next, csrf, email, error, None)
}

fn login_page_with_notice(
    tenant: &Tenant,
    next: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
    notice: Option<&str>,
) -> Template {
    Template::render(
        "oauth/login",
        context! { tenant: brand(tenant), next, csrf_token: csrf, email, error, notice },
    )
}

/// The neutral notice every sign-up ends with, whether the email was new or
/// not (see `signup_post`).
const SIGNED_UP_NOTICE: &str = "If this email was new, your account is ready: sign in to continue.";

/// The sign-in page a finished sign-up leads to, keeping the authorize
/// continuation. `next` has been through `safe_next`.
fn signed_up_location(slug: &str, next: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if next != format!("/t/{slug}/login") {
        query.append_pair("next", next);
    }
    query.append_pair("notice", "signed-up");
    format!("/t/{slug}/login?{}", query.finish())
}

#[get("/t/<_>/oauth/authorize")]
pub async fn authorize_get(
    tenant: CurrentTenant,
    db: &State<Db>,
    query: RawQuery,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
) -> PageResponse {
    let params = match query.0 {
        Ok(p) => p,
        Err(e) => {
            return PageError::bad_request(format!("The authorization request is malformed: {e}."))
                .into()
        }
    };
    let req = match load_and_validate(db, tenant.id, &params).await {
        Ok(r) => r,
        Err(f) => return f.into(),
    };
    match current_creator(db, tenant.id, cookies).await {
        Ok(Some(user)) => PageResponse::Page(consent_page(&tenant, &req, &user, csrf.value())),
        Ok(None) => PageResponse::Page(login_page(
            &tenant,
            &req.resume_path(&tenant.slug),
            csrf.value(),
            "",
            None,
        )),
        Err(e) => e.into(),
    }
}

async fn read_form(data: Data<'_>) -> Result<Params, PageError> {
    let bytes = read_body(data)
        .await
        .map_err(|e| PageError::bad_request(e.description()))?;
    parse_body(&bytes).map_err(|e| PageError::bad_request(e.description()))
}

fn check_csrf(cookies: &CookieJar<'_>, params: &Params) -> Result<(), PageError> {
    if csrf::verify(cookies, params.get(csrf::FIELD).unwrap_or("")) {
        Ok(())
    } else {
        Err(PageError::csrf())
    }
}

#[post("/t/<_>/oauth/authorize", data = "<data>")]
pub async fn authorize_post(
    tenant: CurrentTenant,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    ip: ClientIp,
    data: Data<'_>,
) -> PageResponse {
    let params = match read_form(data).await {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    if let Err(e) = check_csrf(cookies, &params) {
        return e.into();
    }
    let req = match load_and_validate(db, tenant.id, &params).await {
        Ok(r) => r,
        Err(f) => return f.into(),
    };
    let user = match current_creator(db, tenant.id, cookies).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return PageResponse::Redirect(Redirect::to(req.resume_path(&tenant.slug)));
        }
        Err(e) => return e.into(),
    };
    match params.get("decision") {
        Some("allow") => {}
        Some("deny") => {
            return PageResponse::Redirect(req.redirect(&[
                ("error", "access_denied"),
                ("error_description", "the user denied the request"),
            ]))
        }
        _ => return PageError::bad_request("Choose Allow or Deny.").into(),
    }
    let code = crypto::generate(TokenKind::AuthorizationCode);
    let new = NewAuthorizationCode {
        tenant_id: tenant.id,
        app_id: req.app.id,
        end_user_id: user.id,
        code_digest: code.digest,
        redirect_uri: if req.redirect_uri_sent {
            req.redirect_uri.clone()
        } else {
            String::new()
        },
        scopes: req.scopes.clone(),
        code_challenge: req.code_challenge.clone(),
        expires_at: Utc::now() + Duration::seconds(CODE_TTL_SECS),
    };
    let tenant_id = tenant.id;
    let app_id = req.app.id;
    let ip = ip.0;
    let stored = db
        .run(move |conn| {
            crate::db::transaction(conn, |conn| {
                // The creator is checked in the code's own transaction (a
                // share lock): a disable either came first and is seen, or
                // waits for this code, which its exchange then refuses.
                if !super::rules::creator_enabled(conn, tenant_id, new.end_user_id)? {
                    return Ok(false);
                }
                AuthorizationCode::create(conn, &new)?;
                NewAuditEvent::new(
                    tenant_id,
                    format!("creator:{}", user.id),
                    "authorize.allowed",
                )
                .object("app", app_id)
                .ip(ip.clone())
                .insert(conn)?;
                Ok::<_, diesel::result::Error>(true)
            })
            .map_err(Error::from)
        })
        .await;
    match stored {
        Ok(true) => PageResponse::Redirect(req.redirect(&[("code", &code.value)])),
        Ok(false) => PageError::forbidden("This account is disabled.").into(),
        Err(e) => e.into(),
    }
}

/// `next` must lead back into this tenant's authorize endpoint.
fn safe_next(slug: &str, next: Option<&str>) -> String {
    let prefix = format!("/t/{slug}/oauth/authorize");
    match next {
        Some(n)
            if (n == prefix || n.starts_with(&format!("{prefix}?")))
                && !n.contains('\\')
                && !n.contains("//")
                && n.bytes().all(|b| b.is_ascii_graphic())
                && rocket::http::uri::Origin::parse(n).is_ok() =>
        {
            n.to_string()
        }
        _ => format!("/t/{slug}/login"),
    }
}

#[get("/t/<_>/login?<next>&<notice>")]
pub async fn login_get(
    tenant: CurrentTenant,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    next: Option<&str>,
    notice: Option<&str>,
) -> PageResponse {
    match current_creator(db, tenant.id, cookies).await {
        Ok(Some(user)) => PageResponse::Page(Template::render(
            "oauth/signed_in",
            context! { tenant: brand(&tenant), email: user.email, csrf_token: csrf.value() },
        )),
        Ok(None) => PageResponse::Page(login_page_with_notice(
            &tenant,
            &safe_next(&tenant.slug, next),
            csrf.value(),
            "",
            None,
            // Only the fixed text: the query names a notice, never carries one.
            (notice == Some("signed-up")).then_some(SIGNED_UP_NOTICE),
        )),
        Err(e) => e.into(),
    }
}

fn start_session(cookies: &CookieJar<'_>, slug: &str, token: String, config: &AppConfig) {
    CreatorSessionCookie::set(cookies, slug, token, config.secure_cookies);
}

#[allow(clippy::too_many_arguments)]
#[post("/t/<_>/login", data = "<data>")]
pub async fn login_post(
    tenant: CurrentTenant,
    db: &State<Db>,
    config: &State<AppConfig>,
    limiter: &State<RateLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> PageResponse {
    let params = match read_form(data).await {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    if let Err(e) = check_csrf(cookies, &params) {
        return e.into();
    }
    let next = safe_next(&tenant.slug, params.get("next"));
    let email = params.get("email").unwrap_or("").trim().to_string();
    let password = params.get("password").unwrap_or("").to_string();
    let keys = [
        LimitKey::CreatorLogin(
            tenant.id,
            email.to_lowercase(),
            ip.0.clone().unwrap_or_default(),
        ),
        LimitKey::CreatorLoginIp(ip.0.clone().unwrap_or_default()),
    ];
    if let Some(wait) = limiter.blocked(&keys) {
        let msg = format!(
            "Too many failed sign-in attempts. Try again in {} minutes.",
            wait.as_secs().div_ceil(60)
        );
        return PageResponse::Throttled(
            login_page(&tenant, &next, csrf.value(), &email, Some(&msg)),
            retry_after(wait),
        );
    }
    let tenant_id = tenant.id;
    let cost = config.bcrypt_cost;
    let lookup_email = email.clone();
    // The email's shape is checked before the look-up, as on the admin
    // sign-in: garbage never reaches the database, and gets the same answer.
    let user = if valid_email(&email) {
        match db
            .run(move |conn| {
                EndUser::find_by_email(conn, tenant_id, &lookup_email).map_err(Error::from)
            })
            .await
        {
            Ok(u) => u,
            Err(e) => return e.into(),
        }
    } else {
        None
    };
    let verified = rocket::tokio::task::spawn_blocking(move || match user {
        Some(u) if !u.disabled => crypto::verify_password(&password, &u.password_hash).then_some(u),
        Some(u) => {
            crypto::verify_password(&password, &u.password_hash);
            None
        }
        None => {
            crypto::verify_password_dummy(&password, cost);
            None
        }
    })
    .await
    .ok()
    .flatten();
    let Some(user) = verified else {
        limiter.record_failure(&keys);
        return PageResponse::Status((
            Status::Unauthorized,
            login_page(
                &tenant,
                &next,
                csrf.value(),
                &email,
                Some("The email or password is incorrect."),
            ),
        ));
    };
    limiter.reset(&keys[..1]);
    let old = CreatorSessionCookie::read(cookies);
    let user_id = user.id;
    let created = db
        .run(move |conn| {
            if let Some(old) = old {
                EndUserSession::delete(conn, tenant_id, &old)?;
            }
            EndUserSession::create(conn, tenant_id, user_id).map_err(Error::from)
        })
        .await;
    match created {
        Ok(token) => {
            start_session(cookies, &tenant.slug, token, config);
            PageResponse::Redirect(Redirect::to(next))
        }
        Err(e) => e.into(),
    }
}

#[post("/t/<_>/logout", data = "<data>")]
pub async fn logout(
    tenant: CurrentTenant,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    data: Data<'_>,
) -> PageResponse {
    let params = match read_form(data).await {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    if let Err(e) = check_csrf(cookies, &params) {
        return e.into();
    }
    if let Some(token) = CreatorSessionCookie::read(cookies) {
        let tenant_id = tenant.id;
        if let Err(e) = db
            .run(move |conn| EndUserSession::delete(conn, tenant_id, &token).map_err(Error::from))
            .await
        {
            return e.into();
        }
    }
    CreatorSessionCookie::clear(cookies, &tenant.slug);
    PageResponse::Redirect(Redirect::to(format!("/t/{}/login", tenant.slug)))
}

fn signup_page(
    tenant: &Tenant,
    next: &str,
    csrf: &str,
    email: &str,
    error: Option<&str>,
) -> Template {
    Template::render(
        "oauth/signup",
        context! { tenant: brand(tenant), next, csrf_token: csrf, email, error },
    )
}

#[get("/t/<_>/signup?<next>")]
pub async fn signup_get(
    tenant: CurrentTenant,
    csrf: CsrfToken,
    next: Option<&str>,
) -> PageResponse {
    if !tenant.signup_allowed {
        return PageError::new(
            Status::NotFound,
            "Sign-up is closed",
            "This service does not accept new accounts here.",
        )
        .into();
    }
    PageResponse::Page(signup_page(
        &tenant,
        &safe_next(&tenant.slug, next),
        csrf.value(),
        "",
        None,
    ))
}

#[post("/t/<_>/signup", data = "<data>")]
#[allow(clippy::too_many_arguments)]
pub async fn signup_post(
    tenant: CurrentTenant,
    db: &State<Db>,
    config: &State<AppConfig>,
    limiter: &State<RateLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> PageResponse {
    if !tenant.signup_allowed {
        return PageError::new(
            Status::NotFound,
            "Sign-up is closed",
            "This service does not accept new accounts here.",
        )
        .into();
    }
    let params = match read_form(data).await {
        Ok(p) => p,
        Err(e) => return e.into(),
    };
    if let Err(e) = check_csrf(cookies, &params) {
        return e.into();
    }
    let next = safe_next(&tenant.slug, params.get("next"));
    let email = params.get("email").unwrap_or("").trim().to_string();
    let password = params.get("password").unwrap_or("").to_string();
    let refuse = |msg: &str| {
        PageResponse::Status((
            Status::BadRequest,
            signup_page(&tenant, &next, csrf.value(), &email, Some(msg)),
        ))
    };
    if !valid_email(&email) {
        return refuse("Enter a valid email address.");
    }
    if let Err(e) = validate_password(&password) {
        return refuse(&format!("Choose another password: {e}."));
    }
    // Each sign-up costs a bcrypt hash: a budget per IP keeps scripted
    // sign-ups from eating the CPU or filling the tenant with accounts.
    let keys = [LimitKey::CreatorSignupIp(
        tenant.id,
        ip.0.clone().unwrap_or_default(),
    )];
    if let Some(wait) = limiter.blocked(&keys) {
        let msg = format!(
            "Too many accounts were created from your network. Try again in {} minutes.",
            wait.as_secs().div_ceil(60)
        );
        return PageResponse::Throttled(
            signup_page(&tenant, &next, csrf.value(), &email, Some(&msg)),
            retry_after(wait),
        );
    }
    limiter.record_failure(&keys);
    // The answer must not tell whether the email has an account (issue 13):
    // the password is hashed either way (same bcrypt work, same timing), an
    // existing account is left as it is, nobody is signed in, and both cases
    // end with the same redirect to the sign-in page and the same notice.
    let cost = config.bcrypt_cost;
    let Ok(Ok(hash)) =
        rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost)).await
    else {
        return PageError::from(Error::Internal("password hashing failed".into())).into();
    };
    let tenant_id = tenant.id;
    let new_email = email.clone();
    let created = db
        .run(move |conn| {
            EndUser::create_if_new(conn, tenant_id, &new_email, &hash).map_err(Error::from)
        })
        .await;
    match created {
        Ok(_) => PageResponse::Redirect(Redirect::to(signed_up_location(&tenant.slug, &next))),
        Err(e) => e.into(),
    }
}

/// The tenant's accent colour as a stylesheet (keeps inline styles out of
/// the pages, so the CSP can forbid them).
#[get("/t/<_>/brand.css")]
pub async fn brand_css(tenant: CurrentTenant) -> (ContentType, String) {
    let accent = tenant
        .brand_accent_color
        .as_deref()
        .filter(|c| valid_color(c))
        .unwrap_or("#4f46e5");
    (
        ContentType::CSS,
        format!(":root {{ --accent: {accent}; }}\n"),
    )
}

/// `#rgb` or `#rrggbb`.
pub fn valid_color(c: &str) -> bool {
    c.starts_with('#') && matches!(c.len(), 4 | 7) && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}
