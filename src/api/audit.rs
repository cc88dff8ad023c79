//! Audit events: list with filters (kind exact or kind prefix, object, time
//! range) and cursor paging.

use chrono::{DateTime, Utc};
use rocket::{get, State};
use serde::Serialize;
use utoipa::ToSchema;

use super::installs::{page_of, time_of};
use super::{Answer, ApiResult, Problem, QueryFilter, ReadKey};
use crate::db::models::dashboard::{self, AuditQuery, AuditRow};
use crate::db::Db;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    #[schema(example = "812")]
    pub id: String,
    #[schema(example = "api_key:ci")]
    pub actor: String,
    #[schema(example = "grant.revoked")]
    pub kind: String,
    #[schema(example = "grant")]
    pub object_type: Option<String>,
    #[schema(example = "42")]
    pub object_id: Option<String>,
    #[schema(example = "203.0.113.9")]
    pub ip: Option<String>,
    #[schema(value_type = Object, example = json!({"api_key_id": "7"}))]
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl AuditEventView {
    fn of(r: AuditRow) -> AuditEventView {
        AuditEventView {
            id: r.id.to_string(),
            actor: r.actor,
            kind: r.action,
            object_type: r.object_type,
            object_id: r.object_id,
            ip: r.ip,
            details: serde_json::from_str(&r.details).unwrap_or_default(),
            created_at: r.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventList {
    pub items: Vec<AuditEventView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

fn text_of(field: &str, raw: Option<&str>) -> Result<Option<String>, Problem> {
    match raw {
        None => Ok(None),
        Some(s) if s.len() > 200 || s.contains('\0') => {
            Err(Problem::invalid(field, "at most 200 characters, no NUL"))
        }
        Some(s) => Ok(Some(s.to_string())),
    }
}

/// The query parameters of the audit list, as sent.
#[derive(Debug, rocket::form::FromForm, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// an action, exactly (e.g. grant.revoked)
    kind: Option<String>,
    /// a dotted prefix: client matches client.wrong_secret
    kind_prefix: Option<String>,
    /// e.g. app, grant, end_user
    object_type: Option<String>,
    /// the object's id
    object_id: Option<String>,
    /// RFC 3339, inclusive
    after: Option<String>,
    /// RFC 3339, exclusive
    before: Option<String>,
    /// 1 to 200, default 50
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
    /// next_cursor of the previous page
    cursor: Option<String>,
}

/// Lists audit events, newest first, with filters and cursor paging.
#[utoipa::path(
    operation_id = "audit_event_list",
    tag = "audit-events",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), AuditParams),
    responses(
        (status = 200, body = AuditEventList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/audit-events")]
pub async fn list(
    t: &str,
    key: ReadKey,
    db: &State<Db>,
    filter: QueryFilter<AuditParams>,
) -> ApiResult {
    let _ = t;
    let QueryFilter(f) = filter;
    let query = AuditQuery {
        kind: text_of("kind", f.kind.as_deref())?,
        kind_prefix: text_of("kind_prefix", f.kind_prefix.as_deref())?,
        object_type: text_of("object_type", f.object_type.as_deref())?,
        object_id: text_of("object_id", f.object_id.as_deref())?,
        after: time_of("after", f.after.as_deref())?,
        before: time_of("before", f.before.as_deref())?,
    };
    let page = page_of(f.cursor.as_deref(), f.limit.as_deref())?;
    let tenant_id = key.tenant_id();
    let rows = db
        .run(move |conn| {
            dashboard::audit_page(conn, tenant_id, &query, &page).map_err(Problem::from)
        })
        .await?;
    Ok(Answer::ok(AuditEventList {
        items: rows.items.into_iter().map(AuditEventView::of).collect(),
        next_cursor: rows.next_cursor,
    }))
}
