//! Bad input, table-driven: every case gets an RFC 6749 JSON error (an HTML
//! error page on authorize), never a 5xx, and changes no row.

mod common;

use common::*;
use rocket::http::{ContentType, Status};

struct Case {
    name: &'static str,
    path: String,
    content_type: ContentType,
    body: Vec<u8>,
    status: u16,
    error: &'static str,
}

#[rocket::async_test]
async fn bad_requests_get_rfc6749_errors_and_change_nothing() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (access, refresh) = {
        let code = get_code(&app, &seed).await;
        let t = json_of(kit_exchange(&app, &seed, &code).await).await;
        (
            t["access_token"].as_str().unwrap().to_string(),
            t["refresh_token"].as_str().unwrap().to_string(),
        )
    };
    let id = seed.app.client_id.clone();
    let secret = seed.client_secret.clone();
    let json = |v: serde_json::Value| v.to_string().into_bytes();
    let big = format!("{{\"client_id\":\"{id}\",\"grant_type\":\"refresh_token\",\"refresh_token\":\"{refresh}\",\"pad\":\"{}\"}}", "x".repeat(17 * 1024));
    let overlong = "krt_".to_string() + &"A".repeat(3000);
    let token = "/t/acme/oauth/token".to_string();
    let f = ContentType::Form;
    let j = ContentType::JSON;

    let mut cases = vec![
        Case { name: "empty body", path: token.clone(), content_type: f.clone(), body: vec![], status: 400, error: "invalid_request" },
        Case { name: "whitespace body", path: token.clone(), content_type: j.clone(), body: b"  \n ".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "neither JSON nor form", path: token.clone(), content_type: f.clone(), body: b"hello world".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "broken JSON", path: token.clone(), content_type: j.clone(), body: b"{\"client_id\": ".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "JSON array", path: token.clone(), content_type: j.clone(), body: b"[\"client_id\"]".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "JSON number", path: token.clone(), content_type: f.clone(), body: b"12345".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "JSON string", path: token.clone(), content_type: f.clone(), body: b"\"grant_type=refresh_token\"".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "JSON true", path: token.clone(), content_type: j.clone(), body: b"true".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "number field", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": 42, "grant_type": "refresh_token", "refresh_token": refresh})), status: 400, error: "invalid_request" },
        Case { name: "array field", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": ["refresh_token"], "refresh_token": refresh})), status: 400, error: "invalid_request" },
        Case { name: "object field", path: token.clone(), content_type: j.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token", "refresh_token": {"v": refresh}})), status: 400, error: "invalid_request" },
        Case { name: "missing grant_type", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "refresh_token": refresh})), status: 400, error: "invalid_request" },
        Case { name: "missing refresh_token", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token"})), status: 400, error: "invalid_request" },
        Case { name: "missing client_id", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"grant_type": "refresh_token", "refresh_token": refresh})), status: 401, error: "invalid_client" },
        Case { name: "duplicate JSON field", path: token.clone(), content_type: j.clone(), body: format!("{{\"client_id\":\"{id}\",\"grant_type\":\"refresh_token\",\"refresh_token\":\"{refresh}\",\"refresh_token\":\"{refresh}\"}}").into_bytes(), status: 400, error: "invalid_request" },
        Case { name: "duplicate form field", path: token.clone(), content_type: f.clone(), body: form(&[("client_id", &id), ("grant_type", "refresh_token"), ("grant_type", "refresh_token"), ("refresh_token", &refresh)]).into_bytes(), status: 400, error: "invalid_request" },
        Case { name: "unknown grant_type", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "password", "username": "a", "password": "b"})), status: 400, error: "unsupported_grant_type" },
        Case { name: "body over 16 KiB", path: token.clone(), content_type: j.clone(), body: big.into_bytes(), status: 400, error: "invalid_request" },
        Case { name: "invalid UTF-8", path: token.clone(), content_type: f.clone(), body: b"client_id=\xff\xfe&grant_type=refresh_token".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "invalid UTF-8 in escape", path: token.clone(), content_type: f.clone(), body: b"client_id=%ff%fe&grant_type=refresh_token".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "NUL bytes", path: token.clone(), content_type: f.clone(), body: b"\0\0\0".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "overlong token", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token", "refresh_token": overlong})), status: 400, error: "invalid_request" },
        Case { name: "garbage token", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token", "refresh_token": "krt_'; DROP TABLE grants; --"})), status: 400, error: "invalid_grant" },
        Case { name: "access token as refresh token", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token", "refresh_token": access})), status: 400, error: "invalid_grant" },
        Case { name: "garbage code", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "code": "\u{202e}kac", "redirect_uri": KIT_APPS})), status: 400, error: "invalid_grant" },
        Case { name: "unregistered redirect at token", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "client_secret": secret, "grant_type": "authorization_code", "code": "kac_0000000000000000000000000000000000000000000", "redirect_uri": "https://evil.example/apps"})), status: 400, error: "invalid_grant" },
        Case { name: "overlong client_id", path: token.clone(), content_type: f.clone(), body: json(serde_json::json!({"client_id": "k".repeat(1500), "grant_type": "refresh_token", "refresh_token": refresh})), status: 401, error: "invalid_client" },
        Case { name: "unknown tenant", path: "/t/nobody/oauth/token".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "grant_type": "refresh_token", "refresh_token": refresh})), status: 404, error: "invalid_request" },
        Case { name: "invalid tenant slug", path: "/t/NOT_A_SLUG/oauth/refresh".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id})), status: 404, error: "invalid_request" },
        Case { name: "revoke without token", path: "/t/acme/oauth/revoke".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "client_secret": secret})), status: 400, error: "invalid_request" },
        Case { name: "revoke without secret", path: "/t/acme/oauth/revoke".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "token": access})), status: 401, error: "invalid_client" },
        Case { name: "revoke array body", path: "/t/acme/oauth/revoke".into(), content_type: j.clone(), body: b"[1]".to_vec(), status: 400, error: "invalid_request" },
        Case { name: "introspect without credentials", path: "/t/acme/oauth/introspect".into(), content_type: f.clone(), body: form(&[("token", &access)]).into_bytes(), status: 401, error: "invalid_client" },
        Case { name: "introspect wrong type", path: "/t/acme/oauth/introspect".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "client_secret": secret, "token": 7})), status: 400, error: "invalid_request" },
        Case { name: "introspect unknown tenant", path: "/t/zz/oauth/introspect".into(), content_type: f.clone(), body: json(serde_json::json!({"client_id": id, "client_secret": secret, "token": access})), status: 404, error: "invalid_request" },
    ];
    // The same payloads through the refresh URL.
    let refresh_cases: Vec<Case> = cases
        .iter()
        .filter(|c| c.path == token)
        .map(|c| Case {
            name: c.name,
            path: "/t/acme/oauth/refresh".into(),
            content_type: c.content_type.clone(),
            body: c.body.clone(),
            status: c.status,
            error: c.error,
        })
        .collect();
    cases.extend(refresh_cases);

    // Record the secret's last use once, so that the snapshot is stable.
    let _ = introspect(&app, &seed, &access).await;
    let before = app.snapshot();
    for case in &cases {
        let resp = app
            .client
            .post(case.path.clone())
            .header(case.content_type.clone())
            .body(case.body.clone())
            .dispatch()
            .await;
        let status = resp.status().code;
        assert_eq!(
            resp.content_type(),
            Some(ContentType::JSON),
            "{}",
            case.name
        );
        assert_eq!(
            resp.headers().get_one("Cache-Control"),
            Some("no-store"),
            "{}",
            case.name
        );
        let body = json_of(resp).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body["error"], case.error, "{}: {body}", case.name);
        assert!(body["error_description"].is_string(), "{}", case.name);
    }
    assert_eq!(app.snapshot(), before, "no bad request changed a row");
    // The install still works afterwards.
    assert_eq!(
        kit_refresh(&app, &seed, &refresh).await.status(),
        Status::Ok
    );
}

