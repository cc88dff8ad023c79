//! Tenant isolation on every Kit-facing endpoint: tenant A's credentials,
//! codes, tokens and sessions used against tenant B are refused, and no row
//! changes.

mod common;

use common::*;
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::LocalResponse;
use serde_json::json;

struct Artifacts {
    unused_code: String,
    access: String,
    refresh: String,
    session: String,
}

async fn artifacts_of(app: &TestApp, seed: &Seed) -> Artifacts {
    let code = get_code(app, seed).await;
    let tokens = json_of(kit_exchange(app, seed, &code).await).await;
    let unused_code = get_code(app, seed).await;
    let session = app
        .client
        .cookies()
        .get(kitauth::auth::creator::COOKIE)
        .expect("signed in")
        .value()
        .to_string();
    Artifacts {
        unused_code,
        access: tokens["access_token"].as_str().unwrap().to_string(),
        refresh: tokens["refresh_token"].as_str().unwrap().to_string(),
        session,
    }
}

async fn post_json<'c>(app: &'c TestApp, path: &str, body: serde_json::Value) -> LocalResponse<'c> {
    app.client
        .post(path.to_string())
        .header(ContentType::Form)
        .body(body.to_string())
        .dispatch()
        .await
}

async fn expect_error(resp: LocalResponse<'_>, status: Status, error: &str, what: &str) {
    assert_eq!(resp.status(), status, "{what}");
    assert_eq!(resp.content_type(), Some(ContentType::JSON), "{what}");
    let body = json_of(resp).await;
    assert_eq!(body["error"], error, "{what}: {body}");
}

