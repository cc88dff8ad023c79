//! The tenant admin dashboard under `/admin`: server-rendered pages, one
//! file per resource. Every page under `/admin/t/{slug}` goes through the
//! [`TenantCtx`] guard (signed-in admin + membership of that tenant); every
//! POST takes its typed form through the CSRF-checked
//! [`CsrfForm`](crate::auth::CsrfForm) data guard and checks the role before
//! it changes anything. Objects named in the path are loaded by guards
//! ([`path_object`]), so a path naming nothing answers 404 before its form
//! is read.

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod creators;
pub mod home;
pub mod installs;
pub mod members;
pub mod reveal;
pub mod secrets;
pub mod session;
pub mod settings;

use chrono::{DateTime, Utc};
use diesel::{PgConnection, QueryResult};
use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite, Status};
use rocket::request::{FlashMessage, FromParam, FromRequest, Outcome, Request};
use rocket::response::{Flash, Redirect};
use rocket::{get, post, Responder, State};
use rocket_dyn_templates::Template;
use serde_json::{json, Value};

use crate::auth::refusal::{self, Refusal};
use crate::auth::{client_ip, CsrfToken};
use crate::config::AppConfig;
use crate::db::models::admin::SessionPolicy;
use crate::db::models::{Admin, AdminSession, Membership, NewAuditEvent, Role, Tenant};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::Confirm;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        session::login_get,
        session::login_post,
        session::logout,
        session::signup_get,
        session::signup_post,
        session::picker,
        session::invite_get,
        session::invite_post,
        home::home,
        apps::list,
        apps::new_get,
        apps::new_post,
        apps::show,
        apps::reveal,
        apps::edit_get,
        apps::edit_post,
        apps::delete_get,
        apps::delete_post,
        secrets::rotate,
        secrets::revoke,
        installs::list_tenant,
        installs::list_app,
        installs::show,
        installs::revoke_one,
        installs::revoke_app,
        installs::revoke_creator,
        creators::list,
        creators::create,
        creators::show,
        creators::disable,
        creators::enable,
        creators::password,
        members::list,
        members::invite,
        members::invite_link,
        members::revoke_invite,
        members::role,
        members::remove,
        audit::list,
        api_keys::list,
        api_keys::create,
        api_keys::revoke,
        settings::get,
        settings::post,
        settings::signin_post,
        fallback_get,
        fallback_post,
    ]
}

/// The admin session cookie: an opaque token, HttpOnly, SameSite=Lax,
/// scoped to `/admin`, `Secure` when the configuration says so.
pub const COOKIE: &str = "kitauth_admin";
/// Rows per page on every paginated list.
pub const PER_PAGE: i64 = 25;

pub fn session_policy(config: &AppConfig) -> SessionPolicy {
    SessionPolicy {
        idle: chrono::Duration::hours(config.admin_session_idle_hours.max(1)),
        lifetime: chrono::Duration::days(config.admin_session_days.max(1)),
    }
}

pub fn set_session_cookie(cookies: &CookieJar<'_>, token: String, config: &AppConfig) {
    cookies.add(
        Cookie::build((COOKIE, token))
            .path("/admin")
            .http_only(true)
            .secure(config.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(rocket::time::Duration::days(
                config.admin_session_days.max(1),
            ))
            .build(),
    );
}

pub fn clear_session_cookie(cookies: &CookieJar<'_>) {
    cookies.remove(Cookie::build(COOKIE).path("/admin").build());
}

/// A signed-in admin. Without a live session the guard forwards, and the
/// fallback routes send the browser to the sign-in page.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub admin: Admin,
    pub session_id: i64,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for AdminUser {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let cached: &Result<Option<AdminUser>, ()> = req
            .local_cache_async(async {
                let token = match req.cookies().get(COOKIE) {
                    Some(c) => c.value().to_string(),
                    None => return Ok(None),
                };
                let (Some(db), Some(config)) = (
                    req.rocket().state::<Db>(),
                    req.rocket().state::<AppConfig>(),
                ) else {
                    return Err(());
                };
                let policy = session_policy(config);
                db.run(move |conn| {
                    AdminSession::authenticate(conn, &token, policy).map_err(Error::from)
                })
                .await
                .map(|found| {
                    found.map(|(session, admin)| AdminUser {
                        admin,
                        session_id: session.id,
                    })
                })
                .map_err(|_| ())
            })
            .await;
        match cached {
            Ok(Some(user)) => Outcome::Success(user.clone()),
            Ok(None) => Outcome::Forward(Status::Unauthorized),
            Err(()) => Outcome::Error((Status::ServiceUnavailable, ())),
        }
    }
}

