//! The tenant API (issue 15): keys, scopes, tenant isolation, idempotency,
//! If-Match, audit, bad input, rate limits, the OpenAPI document.

mod common;

use common::*;
use diesel::prelude::*;
use kitauth::db::models::{ApiKey, ApiScope, NewApiKey};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::LocalResponse;
use serde_json::Value;

fn make_key(app: &TestApp, tenant_id: i64, name: &str, scopes: &[ApiScope]) -> (ApiKey, String) {
    let new = NewApiKey {
        name: name.into(),
        scopes: scopes.to_vec(),
        expires_in_days: None,
        created_by: "test".into(),
    };
    new.validate().unwrap();
    ApiKey::create(&mut app.conn(), tenant_id, &new).unwrap()
}

fn remote() -> std::net::SocketAddr {
    "203.0.113.9:4000".parse().unwrap()
}

async fn call<'c>(
    app: &'c TestApp,
    method: &str,
    path: &str,
    key: &str,
    body: Option<&str>,
) -> LocalResponse<'c> {
    let c = &app.client;
    let mut req = match method {
        "GET" => c.get(path.to_string()),
        "POST" => c.post(path.to_string()),
        "PATCH" => c.patch(path.to_string()),
        "DELETE" => c.delete(path.to_string()),
        _ => unreachable!(),
    }
    .remote(remote())
    .header(Header::new("Authorization", format!("Bearer {key}")));
    if let Some(b) = body {
        req = req.header(ContentType::JSON).body(b);
    }
    req.dispatch().await
}

async fn problem(resp: LocalResponse<'_>, status: Status) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.content_type().map(|c| c.to_string()),
        Some("application/problem+json".to_string())
    );
    let v: Value = serde_json::from_str(&resp.into_string().await.unwrap()).unwrap();
    assert_eq!(v["status"], status.code);
    assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
    assert!(v["errors"].is_array());
    v
}

async fn body(resp: LocalResponse<'_>) -> Value {
    serde_json::from_str(&resp.into_string().await.unwrap()).unwrap()
}

