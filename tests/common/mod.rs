//! Test harness: a real PostgreSQL. A template database is migrated once
//! per migration set (guarded by an advisory lock, so parallel test
//! processes share it); each test gets its own database cloned from it and
//! dropped afterwards. Tests never share rows.
#![allow(dead_code)]

use std::sync::OnceLock;

use diesel::prelude::*;
use diesel_migrations::MigrationHarness;
use kitauth::db::models::{App, EndUser, NewTenant, Tenant};
use rocket::figment::Figment;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use sha2::{Digest, Sha256};

pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The URL of database `name` on the test server.
pub fn db_url(name: &str) -> String {
    let mut u = url::Url::parse(&server_url()).expect("TEST_DATABASE_URL is a URL");
    u.set_path(&format!("/{name}"));
    u.to_string()
}

fn migrations_hash() -> String {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("migrations dir")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    entries.sort();
    let mut h = Sha256::new();
    for e in entries {
        h.update(e.file_name().unwrap().to_string_lossy().as_bytes());
        if let Ok(sql) = std::fs::read(e.join("up.sql")) {
            h.update(&sql);
        }
    }
    hex(&h.finalize()[..6])
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Creates (once) the migrated template database and returns its name.
pub fn template_db() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        let name = format!("kitauth_tpl_{}", migrations_hash());
        let mut admin =
            kitauth::db::connect(&server_url()).expect("connect to the test PostgreSQL");
        diesel::sql_query("SELECT pg_advisory_lock(741852963)")
            .execute(&mut admin)
            .unwrap();
        #[derive(QueryableByName)]
        struct Exists {
            #[diesel(sql_type = diesel::sql_types::Bool)]
            e: bool,
        }
        let exists = diesel::sql_query(format!(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = '{name}') AS e"
        ))
        .get_result::<Exists>(&mut admin)
        .unwrap()
        .e;
        if !exists {
            let building = format!("{name}_building");
            diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}"))
                .execute(&mut admin)
                .unwrap();
            diesel::sql_query(format!("CREATE DATABASE {building}"))
                .execute(&mut admin)
                .unwrap();
            {
                let mut c = kitauth::db::connect(&db_url(&building)).unwrap();
                c.run_pending_migrations(kitauth::db::MIGRATIONS).unwrap();
            }
            diesel::sql_query(format!("ALTER DATABASE {building} RENAME TO {name}"))
                .execute(&mut admin)
                .unwrap();
        }
        diesel::sql_query("SELECT pg_advisory_unlock(741852963)")
            .execute(&mut admin)
            .unwrap();
        name
    })
}

