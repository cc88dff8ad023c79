//! Installs (grants): list with filters and cursor paging, get one with its
//! token history (hints and times only), revoke one, all of an app's, all
//! of a creator's, through the dashboard's revocation flows.

use chrono::{DateTime, Utc};
use rocket::{get, post, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::apps::parse_id;
use super::{Answer, ApiResult, Problem, QueryFilter, ReadKey, WriteKey};
use crate::db::models::dashboard::{self, InstallQuery, InstallRow, InstallStatus};
use crate::db::models::paging::{PageRequest, PagingError};
use crate::db::models::{AccessToken, EndUser, Grant, RefreshToken};
use crate::db::Db;

impl From<PagingError> for Problem {
    fn from(e: PagingError) -> Problem {
        Problem::invalid(e.field, e.message)
    }
}

/// Checks `limit` and `cursor` of a list request.
pub fn page_of(cursor: Option<&str>, limit: Option<&str>) -> Result<PageRequest, Problem> {
    let limit = match limit {
        None => None,
        Some(l) => Some(
            l.parse::<i64>()
                .map_err(|_| Problem::invalid("limit", "the limit must be a whole number"))?,
        ),
    };
    Ok(PageRequest::parse(cursor, limit)?)
}

/// An RFC 3339 time of a query parameter.
pub fn time_of(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, Problem> {
    raw.map(|s| {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| Problem::invalid(field, "an RFC 3339 time, e.g. 2026-12-01T00:00:00Z"))
    })
    .transpose()
}

/// An id of a query parameter (an unknown id filters to nothing).
pub fn id_of(field: &str, raw: Option<&str>) -> Result<Option<i64>, Problem> {
    raw.map(|s| {
        s.parse::<i64>()
            .map_err(|_| Problem::invalid(field, "an id is a whole number"))
    })
    .transpose()
}

/// The query parameters of the install list, as sent.
#[derive(Debug, rocket::form::FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstallParams {
    /// app id
    app: Option<String>,
    /// creator id
    creator: Option<String>,
    /// delegated sign-in: the tenant's subject of the creator (exact)
    subject: Option<String>,
    /// live, revoked or expired
    status: Option<String>,
    /// RFC 3339, inclusive
    created_after: Option<String>,
    /// RFC 3339, exclusive
    created_before: Option<String>,
    /// 1 to 200, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// next_cursor of the previous page
    cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallView {
    #[schema(example = "42")]
    pub id: String,
    #[schema(example = "12")]
    pub app_id: String,
    #[schema(example = "Newsletter sync")]
    pub app_name: String,
    #[schema(example = "5")]
    pub creator_id: String,
    /// The creator's email (a hosted account's; a subject's when given).
    #[schema(example = "creator@example.com")]
    pub creator_email: Option<String>,
    /// Delegated sign-in: the tenant's own id of the creator (`sub`).
    #[schema(example = "user-8841")]
    pub creator_subject: Option<String>,
    /// Delegated sign-in: the creator's name, when the tenant gave one.
    pub creator_name: Option<String>,
    #[schema(example = json!(["public"]))]
    pub scopes: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub refresh_expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    /// live, revoked or expired.
    #[schema(example = "live")]
    pub status: String,
}

impl InstallView {
    pub fn of(r: &InstallRow) -> InstallView {
        InstallView {
            id: r.id.to_string(),
            app_id: r.app_id.to_string(),
            app_name: r.app_name.clone(),
            creator_id: r.end_user_id.to_string(),
            creator_email: r.email.clone(),
            creator_subject: r.subject.clone(),
            creator_name: r.name.clone(),
            scopes: r.scopes.clone(),
            created_at: r.created_at,
            last_refreshed_at: r.last_refreshed_at,
            access_expires_at: r.access_expires_at,
            refresh_expires_at: r.refresh_expires_at,
            revoked_at: r.revoked_at,
            revoked_reason: r.revoked_reason.clone(),
            status: match r.status(Utc::now()) {
                "active" => "live".to_string(),
                s => s.to_string(),
            },
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallList {
    pub items: Vec<InstallView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

/// A token of an install's history: its hint and times, never its value.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenView {
    /// access or refresh.
    #[schema(example = "refresh")]
    pub kind: String,
    #[schema(example = "krt_Ab12")]
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InstallDetail {
    pub install: InstallView,
    /// Newest first.
    pub tokens: Vec<TokenView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    /// How many installs this call revoked.
    #[schema(example = 1)]
    pub revoked: usize,
}

/// Lists installs, newest first, with filters and cursor paging.
#[utoipa::path(
    operation_id = "install_list",
    tag = "installs",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), InstallParams),
    responses(
        (status = 200, body = InstallList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/installs")]
pub async fn list(
    t: &str,
    key: ReadKey,
    db: &State<Db>,
    filter: QueryFilter<InstallParams>,
) -> ApiResult {
    let _ = t;
    let QueryFilter(f) = filter;
    let query = InstallQuery {
        app_id: id_of("app", f.app.as_deref())?,
        end_user_id: id_of("creator", f.creator.as_deref())?,
        subject: f.subject.filter(|s| !s.is_empty()),
        status: f
            .status
            .as_deref()
            .map(|s| {
                InstallStatus::parse(s)
                    .ok_or_else(|| Problem::invalid("status", "live, revoked or expired"))
            })
            .transpose()?,
        created_after: time_of("created_after", f.created_after.as_deref())?,
        created_before: time_of("created_before", f.created_before.as_deref())?,
    };
    let page = page_of(f.cursor.as_deref(), f.limit.as_deref())?;
    let tenant_id = key.tenant_id();
    let rows = db
        .run(move |conn| {
            dashboard::installs_page(conn, tenant_id, &query, &page).map_err(Problem::from)
        })
        .await?;
    Ok(Answer::ok(InstallList {
        items: rows.items.iter().map(InstallView::of).collect(),
        next_cursor: rows.next_cursor,
    }))
}

/// One install with its token history (hints and times only).
#[utoipa::path(
    operation_id = "install_get",
    tag = "installs",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "install id")),
    responses(
        (status = 200, body = InstallDetail),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/installs/<id>")]
pub async fn get(t: &str, id: &str, key: ReadKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let detail = db
        .run(move |conn| -> Result<_, Problem> {
            let row = dashboard::install(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            let mut tokens: Vec<TokenView> = AccessToken::history(conn, tenant_id, id)?
                .into_iter()
                .map(|t| TokenView {
                    kind: "access".into(),
                    hint: t.hint,
                    created_at: t.created_at,
                    expires_at: t.expires_at,
                    used_at: None,
                    revoked_at: t.revoked_at,
                })
                .collect();
            tokens.extend(
                RefreshToken::history(conn, tenant_id, id)?
                    .into_iter()
                    .map(|t| TokenView {
                        kind: "refresh".into(),
                        hint: t.hint,
                        created_at: t.created_at,
                        expires_at: t.expires_at,
                        used_at: t.used_at,
                        revoked_at: t.revoked_at,
                    }),
            );
            tokens.sort_by_key(|t| std::cmp::Reverse(t.created_at));
            Ok(InstallDetail {
                install: InstallView::of(&row),
                tokens,
            })
        })
        .await?;
    Ok(Answer::ok(detail))
}

/// Revokes one install: its tokens stop working now.
#[utoipa::path(
    operation_id = "install_revoke",
    tag = "installs",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "install id")),
    responses(
        (status = 200, body = Revoked, example = json!({"revoked": 1})),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/installs/<id>/revoke")]
pub async fn revoke(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let audit = key.audit("grant.revoked", "grant", id, serde_json::json!({}));
    let changed = db
        .run(move |conn| {
            Grant::revoke_audited(conn, tenant_id, id, "api", audit).map_err(Problem::from)
        })
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Answer::ok(Revoked {
        revoked: usize::from(changed),
    }))
}

/// Revokes every install of an app (and voids its unused codes).
#[utoipa::path(
    operation_id = "install_revoke_app",
    tag = "installs",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id")),
    responses(
        (status = 200, body = Revoked, example = json!({"revoked": 3})),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps/<id>/installs/revoke")]
pub async fn revoke_app(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let audit = key.audit(
        "grant.revoked_all_for_app",
        "app",
        id,
        serde_json::json!({}),
    );
    let n = db
        .run(move |conn| -> Result<_, Problem> {
            crate::db::models::App::find(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            Ok(Grant::revoke_all_for_app_audited(
                conn, tenant_id, id, "api", audit,
            )?)
        })
        .await?;
    Ok(Answer::ok(Revoked { revoked: n }))
}

/// Revokes every install of a creator.
#[utoipa::path(
    operation_id = "install_revoke_creator",
    tag = "installs",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "creator id")),
    responses(
        (status = 200, body = Revoked, example = json!({"revoked": 2})),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/creators/<id>/installs/revoke")]
pub async fn revoke_creator(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let audit = key.audit(
        "grant.revoked_all_for_creator",
        "end_user",
        id,
        serde_json::json!({}),
    );
    let n = db
        .run(move |conn| -> Result<_, Problem> {
            EndUser::find(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            Ok(Grant::revoke_all_for_end_user_audited(
                conn, tenant_id, id, "api", audit,
            )?)
        })
        .await?;
    Ok(Answer::ok(Revoked { revoked: n }))
}
