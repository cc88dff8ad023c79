//! API keys: list and revoke. A key cannot create keys (dashboard and
//! `kitauth api-key create` only).

use chrono::{DateTime, Utc};
use diesel::Connection;
use rocket::{get, post, State};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;

use super::apps::parse_id;
use super::{Answer, ApiResult, Problem, ReadKey, WriteKey};
use crate::db::models::ApiKey;
use crate::db::Db;

/// An API key as the API shows it (never its value).
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    #[schema(example = "7")]
    pub id: String,
    #[schema(example = "ci")]
    pub name: String,
    /// The first characters of the key.
    #[schema(example = "kak_Ab12")]
    pub hint: String,
    #[schema(example = json!(["read", "write"]))]
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[schema(example = "admin:owner@example.com")]
    pub created_by: String,
    /// active, expired or revoked.
    #[schema(example = "active")]
    pub status: String,
}

impl ApiKeyView {
    pub fn of(k: &ApiKey) -> ApiKeyView {
        ApiKeyView {
            id: k.id.to_string(),
            name: k.name.clone(),
            hint: k.hint.clone(),
            scopes: k.scopes.clone(),
            expires_at: k.expires_at,
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
            created_by: k.created_by.clone(),
            status: k.status(Utc::now()).to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    pub items: Vec<ApiKeyView>,
}

/// Lists the tenant's API keys.
#[utoipa::path(
    operation_id = "api_key_list",
    tag = "api-keys",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug")),
    responses(
        (status = 200, body = ApiKeyList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/api-keys")]
pub async fn list(t: &str, key: ReadKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let tenant_id = key.tenant_id();
    let keys = db
        .run(move |conn| ApiKey::list(conn, tenant_id).map_err(Problem::from))
        .await?;
    Ok(Answer::ok(ApiKeyList {
        items: keys.iter().map(ApiKeyView::of).collect(),
    }))
}

/// Revokes an API key at once (the calling key too, if it is that one).
#[utoipa::path(
    operation_id = "api_key_revoke",
    tag = "api-keys",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "key id")),
    responses(
        (status = 200, body = ApiKeyView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/api-keys/<id>/revoke")]
pub async fn revoke(t: &str, id: &str, key: WriteKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let tenant_id = key.tenant_id();
    let caller = key.0.clone();
    let row = db
        .run(move |conn| {
            conn.transaction(|conn| -> Result<_, Problem> {
                let found = ApiKey::find(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
                if ApiKey::revoke(conn, tenant_id, id)? > 0 {
                    caller
                        .audit(
                            "api_key.revoked",
                            "api_key",
                            id,
                            json!({"name": found.name}),
                        )
                        .insert(conn)?;
                }
                ApiKey::find(conn, tenant_id, id)?.ok_or_else(Problem::not_found)
            })
        })
        .await?;
    Ok(Answer::ok(ApiKeyView::of(&row)))
}
