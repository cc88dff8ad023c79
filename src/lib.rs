//! kitauth: a hosted, multi-tenant OAuth 2.0 server for Kit Plugin OAuth.
//!
//! `build` assembles the whole application from a figment; `main.rs` and
//! the tests both use it, so tests exercise exactly what runs in production.
//!
//! Outside tests, no `unwrap`, `expect` or `panic!`: a panic on a request
//! path is a bug, so clippy refuses them (and CI runs clippy).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod db;
pub mod error;
pub mod gate;
pub mod input;
pub mod janitor;
pub mod logwriter;
pub mod metrics;
pub mod oauth;
pub mod ops;
pub mod params;
pub mod ratelimit;
pub mod redact;
pub mod stats;

use std::path::Path;
use std::time::Duration;

use rocket::fairing::{Fairing, Info, Kind};
use rocket::figment::Figment;
use rocket::fs::FileServer;
use rocket::http::{ContentType, Status};
use rocket::{catch, catchers, Build, Request, Response, Rocket};
use rocket_dyn_templates::Template;

use crate::auth::{ClientCache, TenantCache};
use crate::config::AppConfig;
use crate::db::models::{App, AppKey};
use crate::db::Db;
use crate::error::{ErrorCode, OAuthError, PageError};
use crate::metrics::{Metrics, RequestLog};
use crate::ratelimit::{ClientAuthLimits, RateLimiter};

/// Where a resource directory lives: as configured, else `./name`, else
/// beside the crate's manifest (so `cargo run` works from anywhere).
fn resource_dir(figment: &Figment, key: &str, name: &str) -> String {
    if let Ok(dir) = figment.extract_inner::<String>(key) {
        return dir;
    }
    if Path::new(name).is_dir() {
        return name.to_string();
    }
    format!("{}/{}", env!("CARGO_MANIFEST_DIR"), name)
}

/// Prepares the database (create in debug, migrate always) and builds the
/// application. Errors are single lines meant for an operator.
pub fn build(figment: Figment) -> Result<Rocket<Build>, String> {
    config::check_release(&figment)?;
    let config = config::extract(&figment)?;
    let client_copies = config.client_copies;
    if config.create_database {
        db::create_database_if_missing(&config.database_url)?;
    }
    db::run_migrations(&config.database_url)?;
    let pool = db::build_pool(
        &config.database_url,
        config.db_pool_size,
        Duration::from_millis(config.db_timeout_ms),
    )?;
    let template_dir = resource_dir(&figment, "template_dir", "templates");
    let static_dir = resource_dir(&figment, "static_dir", "static");
    let figment = figment.merge(("template_dir", template_dir));
    let client_auth_limits = ClientAuthLimits::new(
        config.client_auth_max_failures,
        config.client_auth_ip_max_failures,
        Duration::from_secs(config.client_auth_window_secs),
    );
    let janitor = janitor::Janitor::from_config(&config);
    let api_limits = api::ApiLimits::from_config(&config);
    let login_starts = ratelimit::LoginStartLimits::new(config.login_requests_per_ip);
    Ok(rocket::custom(figment)
        .manage(Db::new(pool))
        .manage(config)
        .manage(TenantCache::default())
        .manage(ClientCache::<AppKey>::new(client_copies))
        .manage(ClientCache::<App>::new(client_copies))
        .manage(db::batch::Batcher::<oauth::introspect::AccessTokenLookups>::new(2))
        .manage(RateLimiter::default())
        .manage(ratelimit::AttemptLimiter::default())
        .manage(client_auth_limits)
        .manage(api_limits)
        .manage(login_starts)
        .manage(Metrics::default())
        .manage(stats::TokenStats::default())
        .manage(admin::reveal::Reveals::default())
        .attach(stats::StatsFlusher)
        .attach(Template::fairing())
        .attach(RequestLog)
        .attach(gate::BadInputGuard)
        .attach(SecurityHeaders)
        .attach(rocket::fairing::AdHoc::on_liftoff("announce", |rocket| {
            Box::pin(async move {
                let c = rocket.config();
                tracing::info!(
                    profile = %c.profile,
                    "kitauth listening on http://{}:{}",
                    c.address,
                    c.port
                );
            })
        }))
        .attach(janitor)
        .mount("/", oauth::routes())
        .mount("/", ops::routes())
        .mount("/", gate::routes())
        .mount("/", admin::routes())
        .mount("/", api::routes())
        .mount("/static", FileServer::from(static_dir).rank(20))
        .register("/", catchers![default_catcher]))
}

/// Every error Rocket itself raises (unknown route, failed guard, body too
/// large) answered in the surface's own format.
#[catch(default)]
fn default_catcher(status: Status, req: &Request<'_>) -> CatcherResponse {
    if let Some(refusal) = auth::refusal::take(req) {
        return CatcherResponse::Refused(refusal);
    }
    if api::is_api_path(req.uri().path().as_str()) {
        return CatcherResponse::Problem(api::problem::caught(status, req));
    }
    if oauth::is_api_path(req.uri().path().as_str()) {
        let e = match status.code {
            404 => OAuthError::new(
                Status::NotFound,
                ErrorCode::InvalidRequest,
                "unknown tenant or endpoint",
            ),
            503 => OAuthError::unavailable(),
            500..=599 => OAuthError::server_error(),
            401 => OAuthError::invalid_client("client authentication failed"),
            code => OAuthError::new(
                status,
                ErrorCode::InvalidRequest,
                format!("the request was refused ({code})"),
            ),
        };
        CatcherResponse::OAuth(e)
    } else {
        let e = match status.code {
            404 => PageError::not_found(),
            503 => PageError::unavailable(),
            403 => PageError::forbidden("You do not have access to this page."),
            500..=599 => PageError::new(
                Status::InternalServerError,
                "Something went wrong",
                "The server could not complete the request.",
            ),
            _ => PageError::new(
                status,
                status.reason().unwrap_or("Error"),
                "The request could not be handled.",
            ),
        };
        CatcherResponse::Page(e)
    }
}

#[derive(rocket::Responder)]
enum CatcherResponse {
    OAuth(OAuthError),
    Page(PageError),
    Problem(api::Problem),
    Refused(auth::refusal::Refusal),
}

/// Security headers on every response; the HTML ones only on pages.
pub struct SecurityHeaders;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: data:; form-action 'self' https: http://127.0.0.1:* http://localhost:*; frame-ancestors 'none'; base-uri 'none'";

#[rocket::async_trait]
impl Fairing for SecurityHeaders {
    fn info(&self) -> Info {
        Info {
            name: "security headers",
            kind: Kind::Response,
        }
    }

    async fn on_response<'r>(&self, req: &'r Request<'_>, res: &mut Response<'r>) {
        res.set_raw_header("X-Content-Type-Options", "nosniff");
        res.set_raw_header("Referrer-Policy", "no-referrer");
        if res.content_type().is_some_and(|ct| ct == ContentType::HTML) {
            res.set_raw_header("Content-Security-Policy", CONTENT_SECURITY_POLICY);
            res.set_raw_header("X-Frame-Options", "DENY");
            res.set_raw_header("Cache-Control", "no-store");
        }
        if req
            .rocket()
            .state::<AppConfig>()
            .is_some_and(|c| c.secure_cookies)
        {
            res.set_raw_header(
                "Strict-Transport-Security",
                "max-age=31536000; includeSubDomains",
            );
        }
    }
}
