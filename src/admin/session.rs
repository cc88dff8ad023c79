//! Admin accounts: sign-in (throttled), sign-out, self-service sign-up,
//! the tenant picker, and accepting a member invitation.

use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::{CookieJar, Header, Status};
use rocket::request::{FlashMessage, FromRequest, Outcome, Request};
use rocket::response::{Flash, Redirect};
use rocket::{get, post, Responder, State};
use rocket_dyn_templates::Template;
use serde_json::{json, Value};

use super::{
    clear_session_cookie, flash_json, session_policy, set_session_cookie, AdminUser, PageResult,
    Resp, COOKIE,
};
use crate::auth::csrf::NoFields;
use crate::auth::refusal::{self, Refusal};
use crate::auth::{client_ip, CsrfForm, CsrfToken};
use crate::config::AppConfig;
use crate::crypto;
use crate::db::models::end_user::{normalize_email, valid_email, validate_password};
use crate::db::models::invite::Acceptance;
use crate::db::models::tenant::valid_slug;
use crate::db::models::{
    Admin, AdminInvite, AdminSession, Membership, NewAuditEvent, NewTenant, Role, Tenant,
};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::Text;
use crate::ratelimit::{AttemptLimiter, LimitKey, RateLimiter};

/// What the account pages (sign-in, sign-up, invitation) need: the pool,
/// the configuration, the cookies, the caller's address and both throttles.
pub struct Accounts<'r> {
    pub db: &'r Db,
    pub config: &'r AppConfig,
    pub cookies: &'r CookieJar<'r>,
    pub ip: Option<String>,
    /// Failed sign-ins per account and address.
    pub limiter: &'r RateLimiter,
    /// Every bcrypt-costing attempt per address.
    pub attempts: &'r AttemptLimiter,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Accounts<'r> {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let rocket = req.rocket();
        let (Some(db), Some(config), Some(limiter), Some(attempts)) = (
            rocket.state::<Db>(),
            rocket.state::<AppConfig>(),
            rocket.state::<RateLimiter>(),
            rocket.state::<AttemptLimiter>(),
        ) else {
            return Outcome::Error((Status::InternalServerError, ()));
        };
        Outcome::Success(Accounts {
            db,
            config,
            cookies: req.cookies(),
            ip: client_ip(req),
            limiter,
            attempts,
        })
    }
}

impl Accounts<'_> {
    fn addr(&self) -> String {
        self.ip.clone().unwrap_or_default()
    }
}

/// The sign-in form.
#[derive(Debug, FromForm)]
pub struct LoginForm {
    email: Text<320>,
    password: Text<1024>,
    next: Text,
}

/// The self-service sign-up form: an account and its first workspace.
#[derive(Debug, FromForm)]
pub struct SignupForm {
    email: Text<320>,
    password: Text<1024>,
    tenant_name: Text<200>,
    tenant_slug: Text<200>,
}

/// The invitation form: the password of the account that accepts.
#[derive(Debug, FromForm)]
pub struct InviteForm {
    password: Text<1024>,
}

/// A sign-in refused by throttling: 429 with `Retry-After`.
#[derive(Responder)]
#[response(status = 429)]
pub struct TooManyAttempts(Template, Header<'static>);

#[derive(Responder)]
pub enum LoginResp {
    Page(Resp),
    TooMany(TooManyAttempts),
}

impl From<Resp> for LoginResp {
    fn from(r: Resp) -> Self {
        LoginResp::Page(r)
    }
}

/// Only paths inside the dashboard are followed after sign-in.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with("/admin")
                && !n.starts_with("/admin/login")
                && !n.contains("//")
                && !n.contains('\\')
                && n.len() < 500
                && n.bytes().all(|b| b.is_ascii_graphic())
                && rocket::http::uri::Origin::parse(n).is_ok() =>
        {
            n.to_string()
        }
        _ => "/admin".to_string(),
    }
}

