//! API keys: owners and admins create and revoke; viewers see the list.
//! A new key is shown once after post/redirect/get: the POST puts it in an
//! encrypted (private), HttpOnly, short-lived cookie scoped to this page,
//! and the GET that follows shows it and removes the cookie, so a reload
//! neither shows it again nor creates a second key.

use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::request::FlashMessage;
use rocket::{get, post, State};
use serde_json::json;

use super::{when, when_opt, ConfirmForm, Id, PageResult, Resp, TenantCtx};
use crate::auth::{CsrfForm, CsrfToken};
use crate::config::AppConfig;
use crate::db::models::{ApiKey, ApiScope, NewApiKey, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::{Checkbox, Text};

/// The new-key form: a name, a box per scope, an optional expiry in days.
#[derive(Debug, FromForm)]
pub struct NewKeyForm {
    name: Text<200>,
    scope_read: Checkbox,
    scope_write: Checkbox,
    scope_login: Checkbox,
    expires_in_days: Text,
}

impl NewKeyForm {
    fn scopes(&self) -> Vec<ApiScope> {
        ApiScope::ALL
            .into_iter()
            .filter(|s| match s.as_str() {
                "read" => self.scope_read.0,
                "write" => self.scope_write.0,
                "login" => self.scope_login.0,
                _ => false,
            })
            .collect()
    }
}

const REVEAL: &str = "kitauth_key_reveal";

#[get("/admin/t/<_>/api-keys")]
pub async fn list(
    ctx: TenantCtx,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    let tenant_id = ctx.tenant.id;
    let keys = db
        .run(move |conn| ApiKey::list(conn, tenant_id).map_err(Error::from))
        .await?;
    let path = format!("{}/api-keys", ctx.base());
    let new_key = cookies.get_private(REVEAL).map(|c| c.value().to_string());
    if new_key.is_some() {
        cookies.remove_private(Cookie::build(REVEAL).path(path).build());
    }
    let now = chrono::Utc::now();
    let rows: Vec<_> = keys
        .iter()
        .map(|k| {
            json!({
                "id": k.id,
                "name": k.name,
                "hint": k.hint,
                "scopes": k.scopes.join(", "),
                "created_at": when(&k.created_at),
                "last_used_at": when_opt(&k.last_used_at),
                "expires_at": when_opt(&k.expires_at),
                "created_by": k.created_by,
                "status": k.status(now),
            })
        })
        .collect();
    Ok(Resp::Page(ctx.render(
        "admin/api_keys",
        "api_keys",
        &csrf,
        flash,
        json!({"keys": rows, "new_key": new_key}),
    )))
}

#[post("/admin/t/<_>/api-keys", data = "<form>")]
pub async fn create(
    ctx: TenantCtx,
    db: &State<Db>,
    config: &State<AppConfig>,
    cookies: &CookieJar<'_>,
    form: CsrfForm<NewKeyForm>,
) -> PageResult {
    ctx.require(Role::Admin)?;
    let scopes = form.scopes();
    let expires_in_days =
        match form.expires_in_days.get().map(str::trim) {
            None | Some("") => None,
            Some(d) => Some(d.parse::<i64>().map_err(|_| {
                PageError::bad_request("The expiry must be a whole number of days.")
            })?),
        };
    let new = NewApiKey {
        name: form.name.get().unwrap_or("").to_string(),
        scopes,
        expires_in_days,
        created_by: ctx.actor(),
    };
    if let Err(msg) = new.validate() {
        return Ok(ctx.flash_error_to("/api-keys", msg));
    }
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("api_key.created");
    let (key, value) = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let (key, value) = ApiKey::create(conn, tenant_id, &new)?;
                audit
                    .object("api_key", key.id)
                    .details(json!({"name": key.name, "scopes": key.scopes}))
                    .insert(conn)?;
                Ok((key, value))
            })
        })
        .await?;
    cookies.add_private(
        Cookie::build((REVEAL, value))
            .path(format!("{}/api-keys", ctx.base()))
            .http_only(true)
            .secure(config.secure_cookies)
            .same_site(SameSite::Strict)
            .max_age(rocket::time::Duration::minutes(5))
            .build(),
    );
    Ok(ctx.flash_to(
        "/api-keys",
        format!(
            "API key {} created. Copy it now: it is shown once.",
            key.name
        ),
    ))
}

#[post("/admin/t/<_>/api-keys/<id>/revoke", data = "<form>")]
pub async fn revoke(
    ctx: TenantCtx,
    id: Id,
    db: &State<Db>,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let Id(id) = id;
    ctx.require(Role::Admin)?;
    form.confirm.require("revoke this key")?;
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("api_key.revoked").object("api_key", id);
    let n = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let n = ApiKey::revoke(conn, tenant_id, id)?;
                if n > 0 {
                    audit.insert(conn)?;
                }
                Ok(n)
            })
        })
        .await?;
    if n == 0 {
        return Err(PageError::not_found());
    }
    Ok(ctx.flash_to("/api-keys", "The key is revoked; it stopped working now."))
}
