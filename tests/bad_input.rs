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
