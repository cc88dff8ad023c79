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
    /// No consent page for this app's creators (first-party apps).
    pub skip_consent: bool,
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
    pub skip_consent: bool,
}

/// Bounds for the lifetimes an app can have, in seconds.
pub const ACCESS_TTL: (i32, i32) = (60, 7 * 24 * 3600);
pub const REFRESH_TTL: (i32, i32) = (3600, 2 * 365 * 24 * 3600);
pub const GRACE: (i32, i32) = (0, 3600);

impl AppSettings {
    /// The settings of a new app before anything is chosen: Kit's redirect
    /// URIs, scope `public`, the dashboard's default lifetimes.
    pub fn defaults(name: &str) -> AppSettings {
        AppSettings {
            name: name.to_string(),
            redirect_uris: KIT_REDIRECT_URIS.iter().map(|s| s.to_string()).collect(),
            allowed_scopes: vec!["public".to_string()],
            access_token_ttl_secs: 7200,
            refresh_token_ttl_secs: 90 * 86400,
            refresh_grace_secs: 60,
            refresh_without_secret: true,
            disabled: false,
            skip_consent: false,
        }
    }

    /// The settings as an audit row's details.
    pub fn audit_details(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "redirect_uris": self.redirect_uris,
            "scopes": self.allowed_scopes,
            "access_token_ttl_secs": self.access_token_ttl_secs,
            "refresh_token_ttl_secs": self.refresh_token_ttl_secs,
            "refresh_grace_secs": self.refresh_grace_secs,
            "refresh_without_secret": self.refresh_without_secret,
            "disabled": self.disabled,
            "skip_consent": self.skip_consent,
        })
    }

    /// The one check of an app's settings (dashboard, API, command line):
    /// on failure, the field and a message.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let n = self.name.trim().chars().count();
        if n == 0 || n > 200 || self.name.chars().any(char::is_control) {
            return Err((
                "name",
                "the name must have 1 to 200 characters and no control characters".into(),
            ));
        }
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > 20 {
            return Err(("redirect_uris", "register 1 to 20 redirect URIs".into()));
        }
        for uri in &self.redirect_uris {
            validate_redirect_uri(uri).map_err(|e| ("redirect_uris", e))?;
        }
        if self.allowed_scopes.is_empty() || self.allowed_scopes.len() > 50 {
            return Err(("allowed_scopes", "allow 1 to 50 scopes".into()));
        }
        for s in &self.allowed_scopes {
            validate_scope(s).map_err(|e| ("allowed_scopes", e))?;
        }
        let within = |field: &'static str, v: i32, (lo, hi): (i32, i32)| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err((field, format!("must be from {lo} to {hi} seconds")))
            }
        };
        within(
            "access_token_ttl_secs",
            self.access_token_ttl_secs,
            ACCESS_TTL,
        )?;
        within(
            "refresh_token_ttl_secs",
            self.refresh_token_ttl_secs,
            REFRESH_TTL,
        )?;
        within("refresh_grace_secs", self.refresh_grace_secs, GRACE)?;
        Ok(())
    }
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
    /// Creates an app with `settings` (checked by `AppSettings::validate`
    /// first) and its first client secret, in one transaction; returns the
    /// app and the secret's value, shown once. The dashboard, the API and
    /// the command line all create apps here.
    pub fn create_with_first_secret(
        conn: &mut PgConnection,
        tenant_id: i64,
        settings: &AppSettings,
    ) -> QueryResult<(App, String)> {
        conn.transaction(|conn| {
            let new = NewApp {
                tenant_id,
                name: settings.name.trim().to_string(),
                client_id: generate_client_id(),
                redirect_uris: settings.redirect_uris.clone(),
                allowed_scopes: settings.allowed_scopes.clone(),
            };
            let app = App::create(conn, &new)?;
            let mut settings = settings.clone();
            settings.name = new.name.clone();
            App::update(conn, tenant_id, app.id, &settings)?;
            let (_, secret) = crate::db::models::ClientSecret::create(conn, tenant_id, app.id)?;
            let app = App::find(conn, tenant_id, app.id)?.ok_or(diesel::result::Error::NotFound)?;
            Ok((app, secret))
        })
    }

    /// `create_with_first_secret` with its `app.created` audit row (the
    /// settings, skip consent included, and the client id), in one
    /// transaction; `audit` carries the caller (dashboard and API).
    pub fn create_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        settings: &AppSettings,
        audit: crate::db::models::NewAuditEvent,
    ) -> QueryResult<(App, String)> {
        conn.transaction(|conn| {
            let (app, secret) = App::create_with_first_secret(conn, tenant_id, settings)?;
            let mut details = settings.audit_details();
            details["name"] = app.name.clone().into();
            details["client_id"] = app.client_id.clone().into();
            audit
                .action("app.created")
                .object("app", app.id)
                .merge_details(details)
                .insert(conn)?;
            Ok((app, secret))
        })
    }

    /// The app's entity tag for `If-Match`: changes with every update.
    pub fn etag(&self) -> String {
        format!("\"{:x}-{:x}\"", self.id, self.updated_at.timestamp_micros())
    }

    /// Reads the app and locks its row until the transaction ends.
    pub fn find_for_update(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
    ) -> QueryResult<Option<App>> {
        apps::table
            .filter(apps::tenant_id.eq(tenant_id))
            .filter(apps::id.eq(id))
            .select(App::as_select())
            .for_no_key_update()
            .first(conn)
            .optional()
    }

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

    /// Changes an app's settings with its audit rows, in the caller's
    /// transaction (dashboard and API): `app.disabled`, `app.enabled` or
    /// `app.updated` with the new settings, and `app.skip_consent_changed`
    /// when the consent choice changed. `audit` carries the caller.
    pub fn update_audited(
        conn: &mut PgConnection,
        old: &App,
        settings: &AppSettings,
        audit: crate::db::models::NewAuditEvent,
    ) -> QueryResult<usize> {
        let n = App::update(conn, old.tenant_id, old.id, settings)?;
        let action = match (old.disabled, settings.disabled) {
            (false, true) => "app.disabled",
            (true, false) => "app.enabled",
            _ => "app.updated",
        };
        if old.skip_consent != settings.skip_consent {
            audit
                .clone()
                .action("app.skip_consent_changed")
                .object("app", old.id)
                .merge_details(serde_json::json!({"skip_consent": settings.skip_consent}))
                .insert(conn)?;
        }
        audit
            .action(action)
            .object("app", old.id)
            .merge_details(settings.audit_details())
            .insert(conn)?;
        Ok(n)
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
