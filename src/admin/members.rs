//! Members: list, invite by a single-use link (shown once to the owner),
//! withdraw an invitation, change a role, remove a member. Only owners
//! change anything; the last owner can be neither demoted nor removed.

use chrono::Utc;
use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::Status;
use rocket::request::FlashMessage;
use rocket::{get, post, State};
use serde_json::{json, Value};

use super::reveal::{RevealKey, RevealKind, Reveals, Taken};
use super::{parse_id, when, AdminUser, ConfirmForm, Id, PageResult, Resp, TenantCtx};
use crate::auth::csrf::NoFields;
use crate::auth::{CsrfForm, CsrfToken};
use crate::config::AppConfig;
use crate::db::models::admin::MembershipChange;
use crate::db::models::end_user::valid_email;
use crate::db::models::{AdminInvite, Membership, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::Text;

/// The invitation form.
#[derive(Debug, FromForm)]
pub struct InviteForm {
    email: Text<320>,
    role: Text<100>,
}

/// The role form of a member.
#[derive(Debug, FromForm)]
pub struct RoleForm {
    role: Text<100>,
}

async fn page(
    ctx: &TenantCtx,
    db: &Db,
    csrf: &CsrfToken,
    flash: Option<FlashMessage<'_>>,
    extra: Value,
) -> Result<rocket_dyn_templates::Template, PageError> {
    let tenant_id = ctx.tenant.id;
    let (members, invites) = db
        .run(move |conn| -> Result<_, Error> {
            Ok((
                Membership::members(conn, tenant_id)?,
                AdminInvite::list(conn, tenant_id)?,
            ))
        })
        .await?;
    let now = Utc::now();
    let members: Vec<Value> = members
        .iter()
        .map(|m| {
            json!({"admin_id": m.admin_id, "email": m.email, "role": m.role,
                   "since": when(&m.created_at), "is_me": m.admin_id == ctx.admin.id})
        })
        .collect();
    let invites: Vec<Value> = invites
        .iter()
        .map(|i| {
            json!({"id": i.id, "email": i.email, "role": i.role, "created_at": when(&i.created_at),
                   "expires_at": when(&i.expires_at), "status": i.status(now)})
        })
        .collect();
    let mut ctx_json =
        json!({"members": members, "invites": invites, "roles": ["owner", "admin", "viewer"]});
    if let (Value::Object(m), Value::Object(e)) = (&mut ctx_json, extra) {
        m.extend(e);
    }
    Ok(ctx.render("admin/members", "members", csrf, flash, ctx_json))
}

#[get("/admin/t/<_>/members")]
pub async fn list(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    Ok(Resp::Page(page(&ctx, db, &csrf, flash, json!({})).await?))
}

#[post("/admin/t/<_>/members/invite", data = "<form>")]
pub async fn invite(
    ctx: TenantCtx,
    user: AdminUser,
    db: &State<Db>,
    reveals: &State<Reveals>,
    csrf: CsrfToken,
    form: CsrfForm<InviteForm>,
) -> PageResult {
    ctx.require(Role::Owner)?;
    let email = form.email.trimmed().to_lowercase();
    let role = form.role.get().and_then(Role::parse);
    let (Some(role), true) = (role, valid_email(&email)) else {
        let p = page(
            &ctx,
            db,
            &csrf,
            None,
            json!({"error": "Enter the email address of the person to invite and choose a role.", "form": {"email": email}}),
        )
        .await?;
        return Ok(Resp::Status((Status::BadRequest, p)));
    };
    let tenant_id = ctx.tenant.id;
    let admin_id = ctx.admin.id;
    let audit = ctx.audit("member.invited");
    let invite_email = email.clone();
    let (invite_id, token) = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let (row, token) =
                    AdminInvite::create(conn, tenant_id, &invite_email, role, admin_id)?;
                audit
                    .object("invite", row.id)
                    .details(json!({"email": row.email, "role": row.role}))
                    .insert(conn)?;
                Ok((row.id, token))
            })
        })
        .await?;
    // Post/redirect/get: the link waits in a one-time reveal of this admin
    // session; a reload of the page that shows it cannot make a second
    // invitation. The reveal holds the token; the link is built when shown.
    reveals.put(invite_key(&ctx, &user, invite_id), token, email);
    Ok(Resp::Redirect(rocket::response::Redirect::to(format!(
        "{}/members/invites/{invite_id}/link",
        ctx.base()
    ))))
}