#[rocket::async_test]
async fn bad_authorize_requests_get_html_error_pages() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let id = seed.app.client_id.clone();
    let cases: Vec<(&str, String, u16)> = vec![
        ("no parameters", "/t/acme/oauth/authorize".into(), 400),
        (
            "invalid UTF-8",
            format!("/t/acme/oauth/authorize?client_id={id}&state=%ff"),
            400,
        ),
        (
            "bad escape",
            format!("/t/acme/oauth/authorize?client_id={id}&state=%zz"),
            400,
        ),
        (
            "duplicate parameter",
            format!("/t/acme/oauth/authorize?client_id={id}&client_id={id}&response_type=code"),
            400,
        ),
        (
            "unknown client",
            "/t/acme/oauth/authorize?client_id=kit_nope&response_type=code".into(),
            400,
        ),
        (
            "overlong client",
            format!(
                "/t/acme/oauth/authorize?client_id={}&response_type=code",
                "k".repeat(1800)
            ),
            400,
        ),
        (
            "unknown tenant",
            format!("/t/nobody/oauth/authorize?client_id={id}&response_type=code"),
            404,
        ),
        (
            "missing redirect",
            format!("/t/acme/oauth/authorize?client_id={id}&response_type=code"),
            400,
        ),
    ];
    let before = app.snapshot();
    for (name, path, status) in cases {
        let resp = app.client.get(path).dispatch().await;
        assert_eq!(resp.status().code, status, "{name}");
        assert_eq!(resp.content_type(), Some(ContentType::HTML), "{name}");
        assert!(resp.headers().get_one("Location").is_none(), "{name}");
        let html = resp.into_string().await.unwrap();
        assert!(html.contains("<h1>"), "{name}");
    }
    // A consent POST that is not a form.
    let resp = app
        .client
        .post("/t/acme/oauth/authorize")
        .header(ContentType::JSON)
        .body("[1,2]")
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::BadRequest);
    assert_eq!(app.snapshot(), before);
}