fn login_page(
    csrf: &str,
    config: &AppConfig,
    next: &str,
    email: &str,
    error: Option<&str>,
    flash: Value,
) -> Template {
    Template::render(
        "admin/login",
        json!({
            "csrf_token": csrf,
            "next": next,
            "email": email,
            "error": error,
            "flash": flash,
            "signup": config.admin_signup,
        }),
    )
}

#[get("/admin/login?<next>")]
pub fn login_get(
    csrf: CsrfToken,
    config: &State<AppConfig>,
    flash: Option<FlashMessage<'_>>,
    next: Option<&str>,
) -> Template {
    login_page(
        csrf.value(),
        config,
        &safe_next(next),
        "",
        None,
        flash_json(flash),
    )
}

/// Verifies an admin's password off the async workers; unknown accounts
/// spend the same time on a dummy hash.
async fn check_password(admin: Option<Admin>, password: String, cost: u32) -> Option<Admin> {
    rocket::tokio::task::spawn_blocking(move || match admin {
        Some(a) => crypto::verify_password(&password, &a.password_hash).then_some(a),
        None => {
            crypto::verify_password_dummy(&password, cost);
            None
        }
    })
    .await
    .ok()
    .flatten()
}

/// Starts a fresh session for `admin_id`, ending the one the browser had
/// (no session fixation), and sets the cookie.
async fn start_session(accounts: &Accounts<'_>, admin_id: i64) -> Result<(), PageError> {
    let (cookies, config) = (accounts.cookies, accounts.config);
    let old = cookies.get(COOKIE).map(|c| c.value().to_string());
    let policy = session_policy(config);
    let ip = accounts.ip.clone();
    let token = accounts
        .db
        .run(move |conn| -> Result<String, Error> {
            if let Some(old) = old {
                AdminSession::delete_by_token(conn, &old)?;
            }
            AdminSession::delete_expired(conn)?;
            Ok(AdminSession::create(conn, admin_id, policy, ip)?)
        })
        .await?;
    set_session_cookie(cookies, token, config);
    Ok(())
}

fn too_many(csrf: &str, config: &AppConfig, next: &str, email: &str, wait: u64) -> LoginResp {
    let minutes = wait.div_ceil(60).max(1);
    let msg = format!(
        "Too many failed sign-in attempts. For your security, sign-in is paused for this account and address: try again in {minutes} minute{}.",
        if minutes == 1 { "" } else { "s" }
    );
    LoginResp::TooMany(TooManyAttempts(
        login_page(csrf, config, next, email, Some(&msg), Value::Null),
        Header::new("Retry-After", wait.max(1).to_string()),
    ))
}

#[post("/admin/login", data = "<form>")]
pub async fn login_post(
    accounts: Accounts<'_>,
    csrf: CsrfToken,
    form: CsrfForm<LoginForm>,
) -> Result<LoginResp, PageError> {
    let config = accounts.config;
    let next = safe_next(form.next.get());
    let email = form.email.trimmed();
    let keys = [
        LimitKey::AdminLogin(normalize_email(&email), accounts.addr()),
        LimitKey::AdminLoginIp(accounts.addr()),
    ];
    // Every attempt that reaches bcrypt counts against the address's
    // attempt budget, successful ones too.
    let attempt = [LimitKey::AdminAttemptIp(accounts.addr())];
    if let Some(wait) = accounts
        .limiter
        .blocked(&keys)
        .or_else(|| accounts.attempts.0.blocked(&attempt))
    {
        return Ok(too_many(
            csrf.value(),
            config,
            &next,
            &email,
            wait.as_secs(),
        ));
    }
    accounts.attempts.0.record_failure(&attempt);
    let password = form.password.as_str();
    let lookup = email.clone();
    let admin = if valid_email(&email) && password.len() <= 72 {
        accounts
            .db
            .run(move |conn| Admin::find_by_email(conn, &lookup).map_err(Error::from))
            .await?
    } else {
        None
    };
    let Some(admin) = check_password(admin, password.to_string(), config.bcrypt_cost).await else {
        accounts.limiter.record_failure(&keys);
        let page = login_page(
            csrf.value(),
            config,
            &next,
            &email,
            Some("The email or password is incorrect."),
            Value::Null,
        );
        return Ok(Resp::Status((Status::Unauthorized, page)).into());
    };
    accounts.limiter.reset(&keys[..1]);
    start_session(&accounts, admin.id).await?;
    Ok(Resp::Redirect(Redirect::to(next)).into())
}

