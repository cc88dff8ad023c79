//! The dashboard through Rocket's local client: sign-in and sessions, every
//! page and action, roles, CSRF, cross-tenant attempts. Every refused
//! attempt is also shown to change nothing in the database.

mod common;

use chrono::Duration;
use common::*;
use diesel::prelude::*;
use kitauth::crypto::{self, TokenKind};
use kitauth::db::models::admin::SessionPolicy;
use kitauth::db::models::token::issue_pair;
use kitauth::db::models::{Admin, AdminSession, Grant, Membership, Role};
use rocket::http::{ContentType, Cookie, Header, Status};
use rocket::local::asynchronous::Client;

/// A test app whose client keeps no cookies, so that several admins can
/// act in one test, each with their own session and CSRF cookie.
async fn untracked_app(
    adjust: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment,
) -> TestApp {
    let db = TestDb::new();
    let rocket = kitauth::build(adjust(test_figment(&db))).expect("build the app");
    let client = Client::untracked(rocket).await.expect("valid rocket");
    TestApp { client, db }
}

async fn new_app() -> TestApp {
    untracked_app(|f| f).await
}

/// Every row of every table, on one connection, to prove that a refused
/// request changed nothing. A session's `last_seen_at` is bookkeeping of
/// the request itself and is left out.
fn full_snapshot(app: &TestApp) -> String {
    let tables = [
        "tenants",
        "admins",
        "memberships",
        "apps",
        "client_secrets",
        "end_users",
        "end_user_sessions",
        "grants",
        "authorization_codes",
        "access_tokens",
        "refresh_tokens",
        "audit_events",
        "token_stats",
        "admin_invites",
    ];
    let mut conn = app.conn();
    let mut out = String::new();
    for t in tables {
        out.push_str(&text_of(
            &mut conn,
            &format!(
                "SELECT coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '') AS s FROM {t} x"
            ),
        ));
        out.push('\n');
    }
    out.push_str(&text_of(&mut conn, "SELECT coalesce(string_agg(id::text || admin_id::text || encode(token_digest, 'hex') || expires_at::text, ',' ORDER BY id), '') AS s FROM admin_sessions"));
    out
}

fn text_of(conn: &mut PgConnection, sql: &str) -> String {
    #[derive(QueryableByName)]
    struct S {
        #[diesel(sql_type = diesel::sql_types::Text)]
        s: String,
    }
    diesel::sql_query(sql).get_result::<S>(conn).unwrap().s
}

fn list(app: &TestApp, sql: &str) -> String {
    text_of(&mut app.conn(), sql)
}

/// The text of a page as a browser shows it (Tera escapes `/` and quotes).
fn unescape(html: &str) -> String {
    html.replace("&#x2F;", "/")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// One browser: an admin session cookie and a CSRF cookie.
#[derive(Clone)]
struct Browser {
    session: Option<String>,
    csrf: String,
    email: String,
    admin_id: i64,
}

struct Page {
    status: Status,
    body: String,
    location: Option<String>,
    set_cookies: Vec<String>,
}

impl Browser {
    fn anonymous() -> Browser {
        Browser {
            session: None,
            csrf: crypto::generate(TokenKind::Csrf).value,
            email: String::new(),
            admin_id: 0,
        }
    }

    async fn get(&self, app: &TestApp, path: &str) -> Page {
        let mut req = app
            .client
            .get(path.to_string())
            .private_cookie(Cookie::new("kitauth_csrf", self.csrf.clone()));
        if let Some(s) = &self.session {
            req = req.cookie(Cookie::new("kitauth_admin", s.clone()));
        }
        page(req.dispatch().await).await
    }

    /// POSTs a form with this browser's CSRF token added.
    async fn post(&self, app: &TestApp, path: &str, pairs: &[(&str, &str)]) -> Page {
        let mut fields = vec![("csrf_token", self.csrf.as_str())];
        fields.extend_from_slice(pairs);
        self.post_raw(app, path, &fields).await
    }

    /// POSTs exactly `pairs` (no CSRF token unless given).
    /// Invites (post/redirect/get) and returns the page the redirect shows.
    async fn invite(&self, app: &TestApp, pairs: &[(&str, &str)]) -> Page {
        let resp = self.post(app, "/admin/t/acme/members/invite", pairs).await;
        assert_eq!(
            resp.status,
            Status::SeeOther,
            "an invitation ends in a redirect"
        );
        let location = resp.location.expect("a Location");
        assert!(
            !location.contains("kin_"),
            "the redirect carries no credential: {location}"
        );
        self.get(app, &location).await
    }

    async fn post_raw(&self, app: &TestApp, path: &str, pairs: &[(&str, &str)]) -> Page {
        let mut req = app
            .client
            .post(path.to_string())
            .header(ContentType::Form)
            .private_cookie(Cookie::new("kitauth_csrf", self.csrf.clone()))
            .body(form(pairs));
        if let Some(s) = &self.session {
            req = req.cookie(Cookie::new("kitauth_admin", s.clone()));
        }
        page(req.dispatch().await).await
    }
}

async fn page(resp: rocket::local::asynchronous::LocalResponse<'_>) -> Page {
    let status = resp.status();
    let location = resp.headers().get_one("Location").map(str::to_string);
    let set_cookies = resp
        .headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect();
    let body = unescape(&resp.into_string().await.unwrap_or_default());
    Page {
        status,
        body,
        location,
        set_cookies,
    }
}

/// An admin with `role` in `tenant_id` (created if the email is new), signed in.
fn admin_in(app: &TestApp, tenant_id: i64, email: &str, role: Role) -> Browser {
    let mut conn = app.conn();
    let admin = match Admin::find_by_email(&mut conn, email).unwrap() {
        Some(a) => a,
        None => Admin::create(
            &mut conn,
            email,
            &crypto::hash_password("admin password 1", 4).unwrap(),
        )
        .unwrap(),
    };
    Membership::add(&mut conn, tenant_id, admin.id, role).unwrap();
    let token = AdminSession::create(
        &mut conn,
        admin.id,
        SessionPolicy {
            idle: Duration::hours(12),
            lifetime: Duration::days(7),
        },
        None,
    )
    .unwrap();
    Browser {
        session: Some(token),
        csrf: crypto::generate(TokenKind::Csrf).value,
        email: admin.email,
        admin_id: admin.id,
    }
}

/// A live install of the seeded app by the seeded creator; returns (grant id, access, refresh).
fn install(app: &TestApp, seed: &Seed) -> (i64, String, String) {
    install_for(&mut app.conn(), seed, seed.user.id)
}

/// A live install of the seeded app by creator `user_id`.
fn install_for(conn: &mut PgConnection, seed: &Seed, user_id: i64) -> (i64, String, String) {
    let grant = Grant::create(
        conn,
        seed.tenant.id,
        seed.app.id,
        user_id,
        &["public".to_string()],
    )
    .unwrap();
    let pair = issue_pair(conn, &grant, &seed.app, None).unwrap();
    (grant.id, pair.access_token, pair.refresh_token)
}

async fn introspect_with(
    app: &TestApp,
    seed: &Seed,
    secret: &str,
    token: &str,
) -> (Status, serde_json::Value) {
    use base64::Engine;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", seed.app.client_id, secret));
    let resp = app
        .client
        .post(format!("/t/{}/oauth/introspect", seed.tenant.slug))
        .header(ContentType::Form)
        .header(Header::new("Authorization", format!("Basic {basic}")))
        .body(form(&[("token", token)]))
        .dispatch()
        .await;
    let status = resp.status();
    let text = resp.into_string().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or_default())
}

fn extract(html: &str, id: &str) -> String {
    let marker = format!("id=\"{id}\"");
    let at = html
        .find(&marker)
        .unwrap_or_else(|| panic!("page has #{id}"));
    let start = html[at..].find('>').unwrap() + at + 1;
    let end = html[start..].find('<').unwrap() + start;
    html[start..end].trim().to_string()
}

// ---------------------------------------------------------------- accounts

#[rocket::async_test]
async fn signup_creates_owner_tenant_and_a_digest_only_session() {
    let app = new_app().await;
    let anon = Browser::anonymous();
    let page = anon.get(&app, "/admin/signup").await;
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("name=\"csrf_token\""));
    let resp = anon
        .post(
            &app,
            "/admin/signup",
            &[
                ("email", "Owner@Acme.example"),
                ("password", "a long password"),
                ("tenant_name", "Acme Plugins"),
                ("tenant_slug", "acme"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(resp.location.as_deref(), Some("/admin/t/acme"));
    let cookie = resp
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kitauth_admin="))
        .expect("session cookie set")
        .clone();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("Path=/admin"), "{cookie}");
    assert!(!cookie.contains("Secure"), "debug profile: no Secure flag");
    let token = cookie["kitauth_admin=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert!(token.starts_with("kas_"));
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM admin_sessions WHERE token_digest = decode('{}', 'hex')",
            hex(&crypto::digest(&token))
        )),
        1,
        "only the digest is stored"
    );
    assert_eq!(
        app.count("SELECT count(*) FROM memberships m JOIN admins a ON a.id = m.admin_id JOIN tenants t ON t.id = m.tenant_id WHERE a.email = 'owner@acme.example' AND t.slug = 'acme' AND t.name = 'Acme Plugins' AND m.role = 'owner'"),
        1
    );
    let me = Browser {
        session: Some(token),
        ..anon
    };
    let home = me.get(&app, "/admin/t/acme").await;
    assert_eq!(home.status, Status::Ok);
    assert!(home.body.contains("Acme Plugins"));
    assert!(home.body.contains("Active installs"));
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[rocket::async_test]
async fn signup_refuses_bad_input_and_taken_slug_without_changes() {
    let app = new_app().await;
    seed_tenant(&app, "taken");
    let anon = Browser::anonymous();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("email", "nope"),
                ("password", "a long password"),
                ("tenant_name", "X"),
                ("tenant_slug", "xx"),
            ],
            "valid email",
        ),
        (
            &[
                ("email", "a@b.example"),
                ("password", "short"),
                ("tenant_name", "X"),
                ("tenant_slug", "xx"),
            ],
            "at least 10",
        ),
        (
            &[
                ("email", "a@b.example"),
                ("password", "a long password"),
                ("tenant_name", "X"),
                ("tenant_slug", "Bad Slug!"),
            ],
            "URL name",
        ),
        (
            &[
                ("email", "a@b.example"),
                ("password", "a long password"),
                ("tenant_name", "X"),
                ("tenant_slug", "taken"),
            ],
            "taken",
        ),
    ];
    for (fields, message) in cases {
        let before = full_snapshot(&app);
        let resp = anon.post(&app, "/admin/signup", fields).await;
        assert_eq!(resp.status, Status::BadRequest, "{message}");
        assert!(resp.body.contains(message), "{message}: {}", resp.body);
        assert_eq!(full_snapshot(&app), before);
    }
}