/// The HTML forms of the hosted pages and the dashboard, each with the
/// fields it posts, and the query strings of every page with one.
fn forms(seed: &Seed, ids: &Ids) -> Vec<(String, Vec<&'static str>)> {
    let t = "/admin/t/acme";
    let app = seed.app.id;
    let user = seed.user.id;
    vec![
        ("/t/acme/login".into(), vec!["email", "password", "next"]),
        ("/t/acme/signup".into(), vec!["email", "password", "next"]),
        (
            "/t/acme/oauth/authorize".into(),
            vec![
                "client_id",
                "redirect_uri",
                "state",
                "scope",
                "decision",
                "response_type",
                "code_challenge",
            ],
        ),
        ("/admin/login".into(), vec!["email", "password", "next"]),
        (
            "/admin/signup".into(),
            vec!["email", "password", "name", "tenant_name", "tenant_slug"],
        ),
        (
            format!("/admin/invite/{}", ids.invite_token),
            vec!["password", "name"],
        ),
        (
            format!("{t}/apps/new"),
            vec!["name", "redirect_uris", "scopes", "access_token_ttl_secs"],
        ),
        (
            format!("{t}/apps/{app}/edit"),
            vec![
                "name",
                "redirect_uris",
                "scopes",
                "refresh_grace_secs",
                "disabled",
            ],
        ),
        (format!("{t}/apps/{app}/delete"), vec!["confirm"]),
        (
            format!("{t}/apps/{app}/secrets/rotate"),
            vec!["grace", "confirm"],
        ),
        (
            format!("{t}/apps/{app}/secrets/{}/revoke", ids.secret),
            vec!["confirm"],
        ),
        (format!("{t}/creators"), vec!["email", "password"]),
        (format!("{t}/creators/{user}/disable"), vec!["confirm"]),
        (format!("{t}/creators/{user}/password"), vec!["password"]),
        (
            format!("{t}/installs/{}/revoke", ids.grant),
            vec!["confirm"],
        ),
        (format!("{t}/apps/{app}/installs/revoke"), vec!["confirm"]),
        (
            format!("{t}/creators/{user}/installs/revoke"),
            vec!["confirm"],
        ),
        (format!("{t}/members/invite"), vec!["email", "role"]),
        (format!("{t}/members/{}/role", ids.member), vec!["role"]),
        (
            format!("{t}/members/{}/remove", ids.member),
            vec!["confirm"],
        ),
        (
            format!("{t}/settings"),
            vec![
                "brand_display_name",
                "brand_logo_url",
                "brand_accent_color",
                "signup_allowed",
            ],
        ),
    ]
}

struct Ids {
    invite_token: String,
    secret: i64,
    grant: i64,
    member: i64,
}