#[post("/admin/logout", data = "<_form>")]
pub async fn logout(
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    if let Some(token) = cookies.get(COOKIE).map(|c| c.value().to_string()) {
        db.run(move |conn| AdminSession::delete_by_token(conn, &token).map_err(Error::from))
            .await?;
    }
    clear_session_cookie(cookies);
    Ok(Resp::Flash(Flash::success(
        Redirect::to("/admin/login"),
        "You are signed out.",
    )))
}

fn signup_closed() -> PageError {
    PageError::new(
        Status::NotFound,
        "Sign-up is closed",
        "This kitauth server does not accept new accounts. Ask its operator for an invitation.",
    )
}

fn signup_page(csrf: &str, form: Value, error: Option<&str>) -> Template {
    Template::render(
        "admin/signup",
        json!({ "csrf_token": csrf, "form": form, "error": error }),
    )
}

#[get("/admin/signup")]
pub fn signup_get(csrf: CsrfToken, config: &State<AppConfig>) -> PageResult {
    if !config.admin_signup {
        return Err(signup_closed());
    }
    Ok(Resp::Page(signup_page(csrf.value(), json!({}), None)))
}

/// Sign-up is open, and the caller's address has attempts left: a guard,
/// so both refusals come before the form is read.
pub struct SignupAllowed;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for SignupAllowed {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let accounts = match req.guard::<Accounts<'r>>().await {
            Outcome::Success(a) => a,
            Outcome::Forward(s) => return Outcome::Forward(s),
            Outcome::Error(e) => return Outcome::Error(e),
        };
        if !accounts.config.admin_signup {
            return Outcome::Error((refusal::refuse(req, Refusal::Page(signup_closed())), ()));
        }
        // Sign-ups and sign-ins share one attempt budget per address.
        let attempt = [LimitKey::AdminAttemptIp(accounts.addr())];
        let Some(wait) = accounts.attempts.0.blocked(&attempt) else {
            return Outcome::Success(SignupAllowed);
        };
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let msg = format!(
            "Too many attempts from your network. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        );
        let csrf = CsrfToken(crate::auth::csrf::token_for(
            req.cookies(),
            accounts.config.secure_cookies,
        ));
        let page = signup_page(csrf.value(), json!({}), Some(&msg));
        let retry = Header::new("Retry-After", wait.as_secs().max(1).to_string());
        Outcome::Error((refusal::refuse(req, Refusal::Throttled(page, retry)), ()))
    }
}

