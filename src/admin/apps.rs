//! Apps: list, create, the app page (Kit settings panel, client secrets),
//! edit, and delete after a confirmation (which revokes every grant).

use chrono::Utc;
use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::Status;
use rocket::request::{FlashMessage, FromRequest, Outcome, Request};
use rocket::response::Redirect;
use rocket::{get, post, State};
use serde_json::{json, Value};

use super::reveal::{RevealKey, RevealKind, Reveals, Taken};
use super::{
    parse_id, path_object, when, when_opt, AdminUser, ConfirmForm, PageResult, Resp, TenantCtx,
};
use crate::auth::{CsrfForm, CsrfToken};
use crate::config::AppConfig;
use crate::db::models::app::{validate_redirect_uri, validate_scope, KIT_REDIRECT_URIS};
use crate::db::models::{App, AppSettings, ClientSecret, Grant, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::{Checkbox, Multiline, Text};
use crate::params::split_scopes;

/// Bounds for the lifetimes an admin can set, in seconds (the model's).
pub use crate::db::models::app::{ACCESS_TTL, GRACE, REFRESH_TTL};

/// The app that `/admin/t/{slug}/apps/{id}/...` names, in the admin's
/// tenant (a guard: 404 before the form of the path is read).
pub struct TenantApp(pub App);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for TenantApp {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        path_object(req, App::find).await.map(TenantApp)
    }
}

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
        "skip_consent": app.skip_consent,
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
    let is_live =
        |s: &ClientSecret| s.revoked_at.is_none() && s.expires_at.map_or(true, |e| e > now);
    let live_count = secrets.iter().filter(|s| is_live(s)).count();
    secrets
        .iter()
        .map(|s| {
            json!({
                "id": s.id,
                "hint": s.hint,
                "created_at": when(&s.created_at),
                "last_used_at": when_opt(&s.last_used_at),
                // A revoked secret ended when it was revoked; its old grace
                // expiry no longer means anything.
                "expires_at": if s.revoked_at.is_some() { None } else { when_opt(&s.expires_at) },
                "revoked_at": when_opt(&s.revoked_at),
                "status": s.status(now),
                "live": is_live(s),
                // Revoking it leaves the app without a working secret.
                "only_live": is_live(s) && live_count == 1,
            })
        })
        .collect()
}

/// The app form (new and edit).
#[derive(Debug, FromForm)]
pub struct AppForm {
    name: Text<200>,
    redirect_uris: Multiline<8192>,
    scopes: Text,
    access_token_ttl_secs: Text,
    refresh_token_ttl_secs: Text,
    refresh_grace_secs: Text,
    refresh_without_secret: Checkbox,
    disabled: Checkbox,
    skip_consent: Checkbox,
}

/// Parses and checks the app form. Errors are messages for the form.
fn parse_settings(form: &AppForm, current: Option<&App>) -> Result<AppSettings, String> {
    let name = form.name.trimmed();
    if name.is_empty() || name.chars().count() > 200 {
        return Err("The name must have 1 to 200 characters.".into());
    }
    let redirect_uris: Vec<String> = form
        .redirect_uris
        .as_str()
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
    let scopes = split_scopes(form.scopes.as_str());
    if scopes.is_empty() || scopes.len() > 50 {
        return Err("Allow 1 to 50 scopes, separated by spaces or commas.".into());
    }
    for s in &scopes {
        validate_scope(s).map_err(|e| format!("Scope: {e}."))?;
    }
    let number = |field: &Text, label: &str, (lo, hi): (i32, i32), default: i32| match field.get() {
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
            &form.access_token_ttl_secs,
            "The access token lifetime",
            ACCESS_TTL,
            current.map_or(7200, |a| a.access_token_ttl_secs),
        )?,
        refresh_token_ttl_secs: number(
            &form.refresh_token_ttl_secs,
            "The refresh token lifetime",
            REFRESH_TTL,
            current.map_or(90 * 86400, |a| a.refresh_token_ttl_secs),
        )?,
        refresh_grace_secs: number(
            &form.refresh_grace_secs,
            "The refresh grace window",
            GRACE,
            current.map_or(60, |a| a.refresh_grace_secs),
        )?,
        refresh_without_secret: form.refresh_without_secret.0,
        disabled: form.disabled.0,
        skip_consent: form.skip_consent.0,
    };
    // The model's rule is the last word (the messages above are the form's).
    settings.validate().map_err(|(_, e)| format!("{e}."))?;
    Ok(settings)
}

/// The form as sent, to show it again with its error.
fn form_json(form: &AppForm) -> Value {
    json!({
        "name": form.name.as_str(),
        "redirect_uris": form.redirect_uris.as_str(),
        "scopes": form.scopes.as_str(),
        "access_token_ttl_secs": form.access_token_ttl_secs.as_str(),
        "refresh_token_ttl_secs": form.refresh_token_ttl_secs.as_str(),
        "refresh_grace_secs": form.refresh_grace_secs.as_str(),
        "refresh_without_secret": form.refresh_without_secret.0,
        "disabled": form.disabled.0,
        "skip_consent": form.skip_consent.0,
    })
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
        "skip_consent": app.skip_consent,
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
        "skip_consent": false,
    });
    Ok(Resp::Page(ctx.render(
        "admin/app_form",
        "apps",
        &csrf,
        None,
        json!({"form": form, "is_new": true}),
    )))
}