/// Every operation of this branch, as (method, path, body), for a tenant
/// with app `a` and secret `s` and key `k`.
fn operations(t: &str, a: i64, s: i64, k: i64) -> Vec<(&'static str, String, Option<String>)> {
    let b = format!("/t/{t}/api/v1");
    vec![
        ("GET", format!("{b}/apps"), None),
        ("GET", format!("{b}/apps/{a}"), None),
        ("GET", format!("{b}/apps/{a}/secrets"), None),
        ("GET", format!("{b}/api-keys"), None),
        ("POST", format!("{b}/apps"), Some(r#"{"name":"x"}"#.into())),
        (
            "PATCH",
            format!("{b}/apps/{a}"),
            Some(r#"{"name":"y"}"#.into()),
        ),
        ("POST", format!("{b}/apps/{a}/disable"), None),
        ("POST", format!("{b}/apps/{a}/enable"), None),
        (
            "POST",
            format!("{b}/apps/{a}/secrets/rotate"),
            Some(r#"{"grace_secs":3600}"#.into()),
        ),
        ("POST", format!("{b}/apps/{a}/secrets/{s}/revoke"), None),
        ("POST", format!("{b}/api-keys/{k}/revoke"), None),
        ("DELETE", format!("{b}/apps/{a}"), None),
    ]
}

fn first_secret_id(app: &TestApp, app_id: i64) -> i64 {
    app.count(&format!(
        "SELECT min(id) FROM client_secrets WHERE app_id = {app_id}"
    ))
}

#[rocket::async_test]
async fn every_operation_refuses_a_key_without_its_scope_and_changes_nothing() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (_, read) = make_key(&app, seed.tenant.id, "reader", &[ApiScope::Read]);
    let (_, write) = make_key(&app, seed.tenant.id, "writer", &[ApiScope::Write]);
    let (_, login) = make_key(&app, seed.tenant.id, "login", &[ApiScope::Login]);
    let (victim, _) = make_key(&app, seed.tenant.id, "victim", &[ApiScope::Read]);
    let sid = first_secret_id(&app, seed.app.id);
    let before = app.snapshot();
    let keys_before = app.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL");
    for (method, path, b) in operations("acme", seed.app.id, sid, victim.id) {
        let wrong: Vec<&str> = if method == "GET" {
            vec![&write, &login]
        } else {
            vec![&read, &login]
        };
        for key in wrong {
            let resp = call(&app, method, &path, key, b.as_deref()).await;
            problem(resp, Status::Forbidden).await;
        }
    }
    assert_eq!(app.snapshot(), before, "a refused call changed nothing");
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"),
        keys_before
    );
    assert_eq!(app.count("SELECT count(*) FROM audit_events"), 0);
    // And with the scope, each one goes through (in this order).
    for (method, path, b) in operations("acme", seed.app.id, sid, victim.id) {
        let key = if method == "GET" { &read } else { &write };
        let resp = call(&app, method, &path, key, b.as_deref()).await;
        assert!(
            resp.status().code < 300,
            "{method} {path}: {}",
            resp.status()
        );
    }
}

#[rocket::async_test]
async fn another_tenants_key_is_401_and_another_tenants_objects_are_404() {
    let app = TestApp::new().await;
    let acme = seed_tenant(&app, "acme");
    let other = seed_tenant(&app, "other");
    let (_, acme_key) = make_key(
        &app,
        acme.tenant.id,
        "k",
        &[ApiScope::Read, ApiScope::Write],
    );
    let (other_k, _) = make_key(&app, other.tenant.id, "k", &[ApiScope::Read]);
    let other_sid = first_secret_id(&app, other.app.id);
    let before = app.snapshot();
    // acme's key on other's paths: 401, whatever the object.
    for (method, path, b) in operations("other", other.app.id, other_sid, other_k.id) {
        let resp = call(&app, method, &path, &acme_key, b.as_deref()).await;
        let p = problem(resp, Status::Unauthorized).await;
        assert!(
            p["detail"].as_str().unwrap().contains("not valid"),
            "{path}"
        );
    }
    // acme's key on acme's paths naming other's objects: 404.
    for (method, path, b) in operations("acme", other.app.id, other_sid, other_k.id) {
        if path.ends_with("/apps") || path.ends_with("/api-keys") {
            continue;
        }
        let resp = call(&app, method, &path, &acme_key, b.as_deref()).await;
        problem(resp, Status::NotFound).await;
    }
    assert_eq!(app.snapshot(), before);
    assert_eq!(
        app.count("SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL"),
        0
    );
}

#[rocket::async_test]
async fn revoked_expired_missing_and_malformed_keys_are_401() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (revoked, revoked_v) = make_key(&app, seed.tenant.id, "r", &[ApiScope::Read]);
    ApiKey::revoke(&mut app.conn(), seed.tenant.id, revoked.id).unwrap();
    let (expired, expired_v) = make_key(&app, seed.tenant.id, "e", &[ApiScope::Read]);
    diesel::sql_query(format!(
        "UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = {}",
        expired.id
    ))
    .execute(&mut app.conn())
    .unwrap();
    let path = "/t/acme/api/v1/apps";
    let p = problem(
        call(&app, "GET", path, &revoked_v, None).await,
        Status::Unauthorized,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"));
    let p = problem(
        call(&app, "GET", path, &expired_v, None).await,
        Status::Unauthorized,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("expired"));
    problem(
        call(&app, "GET", path, "kak_nope", None).await,
        Status::Unauthorized,
    )
    .await;
    let resp = app.client.get(path).dispatch().await;
    assert_eq!(
        resp.headers().get_one("WWW-Authenticate"),
        Some("Bearer realm=\"kitauth\"")
    );
    problem(resp, Status::Unauthorized).await;
    // A live key of the same tenant works, and its use is stamped once.
    let (live, live_v) = make_key(&app, seed.tenant.id, "l", &[ApiScope::Read]);
    assert_eq!(
        call(&app, "GET", path, &live_v, None).await.status(),
        Status::Ok
    );
    let used = ApiKey::find(&mut app.conn(), seed.tenant.id, live.id)
        .unwrap()
        .unwrap();
    assert!(used.last_used_at.is_some());
    assert_eq!(
        call(&app, "GET", path, &live_v, None).await.status(),
        Status::Ok
    );
    let again = ApiKey::find(&mut app.conn(), seed.tenant.id, live.id)
        .unwrap()
        .unwrap();
    assert_eq!(
        again.last_used_at, used.last_used_at,
        "coalesced: one stamp a minute"
    );
}

#[rocket::async_test]
async fn create_app_answers_the_secret_once_and_the_kit_panel() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(
        &app,
        seed.tenant.id,
        "ci",
        &[ApiScope::Read, ApiScope::Write],
    );
    let resp = call(
        &app,
        "POST",
        "/t/acme/api/v1/apps",
        &key,
        Some(r#"{"name":"Staging"}"#),
    )
    .await;
    assert_eq!(resp.status(), Status::Created);
    let v = body(resp).await;
    let secret = v["client_secret"].as_str().unwrap();
    assert!(secret.starts_with("kcs_"));
    assert!(v["app"]["id"].is_string());
    let client_id = v["app"]["client_id"].as_str().unwrap();
    let config: kitauth::config::AppConfig =
        kitauth::config::extract(&test_figment(&app.db)).unwrap();
    assert_eq!(
        v["app"]["kit"],
        serde_json::to_value(config.kit_panel("acme", client_id)).unwrap()
    );
    assert_eq!(
        v["app"]["kit"]["fields"][1]["value"],
        "http://kitauth.test/t/acme/oauth/token"
    );
    // Only the digest is stored, and the secret authenticates the app.
    let digest = kitauth::crypto::digest(secret);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM client_secrets WHERE secret_digest = '\\x{hex}'::bytea"
        )),
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM api_idempotency WHERE response::text LIKE '%{secret}%'"
        )),
        0
    );
    let id = v["app"]["id"].as_str().unwrap();
    let got = body(
        call(
            &app,
            "GET",
            &format!("/t/acme/api/v1/apps/{id}"),
            &key,
            None,
        )
        .await,
    )
    .await;
    assert!(got.get("client_secret").is_none());
    assert_eq!(got["kit"], v["app"]["kit"]);
}

