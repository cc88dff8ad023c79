//! Typed settings, read from the Rocket.toml profile, `ROCKET_*` variables
//! and `DATABASE_URL`.

use rocket::figment::providers::Serialized;
use rocket::figment::Figment;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct AppConfig {
    /// Base of every URL kitauth prints or publishes.
    #[serde(default = "default_public_url")]
    pub public_url: String,
    pub database_url: String,
    #[serde(default = "default_bcrypt_cost")]
    pub bcrypt_cost: u32,
    /// Maximum connections in the r2d2 pool.
    #[serde(default = "default_pool_size")]
    pub db_pool_size: u32,
    /// How long a request waits for a pooled connection before answering 503.
    #[serde(default = "default_db_timeout_ms")]
    pub db_timeout_ms: u64,
    /// Create the database on start-up when it does not exist (debug only).
    #[serde(default)]
    pub create_database: bool,
    /// Self-service sign-up for tenant admins.
    #[serde(default)]
    pub admin_signup: bool,
    /// Mark cookies `Secure` and send HSTS (release).
    #[serde(default)]
    pub secure_cookies: bool,
    /// An admin session ends after this many hours without a request.
    #[serde(default = "default_admin_idle_hours")]
    pub admin_session_idle_hours: i64,
    /// An admin session ends this many days after sign-in, however active.
    #[serde(default = "default_admin_session_days")]
    pub admin_session_days: i64,
    /// Bearer token protecting `/metrics`; without one it answers loopback callers only.
    #[serde(default)]
    pub metrics_token: Option<String>,
    /// Failed client authentications allowed per (client_id, IP) in the window.
    #[serde(default = "default_client_auth_max_failures")]
    pub client_auth_max_failures: usize,
    /// Failed client authentications allowed per IP (any client_id) in the window.
    #[serde(default = "default_client_auth_ip_max_failures")]
    pub client_auth_ip_max_failures: usize,
    #[serde(default = "default_client_auth_window_secs")]
    pub client_auth_window_secs: u64,
    /// Keep in-memory copies of clients for introspection and the token
    /// endpoint (`auth::client_cache`); off, every request reads its
    /// client. The answers are the same either way (tests/oauth_rules.rs
    /// runs with both).
    #[serde(default = "default_true")]
    pub client_copies: bool,
    /// How often the background janitor runs; 0 turns it off.
    #[serde(default = "default_janitor_interval_secs")]
    pub janitor_interval_secs: u64,
    /// Expired or revoked tokens are kept this long, then purged.
    #[serde(default = "default_token_retention_days")]
    pub token_retention_days: u32,
    /// Audit events are kept this long, then purged.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
    /// Tenant API: requests allowed per key per minute, then 429.
    #[serde(default = "default_api_requests_per_minute")]
    pub api_requests_per_minute: usize,
    /// Tenant API: failed key authentications allowed per IP and tenant in
    /// `api_auth_window_secs`, then 429.
    #[serde(default = "default_api_auth_max_failures")]
    pub api_auth_max_failures: usize,
    #[serde(default = "default_client_auth_window_secs")]
    pub api_auth_window_secs: u64,
    /// URLs a tenant gives may point at a loopback host, over `http://`
    /// too (a delegated sign-in's `http://127.0.0.1` login page, say). Off
    /// by default and in release; on in the debug profile.
    #[serde(default)]
    pub allow_private_networks: bool,
    /// Delegated sign-in: login requests a tenant may have pending (not
    /// completed, not expired) at once; authorize answers 503 beyond.
    #[serde(default = "default_max_pending_login_requests")]
    pub max_pending_login_requests: i64,
    /// Delegated sign-in: login requests one IP may start at a tenant in
    /// 10 minutes; authorize answers 429 beyond.
    #[serde(default = "default_login_requests_per_ip")]
    pub login_requests_per_ip: usize,
}

fn default_login_requests_per_ip() -> usize {
    100
}

fn default_max_pending_login_requests() -> i64 {
    10_000
}

fn default_true() -> bool {
    true
}
fn default_api_requests_per_minute() -> usize {
    600
}
fn default_api_auth_max_failures() -> usize {
    20
}

fn default_client_auth_max_failures() -> usize {
    10
}
fn default_client_auth_ip_max_failures() -> usize {
    100
}
fn default_client_auth_window_secs() -> u64 {
    300
}
fn default_janitor_interval_secs() -> u64 {
    3600
}
fn default_token_retention_days() -> u32 {
    30
}
fn default_audit_retention_days() -> u32 {
    365
}

fn default_public_url() -> String {
    "http://127.0.0.1:8000".into()
}
fn default_bcrypt_cost() -> u32 {
    12
}
fn default_admin_idle_hours() -> i64 {
    12
}
fn default_admin_session_days() -> i64 {
    7
}
fn default_pool_size() -> u32 {
    6
}
fn default_db_timeout_ms() -> u64 {
    1500
}