/// A fresh database cloned from the template; dropped with the value.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub fn new() -> TestDb {
        let template = template_db();
        let name = format!("kitauth_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = kitauth::db::connect(&server_url()).unwrap();
        // CREATE DATABASE ... TEMPLATE fails while another session is
        // connected to the template; retry briefly.
        let mut last = None;
        for _ in 0..50 {
            match diesel::sql_query(format!("CREATE DATABASE {name} TEMPLATE {template}"))
                .execute(&mut admin)
            {
                Ok(_) => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
        if let Some(e) = last {
            panic!("could not create test database: {e}");
        }
        let url = db_url(&name);
        TestDb { name, url }
    }

    pub fn conn(&self) -> PgConnection {
        kitauth::db::connect(&self.url).unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = kitauth::db::connect(&server_url()) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// The figment every test app starts from: the debug profile with a
/// per-test database and cheap bcrypt. A request may wait up to 30 s for a
/// pooled connection: the concurrency tests fire 50 requests at a pool of
/// 12, and on a loaded CI machine opening the extra connections can take
/// longer than the production 1.5 s (CI answered 503 there). The 503 on a
/// pool time-out has its own test in tests/faults.rs.
pub fn test_figment(db: &TestDb) -> Figment {
    rocket::Config::figment()
        .merge(("database_url", db.url.clone()))
        .merge(("create_database", false))
        .merge(("bcrypt_cost", 4))
        .merge(("db_pool_size", 12))
        .merge(("db_timeout_ms", 30_000))
        .merge(("log_level", "off"))
        .merge(("secret_key", "hPRYyVRiMyxpw5sBB1XeCMN1kFsDCqKvBi2QJxBVHQk="))
        .merge(("public_url", "http://kitauth.test"))
        // The release profile refuses to start without a metrics token.
        .merge(
            rocket::figment::providers::Serialized::from("test-metrics-token", "release")
                .key("metrics_token"),
        )
}

pub struct TestApp {
    pub client: Client,
    pub db: TestDb,
}

impl TestApp {
    pub async fn new() -> TestApp {
        Self::with(|f| f).await
    }

    pub async fn with(adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
        let db = TestDb::new();
        let figment = adjust(test_figment(&db));
        let rocket = kitauth::build(figment).expect("build the app");
        let client = Client::tracked(rocket).await.expect("valid rocket");
        TestApp { client, db }
    }

    pub fn conn(&self) -> PgConnection {
        self.db.conn()
    }

    pub fn count(&self, sql: &str) -> i64 {
        #[derive(QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        diesel::sql_query(format!("SELECT ({sql})::bigint AS n"))
            .get_result::<N>(&mut self.conn())
            .unwrap()
            .n
    }

    /// A snapshot of every row in every table, to prove that a refused
    /// request changed nothing.
    pub fn snapshot(&self) -> String {
        #[derive(QueryableByName)]
        struct S {
            #[diesel(sql_type = diesel::sql_types::Text)]
            s: String,
        }
        let tables = [
            "tenants",
            "admins",
            "memberships",
            "admin_sessions",
            "apps",
            "client_secrets",
            "end_users",
            "end_user_sessions",
            "grants",
            "authorization_codes",
            "access_tokens",
            "refresh_tokens",
        ];
        let mut out = String::new();
        for t in tables {
            let s = diesel::sql_query(format!(
                "SELECT coalesce(string_agg(x::text, '\n' ORDER BY x::text), '') AS s FROM {t} x"
            ))
            .get_result::<S>(&mut self.conn())
            .unwrap()
            .s;
            out.push_str(t);
            out.push('\n');
            out.push_str(&s);
            out.push('\n');
        }
        out
    }
}

/// A tenant with one Kit app and one creator, as the command line makes them.
#[derive(Clone)]
pub struct Seed {
    pub tenant: Tenant,
    pub app: App,
    pub client_secret: String,
    pub user: EndUser,
    pub password: String,
}

impl Seed {
    /// The hosted creator's sign-in email.
    pub fn email(&self) -> &str {
        self.user
            .email
            .as_deref()
            .expect("a hosted creator has an email")
    }
}

/// One install of `seed`'s app by its creator, the way Kit makes it:
/// authorize, consent, code exchange. The access and refresh tokens.
pub async fn installed(app: &TestApp, seed: &Seed) -> (String, String) {
    let code = get_code(app, seed).await;
    let resp = kit_exchange(app, seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    let t = tokens_of(resp).await;
    (t.access_token, t.refresh_token)
}

/// A successful token answer, typed (it fails the test if it is not one).
pub async fn tokens_of(resp: LocalResponse<'_>) -> Tokens {
    let body = resp.into_string().await.unwrap_or_default();
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("not a token answer ({e}): {body}"))
}

pub fn seed_tenant(app: &TestApp, slug: &str) -> Seed {
    seed_in(&mut app.conn(), slug)
}

/// `seed_tenant` on any connection (a test that runs the real server).
pub fn seed_in(conn: &mut PgConnection, slug: &str) -> Seed {
    let tenant = Tenant::create(
        conn,
        &NewTenant {
            slug,
            name: &format!("Tenant {slug}"),
        },
    )
    .unwrap();
    let (kit_app, secret) = kitauth::cli::create_app(
        conn,
        tenant.id,
        "Acme for Kit",
        vec![],
        vec!["public".into(), "write".into()],
    )
    .unwrap();
    let password = "correct horse battery".to_string();
    let hash = kitauth::crypto::hash_password(&password, 4).unwrap();
    let user = EndUser::create(conn, tenant.id, &format!("creator@{slug}.example"), &hash).unwrap();
    Seed {
        tenant,
        app: kit_app,
        client_secret: secret,
        user,
        password,
    }
}

pub const KIT_INSTALL: &str = "https://app.kit.com/apps/install";
pub const KIT_APPS: &str = "https://app.kit.com/apps";

/// The value of `name="csrf_token"` in a page.
/// The CSRF token of the form on the page at `path` (the tracked client
/// keeps the cookie that goes with it).
pub async fn csrf_of_page(app: &TestApp, path: impl std::fmt::Display) -> String {
    let page = app.client.get(path.to_string()).dispatch().await;
    csrf_from(&page.into_string().await.unwrap_or_default())
}

pub fn csrf_from(html: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = html.find(marker).expect("page has a CSRF field") + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_string()
}

pub fn query_param(location: &str, key: &str) -> Option<String> {
    let u = url::Url::parse(location).ok()?;
    u.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

pub fn authorize_path(seed: &Seed, extra: &[(&str, &str)]) -> String {
    let mut pairs = vec![
        ("client_id", seed.app.client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", KIT_INSTALL),
    ];
    pairs.extend_from_slice(extra);
    format!("/t/{}/oauth/authorize?{}", seed.tenant.slug, form(&pairs))
}

/// Signs the creator in through the hosted page; the client keeps the cookie.
pub async fn sign_in(app: &TestApp, seed: &Seed) {
    let page = app
        .client
        .get(format!("/t/{}/login", seed.tenant.slug))
        .dispatch()
        .await;
    let csrf = csrf_from(&page.into_string().await.unwrap());
    let resp = app
        .client
        .post(format!("/t/{}/login", seed.tenant.slug))
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("email", seed.email()),
            ("password", &seed.password),
        ]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::SeeOther, "sign-in succeeds");
}

/// Runs authorize through sign-in and consent (Allow) and returns the
/// redirect Location.
pub async fn authorize(app: &TestApp, seed: &Seed, extra: &[(&str, &str)]) -> String {
    let path = authorize_path(seed, extra);
    let page = app.client.get(&path).dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    let mut html = page.into_string().await.unwrap();
    if html.contains("name=\"password\"") {
        sign_in(app, seed).await;
        let page = app.client.get(&path).dispatch().await;
        assert_eq!(page.status(), Status::Ok);
        html = page.into_string().await.unwrap();
    }
    assert!(html.contains("value=\"allow\""), "consent page shows Allow");
    let csrf = csrf_from(&html);
    let mut fields = vec![
        ("csrf_token", csrf.as_str()),
        ("decision", "allow"),
        ("client_id", seed.app.client_id.as_str()),
        ("response_type", "code"),
        ("redirect_uri", KIT_INSTALL),
    ];
    fields.extend_from_slice(extra);
    let resp = app
        .client
        .post(format!("/t/{}/oauth/authorize", seed.tenant.slug))
        .header(ContentType::Form)
        .body(form(&fields))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Found);
    resp.headers().get_one("Location").unwrap().to_string()
}

/// A code for the seeded creator, via the hosted pages.
pub async fn get_code(app: &TestApp, seed: &Seed) -> String {
    let location = authorize(app, seed, &[("state", "xyz")]).await;
    query_param(&location, "code").expect("redirect carries a code")
}

/// Exchanges a code exactly as Kit does: JSON under a form content type,
/// the other redirect URI, and a Bearer header that must be ignored.
pub async fn kit_exchange<'c>(app: &'c TestApp, seed: &Seed, code: &str) -> LocalResponse<'c> {
    let body = serde_json::json!({
        "client_id": seed.app.client_id,
        "client_secret": seed.client_secret,
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": KIT_APPS,
    });
    app.client
        .post(format!("/t/{}/oauth/token", seed.tenant.slug))
        .header(ContentType::Form)
        .header(Header::new("Authorization", "Bearer "))
        .body(body.to_string())
        .dispatch()
        .await
}