#[rocket::async_test]
async fn idempotent_creates_replay_refuse_another_body_and_make_one_app_concurrently() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(&app, seed.tenant.id, "ci", &[ApiScope::Write]);
    let post = |idem: &'static str, b: &'static str| {
        app.client
            .post("/t/acme/api/v1/apps")
            .header(Header::new("Authorization", format!("Bearer {key}")))
            .header(Header::new("Idempotency-Key", idem))
            .header(ContentType::JSON)
            .body(b)
            .dispatch()
    };
    let first = post("k1", r#"{"name":"One"}"#).await;
    assert_eq!(first.status(), Status::Created);
    let first = body(first).await;
    let again = post("k1", r#"{"name":"One"}"#).await;
    assert_eq!(again.status(), Status::Created);
    assert_eq!(again.headers().get_one("Idempotent-Replayed"), Some("true"));
    let again = body(again).await;
    assert_eq!(again["app"]["id"], first["app"]["id"]);
    assert_eq!(again["client_secret"], Value::Null);
    assert_eq!(again["secret_redacted"], true);
    let p = problem(
        post("k1", r#"{"name":"Two"}"#).await,
        Status::UnprocessableEntity,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM apps WHERE tenant_id = {}",
            seed.tenant.id
        )),
        2
    );
    // Two at once with one key: one app.
    let (a, b) = futures::join!(
        post("k2", r#"{"name":"Race"}"#),
        post("k2", r#"{"name":"Race"}"#)
    );
    assert_eq!((a.status(), b.status()), (Status::Created, Status::Created));
    let (a, b) = (body(a).await, body(b).await);
    assert_eq!(a["app"]["id"], b["app"]["id"]);
    assert_eq!(
        app.count("SELECT count(*) FROM apps WHERE name = 'Race'"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'app.created'"),
        2
    );
}

#[rocket::async_test]
async fn if_match_refuses_a_stale_etag_and_without_it_the_last_writer_wins() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(
        &app,
        seed.tenant.id,
        "ci",
        &[ApiScope::Read, ApiScope::Write],
    );
    let path = format!("/t/acme/api/v1/apps/{}", seed.app.id);
    let got = call(&app, "GET", &path, &key, None).await;
    let etag = got.headers().get_one("ETag").unwrap().to_string();
    assert_eq!(body(got).await["etag"], etag.as_str());
    let patch = |m: Option<String>, b: &'static str| {
        let mut r = app
            .client
            .patch(path.clone())
            .header(Header::new("Authorization", format!("Bearer {key}")))
            .header(ContentType::JSON)
            .body(b);
        if let Some(m) = m {
            r = r.header(Header::new("If-Match", m));
        }
        r.dispatch()
    };
    let ok = patch(Some(etag.clone()), r#"{"name":"First"}"#).await;
    assert_eq!(ok.status(), Status::Ok);
    let new_etag = ok.headers().get_one("ETag").unwrap().to_string();
    assert_ne!(new_etag, etag);
    let before = app.snapshot();
    problem(
        patch(Some(etag.clone()), r#"{"name":"Stale"}"#).await,
        Status::PreconditionFailed,
    )
    .await;
    assert_eq!(app.snapshot(), before);
    assert_eq!(patch(None, r#"{"name":"Last"}"#).await.status(), Status::Ok);
    assert_eq!(
        app.count(&format!(
            "SELECT count(*) FROM apps WHERE id = {} AND name = 'Last'",
            seed.app.id
        )),
        1
    );
}

#[rocket::async_test]
async fn every_change_writes_an_audit_row_naming_the_key_and_ip() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (k, key) = make_key(
        &app,
        seed.tenant.id,
        "ci",
        &[ApiScope::Read, ApiScope::Write],
    );
    let (victim, _) = make_key(&app, seed.tenant.id, "old", &[ApiScope::Read]);
    let sid = first_secret_id(&app, seed.app.id);
    for (method, path, b) in operations("acme", seed.app.id, sid, victim.id) {
        let resp = call(&app, method, &path, &key, b.as_deref()).await;
        assert!(resp.status().code < 300, "{method} {path}");
    }
    #[derive(QueryableByName, Debug)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        action: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        actor: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        ip: Option<String>,
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        details: Value,
    }
    let rows: Vec<Row> =
        diesel::sql_query("SELECT action, actor, ip, details FROM audit_events ORDER BY id")
            .load(&mut app.conn())
            .unwrap();
    let actions: Vec<&str> = rows.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "app.created",
            "app.updated",
            "app.disabled",
            "app.enabled",
            "client_secret.rotated",
            "client_secret.revoked",
            "api_key.revoked",
            "app.deleted"
        ]
    );
    for r in &rows {
        assert_eq!(r.actor, "api_key:ci");
        assert_eq!(r.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(r.details["api_key_id"], k.id.to_string());
        // A hint (prefix + 4 characters) at most, never a secret.
        for v in r.details.as_object().unwrap().values() {
            if let Some(s) = v.as_str() {
                assert!(
                    !(s.starts_with("kcs_") && s.len() > 8),
                    "no secret in audit"
                );
            }
        }
    }
}

#[rocket::async_test]
async fn bad_input_is_a_problem_never_500_and_writes_nothing() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(
        &app,
        seed.tenant.id,
        "ci",
        &[ApiScope::Read, ApiScope::Write],
    );
    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(20_000));
    let cases: Vec<(String, Status, Option<&str>)> = vec![
        ("{".into(), Status::BadRequest, None),
        ("not json".into(), Status::BadRequest, None),
        (r#"{"name": 5}"#.into(), Status::UnprocessableEntity, None),
        (
            r#"{"name":"a","colour":"red"}"#.into(),
            Status::UnprocessableEntity,
            Some("colour"),
        ),
        (r#"{}"#.into(), Status::UnprocessableEntity, Some("name")),
        (
            r#"{"name":"a\u0000b"}"#.into(),
            Status::UnprocessableEntity,
            Some("name"),
        ),
        (
            r#"{"name":"a","redirect_uris":["https://x.example/\u0007"]}"#.into(),
            Status::UnprocessableEntity,
            Some("redirect_uris[0]"),
        ),
        (
            r#"{"name":"a","redirect_uris":["ftp://x"]}"#.into(),
            Status::UnprocessableEntity,
            Some("redirect_uris"),
        ),
        (
            r#"{"name":"a","access_token_ttl_secs":1}"#.into(),
            Status::UnprocessableEntity,
            Some("access_token_ttl_secs"),
        ),
        (
            r#"{"name":"a","access_token_ttl_secs":99999999999}"#.into(),
            Status::UnprocessableEntity,
            None,
        ),
        (
            r#"{"name":""}"#.into(),
            Status::UnprocessableEntity,
            Some("name"),
        ),
        (big, Status::PayloadTooLarge, None),
    ];
    let before = app.snapshot();
    for (b, status, field) in &cases {
        for path in [
            "/t/acme/api/v1/apps".to_string(),
            format!("/t/acme/api/v1/apps/{}", seed.app.id),
        ] {
            let method = if path.ends_with("/apps") {
                "POST"
            } else {
                "PATCH"
            };
            if method == "PATCH" && b == "{}" {
                continue; // an empty update is valid
            }
            let resp = call(&app, method, &path, &key, Some(b)).await;
            let p = problem(resp, *status).await;
            if let Some(f) = field {
                assert_eq!(p["errors"][0]["field"], *f, "{b}");
            }
        }
    }
    let p = problem(
        call(
            &app,
            "POST",
            &format!("/t/acme/api/v1/apps/{}/secrets/rotate", seed.app.id),
            &key,
            Some(r#"{"grace_secs":5}"#),
        )
        .await,
        Status::UnprocessableEntity,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "grace_secs");
    problem(
        call(&app, "GET", "/t/acme/api/v1/apps/abc", &key, None).await,
        Status::NotFound,
    )
    .await;
    problem(
        call(&app, "GET", "/t/acme/api/v1/nothing", &key, None).await,
        Status::NotFound,
    )
    .await;
    problem(
        call(&app, "GET", "/t/nope/api/v1/apps", &key, None).await,
        Status::NotFound,
    )
    .await;
    // A key cannot create keys: there is no such route.
    problem(
        call(
            &app,
            "POST",
            "/t/acme/api/v1/api-keys",
            &key,
            Some(r#"{"name":"x"}"#),
        )
        .await,
        Status::NotFound,
    )
    .await;
    assert_eq!(app.snapshot(), before);
    assert_eq!(app.count("SELECT count(*) FROM audit_events"), 0);
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 1);
}

#[rocket::async_test]
async fn a_key_over_its_budget_gets_429_with_retry_after() {
    let app = TestApp::with(|f| f.merge(("api_requests_per_minute", 3))).await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(&app, seed.tenant.id, "ci", &[ApiScope::Read]);
    let (_, other) = make_key(&app, seed.tenant.id, "other", &[ApiScope::Read]);
    for _ in 0..3 {
        assert_eq!(
            call(&app, "GET", "/t/acme/api/v1/apps", &key, None)
                .await
                .status(),
            Status::Ok
        );
    }
    let resp = call(&app, "GET", "/t/acme/api/v1/apps", &key, None).await;
    let wait: u64 = resp
        .headers()
        .get_one("Retry-After")
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=61).contains(&wait));
    problem(resp, Status::TooManyRequests).await;
    // Per key: another key of the tenant is not affected.
    assert_eq!(
        call(&app, "GET", "/t/acme/api/v1/apps", &other, None)
            .await
            .status(),
        Status::Ok
    );
}

#[rocket::async_test]
async fn failed_authentications_are_throttled_per_ip_and_a_valid_key_still_works() {
    let app = TestApp::with(|f| f.merge(("api_auth_max_failures", 3))).await;
    let seed = seed_tenant(&app, "acme");
    let (_, key) = make_key(&app, seed.tenant.id, "ci", &[ApiScope::Read]);
    let bad = format!("kak_{}", "A".repeat(43));
    for _ in 0..2 {
        problem(
            call(&app, "GET", "/t/acme/api/v1/apps", &bad, None).await,
            Status::Unauthorized,
        )
        .await;
    }
    let resp = call(&app, "GET", "/t/acme/api/v1/apps", &bad, None).await;
    assert!(resp.headers().get_one("Retry-After").is_some());
    problem(resp, Status::TooManyRequests).await;
    assert_eq!(
        call(&app, "GET", "/t/acme/api/v1/apps", &key, None)
            .await
            .status(),
        Status::Ok
    );
}

#[rocket::async_test]
async fn the_openapi_document_is_3_1_and_names_scopes_and_errors_for_every_operation() {
    let app = TestApp::new().await;
    seed_tenant(&app, "acme");
    let resp = app
        .client
        .get("/t/acme/api/v1/openapi.json")
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    let doc = body(resp).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert_eq!(
        doc["components"]["securitySchemes"]["api_key"]["scheme"],
        "bearer"
    );
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/t/{t}/api/v1/apps/{id}/secrets/rotate"));
    let mut ops = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            if path.ends_with("openapi.json") {
                continue;
            }
            ops += 1;
            let scope = &op["security"][0]["api_key"][0];
            // The delegated sign-in calls and sessions are the login
            // service's; everything else is read (GET) or write.
            let want = if path.contains("/login-requests/") || path.contains("/subjects/") {
                "login"
            } else if method == "get" {
                "read"
            } else {
                "write"
            };
            assert_eq!(scope, want, "{method} {path}");
            for code in ["401", "403"] {
                assert!(
                    op["responses"].get(code).is_some(),
                    "{method} {path} {code}"
                );
            }
        }
    }
    // apps 7, secrets 3, api keys 2, installs 5, creators 5, audit events 1,
    // login requests 3, subject sessions 1, sign-in 2
    assert_eq!(ops, 29);
}