fn queries(seed: &Seed) -> Vec<(String, Vec<&'static str>)> {
    let t = "/admin/t/acme";
    vec![
        (
            "/t/acme/oauth/authorize".into(),
            vec![
                "client_id",
                "redirect_uri",
                "state",
                "scope",
                "response_type",
            ],
        ),
        ("/t/acme/login".into(), vec!["next"]),
        ("/t/acme/signup".into(), vec!["next"]),
        ("/admin/login".into(), vec!["next"]),
        (format!("{t}/creators"), vec!["q", "page"]),
        (format!("{t}/creators/{}", seed.user.id), vec!["page"]),
        (format!("{t}/installs"), vec!["q", "page"]),
        (format!("{t}/apps/{}/installs", seed.app.id), vec!["q"]),
        (format!("{t}/audit"), vec!["kind", "from", "to", "page"]),
        ("/t/acme/oauth/userinfo".into(), vec!["access_token"]),
        (
            "/t/acme/.well-known/oauth-authorization-server".into(),
            vec!["x"],
        ),
    ]
}

/// A signed-in owner of the seeded tenant, a pending invite, a second member,
/// and a live install: every form of the dashboard has something to act on.
fn dashboard_fixture(app: &TestApp, seed: &Seed) -> (String, Ids) {
    use kitauth::db::models::{Admin, AdminSession, Membership, Role};
    let mut conn = app.conn();
    let hash = kitauth::crypto::hash_password("admin password 1", 4).unwrap();
    let owner = Admin::create(&mut conn, "owner@acme.example", &hash).unwrap();
    Membership::add(&mut conn, seed.tenant.id, owner.id, Role::Owner).unwrap();
    let member = Admin::create(&mut conn, "member@acme.example", &hash).unwrap();
    Membership::add(&mut conn, seed.tenant.id, member.id, Role::Viewer).unwrap();
    let session = AdminSession::create(
        &mut conn,
        owner.id,
        kitauth::db::models::admin::SessionPolicy {
            idle: chrono::Duration::hours(12),
            lifetime: chrono::Duration::days(7),
        },
        None,
    )
    .unwrap();
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    use diesel::RunQueryDsl;
    let secret = diesel::sql_query(format!(
        "SELECT id FROM client_secrets WHERE app_id = {}",
        seed.app.id
    ))
    .get_result::<Id>(&mut conn)
    .unwrap()
    .id;
    let grant = diesel::sql_query("SELECT id FROM grants ORDER BY id LIMIT 1")
        .get_result::<Id>(&mut conn)
        .unwrap()
        .id;
    (
        session,
        Ids {
            invite_token: format!("kin_{}", "A".repeat(43)),
            secret,
            grant,
            member: member.id,
        },
    )
}

