//! Tenant settings: name, whether creators may sign up, and the branding
//! of the hosted sign-in and consent pages. Owners only change them.

use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::Status;
use rocket::request::FlashMessage;
use rocket::{get, post, State};
use serde_json::json;

use super::{PageResult, Resp, TenantCtx};
use crate::auth::{CsrfForm, CsrfToken, TenantCache};
use crate::config::AppConfig;
use crate::db::models::tenant::{valid_color, CreatorSignin, TenantSettings};
use crate::db::models::{Role, Tenant};
use crate::db::Db;
use crate::error::Error;
use crate::input::{Checkbox, Text};

/// The settings form.
#[derive(Debug, FromForm)]
pub struct SettingsForm {
    name: Text<200>,
    signup_allowed: Checkbox,
    brand_display_name: Text<200>,
    brand_accent_color: Text,
    brand_logo_url: Text,
}

impl SettingsForm {
    /// The form as sent, to show it again with its error.
    fn echo(&self) -> serde_json::Value {
        json!({
            "name": self.name.as_str(),
            "signup_allowed": self.signup_allowed.0,
            "brand_display_name": self.brand_display_name.as_str(),
            "brand_accent_color": self.brand_accent_color.as_str(),
            "brand_logo_url": self.brand_logo_url.as_str(),
        })
    }
}

fn tenant_form(t: &Tenant) -> serde_json::Value {
    json!({
        "name": t.name,
        "signup_allowed": t.signup_allowed,
        "brand_display_name": t.brand_display_name.clone().unwrap_or_default(),
        "brand_accent_color": t.brand_accent_color.clone().unwrap_or_default(),
        "brand_logo_url": t.brand_logo_url.clone().unwrap_or_default(),
    })
}

fn parse(form: &SettingsForm) -> Result<TenantSettings, String> {
    let name = form.name.trimmed();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("The workspace name must have 1 to 200 characters.".into());
    }
    fn opt<const MAX: usize>(field: &Text<MAX>) -> Option<String> {
        field
            .get()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }
    let display = opt(&form.brand_display_name);
    if display.as_ref().is_some_and(|d| d.chars().count() > 100) {
        return Err("The display name must have at most 100 characters.".into());
    }
    let color = opt(&form.brand_accent_color);
    if color.as_deref().is_some_and(|c| !valid_color(c)) {
        return Err("The accent colour must look like #4f46e5 or #46e.".into());
    }
    let logo = opt(&form.brand_logo_url);
    if let Some(l) = &logo {
        let ok = l.len() <= 2000
            && url::Url::parse(l).is_ok_and(|u| u.scheme() == "https" && u.host_str().is_some());
        if !ok {
            return Err("The logo URL must be an https:// address.".into());
        }
    }
    Ok(TenantSettings {
        name,
        signup_allowed: form.signup_allowed.0,
        brand_display_name: display,
        brand_accent_color: color,
        brand_logo_url: logo,
    })
}

fn signin_form(t: &Tenant) -> serde_json::Value {
    let s = t.signin();
    json!({"creator_signin": s.mode(), "login_url": s.login_url().unwrap_or_default()})
}

#[get("/admin/t/<_>/settings")]
pub fn get(ctx: TenantCtx, csrf: CsrfToken, flash: Option<FlashMessage<'_>>) -> PageResult {
    let form = tenant_form(&ctx.tenant);
    Ok(Resp::Page(ctx.render(
        "admin/settings",
        "settings",
        &csrf,
        flash,
        json!({"form": form, "signin": signin_form(&ctx.tenant)}),
    )))
}

/// The creator sign-in form.
#[derive(Debug, FromForm)]
pub struct SigninForm {
    creator_signin: Text<20>,
    login_url: Text<2000>,
}

/// Chooses hosted or delegated creator sign-in (owners), through the same
/// check and flow as the API and the command line.
#[post("/admin/t/<_>/settings/sign-in", data = "<form>")]
pub async fn signin_post(
    ctx: TenantCtx,
    db: &State<Db>,
    cache: &State<TenantCache>,
    config: &State<AppConfig>,
    csrf: CsrfToken,
    form: CsrfForm<SigninForm>,
) -> PageResult {
    ctx.require(Role::Owner)?;
    let parsed = CreatorSignin::parse(
        form.creator_signin.as_str(),
        form.login_url.get(),
        config.allow_private_networks,
    );
    let signin = match parsed {
        Ok(s) => s,
        Err((_, msg)) => {
            let echo = json!({
                "creator_signin": form.creator_signin.as_str(),
                "login_url": form.login_url.as_str(),
            });
            let page = ctx.render(
                "admin/settings",
                "settings",
                &csrf,
                None,
                json!({"form": tenant_form(&ctx.tenant), "signin": echo, "signin_error": format!("Creator sign-in: {msg}.")}),
            );
            return Ok(Resp::Status((Status::BadRequest, page)));
        }
    };
    let tenant_id = ctx.tenant.id;
    let audit = ctx
        .audit("tenant.signin_changed")
        .object("tenant", tenant_id);
    db.run(move |conn| Tenant::set_signin(conn, tenant_id, &signin, audit).map_err(Error::from))
        .await?;
    cache.invalidate(&ctx.tenant.slug);
    Ok(ctx.flash_to("/settings", "Creator sign-in saved."))
}

#[post("/admin/t/<_>/settings", data = "<form>")]
pub async fn post(
    ctx: TenantCtx,
    db: &State<Db>,
    cache: &State<TenantCache>,
    csrf: CsrfToken,
    form: CsrfForm<SettingsForm>,
) -> PageResult {
    ctx.require(Role::Owner)?;
    let settings = match parse(&form) {
        Ok(s) => s,
        Err(msg) => {
            let form = form.echo();
            return Ok(Resp::Status((
                Status::BadRequest,
                ctx.render(
                    "admin/settings",
                    "settings",
                    &csrf,
                    None,
                    json!({"form": form, "signin": signin_form(&ctx.tenant), "error": msg}),
                ),
            )));
        }
    };
    let tenant_id = ctx.tenant.id;
    let audit = ctx
        .audit("tenant.settings_changed")
        .object("tenant", tenant_id)
        .details(json!({
            "name": settings.name,
            "signup_allowed": settings.signup_allowed,
            "brand_display_name": settings.brand_display_name,
            "brand_accent_color": settings.brand_accent_color,
            "brand_logo_url": settings.brand_logo_url,
        }));
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<_, Error> {
            Tenant::update_settings(conn, tenant_id, &settings)?;
            audit.insert(conn)?;
            Ok(())
        })
    })
    .await?;
    cache.invalidate(&ctx.tenant.slug);
    Ok(ctx.flash_to("/settings", "Settings saved."))
}