/// A signed-in admin acting in the tenant named by `/admin/t/{slug}`. The
/// tenant is read fresh from the database; an admin who is not a member
/// gets 404, exactly as for a tenant that does not exist.
#[derive(Debug, Clone)]
pub struct TenantCtx {
    pub admin: Admin,
    pub tenant: Tenant,
    pub role: Role,
    pub ip: Option<String>,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for TenantCtx {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        // Cached: the guards of objects in the path build on it.
        let cached: &Result<TenantCtx, (bool, Status)> = req
            .local_cache_async(async {
                match tenant_ctx(req).await {
                    Outcome::Success(ctx) => Ok(ctx),
                    Outcome::Forward(s) => Err((true, s)),
                    Outcome::Error((s, ())) => Err((false, s)),
                }
            })
            .await;
        match cached {
            Ok(ctx) => Outcome::Success(ctx.clone()),
            Err((true, s)) => Outcome::Forward(*s),
            Err((false, s)) => Outcome::Error((*s, ())),
        }
    }
}

async fn tenant_ctx(req: &Request<'_>) -> Outcome<TenantCtx, ()> {
    let user = match req.guard::<AdminUser>().await {
        Outcome::Success(u) => u,
        Outcome::Forward(s) => return Outcome::Forward(s),
        Outcome::Error(e) => return Outcome::Error(e),
    };
    let Some(slug) = req.routed_segment(2).map(str::to_string) else {
        return Outcome::Error((Status::NotFound, ()));
    };
    let Some(db) = req.rocket().state::<Db>() else {
        return Outcome::Error((Status::InternalServerError, ()));
    };
    let admin_id = user.admin.id;
    let found = db
        .run(move |conn| -> Result<_, Error> {
            if !crate::db::models::tenant::valid_slug(&slug) {
                return Ok(None);
            }
            let Some(tenant) = Tenant::find_by_slug(conn, &slug)? else {
                return Ok(None);
            };
            Ok(Membership::role_of(conn, tenant.id, admin_id)?.map(|role| (tenant, role)))
        })
        .await;
    match found {
        Ok(Some((tenant, role))) => Outcome::Success(TenantCtx {
            admin: user.admin,
            tenant,
            role,
            ip: client_ip(req),
        }),
        Ok(None) => Outcome::Error((Status::NotFound, ())),
        Err(_) => Outcome::Error((Status::ServiceUnavailable, ())),
    }
}

/// The object of the admin's tenant that the path names by its id (the
/// segment after the resource, as in `/admin/t/{slug}/apps/{id}/...`), for
/// the guards of such paths. An id that is not a number, or names nothing
/// in this tenant, answers the 404 page.
pub async fn path_object<T: Send + 'static>(
    req: &Request<'_>,
    find: fn(&mut PgConnection, i64, i64) -> QueryResult<Option<T>>,
) -> Outcome<T, ()> {
    let ctx = match req.guard::<TenantCtx>().await {
        Outcome::Success(ctx) => ctx,
        Outcome::Forward(s) => return Outcome::Forward(s),
        Outcome::Error(e) => return Outcome::Error(e),
    };
    let refuse = |page: PageError| Outcome::Error((refusal::refuse(req, Refusal::Page(page)), ()));
    let Some(id) = req.routed_segment(4).and_then(|s| parse_id(s).ok()) else {
        return refuse(PageError::not_found());
    };
    let Some(db) = req.rocket().state::<Db>() else {
        return Outcome::Error((Status::InternalServerError, ()));
    };
    let tenant_id = ctx.tenant.id;
    match db
        .run(move |conn| find(conn, tenant_id, id).map_err(Error::from))
        .await
    {
        Ok(Some(found)) => Outcome::Success(found),
        Ok(None) => refuse(PageError::not_found()),
        Err(e) => refuse(e.into()),
    }
}

/// A positive numeric id in a path. Anything else matches no route, and
/// the dashboard's fallback answers the 404 page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl<'a> FromParam<'a> for Id {
    type Error = ();

    fn from_param(param: &'a str) -> Result<Self, ()> {
        parse_id(param).map(Id).map_err(|_| ())
    }
}

/// The form of a destructive action: its confirmation checkbox.
#[derive(Debug, FromForm)]
pub struct ConfirmForm {
    pub confirm: Confirm,
}

impl TenantCtx {
    /// Refuses (403, nothing changed) unless the admin's role is at least `min`.
    pub fn require(&self, min: Role) -> Result<(), PageError> {
        if self.role >= min {
            Ok(())
        } else {
            Err(PageError::forbidden(format!(
                "Your role in {} is {}; this needs the {} role or higher.",
                self.tenant.name,
                self.role.as_str(),
                min.as_str()
            )))
        }
    }

    /// The base path of this tenant's dashboard.
    pub fn base(&self) -> String {
        format!("/admin/t/{}", self.tenant.slug)
    }

    pub fn actor(&self) -> String {
        format!("admin:{}", self.admin.email)
    }