/// Refreshes exactly as Kit does: no client secret.
pub async fn kit_refresh<'c>(
    app: &'c TestApp,
    seed: &Seed,
    refresh_token: &str,
) -> LocalResponse<'c> {
    let body = serde_json::json!({
        "client_id": seed.app.client_id,
        "grant_type": "refresh_token",
        "refresh_token": refresh_token,
    });
    app.client
        .post(format!("/t/{}/oauth/refresh", seed.tenant.slug))
        .header(ContentType::Form)
        .header(Header::new("Authorization", "Bearer expired-or-empty"))
        .body(body.to_string())
        .dispatch()
        .await
}

pub async fn json_of(resp: LocalResponse<'_>) -> serde_json::Value {
    let text = resp.into_string().await.unwrap_or_default();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body, got {text:?}"))
}

/// Introspects with the app's credentials as HTTP Basic.
pub async fn introspect(app: &TestApp, seed: &Seed, token: &str) -> serde_json::Value {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", seed.app.client_id, seed.client_secret));
    let resp = app
        .client
        .post(format!("/t/{}/oauth/introspect", seed.tenant.slug))
        .header(ContentType::Form)
        .header(Header::new("Authorization", format!("Basic {basic}")))
        .body(form(&[("token", token)]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    json_of(resp).await
}

/// Runs the `kitauth` binary as an operator would: `stdin` piped in, a
/// low bcrypt cost, `DATABASE_URL` only from `db`; fails after 60 s.
pub fn kitauth(
    db: Option<&TestDb>,
    args: &[&str],
    stdin: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kitauth"));
    cmd.args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("ROCKET_BCRYPT_COST", "4")
        .env("ROCKET_PUBLIC_URL", "https://auth.example.com")
        .env_remove("ROCKET_PROFILE")
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(db) = db {
        cmd.env("DATABASE_URL", &db.url);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run kitauth");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), stdin.as_bytes()).unwrap();
    drop(child.stdin.take());
    // A command that should fail must not hang (e.g. by serving instead).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("kitauth {args:?} did not finish within 60 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// HTTP Basic client credentials (RFC 6749 §2.3.1), unencoded parts.
pub fn basic_auth(id: &str, secret: &str) -> Header<'static> {
    use base64::Engine;
    let v = base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"));
    Header::new("Authorization", format!("Basic {v}"))
}

/// A free port on loopback, for a server a test starts.
/// The real server on a free loopback port (its `public_url` is that
/// address), with `adjust` applied to the test settings; its base URL once
/// `/healthz` answers.
pub async fn serve(db: &TestDb, adjust: impl FnOnce(Figment) -> Figment) -> String {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let figment = adjust(
        test_figment(db)
            .merge(("address", "127.0.0.1"))
            .merge(("port", port))
            .merge(("public_url", base.clone())),
    );
    let rocket = kitauth::build(figment).expect("build the server");
    tokio::spawn(async move { rocket.launch().await });
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "kitauth came up at {base}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    base
}

/// The `Set-Cookie` header of `resp` that sets the cookie `name`.
pub fn set_cookie(resp: &LocalResponse<'_>, name: &str) -> String {
    let prefix = format!("{name}=");
    resp.headers()
        .get("Set-Cookie")
        .find(|c| c.starts_with(&prefix))
        .unwrap_or_else(|| panic!("a Set-Cookie of {name}"))
        .to_string()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Asserts how many grants were revoked for `reason` (`code_replay`,
/// `refresh_token_reuse`, `revoked_by_client`, `admin`, …).
pub fn assert_grants_revoked(app: &TestApp, reason: &str, n: i64) {
    let revoked = app.count(&format!(
        "SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL AND revoked_reason = '{reason}'"
    ));
    assert_eq!(revoked, n, "grants revoked for {reason}");
}

/// The token endpoint's success body.
#[derive(Debug, serde::Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    pub created_at: i64,
}

/// An RFC 6749 error body.
#[derive(Debug, serde::Deserialize)]
pub struct OAuthErrorBody {
    pub error: String,
    pub error_description: Option<String>,
}