#[post("/admin/signup", data = "<form>")]
pub async fn signup_post(
    accounts: Accounts<'_>,
    csrf: CsrfToken,
    _allowed: SignupAllowed,
    form: CsrfForm<SignupForm>,
) -> PageResult {
    let email = form.email.trimmed();
    let name = form.tenant_name.trimmed();
    let slug = form.tenant_slug.trimmed().to_lowercase();
    let shown = json!({"email": email, "tenant_name": name, "tenant_slug": slug});
    let refuse = |msg: &str| {
        Ok(Resp::Status((
            Status::BadRequest,
            signup_page(csrf.value(), shown.clone(), Some(msg)),
        )))
    };
    if let Err(msg) = check_signup(&email, form.password.as_str(), &name, &slug) {
        return refuse(&msg);
    }
    // Each sign-up costs a bcrypt hash and may make a tenant: it counts
    // against the address's attempt budget (checked by `SignupAllowed`).
    let attempt = [LimitKey::AdminAttemptIp(accounts.addr())];
    accounts.attempts.0.record_failure(&attempt);
    let hash = hash_password(accounts.config, form.password.as_str()).await?;
    let new = NewWorkspace {
        email,
        hash,
        name,
        slug,
        ip: accounts.ip.clone(),
    };
    let (admin, tenant) = match create_workspace(accounts.db, new).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(msg)) => return refuse(msg),
        Err(Error::Conflict(_)) => return refuse("That email or workspace exists already."),
        Err(e) => return Err(e.into()),
    };
    start_session(&accounts, admin.id).await?;
    Ok(Resp::Flash(Flash::success(
        Redirect::to(format!("/admin/t/{}", tenant.slug)),
        format!(
            "Welcome! Your workspace {} is ready. Create your first app.",
            tenant.name
        ),
    )))
}

/// The sign-up form's own checks, with the message for the form.
fn check_signup(email: &str, password: &str, name: &str, slug: &str) -> Result<(), String> {
    if !valid_email(email) {
        return Err("Enter a valid email address.".into());
    }
    if let Err(e) = validate_password(password) {
        return Err(format!("Choose another password: {e}."));
    }
    if name.is_empty() || name.chars().count() > 200 {
        return Err("Give your workspace a name (1 to 200 characters).".into());
    }
    if !valid_slug(slug) {
        return Err("The workspace URL name must have 2 to 40 characters: lowercase letters, digits and dashes.".into());
    }
    Ok(())
}

/// bcrypt off the async workers.
async fn hash_password(config: &AppConfig, password: &str) -> Result<String, PageError> {
    let cost = config.bcrypt_cost;
    let password = password.to_string();
    rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| PageError::from(Error::Internal("password hashing failed".into())))
}

/// A sign-up's account and workspace, checked.
struct NewWorkspace {
    email: String,
    hash: String,
    name: String,
    slug: String,
    ip: Option<String>,
}

/// Creates the admin, the tenant and the owner membership in one
/// transaction, audited; `Ok(Err(message))` when the email or the slug is
/// taken.
async fn create_workspace(
    db: &Db,
    new: NewWorkspace,
) -> Result<Result<(Admin, Tenant), &'static str>, Error> {
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<_, Error> {
            if Admin::find_by_email(conn, &new.email)?.is_some() {
                return Ok(Err(
                    "An account with this email exists already. Sign in instead.",
                ));
            }
            if Tenant::find_by_slug(conn, &new.slug)?.is_some() {
                return Ok(Err("That workspace URL name is taken. Choose another."));
            }
            let admin = Admin::create(conn, &new.email, &new.hash)?;
            let tenant = Tenant::create(
                conn,
                &NewTenant {
                    slug: &new.slug,
                    name: &new.name,
                },
            )?;
            Membership::add(conn, tenant.id, admin.id, Role::Owner)?;
            NewAuditEvent::new(
                tenant.id,
                format!("admin:{}", admin.email),
                "tenant.created",
            )
            .object("tenant", tenant.id)
            .ip(new.ip)
            .insert(conn)?;
            Ok(Ok((admin, tenant)))
        })
    })
    .await
}

#[get("/admin")]
pub async fn picker(
    user: AdminUser,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    let admin_id = user.admin.id;
    let tenants = db
        .run(move |conn| Membership::tenants_of(conn, admin_id).map_err(Error::from))
        .await?;
    if tenants.len() == 1 && flash.is_none() {
        return Ok(Resp::Redirect(Redirect::to(format!(
            "/admin/t/{}",
            tenants[0].0.slug
        ))));
    }
    let list: Vec<Value> = tenants
        .iter()
        .map(|(t, role)| json!({"slug": t.slug, "name": t.name, "role": role}))
        .collect();
    Ok(Resp::Page(Template::render(
        "admin/picker",
        json!({
            "admin_email": user.admin.email,
            "tenants": list,
            "csrf_token": csrf.value(),
            "flash": flash_json(flash),
        }),
    )))
}

