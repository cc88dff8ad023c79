//! Apps: list, create, the app page (Kit settings panel, client secrets),
//! edit, and delete after a confirmation (which revokes every grant).

use chrono::Utc;
use diesel::Connection;
use rocket::data::Data;
use rocket::http::{CookieJar, Status};
use rocket::request::FlashMessage;
use rocket::{get, post, State};
use serde_json::{json, Value};

use super::{confirmed, parse_id, read_form, when, when_opt, PageResult, Resp, TenantCtx};
use crate::auth::CsrfToken;
use crate::config::AppConfig;
use crate::db::models::app::{validate_redirect_uri, validate_scope, KIT_REDIRECT_URIS};
use crate::db::models::{App, AppSettings, ClientSecret, Grant, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::oauth::params::{split_scopes, Params};

/// Bounds for the lifetimes an admin can set, in seconds (the model's).
pub use crate::db::models::app::{ACCESS_TTL, GRACE, REFRESH_TTL};

pub async fn load_app(db: &Db, ctx: &TenantCtx, id: &str) -> Result<App, PageError> {
    let id = parse_id(id)?;
    let tenant_id = ctx.tenant.id;
    db.run(move |conn| App::find(conn, tenant_id, id).map_err(Error::from))
        .await?
        .ok_or_else(PageError::not_found)
}

/// An app as the templates show it.
pub fn app_json(app: &App) -> Value {
    json!({
        "id": app.id,
        "name": app.name,
        "client_id": app.client_id,
        "redirect_uris": app.redirect_uris,
        "allowed_scopes": app.allowed_scopes,
        "access_token_ttl_secs": app.access_token_ttl_secs,
        "refresh_token_ttl_secs": app.refresh_token_ttl_secs,
        "refresh_grace_secs": app.refresh_grace_secs,
        "refresh_without_secret": app.refresh_without_secret,
        "disabled": app.disabled,
        "created_at": when(&app.created_at),
        "access_ttl_human": human_secs(app.access_token_ttl_secs.into()),
        "refresh_ttl_human": human_secs(app.refresh_token_ttl_secs.into()),
    })
}

pub fn human_secs(s: i64) -> String {
    match s {
        s if s % 86400 == 0 => format!("{} day{}", s / 86400, if s == 86400 { "" } else { "s" }),
        s if s % 3600 == 0 => format!("{} hour{}", s / 3600, if s == 3600 { "" } else { "s" }),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// The Kit settings panel: the four URLs and the client ID.
pub fn kit_fields(config: &AppConfig, slug: &str, app: &App) -> Value {
    json!(config.kit_panel(slug, &app.client_id))
}

pub fn secrets_json(secrets: &[ClientSecret]) -> Vec<Value> {
    let now = Utc::now();
    secrets
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "hint": s.hint,
                "created_at": when(&s.created_at),
                "last_used_at": when_opt(&s.last_used_at),
                "expires_at": when_opt(&s.expires_at),
                "status": s.status(now),
                "live": s.revoked_at.is_none() && s.expires_at.map_or(true, |e| e > now),
            })
        })
        .collect()
}

/// Parses and checks the app form. Errors are messages for the form.
fn parse_settings(params: &Params, current: Option<&App>) -> Result<AppSettings, String> {
    let name = params.get("name").unwrap_or("").trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("The name must have 1 to 200 characters.".into());
    }
    let redirect_uris: Vec<String> = params
        .get("redirect_uris")
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if redirect_uris.is_empty() || redirect_uris.len() > 20 {
        return Err("Register 1 to 20 redirect URIs, one per line.".into());
    }
    for uri in &redirect_uris {
        validate_redirect_uri(uri).map_err(|e| format!("Redirect URI: {e}."))?;
    }
    let scopes = split_scopes(params.get("scopes").unwrap_or(""));
    if scopes.is_empty() || scopes.len() > 50 {
        return Err("Allow 1 to 50 scopes, separated by spaces or commas.".into());
    }
    for s in &scopes {
        validate_scope(s).map_err(|e| format!("Scope: {e}."))?;
    }
    let number = |key: &str, label: &str, (lo, hi): (i32, i32), default: i32| match params.get(key)
    {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{label} must be a whole number of seconds from {lo} to {hi}.")),
    };
    let settings = AppSettings {
        name,
        redirect_uris,
        allowed_scopes: scopes,
        access_token_ttl_secs: number(
            "access_token_ttl_secs",
            "The access token lifetime",
            ACCESS_TTL,
            current.map_or(7200, |a| a.access_token_ttl_secs),
        )?,
        refresh_token_ttl_secs: number(
            "refresh_token_ttl_secs",
            "The refresh token lifetime",
            REFRESH_TTL,
            current.map_or(90 * 86400, |a| a.refresh_token_ttl_secs),
        )?,
        refresh_grace_secs: number(
            "refresh_grace_secs",
            "The refresh grace window",
            GRACE,
            current.map_or(60, |a| a.refresh_grace_secs),
        )?,
        refresh_without_secret: params.get("refresh_without_secret") == Some("on"),
        disabled: params.get("disabled") == Some("on"),
    };
    // The model's rule is the last word (the messages above are the form's).
    settings.validate().map_err(|(_, e)| format!("{e}."))?;
    Ok(settings)
}