/// A NUL (raw, or percent-encoded in a query), or another control
/// character, in any field of any form or query string: a 400 in the
/// surface's format, before any database work, and no row changes.
#[rocket::async_test]
async fn nul_and_control_characters_are_refused_in_every_form_query_and_credential() {
    use rocket::http::{Cookie, Header};
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let code = get_code(&app, &seed).await;
    assert_eq!(kit_exchange(&app, &seed, &code).await.status(), Status::Ok);
    let (session, ids) = dashboard_fixture(&app, &seed);
    // One CSRF token for every form: the tracked client keeps its cookie
    // (path `/`), so each form is refused for its bad field, not for CSRF.
    let hosted_csrf = csrf_of_page(&app, "/t/acme/login").await;
    // One authenticated request first, so the session's own stamp is fresh.
    app.client
        .get("/admin/t/acme")
        .cookie(Cookie::new("kitauth_admin", session.clone()))
        .dispatch()
        .await;
    let audit = |app: &TestApp| app.count("SELECT count(*) AS n FROM audit_events");
    let before = (app.snapshot(), audit(&app));
    let mut checked = 0;
    for bad in ["a\0b", "\0", "a\u{1b}[31mb", "x\u{7f}"] {
        for (path, fields) in forms(&seed, &ids) {
            for target in &fields {
                let mut pairs: Vec<(&str, &str)> = vec![("csrf_token", hosted_csrf.as_str())];
                for f in &fields {
                    pairs.push((f, if f == target { bad } else { "yes" }));
                }
                let resp = app
                    .client
                    .post(path.clone())
                    .header(ContentType::Form)
                    .cookie(Cookie::new("kitauth_admin", session.clone()))
                    .body(form(&pairs))
                    .dispatch()
                    .await;
                let what = format!("POST {path} {target}={bad:?}");
                assert_eq!(resp.status(), Status::BadRequest, "{what}");
                assert_eq!(resp.content_type(), Some(ContentType::HTML), "{what}");
                assert!(resp.into_string().await.unwrap().contains("<h1>"), "{what}");
                checked += 1;
            }
        }
        let encoded: String = form_urlencoded::byte_serialize(bad.as_bytes()).collect();
        for (path, fields) in queries(&seed) {
            for target in &fields {
                let query: Vec<String> = fields
                    .iter()
                    .map(|f| format!("{f}={}", if f == target { encoded.as_str() } else { "1" }))
                    .collect();
                let uri = format!("{path}?{}", query.join("&"));
                let resp = app
                    .client
                    .get(uri.clone())
                    .cookie(Cookie::new("kitauth_admin", session.clone()))
                    .dispatch()
                    .await;
                assert_eq!(resp.status(), Status::BadRequest, "GET {uri}");
                let api = path.contains("/oauth/userinfo") || path.contains("/.well-known/");
                if api {
                    assert_eq!(resp.content_type(), Some(ContentType::JSON), "GET {uri}");
                    assert_eq!(json_of(resp).await["error"], "invalid_request", "GET {uri}");
                } else {
                    assert_eq!(resp.content_type(), Some(ContentType::HTML), "GET {uri}");
                }
                checked += 1;
            }
        }
        // The OAuth bodies, as form, JSON and Basic-auth parts.
        for endpoint in ["token", "refresh", "revoke", "introspect"] {
            let path = format!("/t/acme/oauth/{endpoint}");
            let bodies = vec![
                form(&[("client_id", &seed.app.client_id), ("client_secret", bad), ("grant_type", "refresh_token"), ("refresh_token", bad), ("token", bad)]),
                serde_json::json!({"client_id": bad, "client_secret": seed.client_secret, "grant_type": "authorization_code", "code": "kac_x", "token": "t"}).to_string(),
                serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "grant_type": "authorization_code", "code": bad, "redirect_uri": KIT_APPS, "token": bad}).to_string(),
            ];
            let mut requests: Vec<(Option<String>, String)> =
                bodies.into_iter().map(|b| (None, b)).collect();
            for (id, secret) in [
                (bad, seed.client_secret.as_str()),
                (seed.app.client_id.as_str(), bad),
            ] {
                use base64::Engine;
                let enc =
                    |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
                let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                    "{}:{}",
                    enc(id),
                    enc(secret)
                ));
                requests.push((
                    Some(format!("Basic {basic}")),
                    form(&[
                        ("grant_type", "refresh_token"),
                        ("refresh_token", "krt_x"),
                        ("token", "t"),
                    ]),
                ));
            }
            for (auth, body) in requests {
                let mut req = app
                    .client
                    .post(path.clone())
                    .header(ContentType::Form)
                    .body(body.clone());
                if let Some(a) = auth.clone() {
                    req = req.header(Header::new("Authorization", a));
                }
                let resp = req.dispatch().await;
                let what = format!("POST {path} {auth:?} {body:?}");
                assert_eq!(resp.status(), Status::BadRequest, "{what}");
                assert_eq!(json_of(resp).await["error"], "invalid_request", "{what}");
                checked += 1;
            }
        }
    }
    assert!(checked > 300, "{checked} cases");
    assert_eq!((app.snapshot(), audit(&app)), before, "nothing was written");
}