fn invite_invalid() -> PageError {
    PageError::new(
        Status::NotFound,
        "Invitation not valid",
        "This invitation link is not valid: it was used already, withdrawn, or it expired. Ask for a new one.",
    )
}

async fn load_invite(db: &Db, token: &str) -> Result<(AdminInvite, Tenant), PageError> {
    let token = token.to_string();
    db.run(move |conn| -> Result<_, Error> {
        let Some(invite) = AdminInvite::find_usable(conn, &token)? else {
            return Ok(None);
        };
        let tenant = Tenant::find(conn, invite.tenant_id)?;
        Ok(Some((invite, tenant)))
    })
    .await?
    .ok_or_else(invite_invalid)
}

fn invite_page(
    csrf: &str,
    token: &str,
    invite: &AdminInvite,
    tenant: &Tenant,
    signed_in_as: Option<&str>,
    error: Option<&str>,
) -> Template {
    Template::render(
        "admin/invite",
        json!({
            "csrf_token": csrf,
            "token": token,
            "email": invite.email,
            "role": invite.role,
            "tenant_name": tenant.name,
            "signed_in_as": signed_in_as,
            "email_matches": signed_in_as.map(|e| e == invite.email),
            "error": error,
        }),
    )
}

#[get("/admin/invite/<token>")]
pub async fn invite_get(
    token: &str,
    user: Option<AdminUser>,
    db: &State<Db>,
    csrf: CsrfToken,
) -> PageResult {
    let (invite, tenant) = load_invite(db, token).await?;
    Ok(Resp::Page(invite_page(
        csrf.value(),
        token,
        &invite,
        &tenant,
        user.as_ref().map(|u| u.admin.email.as_str()),
        None,
    )))
}

#[post("/admin/invite/<token>", data = "<form>")]
pub async fn invite_post(
    token: &str,
    user: Option<AdminUser>,
    accounts: Accounts<'_>,
    csrf: CsrfToken,
    form: CsrfForm<InviteForm>,
) -> Result<LoginResp, PageError> {
    let (invite, tenant) = load_invite(accounts.db, token).await?;
    let signed_in_as = user.as_ref().map(|u| u.admin.email.as_str());
    let refuse = |status: Status, msg: &str| -> Result<LoginResp, PageError> {
        let page = invite_page(
            csrf.value(),
            token,
            &invite,
            &tenant,
            signed_in_as,
            Some(msg),
        );
        Ok(Resp::Status((status, page)).into())
    };
    // Who accepts: the signed-in admin, or the account the form names.
    let acceptor = match &user {
        Some(u) if u.admin.email == invite.email => Acceptor::Existing(u.admin.id),
        Some(_) => {
            return refuse(
                Status::Forbidden,
                "This invitation is for another email address. Sign out first, then open the link again.",
            )
        }
        None => match invite_account(&accounts, &invite.email, form.password.as_str()).await? {
            Ok(acceptor) => acceptor,
            Err(InviteRefusal::TooMany(wait)) => {
                let (config, email) = (accounts.config, &invite.email);
                return Ok(too_many(csrf.value(), config, "/admin", email, wait));
            }
            Err(InviteRefusal::Page(status, msg)) => return refuse(status, &msg),
        },
    };
    let new_session = user.is_none();
    let Some((admin_id, outcome)) = accept_invite(&accounts, &invite, acceptor).await? else {
        return Err(invite_invalid());
    };
    if new_session {
        start_session(&accounts, admin_id).await?;
    }
    let message = match outcome {
        Acceptance::Joined => format!("You joined {} as {}.", tenant.name, invite.role),
        Acceptance::AlreadyMember => format!("You are a member of {} already.", tenant.name),
    };
    Ok(Resp::Flash(Flash::success(
        Redirect::to(format!("/admin/t/{}", tenant.slug)),
        message,
    ))
    .into())
}

