//! Creators (the hosted accounts): list (paged), get, create, disable,
//! enable, through the dashboard's creator flows.

use chrono::{DateTime, Utc};
use rocket::{get, post, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::apps::parse_id;
use super::installs::page_of;
use super::{idempotency, Answer, ApiJson, ApiResult, IdempotencyKey, Problem, ReadKey, WriteKey};
use crate::config::AppConfig;
use crate::crypto;
use crate::db::models::dashboard::{self, CreatorRow};
use crate::db::models::end_user::{check_new_creator, CreateCreatorError};
use crate::db::models::EndUser;
use crate::db::Db;

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorView {
    #[schema(example = "5")]
    pub id: String,
    /// A hosted account's email; a subject's when the tenant gave one.
    #[schema(example = "creator@example.com")]
    pub email: Option<String>,
    /// Delegated sign-in: the tenant's own id of this creator (`sub`).
    pub subject: Option<String>,
    /// Delegated sign-in: the name the tenant gave.
    pub name: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Installs not revoked.
    #[schema(example = 1)]
    pub live_installs: i64,
}

impl CreatorView {
    fn of(c: &CreatorRow) -> CreatorView {
        CreatorView {
            id: c.id.to_string(),
            email: c.email.clone(),
            subject: c.subject.clone(),
            name: c.name.clone(),
            disabled: c.disabled,
            created_at: c.created_at,
            live_installs: c.live_installs,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatorList {
    pub items: Vec<CreatorView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCreator {
    #[schema(example = "creator@example.com")]
    pub email: String,
    /// 10 to 72 bytes.
    #[schema(example = "correct horse battery")]
    pub password: String,
}

fn refuse(e: CreateCreatorError) -> Problem {
    match e {
        CreateCreatorError::Invalid { field, message } => Problem::invalid(field, message),
        CreateCreatorError::EmailTaken => {
            Problem::invalid("email", "a creator with this email exists already")
        }
        CreateCreatorError::Db(e) => Problem::from(e),
    }
}

async fn load(db: &Db, tenant_id: i64, id: &str) -> Result<CreatorRow, Problem> {
    let id = parse_id(id)?;
    db.run(move |conn| dashboard::creator(conn, tenant_id, id).map_err(Problem::from))
        .await?
        .ok_or_else(Problem::not_found)
}

/// Lists creators, newest first, with cursor paging.
#[utoipa::path(
    operation_id = "creator_list",
    tag = "creators",
    security(("api_key" = ["read"])),
    params(
        ("t" = String, Path, description = "tenant slug"),
        ("email" = Option<String>, Query, description = "part of the email address, subject or name"),
        ("limit" = Option<i64>, Query, description = "1 to 200, default 50", minimum = 1, maximum = 200),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses(
        (status = 200, body = CreatorList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/creators?<email>&<limit>&<cursor>")]
pub async fn list(
    t: &str,
    key: ReadKey,
    db: &State<Db>,
    email: Option<&str>,
    limit: Option<&str>,
    cursor: Option<&str>,
) -> ApiResult {
    let _ = t;
    let page = page_of(cursor, limit)?;
    let email = email
        .map(|e| e.trim().chars().take(254).collect::<String>())
        .filter(|e| !e.is_empty() && !e.contains('\0'));
    let tenant_id = key.tenant_id();
    let rows = db
        .run(move |conn| {
            dashboard::creators_page(conn, tenant_id, email.as_deref(), &page)
                .map_err(Problem::from)
        })
        .await?;
    Ok(Answer::ok(CreatorList {
        items: rows.items.iter().map(CreatorView::of).collect(),
        next_cursor: rows.next_cursor,
    }))
}

/// One creator.
#[utoipa::path(
    operation_id = "creator_get",
    tag = "creators",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "creator id")),
    responses(
        (status = 200, body = CreatorView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/creators/<id>")]
pub async fn get(t: &str, id: &str, key: ReadKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let row = load(db, key.tenant_id(), id).await?;
    Ok(Answer::ok(CreatorView::of(&row)))
}

/// Creates a hosted creator account.
#[utoipa::path(
    operation_id = "creator_create",
    tag = "creators",
    security(("api_key" = ["write"])),
    params(
        ("t" = String, Path, description = "tenant slug"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key and body within 24 h: the first answer"),
    ),
    request_body(content = CreateCreator, example = json!({"email": "creator@example.com", "password": "correct horse battery"})),
    responses(
        (status = 201, body = CreatorView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/creators", data = "<body>")]
pub async fn create(
    t: &str,
    key: WriteKey,
    idem: IdempotencyKey,
    body: ApiJson<CreateCreator>,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    let c = body.value;
    let email = c.email.trim().to_string();
    check_new_creator(&email, &c.password).map_err(refuse)?;
    let cost = config.bcrypt_cost;
    let password = c.password;
    let hash = rocket::tokio::task::spawn_blocking(move || crypto::hash_password(&password, cost))
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(Problem::server_error)?;
    let caller = key.0.clone();
    let digest = body.digest;
    db.run(move |conn| {
        idempotency::once(
            conn,
            caller.tenant_id(),
            idem.0.as_deref(),
            &digest,
            |conn| {
                let audit = caller.audit("creator.created", "end_user", 0, serde_json::json!({}));
                let user = EndUser::create_audited(conn, caller.tenant_id(), &email, &hash, audit)
                    .map_err(refuse)?;
                let view = CreatorView {
                    id: user.id.to_string(),
                    email: user.email,
                    subject: user.subject,
                    name: user.name,
                    disabled: user.disabled,
                    created_at: user.created_at,
                    live_installs: 0,
                };
                let answer = Answer::created(view);
                let stored = answer.body.clone();
                Ok((answer, stored))
            },
        )
    })
    .await
}

/// Disables a creator: their sessions end and their installs are revoked.
#[utoipa::path(
    operation_id = "creator_disable",
    tag = "creators",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "creator id")),
    responses(
        (status = 200, body = CreatorView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/creators/<id>/disable")]
pub async fn disable(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let audit = key.audit("creator.disabled", "end_user", id, serde_json::json!({}));
    let row = db
        .run(move |conn| -> Result<_, Problem> {
            EndUser::disable_audited(conn, tenant_id, id, audit)?.ok_or_else(Problem::not_found)?;
            dashboard::creator(conn, tenant_id, id)?.ok_or_else(Problem::not_found)
        })
        .await?;
    Ok(Answer::ok(CreatorView::of(&row)))
}

/// Lets a disabled creator sign in again.
#[utoipa::path(
    operation_id = "creator_enable",
    tag = "creators",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "creator id")),
    responses(
        (status = 200, body = CreatorView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/creators/<id>/enable")]
pub async fn enable(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let audit = key.audit("creator.enabled", "end_user", id, serde_json::json!({}));
    let row = db
        .run(move |conn| -> Result<_, Problem> {
            if !EndUser::enable_audited(conn, tenant_id, id, audit)? {
                return Err(Problem::not_found());
            }
            dashboard::creator(conn, tenant_id, id)?.ok_or_else(Problem::not_found)
        })
        .await?;
    Ok(Answer::ok(CreatorView::of(&row)))
}
