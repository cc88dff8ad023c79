//! Apps and their client secrets: the dashboard's rules and transactions
//! (`App::create_with_first_secret`, `AppSettings::validate`,
//! `ClientSecret::rotate`/`revoke`, `Grant::revoke_many`), through the API.

use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use rocket::{delete, get, patch, post, State};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::idempotency;
use super::{Answer, ApiJson, ApiResult, IdempotencyKey, IfMatch, Problem, ReadKey, WriteKey};
use crate::config::{AppConfig, KitPanel};
use crate::db::models::client_secret::grace_choice;
use crate::db::models::{App, AppSettings, ClientSecret, Grant};
use crate::db::Db;

/// An id from the path: a positive integer, else 404.
pub fn parse_id(raw: &str) -> Result<i64, Problem> {
    raw.parse::<i64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(Problem::not_found)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppView {
    #[schema(example = "12")]
    pub id: String,
    #[schema(example = "Newsletter sync")]
    pub name: String,
    #[schema(example = "kit_3q2Zb8hK1mXcTnQ0aWvR5yLp")]
    pub client_id: String,
    #[schema(example = json!(["https://app.kit.com/apps/install", "https://app.kit.com/apps"]))]
    pub redirect_uris: Vec<String>,
    #[schema(example = json!(["public"]))]
    pub allowed_scopes: Vec<String>,
    #[schema(example = 7200)]
    pub access_token_ttl_secs: i32,
    #[schema(example = 7776000)]
    pub refresh_token_ttl_secs: i32,
    #[schema(example = 60)]
    pub refresh_grace_secs: i32,
    pub refresh_without_secret: bool,
    pub disabled: bool,
    /// No consent page for this app's creators (first-party apps).
    pub skip_consent: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Send as `If-Match` to update only this version.
    #[schema(example = "\"c-63f1a2b3c4d5e\"")]
    pub etag: String,
    /// The Kit settings panel of the dashboard: the fields to paste into Kit.
    pub kit: KitPanel,
}

impl AppView {
    pub fn of(config: &AppConfig, slug: &str, a: &App) -> AppView {
        AppView {
            id: a.id.to_string(),
            name: a.name.clone(),
            client_id: a.client_id.clone(),
            redirect_uris: a.redirect_uris.clone(),
            allowed_scopes: a.allowed_scopes.clone(),
            access_token_ttl_secs: a.access_token_ttl_secs,
            refresh_token_ttl_secs: a.refresh_token_ttl_secs,
            refresh_grace_secs: a.refresh_grace_secs,
            refresh_without_secret: a.refresh_without_secret,
            disabled: a.disabled,
            skip_consent: a.skip_consent,
            created_at: a.created_at,
            updated_at: a.updated_at,
            etag: a.etag(),
            kit: config.kit_panel(slug, &a.client_id),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppList {
    pub items: Vec<AppView>,
}

/// A new app, with its first client secret shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppCreated {
    pub app: AppView,
    /// The first client secret: shown once. Null in a replayed answer.
    #[schema(example = "kcs_0b6uR3kq2zZgF1m9YcWnT4sLxVhAeJpDoQ7iKrU5tGw")]
    pub client_secret: Option<String>,
    /// True in an `Idempotency-Key` replay: the secret is not stored, so
    /// it is not in the replay (rotate if it was lost).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_redacted: Option<bool>,
}

/// The fields of a new app; omitted ones take the dashboard's defaults.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApp {
    #[schema(example = "Newsletter sync")]
    pub name: String,
    pub redirect_uris: Option<Vec<String>>,
    pub allowed_scopes: Option<Vec<String>>,
    pub access_token_ttl_secs: Option<i32>,
    pub refresh_token_ttl_secs: Option<i32>,
    pub refresh_grace_secs: Option<i32>,
    pub refresh_without_secret: Option<bool>,
    pub disabled: Option<bool>,
    /// No consent page for this app's creators (first-party apps).
    pub skip_consent: Option<bool>,
}

/// The fields to change; omitted ones keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateApp {
    pub name: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub allowed_scopes: Option<Vec<String>>,
    pub access_token_ttl_secs: Option<i32>,
    pub refresh_token_ttl_secs: Option<i32>,
    pub refresh_grace_secs: Option<i32>,
    pub refresh_without_secret: Option<bool>,
    pub disabled: Option<bool>,
    /// No consent page for this app's creators (first-party apps).
    pub skip_consent: Option<bool>,
}

fn apply(mut s: AppSettings, u: UpdateApp) -> AppSettings {
    if let Some(v) = u.name {
        s.name = v.trim().to_string();
    }
    if let Some(v) = u.redirect_uris {
        s.redirect_uris = v;
    }
    if let Some(v) = u.allowed_scopes {
        s.allowed_scopes = v;
    }
    if let Some(v) = u.access_token_ttl_secs {
        s.access_token_ttl_secs = v;
    }
    if let Some(v) = u.refresh_token_ttl_secs {
        s.refresh_token_ttl_secs = v;
    }
    if let Some(v) = u.refresh_grace_secs {
        s.refresh_grace_secs = v;
    }
    if let Some(v) = u.refresh_without_secret {
        s.refresh_without_secret = v;
    }
    if let Some(v) = u.disabled {
        s.disabled = v;
    }
    if let Some(v) = u.skip_consent {
        s.skip_consent = v;
    }
    s
}

fn settings_of(a: &App) -> AppSettings {
    AppSettings {
        name: a.name.clone(),
        redirect_uris: a.redirect_uris.clone(),
        allowed_scopes: a.allowed_scopes.clone(),
        access_token_ttl_secs: a.access_token_ttl_secs,
        refresh_token_ttl_secs: a.refresh_token_ttl_secs,
        refresh_grace_secs: a.refresh_grace_secs,
        refresh_without_secret: a.refresh_without_secret,
        disabled: a.disabled,
        skip_consent: a.skip_consent,
    }
}

fn check(s: &AppSettings) -> Result<(), Problem> {
    s.validate().map_err(|(f, m)| Problem::invalid(f, m))
}

/// Lists the tenant's apps.
#[utoipa::path(
    operation_id = "app_list",
    tag = "apps",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug")),
    responses(
        (status = 200, body = AppList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/apps")]
pub async fn list(t: &str, key: ReadKey, db: &State<Db>, config: &State<AppConfig>) -> ApiResult {
    let _ = t;
    let tenant_id = key.tenant_id();
    let apps = db
        .run(move |conn| App::list(conn, tenant_id).map_err(Problem::from))
        .await?;
    Ok(Answer::ok(AppList {
        items: apps
            .iter()
            .map(|a| AppView::of(config, &key.tenant.slug, a))
            .collect(),
    }))
}

async fn load(db: &Db, tenant_id: i64, id: &str) -> Result<App, Problem> {
    let id = parse_id(id)?;
    db.run(move |conn| App::find(conn, tenant_id, id).map_err(Problem::from))
        .await?
        .ok_or_else(Problem::not_found)
}

/// One app, with its `ETag`.
#[utoipa::path(
    operation_id = "app_get",
    tag = "apps",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id")),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/apps/<id>")]
pub async fn get(
    t: &str,
    id: &str,
    key: ReadKey,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    let app = load(db, key.tenant_id(), id).await?;
    Ok(Answer::ok(AppView::of(config, &key.tenant.slug, &app)).etag(app.etag()))
}

/// Registers an app; the answer holds its first client secret, once.
#[utoipa::path(
    operation_id = "app_create",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(
        ("t" = String, Path, description = "tenant slug"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key and body within 24 h: the first answer"),
    ),
    request_body(content = CreateApp, example = json!({"name": "Newsletter sync"})),
    responses(
        (status = 201, body = AppCreated),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps", data = "<body>")]
pub async fn create(
    t: &str,
    key: WriteKey,
    idem: IdempotencyKey,
    body: ApiJson<CreateApp>,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    let c = body.value;
    let mut s = AppSettings::defaults(c.name.trim());
    s = apply(
        s,
        UpdateApp {
            name: None,
            redirect_uris: c.redirect_uris,
            allowed_scopes: c.allowed_scopes,
            access_token_ttl_secs: c.access_token_ttl_secs,
            refresh_token_ttl_secs: c.refresh_token_ttl_secs,
            refresh_grace_secs: c.refresh_grace_secs,
            refresh_without_secret: c.refresh_without_secret,
            disabled: c.disabled,
            skip_consent: c.skip_consent,
        },
    );
    check(&s)?;
    let caller = key.0.clone();
    let config = config.inner().clone();
    let digest = body.digest;
    db.run(move |conn| {
        idempotency::once(
            conn,
            caller.tenant_id(),
            idem.0.as_deref(),
            &digest,
            |conn| {
                let audit = caller.audit("app.created", "app", 0, json!({}));
                let (app, secret) = App::create_audited(conn, caller.tenant_id(), &s, audit)?;
                let view = AppCreated {
                    app: AppView::of(&config, &caller.tenant.slug, &app),
                    client_secret: Some(secret),
                    secret_redacted: None,
                };
                let answer = Answer::created(view);
                let stored = idempotency::redact(&answer.body, &["client_secret"]);
                Ok((answer, stored))
            },
        )
    })
    .await
}

/// Changes an app's settings; with `If-Match`, only if it is unchanged.
#[utoipa::path(
    operation_id = "app_update",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(
        ("t" = String, Path, description = "tenant slug"),
        ("id" = String, Path, description = "app id"),
        ("If-Match" = Option<String>, Header, description = "the app's etag; 412 if it changed"),
    ),
    request_body(content = UpdateApp, example = json!({"name": "Newsletter sync (staging)"})),
    responses(
        (status = 200, body = AppView),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[patch("/t/<t>/api/v1/apps/<id>", data = "<body>")]
pub async fn update(
    t: &str,
    id: &str,
    key: WriteKey,
    if_match: IfMatch,
    body: ApiJson<UpdateApp>,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    change(id, key, if_match, db, config, |s| Ok(apply(s, body.value))).await
}

/// Shared by update, disable and enable: lock, If-Match, validate, update,
/// audit (`app.updated`, `app.disabled`, `app.enabled`), one transaction.
async fn change(
    id: &str,
    key: WriteKey,
    if_match: IfMatch,
    db: &Db,
    config: &AppConfig,
    edit: impl FnOnce(AppSettings) -> Result<AppSettings, Problem> + Send + 'static,
) -> ApiResult {
    let id = parse_id(id)?;
    let caller = key.0.clone();
    let config = config.clone();
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<Answer, Problem> {
            let tenant_id = caller.tenant_id();
            let app = App::find_for_update(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            if_match.check(&app.etag())?;
            let settings = edit(settings_of(&app))?;
            check(&settings)?;
            let audit = caller.audit("app.updated", "app", id, serde_json::json!({}));
            App::update_audited(conn, &app, &settings, audit)?;
            let app = App::find(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            Ok(Answer::ok(AppView::of(&config, &caller.tenant.slug, &app)).etag(app.etag()))
        })
    })
    .await
}

/// Disables an app: Kit's calls for it are refused until it is enabled.
#[utoipa::path(
    operation_id = "app_disable",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id"),
        ("If-Match" = Option<String>, Header, description = "the app's etag")),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps/<id>/disable")]
pub async fn disable(
    t: &str,
    id: &str,
    key: WriteKey,
    if_match: IfMatch,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    change(id, key, if_match, db, config, |mut s| {
        s.disabled = true;
        Ok(s)
    })
    .await
}

/// Enables a disabled app.
#[utoipa::path(
    operation_id = "app_enable",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id"),
        ("If-Match" = Option<String>, Header, description = "the app's etag")),
    responses(
        (status = 200, body = AppView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps/<id>/enable")]
pub async fn enable(
    t: &str,
    id: &str,
    key: WriteKey,
    if_match: IfMatch,
    db: &State<Db>,
    config: &State<AppConfig>,
) -> ApiResult {
    let _ = t;
    change(id, key, if_match, db, config, |mut s| {
        s.disabled = false;
        Ok(s)
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AppDeleted {
    #[schema(example = "12")]
    pub id: String,
    pub deleted: bool,
    /// Installs revoked with the app.
    #[schema(example = 3)]
    pub grants_revoked: usize,
}

/// Deletes an app and revokes every install of it.
#[utoipa::path(
    operation_id = "app_delete",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id"),
        ("If-Match" = Option<String>, Header, description = "the app's etag")),
    responses(
        (status = 200, body = AppDeleted),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 412, body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/t/<t>/api/v1/apps/<id>")]
pub async fn delete(
    t: &str,
    id: &str,
    key: WriteKey,
    if_match: IfMatch,
    db: &State<Db>,
) -> ApiResult {
    let _ = t;
    let id = parse_id(id)?;
    let caller = key.0.clone();
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<Answer, Problem> {
            let tenant_id = caller.tenant_id();
            let app = App::find_for_update(conn, tenant_id, id)?.ok_or_else(Problem::not_found)?;
            if_match.check(&app.etag())?;
            let ids = Grant::live_ids_for_app(conn, tenant_id, id)?;
            let revoked = Grant::revoke_many(conn, tenant_id, &ids, "app_deleted")?;
            App::delete(conn, tenant_id, id)?;
            caller
                .audit(
                    "app.deleted",
                    "app",
                    id,
                    json!({"name": app.name, "client_id": app.client_id, "grants_revoked": revoked}),
                )
                .insert(conn)?;
            Ok(Answer::ok(AppDeleted {
                id: id.to_string(),
                deleted: true,
                grants_revoked: revoked,
            }))
        })
    })
    .await
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretView {
    #[schema(example = "31")]
    pub id: String,
    #[schema(example = "kcs_0b6u")]
    pub hint: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    /// active, expiring (in a grace period), expired or revoked.
    #[schema(example = "active")]
    pub status: String,
}

impl SecretView {
    fn of(s: &ClientSecret) -> SecretView {
        SecretView {
            id: s.id.to_string(),
            hint: s.hint.clone(),
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
            status: s.status(Utc::now()).to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretList {
    pub items: Vec<SecretView>,
}

/// Lists an app's client secrets (hints only).
#[utoipa::path(
    operation_id = "app_list_secrets",
    tag = "apps",
    security(("api_key" = ["read"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id")),
    responses(
        (status = 200, body = SecretList),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/t/<t>/api/v1/apps/<id>/secrets")]
pub async fn list_secrets(t: &str, id: &str, key: ReadKey, db: &State<Db>) -> ApiResult {
    let _ = t;
    let tenant_id = key.tenant_id();
    let app = load(db, tenant_id, id).await?;
    let secrets = db
        .run(move |conn| ClientSecret::list_for_app(conn, tenant_id, app.id).map_err(Problem::from))
        .await?;
    Ok(Answer::ok(SecretList {
        items: secrets.iter().map(SecretView::of).collect(),
    }))
}

/// How long the older secrets stay valid after a rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    /// 0 (now), 3600, 86400 or 604800 seconds.
    #[schema(example = 86400)]
    pub grace_secs: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SecretCreated {
    pub secret: SecretView,
    /// The new client secret: shown once. Null in a replayed answer.
    #[schema(example = "kcs_0b6uR3kq2zZgF1m9YcWnT4sLxVhAeJpDoQ7iKrU5tGw")]
    pub client_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_redacted: Option<bool>,
}

/// Issues a new client secret; the older ones stay valid for `grace_secs`.
#[utoipa::path(
    operation_id = "app_rotate_secret",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id"),
        ("Idempotency-Key" = Option<String>, Header, description = "same key and body within 24 h: the first answer")),
    request_body(content = RotateSecret, example = json!({"grace_secs": 86400})),
    responses(
        (status = 201, body = SecretCreated),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps/<id>/secrets/rotate", data = "<body>")]
pub async fn rotate_secret(
    t: &str,
    id: &str,
    key: WriteKey,
    idem: IdempotencyKey,
    body: ApiJson<RotateSecret>,
    db: &State<Db>,
) -> ApiResult {
    let _ = t;
    let grace = body.value.grace_secs;
    if grace_choice(grace).is_none() {
        return Err(Problem::invalid(
            "grace_secs",
            "must be 0, 3600, 86400 or 604800",
        ));
    }
    let app = load(db, key.tenant_id(), id).await?;
    let caller = key.0.clone();
    let mut digest = body.digest;
    digest.extend_from_slice(format!("rotate {}", app.id).as_bytes());
    db.run(move |conn| {
        idempotency::once(
            conn,
            caller.tenant_id(),
            idem.0.as_deref(),
            &digest,
            |conn| {
                let (row, value) = ClientSecret::rotate(
                    conn,
                    caller.tenant_id(),
                    app.id,
                    Duration::seconds(grace),
                )?;
                caller
                    .audit(
                        "client_secret.rotated",
                        "client_secret",
                        row.id,
                        json!({"app_id": app.id, "hint": row.hint, "grace_secs": grace}),
                    )
                    .insert(conn)?;
                let answer = Answer::created(SecretCreated {
                    secret: SecretView::of(&row),
                    client_secret: Some(value),
                    secret_redacted: None,
                });
                let stored = idempotency::redact(&answer.body, &["client_secret"]);
                Ok((answer, stored))
            },
        )
    })
    .await
}

/// Revokes one client secret at once.
#[utoipa::path(
    operation_id = "app_revoke_secret",
    tag = "apps",
    security(("api_key" = ["write"])),
    params(("t" = String, Path, description = "tenant slug"), ("id" = String, Path, description = "app id"),
        ("sid" = String, Path, description = "secret id")),
    responses(
        (status = 200, body = SecretView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 429, body = Problem, content_type = "application/problem+json"),
        (status = 403, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/t/<t>/api/v1/apps/<id>/secrets/<sid>/revoke")]
pub async fn revoke_secret(
    t: &str,
    id: &str,
    sid: &str,
    key: WriteKey,
    db: &State<Db>,
) -> ApiResult {
    let _ = t;
    let sid = parse_id(sid)?;
    let app = load(db, key.tenant_id(), id).await?;
    let caller = key.0.clone();
    db.run(move |conn| {
        conn.transaction(|conn| -> Result<Answer, Problem> {
            let tenant_id = caller.tenant_id();
            if ClientSecret::revoke(conn, tenant_id, app.id, sid)? == 0 {
                return Err(Problem::not_found());
            }
            caller
                .audit(
                    "client_secret.revoked",
                    "client_secret",
                    sid,
                    json!({"app_id": app.id}),
                )
                .insert(conn)?;
            let row = ClientSecret::list_for_app(conn, tenant_id, app.id)?
                .into_iter()
                .find(|s| s.id == sid)
                .ok_or_else(Problem::not_found)?;
            Ok(Answer::ok(SecretView::of(&row)))
        })
    })
    .await
}
