//! The `kitauth` command line: serve (default), migrate, and the create
//! commands that take a new user from nothing to Kit's four URLs.

use std::io::BufRead;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Parser, Subcommand};
use diesel::prelude::*;
use serde_json::json;

use crate::config::{self, AppConfig};
use crate::crypto;
use crate::db;
use crate::db::models::end_user::{valid_email, validate_password, CreateCreatorError};
use crate::db::models::tenant::{valid_slug, CreatorSignin};
use crate::db::models::{
    Admin, ApiKey, ApiScope, App, AppSettings, EndUser, Membership, NewApiKey, NewAuditEvent,
    NewTenant, Role, Tenant,
};

#[derive(Debug, Parser)]
#[command(
    name = "kitauth",
    version,
    about = "Hosted OAuth 2.0 server for Kit Plugin OAuth"
)]
pub struct Cli {
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Manage tenants (app developers).
    #[command(subcommand)]
    Tenant(TenantCmd),
    /// Manage a tenant's Kit apps.
    #[command(subcommand)]
    App(AppCmd),
    /// Manage creator accounts for the hosted sign-in.
    #[command(subcommand)]
    User(UserCmd),
    /// Manage dashboard admins.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Manage a tenant's API keys.
    #[command(subcommand, name = "api-key")]
    ApiKey(ApiKeyCmd),
    /// Print the tenant API's OpenAPI 3.1 document.
    Openapi,
    /// Purge expired codes, old tokens, expired sessions and old audit
    /// events once, then exit (the server also does this periodically).
    Janitor,
}