#[rocket::async_test]
async fn signup_is_closed_when_admin_signup_is_off() {
    let app = untracked_app(|f| f.merge(("admin_signup", false))).await;
    let anon = Browser::anonymous();
    assert_eq!(
        anon.get(&app, "/admin/signup").await.status,
        Status::NotFound
    );
    let before = full_snapshot(&app);
    let resp = anon
        .post(
            &app,
            "/admin/signup",
            &[
                ("email", "a@b.example"),
                ("password", "a long password"),
                ("tenant_name", "X"),
                ("tenant_slug", "xx"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::NotFound);
    assert!(resp.body.contains("Sign-up is closed"));
    assert_eq!(full_snapshot(&app), before);
    let login = anon.get(&app, "/admin/login").await;
    assert!(!login.body.contains("/admin/signup"));
}

#[rocket::async_test]
async fn sign_in_rotates_the_session_and_sign_out_ends_it_on_the_server() {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    let old = admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    // Signing in from a browser that carries a session replaces it (no fixation).
    let resp = old
        .post(
            &app,
            "/admin/login",
            &[
                ("email", "owner@acme.example"),
                ("password", "admin password 1"),
                ("next", "/admin/t/acme/apps"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(resp.location.as_deref(), Some("/admin/t/acme/apps"));
    let cookie = resp
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kitauth_admin="))
        .unwrap();
    let new_token = cookie["kitauth_admin=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(Some(&new_token), old.session.as_ref());
    assert_eq!(
        app.count("SELECT count(*) FROM admin_sessions"),
        1,
        "the old session is gone"
    );
    let stale = old.get(&app, "/admin/t/acme").await;
    assert_eq!(stale.status, Status::SeeOther);
    let fresh = Browser {
        session: Some(new_token),
        ..old.clone()
    };
    assert_eq!(fresh.get(&app, "/admin/t/acme").await.status, Status::Ok);

    let out = fresh.post(&app, "/admin/logout", &[]).await;
    assert_eq!(out.status, Status::SeeOther);
    assert_eq!(app.count("SELECT count(*) FROM admin_sessions"), 0);
    let after = fresh.get(&app, "/admin/t/acme").await;
    assert_eq!(after.status, Status::SeeOther);
    assert!(after.location.unwrap().starts_with("/admin/login"));
}

#[rocket::async_test]
async fn a_bad_next_parameter_never_leaves_the_dashboard() {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    for next in [
        "https://evil.example/",
        "//evil.example",
        "/t/acme/login",
        "/admin//evil",
    ] {
        let resp = Browser::anonymous()
            .post(
                &app,
                "/admin/login",
                &[
                    ("email", "owner@acme.example"),
                    ("password", "admin password 1"),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(resp.location.as_deref(), Some("/admin"), "{next}");
    }
}

#[rocket::async_test]
async fn sign_in_is_throttled_after_five_failures_with_retry_after() {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    let before = app.count("SELECT count(*) FROM admin_sessions");
    let anon = Browser::anonymous();
    for _ in 0..5 {
        let resp = anon
            .post(
                &app,
                "/admin/login",
                &[
                    ("email", "owner@acme.example"),
                    ("password", "wrong password!"),
                ],
            )
            .await;
        assert_eq!(resp.status, Status::Unauthorized);
        assert!(resp.body.contains("The email or password is incorrect."));
    }
    // Even the right password is refused now.
    let resp = anon
        .post(
            &app,
            "/admin/login",
            &[
                ("email", "owner@acme.example"),
                ("password", "admin password 1"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::TooManyRequests);
    assert!(resp.body.contains("Too many failed sign-in attempts"));
    assert_eq!(app.count("SELECT count(*) FROM admin_sessions"), before);
    // The Retry-After header, checked on a fresh request.
    let raw = app
        .client
        .post("/admin/login")
        .header(ContentType::Form)
        .private_cookie(Cookie::new("kitauth_csrf", anon.csrf.clone()))
        .body(form(&[
            ("csrf_token", &anon.csrf),
            ("email", "owner@acme.example"),
            ("password", "x"),
        ]))
        .dispatch()
        .await;
    let wait: u64 = raw
        .headers()
        .get_one("Retry-After")
        .unwrap()
        .parse()
        .unwrap();
    assert!(wait > 0 && wait <= 15 * 60);
}

#[rocket::async_test]
async fn unknown_accounts_get_the_same_message() {
    let app = new_app().await;
    let resp = Browser::anonymous()
        .post(
            &app,
            "/admin/login",
            &[
                ("email", "nobody@acme.example"),
                ("password", "whatever it is"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::Unauthorized);
    assert!(resp.body.contains("The email or password is incorrect."));
}

#[rocket::async_test]
async fn idle_and_expired_sessions_send_the_admin_to_sign_in() {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    let b = admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    assert_eq!(b.get(&app, "/admin/t/acme").await.status, Status::Ok);
    diesel::sql_query("UPDATE admin_sessions SET last_seen_at = now() - interval '13 hours'")
        .execute(&mut app.conn())
        .unwrap();
    let idle = b.get(&app, "/admin/t/acme").await;
    assert_eq!(idle.status, Status::SeeOther);
    assert_eq!(
        idle.location.as_deref(),
        Some("/admin/login?next=%2Fadmin%2Ft%2Facme")
    );
    diesel::sql_query(
        "UPDATE admin_sessions SET last_seen_at = now(), expires_at = now() - interval '1 second'",
    )
    .execute(&mut app.conn())
    .unwrap();
    assert_eq!(b.get(&app, "/admin/t/acme").await.status, Status::SeeOther);
}

#[rocket::async_test]
async fn visitors_without_a_session_are_sent_to_sign_in_and_change_nothing() {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    let anon = Browser::anonymous();
    for path in [
        "/admin",
        "/admin/t/acme",
        "/admin/t/acme/apps",
        &format!("/admin/t/acme/apps/{}", seed.app.id),
    ] {
        let resp = anon.get(&app, path).await;
        assert_eq!(resp.status, Status::SeeOther, "{path}");
        assert!(resp.location.unwrap().starts_with("/admin/login"), "{path}");
    }
    let before = full_snapshot(&app);
    let resp = anon
        .post(
            &app,
            &format!("/admin/t/acme/apps/{}/delete", seed.app.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(full_snapshot(&app), before);
}

#[rocket::async_test]
async fn tenant_picker_lists_every_workspace_of_the_admin() {
    let app = new_app().await;
    let a = seed_tenant(&app, "alpha");
    let b = seed_tenant(&app, "beta");
    let one = admin_in(&app, a.tenant.id, "solo@x.example", Role::Viewer);
    let resp = one.get(&app, "/admin").await;
    assert_eq!(
        resp.location.as_deref(),
        Some("/admin/t/alpha"),
        "a single workspace opens directly"
    );
    let both = admin_in(&app, a.tenant.id, "two@x.example", Role::Owner);
    admin_in(&app, b.tenant.id, "two@x.example", Role::Viewer);
    let resp = both.get(&app, "/admin").await;
    assert_eq!(resp.status, Status::Ok);
    assert!(resp.body.contains("/admin/t/alpha") && resp.body.contains("/admin/t/beta"));
    assert!(resp.body.contains("Tenant alpha") && resp.body.contains("Tenant beta"));
}

// ------------------------------------------------------------ CSRF and roles

/// A dashboard POST: path, form fields, and the least role allowed to do it.
type Action = (String, Vec<(&'static str, String)>, Role);

/// Every state-changing dashboard action, as (path, form) for the seeded tenant.
fn actions(seed: &Seed, grant_id: i64, secret_id: i64, member_id: i64) -> Vec<Action> {
    let t = &seed.tenant.slug;
    let a = seed.app.id;
    let u = seed.user.id;
    let yes = ("confirm", "yes".to_string());
    vec![
        (
            format!("/admin/t/{t}/apps/new"),
            vec![
                ("name", "New".into()),
                ("redirect_uris", KIT_INSTALL.into()),
                ("scopes", "public".into()),
            ],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/apps/{a}/edit"),
            vec![
                ("name", "Renamed".into()),
                ("redirect_uris", KIT_INSTALL.into()),
                ("scopes", "public".into()),
            ],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/apps/{a}/delete"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/apps/{a}/secrets/rotate"),
            vec![("grace", "3600".into())],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/apps/{a}/secrets/{secret_id}/revoke"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/installs/{grant_id}/revoke"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/apps/{a}/installs/revoke"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/creators/{u}/installs/revoke"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/creators"),
            vec![
                ("email", "new@creator.example".into()),
                ("password", "a long password".into()),
            ],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/creators/{u}/disable"),
            vec![yes.clone()],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/creators/{u}/password"),
            vec![("password", "another long one".into())],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/members/invite"),
            vec![
                ("email", "new@member.example".into()),
                ("role", "admin".into()),
            ],
            Role::Owner,
        ),
        (
            format!("/admin/t/{t}/members/{member_id}/role"),
            vec![("role", "owner".into())],
            Role::Owner,
        ),
        (
            format!("/admin/t/{t}/members/{member_id}/remove"),
            vec![yes.clone()],
            Role::Owner,
        ),
        (
            format!("/admin/t/{t}/creators/{u}/enable"),
            vec![],
            Role::Admin,
        ),
        (
            format!("/admin/t/{t}/members/invites/1/revoke"),
            vec![],
            Role::Owner,
        ),
        (
            format!("/admin/t/{t}/settings"),
            vec![
                ("name", "Renamed".into()),
                ("brand_accent_color", "#123456".into()),
            ],
            Role::Owner,
        ),
        (
            format!("/admin/t/{t}/settings/sign-in"),
            vec![
                ("creator_signin", "delegated".into()),
                ("login_url", "https://login.acme.example/kit".into()),
            ],
            Role::Owner,
        ),
    ]
}

struct World {
    app: TestApp,
    seed: Seed,
    owner: Browser,
    admin: Browser,
    viewer: Browser,
    grant_id: i64,
    secret_id: i64,
}

async fn world() -> World {
    let app = new_app().await;
    let seed = seed_tenant(&app, "acme");
    let owner = admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    let admin = admin_in(&app, seed.tenant.id, "admin@acme.example", Role::Admin);
    let viewer = admin_in(&app, seed.tenant.id, "viewer@acme.example", Role::Viewer);
    let (grant_id, _, _) = install(&app, &seed);
    let secret_id = app.count("SELECT min(id) FROM client_secrets");
    World {
        app,
        seed,
        owner,
        admin,
        viewer,
        grant_id,
        secret_id,
    }
}

#[rocket::async_test]
async fn every_post_without_a_valid_csrf_token_is_refused_and_changes_nothing() {
    let w = world().await;
    for (path, fields, _) in actions(&w.seed, w.grant_id, w.secret_id, w.viewer.admin_id) {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for token in [None, Some("kcf_forged"), Some(w.admin.csrf.as_str())] {
            let before = full_snapshot(&w.app);
            let mut with = pairs.clone();
            if let Some(t) = token {
                with.push(("csrf_token", t));
            }
            // The owner's own browser, with a token missing, forged, or another browser's.
            let resp = w.owner.post_raw(&w.app, &path, &with).await;
            assert_eq!(resp.status, Status::Forbidden, "{path} with {token:?}");
            assert!(resp.body.contains("The form has expired"), "{path}");
            assert_eq!(full_snapshot(&w.app), before, "{path} changed something");
        }
    }
    for path in ["/admin/logout", "/admin/login"] {
        let before = full_snapshot(&w.app);
        let resp = w
            .owner
            .post_raw(
                &w.app,
                path,
                &[
                    ("email", "owner@acme.example"),
                    ("password", "admin password 1"),
                ],
            )
            .await;
        assert_eq!(resp.status, Status::Forbidden, "{path}");
        assert_eq!(full_snapshot(&w.app), before, "{path}");
    }
}

#[rocket::async_test]
async fn roles_below_the_required_one_are_refused_and_change_nothing() {
    let w = world().await;
    for (path, fields, needed) in actions(&w.seed, w.grant_id, w.secret_id, w.viewer.admin_id) {
        let pairs: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let refused: Vec<&Browser> = match needed {
            Role::Owner => vec![&w.viewer, &w.admin],
            _ => vec![&w.viewer],
        };
        for who in refused {
            let before = full_snapshot(&w.app);
            let resp = who.post(&w.app, &path, &pairs).await;
            assert_eq!(resp.status, Status::Forbidden, "{} on {path}", who.email);
            assert!(resp.body.contains("this needs the"), "{path}");
            assert_eq!(
                full_snapshot(&w.app),
                before,
                "{} changed something via {path}",
                who.email
            );
        }
    }
}

#[rocket::async_test]
async fn viewers_read_every_page_without_edit_controls() {
    let w = world().await;
    let t = "acme";
    let a = w.seed.app.id;
    for path in [
        format!("/admin/t/{t}"),
        format!("/admin/t/{t}/apps"),
        format!("/admin/t/{t}/apps/{a}"),
        format!("/admin/t/{t}/apps/{a}/installs"),
        format!("/admin/t/{t}/installs"),
        format!("/admin/t/{t}/installs/{}", w.grant_id),
        format!("/admin/t/{t}/creators"),
        format!("/admin/t/{t}/creators/{}", w.seed.user.id),
        format!("/admin/t/{t}/members"),
        format!("/admin/t/{t}/audit"),
        format!("/admin/t/{t}/settings"),
    ] {
        let resp = w.viewer.get(&w.app, &path).await;
        assert_eq!(resp.status, Status::Ok, "{path}");
        assert!(!resp.body.contains("Rotate secret"), "{path}");
        assert!(!resp.body.contains("Revoke install"), "{path}");
        assert!(!resp.body.contains("Create invitation link"), "{path}");
        let as_admin = w.owner.get(&w.app, &path).await;
        assert_eq!(as_admin.status, Status::Ok, "{path}");
    }
    for path in [
        format!("/admin/t/{t}/apps/new"),
        format!("/admin/t/{t}/apps/{a}/edit"),
        format!("/admin/t/{t}/apps/{a}/delete"),
    ] {
        assert_eq!(
            w.viewer.get(&w.app, &path).await.status,
            Status::Forbidden,
            "{path}"
        );
        assert_eq!(
            w.admin.get(&w.app, &path).await.status,
            Status::Ok,
            "{path}"
        );
    }
}

#[rocket::async_test]
async fn another_tenants_objects_answer_404_and_are_never_shown() {
    let w = world().await;
    let other = seed_tenant(&w.app, "other");
    let (other_grant, _, _) = install(&w.app, &other);
    let other_secret = w.app.count(&format!(
        "SELECT min(id) FROM client_secrets WHERE app_id = {}",
        other.app.id
    ));
    // Not a member of "other": every page there is 404.
    for path in [
        "/admin/t/other",
        "/admin/t/other/apps",
        "/admin/t/nonexistent",
        "/admin/t/NOT_A_SLUG/apps",
    ] {
        let resp = w.owner.get(&w.app, path).await;
        assert_eq!(resp.status, Status::NotFound, "{path}");
        assert!(!resp.body.contains("Tenant other"), "{path}");
    }
    // Other tenant's ids through our own tenant's URLs.
    let o = other.app.id;
    let u = other.user.id;
    for path in [
        format!("/admin/t/acme/apps/{o}"),
        format!("/admin/t/acme/apps/{o}/edit"),
        format!("/admin/t/acme/apps/{o}/installs"),
        format!("/admin/t/acme/installs/{other_grant}"),
        format!("/admin/t/acme/creators/{u}"),
    ] {
        let resp = w.owner.get(&w.app, &path).await;
        assert_eq!(resp.status, Status::NotFound, "{path}");
        assert!(!resp.body.contains(&other.app.client_id), "{path}");
        assert!(!resp.body.contains(other.email()), "{path}");
    }
    let yes = [("confirm", "yes")];
    for (path, fields) in [
        (format!("/admin/t/acme/apps/{o}/delete"), &yes[..]),
        (
            format!("/admin/t/acme/apps/{o}/secrets/rotate"),
            &[("grace", "0"), ("confirm", "yes")][..],
        ),
        (
            format!(
                "/admin/t/acme/apps/{}/secrets/{other_secret}/revoke",
                w.seed.app.id
            ),
            &yes[..],
        ),
        (
            format!("/admin/t/acme/installs/{other_grant}/revoke"),
            &yes[..],
        ),
        (format!("/admin/t/acme/apps/{o}/installs/revoke"), &yes[..]),
        (format!("/admin/t/acme/creators/{u}/disable"), &yes[..]),
        (
            format!("/admin/t/acme/creators/{u}/installs/revoke"),
            &yes[..],
        ),
        (format!("/admin/t/other/apps/{o}/delete"), &yes[..]),
        (
            "/admin/t/other/settings".to_string(),
            &[("name", "Pwned")][..],
        ),
    ] {
        let before = full_snapshot(&w.app);
        let resp = w.owner.post(&w.app, &path, fields).await;
        assert_eq!(resp.status, Status::NotFound, "{path}");
        assert_eq!(full_snapshot(&w.app), before, "{path} changed something");
    }
}

#[rocket::async_test]
async fn malformed_ids_and_unknown_pages_get_a_404_page_in_the_layout() {
    let w = world().await;
    for path in [
        "/admin/t/acme/apps/abc",
        "/admin/t/acme/apps/-1",
        "/admin/t/acme/installs/99999999",
        "/admin/t/acme/nothing-here",
    ] {
        let resp = w.owner.get(&w.app, path).await;
        assert_eq!(resp.status, Status::NotFound, "{path}");
        assert!(resp.body.contains("Back to the dashboard"), "{path}");
        assert!(resp.body.contains("class=\"topbar\""), "{path}");
    }
    let resp = w
        .owner
        .get(&w.app, "/admin/t/acme/audit?from=yesterday")
        .await;
    assert_eq!(resp.status, Status::BadRequest);
    assert!(resp.body.contains("2026-01-31"));
}

// ----------------------------------------------------------------- apps

#[rocket::async_test]
async fn creating_an_app_shows_its_kit_settings_and_the_secret_once() {
    let w = world().await;
    let page = w.admin.get(&w.app, "/admin/t/acme/apps/new").await;
    assert!(
        page.body.contains(KIT_INSTALL) && page.body.contains(KIT_APPS),
        "Kit's URIs prefilled"
    );
    let resp = w
        .admin
        .post(
            &w.app,
            "/admin/t/acme/apps/new",
            &[
                ("name", "Second app"),
                (
                    "redirect_uris",
                    &format!("{KIT_INSTALL}\n{KIT_APPS}\nhttp://127.0.0.1:9999/cb"),
                ),
                ("scopes", "public, write"),
                ("access_token_ttl_secs", "3600"),
                ("refresh_token_ttl_secs", "86400"),
                ("refresh_grace_secs", "30"),
                ("refresh_without_secret", "on"),
            ],
        )
        .await;
    // Post/redirect/get: the POST answers with a redirect to the one-time reveal.
    assert_eq!(resp.status, Status::SeeOther);
    let resp = w.admin.get(&w.app, &resp.location.clone().unwrap()).await;
    assert_eq!(resp.status, Status::Ok);
    let secret = extract(&resp.body, "new-secret");
    assert!(secret.starts_with("kcs_"));
    assert!(resp.body.contains("only time the secret is shown"));
    for key in [
        "authorization_url",
        "token_url",
        "refresh_token_url",
        "revoke_url",
    ] {
        let v = extract(&resp.body, &format!("kit-{key}"));
        assert!(
            v.starts_with("http://kitauth.test/t/acme/oauth/"),
            "{key}: {v}"
        );
        assert!(
            resp.body.contains(&format!("data-copy=\"kit-{key}\"")),
            "copy button for {key}"
        );
    }
    let client_id = extract(&resp.body, "kit-client_id");
    assert!(resp.body.contains("data-copy=\"new-secret\""));
    assert!(resp.body.contains("Authentication"));
    let mut conn = w.app.conn();
    let app = kitauth::db::models::App::find_by_client_id(&mut conn, w.seed.tenant.id, &client_id)
        .unwrap()
        .unwrap();
    assert_eq!(app.name, "Second app");
    assert_eq!(app.allowed_scopes, vec!["public", "write"]);
    assert_eq!(app.redirect_uris.len(), 3);
    assert_eq!(
        (
            app.access_token_ttl_secs,
            app.refresh_token_ttl_secs,
            app.refresh_grace_secs
        ),
        (3600, 86400, 30)
    );
    assert_eq!(
        w.app.count(&format!("SELECT count(*) FROM client_secrets WHERE app_id = {} AND secret_digest = decode('{}', 'hex')", app.id, hex(&crypto::digest(&secret)))),
        1
    );
    assert_eq!(w.app.count("SELECT count(*) FROM audit_events WHERE action = 'app.created' AND actor = 'admin:admin@acme.example'"), 1);
    // Shown once: the app page never shows it again.
    let again = w
        .admin
        .get(&w.app, &format!("/admin/t/acme/apps/{}", app.id))
        .await;
    assert!(!again.body.contains(&secret));
    assert!(again.body.contains(&secret[..8]), "the hint is listed");
}

#[rocket::async_test]
async fn invalid_app_settings_get_a_clear_message_and_change_nothing() {
    let w = world().await;
    let path = format!("/admin/t/acme/apps/{}/edit", w.seed.app.id);
    let good = |k: &str| match k {
        "name" => "Name",
        "redirect_uris" => KIT_INSTALL,
        "scopes" => "public",
        _ => "",
    };
    let cases = [
        ("name", "", "name must have"),
        ("redirect_uris", "http://evil.example/cb", "must use https"),
        ("redirect_uris", "not a url", "not an absolute URL"),
        ("scopes", "", "Allow 1 to 50 scopes"),
        ("scopes", "bad\"scope", "not a valid scope"),
        ("access_token_ttl_secs", "5", "access token lifetime"),
        ("refresh_token_ttl_secs", "lots", "refresh token lifetime"),
        ("refresh_grace_secs", "99999", "grace window"),
    ];
    for (key, value, message) in cases {
        let mut fields: Vec<(&str, &str)> = ["name", "redirect_uris", "scopes"]
            .iter()
            .filter(|k| **k != key)
            .map(|k| (*k, good(k)))
            .collect();
        fields.push((key, value));
        let before = full_snapshot(&w.app);
        let resp = w.admin.post(&w.app, &path, &fields).await;
        assert_eq!(resp.status, Status::BadRequest, "{key}={value}");
        assert!(
            resp.body.contains(message),
            "{key}={value}: wanted {message:?}"
        );
        assert_eq!(full_snapshot(&w.app), before);
    }
}

#[rocket::async_test]
async fn editing_an_app_saves_every_setting_and_disabling_stops_kit() {
    let w = world().await;
    let path = format!("/admin/t/acme/apps/{}/edit", w.seed.app.id);
    let resp = w
        .admin
        .post(
            &w.app,
            &path,
            &[
                ("name", "Renamed"),
                ("redirect_uris", KIT_INSTALL),
                ("scopes", "public"),
                ("access_token_ttl_secs", "600"),
                ("refresh_token_ttl_secs", "7200"),
                ("refresh_grace_secs", "0"),
                ("disabled", "on"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert!(
        resp.set_cookies.iter().any(|c| c.starts_with("_flash=")),
        "a flash message follows"
    );
    let mut conn = w.app.conn();
    let app = kitauth::db::models::App::find(&mut conn, w.seed.tenant.id, w.seed.app.id)
        .unwrap()
        .unwrap();
    assert_eq!(app.name, "Renamed");
    assert_eq!(app.redirect_uris, vec![KIT_INSTALL]);
    assert_eq!(
        (
            app.access_token_ttl_secs,
            app.refresh_token_ttl_secs,
            app.refresh_grace_secs
        ),
        (600, 7200, 0)
    );
    assert!(!app.refresh_without_secret);
    assert!(app.disabled);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'app.disabled'"),
        1
    );
    let (status, _) = introspect_with(&w.app, &w.seed, &w.seed.client_secret, "kat_x").await;
    assert_eq!(
        status,
        Status::Unauthorized,
        "a disabled app's calls are refused"
    );
    // enable again
    let resp = w
        .admin
        .post(
            &w.app,
            &path,
            &[
                ("name", "Renamed"),
                ("redirect_uris", KIT_INSTALL),
                ("scopes", "public"),
                ("refresh_without_secret", "on"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'app.enabled'"),
        1
    );
    assert_eq!(w.app.count("SELECT count(*) FROM apps WHERE disabled"), 0);
}

#[rocket::async_test]
async fn deleting_an_app_needs_confirmation_and_revokes_its_grants() {
    let w = world().await;
    let path = format!("/admin/t/acme/apps/{}/delete", w.seed.app.id);
    let confirm = w.admin.get(&w.app, &path).await;
    assert_eq!(confirm.status, Status::Ok);
    assert!(confirm.body.contains("revokes all 1 live install"));
    let before = full_snapshot(&w.app);
    let resp = w.admin.post(&w.app, &path, &[]).await;
    assert_eq!(resp.status, Status::BadRequest);
    assert!(resp.body.contains("tick the confirmation box"));
    assert_eq!(full_snapshot(&w.app), before);
    let resp = w.admin.post(&w.app, &path, &[("confirm", "yes")]).await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(w.app.count("SELECT count(*) FROM apps"), 0);
    assert_eq!(w.app.count("SELECT count(*) FROM grants"), 0);
    assert_eq!(
        w.app.count("SELECT count(*) FROM audit_events WHERE action = 'app.deleted' AND (details->>'grants_revoked')::int = 1"),
        1
    );
}

// ------------------------------------------------------------- secrets

#[rocket::async_test]
async fn rotating_with_a_grace_keeps_both_secrets_working() {
    let w = world().await;
    let (_, access, _) = install(&w.app, &w.seed);
    let path = format!("/admin/t/acme/apps/{}/secrets/rotate", w.seed.app.id);
    let resp = w.admin.post(&w.app, &path, &[("grace", "3600")]).await;
    assert_eq!(resp.status, Status::SeeOther);
    let resp = w.admin.get(&w.app, &resp.location.clone().unwrap()).await;
    assert_eq!(resp.status, Status::Ok);
    let new_secret = extract(&resp.body, "new-secret");
    assert!(resp.body.contains("keep working for 1 hour"));
    for secret in [w.seed.client_secret.as_str(), new_secret.as_str()] {
        let (status, body) = introspect_with(&w.app, &w.seed, secret, &access).await;
        assert_eq!(status, Status::Ok);
        assert_eq!(body["active"], true);
    }
    assert_eq!(
        w.app.count("SELECT count(*) FROM client_secrets WHERE expires_at BETWEEN now() + interval '59 minutes' AND now() + interval '61 minutes'"),
        1
    );
    assert_eq!(w.app.count("SELECT count(*) FROM audit_events WHERE action = 'client_secret.rotated' AND (details->>'grace_secs')::int = 3600"), 1);
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM audit_events WHERE details::text LIKE '%{}%'",
            &new_secret[4..]
        )),
        0,
        "no secret in the audit log"
    );
    let listing = w
        .admin
        .get(&w.app, &format!("/admin/t/acme/apps/{}", w.seed.app.id))
        .await;
    assert!(listing.body.contains("expiring") && listing.body.contains("active"));
    assert!(!listing.body.contains(&new_secret));
}

#[rocket::async_test]
async fn rotating_immediately_needs_confirmation_and_ends_older_secrets() {
    let w = world().await;
    let (_, access, _) = install(&w.app, &w.seed);
    let path = format!("/admin/t/acme/apps/{}/secrets/rotate", w.seed.app.id);
    for fields in [
        &[("grace", "0")][..],
        &[("grace", "42"), ("confirm", "yes")][..],
        &[][..],
    ] {
        let before = full_snapshot(&w.app);
        let resp = w.admin.post(&w.app, &path, fields).await;
        assert_eq!(resp.status, Status::BadRequest, "{fields:?}");
        assert_eq!(full_snapshot(&w.app), before);
    }
    let resp = w
        .admin
        .post(&w.app, &path, &[("grace", "0"), ("confirm", "yes")])
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let resp = w.admin.get(&w.app, &resp.location.clone().unwrap()).await;
    let new_secret = extract(&resp.body, "new-secret");
    let (status, _) = introspect_with(&w.app, &w.seed, &w.seed.client_secret, &access).await;
    assert_eq!(
        status,
        Status::Unauthorized,
        "the old secret stopped at once"
    );
    let (status, _) = introspect_with(&w.app, &w.seed, &new_secret, &access).await;
    assert_eq!(status, Status::Ok);
}

#[rocket::async_test]
async fn revoking_a_secret_kills_it_at_once() {
    let w = world().await;
    let (_, access, _) = install(&w.app, &w.seed);
    let path = format!(
        "/admin/t/acme/apps/{}/secrets/{}/revoke",
        w.seed.app.id, w.secret_id
    );
    let before = full_snapshot(&w.app);
    assert_eq!(
        w.admin.post(&w.app, &path, &[]).await.status,
        Status::BadRequest
    );
    assert_eq!(full_snapshot(&w.app), before);
    let resp = w.admin.post(&w.app, &path, &[("confirm", "yes")]).await;
    assert_eq!(resp.status, Status::SeeOther);
    let (status, _) = introspect_with(&w.app, &w.seed, &w.seed.client_secret, &access).await;
    assert_eq!(status, Status::Unauthorized);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM client_secrets WHERE revoked_at IS NOT NULL"),
        1
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'client_secret.revoked'"),
        1
    );
    // A second revoke of the same secret is a 404 and changes nothing.
    let before = full_snapshot(&w.app);
    assert_eq!(
        w.admin
            .post(&w.app, &path, &[("confirm", "yes")])
            .await
            .status,
        Status::NotFound
    );
    assert_eq!(full_snapshot(&w.app), before);
}

// ------------------------------------------------------------- installs

#[rocket::async_test]
async fn installs_are_listed_searchable_and_paginated() {
    let w = world().await;
    let mut conn = w.app.conn();
    let hash = crypto::hash_password("a long password", 4).unwrap();
    for i in 0..30 {
        let user = kitauth::db::models::EndUser::create(
            &mut conn,
            w.seed.tenant.id,
            &format!("bulk{i:02}@list.example"),
            &hash,
        )
        .unwrap();
        install_for(&mut conn, &w.seed, user.id);
    }
    let page1 = w.viewer.get(&w.app, "/admin/t/acme/installs").await;
    assert_eq!(page1.status, Status::Ok);
    assert!(page1.body.contains("Page 1 of 2"));
    assert!(page1.body.contains("status-active"));
    assert_eq!(
        page1.body.matches("<tr>").count() - 1,
        25,
        "one header row and 25 installs"
    );
    let page2 = w.viewer.get(&w.app, "/admin/t/acme/installs?page=2").await;
    assert!(page2.body.contains("Page 2 of 2"));
    assert!(
        page2.body.contains(w.seed.email()),
        "the oldest install is on page 2"
    );
    let search = w
        .viewer
        .get(&w.app, "/admin/t/acme/installs?q=bulk07")
        .await;
    assert!(search.body.contains("bulk07@list.example"));
    assert!(!search.body.contains("bulk08@list.example"));
    let none = w.viewer.get(&w.app, "/admin/t/acme/installs?q=%25").await;
    assert!(none.body.contains("No installs"), "% is not a wildcard");
    let per_app = w
        .viewer
        .get(
            &w.app,
            &format!("/admin/t/acme/apps/{}/installs?q=creator@", w.seed.app.id),
        )
        .await;
    assert!(per_app.body.contains(w.seed.email()));
    assert!(!per_app.body.contains("bulk"));
}

#[rocket::async_test]
async fn the_grant_page_shows_token_history_by_hint_only() {
    let w = world().await;
    let (gid, access, refresh) = install(&w.app, &w.seed);
    let resp = w
        .viewer
        .get(&w.app, &format!("/admin/t/acme/installs/{gid}"))
        .await;
    assert_eq!(resp.status, Status::Ok);
    assert!(resp.body.contains(&access[..8]) && resp.body.contains(&refresh[..8]));
    assert!(!resp.body.contains(&access) && !resp.body.contains(&refresh));
    assert!(resp.body.contains(w.seed.email()));
}

#[rocket::async_test]
async fn revoking_one_install_kills_its_tokens() {
    let w = world().await;
    let (gid, access, _) = install(&w.app, &w.seed);
    let path = format!("/admin/t/acme/installs/{gid}/revoke");
    let before = full_snapshot(&w.app);
    assert_eq!(
        w.admin.post(&w.app, &path, &[]).await.status,
        Status::BadRequest
    );
    assert_eq!(full_snapshot(&w.app), before);
    let resp = w.admin.post(&w.app, &path, &[("confirm", "yes")]).await;
    assert_eq!(resp.status, Status::SeeOther);
    let (_, body) = introspect_with(&w.app, &w.seed, &w.seed.client_secret, &access).await;
    assert_eq!(body["active"], false);
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM grants WHERE id = {gid} AND revoked_reason = 'admin'"
        )),
        1
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM refresh_tokens WHERE grant_id = {gid} AND revoked_at IS NULL"
        )),
        0
    );
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM grants WHERE revoked_at IS NULL"),
        1,
        "the other install lives"
    );
    let page = w
        .viewer
        .get(&w.app, &format!("/admin/t/acme/installs/{gid}"))
        .await;
    assert!(page.body.contains("status-revoked"));
}

#[rocket::async_test]
async fn revoking_all_installs_of_an_app_or_a_creator() {
    let w = world().await;
    install(&w.app, &w.seed);
    let other_tenant = seed_tenant(&w.app, "other");
    install(&w.app, &other_tenant);
    let resp = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/apps/{}/installs/revoke", w.seed.app.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM grants WHERE tenant_id = {} AND revoked_at IS NULL",
            w.seed.tenant.id
        )),
        0
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM grants WHERE tenant_id = {} AND revoked_at IS NULL",
            other_tenant.tenant.id
        )),
        1,
        "other tenants are untouched"
    );
    install(&w.app, &w.seed);
    let resp = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{}/installs/revoke", w.seed.user.id),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM grants WHERE tenant_id = {} AND revoked_at IS NULL",
            w.seed.tenant.id
        )),
        0
    );
    assert_eq!(w.app.count("SELECT count(*) FROM audit_events WHERE action IN ('grant.revoked_all_for_app', 'grant.revoked_all_for_creator')"), 2);
}

// ------------------------------------------------------------- creators

#[rocket::async_test]
async fn creators_are_created_searched_disabled_and_given_new_passwords() {
    let w = world().await;
    let resp = w
        .admin
        .post(
            &w.app,
            "/admin/t/acme/creators",
            &[
                ("email", "New@Creator.example"),
                ("password", "a long password"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let id = w
        .app
        .count("SELECT id FROM end_users WHERE email = 'new@creator.example'");
    let before = full_snapshot(&w.app);
    let dup = w
        .admin
        .post(
            &w.app,
            "/admin/t/acme/creators",
            &[
                ("email", "new@creator.example"),
                ("password", "a long password"),
            ],
        )
        .await;
    assert_eq!(dup.status, Status::BadRequest);
    assert!(dup.body.contains("exists already"));
    let weak = w
        .admin
        .post(
            &w.app,
            "/admin/t/acme/creators",
            &[("email", "x@creator.example"), ("password", "short")],
        )
        .await;
    assert_eq!(weak.status, Status::BadRequest);
    assert_eq!(full_snapshot(&w.app), before);
    let list = w.viewer.get(&w.app, "/admin/t/acme/creators?q=new@").await;
    assert!(list.body.contains("new@creator.example"));
    assert!(!list.body.contains(w.seed.email()));

    // disable: revokes the creator's installs, in one go
    let (gid, _, _) = install(&w.app, &w.seed);
    let path = format!("/admin/t/acme/creators/{}/disable", w.seed.user.id);
    let before = full_snapshot(&w.app);
    assert_eq!(
        w.admin.post(&w.app, &path, &[]).await.status,
        Status::BadRequest
    );
    assert_eq!(full_snapshot(&w.app), before);
    assert_eq!(
        w.admin
            .post(&w.app, &path, &[("confirm", "yes")])
            .await
            .status,
        Status::SeeOther
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM end_users WHERE id = {} AND disabled",
            w.seed.user.id
        )),
        1
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM grants WHERE id = {gid} AND revoked_reason = 'creator_disabled'"
        )),
        1
    );
    let enable = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{}/enable", w.seed.user.id),
            &[],
        )
        .await;
    assert_eq!(enable.status, Status::SeeOther);
    assert_eq!(
        w.app.count("SELECT count(*) FROM end_users WHERE disabled"),
        0
    );

    // a new password replaces the hash
    let old_hash = list_one(
        &w.app,
        &format!("SELECT password_hash AS s FROM end_users WHERE id = {id}"),
    );
    let resp = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{id}/password"),
            &[("password", "another long one")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let new_hash = list_one(
        &w.app,
        &format!("SELECT password_hash AS s FROM end_users WHERE id = {id}"),
    );
    assert_ne!(old_hash, new_hash);
    assert!(crypto::verify_password("another long one", &new_hash));
    let short = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{id}/password"),
            &[("password", "short")],
        )
        .await;
    assert_eq!(
        short.status,
        Status::SeeOther,
        "back to the page with an error flash"
    );
    assert_eq!(
        list_one(
            &w.app,
            &format!("SELECT password_hash AS s FROM end_users WHERE id = {id}")
        ),
        new_hash
    );
}

