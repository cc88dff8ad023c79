//! Creators (the tenant's hosted accounts): list and search, create,
//! disable (which revokes their grants), enable, set a new password.

use diesel::Connection;
use rocket::form::FromForm;
use rocket::http::Status;
use rocket::request::{FlashMessage, FromRequest, Outcome, Request};
use rocket::{get, post, State};
use serde_json::{json, Value};

use super::installs::install_page;
use super::{
    encode_query, page_number, pager, parse_id, path_object, search_term, when, ConfirmForm,
    PageResult, Resp, TenantCtx, PER_PAGE,
};
use crate::auth::csrf::NoFields;
use crate::auth::{CsrfForm, CsrfToken};
use crate::config::AppConfig;
use crate::crypto;
use crate::db::models::dashboard::{self, InstallFilter};
use crate::db::models::end_user::{
    check_new_creator, label_of, validate_password, CreateCreatorError,
};
use crate::db::models::{EndUser, Role};
use crate::db::Db;
use crate::error::{Error, PageError};
use crate::input::Text;

/// The creator that `/admin/t/{slug}/creators/{id}/...` names, in the
/// admin's tenant (a guard: 404 before the form of the path is read).
pub struct TenantCreator(pub EndUser);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for TenantCreator {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        path_object(req, EndUser::find).await.map(TenantCreator)
    }
}

/// The list's search and page (`?q=&page=`).
#[derive(Debug, Default, FromForm)]
pub struct ListQuery {
    q: Option<String>,
    page: Option<i64>,
}

/// A creator form that was refused: what to show again, and why.
struct Refused {
    form: Value,
    error: String,
}

/// The new-creator form.
#[derive(Debug, FromForm)]
pub struct NewCreatorForm {
    email: Text<320>,
    password: Text<1024>,
}

/// The new-password form.
#[derive(Debug, FromForm)]
pub struct PasswordForm {
    password: Text<1024>,
}

async fn hash(config: &AppConfig, password: String) -> Result<String, PageError> {
    let cost = config.bcrypt_cost;
    rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| PageError::from(Error::Internal("password hashing failed".into())))
}

async fn load_creator(db: &Db, ctx: &TenantCtx, id: &str) -> Result<EndUser, PageError> {
    let id = parse_id(id)?;
    let tenant_id = ctx.tenant.id;
    db.run(move |conn| EndUser::find(conn, tenant_id, id).map_err(Error::from))
        .await?
        .ok_or_else(PageError::not_found)
}

async fn list_page(
    ctx: &TenantCtx,
    db: &Db,
    csrf: &CsrfToken,
    flash: Option<FlashMessage<'_>>,
    query: &ListQuery,
    refused: Option<Refused>,
) -> Result<rocket_dyn_templates::Template, PageError> {
    let q = search_term(query.q.as_deref());
    let page = page_number(query.page);
    let (form, error) = match refused {
        Some(r) => (r.form, Some(r.error)),
        None => (json!({}), None),
    };
    let tenant_id = ctx.tenant.id;
    let term = q.clone();
    let rows = db
        .run(move |conn| {
            dashboard::creators(
                conn,
                tenant_id,
                term.as_deref(),
                PER_PAGE,
                (page - 1) * PER_PAGE,
            )
            .map_err(Error::from)
        })
        .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let path = format!("{}/creators", ctx.base());
    let creators: Vec<Value> = rows
        .iter()
        .map(|c| {
            json!({"id": c.id, "email": c.email, "subject": c.subject, "name": c.name,
                   "label": label_of(c.subject.as_deref(), c.email.as_deref()),
                   "disabled": c.disabled,
                   "created_at": when(&c.created_at), "live_installs": c.live_installs})
        })
        .collect();
    Ok(ctx.render(
        "admin/creators",
        "creators",
        csrf,
        flash,
        json!({
            "creators": creators,
            "pager": pager(&path, &encode_query(&[("q", q.as_deref())]), page, total),
            "q": q,
            "search_path": path,
            "form": form,
            "error": error,
        }),
    ))
}

#[get("/admin/t/<_>/creators?<query..>")]
pub async fn list(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
    query: ListQuery,
) -> PageResult {
    let page = list_page(&ctx, db, &csrf, flash, &query, None).await?;
    Ok(Resp::Page(page))
}

