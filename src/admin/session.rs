//! Admin accounts: sign-in (throttled), sign-out, self-service sign-up,
//! the tenant picker, and accepting a member invitation.

use diesel::Connection;
use rocket::data::Data;
use rocket::http::{CookieJar, Header, Status};
use rocket::request::FlashMessage;
use rocket::response::{Flash, Redirect};
use rocket::{get, post, Responder, State};
use rocket_dyn_templates::Template;
use serde_json::{json, Value};

use super::{
    clear_session_cookie, flash_json, read_form, session_policy, set_session_cookie, AdminUser,
    PageResult, Resp, COOKIE,
};
use crate::auth::{ClientIp, CsrfToken};
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
use crate::ratelimit::{AttemptLimiter, LimitKey, RateLimiter};

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
async fn start_session(
    db: &Db,
    cookies: &CookieJar<'_>,
    config: &AppConfig,
    admin_id: i64,
    ip: Option<String>,
) -> Result<(), PageError> {
    let old = cookies.get(COOKIE).map(|c| c.value().to_string());
    let policy = session_policy(config);
    let token = db
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

#[allow(clippy::too_many_arguments)]
#[post("/admin/login", data = "<data>")]
pub async fn login_post(
    db: &State<Db>,
    config: &State<AppConfig>,
    limiter: &State<RateLimiter>,
    attempts: &State<AttemptLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> Result<LoginResp, PageError> {
    let params = read_form(data, cookies).await?;
    let next = safe_next(params.get("next"));
    let email = params.get("email").unwrap_or("").trim().to_string();
    let password = params.get("password").unwrap_or("").to_string();
    let addr = ip.0.clone().unwrap_or_default();
    let keys = [
        LimitKey::AdminLogin(normalize_email(&email), addr.clone()),
        LimitKey::AdminLoginIp(addr.clone()),
    ];
    // Every attempt that reaches bcrypt counts against the address's
    // attempt budget, successful ones too.
    let attempt = [LimitKey::AdminAttemptIp(addr)];
    if let Some(wait) = limiter
        .blocked(&keys)
        .or_else(|| attempts.0.blocked(&attempt))
    {
        return Ok(too_many(
            csrf.value(),
            config,
            &next,
            &email,
            wait.as_secs(),
        ));
    }
    attempts.0.record_failure(&attempt);
    let lookup = email.clone();
    let admin = if valid_email(&email) && password.len() <= 72 {
        db.run(move |conn| Admin::find_by_email(conn, &lookup).map_err(Error::from))
            .await?
    } else {
        None
    };
    let Some(admin) = check_password(admin, password, config.bcrypt_cost).await else {
        limiter.record_failure(&keys);
        return Ok(Resp::Status((
            Status::Unauthorized,
            login_page(
                csrf.value(),
                config,
                &next,
                &email,
                Some("The email or password is incorrect."),
                Value::Null,
            ),
        ))
        .into());
    };
    limiter.reset(&keys[..1]);
    start_session(db, cookies, config, admin.id, ip.0).await?;
    Ok(Resp::Redirect(Redirect::to(next)).into())
}

#[post("/admin/logout", data = "<data>")]
pub async fn logout(db: &State<Db>, cookies: &CookieJar<'_>, data: Data<'_>) -> PageResult {
    read_form(data, cookies).await?;
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

#[post("/admin/signup", data = "<data>")]
pub async fn signup_post(
    db: &State<Db>,
    config: &State<AppConfig>,
    attempts: &State<AttemptLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> Result<LoginResp, PageError> {
    if !config.admin_signup {
        return Err(signup_closed());
    }
    // Sign-ups and sign-ins share one attempt budget per address.
    let attempt = [LimitKey::AdminAttemptIp(ip.0.clone().unwrap_or_default())];
    if let Some(wait) = attempts.0.blocked(&attempt) {
        let minutes = wait.as_secs().div_ceil(60).max(1);
        let msg = format!(
            "Too many attempts from your network. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        );
        return Ok(LoginResp::TooMany(TooManyAttempts(
            signup_page(csrf.value(), json!({}), Some(&msg)),
            Header::new("Retry-After", wait.as_secs().max(1).to_string()),
        )));
    }
    signup_create(db, config, attempts, cookies, csrf, ip, data)
        .await
        .map(LoginResp::from)
}

#[allow(clippy::too_many_arguments)]
async fn signup_create(
    db: &State<Db>,
    config: &State<AppConfig>,
    attempts: &State<AttemptLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> PageResult {
    let params = read_form(data, cookies).await?;
    let email = params.get("email").unwrap_or("").trim().to_string();
    let password = params.get("password").unwrap_or("").to_string();
    let name = params.get("tenant_name").unwrap_or("").trim().to_string();
    let slug = params
        .get("tenant_slug")
        .unwrap_or("")
        .trim()
        .to_lowercase();
    let form = json!({"email": email, "tenant_name": name, "tenant_slug": slug});
    let refuse = |msg: &str| {
        Ok(Resp::Status((
            Status::BadRequest,
            signup_page(csrf.value(), form.clone(), Some(msg)),
        )))
    };
    if !valid_email(&email) {
        return refuse("Enter a valid email address.");
    }
    if let Err(e) = validate_password(&password) {
        return refuse(&format!("Choose another password: {e}."));
    }
    if name.is_empty() || name.chars().count() > 200 {
        return refuse("Give your workspace a name (1 to 200 characters).");
    }
    if !valid_slug(&slug) {
        return refuse("The workspace URL name must have 2 to 40 characters: lowercase letters, digits and dashes.");
    }
    // Each sign-up costs a bcrypt hash and may make a tenant: it counts
    // against the address's attempt budget (checked in `signup_post`).
    let attempt = [LimitKey::AdminAttemptIp(ip.0.clone().unwrap_or_default())];
    attempts.0.record_failure(&attempt);
    let cost = config.bcrypt_cost;
    let hash = rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| PageError::from(Error::Internal("password hashing failed".into())))?;
    let audit_ip = ip.0.clone();
    let created = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                if Admin::find_by_email(conn, &email)?.is_some() {
                    return Ok(Err(
                        "An account with this email exists already. Sign in instead.",
                    ));
                }
                if Tenant::find_by_slug(conn, &slug)?.is_some() {
                    return Ok(Err("That workspace URL name is taken. Choose another."));
                }
                let admin = Admin::create(conn, &email, &hash)?;
                let tenant = Tenant::create(
                    conn,
                    &NewTenant {
                        slug: &slug,
                        name: &name,
                    },
                )?;
                Membership::add(conn, tenant.id, admin.id, Role::Owner)?;
                NewAuditEvent::new(
                    tenant.id,
                    format!("admin:{}", admin.email),
                    "tenant.created",
                )
                .object("tenant", tenant.id)
                .ip(audit_ip)
                .insert(conn)?;
                Ok(Ok((admin, tenant)))
            })
        })
        .await;
    let (admin, tenant) = match created {
        Ok(Ok(pair)) => pair,
        Ok(Err(msg)) => return refuse(msg),
        Err(Error::Conflict(_)) => return refuse("That email or workspace exists already."),
        Err(e) => return Err(e.into()),
    };
    start_session(db, cookies, config, admin.id, ip.0).await?;
    Ok(Resp::Flash(Flash::success(
        Redirect::to(format!("/admin/t/{}", tenant.slug)),
        format!(
            "Welcome! Your workspace {} is ready. Create your first app.",
            tenant.name
        ),
    )))
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

#[allow(clippy::too_many_arguments)]
#[post("/admin/invite/<token>", data = "<data>")]
pub async fn invite_post(
    token: &str,
    user: Option<AdminUser>,
    db: &State<Db>,
    config: &State<AppConfig>,
    limiter: &State<RateLimiter>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    ip: ClientIp,
    data: Data<'_>,
) -> Result<LoginResp, PageError> {
    let params = read_form(data, cookies).await?;
    let (invite, tenant) = load_invite(db, token).await?;
    let refuse = |status: Status, msg: &str| -> Result<LoginResp, PageError> {
        Ok(Resp::Status((
            status,
            invite_page(
                csrf.value(),
                token,
                &invite,
                &tenant,
                user.as_ref().map(|u| u.admin.email.as_str()),
                Some(msg),
            ),
        ))
        .into())
    };
    // Who accepts: the signed-in admin, or the account the form names.
    let (admin_id, new_session) = match &user {
        Some(u) if u.admin.email == invite.email => (Some(u.admin.id), false),
        Some(_) => {
            return refuse(
                Status::Forbidden,
                "This invitation is for another email address. Sign out first, then open the link again.",
            )
        }
        None => (None, true),
    };
    let password = params.get("password").unwrap_or("").to_string();
    let (admin_id, new_hash) = match admin_id {
        Some(id) => (id, None),
        None => {
            let email = invite.email.clone();
            let keys = [
                LimitKey::AdminLogin(email.clone(), ip.0.clone().unwrap_or_default()),
                LimitKey::AdminLoginIp(ip.0.clone().unwrap_or_default()),
            ];
            if let Some(wait) = limiter.blocked(&keys) {
                return Ok(too_many(
                    csrf.value(),
                    config,
                    "/admin",
                    &email,
                    wait.as_secs(),
                ));
            }
            let existing = db
                .run(move |conn| Admin::find_by_email(conn, &email).map_err(Error::from))
                .await?;
            match existing {
                Some(admin) => {
                    let admin_id = admin.id;
                    if check_password(Some(admin), password, config.bcrypt_cost)
                        .await
                        .is_none()
                    {
                        limiter.record_failure(&keys);
                        return refuse(
                            Status::Unauthorized,
                            "An account with this email exists; its password is not the one entered.",
                        );
                    }
                    (admin_id, None)
                }
                None => {
                    if let Err(e) = validate_password(&password) {
                        return refuse(
                            Status::BadRequest,
                            &format!("Choose a password for your new account: {e}."),
                        );
                    }
                    let cost = config.bcrypt_cost;
                    let hash = rocket::tokio::task::spawn_blocking(move || {
                        crypto::hash_password(&password, cost)
                    })
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| {
                        PageError::from(Error::Internal("password hashing failed".into()))
                    })?;
                    (0, Some(hash))
                }
            }
        }
    };
    let invite_id = invite.id;
    let email = invite.email.clone();
    let audit_ip = ip.0.clone();
    let accepted = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let admin_id = match new_hash {
                    Some(hash) => Admin::create(conn, &email, &hash)?.id,
                    None => admin_id,
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
        .await?;
    let Some((admin_id, outcome)) = accepted else {
        return Err(invite_invalid());
    };
    if new_session {
        start_session(db, cookies, config, admin_id, ip.0).await?;
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
