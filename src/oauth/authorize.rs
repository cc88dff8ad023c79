//! The browser side: GET/POST authorize with hosted sign-in, sign-up and
//! consent pages, branded for the tenant.

use chrono::{Duration, Utc};
use rocket::form::FromForm;
use rocket::http::{ContentType, CookieJar, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{get, post, Responder};
use rocket_dyn_templates::{context, Template};

use crate::auth::csrf::NoFields;
use crate::auth::refusal::{self, Refusal};
use crate::auth::{client_ip, CreatorSessionCookie, CsrfForm, CsrfToken, CurrentTenant};
use crate::config::AppConfig;
use crate::crypto::{self, TokenKind};
use crate::db::models::code::{NewAuthorizationCode, CODE_TTL_SECS};
use crate::db::models::end_user::{valid_email, validate_password};
use crate::db::models::tenant::{valid_color, CreatorSignin};
use crate::db::models::{App, AuthorizationCode, EndUser, EndUserSession, NewAuditEvent, Tenant};
use crate::db::Db;
use crate::error::{Error, ErrorCode, PageError};
use crate::input::Text;
use crate::params::{parse_body, split_scopes, Params};
use crate::ratelimit::{LimitKey, RateLimiter};

/// What every hosted page handler needs: the tenant of `/t/{t}`, the pool,
/// the configuration, the cookies, the caller's address and the sign-in
/// limits. Fails as the tenant guard does (404 for an unknown tenant).
pub struct Hosted<'r> {
    pub tenant: CurrentTenant,
    pub db: &'r Db,
    pub config: &'r AppConfig,
    pub cookies: &'r CookieJar<'r>,
    /// The caller's address, `""` when unknown (throttling keys).
    pub ip: Option<String>,
    pub limiter: &'r RateLimiter,
    pub login_starts: &'r crate::ratelimit::LoginStartLimits,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Hosted<'r> {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let tenant = match req.guard::<CurrentTenant>().await {
            Outcome::Success(t) => t,
            Outcome::Forward(s) => return Outcome::Forward(s),
            Outcome::Error((s, _)) => return Outcome::Error((s, ())),
        };
        let rocket = req.rocket();
        let (Some(db), Some(config), Some(limiter), Some(login_starts)) = (
            rocket.state::<Db>(),
            rocket.state::<AppConfig>(),
            rocket.state::<RateLimiter>(),
            rocket.state::<crate::ratelimit::LoginStartLimits>(),
        ) else {
            return Outcome::Error((Status::InternalServerError, ()));
        };
        Outcome::Success(Hosted {
            tenant,
            db,
            config,
            cookies: req.cookies(),
            ip: client_ip(req),
            limiter,
            login_starts,
        })
    }
}

impl Hosted<'_> {
    pub fn addr(&self) -> String {
        self.ip.clone().unwrap_or_default()
    }
}