    /// An audit record of a dashboard action by this admin.
    pub fn audit(&self, action: &str) -> NewAuditEvent {
        NewAuditEvent::new(self.tenant.id, self.actor(), action).ip(self.ip.clone())
    }

    /// Renders a dashboard page with the layout's common values merged into `extra`.
    pub fn render(
        &self,
        template: &'static str,
        nav: &str,
        csrf: &CsrfToken,
        flash: Option<FlashMessage<'_>>,
        extra: Value,
    ) -> Template {
        let mut ctx = json!({
            "admin_email": self.admin.email,
            "tenant": {
                "slug": self.tenant.slug,
                "name": self.tenant.name,
                "creator_signin": self.tenant.signin().mode(),
                "login_url": self.tenant.login_url,
            },
            "base": self.base(),
            "role": self.role.as_str(),
            "can_edit": self.role >= Role::Admin,
            "is_owner": self.role == Role::Owner,
            "csrf_token": csrf.value(),
            "flash": flash_json(flash),
            "nav": nav,
        });
        merge(&mut ctx, extra);
        Template::render(template, ctx)
    }

    pub fn flash_to(&self, path: &str, message: impl Into<String>) -> Resp {
        Resp::Flash(Flash::success(
            Redirect::to(format!("{}{}", self.base(), path)),
            message.into(),
        ))
    }

    pub fn flash_error_to(&self, path: &str, message: impl Into<String>) -> Resp {
        Resp::Flash(Flash::error(
            Redirect::to(format!("{}{}", self.base(), path)),
            message.into(),
        ))
    }
}

pub fn flash_json(flash: Option<FlashMessage<'_>>) -> Value {
    match flash {
        Some(f) => json!({"kind": f.kind(), "message": f.message()}),
        None => Value::Null,
    }
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            b.insert(k, v);
        }
    }
}

/// What a dashboard handler answers.
#[derive(Responder)]
pub enum Resp {
    Page(Template),
    Flash(Flash<Redirect>),
    Redirect(Redirect),
    Status((Status, Template)),
}

pub type PageResult = Result<Resp, PageError>;

/// A numeric id from a path or form; anything else is a clear 404.
pub fn parse_id(raw: &str) -> Result<i64, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(PageError::not_found)
}

/// The page number of a list (1-based) from the query string.
pub fn page_number(page: Option<i64>) -> i64 {
    page.unwrap_or(1).clamp(1, 100_000)
}

/// Values for the pager under a list: `query` is the rest of the query
/// string (already encoded), kept on the previous/next links.
pub fn pager(path: &str, query: &str, page: i64, total: i64) -> Value {
    let pages = ((total + PER_PAGE - 1) / PER_PAGE).max(1);
    let link = |p: i64| {
        if query.is_empty() {
            format!("{path}?page={p}")
        } else {
            format!("{path}?{query}&page={p}")
        }
    };
    json!({
        "page": page,
        "pages": pages,
        "total": total,
        "prev": (page > 1).then(|| link(page - 1)),
        "next": (page < pages).then(|| link(page + 1)),
    })
}

pub fn encode_query(pairs: &[(&str, Option<&str>)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            s.append_pair(k, v);
        }
    }
    s.finish()
}

/// A search term from the query string: trimmed, bounded, empty as none.
pub fn search_term(q: Option<&str>) -> Option<String> {
    q.map(str::trim)
        .filter(|q| !q.is_empty())
        .map(|q| q.chars().take(200).collect())
}

/// Timestamps as the pages show them.
pub fn when(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn when_opt(t: &Option<DateTime<Utc>>) -> Option<String> {
    t.as_ref().map(when)
}

/// Any GET under `/admin` no route took: the sign-in page for visitors
/// without a session, a 404 page for signed-in admins.
#[get("/admin/<_..>", rank = 100)]
pub fn fallback_get(user: Option<AdminUser>, uri: &rocket::http::uri::Origin<'_>) -> PageResult {
    match user {
        Some(_) => Err(PageError::not_found()),
        None => {
            let next = uri.path().as_str().to_string();
            let target = if next == "/admin" || next == "/admin/" {
                "/admin/login".to_string()
            } else {
                format!("/admin/login?{}", encode_query(&[("next", Some(&next))]))
            };
            Ok(Resp::Redirect(Redirect::to(target)))
        }
    }
}

/// Any POST under `/admin` no route took: without a session, back to the
/// sign-in page; otherwise 404. Nothing is changed either way.
#[post("/admin/<_..>", rank = 100)]
pub fn fallback_post(user: Option<AdminUser>) -> PageResult {
    match user {
        Some(_) => Err(PageError::not_found()),
        None => Ok(Resp::Flash(Flash::error(
            Redirect::to("/admin/login"),
            "Your session has ended. Sign in again.",
        ))),
    }
}

/// Used by handlers that only need the managed pool.
pub type DbState<'a> = &'a State<Db>;
