//! Installs (grants): paginated lists per tenant and per app with search by
//! creator email, the grant page with its token history (hints and times,
//! never values), and revocation of one grant, all grants of an app, or all
//! grants of a creator.

use chrono::Utc;
use rocket::request::{FlashMessage, FromRequest, Outcome, Request};
use rocket::{get, post, State};
use serde_json::{json, Value};

use super::apps::{app_json, load_app, TenantApp};
use super::creators::TenantCreator;
use super::{
    encode_query, page_number, pager, parse_id, path_object, search_term, when, when_opt,
    ConfirmForm, PageResult, Resp, TenantCtx, PER_PAGE,
};
use crate::auth::{CsrfForm, CsrfToken};
use crate::db::models::dashboard::{self, InstallFilter, InstallRow};
use crate::db::models::end_user::label_of;
use crate::db::models::{AccessToken, Grant, RefreshToken, Role};
use crate::db::Db;
use crate::error::{Error, PageError};

/// The install that `/admin/t/{slug}/installs/{id}/...` names, in the
/// admin's tenant (a guard: 404 before the form of the path is read).
pub struct TenantGrant(pub Grant);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for TenantGrant {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        path_object(req, Grant::find).await.map(TenantGrant)
    }
}

pub fn install_json(row: &InstallRow) -> Value {
    json!({
        "id": row.id,
        "app_id": row.app_id,
        "app_name": row.app_name,
        "end_user_id": row.end_user_id,
        "email": row.email,
        "subject": row.subject,
        "name": row.name,
        "label": label_of(row.subject.as_deref(), row.email.as_deref()),
        "scopes": row.scopes,
        "created_at": when(&row.created_at),
        "last_refreshed_at": when_opt(&row.last_refreshed_at),
        "access_expires_at": when_opt(&row.access_expires_at),
        "revoked_at": when_opt(&row.revoked_at),
        "revoked_reason": row.revoked_reason,
        "status": row.status(Utc::now()),
    })
}

/// One page of installs and the pager values.
pub async fn install_page(
    db: &Db,
    tenant_id: i64,
    filter: InstallFilter,
    page: i64,
    path: &str,
) -> Result<(Vec<Value>, Value), PageError> {
    let query = encode_query(&[("q", filter.email.as_deref())]);
    let rows = db
        .run(move |conn| {
            dashboard::installs(conn, tenant_id, &filter, PER_PAGE, (page - 1) * PER_PAGE)
                .map_err(Error::from)
        })
        .await?;
    let total = rows.first().map_or(0, |r| r.total);
    Ok((
        rows.iter().map(install_json).collect(),
        pager(path, &query, page, total),
    ))
}

#[get("/admin/t/<_>/installs?<q>&<page>")]
pub async fn list_tenant(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
    q: Option<&str>,
    page: Option<i64>,
) -> PageResult {
    let q = search_term(q);
    let path = format!("{}/installs", ctx.base());
    let filter = InstallFilter {
        email: q.clone(),
        ..Default::default()
    };
    let (installs, pager) =
        install_page(db, ctx.tenant.id, filter, page_number(page), &path).await?;
    Ok(Resp::Page(ctx.render(
        "admin/installs",
        "installs",
        &csrf,
        flash,
        json!({"installs": installs, "pager": pager, "q": q, "search_path": path}),
    )))
}

#[get("/admin/t/<_>/apps/<id>/installs?<q>&<page>")]
pub async fn list_app(
    ctx: TenantCtx,
    id: &str,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
    q: Option<&str>,
    page: Option<i64>,
) -> PageResult {
    let app = load_app(db, &ctx, id).await?;
    let q = search_term(q);
    let path = format!("{}/apps/{}/installs", ctx.base(), app.id);
    let filter = InstallFilter {
        app_id: Some(app.id),
        email: q.clone(),
        ..Default::default()
    };
    let (installs, pager) =
        install_page(db, ctx.tenant.id, filter, page_number(page), &path).await?;
    Ok(Resp::Page(ctx.render(
        "admin/installs",
        "apps",
        &csrf,
        flash,
        json!({"installs": installs, "pager": pager, "q": q, "search_path": path, "app": app_json(&app)}),
    )))
}