fn admin_session(
    app: &TestApp,
    tenant_id: i64,
    email: &str,
    role: kitauth::db::models::Role,
) -> String {
    use kitauth::db::models::admin::SessionPolicy;
    use kitauth::db::models::{Admin, AdminSession, Membership};
    let mut conn = app.conn();
    let admin = Admin::create(&mut conn, email, "x").unwrap();
    Membership::add(&mut conn, tenant_id, admin.id, role).unwrap();
    AdminSession::create(
        &mut conn,
        admin.id,
        SessionPolicy {
            idle: chrono::Duration::hours(1),
            lifetime: chrono::Duration::days(1),
        },
        None,
    )
    .unwrap()
}

#[rocket::async_test]
async fn the_dashboard_shows_a_new_key_once_and_a_reload_makes_no_second_key() {
    use kitauth::crypto::{generate, TokenKind};
    use kitauth::db::models::Role;
    use rocket::http::Cookie;
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let session = admin_session(&app, seed.tenant.id, "owner@acme.example", Role::Admin);
    let csrf = generate(TokenKind::Csrf).value;
    let post = app
        .client
        .post("/admin/t/acme/api-keys")
        .cookie(Cookie::new("kitauth_admin", session.clone()))
        .private_cookie(Cookie::new("kitauth_csrf", csrf.clone()))
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("name", "ci"),
            ("scope_read", "on"),
            ("expires_in_days", "30"),
        ]))
        .dispatch()
        .await;
    assert_eq!(post.status(), Status::SeeOther);
    let get = || {
        app.client
            .get("/admin/t/acme/api-keys")
            .cookie(Cookie::new("kitauth_admin", session.clone()))
            .private_cookie(Cookie::new("kitauth_csrf", csrf.clone()))
            .dispatch()
    };
    let page = get().await.into_string().await.unwrap();
    let start = page.find("kak_").expect("the new key is shown");
    let key = &page[start..start + 47];
    assert_eq!(
        call(&app, "GET", "/t/acme/api/v1/apps", key, None)
            .await
            .status(),
        Status::Ok
    );
    let again = get().await.into_string().await.unwrap();
    assert!(!again.contains(key), "shown once");
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 1);
    assert_eq!(
        app.count("SELECT count(*) FROM audit_events WHERE action = 'api_key.created' AND actor = 'admin:owner@acme.example'"),
        1
    );
    // A viewer sees the list but cannot create; without CSRF nothing happens.
    let viewer = admin_session(&app, seed.tenant.id, "viewer@acme.example", Role::Viewer);
    let refused = app
        .client
        .post("/admin/t/acme/api-keys")
        .cookie(Cookie::new("kitauth_admin", viewer.clone()))
        .private_cookie(Cookie::new("kitauth_csrf", csrf.clone()))
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("name", "v"),
            ("scope_write", "on"),
        ]))
        .dispatch()
        .await;
    assert_eq!(refused.status(), Status::Forbidden);
    let no_csrf = app
        .client
        .post("/admin/t/acme/api-keys")
        .cookie(Cookie::new("kitauth_admin", session.clone()))
        .header(ContentType::Form)
        .body(form(&[("name", "n"), ("scope_write", "on")]))
        .dispatch()
        .await;
    assert_eq!(no_csrf.status(), Status::Forbidden);
    assert_eq!(app.count("SELECT count(*) FROM api_keys"), 1);
}