#[post("/admin/t/<_>/apps/new", data = "<form>")]
pub async fn new_post(
    ctx: TenantCtx,
    user: AdminUser,
    db: &State<Db>,
    reveals: &State<Reveals>,
    csrf: CsrfToken,
    form: CsrfForm<AppForm>,
) -> PageResult {
    ctx.require(Role::Admin)?;
    let settings = match parse_settings(&form, None) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(Resp::Status((
                Status::BadRequest,
                ctx.render(
                    "admin/app_form",
                    "apps",
                    &csrf,
                    None,
                    json!({"form": form_json(&form), "is_new": true, "error": msg}),
                ),
            )))
        }
    };
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("app.created");
    let (app, secret) = db
        .run(move |conn| {
            App::create_audited(conn, tenant_id, &settings, audit).map_err(Error::from)
        })
        .await?;
    Ok(reveal_redirect(
        &ctx,
        &user,
        reveals,
        app.id,
        secret,
        "App created.",
    ))
}

/// Puts a new secret in a one-time reveal for this admin session and
/// redirects to the page that shows it (post/redirect/get): a reload of
/// that page cannot repeat the action.
pub fn reveal_redirect(
    ctx: &TenantCtx,
    user: &AdminUser,
    reveals: &Reveals,
    app_id: i64,
    secret: String,
    notice: &str,
) -> Resp {
    reveals.put(secret_key(ctx, user, app_id), secret, notice);
    Resp::Redirect(Redirect::to(format!("{}/apps/{app_id}/secret", ctx.base())))
}

fn secret_key(ctx: &TenantCtx, user: &AdminUser, app_id: i64) -> RevealKey {
    RevealKey {
        session_id: user.session_id,
        tenant_id: ctx.tenant.id,
        kind: RevealKind::ClientSecret,
        object_id: app_id,
    }
}

/// The one-time page of a new secret. The first visit shows it; a reload,
/// another session, or a visit after a few minutes says it was shown.
#[get("/admin/t/<_>/apps/<id>/secret")]
pub async fn reveal(
    ctx: TenantCtx,
    user: AdminUser,
    id: &str,
    db: &State<Db>,
    config: &State<AppConfig>,
    reveals: &State<Reveals>,
    csrf: CsrfToken,
) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    let notice = match reveals.take(&secret_key(&ctx, &user, app.id)) {
        Taken::Now(r) => Notice::NewSecret(r.value, r.notice),
        Taken::AlreadyShown | Taken::Nothing => Notice::Warning(
            "This secret was already shown, and kitauth keeps only its digest: it cannot be shown again. If you did not copy it, rotate the secret.",
        ),
    };
    show_page(&ctx, db, config, &csrf, app, notice).await
}

/// What the app page says above the app.
enum Notice<'f> {
    /// A new secret, shown this once, and what was done.
    NewSecret(String, String),
    Warning(&'static str),
    Flash(Option<FlashMessage<'f>>),
}

/// The app page with its secrets and the Kit settings panel.
async fn show_page(
    ctx: &TenantCtx,
    db: &Db,
    config: &AppConfig,
    csrf: &CsrfToken,
    app: App,
    notice: Notice<'_>,
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
    let (new_secret, flash_value) = match notice {
        Notice::NewSecret(secret, notice) => {
            (Some(secret), json!({"kind": "success", "message": notice}))
        }
        Notice::Warning(notice) => (None, json!({"kind": "warning", "message": notice})),
        Notice::Flash(flash) => (None, super::flash_json(flash)),
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
    show_page(&ctx, db, config, &csrf, app, Notice::Flash(flash)).await
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

#[post("/admin/t/<_>/apps/<_>/edit", data = "<form>")]
pub async fn edit_post(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    app: TenantApp,
    form: CsrfForm<AppForm>,
) -> PageResult {
    let TenantApp(app) = app;
    ctx.require(Role::Admin)?;
    let settings = match parse_settings(&form, Some(&app)) {
        Ok(s) => s,
        Err(msg) => {
            return Ok(Resp::Status((
                Status::BadRequest,
                ctx.render(
                    "admin/app_form",
                    "apps",
                    &csrf,
                    None,
                    json!({"form": form_json(&form), "is_new": false, "app": app_json(&app), "error": msg}),
                ),
            )))
        }
    };
    let (tenant_id, app_id) = (ctx.tenant.id, app.id);
    let audit = ctx.audit("app.updated");
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<_, Error> {
            // Locked and read again: the audit compares with the app as it
            // is now, not as this page read it.
            let current = App::find_for_update(conn, tenant_id, app_id)?.ok_or(Error::NotFound)?;
            App::update_audited(conn, &current, &settings, audit)?;
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

#[post("/admin/t/<_>/apps/<_>/delete", data = "<form>")]
pub async fn delete_post(
    ctx: TenantCtx,
    db: &State<Db>,
    app: TenantApp,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let TenantApp(app) = app;
    ctx.require(Role::Admin)?;
    form.confirm.require("delete this app")?;
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