#[get("/admin/t/<_>/installs/<gid>")]
pub async fn show(
    ctx: TenantCtx,
    gid: &str,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    let gid = parse_id(gid)?;
    let tenant_id = ctx.tenant.id;
    let (row, access, refresh) = db
        .run(move |conn| -> Result<_, Error> {
            let Some(row) = dashboard::install(conn, tenant_id, gid)? else {
                return Ok(None);
            };
            Ok(Some((
                row,
                AccessToken::history(conn, tenant_id, gid)?,
                RefreshToken::history(conn, tenant_id, gid)?,
            )))
        })
        .await?
        .ok_or_else(PageError::not_found)?;
    let now = Utc::now();
    let access: Vec<Value> = access
        .iter()
        .rev()
        .map(|t| {
            json!({
                "hint": t.hint, "created_at": when(&t.created_at), "expires_at": when(&t.expires_at),
                "revoked_at": when_opt(&t.revoked_at),
                "status": if t.revoked_at.is_some() { "revoked" } else if t.expires_at <= now { "expired" } else { "active" },
            })
        })
        .collect();
    let refresh: Vec<Value> = refresh
        .iter()
        .rev()
        .map(|t| {
            json!({
                "hint": t.hint, "created_at": when(&t.created_at), "expires_at": when(&t.expires_at),
                "used_at": when_opt(&t.used_at), "revoked_at": when_opt(&t.revoked_at),
                "status": if t.revoked_at.is_some() { "revoked" } else if t.used_at.is_some() { "used" } else if t.expires_at <= now { "expired" } else { "active" },
            })
        })
        .collect();
    Ok(Resp::Page(ctx.render(
        "admin/install",
        "installs",
        &csrf,
        flash,
        json!({"install": install_json(&row), "access_tokens": access, "refresh_tokens": refresh}),
    )))
}

#[post("/admin/t/<_>/installs/<_>/revoke", data = "<form>")]
pub async fn revoke_one(
    ctx: TenantCtx,
    db: &State<Db>,
    grant: TenantGrant,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let gid = grant.0.id;
    let tenant_id = ctx.tenant.id;
    ctx.require(Role::Admin)?;
    form.confirm.require("revoke this install")?;
    let audit = ctx.audit("grant.revoked");
    let changed = db
        .run(move |conn| {
            Grant::revoke_audited(conn, tenant_id, gid, "admin", audit).map_err(Error::from)
        })
        .await?
        .ok_or_else(PageError::not_found)?;
    let msg = if changed {
        "The install is revoked: its tokens stopped working now."
    } else {
        "The install was revoked already."
    };
    Ok(ctx.flash_to(&format!("/installs/{gid}"), msg))
}

#[post("/admin/t/<_>/apps/<_>/installs/revoke", data = "<form>")]
pub async fn revoke_app(
    ctx: TenantCtx,
    db: &State<Db>,
    app: TenantApp,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let TenantApp(app) = app;
    ctx.require(Role::Admin)?;
    form.confirm.require("revoke every install of this app")?;
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let audit = ctx.audit("grant.revoked_all_for_app");
    let n = db
        .run(move |conn| {
            Grant::revoke_all_for_app_audited(conn, tenant_id, app_id, "admin", audit)
                .map_err(Error::from)
        })
        .await?;
    Ok(ctx.flash_to(
        &format!("/apps/{app_id}/installs"),
        format!("{n} install(s) of {} revoked.", app.name),
    ))
}

#[post("/admin/t/<_>/creators/<_>/installs/revoke", data = "<form>")]
pub async fn revoke_creator(
    ctx: TenantCtx,
    db: &State<Db>,
    creator: TenantCreator,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let TenantCreator(user) = creator;
    let (tenant_id, cid) = (ctx.tenant.id, user.id);
    ctx.require(Role::Admin)?;
    form.confirm
        .require("revoke every install of this creator")?;
    let audit = ctx.audit("grant.revoked_all_for_creator");
    let n = db
        .run(move |conn| {
            Grant::revoke_all_for_end_user_audited(conn, tenant_id, cid, "admin", audit)
                .map_err(Error::from)
        })
        .await?;
    Ok(ctx.flash_to(
        &format!("/creators/{cid}"),
        format!("{n} install(s) of {} revoked.", user.label()),
    ))
}