fn list_one(app: &TestApp, sql: &str) -> String {
    list(app, sql)
}

// ------------------------------------------------------------- members

#[rocket::async_test]
async fn an_invitation_link_signs_up_a_new_member_once() {
    let w = world().await;
    let resp = w
        .owner
        .invite(
            &w.app,
            &[("email", "Newbie@acme.example"), ("role", "viewer")],
        )
        .await;
    assert_eq!(resp.status, Status::Ok);
    let link = extract(&resp.body, "invite-link");
    assert!(
        link.starts_with("http://kitauth.test/admin/invite/kin_"),
        "{link}"
    );
    let path = link.trim_start_matches("http://kitauth.test").to_string();
    let token = path.trim_start_matches("/admin/invite/").to_string();
    assert_eq!(w.app.count(&format!("SELECT count(*) FROM admin_invites WHERE token_digest = decode('{}', 'hex') AND expires_at > now() + interval '6 days 23 hours'", hex(&crypto::digest(&token)))), 1);
    let members = w.owner.get(&w.app, "/admin/t/acme/members").await;
    assert!(
        !members.body.contains(&token),
        "the link is shown only once"
    );

    let anon = Browser::anonymous();
    let page = anon.get(&w.app, &path).await;
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("newbie@acme.example") && page.body.contains("viewer"));
    let before = full_snapshot(&w.app);
    let weak = anon.post(&w.app, &path, &[("password", "short")]).await;
    assert_eq!(weak.status, Status::BadRequest);
    assert_eq!(full_snapshot(&w.app), before);
    let resp = anon
        .post(&w.app, &path, &[("password", "a long password")])
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(resp.location.as_deref(), Some("/admin/t/acme"));
    assert!(resp
        .set_cookies
        .iter()
        .any(|c| c.starts_with("kitauth_admin=")));
    assert_eq!(w.app.count("SELECT count(*) FROM memberships m JOIN admins a ON a.id = m.admin_id WHERE a.email = 'newbie@acme.example' AND m.role = 'viewer'"), 1);
    // single use
    let before = full_snapshot(&w.app);
    assert_eq!(
        Browser::anonymous().get(&w.app, &path).await.status,
        Status::NotFound
    );
    assert_eq!(
        Browser::anonymous()
            .post(&w.app, &path, &[("password", "a long password")])
            .await
            .status,
        Status::NotFound
    );
    assert_eq!(full_snapshot(&w.app), before);
}