#[derive(Debug, Subcommand)]
pub enum TenantCmd {
    /// Create a tenant.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
    },
    /// Choose who signs the tenant's creators in: `hosted` (kitauth's
    /// accounts) or `delegated` (the tenant's login page, `--login-url`).
    #[command(name = "sign-in")]
    SignIn {
        #[arg(long)]
        tenant: String,
        /// hosted or delegated.
        #[arg(long)]
        mode: String,
        /// The tenant's login page (delegated).
        #[arg(long)]
        login_url: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AppCmd {
    /// Register a Kit app; prints the client credentials and the URLs for Kit.
    Create(AppCreate),
}

#[derive(Debug, Args)]
pub struct AppCreate {
    #[arg(long)]
    pub tenant: String,
    #[arg(long)]
    pub name: String,
    /// A redirect URI (repeatable). Default: Kit's two.
    #[arg(long = "redirect-uri")]
    pub redirect_uris: Vec<String>,
    /// An allowed scope (repeatable). Default: `public`.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ApiKeyCmd {
    /// Create an API key; prints it once.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
        /// read, write or login (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a creator account; the password is read from standard input.
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCmd {
    /// Create a dashboard admin; the password is read from standard input.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        password_stdin: bool,
        /// Make the admin a member of this tenant.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = "owner", requires = "tenant")]
        role: String,
    },
}

/// What a command prints: text for people, or one JSON object.
pub struct Output {
    pub text: String,
    pub json: serde_json::Value,
}

fn read_password(password_stdin: bool) -> anyhow::Result<String> {
    if !password_stdin {
        bail!("pass --password-stdin and write the password to standard input");
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("could not read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    crate::input::check("password", &password).map_err(|e| anyhow!(e.description()))?;
    validate_password(&password).map_err(|e| anyhow!(e))?;
    Ok(password)
}

fn connect(config: &AppConfig) -> anyhow::Result<PgConnection> {
    if config.create_database {
        db::create_database_if_missing(&config.database_url).map_err(|e| anyhow!(e))?;
    }
    db::run_migrations(&config.database_url).map_err(|e| anyhow!(e))?;
    db::connect(&config.database_url).map_err(|_| {
        anyhow!(
            "cannot reach PostgreSQL at {}",
            db::describe_url(&config.database_url)
        )
    })
}

fn find_tenant(conn: &mut PgConnection, slug: &str) -> anyhow::Result<Tenant> {
    Tenant::find_by_slug(conn, slug)?.ok_or_else(|| anyhow!("unknown tenant {slug:?}"))
}

/// Creates an app with its first client secret, in one transaction (the
/// model's `App::create_with_first_secret`, with its checks).
pub fn create_app(
    conn: &mut PgConnection,
    tenant_id: i64,
    name: &str,
    redirect_uris: Vec<String>,
    scopes: Vec<String>,
) -> anyhow::Result<(App, String)> {
    let mut settings = AppSettings::defaults(name.trim());
    if !redirect_uris.is_empty() {
        settings.redirect_uris = redirect_uris;
    }
    if !scopes.is_empty() {
        settings.allowed_scopes = scopes;
    }
    settings.validate().map_err(|(field, e)| match field {
        "redirect_uris" => anyhow!("bad redirect URI: {e}"),
        "allowed_scopes" => anyhow!("bad scope: {e}"),
        other => anyhow!("bad {other}: {e}"),
    })?;
    Ok(App::create_with_first_secret(conn, tenant_id, &settings)?)
}

/// Every text argument of a command through the input layer, before any
/// database work (one line on refusal, as every other CLI error).
fn check_args(command: &Command) -> anyhow::Result<()> {
    let mut args: Vec<(&str, &str)> = Vec::new();
    match command {
        Command::Tenant(TenantCmd::Create { slug, name }) => {
            args.extend([("tenant_slug", slug.as_str()), ("name", name.as_str())]);
        }
        Command::App(AppCmd::Create(a)) => {
            args.extend([("tenant", a.tenant.as_str()), ("name", a.name.as_str())]);
            args.extend(a.redirect_uris.iter().map(|u| ("redirect_uri", u.as_str())));
            args.extend(a.scopes.iter().map(|s| ("scope", s.as_str())));
        }
        Command::User(UserCmd::Create { tenant, email, .. }) => {
            args.extend([("tenant", tenant.as_str()), ("email", email.as_str())]);
        }
        Command::Tenant(TenantCmd::SignIn {
            tenant,
            mode,
            login_url,
        }) => {
            args.extend([("tenant", tenant.as_str()), ("mode", mode.as_str())]);
            args.extend(login_url.iter().map(|u| ("login_url", u.as_str())));
        }
        Command::Admin(AdminCmd::Create {
            email,
            tenant,
            role,
            ..
        }) => {
            args.extend([("email", email.as_str()), ("role", role.as_str())]);
            args.extend(tenant.iter().map(|t| ("tenant", t.as_str())));
        }
        _ => {}
    }
    for (field, value) in args {
        crate::input::check(field, value).map_err(|e| anyhow!(e.description()))?;
    }
    Ok(())
}

/// Runs one non-serve command and returns what to print.
pub fn run(command: Command, config: &AppConfig) -> anyhow::Result<Output> {
    check_args(&command)?;
    match command {
        Command::Serve => unreachable_serve(),
        Command::Migrate => migrate(config),
        Command::Janitor => janitor(config),
        Command::Openapi => openapi(),
        Command::ApiKey(ApiKeyCmd::Create {
            tenant,
            name,
            scopes,
            expires_in_days,
        }) => api_key_create(config, &tenant, name, &scopes, expires_in_days),
        Command::Tenant(TenantCmd::Create { slug, name }) => tenant_create(config, &slug, &name),
        Command::Tenant(TenantCmd::SignIn {
            tenant,
            mode,
            login_url,
        }) => tenant_sign_in(config, &tenant, &mode, login_url.as_deref()),
        Command::App(AppCmd::Create(args)) => app_create(config, args),
        Command::User(UserCmd::Create {
            tenant,
            email,
            password_stdin,
        }) => user_create(config, &tenant, &email, password_stdin),
        Command::Admin(AdminCmd::Create {
            email,
            password_stdin,
            tenant,
            role,
        }) => admin_create(config, &email, password_stdin, tenant, &role),
    }
}

/// A unique violation as the one line that names what exists already;
/// any other database error as it is.
fn exists_already(e: diesel::result::Error, what: impl FnOnce() -> String) -> anyhow::Error {
    match e {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        ) => anyhow!(what()),
        other => anyhow!(other),
    }
}

fn migrate(config: &AppConfig) -> anyhow::Result<Output> {
    if config.create_database {
        db::create_database_if_missing(&config.database_url).map_err(|e| anyhow!(e))?;
    }
    let n = db::run_migrations(&config.database_url).map_err(|e| anyhow!(e))?;
    Ok(Output {
        text: format!("applied {n} migration(s); the database is up to date"),
        json: json!({"applied": n}),
    })
}

fn janitor(config: &AppConfig) -> anyhow::Result<Output> {
    let mut conn = connect(config)?;
    let report = crate::janitor::purge(
        &mut conn,
        crate::janitor::Retention::from_config(config),
        chrono::Utc::now(),
        crate::janitor::BATCH,
    )?;
    Ok(Output {
        text: format!(
            "janitor: deleted {} authorization code(s), {} access token(s), {} refresh token(s), {} creator session(s), {} admin session(s), {} audit event(s), {} idempotency key(s), {} login request(s), {} remembered login(s)",
            report.authorization_codes,
            report.access_tokens,
            report.refresh_tokens,
            report.end_user_sessions,
            report.admin_sessions,
            report.audit_events,
            report.api_idempotency,
            report.login_requests,
            report.login_sessions
        ),
        json: json!(report),
    })
}

fn openapi() -> anyhow::Result<Output> {
    let doc = crate::api::openapi();
    let json = serde_json::to_value(&doc)?;
    Ok(Output {
        text: serde_json::to_string_pretty(&json)?,
        json,
    })
}

fn api_key_create(
    config: &AppConfig,
    tenant: &str,
    name: String,
    scopes: &[String],
    expires_in_days: Option<i64>,
) -> anyhow::Result<Output> {
    let scopes = scopes
        .iter()
        .map(|s| {
            ApiScope::parse(s)
                .ok_or_else(|| anyhow!("unknown scope {s:?}: use read, write or login"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let new = NewApiKey {
        name,
        scopes,
        expires_in_days,
        created_by: "cli".into(),
    };
    new.validate().map_err(|e| anyhow!(e))?;
    let mut conn = connect(config)?;
    let tenant = find_tenant(&mut conn, tenant)?;
    let (key, value) = conn.transaction(|conn| {
        let (key, value) = ApiKey::create(conn, tenant.id, &new)?;
        NewAuditEvent::new(tenant.id, "cli", "api_key.created")
            .object("api_key", key.id)
            .details(json!({"name": key.name, "scopes": key.scopes}))
            .insert(conn)?;
        Ok::<_, diesel::result::Error>((key, value))
    })?;
    Ok(Output {
        text: format!(
            "created API key {:?} ({}) in tenant {}\n\n  {value}\n\nThe key is shown this once: store it now.",
            key.name,
            key.scopes.join(", "),
            tenant.slug
        ),
        json: json!({
            "id": key.id.to_string(),
            "name": key.name,
            "scopes": key.scopes,
            "expires_at": key.expires_at,
            "key": value,
        }),
    })
}

fn tenant_create(config: &AppConfig, slug: &str, name: &str) -> anyhow::Result<Output> {
    if !valid_slug(slug) {
        bail!("the slug must be 2 to 40 characters of a-z, 0-9 and '-'");
    }
    let name = name.trim();
    if name.is_empty() || name.len() > 200 {
        bail!("the tenant name must have 1 to 200 characters");
    }
    let mut conn = connect(config)?;
    let tenant = Tenant::create(&mut conn, &NewTenant { slug, name }).map_err(|e| {
        exists_already(e, || {
            format!("a tenant with the slug {slug:?} exists already")
        })
    })?;
    Ok(Output {
        text: format!("created tenant {} ({})", tenant.slug, tenant.name),
        json: json!({"id": tenant.id, "slug": tenant.slug, "name": tenant.name}),
    })
}

fn tenant_sign_in(
    config: &AppConfig,
    slug: &str,
    mode: &str,
    login_url: Option<&str>,
) -> anyhow::Result<Output> {
    let signin = CreatorSignin::parse(mode, login_url, config.allow_private_networks)
        .map_err(|(field, message)| anyhow::anyhow!("{field}: {message}"))?;
    let mut conn = connect(config)?;
    let tenant = find_tenant(&mut conn, slug)?;
    let audit =
        NewAuditEvent::new(tenant.id, "cli", "tenant.signin_changed").object("tenant", tenant.id);
    let tenant = Tenant::set_signin(&mut conn, tenant.id, &signin, audit)?;
    let signin = tenant.signin();
    Ok(Output {
        text: match signin.login_url() {
            Some(url) => format!("{}: creators sign in at {url} (delegated)", tenant.slug),
            None => format!(
                "{}: creators sign in with kitauth's hosted accounts",
                tenant.slug
            ),
        },
        json: json!({"slug": tenant.slug, "creator_signin": signin.mode(), "login_url": signin.login_url()}),
    })
}

fn app_create(config: &AppConfig, args: AppCreate) -> anyhow::Result<Output> {
    let mut conn = connect(config)?;
    let tenant = find_tenant(&mut conn, &args.tenant)?;
    let (app, secret) = create_app(
        &mut conn,
        tenant.id,
        &args.name,
        args.redirect_uris,
        args.scopes,
    )?;
    let urls = config.kit_urls(&tenant.slug);
    let mut text = format!(
        "created app {:?} in tenant {}\n\nPaste these into Kit (app settings, Authentication tab, Plugin OAuth):\n",
        app.name, tenant.slug
    );
    let mut obj = serde_json::Map::new();
    obj.insert("client_id".into(), json!(app.client_id));
    obj.insert("client_secret".into(), json!(secret));
    for (key, label, url) in &urls {
        if *key != "introspection_url" {
            text.push_str(&format!("  {:<19}{}\n", format!("{label}:"), url));
        }
        obj.insert(key.to_string(), json!(url));
    }
    text.push_str(&format!("  {:<19}{}\n", "Client ID:", app.client_id));
    text.push_str(&format!("  {:<19}{}\n", "Client secret:", secret));
    text.push_str("\nThe client secret is shown this once: store it now.\n");
    text.push_str(&format!(
        "Your backend checks Bearer tokens at {} (client credentials as HTTP Basic).",
        urls[4].2
    ));
    Ok(Output {
        text,
        json: serde_json::Value::Object(obj),
    })
}

fn user_create(
    config: &AppConfig,
    tenant: &str,
    email: &str,
    password_stdin: bool,
) -> anyhow::Result<Output> {
    if !valid_email(email) {
        bail!("{email:?} is not a valid email address");
    }
    let password = read_password(password_stdin)?;
    let mut conn = connect(config)?;
    let tenant = find_tenant(&mut conn, tenant)?;
    let hash = crypto::hash_password(&password, config.bcrypt_cost)?;
    let audit = NewAuditEvent::new(tenant.id, "cli", "creator.created");
    let user =
        EndUser::create_audited(&mut conn, tenant.id, email, &hash, audit).map_err(
            |e| match e {
                CreateCreatorError::EmailTaken => anyhow!(
                    "a creator with this email exists already in {}",
                    tenant.slug
                ),
                CreateCreatorError::Invalid { message, .. } => anyhow!(message),
                CreateCreatorError::Db(e) => anyhow!(e),
            },
        )?;
    Ok(Output {
        text: format!("created creator {} in tenant {}", user.label(), tenant.slug),
        json: json!({"id": user.id, "tenant": tenant.slug, "email": user.email}),
    })
}

fn admin_create(
    config: &AppConfig,
    email: &str,
    password_stdin: bool,
    tenant: Option<String>,
    role: &str,
) -> anyhow::Result<Output> {
    if !valid_email(email) {
        bail!("{email:?} is not a valid email address");
    }
    let role =
        Role::parse(role).ok_or_else(|| anyhow!("the role must be owner, admin or viewer"))?;
    let password = read_password(password_stdin)?;
    let mut conn = connect(config)?;
    let tenant = tenant
        .map(|slug| find_tenant(&mut conn, &slug))
        .transpose()?;
    let hash = crypto::hash_password(&password, config.bcrypt_cost)?;
    let admin = conn
        .transaction(|conn| {
            let admin = Admin::create(conn, email, &hash)?;
            if let Some(t) = &tenant {
                Membership::add(conn, t.id, admin.id, role)?;
            }
            Ok::<_, diesel::result::Error>(admin)
        })
        .map_err(|e| exists_already(e, || "an admin with this email exists already".into()))?;
    let membership = tenant
        .as_ref()
        .map(|t| format!(" ({} of {})", role.as_str(), t.slug))
        .unwrap_or_default();
    Ok(Output {
        text: format!("created admin {}{membership}", admin.email),
        json: json!({
            "id": admin.id,
            "email": admin.email,
            "tenant": tenant.as_ref().map(|t| t.slug.clone()),
            "role": tenant.as_ref().map(|_| role.as_str()),
        }),
    })
}

fn unreachable_serve() -> anyhow::Result<Output> {
    bail!("serve is handled by main")
}

/// Loads the configuration the same way the server does.
pub fn load_config() -> anyhow::Result<(rocket::figment::Figment, AppConfig)> {
    let figment = config::figment();
    config::check_release(&figment).map_err(|e| anyhow!(e))?;
    let cfg = config::extract(&figment).map_err(|e| anyhow!(e))?;
    Ok((figment, cfg))
}