impl AppConfig {
    pub fn public_url(&self) -> &str {
        self.public_url.trim_end_matches('/')
    }

    /// The base URL of one tenant's endpoints.
    pub fn tenant_url(&self, slug: &str) -> String {
        format!("{}/t/{}", self.public_url(), slug)
    }

    /// The URLs a tenant pastes into Kit, as (key, label, URL); the
    /// dashboard's Kit settings panel, `app create` and the API show these.
    pub fn kit_urls(&self, slug: &str) -> Vec<(&'static str, &'static str, String)> {
        let base = self.tenant_url(slug);
        vec![
            (
                "authorization_url",
                "Authorization URL",
                format!("{base}/oauth/authorize"),
            ),
            ("token_url", "Token URL", format!("{base}/oauth/token")),
            (
                "refresh_token_url",
                "Refresh token URL",
                format!("{base}/oauth/refresh"),
            ),
            ("revoke_url", "Revoke URL", format!("{base}/oauth/revoke")),
            (
                "introspection_url",
                "Introspection URL",
                format!("{base}/oauth/introspect"),
            ),
        ]
    }

    /// The Kit settings panel of an app: the fields pasted into Kit, in
    /// order (the four URLs, then the client ID), and the introspection URL
    /// for the tenant's backend.
    pub fn kit_panel(&self, slug: &str, client_id: &str) -> KitPanel {
        let urls = self.kit_urls(slug);
        let mut fields: Vec<KitField> = urls
            .iter()
            .filter(|(key, _, _)| *key != "introspection_url")
            .map(|(key, label, value)| KitField {
                key: key.to_string(),
                label: label.to_string(),
                value: value.clone(),
            })
            .collect();
        fields.push(KitField {
            key: "client_id".into(),
            label: "Client ID".into(),
            value: client_id.to_string(),
        });
        let introspection_url = urls
            .into_iter()
            .find(|(key, _, _)| *key == "introspection_url")
            .map(|(_, _, v)| v)
            .unwrap_or_default();
        KitPanel {
            fields,
            introspection_url,
        }
    }
}

/// One field of the Kit settings panel.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KitField {
    #[schema(example = "token_url")]
    pub key: String,
    #[schema(example = "Token URL")]
    pub label: String,
    #[schema(example = "https://auth.example.com/t/acme/oauth/token")]
    pub value: String,
}

/// What the dashboard's Kit settings panel shows for an app.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct KitPanel {
    pub fields: Vec<KitField>,
    #[schema(example = "https://auth.example.com/t/acme/oauth/introspect")]
    pub introspection_url: String,
}

/// Rocket's figment (Rocket.toml + `ROCKET_*`), with `DATABASE_URL` taking
/// precedence over the profile's `database_url`.
pub fn figment() -> Figment {
    let mut figment = rocket::Config::figment();
    if let Ok(url) = std::env::var("DATABASE_URL") {
        if !url.is_empty() {
            figment = figment.merge(Serialized::global("database_url", url));
        }
    }
    figment
}

/// In the release profile, refuse to start unless the settings that must
/// never be defaulted are set explicitly.
pub fn check_release(figment: &Figment) -> Result<(), String> {
    if figment.profile() != "release" {
        return Ok(());
    }
    // Rocket's own defaults include an all-zero secret key: that is not explicit.
    let secret_key_set = figment
        .extract_inner::<rocket::config::SecretKey>("secret_key")
        .is_ok_and(|k| !k.is_zero());
    let mut missing: Vec<&str> = Vec::new();
    if !secret_key_set {
        missing.push("secret_key");
    }
    missing.extend(
        ["database_url", "public_url"]
            .into_iter()
            .filter(|key| figment.find_value(key).is_err()),
    );
    // Without a token, /metrics answers every loopback-looking caller, and
    // behind a same-host reverse proxy that is every caller.
    let metrics_token_set = figment
        .extract_inner::<String>("metrics_token")
        .is_ok_and(|t| !t.trim().is_empty());
    if !metrics_token_set {
        missing.push("metrics_token");
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "the release profile needs explicit settings for: {} (set them in Rocket.toml [release] or as ROCKET_SECRET_KEY, DATABASE_URL, ROCKET_PUBLIC_URL, ROCKET_METRICS_TOKEN)",
            missing.join(", ")
        ))
    }
}

pub fn extract(figment: &Figment) -> Result<AppConfig, String> {
    figment.extract::<AppConfig>().map_err(|e| {
        let first = e.into_iter().next();
        match first {
            Some(err) => format!("configuration error: {err}"),
            None => "configuration error".to_string(),
        }
    })
}