#[post("/admin/t/<_>/creators", data = "<form>")]
pub async fn create(
    ctx: TenantCtx,
    db: &State<Db>,
    config: &State<AppConfig>,
    csrf: CsrfToken,
    form: CsrfForm<NewCreatorForm>,
) -> PageResult {
    ctx.require(Role::Admin)?;
    let email = form.email.trimmed();
    let password = form.password.as_str().to_string();
    let problem = match check_new_creator(&email, &password) {
        Err(CreateCreatorError::Invalid { field: "email", .. }) => {
            Some("Enter a valid email address.".to_string())
        }
        Err(CreateCreatorError::Invalid { message, .. }) => {
            Some(format!("Choose another password: {message}."))
        }
        _ => None,
    };
    let refuse = |error: String| async {
        let refused = Refused {
            form: json!({"email": email}),
            error,
        };
        let page = list_page(
            &ctx,
            db,
            &csrf,
            None,
            &ListQuery {
                q: None,
                page: None,
            },
            Some(refused),
        )
        .await?;
        Ok::<_, PageError>(Resp::Status((Status::BadRequest, page)))
    };
    if let Some(msg) = problem {
        return refuse(msg).await;
    }
    let hash = hash(config, password).await?;
    let tenant_id = ctx.tenant.id;
    let audit = ctx.audit("creator.created");
    let new_email = email.clone();
    let created = db
        .run(move |conn| {
            Ok::<_, Error>(EndUser::create_audited(
                conn, tenant_id, &new_email, &hash, audit,
            ))
        })
        .await?;
    match created {
        Ok(user) => Ok(ctx.flash_to(
            &format!("/creators/{}", user.id),
            format!("Creator {} created.", user.label()),
        )),
        Err(CreateCreatorError::EmailTaken) => {
            refuse("A creator with this email exists already.".to_string()).await
        }
        Err(CreateCreatorError::Invalid { message, .. }) => refuse(message).await,
        Err(CreateCreatorError::Db(e)) => Err(Error::from(e).into()),
    }
}

#[get("/admin/t/<_>/creators/<id>?<page>")]
pub async fn show(
    ctx: TenantCtx,
    id: &str,
    db: &State<Db>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
    page: Option<i64>,
) -> PageResult {
    let user = load_creator(db, &ctx, id).await?;
    let path = format!("{}/creators/{}", ctx.base(), user.id);
    let filter = InstallFilter {
        end_user_id: Some(user.id),
        ..Default::default()
    };
    let (installs, pager) =
        install_page(db, ctx.tenant.id, filter, page_number(page), &path).await?;
    Ok(Resp::Page(ctx.render(
        "admin/creator",
        "creators",
        &csrf,
        flash,
        json!({
            "creator": {"id": user.id, "email": user.email, "subject": user.subject,
                        "name": user.name, "label": user.label(), "disabled": user.disabled,
                        "created_at": when(&user.created_at)},
            "installs": installs,
            "pager": pager,
        }),
    )))
}

#[post("/admin/t/<_>/creators/<_>/disable", data = "<form>")]
pub async fn disable(
    ctx: TenantCtx,
    db: &State<Db>,
    creator: TenantCreator,
    form: CsrfForm<ConfirmForm>,
) -> PageResult {
    let TenantCreator(user) = creator;
    ctx.require(Role::Admin)?;
    form.confirm
        .require("disable this creator and revoke their installs")?;
    let tenant_id = ctx.tenant.id;
    let uid = user.id;
    let audit = ctx.audit("creator.disabled");
    let n = db
        .run(move |conn| EndUser::disable_audited(conn, tenant_id, uid, audit).map_err(Error::from))
        .await?
        .ok_or_else(PageError::not_found)?;
    Ok(ctx.flash_to(
        &format!("/creators/{uid}"),
        format!("{} is disabled; {n} install(s) revoked.", user.label()),
    ))
}

#[post("/admin/t/<_>/creators/<_>/enable", data = "<_form>")]
pub async fn enable(
    ctx: TenantCtx,
    db: &State<Db>,
    creator: TenantCreator,
    _form: CsrfForm<NoFields>,
) -> PageResult {
    let TenantCreator(user) = creator;
    ctx.require(Role::Admin)?;
    let tenant_id = ctx.tenant.id;
    let uid = user.id;
    let audit = ctx.audit("creator.enabled");
    db.run(move |conn| EndUser::enable_audited(conn, tenant_id, uid, audit).map_err(Error::from))
        .await?;
    Ok(ctx.flash_to(
        &format!("/creators/{uid}"),
        format!("{} can sign in again.", user.label()),
    ))
}

#[post("/admin/t/<_>/creators/<_>/password", data = "<form>")]
pub async fn password(
    ctx: TenantCtx,
    db: &State<Db>,
    config: &State<AppConfig>,
    creator: TenantCreator,
    form: CsrfForm<PasswordForm>,
) -> PageResult {
    let TenantCreator(user) = creator;
    ctx.require(Role::Admin)?;
    if user.subject.is_some() {
        return Ok(ctx.flash_error_to(
            &format!("/creators/{}", user.id),
            "This creator signs in with your own login service: kitauth holds no password for them.",
        ));
    }
    let password = form.password.as_str().to_string();
    if let Err(e) = validate_password(&password) {
        return Ok(ctx.flash_error_to(
            &format!("/creators/{}", user.id),
            format!("The password was not changed: {e}."),
        ));
    }
    let hash = hash(config, password).await?;
    let tenant_id = ctx.tenant.id;
    let uid = user.id;
    let audit = ctx.audit("creator.password_set").object("end_user", uid);
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<_, Error> {
            EndUser::set_password(conn, tenant_id, uid, &hash)?;
            audit.insert(conn)?;
            Ok(())
        })
    })
    .await?;
    Ok(ctx.flash_to(
        &format!("/creators/{uid}"),
        format!(
            "New password set for {}; their sessions were ended.",
            user.label()
        ),
    ))
}