/// The account that accepts an invitation.
enum Acceptor {
    /// An admin that exists (signed in, or whose password was entered).
    Existing(i64),
    /// A new admin for the invited email, with this password hash.
    New(String),
}

/// Why an invitation was not accepted without a session.
enum InviteRefusal {
    /// Too many failed sign-ins: wait this many seconds.
    TooMany(u64),
    Page(Status, String),
}

/// The account of the invited email for a visitor without a session: the
/// existing one if the password is its own (throttled as a sign-in), or a
/// new one with this password.
async fn invite_account(
    accounts: &Accounts<'_>,
    email: &str,
    password: &str,
) -> Result<Result<Acceptor, InviteRefusal>, PageError> {
    let keys = [
        LimitKey::AdminLogin(email.to_string(), accounts.addr()),
        LimitKey::AdminLoginIp(accounts.addr()),
    ];
    if let Some(wait) = accounts.limiter.blocked(&keys) {
        return Ok(Err(InviteRefusal::TooMany(wait.as_secs())));
    }
    let lookup = email.to_string();
    let existing = accounts
        .db
        .run(move |conn| Admin::find_by_email(conn, &lookup).map_err(Error::from))
        .await?;
    let cost = accounts.config.bcrypt_cost;
    match existing {
        Some(admin) => {
            let admin_id = admin.id;
            if check_password(Some(admin), password.to_string(), cost)
                .await
                .is_none()
            {
                accounts.limiter.record_failure(&keys);
                return Ok(Err(InviteRefusal::Page(
                    Status::Unauthorized,
                    "An account with this email exists; its password is not the one entered."
                        .into(),
                )));
            }
            Ok(Ok(Acceptor::Existing(admin_id)))
        }
        None => {
            if let Err(e) = validate_password(password) {
                return Ok(Err(InviteRefusal::Page(
                    Status::BadRequest,
                    format!("Choose a password for your new account: {e}."),
                )));
            }
            let hash = hash_password(accounts.config, password).await?;
            Ok(Ok(Acceptor::New(hash)))
        }
    }
}

/// Accepts the invitation for the acceptor (creating the new admin first),
/// audited, in one transaction; `None` when it was used or withdrawn
/// meanwhile.
async fn accept_invite(
    accounts: &Accounts<'_>,
    invite: &AdminInvite,
    acceptor: Acceptor,
) -> Result<Option<(i64, Acceptance)>, Error> {
    let invite_id = invite.id;
    let email = invite.email.clone();
    let audit_ip = accounts.ip.clone();
    accounts
        .db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let admin_id = match acceptor {
                    Acceptor::New(hash) => Admin::create(conn, &email, &hash)?.id,
                    Acceptor::Existing(id) => id,
                };
                let Some((invite, outcome)) = AdminInvite::accept(conn, invite_id, admin_id)?
                else {
                    return Ok(None);
                };
                NewAuditEvent::new(invite.tenant_id, format!("admin:{email}"), "member.joined")
                    .object("admin", admin_id)
                    .details(json!({"role": invite.role}))
                    .ip(audit_ip)
                    .insert(conn)?;
                Ok(Some((admin_id, outcome)))
            })
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_only_leads_inside_the_dashboard() {
        for ok in ["/admin", "/admin/ok", "/admin/t/acme/apps?page=2"] {
            assert_eq!(safe_next(Some(ok)), ok, "{ok}");
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example/admin",
            "/admin//evil.example",
            "/admin/\\evil",
            "/admin/login",
            "/admin/login?next=/admin",
            "/admin/a b",
            "evil",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/admin", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/admin");
        assert_eq!(
            safe_next(Some(&format!("/admin/{}", "a".repeat(500)))),
            "/admin"
        );
    }
}