/// Arbitrary bytes (percent-encoded, so any byte reaches the decoder) in
/// any field of any form and any parameter of any query string: never a
/// 5xx, and a refused request (4xx) writes nothing.
#[rocket::async_test]
async fn arbitrary_bytes_in_any_field_of_any_form_never_5xx_and_refusals_write_nothing() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, TestRunner};
    use rocket::http::Cookie;
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let code = get_code(&app, &seed).await;
    assert_eq!(kit_exchange(&app, &seed, &code).await.status(), Status::Ok);
    let (session, ids) = dashboard_fixture(&app, &seed);
    let csrf = csrf_of_page(&app, "/t/acme/login").await;
    app.client
        .get("/admin/t/acme")
        .cookie(Cookie::new("kitauth_admin", session.clone()))
        .dispatch()
        .await;
    let forms = forms(&seed, &ids);
    let queries = queries(&seed);
    let strategy = (
        0..forms.len() + queries.len(),
        0usize..8,
        proptest::collection::vec(proptest::num::u8::ANY, 0..80),
    );
    let mut runner = TestRunner::new(Config {
        cases: 100,
        ..Config::default()
    });
    let audit = |app: &TestApp| app.count("SELECT count(*) AS n FROM audit_events");
    // The signed-in admin's session stamps its own use once a minute; that
    // is the guard's write, not the refused form's.
    let rows = |app: &TestApp| {
        let s = app.snapshot();
        let (head, rest) = s.split_once("admin_sessions\n").unwrap();
        let (_, tail) = rest.split_once("\napps\n").unwrap();
        format!("{head}{tail}")
    };
    for _ in 0..100 {
        let (which, field, bytes) = strategy.new_tree(&mut runner).unwrap().current();
        let enc: String = bytes.iter().map(|b| format!("%{b:02X}")).collect();
        let before = (rows(&app), audit(&app));
        let (what, status) = if which < forms.len() {
            let (path, fields) = &forms[which];
            let target = fields[field % fields.len()];
            let mut body = format!("csrf_token={csrf}");
            for f in fields {
                body.push_str(&format!(
                    "&{f}={}",
                    if *f == target { enc.as_str() } else { "yes" }
                ));
            }
            let resp = app
                .client
                .post(path.clone())
                .header(ContentType::Form)
                .cookie(Cookie::new("kitauth_admin", session.clone()))
                .body(body.clone())
                .dispatch()
                .await;
            (format!("POST {path} {body}"), resp.status().code)
        } else {
            let (path, fields) = &queries[which - forms.len()];
            let target = fields[field % fields.len()];
            let uri = format!("{path}?{target}={enc}");
            let resp = app
                .client
                .get(uri.clone())
                .cookie(Cookie::new("kitauth_admin", session.clone()))
                .dispatch()
                .await;
            (format!("GET {uri}"), resp.status().code)
        };
        assert!(status < 500, "{what}: {status}");
        if (400..500).contains(&status) {
            assert_eq!((rows(&app), audit(&app)), before, "{what} wrote");
        }
    }
}

/// A `code_challenge` of verifier syntax (44 characters, a `.`, a `~`) is no
/// S256 challenge: both the authorize request and the consent form that
/// repeats it answer the client's redirect with `invalid_request`, and no
/// code is issued.
#[rocket::async_test]
async fn authorize_refuses_a_challenge_of_verifier_syntax_with_an_error_redirect() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    sign_in(&app, &seed).await;
    let csrf = csrf_of_page(&app, "/t/acme/login").await;
    let before = app.snapshot();
    for challenge in [
        "a".repeat(44),
        format!("{}.", "a".repeat(42)),
        format!("{}~", "a".repeat(42)),
    ] {
        let extra = [
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", "s1"),
        ];
        let get = app
            .client
            .get(authorize_path(&seed, &extra))
            .dispatch()
            .await;
        let post = app
            .client
            .post("/t/acme/oauth/authorize")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf),
                ("decision", "allow"),
                ("client_id", &seed.app.client_id),
                ("response_type", "code"),
                ("redirect_uri", KIT_INSTALL),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", "s1"),
            ]))
            .dispatch()
            .await;
        for (how, resp) in [("GET", get), ("POST", post)] {
            assert_eq!(resp.status(), Status::Found, "{how} {challenge}");
            let location = resp.headers().get_one("Location").unwrap().to_string();
            assert!(location.starts_with(KIT_INSTALL), "{how} {location}");
            assert_eq!(
                query_param(&location, "error").as_deref(),
                Some("invalid_request"),
                "{how} {challenge}"
            );
            assert_eq!(query_param(&location, "state").as_deref(), Some("s1"));
            assert!(query_param(&location, "code").is_none(), "{how}");
        }
    }
    assert_eq!(app.snapshot(), before, "no code was stored");
}