/// What the hosted pages answer: a page, a redirect, or an error page.
#[derive(Responder)]
pub enum PageResponse {
    Page(Template),
    Redirect(Redirect),
    Status((Status, Template)),
    /// `429` with `Retry-After` (seconds).
    #[response(status = 429)]
    Throttled(Template, Header<'static>),
    /// An error page with a header (`Retry-After` on a 429 page).
    ErrorWith(PageError, Header<'static>),
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

/// The parameters of an authorization request, from the query string (GET)
/// or the consent form (POST); an empty value counts as a missing one.
#[derive(Debug, Default, Clone, Copy)]
pub struct AuthParams<'a> {
    pub client_id: Option<&'a str>,
    pub redirect_uri: Option<&'a str>,
    pub response_type: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub state: Option<&'a str>,
    pub code_challenge: Option<&'a str>,
    pub code_challenge_method: Option<&'a str>,
}

impl<'a> AuthParams<'a> {
    pub fn from_params(p: &'a Params) -> Self {
        AuthParams {
            client_id: p.get("client_id"),
            redirect_uri: p.get("redirect_uri"),
            response_type: p.get("response_type"),
            scope: p.get("scope"),
            state: p.get("state"),
            code_challenge: p.get("code_challenge"),
            code_challenge_method: p.get("code_challenge_method"),
        }
    }
}

/// The consent form: the authorization request again, and the decision.
#[derive(Debug, FromForm)]
pub struct ConsentForm {
    client_id: Text,
    redirect_uri: Text,
    response_type: Text,
    scope: Text,
    state: Text,
    code_challenge: Text,
    code_challenge_method: Text,
    decision: Text<100>,
}

impl ConsentForm {
    fn request(&self) -> AuthParams<'_> {
        AuthParams {
            client_id: self.client_id.get(),
            redirect_uri: self.redirect_uri.get(),
            response_type: self.response_type.get(),
            scope: self.scope.get(),
            state: self.state.get(),
            code_challenge: self.code_challenge.get(),
            code_challenge_method: self.code_challenge_method.get(),
        }
    }
}

/// The sign-in and sign-up form of the hosted pages.
#[derive(Debug, FromForm)]
pub struct CredentialsForm {
    email: Text<320>,
    password: Text<1024>,
    next: Text,
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
    pub fn resume_path(&self, slug: &str) -> String {
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

    pub fn redirect(&self, pairs: &[(&str, &str)]) -> Redirect {
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

fn page_bad(msg: &'static str) -> AuthorizeFailure {
    AuthorizeFailure::Page(PageError::bad_request(msg))
}

/// Validates an authorization request against the app's registration, in
/// the order of RFC 6749 §4.1.2.1: what makes the redirect untrustworthy is
/// an error page; everything after is an error redirect.
#[allow(clippy::result_large_err)]
pub fn validate_request(
    app: Option<App>,
    params: &AuthParams<'_>,
) -> Result<AuthRequest, AuthorizeFailure> {
    let app = trusted_app(app, params.client_id).map_err(page_bad)?;
    let redirect_uri = registered_redirect_uri(&app, params.redirect_uri).map_err(page_bad)?;
    let mut req = AuthRequest {
        app,
        redirect_uri,
        redirect_uri_sent: params.redirect_uri.is_some(),
        state: params.state.map(str::to_string),
        scopes: Vec::new(),
        code_challenge: None,
    };
    let checked = check_response_type(params.response_type)
        .and_then(|()| granted_scopes(&req.app, params.scope))
        .and_then(|scopes| {
            let challenge = pkce_challenge(params.code_challenge, params.code_challenge_method)?;
            Ok((scopes, challenge))
        });
    match checked {
        Ok((scopes, challenge)) => {
            req.scopes = scopes;
            req.code_challenge = challenge;
            Ok(req)
        }
        Err((error, description)) => Err(AuthorizeFailure::Redirect(redirect_with(
            &req.redirect_uri,
            &[
                ("error", error.as_str()),
                ("error_description", description),
            ],
            req.state.as_deref(),
        ))),
    }
}

/// An error for the client's redirect URI: the RFC 6749 code and a description.
pub type RedirectError = (ErrorCode, &'static str);

/// The request names an app that exists here and is enabled.
pub fn trusted_app(app: Option<App>, client_id: Option<&str>) -> Result<App, &'static str> {
    if client_id.is_none() {
        return Err("The request does not name an application (client_id is missing).");
    }
    let app = app.ok_or("The application in this request is not known here.")?;
    if app.disabled {
        return Err("This application is disabled.");
    }
    Ok(app)
}

/// Where the answer goes: the `redirect_uri` sent, exactly as registered, or
/// the app's only registered one when none was sent (RFC 6749 §3.1.2.3).
pub fn registered_redirect_uri(app: &App, sent: Option<&str>) -> Result<String, &'static str> {
    match sent {
        Some(uri) if app.has_redirect_uri(uri) => Ok(uri.to_string()),
        Some(_) => Err("The redirect URI in this request is not registered for this application."),
        None if app.redirect_uris.len() == 1 => Ok(app.redirect_uris[0].clone()),
        None => Err("The request has no redirect_uri."),
    }
}

/// Only the authorization code flow.
pub fn check_response_type(response_type: Option<&str>) -> Result<(), RedirectError> {
    match response_type {
        Some("code") => Ok(()),
        Some(_) => Err((
            ErrorCode::UnsupportedResponseType,
            "only response_type=code is supported",
        )),
        None => Err((ErrorCode::InvalidRequest, "response_type is required")),
    }
}

/// The scopes asked for, each allowed for the app; none asked means all
/// the app allows.
pub fn granted_scopes(app: &App, scope: Option<&str>) -> Result<Vec<String>, RedirectError> {
    let requested = scope.map(split_scopes).unwrap_or_default();
    if requested.is_empty() {
        Ok(app.allowed_scopes.clone())
    } else if requested.iter().all(|s| app.allowed_scopes.contains(s)) {
        Ok(requested)
    } else {
        Err((
            ErrorCode::InvalidScope,
            "a requested scope is not allowed for this application",
        ))
    }
}

/// PKCE (RFC 7636): no challenge, or an S256 challenge of the challenge's
/// own syntax ([`crypto::valid_pkce_challenge`]).
pub fn pkce_challenge(
    challenge: Option<&str>,
    method: Option<&str>,
) -> Result<Option<String>, RedirectError> {
    match (challenge, method) {
        (None, None) => Ok(None),
        (Some(c), Some("S256")) if crypto::valid_pkce_challenge(c) => Ok(Some(c.to_string())),
        (Some(_), Some("S256")) => Err((ErrorCode::InvalidRequest, "code_challenge is malformed")),
        (Some(_), None) | (Some(_), Some("plain")) => Err((
            ErrorCode::InvalidRequest,
            "only code_challenge_method=S256 is supported",
        )),
        _ => Err((
            ErrorCode::InvalidRequest,
            "code_challenge_method needs a code_challenge",
        )),
    }
}

async fn load_and_validate(
    db: &Db,
    tenant_id: i64,
    params: &AuthParams<'_>,
) -> Result<AuthRequest, AuthorizeFailure> {
    let app = match params.client_id {
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

/// The consent page. `login_verifier` is set in delegated sign-in: the
/// decision then goes to the continuation, which holds the request.
pub fn consent_page(
    tenant: &Tenant,
    req: &AuthRequest,
    user: &EndUser,
    csrf: &str,
    login_verifier: Option<&str>,
) -> Template {
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
            account: account_label(user),
            login_verifier,
            csrf_token: csrf,
        },
    )
}

/// How the consent page names the creator: a delegated creator by name or
/// email and subject, a hosted one by email.
fn account_label(user: &EndUser) -> String {
    match (
        &user.subject,
        user.name.as_deref().or(user.email.as_deref()),
    ) {
        (Some(subject), Some(shown)) => format!("{shown} ({subject})"),
        _ => user.label().to_string(),
    }
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
pub async fn authorize_get(hosted: Hosted<'_>, query: RawQuery, csrf: CsrfToken) -> PageResponse {
    let params = match query.0 {
        Ok(p) => p,
        Err(e) => {
            return PageError::bad_request(format!("The authorization request is malformed: {e}."))
                .into()
        }
    };
    let Hosted {
        tenant,
        db,
        cookies,
        ..
    } = &hosted;
    let req = match load_and_validate(db, tenant.id, &AuthParams::from_params(&params)).await {
        Ok(r) => r,
        Err(f) => return f.into(),
    };
    if let CreatorSignin::Delegated { login_url } = tenant.signin() {
        return super::login::start(&hosted, &req, &login_url).await;
    }
    match current_creator(db, tenant.id, cookies).await {
        Ok(Some(user)) if req.app.skip_consent => allowed(&hosted, &req, &user).await,
        Ok(Some(user)) => PageResponse::Page(consent_page(tenant, &req, &user, csrf.value(), None)),
        Ok(None) => PageResponse::Page(login_page(
            tenant,
            &req.resume_path(&tenant.slug),
            csrf.value(),
            "",
            None,
        )),
        Err(e) => e.into(),
    }
}

#[post("/t/<_>/oauth/authorize", data = "<form>")]
pub async fn authorize_post(hosted: Hosted<'_>, form: CsrfForm<ConsentForm>) -> PageResponse {
    let Hosted {
        tenant,
        db,
        cookies,
        ..
    } = &hosted;
    let req = match load_and_validate(db, tenant.id, &form.request()).await {
        Ok(r) => r,
        Err(f) => return f.into(),
    };
    // Delegated sign-in decides on its continuation; a hosted session
    // left from before the switch counts for nothing.
    if tenant.signin() != CreatorSignin::Hosted {
        return PageResponse::Redirect(Redirect::to(req.resume_path(&tenant.slug)));
    }
    let user = match current_creator(db, tenant.id, cookies).await {
        Ok(Some(u)) => u,
        Ok(None) => {
            return PageResponse::Redirect(Redirect::to(req.resume_path(&tenant.slug)));
        }
        Err(e) => return e.into(),
    };
    match form.decision.as_str() {
        "allow" => {}
        "deny" => {
            return PageResponse::Redirect(req.redirect(&[
                ("error", ErrorCode::AccessDenied.as_str()),
                ("error_description", "the user denied the request"),
            ]))
        }
        _ => return PageError::bad_request("Choose Allow or Deny.").into(),
    }
    allowed(&hosted, &req, &user).await
}

/// The creator allowed `req` (or the app skips consent): a code, and the
/// redirect to Kit with it.
async fn allowed(hosted: &Hosted<'_>, req: &AuthRequest, user: &EndUser) -> PageResponse {
    match issue_code(hosted, req, user).await {
        Ok(Some(code)) => PageResponse::Redirect(req.redirect(&[("code", &code)])),
        Ok(None) => PageError::forbidden("This account is disabled.").into(),
        Err(e) => e.into(),
    }
}

/// Stores a new authorization code for the creator's consent, audited;
/// `None` when the creator was disabled meanwhile.
async fn issue_code(
    hosted: &Hosted<'_>,
    req: &AuthRequest,
    user: &EndUser,
) -> Result<Option<String>, Error> {
    let tenant_id = hosted.tenant.id;
    let (req, user_id, ip) = (req.clone(), user.id, hosted.ip.clone());
    hosted
        .db
        .run(move |conn| {
            crate::db::transaction(conn, |conn| {
                store_code(conn, tenant_id, &req, user_id, ip.clone())
            })
            .map_err(Error::from)
        })
        .await
}

/// Stores a new authorization code of `req` for the creator, with its audit
/// row, in the caller's transaction; `None` (and nothing written) when the
/// creator is disabled. The one place codes are made, for hosted and
/// delegated sign-in alike.
pub fn store_code(
    conn: &mut diesel::PgConnection,
    tenant_id: i64,
    req: &AuthRequest,
    end_user_id: i64,
    ip: Option<String>,
) -> diesel::QueryResult<Option<String>> {
    // The creator is checked in the code's own transaction (a share lock):
    // a disable either came first and is seen, or waits for this code,
    // which its exchange then refuses.
    if !super::rules::creator_enabled(conn, tenant_id, end_user_id)? {
        return Ok(None);
    }
    let code = crypto::generate(TokenKind::AuthorizationCode);
    let now = Utc::now();
    let new = NewAuthorizationCode {
        tenant_id,
        app_id: req.app.id,
        end_user_id,
        code_digest: code.digest,
        redirect_uri: if req.redirect_uri_sent {
            req.redirect_uri.clone()
        } else {
            String::new()
        },
        scopes: req.scopes.clone(),
        code_challenge: req.code_challenge.clone(),
        created_at: now,
        expires_at: now + Duration::seconds(CODE_TTL_SECS),
    };
    AuthorizationCode::create(conn, &new)?;
    NewAuditEvent::new(
        tenant_id,
        format!("creator:{end_user_id}"),
        "authorize.allowed",
    )
    .object("app", req.app.id)
    .ip(ip)
    .insert(conn)?;
    Ok(Some(code.value))
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

/// The hosted account pages of a tenant in delegated sign-in: a page that
/// says where its creators sign in.
fn hosted_only(tenant: &Tenant) -> Result<(), PageError> {
    match tenant.signin() {
        CreatorSignin::Hosted => Ok(()),
        CreatorSignin::Delegated { .. } => Err(PageError::new(
            Status::NotFound,
            "No accounts here",
            format!(
                "{} signs you in with your account on its own site: start from the app in Kit.",
                tenant.display_name()
            ),
        )
        .with_back("Back to Kit", "https://app.kit.com/")),
    }
}

#[get("/t/<_>/login?<next>&<notice>")]
pub async fn login_get(
    hosted: Hosted<'_>,
    csrf: CsrfToken,
    next: Option<&str>,
    notice: Option<&str>,
) -> PageResponse {
    let tenant = &hosted.tenant;
    if let Err(page) = hosted_only(tenant) {
        return page.into();
    }
    match current_creator(hosted.db, tenant.id, hosted.cookies).await {
        Ok(Some(user)) => PageResponse::Page(Template::render(
            "oauth/signed_in",
            context! { tenant: brand(tenant), email: user.email, csrf_token: csrf.value() },
        )),
        Ok(None) => PageResponse::Page(login_page_with_notice(
            tenant,
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

#[post("/t/<_>/login", data = "<form>")]
pub async fn login_post(
    hosted: Hosted<'_>,
    csrf: CsrfToken,
    form: CsrfForm<CredentialsForm>,
) -> PageResponse {
    let tenant = &hosted.tenant;
    if let Err(page) = hosted_only(tenant) {
        return page.into();
    }
    let next = safe_next(&tenant.slug, form.next.get());
    let email = form.email.trimmed();
    let page = |error: &str| login_page(tenant, &next, csrf.value(), &email, Some(error));
    let keys = [
        LimitKey::CreatorLogin(tenant.id, email.to_lowercase(), hosted.addr()),
        LimitKey::CreatorLoginIp(hosted.addr()),
    ];
    if let Some(wait) = hosted.limiter.blocked(&keys) {
        let msg = format!(
            "Too many failed sign-in attempts. Try again in {} minutes.",
            wait.as_secs().div_ceil(60)
        );
        return PageResponse::Throttled(page(&msg), retry_after(wait));
    }
    let user = match verify_creator(&hosted, &email, form.password.as_str()).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            hosted.limiter.record_failure(&keys);
            return PageResponse::Status((
                Status::Unauthorized,
                page("The email or password is incorrect."),
            ));
        }
        Err(e) => return e.into(),
    };
    hosted.limiter.reset(&keys[..1]);
    let old = CreatorSessionCookie::read(hosted.cookies);
    let (tenant_id, user_id) = (tenant.id, user.id);
    let created = hosted
        .db
        .run(move |conn| {
            if let Some(old) = old {
                EndUserSession::delete(conn, tenant_id, &old)?;
            }
            EndUserSession::create(conn, tenant_id, user_id).map_err(Error::from)
        })
        .await;
    match created {
        Ok(token) => {
            start_session(hosted.cookies, &tenant.slug, token, hosted.config);
            PageResponse::Redirect(Redirect::to(next))
        }
        Err(e) => e.into(),
    }
}

/// The enabled creator these credentials belong to. Unknown and disabled
/// accounts cost the same bcrypt work as a real check.
async fn verify_creator(
    hosted: &Hosted<'_>,
    email: &str,
    password: &str,
) -> Result<Option<EndUser>, Error> {
    let tenant_id = hosted.tenant.id;
    let cost = hosted.config.bcrypt_cost;
    let lookup_email = email.to_string();
    // The email's shape is checked before the look-up, as on the admin
    // sign-in: garbage never reaches the database, and gets the same answer.
    let user = if valid_email(email) {
        hosted
            .db
            .run(move |conn| {
                EndUser::find_by_email(conn, tenant_id, &lookup_email).map_err(Error::from)
            })
            .await?
    } else {
        None
    };
    let password = password.to_string();
    Ok(rocket::tokio::task::spawn_blocking(move || match user {
        Some(u) => {
            let hash = u.password_hash.as_deref().unwrap_or_default();
            (crypto::verify_password(&password, hash) && !u.disabled).then_some(u)
        }
        None => {
            crypto::verify_password_dummy(&password, cost);
            None
        }
    })
    .await
    .ok()
    .flatten())
}

#[post("/t/<_>/logout", data = "<_form>")]
pub async fn logout(hosted: Hosted<'_>, _form: CsrfForm<NoFields>) -> PageResponse {
    let tenant = &hosted.tenant;
    if let Some(token) = CreatorSessionCookie::read(hosted.cookies) {
        let tenant_id = tenant.id;
        if let Err(e) = hosted
            .db
            .run(move |conn| EndUserSession::delete(conn, tenant_id, &token).map_err(Error::from))
            .await
        {
            return e.into();
        }
    }
    CreatorSessionCookie::clear(hosted.cookies, &tenant.slug);
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

fn signup_closed() -> PageError {
    PageError::new(
        Status::NotFound,
        "Sign-up is closed",
        "This service does not accept new accounts here.",
    )
}

/// The tenant lets creators sign up: a guard, so that a closed sign-up is
/// refused before its form is read.
pub struct SignupOpen;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SignupOpen {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match req.guard::<CurrentTenant>().await {
            Outcome::Success(t) => {
                let refused = match hosted_only(&t) {
                    Err(page) => page,
                    Ok(()) if t.signup_allowed => return Outcome::Success(SignupOpen),
                    Ok(()) => signup_closed(),
                };
                Outcome::Error((refusal::refuse(req, Refusal::Page(refused)), ()))
            }
            Outcome::Forward(s) => Outcome::Forward(s),
            Outcome::Error((s, _)) => Outcome::Error((s, ())),
        }
    }
}

#[get("/t/<_>/signup?<next>")]
pub async fn signup_get(
    tenant: CurrentTenant,
    csrf: CsrfToken,
    next: Option<&str>,
) -> PageResponse {
    if let Err(page) = hosted_only(&tenant) {
        return page.into();
    }
    if !tenant.signup_allowed {
        return signup_closed().into();
    }
    PageResponse::Page(signup_page(
        &tenant,
        &safe_next(&tenant.slug, next),
        csrf.value(),
        "",
        None,
    ))
}

#[post("/t/<_>/signup", data = "<form>")]
pub async fn signup_post(
    hosted: Hosted<'_>,
    csrf: CsrfToken,
    _open: SignupOpen,
    form: CsrfForm<CredentialsForm>,
) -> PageResponse {
    let tenant = &hosted.tenant;
    let next = safe_next(&tenant.slug, form.next.get());
    let email = form.email.trimmed();
    let page = |error: &str| signup_page(tenant, &next, csrf.value(), &email, Some(error));
    if !valid_email(&email) {
        return PageResponse::Status((Status::BadRequest, page("Enter a valid email address.")));
    }
    if let Err(e) = validate_password(form.password.as_str()) {
        let msg = format!("Choose another password: {e}.");
        return PageResponse::Status((Status::BadRequest, page(&msg)));
    }
    // Each sign-up costs a bcrypt hash: a budget per IP keeps scripted
    // sign-ups from eating the CPU or filling the tenant with accounts.
    let keys = [LimitKey::CreatorSignupIp(tenant.id, hosted.addr())];
    if let Some(wait) = hosted.limiter.blocked(&keys) {
        let msg = format!(
            "Too many accounts were created from your network. Try again in {} minutes.",
            wait.as_secs().div_ceil(60)
        );
        return PageResponse::Throttled(page(&msg), retry_after(wait));
    }
    hosted.limiter.record_failure(&keys);
    match create_creator(&hosted, &email, form.password.as_str()).await {
        Ok(()) => PageResponse::Redirect(Redirect::to(signed_up_location(&tenant.slug, &next))),
        Err(e) => e.into(),
    }
}

/// The account of a sign-up, unless the email has one already.
///
/// The answer must not tell whether the email has an account (issue 13):
/// the password is hashed either way (same bcrypt work, same timing), an
/// existing account is left as it is, nobody is signed in, and both cases
/// end with the same redirect to the sign-in page and the same notice.
async fn create_creator(hosted: &Hosted<'_>, email: &str, password: &str) -> Result<(), Error> {
    let cost = hosted.config.bcrypt_cost;
    let password = password.to_string();
    let Ok(Ok(hash)) =
        rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost)).await
    else {
        return Err(Error::Internal("password hashing failed".into()));
    };
    let tenant_id = hosted.tenant.id;
    let new_email = email.to_string();
    hosted
        .db
        .run(move |conn| {
            EndUser::create_if_new(conn, tenant_id, &new_email, &hash).map_err(Error::from)
        })
        .await
        .map(|_| ())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn app(redirect_uris: &[&str]) -> App {
        App {
            id: 1,
            tenant_id: 1,
            name: "Newsletter sync".into(),
            client_id: "kit_app".into(),
            redirect_uris: redirect_uris.iter().map(|u| u.to_string()).collect(),
            allowed_scopes: vec!["public".into(), "write".into()],
            access_token_ttl_secs: 7200,
            refresh_token_ttl_secs: 86400,
            refresh_grace_secs: 60,
            refresh_without_secret: true,
            disabled: false,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            auth_version: 0,
            skip_consent: false,
        }
    }

    const KIT: &str = "https://app.kit.com/apps/install";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn only_a_named_known_enabled_app_is_trusted() {
        assert!(trusted_app(Some(app(&[KIT])), None).is_err());
        assert!(trusted_app(None, Some("kit_app")).is_err());
        let mut disabled = app(&[KIT]);
        disabled.disabled = true;
        assert_eq!(
            trusted_app(Some(disabled), Some("kit_app")).unwrap_err(),
            "This application is disabled."
        );
        assert!(trusted_app(Some(app(&[KIT])), Some("kit_app")).is_ok());
    }

    #[test]
    fn the_redirect_uri_is_exactly_a_registered_one() {
        let one = app(&[KIT]);
        assert_eq!(registered_redirect_uri(&one, Some(KIT)).unwrap(), KIT);
        assert_eq!(registered_redirect_uri(&one, None).unwrap(), KIT);
        for bad in [
            "https://app.kit.com/apps/install/",
            "https://app.kit.com/apps/INSTALL",
            "https://evil.example/apps/install",
            "https://app.kit.com/apps/install?x=1",
        ] {
            assert!(registered_redirect_uri(&one, Some(bad)).is_err(), "{bad}");
        }
        let two = app(&[KIT, "https://app.kit.com/apps"]);
        assert!(registered_redirect_uri(&two, None).is_err());
    }

    #[test]
    fn only_response_type_code() {
        assert!(check_response_type(Some("code")).is_ok());
        assert_eq!(
            check_response_type(Some("token")).unwrap_err().0,
            ErrorCode::UnsupportedResponseType
        );
        assert_eq!(
            check_response_type(None).unwrap_err().0,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn scopes_are_the_allowed_ones_or_all_of_them() {
        let a = app(&[KIT]);
        assert_eq!(granted_scopes(&a, None).unwrap(), vec!["public", "write"]);
        assert_eq!(
            granted_scopes(&a, Some("  ")).unwrap(),
            vec!["public", "write"]
        );
        assert_eq!(
            granted_scopes(&a, Some("write,public write")).unwrap(),
            vec!["write", "public"]
        );
        assert_eq!(
            granted_scopes(&a, Some("public admin")).unwrap_err().0,
            ErrorCode::InvalidScope
        );
    }

    #[test]
    fn pkce_needs_an_s256_challenge_of_the_challenge_syntax() {
        assert_eq!(pkce_challenge(None, None).unwrap(), None);
        assert_eq!(
            pkce_challenge(Some(CHALLENGE), Some("S256"))
                .unwrap()
                .as_deref(),
            Some(CHALLENGE)
        );
        // Verifier syntax (44 characters, `.` and `~`) is not challenge syntax.
        for bad in [
            "a".repeat(44),
            "a".repeat(42),
            format!("{}.", "a".repeat(42)),
            format!("{}~", "a".repeat(42)),
            format!("{}=", "a".repeat(42)),
        ] {
            assert_eq!(
                pkce_challenge(Some(&bad), Some("S256")).unwrap_err(),
                (ErrorCode::InvalidRequest, "code_challenge is malformed"),
                "{bad}"
            );
        }
        for (c, m) in [
            (Some(CHALLENGE), None),
            (Some(CHALLENGE), Some("plain")),
            (None, Some("S256")),
            (Some(CHALLENGE), Some("s256")),
        ] {
            assert_eq!(
                pkce_challenge(c, m).unwrap_err().0,
                ErrorCode::InvalidRequest,
                "{c:?} {m:?}"
            );
        }
    }

    #[test]
    fn a_bad_request_after_the_redirect_uri_is_an_error_redirect_with_state() {
        let params = AuthParams {
            client_id: Some("kit_app"),
            redirect_uri: Some(KIT),
            response_type: Some("code"),
            state: Some("s1"),
            code_challenge: Some("a.b"),
            code_challenge_method: Some("S256"),
            ..AuthParams::default()
        };
        match validate_request(Some(app(&[KIT])), &params) {
            Err(AuthorizeFailure::Redirect(url)) => {
                assert!(url.starts_with(KIT), "{url}");
                assert!(url.contains("error=invalid_request"), "{url}");
                assert!(url.contains("state=s1"), "{url}");
            }
            _ => panic!("expected an error redirect"),
        }
        let unregistered = AuthParams {
            redirect_uri: Some("https://evil.example/"),
            ..params
        };
        assert!(matches!(
            validate_request(Some(app(&[KIT])), &unregistered),
            Err(AuthorizeFailure::Page(_))
        ));
        let ok = AuthParams {
            code_challenge: Some(CHALLENGE),
            ..params
        };
        let req = validate_request(Some(app(&[KIT])), &ok).ok().unwrap();
        assert_eq!(req.scopes, vec!["public", "write"]);
        assert_eq!(req.code_challenge.as_deref(), Some(CHALLENGE));
        assert!(req.redirect_uri_sent);
    }
}
