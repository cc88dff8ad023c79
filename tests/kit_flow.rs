//! Kit's whole conversation, as Kit sends it.

mod common;

use common::*;
use rocket::http::{ContentType, Header, Status};

#[rocket::async_test]
async fn kit_install_refresh_uninstall() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");

    // authorize through sign-in and consent
    let location = authorize(&app, &seed, &[("state", "kit-state-1")]).await;
    assert!(location.starts_with(KIT_INSTALL));
    assert_eq!(
        query_param(&location, "state").as_deref(),
        Some("kit-state-1")
    );
    let code = query_param(&location, "code").unwrap();
    assert!(code.starts_with("kac_"));

    // exchange: JSON under a form content type, the other redirect URI, a Bearer header
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(resp.headers().get_one("Cache-Control"), Some("no-store"));
    assert_eq!(resp.headers().get_one("Pragma"), Some("no-cache"));
    assert_eq!(resp.content_type(), Some(ContentType::JSON));
    let tokens = json_of(resp).await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 7200);
    assert!(tokens["created_at"].is_i64());
    assert_eq!(tokens["scope"], "public write");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("kat_") && refresh.starts_with("krt_"));

    // the tenant's backend learns whose token it is
    let info = introspect(&app, &seed, &access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["username"], seed.email());
    assert_eq!(info["client_id"], seed.app.client_id);
    let me = app
        .client
        .get("/t/acme/oauth/userinfo")
        .header(Header::new("Authorization", format!("Bearer {access}")))
        .dispatch()
        .await;
    assert_eq!(me.status(), Status::Ok);
    assert_eq!(json_of(me).await["email"], seed.email());

    // refresh without a secret
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    let rotated = json_of(resp).await;
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh);

    // uninstall: revoke the access token with the client secret
    let resp = app
        .client
        .post("/t/acme/oauth/revoke")
        .header(ContentType::Form)
        .header(Header::new("Authorization", format!("Bearer {access2}")))
        .body(serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "token": access2}).to_string())
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);

    // the whole grant is dead
    let resp = kit_refresh(&app, &seed, &refresh2).await;
    assert_eq!(resp.status(), Status::BadRequest);
    assert_eq!(json_of(resp).await["error"], "invalid_grant");
    assert_eq!(
        introspect(&app, &seed, &access2).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        introspect(&app, &seed, &access).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.count("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL"),
        1
    );
    assert_eq!(
        app.count("SELECT count(*) FROM access_tokens WHERE revoked_at IS NULL"),
        0
    );
    assert_eq!(
        app.count("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL"),
        0
    );
}
