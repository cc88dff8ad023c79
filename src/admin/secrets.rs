//! Client secrets: rotate (the new secret is shown once; older ones stay
//! valid for the chosen grace) and revoke one at once.

use chrono::Duration;
use diesel::Connection;
use rocket::form::FromForm;
use rocket::{post, State};
use serde_json::json;

use super::apps::{reveal_redirect, TenantApp};
use super::reveal::Reveals;
use super::{AdminUser, ConfirmForm, Id, PageResult, TenantCtx};
use crate::auth::CsrfForm;
use crate::db::models::client_secret::grace_choice;
use crate::db::models::{ClientSecret, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::{Confirm, Text};

/// The rotation form: how long the older secrets stay valid.
#[derive(Debug, FromForm)]
pub struct RotateForm {
    grace: Text<100>,
    confirm: Confirm,
}

#[post("/admin/t/<_>/apps/<_>/secrets/rotate", data = "<form>")]
pub async fn rotate(
    ctx: TenantCtx,
    user: AdminUser,
    db: &State<Db>,
    reveals: &State<Reveals>,
    app: TenantApp,
    form: CsrfForm<RotateForm>,
) -> PageResult {
    let TenantApp(app) = app;
    ctx.require(Role::Admin)?;
    let grace = form
        .grace
        .get()
        .and_then(|g| g.parse::<i64>().ok())
        .and_then(grace_choice)
        .ok_or_else(|| {
            PageError::bad_request(
                "Choose how long the older secrets stay valid: immediately, 1 hour, 24 hours or 7 days.",
            )
        })?;
    if grace.0 == 0 {
        form.confirm.require("end the older secrets immediately")?;
    }
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let audit = ctx.audit("client_secret.rotated");
    let grace_secs = grace.0;
    let secret = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let (row, value) =
                    ClientSecret::rotate(conn, tenant_id, app_id, Duration::seconds(grace_secs))?;
                audit
                    .object("client_secret", row.id)
                    .details(json!({"app_id": app_id, "hint": row.hint, "grace_secs": grace_secs}))
                    .insert(conn)?;
                Ok(value)
            })
        })
        .await?;
    let notice = if grace.0 == 0 {
        "New secret created. The older secrets stopped working now.".to_string()
    } else {
        format!(
            "New secret created. The older secrets keep working for {}.",
            grace.1
        )
    };
    Ok(reveal_redirect(
        &ctx, &user, reveals, app_id, secret, &notice,
    ))
}

#[post("/admin/t/<_>/apps/<_>/secrets/<sid>/revoke", data = "<form>")]
pub async fn revoke(
    ctx: TenantCtx,
    sid: Id,
    db: &State<Db>,
    app: TenantApp,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let (TenantApp(app), Id(sid)) = (app, sid);
    ctx.require(Role::Admin)?;
    form.confirm.require("revoke this secret")?;
    let tenant_id = ctx.tenant.id;
    let app_id = app.id;
    let audit = ctx.audit("client_secret.revoked");
    let changed = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let n = ClientSecret::revoke(conn, tenant_id, app_id, sid)?;
                if n > 0 {
                    audit
                        .object("client_secret", sid)
                        .details(json!({"app_id": app_id}))
                        .insert(conn)?;
                }
                Ok(n)
            })
        })
        .await?;
    if changed == 0 {
        // Unknown, another app's, or revoked already: nothing to do.
        return Err(PageError::not_found());
    }
    Ok(ctx.flash_to(
        &format!("/apps/{app_id}"),
        "The secret is revoked; it stopped working now.",
    ))
}