fn form_json(params: &Params) -> Value {
    let keys = [
        "name",
        "redirect_uris",
        "scopes",
        "access_token_ttl_secs",
        "refresh_token_ttl_secs",
        "refresh_grace_secs",
    ];
    let mut m = serde_json::Map::new();
    for k in keys {
        m.insert(k.into(), json!(params.get(k).unwrap_or("")));
    }
    m.insert(
        "refresh_without_secret".into(),
        json!(params.get("refresh_without_secret") == Some("on")),
    );
    m.insert(
        "disabled".into(),
        json!(params.get("disabled") == Some("on")),
    );
    Value::Object(m)
}

fn app_form_json(app: &App) -> Value {
    json!({
        "name": app.name,
        "redirect_uris": app.redirect_uris.join("\n"),
        "scopes": app.allowed_scopes.join(" "),
        "access_token_ttl_secs": app.access_token_ttl_secs.to_string(),
        "refresh_token_ttl_secs": app.refresh_token_ttl_secs.to_string(),
        "refresh_grace_secs": app.refresh_grace_secs.to_string(),
        "refresh_without_secret": app.refresh_without_secret,
        "disabled": app.disabled,
    })
}

#[get("/admin/t/<_>/apps")]
pub async fn list(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    let tenant_id = ctx.tenant.id;
    let apps = db
        .run(move |conn| -> Result<_, Error> {
            let apps = App::list(conn, tenant_id)?;
            let mut out = Vec::new();
            for app in apps {
                let live = Grant::live_ids_for_app(conn, tenant_id, app.id)?.len();
                out.push((app, live));
            }
            Ok(out)
        })
        .await?;
    let apps: Vec<Value> = apps
        .iter()
        .map(|(a, live)| {
            let mut v = app_json(a);
            v["live_installs"] = json!(live);
            v
        })
        .collect();
    Ok(Resp::Page(ctx.render(
        "admin/apps",
        "apps",
        &csrf,
        flash,
        json!({ "apps": apps }),
    )))
}

#[get("/admin/t/<_>/apps/new")]
pub fn new_get(ctx: TenantCtx, csrf: CsrfToken) -> PageResult {
    ctx.require(Role::Admin)?;
    let form = json!({
        "name": "",
        "redirect_uris": KIT_REDIRECT_URIS.join("\n"),
        "scopes": "public",
        "access_token_ttl_secs": "7200",
        "refresh_token_ttl_secs": (90 * 86400).to_string(),
        "refresh_grace_secs": "60",
        "refresh_without_secret": true,
        "disabled": false,
    });
    Ok(Resp::Page(ctx.render(
        "admin/app_form",
        "apps",
        &csrf,
        None,
        json!({"form": form, "is_new": true}),
    )))
}

#[post("/admin/t/<_>/apps/new", data = "<data>")]
pub async fn new_post(
    ctx: TenantCtx,
    db: &State<Db>,
    config: &State<AppConfig>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    data: Data<'_>,
) -> PageResult {
    let params = read_form(data, cookies).await?;
    ctx.require(Role::Admin)?;
    let settings = match parse_settings(&params, None) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(Resp::Status((
                Status::BadRequest,
                ctx.render(
                    "admin/app_form",
                    "apps",
                    &csrf,
                    None,
                    json!({"form": form_json(&params), "is_new": true, "error": msg}),
                ),
            )))
        }
    };
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("app.created");
    let (app, secret) = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let (app, secret) = App::create_with_first_secret(conn, tenant_id, &settings)?;
                audit
                    .object("app", app.id)
                    .details(json!({"name": app.name, "client_id": app.client_id}))
                    .insert(conn)?;
                Ok((app, secret))
            })
        })
        .await?;
    show_page(
        &ctx,
        db,
        config,
        &csrf,
        None,
        app,
        Some(secret),
        "App created.",
    )
    .await
}

/// The app page; `new_secret` is a secret value shown this once.
#[allow(clippy::too_many_arguments)]
async fn show_page(
    ctx: &TenantCtx,
    db: &Db,
    config: &AppConfig,
    csrf: &CsrfToken,
    flash: Option<FlashMessage<'_>>,
    app: App,
    new_secret: Option<String>,
    notice: &str,
) -> PageResult {
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let (secrets, live) = db
        .run(move |conn| -> Result<_, Error> {
            Ok((
                ClientSecret::list_for_app(conn, tenant_id, app_id)?,
                Grant::live_ids_for_app(conn, tenant_id, app_id)?.len(),
            ))
        })
        .await?;
    let flash_value = if new_secret.is_some() {
        json!({"kind": "success", "message": notice})
    } else {
        super::flash_json(flash)
    };
    Ok(Resp::Page(ctx.render(
        "admin/app",
        "apps",
        csrf,
        None,
        json!({
            "app": app_json(&app),
            "kit": kit_fields(config, &ctx.tenant.slug, &app),
            "secrets": secrets_json(&secrets),
            "new_secret": new_secret,
            "live_installs": live,
            "flash": flash_value,
        }),
    )))
}