#[rocket::async_test]
async fn tenant_a_credentials_sessions_and_tokens_are_refused_by_tenant_b() {
    let app = TestApp::new().await;
    let a = seed_tenant(&app, "tenant-a");
    let b = seed_tenant(&app, "tenant-b");
    // B has an install of its own that must stay untouched.
    let b_art = artifacts_of(&app, &b).await;
    app.client.cookies().remove(kitauth::auth::creator::COOKIE);
    let a_art = artifacts_of(&app, &a).await;
    // From here on the client carries A's creator session cookie.
    let before = app.snapshot();
    let tb = "/t/tenant-b/oauth";

    // token: A's client at B; A's code with B's client.
    let exchange = |client_id: &str, secret: &str, code: &str| {
        json!({"client_id": client_id, "client_secret": secret, "grant_type": "authorization_code",
               "code": code, "redirect_uri": KIT_APPS})
    };
    let resp = post_json(
        &app,
        &format!("{tb}/token"),
        exchange(&a.app.client_id, &a.client_secret, &a_art.unused_code),
    )
    .await;
    expect_error(
        resp,
        Status::Unauthorized,
        "invalid_client",
        "A's client at B's token",
    )
    .await;
    let resp = post_json(
        &app,
        &format!("{tb}/token"),
        exchange(&b.app.client_id, &b.client_secret, &a_art.unused_code),
    )
    .await;
    expect_error(resp, Status::BadRequest, "invalid_grant", "A's code at B").await;
    // A's client id with B's secret.
    let resp = post_json(
        &app,
        &format!("{tb}/token"),
        exchange(&a.app.client_id, &b.client_secret, &a_art.unused_code),
    )
    .await;
    expect_error(
        resp,
        Status::Unauthorized,
        "invalid_client",
        "A's id, B's secret",
    )
    .await;

    // refresh (both URLs): A's client id at B; A's refresh token with B's client.
    for endpoint in ["token", "refresh"] {
        let refresh = |client_id: &str| json!({"client_id": client_id, "grant_type": "refresh_token", "refresh_token": a_art.refresh});
        let resp = post_json(&app, &format!("{tb}/{endpoint}"), refresh(&a.app.client_id)).await;
        expect_error(
            resp,
            Status::Unauthorized,
            "invalid_client",
            "A's client refreshing at B",
        )
        .await;
        let resp = post_json(&app, &format!("{tb}/{endpoint}"), refresh(&b.app.client_id)).await;
        expect_error(
            resp,
            Status::BadRequest,
            "invalid_grant",
            "A's refresh token at B",
        )
        .await;
        let mut with_secret = refresh(&b.app.client_id);
        with_secret["client_secret"] = json!(b.client_secret);
        let resp = post_json(&app, &format!("{tb}/{endpoint}"), with_secret).await;
        expect_error(
            resp,
            Status::BadRequest,
            "invalid_grant",
            "A's refresh token, B's secret",
        )
        .await;
    }

    // revoke: A's client at B refused; B's client revoking A's tokens is a
    // silent no-op (RFC 7009), proven by the snapshot below.
    for token in [&a_art.access, &a_art.refresh] {
        let resp = post_json(
            &app,
            &format!("{tb}/revoke"),
            json!({"client_id": a.app.client_id, "client_secret": a.client_secret, "token": token}),
        )
        .await;
        expect_error(
            resp,
            Status::Unauthorized,
            "invalid_client",
            "A's client revoking at B",
        )
        .await;
        let resp = post_json(
            &app,
            &format!("{tb}/revoke"),
            json!({"client_id": b.app.client_id, "client_secret": b.client_secret, "token": token}),
        )
        .await;
        assert_eq!(resp.status(), Status::Ok);
    }

    // introspect: A's client at B refused; A's tokens are inactive at B.
    let resp = post_json(&app, &format!("{tb}/introspect"),
        json!({"client_id": a.app.client_id, "client_secret": a.client_secret, "token": a_art.access})).await;
    expect_error(
        resp,
        Status::Unauthorized,
        "invalid_client",
        "A's client introspecting at B",
    )
    .await;
    for token in [&a_art.access, &a_art.refresh] {
        let resp = post_json(
            &app,
            &format!("{tb}/introspect"),
            json!({"client_id": b.app.client_id, "client_secret": b.client_secret, "token": token}),
        )
        .await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(json_of(resp).await, json!({"active": false}));
    }

    // userinfo: A's access token at B.
    let resp = app
        .client
        .get(format!("{tb}/userinfo"))
        .header(Header::new(
            "Authorization",
            format!("Bearer {}", a_art.access),
        ))
        .dispatch()
        .await;
    assert!(resp.headers().get_one("WWW-Authenticate").is_some());
    expect_error(
        resp,
        Status::Unauthorized,
        "invalid_token",
        "A's token at B's userinfo",
    )
    .await;

    // authorize: A's client id at B is an error page, never a redirect.
    let resp = app
        .client
        .get(format!(
            "{tb}/authorize?{}",
            form(&[
                ("client_id", &a.app.client_id),
                ("response_type", "code"),
                ("redirect_uri", KIT_INSTALL)
            ])
        ))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::BadRequest);
    assert!(resp.headers().get_one("Location").is_none());

    // A's creator session (sent with every request) is no session at B.
    let b_authorize = authorize_path(&b, &[]);
    let page = app.client.get(&b_authorize).dispatch().await;
    assert_eq!(page.status(), Status::Ok);
    let html = page.into_string().await.unwrap();
    assert!(
        html.contains("name=\"password\""),
        "B asks A's creator to sign in"
    );
    assert!(!html.contains("value=\"allow\""));
    let csrf = csrf_from(&html);
    let resp = app
        .client
        .post(format!("{tb}/authorize"))
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("decision", "allow"),
            ("client_id", &b.app.client_id),
            ("response_type", "code"),
            ("redirect_uri", KIT_INSTALL),
        ]))
        .dispatch()
        .await;
    let location = resp.headers().get_one("Location").unwrap_or("").to_string();
    assert!(
        !location.contains("code="),
        "no code for A's session at B: {location}"
    );
    let resp = app.client.get("/t/tenant-b/login").dispatch().await;
    assert!(resp
        .into_string()
        .await
        .unwrap()
        .contains("name=\"password\""));

    // A's creator account does not exist at B.
    let page = app.client.get("/t/tenant-b/login").dispatch().await;
    let csrf = csrf_from(&page.into_string().await.unwrap());
    let resp = app
        .client
        .post("/t/tenant-b/login")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("email", a.email()),
            ("password", &a.password),
        ]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Unauthorized);
    // Signing out at B does not end A's session.
    let resp = app
        .client
        .post("/t/tenant-b/logout")
        .header(ContentType::Form)
        .body(form(&[("csrf_token", &csrf)]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::SeeOther);

    assert_eq!(app.snapshot(), before, "no row changed");

    // Both installs still work in their own tenants.
    assert_eq!(introspect(&app, &a, &a_art.access).await["active"], true);
    assert_eq!(introspect(&app, &b, &b_art.access).await["active"], true);
    let resp = kit_refresh(&app, &b, &b_art.refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    let resp = app
        .client
        .get(authorize_path(&a, &[]))
        .cookie((kitauth::auth::creator::COOKIE, a_art.session.clone()))
        .dispatch()
        .await;
    assert!(resp
        .into_string()
        .await
        .unwrap()
        .contains("value=\"allow\""));
    let _ = b_art.session;
}

/// The schema itself keeps tokens and grants inside their tenant: a row
/// whose tenant differs from its parent's is refused by the foreign key
/// (migration 000003), and deleting a tenant still removes its grants and
/// tokens, and nothing of another tenant's.
#[rocket::async_test]
async fn the_schema_refuses_rows_that_cross_tenants_and_cascades_a_tenant_delete() {
    use diesel::RunQueryDsl;
    let app = TestApp::new().await;
    let a = seed_tenant(&app, "tenant-a");
    let b = seed_tenant(&app, "tenant-b");
    artifacts_of(&app, &a).await;
    let b_art = artifacts_of(&app, &b).await;
    let a_grant = app.count(&format!(
        "SELECT max(id) FROM grants WHERE tenant_id = {}",
        a.tenant.id
    ));
    let mut conn = app.conn();
    let cross = [
        format!(
            "INSERT INTO access_tokens (tenant_id, grant_id, token_digest, hint, expires_at) \
             VALUES ({}, {a_grant}, '\\x01', 'h', now())",
            b.tenant.id
        ),
        format!(
            "INSERT INTO refresh_tokens (tenant_id, grant_id, token_digest, hint, expires_at) \
             VALUES ({}, {a_grant}, '\\x02', 'h', now())",
            b.tenant.id
        ),
        format!(
            "INSERT INTO grants (tenant_id, app_id, end_user_id, scopes) \
             VALUES ({}, {}, {}, '{{public}}')",
            b.tenant.id, a.app.id, a.user.id
        ),
    ];
    let before = app.snapshot();
    for sql in &cross {
        let err = diesel::sql_query(sql.as_str())
            .execute(&mut conn)
            .expect_err(sql);
        assert!(
            err.to_string().contains("foreign key"),
            "{sql}: refused by a foreign key, not {err}"
        );
    }
    assert_eq!(app.snapshot(), before, "no row was written");

    diesel::sql_query(format!("DELETE FROM tenants WHERE id = {}", a.tenant.id))
        .execute(&mut conn)
        .unwrap();
    for table in ["grants", "access_tokens", "refresh_tokens"] {
        assert_eq!(
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = {}",
                a.tenant.id
            )),
            0,
            "{table} of the deleted tenant"
        );
        assert!(
            app.count(&format!(
                "SELECT count(*) FROM {table} WHERE tenant_id = {}",
                b.tenant.id
            )) > 0,
            "{table} of the other tenant"
        );
    }
    // B's install still answers.
    assert_eq!(introspect(&app, &b, &b_art.access).await["active"], true);
}
