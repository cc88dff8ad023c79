use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::apps;

/// The Kit redirect URIs every new app is registered with.
pub const KIT_REDIRECT_URIS: [&str; 2] = [
    "https://app.kit.com/apps/install",
    "https://app.kit.com/apps",
];

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = apps)]
pub struct App {
    pub id: i64,
    pub tenant_id: i64,
    pub name: String,
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub access_token_ttl_secs: i32,
    pub refresh_token_ttl_secs: i32,
    pub refresh_grace_secs: i32,
    pub refresh_without_secret: bool,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A new random number, set by triggers, whenever what client
    /// authentication reads of the app changes (migration 000004); see
    /// `auth::client_cache`. Internal: never shown on a page.
    #[serde(skip)]
    pub auth_version: i64,
}

/// The columns of an app that client authentication reads; introspection,
/// which needs nothing else of the app, selects only these.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = apps)]
pub struct AppKey {
    pub id: i64,
    pub client_id: String,
    pub refresh_without_secret: bool,
    pub disabled: bool,
    pub auth_version: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = apps)]
pub struct NewApp {
    pub tenant_id: i64,
    pub name: String,
    pub client_id: String,
    pub redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
}

/// The editable settings of an app.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = apps)]
pub struct AppSettings {
    pub name: String,
    pub redirect_uris: Vec<String>,
    pub allowed_scopes: Vec<String>,
    pub access_token_ttl_secs: i32,
    pub refresh_token_ttl_secs: i32,
    pub refresh_grace_secs: i32,
    pub refresh_without_secret: bool,
    pub disabled: bool,
}

/// A public client id: `kit_` and 24 random base64url characters.
pub fn generate_client_id() -> String {
    format!("kit_{}", crate::crypto::random_b64(18))
}

/// True when `id` has the shape `generate_client_id` gives; anything else
/// is an unknown client without a database look-up.
pub fn looks_like_client_id(id: &str) -> bool {
    id.len() == 28
        && id.starts_with("kit_")
        && id[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A redirect URI an app may register: absolute, https (or http on
/// loopback, for development), no fragment, no user info.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    let parsed = url::Url::parse(uri).map_err(|_| format!("{uri:?} is not an absolute URL"))?;
    let loopback = matches!(
        parsed.host_str(),
        Some("localhost") | Some("127.0.0.1") | Some("[::1]")
    );
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => return Err(format!("{uri:?} must use https")),
    }
    if parsed.fragment().is_some() {
        return Err(format!("{uri:?} must not contain a fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{uri:?} must not contain user information"));
    }
    if uri.len() > 2000 {
        return Err("redirect URI is too long".into());
    }
    Ok(())
}

/// A scope name: 1 to 64 visible ASCII characters other than space, comma and quote.
pub fn validate_scope(scope: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&scope.len())
        && scope
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"' && b != b'\\');
    if ok {
        Ok(())
    } else {
        Err(format!("{scope:?} is not a valid scope name"))
    }
}

impl App {
    pub fn create(conn: &mut PgConnection, new: &NewApp) -> QueryResult<App> {
        diesel::insert_into(apps::table)
            .values(new)
            .returning(App::as_returning())
            .get_result(conn)
    }

    pub fn find_by_client_id(
        conn: &mut PgConnection,
        tenant_id: i64,
        client_id: &str,
    ) -> QueryResult<Option<App>> {
        apps::table
            .filter(apps::tenant_id.eq(tenant_id))
            .filter(apps::client_id.eq(client_id))
            .select(App::as_select())
            .first(conn)
            .optional()
    }

    pub fn find(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<Option<App>> {
        apps::table
            .filter(apps::tenant_id.eq(tenant_id))
            .filter(apps::id.eq(id))
            .select(App::as_select())
            .first(conn)
            .optional()
    }

    pub fn list(conn: &mut PgConnection, tenant_id: i64) -> QueryResult<Vec<App>> {
        apps::table
            .filter(apps::tenant_id.eq(tenant_id))
            .order(apps::created_at.asc())
            .select(App::as_select())
            .load(conn)
    }

    pub fn update(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        settings: &AppSettings,
    ) -> QueryResult<usize> {
        diesel::update(
            apps::table
                .filter(apps::tenant_id.eq(tenant_id))
                .filter(apps::id.eq(id)),
        )
        .set((settings, apps::updated_at.eq(diesel::dsl::now)))
        .execute(conn)
    }

    /// True when `uri` is exactly one of the registered redirect URIs.
    pub fn has_redirect_uri(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }
}

impl App {
    /// Deletes an app (its secrets, grants and tokens go with it).
    pub fn delete(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<usize> {
        diesel::delete(
            apps::table
                .filter(apps::tenant_id.eq(tenant_id))
                .filter(apps::id.eq(id)),
        )
        .execute(conn)
    }
}