pub async fn show_with_secret(
    ctx: &TenantCtx,
    db: &Db,
    config: &AppConfig,
    csrf: &CsrfToken,
    app: App,
    secret: String,
    notice: &str,
) -> PageResult {
    show_page(ctx, db, config, csrf, None, app, Some(secret), notice).await
}

#[get("/admin/t/<_>/apps/<id>", rank = 2)]
pub async fn show(
    ctx: TenantCtx,
    id: &str,
    db: &State<Db>,
    config: &State<AppConfig>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    show_page(&ctx, db, config, &csrf, flash, app, None, "").await
}

#[get("/admin/t/<_>/apps/<id>/edit")]
pub async fn edit_get(ctx: TenantCtx, id: &str, db: &State<Db>, csrf: CsrfToken) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    ctx.require(Role::Admin)?;
    Ok(Resp::Page(ctx.render(
        "admin/app_form",
        "apps",
        &csrf,
        None,
        json!({"form": app_form_json(&app), "is_new": false, "app": app_json(&app)}),
    )))
}

#[post("/admin/t/<_>/apps/<id>/edit", data = "<data>")]
pub async fn edit_post(
    ctx: TenantCtx,
    id: &str,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    csrf: CsrfToken,
    data: Data<'_>,
) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    let params = read_form(data, cookies).await?;
    ctx.require(Role::Admin)?;
    let settings = match parse_settings(&params, Some(&app)) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(Resp::Status((
                Status::BadRequest,
                ctx.render(
                    "admin/app_form",
                    "apps",
                    &csrf,
                    None,
                    json!({"form": form_json(&params), "is_new": false, "app": app_json(&app), "error": msg}),
                ),
            )))
        }
    };
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let action = match (app.disabled, settings.disabled) {
        (false, true) => "app.disabled",
        (true, false) => "app.enabled",
        _ => "app.updated",
    };
    let audit = ctx.audit(action).object("app", app_id).details(json!({
        "name": settings.name,
        "redirect_uris": settings.redirect_uris,
        "scopes": settings.allowed_scopes,
        "access_token_ttl_secs": settings.access_token_ttl_secs,
        "refresh_token_ttl_secs": settings.refresh_token_ttl_secs,
        "refresh_grace_secs": settings.refresh_grace_secs,
        "refresh_without_secret": settings.refresh_without_secret,
        "disabled": settings.disabled,
    }));
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<_, Error> {
            App::update(conn, tenant_id, app_id, &settings)?;
            audit.insert(conn)?;
            Ok(())
        })
    })
    .await?;
    Ok(ctx.flash_to(&format!("/apps/{app_id}"), "App settings saved."))
}

#[get("/admin/t/<_>/apps/<id>/delete")]
pub async fn delete_get(ctx: TenantCtx, id: &str, db: &State<Db>, csrf: CsrfToken) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    ctx.require(Role::Admin)?;
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let live = db
        .run(move |conn| Grant::live_ids_for_app(conn, tenant_id, app_id).map_err(Error::from))
        .await?
        .len();
    Ok(Resp::Page(ctx.render(
        "admin/app_delete",
        "apps",
        &csrf,
        None,
        json!({"app": app_json(&app), "live_installs": live}),
    )))
}

#[post("/admin/t/<_>/apps/<id>/delete", data = "<data>")]
pub async fn delete_post(
    ctx: TenantCtx,
    id: &str,
    db: &State<Db>,
    cookies: &CookieJar<'_>,
    data: Data<'_>,
) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    let params = read_form(data, cookies).await?;
    ctx.require(Role::Admin)?;
    confirmed(&params, "delete this app")?;
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let audit = ctx.audit("app.deleted");
    let name = app.name.clone();
    let revoked = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let ids = Grant::live_ids_for_app(conn, tenant_id, app_id)?;
                let revoked = Grant::revoke_many(conn, tenant_id, &ids, "app_deleted")?;
                App::delete(conn, tenant_id, app_id)?;
                audit
                    .object("app", app_id)
                    .details(json!({"name": app.name, "client_id": app.client_id, "grants_revoked": revoked}))
                    .insert(conn)?;
                Ok(revoked)
            })
        })
        .await?;
    Ok(ctx.flash_to(
        "/apps",
        format!("App {name} deleted; {revoked} install(s) revoked."),
    ))
}