fn invite_key(ctx: &TenantCtx, user: &AdminUser, invite_id: i64) -> RevealKey {
    RevealKey {
        session_id: user.session_id,
        tenant_id: ctx.tenant.id,
        kind: RevealKind::Invite,
        object_id: invite_id,
    }
}

/// The one-time page of a new invitation link: the first visit of the
/// session that made it shows it; a reload says it was shown.
#[get("/admin/t/<_>/members/invites/<iid>/link")]
pub async fn invite_link(
    ctx: TenantCtx,
    user: AdminUser,
    iid: &str,
    db: &State<Db>,
    reveals: &State<Reveals>,
    config: &State<AppConfig>,
    csrf: CsrfToken,
) -> PageResult {
    ctx.require(Role::Owner)?;
    let invite_id = parse_id(iid)?;
    let extra = match reveals.take(&invite_key(&ctx, &user, invite_id)) {
        Taken::Now(r) => json!({
            "invite_link": format!("{}/admin/invite/{}", config.public_url(), r.value),
            "invite_email": r.notice,
            "flash": {"kind": "success", "message": format!("Invitation for {} created. Copy the link below and send it; it is shown only now.", r.notice)},
        }),
        Taken::AlreadyShown | Taken::Nothing => json!({
            "flash": {"kind": "warning", "message": "This invitation link was already shown, and kitauth keeps only its digest: it cannot be shown again. If you did not copy it, withdraw the invitation and invite again."},
        }),
    };
    Ok(Resp::Page(page(&ctx, db, &csrf, None, extra).await?))
}

#[post("/admin/t/<_>/members/invites/<iid>/revoke", data = "<_form>")]
pub async fn revoke_invite(
    ctx: TenantCtx,
    iid: Id,
    db: &State<Db>,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let Id(iid) = iid;
    ctx.require(Role::Owner)?;
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("member.invite_revoked").object("invite", iid);
    let n = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let n = AdminInvite::revoke(conn, tenant_id, iid)?;
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
    Ok(ctx.flash_to(
        "/members",
        "The invitation was withdrawn; its link no longer works.",
    ))
}

#[post("/admin/t/<_>/members/<aid>/role", data = "<form>")]
pub async fn role(ctx: TenantCtx, aid: Id, db: &State<Db>, form: CsrfForm<RoleForm>) -> PageResult {
    let Id(aid) = aid;
    ctx.require(Role::Owner)?;
    let role = form
        .role
        .get()
        .and_then(Role::parse)
        .ok_or_else(|| PageError::bad_request("Choose owner, admin or viewer."))?;
    let tenant_id = ctx.tenant.id;
    let audit = ctx
        .audit("member.role_changed")
        .object("admin", aid)
        .details(json!({"role": role.as_str()}));
    let outcome = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let outcome = Membership::set_role(conn, tenant_id, aid, role)?;
                if outcome == MembershipChange::Done {
                    audit.insert(conn)?;
                }
                Ok(outcome)
            })
        })
        .await?;
    match outcome {
        MembershipChange::Done => {
            Ok(ctx.flash_to("/members", format!("Role changed to {}.", role.as_str())))
        }
        MembershipChange::NotFound => Err(PageError::not_found()),
        MembershipChange::LastOwner => Err(PageError::new(
            Status::Conflict,
            "The last owner stays",
            "This is the only owner of the workspace. Make another member owner first.",
        )),
    }
}

#[post("/admin/t/<_>/members/<aid>/remove", data = "<form>")]
pub async fn remove(
    ctx: TenantCtx,
    aid: Id,
    db: &State<Db>,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let Id(aid) = aid;
    ctx.require(Role::Owner)?;
    form.confirm.require("remove this member")?;
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("member.removed").object("admin", aid);
    let outcome = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Error> {
                let outcome = Membership::remove(conn, tenant_id, aid)?;
                if outcome == MembershipChange::Done {
                    audit.insert(conn)?;
                }
                Ok(outcome)
            })
        })
        .await?;
    match outcome {
        MembershipChange::Done if aid == ctx.admin.id => Ok(Resp::Flash(rocket::response::Flash::success(
            rocket::response::Redirect::to("/admin"),
            format!("You left {}.", ctx.tenant.name),
        ))),
        MembershipChange::Done => Ok(ctx.flash_to("/members", "Member removed.")),
        MembershipChange::NotFound => Err(PageError::not_found()),
        MembershipChange::LastOwner => Err(PageError::new(
            Status::Conflict,
            "The last owner stays",
            "This is the only owner of the workspace, so it cannot be removed. Make another member owner first.",
        )),
    }
}