#[rocket::async_test]
async fn an_existing_admin_accepts_with_their_password_and_expired_links_fail() {
    let w = world().await;
    let other = seed_tenant(&w.app, "other");
    let outsider = admin_in(&w.app, other.tenant.id, "outsider@x.example", Role::Owner);
    let resp = w
        .owner
        .invite(
            &w.app,
            &[("email", "outsider@x.example"), ("role", "admin")],
        )
        .await;
    let path = extract(&resp.body, "invite-link")
        .trim_start_matches("http://kitauth.test")
        .to_string();
    let wrong = Browser::anonymous()
        .post(&w.app, &path, &[("password", "not the password")])
        .await;
    assert_eq!(wrong.status, Status::Unauthorized);
    // signed in as that admin: one click
    let resp = outsider.post(&w.app, &path, &[]).await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        Membership::role_of(&mut w.app.conn(), w.seed.tenant.id, outsider.admin_id).unwrap(),
        Some(Role::Admin)
    );
    // signed in as someone else: refused
    let resp = w
        .owner
        .invite(&w.app, &[("email", "third@x.example"), ("role", "admin")])
        .await;
    let path = extract(&resp.body, "invite-link")
        .trim_start_matches("http://kitauth.test")
        .to_string();
    let before = full_snapshot(&w.app);
    assert_eq!(
        outsider.post(&w.app, &path, &[]).await.status,
        Status::Forbidden
    );
    assert_eq!(full_snapshot(&w.app), before);
    // expired
    diesel::sql_query("UPDATE admin_invites SET expires_at = now() - interval '1 minute'")
        .execute(&mut w.app.conn())
        .unwrap();
    let before = full_snapshot(&w.app);
    assert_eq!(
        Browser::anonymous()
            .post(&w.app, &path, &[("password", "a long password")])
            .await
            .status,
        Status::NotFound
    );
    assert_eq!(full_snapshot(&w.app), before);
}

#[rocket::async_test]
async fn owners_change_roles_and_remove_members_but_never_the_last_owner() {
    let w = world().await;
    let resp = w
        .owner
        .post(
            &w.app,
            &format!("/admin/t/acme/members/{}/role", w.viewer.admin_id),
            &[("role", "admin")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        Membership::role_of(&mut w.app.conn(), w.seed.tenant.id, w.viewer.admin_id).unwrap(),
        Some(Role::Admin)
    );
    for (path, fields) in [
        (
            format!("/admin/t/acme/members/{}/role", w.owner.admin_id),
            vec![("role", "viewer")],
        ),
        (
            format!("/admin/t/acme/members/{}/remove", w.owner.admin_id),
            vec![("confirm", "yes")],
        ),
    ] {
        let before = full_snapshot(&w.app);
        let resp = w.owner.post(&w.app, &path, &fields).await;
        assert_eq!(resp.status, Status::Conflict, "{path}");
        assert!(resp.body.contains("only owner"), "{path}");
        assert_eq!(full_snapshot(&w.app), before);
    }
    let path = format!("/admin/t/acme/members/{}/remove", w.admin.admin_id);
    let before = full_snapshot(&w.app);
    assert_eq!(
        w.owner.post(&w.app, &path, &[]).await.status,
        Status::BadRequest
    );
    assert_eq!(full_snapshot(&w.app), before);
    assert_eq!(
        w.owner
            .post(&w.app, &path, &[("confirm", "yes")])
            .await
            .status,
        Status::SeeOther
    );
    assert_eq!(
        Membership::role_of(&mut w.app.conn(), w.seed.tenant.id, w.admin.admin_id).unwrap(),
        None
    );
    assert_eq!(
        w.admin.get(&w.app, "/admin/t/acme").await.status,
        Status::NotFound,
        "a removed member loses access"
    );
    assert_eq!(w.app.count("SELECT count(*) FROM audit_events WHERE action IN ('member.role_changed', 'member.removed')"), 2);
}

// ------------------------------------------------------------- settings

#[rocket::async_test]
async fn owners_edit_tenant_settings_and_branding_reaches_the_hosted_pages() {
    let w = world().await;
    let resp = w
        .owner
        .post(
            &w.app,
            "/admin/t/acme/settings",
            &[
                ("name", "Acme Inc"),
                ("brand_display_name", "Acme Connect"),
                ("brand_accent_color", "#ff0066"),
                ("brand_logo_url", "https://cdn.acme.example/logo.png"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(w.app.count("SELECT count(*) FROM tenants WHERE name = 'Acme Inc' AND NOT signup_allowed AND brand_accent_color = '#ff0066'"), 1);
    let css = w
        .app
        .client
        .get("/t/acme/brand.css")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(css.contains("#ff0066"));
    let login = unescape(
        &w.app
            .client
            .get("/t/acme/login")
            .dispatch()
            .await
            .into_string()
            .await
            .unwrap(),
    );
    assert!(login.contains("Acme Connect") && login.contains("https://cdn.acme.example/logo.png"));
    assert!(!login.contains("Create one"), "creator sign-up is off now");
    for (key, value, message) in [
        ("brand_accent_color", "red", "accent colour"),
        ("brand_accent_color", "#12345", "accent colour"),
        (
            "brand_logo_url",
            "http://cdn.acme.example/logo.png",
            "https://",
        ),
        ("brand_logo_url", "javascript:alert(1)", "https://"),
        ("name", "", "workspace name"),
    ] {
        let mut fields = vec![("name", "Acme Inc")];
        fields.retain(|(k, _)| *k != key);
        fields.push((key, value));
        let before = full_snapshot(&w.app);
        let resp = w
            .owner
            .post(&w.app, "/admin/t/acme/settings", &fields)
            .await;
        assert_eq!(resp.status, Status::BadRequest, "{key}={value}");
        assert!(resp.body.contains(message), "{key}={value}");
        assert_eq!(full_snapshot(&w.app), before);
    }
}

#[rocket::async_test]
async fn delegated_sign_in_is_chosen_in_settings_and_the_pages_show_subjects() {
    let w = world().await;
    // A bad login URL: the form again with its message, nothing changed.
    for (url, message) in [
        ("", "needs the URL of your login page"),
        ("http://login.acme.example/", "https://"),
        ("https://login.acme.example/#x", "fragment"),
    ] {
        let before = full_snapshot(&w.app);
        let resp = w
            .owner
            .post(
                &w.app,
                "/admin/t/acme/settings/sign-in",
                &[("creator_signin", "delegated"), ("login_url", url)],
            )
            .await;
        assert_eq!(resp.status, Status::BadRequest, "{url}");
        assert!(resp.body.contains(message), "{url}: {}", resp.body);
        assert_eq!(full_snapshot(&w.app), before);
    }
    let resp = w
        .owner
        .post(
            &w.app,
            "/admin/t/acme/settings/sign-in",
            &[
                ("creator_signin", "delegated"),
                ("login_url", "https://login.acme.example/kit"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app.count("SELECT count(*) FROM audit_events WHERE action = 'tenant.signin_changed' AND details->>'login_url' = 'https://login.acme.example/kit'"),
        1
    );
    let settings = w.viewer.get(&w.app, "/admin/t/acme/settings").await;
    assert!(settings
        .body
        .contains("value=\"https://login.acme.example/kit\""));
    // The Kit settings panel says where creators sign in.
    let app_page = w
        .viewer
        .get(&w.app, &format!("/admin/t/acme/apps/{}", w.seed.app.id))
        .await;
    assert!(
        app_page
            .body
            .contains("https://login.acme.example/kit?login_challenge="),
        "{}",
        app_page.body
    );
    // A subject with its installs, as the login service gave it.
    let mut conn = w.app.conn();
    let user = kitauth::db::models::EndUser::upsert_subject(
        &mut conn,
        w.seed.tenant.id,
        "acct-77",
        Some("ada@product.example"),
        Some("Ada Lovelace"),
    )
    .unwrap();
    let (grant_id, _, _) = install_for(&mut conn, &w.seed, user.id);
    let creators = w.viewer.get(&w.app, "/admin/t/acme/creators").await;
    assert!(
        creators.body.contains("your own accounts are the creators"),
        "{}",
        creators.body
    );
    assert!(creators.body.contains("acct-77") && creators.body.contains("Ada Lovelace"));
    let search = w
        .viewer
        .get(&w.app, "/admin/t/acme/installs?q=acct-7")
        .await;
    assert!(search.body.contains("acct-77") && search.body.contains("ada@product.example"));
    assert!(
        !search.body.contains(w.seed.email()),
        "only the subject's install"
    );
    let install = w
        .viewer
        .get(&w.app, &format!("/admin/t/acme/installs/{grant_id}"))
        .await;
    assert!(
        install.body.contains("<code>acct-77</code>"),
        "{}",
        install.body
    );
    // No password for a subject: the form is not offered, and a forged
    // post changes nothing.
    let creator = w
        .owner
        .get(&w.app, &format!("/admin/t/acme/creators/{}", user.id))
        .await;
    assert!(!creator.body.contains("Set a new password"));
    let resp = w
        .owner
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{}/password", user.id),
            &[("password", "a new long password")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM end_users WHERE id = {} AND password_hash IS NULL",
            user.id
        )),
        1
    );
    // Skip consent is a checkbox of the app form, audited when changed.
    let resp = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/apps/{}/edit", w.seed.app.id),
            &[
                ("name", "Acme for Kit"),
                ("redirect_uris", KIT_INSTALL),
                ("scopes", "public write"),
                ("refresh_without_secret", "on"),
                ("skip_consent", "on"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app.count("SELECT count(*) FROM apps WHERE skip_consent"),
        1
    );
    assert_eq!(
        w.app.count("SELECT count(*) FROM audit_events WHERE action = 'app.skip_consent_changed' AND actor LIKE 'admin:%'"),
        1
    );
}

// ------------------------------------------------------------- home, audit

#[rocket::async_test]
async fn home_counts_active_installs_and_token_requests_with_a_chart() {
    let w = world().await;
    let (_, _, refresh) = install(&w.app, &w.seed);
    let ok = kit_refresh(&w.app, &w.seed, &refresh).await;
    assert_eq!(ok.status(), Status::Ok);
    let bad = kit_refresh(&w.app, &w.seed, "krt_not-a-token").await;
    assert_eq!(bad.status(), Status::BadRequest);
    let resp = w.viewer.get(&w.app, "/admin/t/acme").await;
    assert_eq!(resp.status, Status::Ok);
    assert_eq!(extract(&resp.body, "active-installs"), "2");
    assert!(resp.body.contains("<svg class=\"chart\""));
    assert!(resp.body.contains(": 1 issued</title>") && resp.body.contains(": 1 failed</title>"));
    assert_eq!(
        w.app
            .count("SELECT coalesce(sum(issued), 0) FROM token_stats"),
        1
    );
    assert_eq!(
        w.app
            .count("SELECT coalesce(sum(failed), 0) FROM token_stats"),
        1
    );
}

#[rocket::async_test]
async fn the_audit_log_records_actions_and_security_events_and_filters_them() {
    let w = world().await;
    // a dashboard action and an OAuth security event
    w.admin
        .post(
            &w.app,
            &format!("/admin/t/acme/apps/{}/secrets/rotate", w.seed.app.id),
            &[("grace", "86400")],
        )
        .await;
    let (status, _) = introspect_with(&w.app, &w.seed, "kcs_wrong", "kat_x").await;
    assert_eq!(status, Status::Unauthorized);
    let all = w.viewer.get(&w.app, "/admin/t/acme/audit").await;
    assert!(
        all.body.contains("client_secret.rotated") && all.body.contains("admin:admin@acme.example")
    );
    assert!(
        all.body.contains("client.wrong_secret")
            && all
                .body
                .contains(&format!("client:{}", w.seed.app.client_id))
    );
    let only = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?kind=client.wrong_secret")
        .await;
    assert!(only.body.contains("<code>client.wrong_secret</code>"));
    assert!(!only.body.contains("<code>client_secret.rotated</code>"));
    let prefix = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?kind=client_secret")
        .await;
    assert!(prefix.body.contains("<code>client_secret.rotated</code>"));
    let future = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?from=2999-01-01")
        .await;
    assert!(future.body.contains("No events match"));
    let today = chrono::Utc::now().date_naive().to_string();
    let dated = w
        .viewer
        .get(
            &w.app,
            &format!("/admin/t/acme/audit?from={today}&to={today}"),
        )
        .await;
    assert!(dated.body.contains("client_secret.rotated"));
    // pagination
    let mut conn = w.app.conn();
    for i in 0..30 {
        kitauth::db::models::NewAuditEvent::new(w.seed.tenant.id, "test", "test.event")
            .object("n", i)
            .insert(&mut conn)
            .unwrap();
    }
    let p1 = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?kind=test.event")
        .await;
    assert!(p1.body.contains("Page 1 of 2"));
    assert!(p1.body.contains("page=2"));
    let p2 = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?kind=test.event&page=2")
        .await;
    assert_eq!(p2.body.matches("<code>test.event</code>").count(), 5);
    // other tenants' events never show
    let other = seed_tenant(&w.app, "other");
    kitauth::db::models::NewAuditEvent::new(other.tenant.id, "secret-other", "other.thing")
        .insert(&mut conn)
        .unwrap();
    assert!(!w
        .viewer
        .get(&w.app, "/admin/t/acme/audit")
        .await
        .body
        .contains("secret-other"));
}

#[rocket::async_test]
async fn flash_messages_follow_actions() {
    // A real browser session (the tracked client keeps cookies, flash included).
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    let (gid, _, _) = install(&app, &seed);
    let login = app
        .client
        .get("/admin/login")
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let csrf = csrf_from(&login);
    let resp = app
        .client
        .post("/admin/login")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("email", "owner@acme.example"),
            ("password", "admin password 1"),
        ]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::SeeOther);
    let page = app
        .client
        .get(format!("/admin/t/acme/installs/{gid}"))
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    let csrf = csrf_from(&page);
    let resp = app
        .client
        .post(format!("/admin/t/acme/installs/{gid}/revoke"))
        .header(ContentType::Form)
        .body(form(&[("csrf_token", &csrf), ("confirm", "yes")]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::SeeOther);
    let next = resp.headers().get_one("Location").unwrap().to_string();
    let page = app
        .client
        .get(next)
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(
        page.contains("flash-success") && page.contains("The install is revoked"),
        "{page}"
    );
    // shown once
    let again = app
        .client
        .get(format!("/admin/t/acme/installs/{gid}"))
        .dispatch()
        .await
        .into_string()
        .await
        .unwrap();
    assert!(!again.contains("The install is revoked"));
}

#[rocket::async_test]
async fn a_withdrawn_invitation_link_stops_working() {
    let w = world().await;
    let resp = w
        .owner
        .invite(
            &w.app,
            &[("email", "later@acme.example"), ("role", "admin")],
        )
        .await;
    let path = extract(&resp.body, "invite-link")
        .trim_start_matches("http://kitauth.test")
        .to_string();
    let id = w.app.count("SELECT id FROM admin_invites");
    let resp = w
        .owner
        .post(
            &w.app,
            &format!("/admin/t/acme/members/invites/{id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    assert_eq!(
        w.app
            .count("SELECT count(*) FROM admin_invites WHERE revoked_at IS NOT NULL"),
        1
    );
    let before = full_snapshot(&w.app);
    let anon = Browser::anonymous();
    assert_eq!(anon.get(&w.app, &path).await.status, Status::NotFound);
    let resp = anon
        .post(&w.app, &path, &[("password", "a long password")])
        .await;
    assert_eq!(resp.status, Status::NotFound);
    assert!(resp.body.contains("Invitation not valid"));
    assert_eq!(full_snapshot(&w.app), before);
    // a second withdrawal finds nothing to withdraw
    let resp = w
        .owner
        .post(
            &w.app,
            &format!("/admin/t/acme/members/invites/{id}/revoke"),
            &[],
        )
        .await;
    assert_eq!(resp.status, Status::NotFound);
}

#[rocket::async_test]
async fn the_session_cookie_is_secure_when_secure_cookies_is_on() {
    let app = untracked_app(|f| f.merge(("secure_cookies", true))).await;
    let seed = seed_tenant(&app, "acme");
    admin_in(&app, seed.tenant.id, "owner@acme.example", Role::Owner);
    let resp = Browser::anonymous()
        .post(
            &app,
            "/admin/login",
            &[
                ("email", "owner@acme.example"),
                ("password", "admin password 1"),
            ],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let cookie = resp
        .set_cookies
        .iter()
        .find(|c| c.starts_with("kitauth_admin="))
        .expect("session cookie");
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("Path=/admin"));
}

// ------------------------------------------------------------ issue 13: dashboard

#[rocket::async_test]
async fn creating_and_rotating_redirect_to_a_one_time_reveal_bound_to_the_session() {
    let w = world().await;
    let apps_before = w.app.count("SELECT count(*) FROM apps");
    let resp = w
        .admin
        .post(
            &w.app,
            "/admin/t/acme/apps/new",
            &[
                ("name", "Once"),
                ("redirect_uris", KIT_INSTALL),
                ("scopes", "public"),
            ],
        )
        .await;
    assert_eq!(
        resp.status,
        Status::SeeOther,
        "every POST ends in a redirect"
    );
    let reveal = resp.location.clone().unwrap();
    assert!(reveal.ends_with("/secret"), "{reveal}");
    assert!(!reveal.contains("kcs_"), "no secret in the URL");
    // Another session (even of the same tenant) gets nothing.
    let other = w.owner.get(&w.app, &reveal).await;
    assert_eq!(other.status, Status::Ok);
    assert!(other.body.contains("already shown") && !other.body.contains("id=\"new-secret\""));
    let first = w.admin.get(&w.app, &reveal).await;
    let secret = extract(&first.body, "new-secret");
    assert!(secret.starts_with("kcs_"));
    assert!(first.body.contains("App created."));
    // A reload: "already shown", no secret, and no second app.
    let reload = w.admin.get(&w.app, &reveal).await;
    assert_eq!(reload.status, Status::Ok);
    assert!(reload.body.contains("already shown"));
    assert!(!reload.body.contains(&secret));
    assert_eq!(w.app.count("SELECT count(*) FROM apps"), apps_before + 1);

    // Rotation: the same, and a reload rotates nothing.
    let path = format!("/admin/t/acme/apps/{}/secrets/rotate", w.seed.app.id);
    let secrets_before = w.app.count("SELECT count(*) FROM client_secrets");
    let resp = w.admin.post(&w.app, &path, &[("grace", "3600")]).await;
    assert_eq!(resp.status, Status::SeeOther);
    let reveal = resp.location.clone().unwrap();
    let first = w.admin.get(&w.app, &reveal).await;
    let rotated = extract(&first.body, "new-secret");
    assert!(first.body.contains("keep working for 1 hour"));
    let reload = w.admin.get(&w.app, &reveal).await;
    assert!(reload.body.contains("already shown") && !reload.body.contains(&rotated));
    assert_eq!(
        w.app.count("SELECT count(*) FROM client_secrets"),
        secrets_before + 1
    );
    assert_eq!(
        w.app.count(&format!(
            "SELECT count(*) FROM client_secrets WHERE app_id = {} AND expires_at IS NULL AND revoked_at IS NULL",
            w.seed.app.id
        )),
        1,
        "the new secret is the one without an expiry"
    );
}

#[rocket::async_test]
async fn the_only_live_secret_warns_before_revoking_and_revoked_secrets_show_no_expiry() {
    let w = world().await;
    let page_path = format!("/admin/t/acme/apps/{}", w.seed.app.id);
    let page = w.admin.get(&w.app, &page_path).await;
    assert!(
        page.body.contains("only working secret") && page.body.contains("Kit makes fail"),
        "a plain warning beside the only live secret"
    );
    assert!(
        !page.body.contains(">Revoke now<"),
        "no one-click Revoke now"
    );
    // After a rotation with grace there are two live secrets: no warning.
    let resp = w
        .admin
        .post(
            &w.app,
            &format!("/admin/t/acme/apps/{}/secrets/rotate", w.seed.app.id),
            &[("grace", "3600")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let page = w.admin.get(&w.app, &page_path).await;
    assert!(!page.body.contains("only working secret"));
    assert!(page.body.contains(">Revoke now<"));
    let expiry = list(
        &w.app,
        &format!("SELECT to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') AS s FROM client_secrets WHERE id = {}", w.secret_id),
    );
    assert!(
        page.body.contains(&expiry),
        "the grace expiry is shown while it counts"
    );
    // Revoke the old one: its grace expiry is gone from the page.
    let resp = w
        .admin
        .post(
            &w.app,
            &format!(
                "/admin/t/acme/apps/{}/secrets/{}/revoke",
                w.seed.app.id, w.secret_id
            ),
            &[("confirm", "yes")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let page = w.admin.get(&w.app, &page_path).await;
    assert!(
        !page.body.contains(&expiry),
        "a revoked secret shows no old expiry"
    );
    assert!(page.body.contains("revoked"));
}

#[rocket::async_test]
async fn the_no_time_confirmation_is_marked_to_show_only_for_no_time() {
    let w = world().await;
    let page = w
        .admin
        .get(&w.app, &format!("/admin/t/acme/apps/{}", w.seed.app.id))
        .await;
    assert!(page.body.contains("class=\"check small confirm-now\""));
    let css = w.app.client.get("/static/app.css").dispatch().await;
    let css = css.into_string().await.unwrap();
    assert!(css.contains(".rotate .confirm-now { display: none; }"));
    assert!(css.contains(".rotate:has(#grace option[value=\"0\"]:checked) .confirm-now"));
}

#[rocket::async_test]
async fn the_audit_log_names_objects_with_links_and_reads_as_text() {
    let w = world().await;
    w.admin
        .post(
            &w.app,
            &format!("/admin/t/acme/apps/{}/edit", w.seed.app.id),
            &[
                ("name", "Acme Named"),
                ("redirect_uris", KIT_INSTALL),
                ("scopes", "public write"),
            ],
        )
        .await;
    w.admin
        .post(
            &w.app,
            &format!("/admin/t/acme/creators/{}/disable", w.seed.user.id),
            &[("confirm", "yes")],
        )
        .await;
    let page = w.viewer.get(&w.app, "/admin/t/acme/audit").await;
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains(&format!(
            "<a href=\"/admin/t/acme/apps/{}\">app Acme Named</a>",
            w.seed.app.id
        )),
        "the app by name, linked"
    );
    let email = w.seed.email().to_string();
    assert!(
        page.body.contains(&format!(
            "<a href=\"/admin/t/acme/creators/{}\">creator {email}</a>",
            w.seed.user.id
        )),
        "the creator by email, linked"
    );
    assert!(!page.body.contains(&format!("app {}<", w.seed.app.id)));
    assert!(!page.body.contains(&format!("end_user {}", w.seed.user.id)));
    assert!(
        page.body.contains("scopes: public, write"),
        "details read as text"
    );
    assert!(!page.body.contains("{\"name\""), "no raw JSON");
    for prefix in [
        "client_secret",
        "client",
        "app",
        "grant",
        "creator",
        "member",
    ] {
        assert!(
            page.body
                .contains(&format!("<option value=\"{prefix}\" >{prefix}.*</option>")),
            "the kind filter offers {prefix}"
        );
    }
    let filtered = w
        .viewer
        .get(&w.app, "/admin/t/acme/audit?kind=creator")
        .await;
    assert!(
        filtered.body.contains("creator.disabled")
            && !filtered.body.contains("<code>app.updated</code>")
    );
    // The home page's recent activity names objects the same way.
    let home = w.viewer.get(&w.app, "/admin/t/acme").await;
    assert!(home.body.contains("app Acme Named"));
}

#[rocket::async_test]
async fn home_without_data_says_so() {
    let w = world().await;
    let home = w.viewer.get(&w.app, "/admin/t/acme").await;
    assert_eq!(home.status, Status::Ok);
    assert!(
        !home.body.contains("busiest day: 1"),
        "no made-up busiest day"
    );
    assert!(!home.body.contains("busiest day had 1"));
    assert!(home
        .body
        .contains("No token requests in the last 30 days yet"));
}

#[rocket::async_test]
async fn invites_default_to_viewer_and_app_settings_have_their_own_heading() {
    let w = world().await;
    let members = w.owner.get(&w.app, "/admin/t/acme/members").await;
    let at = members.body.find("id=\"invite-role\"").unwrap();
    let select = &members.body[at..at + members.body[at..].find("</select>").unwrap()];
    assert!(select.contains("<option value=\"viewer\" selected>"));
    assert!(!select.contains("<option value=\"admin\" selected>"));
    let app = w
        .viewer
        .get(&w.app, &format!("/admin/t/acme/apps/{}", w.seed.app.id))
        .await;
    let installs = app.body.find("<h2>Installs</h2>").unwrap();
    let settings = app
        .body
        .find("<h2>Settings</h2>")
        .expect("a Settings heading");
    let redirect = app.body.find("Redirect URIs").unwrap();
    assert!(
        settings > installs && redirect > settings,
        "settings sit under their own heading"
    );
}

#[rocket::async_test]
async fn the_signup_slug_pattern_is_valid_under_the_v_flag() {
    let app = new_app().await;
    let page = Browser::anonymous().get(&app, "/admin/signup").await;
    let at = page.body.find("id=\"tenant_slug\"").unwrap();
    let tag = &page.body[at..at + page.body[at..].find('>').unwrap()];
    let pattern = tag
        .split("pattern=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    // Under the `v` flag a `-` in a class must be escaped (or first/last is still an error).
    let class = pattern
        .split('[')
        .nth(1)
        .unwrap()
        .split(']')
        .next()
        .unwrap();
    // Ranges (`a-z`) are fine; a literal `-` at either end of the class is not.
    let unescaped_end = class.ends_with('-') && !class.ends_with("\\-");
    assert!(
        !unescaped_end && !class.starts_with('-'),
        "unescaped - in {pattern}"
    );
}

#[rocket::async_test]
async fn an_invitation_ends_in_a_redirect_and_a_reload_shows_the_link_no_more() {
    let w = world().await;
    let resp = w
        .owner
        .post(
            &w.app,
            "/admin/t/acme/members/invite",
            &[("email", "once@acme.example"), ("role", "viewer")],
        )
        .await;
    assert_eq!(resp.status, Status::SeeOther);
    let location = resp.location.expect("a Location");
    let first = w.owner.get(&w.app, &location).await;
    assert_eq!(first.status, Status::Ok);
    assert!(extract(&first.body, "invite-link").contains("/admin/invite/kin_"));
    let again = w.owner.get(&w.app, &location).await;
    assert_eq!(again.status, Status::Ok);
    assert!(!again.body.contains("kin_"), "shown once");
    assert!(again.body.contains("already shown"));
    assert_eq!(w.app.count("SELECT count(*) FROM admin_invites"), 1);
}
