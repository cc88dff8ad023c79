//! One test per OAuth rule of design.md, each asserting on status, body and rows.
//!
//! Every test runs twice, in `with_client_copies` (the default: the token
//! endpoint and introspection keep in-memory copies of clients) and in
//! `without_client_copies` (`client_copies = false`: every request reads its
//! client). A copy may only make a request succeed sooner, so each rule
//! must hold the same way in both.

mod common;

use common::*;
use rocket::figment::Figment;
use rocket::http::{ContentType, Header, Status};

async fn error_of(resp: rocket::local::asynchronous::LocalResponse<'_>) -> (Status, String) {
    let status = resp.status();
    let body = json_of(resp).await;
    (status, body["error"].as_str().unwrap_or("").to_string())
}

/// A rule test's app, with the client copies on or off.
async fn rules_app(copies: bool, adjust: impl FnOnce(Figment) -> Figment) -> TestApp {
    TestApp::with(|f| adjust(f.merge(("client_copies", copies)))).await
}

/// The rule tests, expanded once per setting of the client copies.
macro_rules! rule_tests {
    () => {
    #[rocket::async_test]
    async fn code_replay_revokes_the_grant_it_produced() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        let first = json_of(kit_exchange(&app, &seed, &code).await).await;
        let access = first["access_token"].as_str().unwrap();
        assert_eq!(introspect(&app, &seed, access).await["active"], true);

        let (status, error) = error_of(kit_exchange(&app, &seed, &code).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        assert_eq!(introspect(&app, &seed, access).await["active"], false);
        assert_grants_revoked(&app, "code_replay", 1);
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'code.replayed'"),
            1
        );
    }

    #[rocket::async_test]
    async fn refresh_replay_within_grace_leaves_exactly_one_live_branch() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;

        // Kit refreshes, loses the answer, and retries with the same token.
        let lost = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        let retry = kit_refresh(&app, &seed, &refresh0).await;
        assert_eq!(retry.status(), Status::Ok);
        let kept = json_of(retry).await;

        // The unseen successor is dead, the retried branch lives.
        let (status, error) =
            error_of(kit_refresh(&app, &seed, lost["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        // ... and presenting it counted as reuse: the grant is revoked.
        assert_eq!(
            introspect(&app, &seed, kept["access_token"].as_str().unwrap()).await["active"],
            false
        );
    }

    #[rocket::async_test]
    async fn refresh_retry_within_grace_keeps_install_usable() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        let lost = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        let kept = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        assert_eq!(
            introspect(&app, &seed, lost["access_token"].as_str().unwrap()).await["active"],
            false
        );
        assert_eq!(
            introspect(&app, &seed, kept["access_token"].as_str().unwrap()).await["active"],
            true
        );
        assert_eq!(
            app.count(
                "SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL"
            ),
            1,
            "exactly one live refresh token"
        );
        // The live branch goes on rotating.
        let next = kit_refresh(&app, &seed, kept["refresh_token"].as_str().unwrap()).await;
        assert_eq!(next.status(), Status::Ok);
        assert_eq!(
            app.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL"),
            1
        );
    }

    #[rocket::async_test]
    async fn refresh_replay_after_grace_revokes_grant() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        let next = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        // The grace window (60 s) has passed since refresh0 was used.
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE refresh_tokens SET used_at = now() - interval '61 seconds' WHERE used_at IS NOT NULL"),
            &mut app.conn(),
        )
        .unwrap();
        let (status, error) = error_of(kit_refresh(&app, &seed, &refresh0).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        assert_eq!(
            introspect(&app, &seed, next["access_token"].as_str().unwrap()).await["active"],
            false
        );
        let (_, error) =
            error_of(kit_refresh(&app, &seed, next["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(error, "invalid_grant");
        assert_grants_revoked(&app, "refresh_token_reuse", 1);
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'refresh.reuse_detected'"),
            1
        );
    }

    #[rocket::async_test]
    async fn replay_of_an_older_ancestor_inside_grace_revokes_grant() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, r0) = installed(&app, &seed).await;
        let r1 = json_of(kit_refresh(&app, &seed, &r0).await).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        let r2 = json_of(kit_refresh(&app, &seed, &r1).await).await;
        // r0 is not the immediate predecessor of the live token r2.
        let (_, error) = error_of(kit_refresh(&app, &seed, &r0).await).await;
        assert_eq!(error, "invalid_grant");
        assert_eq!(
            introspect(&app, &seed, r2["access_token"].as_str().unwrap()).await["active"],
            false
        );
    }

    #[rocket::async_test]
    async fn wrong_secret_is_invalid_client_with_challenge_for_basic() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;

        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::JSON)
            .body(serde_json::json!({"client_id": seed.app.client_id, "client_secret": "kcs_wrong", "grant_type": "authorization_code", "code": code, "redirect_uri": KIT_APPS}).to_string())
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        assert!(resp.headers().get_one("WWW-Authenticate").is_none());
        assert_eq!(json_of(resp).await["error"], "invalid_client");

        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::Form)
            .header(basic_auth(&seed.app.client_id, "kcs_wrong"))
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", KIT_APPS),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        assert!(resp
            .headers()
            .get_one("WWW-Authenticate")
            .unwrap()
            .starts_with("Basic"));
        assert_eq!(json_of(resp).await["error"], "invalid_client");

        // Refresh: a secret, when sent, must be right.
        let (_, r) = {
            let t = json_of(kit_exchange(&app, &seed, &code).await).await;
            (
                t["access_token"].as_str().unwrap().to_string(),
                t["refresh_token"].as_str().unwrap().to_string(),
            )
        };
        let resp = app
            .client
            .post("/t/acme/oauth/refresh")
            .header(ContentType::Form)
            .body(form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", &r),
                ("client_id", &seed.app.client_id),
                ("client_secret", "kcs_wrong"),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        assert_eq!(
            app.count("SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL"),
            0
        );
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'client.wrong_secret'"),
            3
        );
    }

    #[rocket::async_test]
    async fn form_body_with_basic_and_post_auth_both_work() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::Form)
            .header(basic_auth(&seed.app.client_id, &seed.client_secret))
            .body(form(&[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", KIT_INSTALL),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
        let t = json_of(resp).await;
        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::Form)
            .body(form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", t["refresh_token"].as_str().unwrap()),
                ("client_id", &seed.app.client_id),
                ("client_secret", &seed.client_secret),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
        // Plain application/json, as Kit's API client sends it.
        let t = json_of(resp).await;
        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::JSON)
            .body(serde_json::json!({"client_id": seed.app.client_id, "grant_type": "refresh_token", "refresh_token": t["refresh_token"]}).to_string())
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
    }

    #[rocket::async_test]
    async fn refresh_without_secret_refused_when_app_disallows_it() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh) = installed(&app, &seed).await;
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE apps SET refresh_without_secret = false"),
            &mut app.conn(),
        )
        .unwrap();
        let (status, error) = error_of(kit_refresh(&app, &seed, &refresh).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::Unauthorized, "invalid_client")
        );
        assert_eq!(
            app.count("SELECT count(*) FROM refresh_tokens WHERE used_at IS NOT NULL"),
            0
        );
    }

    #[rocket::async_test]
    async fn another_tenants_app_or_secret_is_refused() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let a = seed_tenant(&app, "alpha");
        let b = seed_tenant(&app, "bravo");
        let code_a = get_code(&app, &a).await;

        // A's client credentials against B's token endpoint.
        let resp = app
            .client
            .post("/t/bravo/oauth/token")
            .header(ContentType::Form)
            .body(serde_json::json!({"client_id": a.app.client_id, "client_secret": a.client_secret, "grant_type": "authorization_code", "code": code_a, "redirect_uri": KIT_APPS}).to_string())
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        // B's client id with A's secret.
        let resp = app
            .client
            .post("/t/bravo/oauth/token")
            .header(ContentType::Form)
            .body(serde_json::json!({"client_id": b.app.client_id, "client_secret": a.client_secret, "grant_type": "authorization_code", "code": code_a, "redirect_uri": KIT_APPS}).to_string())
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        // B's valid credentials with A's code.
        let resp = app
            .client
            .post("/t/bravo/oauth/token")
            .header(ContentType::Form)
            .body(serde_json::json!({"client_id": b.app.client_id, "client_secret": b.client_secret, "grant_type": "authorization_code", "code": code_a, "redirect_uri": KIT_APPS}).to_string())
            .dispatch()
            .await;
        assert_eq!(json_of(resp).await["error"], "invalid_grant");
        // Nothing was issued or consumed (only audit rows for the wrong secret).
        assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
        assert_eq!(
            app.count("SELECT count(*) FROM authorization_codes WHERE used_at IS NOT NULL"),
            0
        );

        // A's tokens are invisible to B's app.
        let resp = kit_exchange(&app, &a, &code_a).await;
        let t = json_of(resp).await;
        let info = introspect(&app, &b, t["access_token"].as_str().unwrap()).await;
        assert_eq!(info, serde_json::json!({"active": false}));
        let me = app
            .client
            .get("/t/bravo/oauth/userinfo")
            .header(Header::new(
                "Authorization",
                format!("Bearer {}", t["access_token"].as_str().unwrap()),
            ))
            .dispatch()
            .await;
        assert_eq!(me.status(), Status::Unauthorized);
        // B cannot revoke A's grant.
        let resp = app
            .client
            .post("/t/bravo/oauth/revoke")
            .header(ContentType::Form)
            .body(form(&[
                ("client_id", &b.app.client_id),
                ("client_secret", &b.client_secret),
                ("token", t["access_token"].as_str().unwrap()),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(
            introspect(&app, &a, t["access_token"].as_str().unwrap()).await["active"],
            true
        );
    }

    #[rocket::async_test]
    async fn introspection_sees_only_the_callers_own_app() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (access, refresh) = installed(&app, &seed).await;
        let (other, other_secret) =
            kitauth::cli::create_app(&mut app.conn(), seed.tenant.id, "Other", vec![], vec![]).unwrap();
        let other_seed = Seed {
            app: other,
            client_secret: other_secret,
            ..seed.clone()
        };
        assert_eq!(
            introspect(&app, &other_seed, &access).await,
            serde_json::json!({"active": false})
        );
        let own = introspect(&app, &seed, &refresh).await;
        assert_eq!(own["active"], true);
        assert_eq!(own["token_type"], "refresh_token");
    }


    #[rocket::async_test]
    async fn pkce_s256_is_verified() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let pkce = [
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        let code = query_param(&authorize(&app, &seed, &pkce).await, "code").unwrap();
        let exchange = |verifier: &'static str, code: String| {
            let body = serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "grant_type": "authorization_code", "code": code, "redirect_uri": KIT_APPS, "code_verifier": verifier});
            app.client
                .post("/t/acme/oauth/token")
                .header(ContentType::JSON)
                .body(body.to_string())
                .dispatch()
        };
        let wrong = exchange("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl", code.clone()).await;
        assert_eq!(wrong.status(), Status::BadRequest);
        assert_eq!(json_of(wrong).await["error"], "invalid_grant");
        assert_eq!(
            app.count("SELECT count(*) FROM grants"),
            0,
            "a mismatch changes no row"
        );
        let right = exchange(verifier, code).await;
        assert_eq!(right.status(), Status::Ok);
    }

    #[rocket::async_test]
    async fn expired_code_is_refused() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        assert!(app.count("SELECT count(*) FROM authorization_codes WHERE expires_at <= created_at + interval '2 minutes'") == 1);
        diesel::RunQueryDsl::execute(
            diesel::sql_query(
                "UPDATE authorization_codes SET expires_at = now() - interval '1 second'",
            ),
            &mut app.conn(),
        )
        .unwrap();
        let (status, error) = error_of(kit_exchange(&app, &seed, &code).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
    }

    #[rocket::async_test]
    async fn unregistered_redirect_uri_at_authorize_gives_error_page_and_no_redirect() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        sign_in(&app, &seed).await;
        for uri in [
            "https://evil.example/apps/install",
            "https://app.kit.com/apps/install/",
            "HTTPS://app.kit.com/apps/install",
        ] {
            let path = format!(
                "/t/acme/oauth/authorize?{}",
                form(&[
                    ("client_id", &seed.app.client_id),
                    ("response_type", "code"),
                    ("redirect_uri", uri),
                    ("state", "s")
                ])
            );
            let resp = app.client.get(path).dispatch().await;
            assert_eq!(resp.status(), Status::BadRequest, "{uri}");
            assert!(resp.headers().get_one("Location").is_none());
            assert_eq!(resp.content_type(), Some(ContentType::HTML));
            assert!(resp.into_string().await.unwrap().contains("not registered"));
        }
        // Unknown client and missing client are error pages too.
        let resp = app.client.get("/t/acme/oauth/authorize?client_id=nope&response_type=code&redirect_uri=https%3A%2F%2Fapp.kit.com%2Fapps%2Finstall").dispatch().await;
        assert_eq!(resp.status(), Status::BadRequest);
        assert!(resp.headers().get_one("Location").is_none());
    }

    #[rocket::async_test]
    async fn other_authorize_errors_redirect_with_error_and_state() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let cases = [
            (
                vec![("response_type", "token")],
                "unsupported_response_type",
            ),
            (vec![("scope", "public admin")], "invalid_scope"),
            (
                vec![
                    ("code_challenge", "short"),
                    ("code_challenge_method", "S256"),
                ],
                "invalid_request",
            ),
            (
                vec![
                    (
                        "code_challenge",
                        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                    ),
                    ("code_challenge_method", "plain"),
                ],
                "invalid_request",
            ),
        ];
        for (extra, expected) in cases {
            let mut pairs = vec![
                ("client_id", seed.app.client_id.as_str()),
                ("redirect_uri", KIT_INSTALL),
                ("state", "st8"),
            ];
            if !extra.iter().any(|(k, _)| *k == "response_type") {
                pairs.push(("response_type", "code"));
            }
            pairs.extend(extra);
            let resp = app
                .client
                .get(format!("/t/acme/oauth/authorize?{}", form(&pairs)))
                .dispatch()
                .await;
            assert_eq!(resp.status(), Status::Found, "{expected}");
            let loc = resp.headers().get_one("Location").unwrap();
            assert!(loc.starts_with(KIT_INSTALL));
            assert_eq!(query_param(loc, "error").as_deref(), Some(expected));
            assert_eq!(query_param(loc, "state").as_deref(), Some("st8"));
        }
    }

    #[rocket::async_test]
    async fn deny_redirects_with_access_denied_and_state() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        sign_in(&app, &seed).await;
        let page = app
            .client
            .get(authorize_path(&seed, &[("state", "abc")]))
            .dispatch()
            .await;
        let html = page.into_string().await.unwrap();
        assert!(
            html.contains("Acme for Kit") && html.contains("Tenant acme") && html.contains("public")
        );
        assert!(html.contains("value=\"deny\""));
        let resp = app
            .client
            .post("/t/acme/oauth/authorize")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf_from(&html)),
                ("decision", "deny"),
                ("client_id", &seed.app.client_id),
                ("response_type", "code"),
                ("redirect_uri", KIT_INSTALL),
                ("state", "abc"),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Found);
        let loc = resp.headers().get_one("Location").unwrap();
        assert_eq!(query_param(loc, "error").as_deref(), Some("access_denied"));
        assert_eq!(query_param(loc, "state").as_deref(), Some("abc"));
        assert_eq!(app.count("SELECT count(*) FROM authorization_codes"), 0);
    }

    #[rocket::async_test]
    async fn consent_without_csrf_token_is_refused_and_changes_nothing() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        sign_in(&app, &seed).await;
        let before = app.snapshot();
        for token in ["", "kcf_forged"] {
            let resp = app
                .client
                .post("/t/acme/oauth/authorize")
                .header(ContentType::Form)
                .body(form(&[
                    ("csrf_token", token),
                    ("decision", "allow"),
                    ("client_id", &seed.app.client_id),
                    ("response_type", "code"),
                    ("redirect_uri", KIT_INSTALL),
                ]))
                .dispatch()
                .await;
            assert_eq!(resp.status(), Status::Forbidden);
            assert!(resp.headers().get_one("Location").is_none());
        }
        assert_eq!(app.snapshot(), before);
    }

    #[rocket::async_test]
    async fn scopes_may_be_separated_by_commas_or_spaces() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let loc = authorize(&app, &seed, &[("scope", "write,public")]).await;
        let code = query_param(&loc, "code").unwrap();
        let t = json_of(kit_exchange(&app, &seed, &code).await).await;
        assert_eq!(t["scope"], "write public");
    }

    #[rocket::async_test]
    async fn revoking_the_refresh_token_kills_the_grant_and_unknown_tokens_get_200() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (access, refresh) = installed(&app, &seed).await;
        let revoke = |token: String, secret: String| {
            app.client
                .post("/t/acme/oauth/revoke")
                .header(ContentType::Form)
                .body(form(&[
                    ("client_id", &seed.app.client_id),
                    ("client_secret", &secret),
                    ("token", &token),
                ]))
                .dispatch()
        };
        let wrong = revoke(refresh.clone(), "kcs_nope".into()).await;
        assert_eq!(wrong.status(), Status::Unauthorized);
        assert_eq!(json_of(wrong).await["error"], "invalid_client");
        assert_eq!(introspect(&app, &seed, &access).await["active"], true);

        assert_eq!(
            revoke(refresh.clone(), seed.client_secret.clone())
                .await
                .status(),
            Status::Ok
        );
        assert_eq!(introspect(&app, &seed, &access).await["active"], false);
        // Again, and unknown or garbage tokens: 200.
        for t in [
            refresh.clone(),
            "kat_unknownunknownunknownunknownunknownunknown1".into(),
            "garbage".into(),
        ] {
            assert_eq!(
                revoke(t, seed.client_secret.clone()).await.status(),
                Status::Ok
            );
        }
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'grant.revoked'"),
            1
        );
    }

    #[rocket::async_test]
    async fn disabled_app_is_refused_everywhere() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (access, refresh) = installed(&app, &seed).await;
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE apps SET disabled = true"),
            &mut app.conn(),
        )
        .unwrap();
        let (status, error) = error_of(kit_refresh(&app, &seed, &refresh).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::Unauthorized, "invalid_client")
        );
        let resp = app.client.get(authorize_path(&seed, &[])).dispatch().await;
        assert_eq!(resp.status(), Status::BadRequest);
        assert!(resp.headers().get_one("Location").is_none());
        let me = app
            .client
            .get("/t/acme/oauth/userinfo")
            .header(Header::new("Authorization", format!("Bearer {access}")))
            .dispatch()
            .await;
        assert_eq!(me.status(), Status::Unauthorized);
    }

    #[rocket::async_test]
    async fn unsupported_grant_type_and_missing_fields() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let cases = [
            (
                serde_json::json!({"client_id": seed.app.client_id, "grant_type": "password"}),
                "unsupported_grant_type",
            ),
            (
                serde_json::json!({"client_id": seed.app.client_id}),
                "invalid_request",
            ),
            (
                serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "grant_type": "authorization_code", "redirect_uri": KIT_APPS}),
                "invalid_request",
            ),
            (
                serde_json::json!({"client_id": seed.app.client_id, "grant_type": "refresh_token"}),
                "invalid_request",
            ),
            (
                // No redirect_uri: required only by a code whose authorize had
                // one (RFC 6749 §4.1.3), and this code is unknown.
                serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "grant_type": "authorization_code", "code": "kac_0000000000000000000000000000000000000000000"}),
                "invalid_grant",
            ),
            (
                serde_json::json!({"grant_type": "refresh_token", "refresh_token": "krt_x"}),
                "invalid_client",
            ),
        ];
        for (body, expected) in cases {
            let resp = app
                .client
                .post("/t/acme/oauth/token")
                .header(ContentType::Form)
                .body(body.to_string())
                .dispatch()
                .await;
            assert!(resp.status().code >= 400 && resp.status().code < 500);
            assert_eq!(json_of(resp).await["error"], expected, "{body}");
        }
    }

    #[rocket::async_test]
    async fn metadata_and_userinfo() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let resp = app
            .client
            .get("/t/acme/.well-known/oauth-authorization-server")
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
        let m = json_of(resp).await;
        assert_eq!(m["issuer"], "http://kitauth.test/t/acme");
        assert_eq!(
            m["token_endpoint"],
            "http://kitauth.test/t/acme/oauth/token"
        );
        assert_eq!(
            m["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        let (access, _) = installed(&app, &seed).await;
        let me = app
            .client
            .get("/t/acme/oauth/userinfo")
            .header(Header::new("Authorization", format!("Bearer {access}")))
            .dispatch()
            .await;
        let body = json_of(me).await;
        assert_eq!(body["sub"], seed.user.id.to_string());
        assert_eq!(body["scope"], "public write");
        assert_eq!(body["client_id"], seed.app.client_id);
        let none = app.client.get("/t/acme/oauth/userinfo").dispatch().await;
        assert_eq!(none.status(), Status::Unauthorized);
        assert!(none
            .headers()
            .get_one("WWW-Authenticate")
            .unwrap()
            .starts_with("Bearer"));
    }

    #[rocket::async_test]
    async fn creator_signup_when_allowed_and_refused_when_not() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let page = app.client.get("/t/acme/signup").dispatch().await;
        assert_eq!(page.status(), Status::Ok);
        let csrf = csrf_from(&page.into_string().await.unwrap());
        let short = app
            .client
            .post("/t/acme/signup")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf),
                ("email", "new@example.com"),
                ("password", "short"),
            ]))
            .dispatch()
            .await;
        assert_eq!(short.status(), Status::BadRequest);
        let ok = app
            .client
            .post("/t/acme/signup")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf),
                ("email", "New@Example.com"),
                ("password", "long enough password"),
            ]))
            .dispatch()
            .await;
        assert_eq!(ok.status(), Status::SeeOther);
        assert_eq!(
            ok.headers().get_one("Location"),
            Some("/t/acme/login?notice=signed-up")
        );
        assert_eq!(
            app.count("SELECT count(*) FROM end_users WHERE email = 'new@example.com'"),
            1
        );
        // Sign-up does not sign in (issue 13); signing in with the new password
        // does, and authorize then shows consent directly.
        assert_eq!(app.count("SELECT count(*) FROM end_user_sessions"), 0);
        let signed_in = app
            .client
            .post("/t/acme/login")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf),
                ("email", "new@example.com"),
                ("password", "long enough password"),
            ]))
            .dispatch()
            .await;
        assert_eq!(signed_in.status(), Status::SeeOther);
        let html = app
            .client
            .get(authorize_path(&seed, &[]))
            .dispatch()
            .await
            .into_string()
            .await
            .unwrap();
        assert!(html.contains("new@example.com") && html.contains("value=\"allow\""));
    }

    #[rocket::async_test]
    async fn creator_signup_refused_when_tenant_disallows_it() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        seed_tenant(&app, "beta");
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE tenants SET signup_allowed = false"),
            &mut app.conn(),
        )
        .unwrap();
        let before = app.snapshot();
        let closed = app.client.get("/t/beta/signup").dispatch().await;
        assert_eq!(closed.status(), Status::NotFound);
        let post = app
            .client
            .post("/t/beta/signup")
            .header(ContentType::Form)
            .body(form(&[
                ("email", "x@example.com"),
                ("password", "long enough password"),
            ]))
            .dispatch()
            .await;
        assert_eq!(post.status(), Status::NotFound);
        assert_eq!(app.snapshot(), before);
    }

    #[rocket::async_test]
    async fn wrong_password_shows_one_message_for_unknown_and_known_accounts() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let page = app.client.get("/t/acme/login").dispatch().await;
        let csrf = csrf_from(&page.into_string().await.unwrap());
        let mut bodies = Vec::new();
        for email in [seed.email(), "nobody@acme.example"] {
            let resp = app
                .client
                .post("/t/acme/login")
                .header(ContentType::Form)
                .body(form(&[
                    ("csrf_token", &csrf),
                    ("email", email),
                    ("password", "wrong password!"),
                ]))
                .dispatch()
                .await;
            assert_eq!(resp.status(), Status::Unauthorized);
            let html = resp.into_string().await.unwrap();
            assert!(html.contains("The email or password is incorrect."));
            bodies.push(html.replace(email, ""));
        }
        assert_eq!(bodies[0], bodies[1], "no user enumeration by message");
        assert_eq!(app.count("SELECT count(*) FROM end_user_sessions"), 0);
    }

    async fn token_status(app: &TestApp, slug: &str, body: serde_json::Value) -> Status {
        app.client
            .post(format!("/t/{slug}/oauth/token"))
            .header(ContentType::Form)
            .body(body.to_string())
            .dispatch()
            .await
            .status()
    }

    #[rocket::async_test]
    async fn right_secret_is_never_throttled_and_other_tenants_are_not_blocked() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let a = seed_tenant(&app, "alpha");
        let b = seed_tenant(&app, "bravo");
        // Someone sends A's public client_id with wrong secrets from the same
        // address Kit uses, until the budget is spent.
        let wrong = serde_json::json!({"client_id": a.app.client_id, "client_secret": "kcs_wrong", "grant_type": "refresh_token", "refresh_token": "krt_x"});
        let mut statuses = Vec::new();
        for _ in 0..12 {
            statuses.push(token_status(&app, "alpha", wrong.clone()).await);
        }
        assert_eq!(statuses[0], Status::Unauthorized);
        assert_eq!(
            *statuses.last().unwrap(),
            Status::TooManyRequests,
            "over budget: 429"
        );
        // Kit, from that same address, with the right secret: still served.
        let code = get_code(&app, &a).await;
        assert_eq!(kit_exchange(&app, &a, &code).await.status(), Status::Ok);
        // Another tenant's app from the same address is not affected.
        let code = get_code(&app, &b).await;
        assert_eq!(kit_exchange(&app, &b, &code).await.status(), Status::Ok);
        let wrong_b = serde_json::json!({"client_id": b.app.client_id, "client_secret": "kcs_wrong", "grant_type": "refresh_token", "refresh_token": "krt_x"});
        assert_eq!(
            token_status(&app, "bravo", wrong_b).await,
            Status::Unauthorized
        );
    }

    #[rocket::async_test]
    async fn replay_of_an_expired_used_refresh_token_revokes_the_grant() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, r0) = installed(&app, &seed).await;
        let next = json_of(kit_refresh(&app, &seed, &r0).await).await;
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE refresh_tokens SET used_at = now() - interval '91 days', expires_at = now() - interval '1 day' WHERE used_at IS NOT NULL"),
            &mut app.conn(),
        )
        .unwrap();
        let (_, error) = error_of(kit_refresh(&app, &seed, &r0).await).await;
        assert_eq!(error, "invalid_grant");
        assert_eq!(
            introspect(&app, &seed, next["access_token"].as_str().unwrap()).await["active"],
            false
        );
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'refresh.reuse_detected'"),
            1
        );
    }

    #[rocket::async_test]
    async fn creator_signups_are_throttled_per_address() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        seed_tenant(&app, "acme");
        let page = app.client.get("/t/acme/signup").dispatch().await;
        let csrf = csrf_from(&page.into_string().await.unwrap());
        let mut last = Status::Ok;
        for i in 0..6 {
            let email = format!("new{i}@example.com");
            last = app
                .client
                .post("/t/acme/signup")
                .header(ContentType::Form)
                .body(form(&[
                    ("csrf_token", &csrf),
                    ("email", &email),
                    ("password", "long enough password"),
                ]))
                .dispatch()
                .await
                .status();
        }
        assert_eq!(last, Status::TooManyRequests);
        assert_eq!(
            app.count("SELECT count(*) FROM end_users WHERE email LIKE 'new%'"),
            5
        );
    }

    #[rocket::async_test]
    async fn an_unparseable_next_after_sign_in_falls_back_instead_of_failing() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let page = app.client.get("/t/acme/login").dispatch().await;
        let csrf = csrf_from(&page.into_string().await.unwrap());
        for next in [
            "/t/acme/oauth/authorize?a b",
            "/t/acme/oauth/authorize?x=\"<é>\"",
            "/t/acme/oauth/authorize?%zz",
        ] {
            let resp = app
                .client
                .post("/t/acme/login")
                .header(ContentType::Form)
                .body(form(&[
                    ("csrf_token", &csrf),
                    ("email", seed.email()),
                    ("password", &seed.password),
                    ("next", next),
                ]))
                .dispatch()
                .await;
            assert_eq!(resp.status(), Status::SeeOther, "{next}");
            // Never a 500: either the page itself, or the safe fallback.
            let location = resp.headers().get_one("Location").unwrap();
            assert!(
                location == "/t/acme/login" || location == next,
                "{next} -> {location}"
            );
            if next.contains(' ') || !next.is_ascii() {
                assert_eq!(location, "/t/acme/login", "{next}");
            }
        }
    }

    #[rocket::async_test]
    async fn revoking_all_installs_also_voids_pending_codes() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (access, _) = installed(&app, &seed).await;
        let pending_app = get_code(&app, &seed).await;
        let n = kitauth::db::models::Grant::revoke_all_for_app(
            &mut app.conn(),
            seed.tenant.id,
            seed.app.id,
            "admin",
        )
        .unwrap();
        assert_eq!(n, 1);
        assert_eq!(introspect(&app, &seed, &access).await["active"], false);
        let (_, error) = error_of(kit_exchange(&app, &seed, &pending_app).await).await;
        assert_eq!(
            error, "invalid_grant",
            "a code issued before the revocation is void"
        );

        let pending_user = get_code(&app, &seed).await;
        kitauth::db::models::Grant::revoke_all_for_end_user(
            &mut app.conn(),
            seed.tenant.id,
            seed.user.id,
            "admin",
        )
        .unwrap();
        let (_, error) = error_of(kit_exchange(&app, &seed, &pending_user).await).await;
        assert_eq!(error, "invalid_grant");
        assert_eq!(
            app.count("SELECT count(*) FROM grants WHERE revoked_at IS NULL"),
            0
        );
    }

    #[rocket::async_test]
    async fn csrf_and_creator_cookies_are_secure_when_configured() {
        let app = rules_app(CLIENT_COPIES, |f| f.merge(("secure_cookies", true))).await;
        let seed = seed_tenant(&app, "acme");
        let page = app.client.get("/t/acme/login").dispatch().await;
        let set: Vec<String> = page
            .headers()
            .get("Set-Cookie")
            .map(str::to_string)
            .collect();
        let csrf_cookie = set
            .iter()
            .find(|c| c.starts_with("kitauth_csrf="))
            .expect("CSRF cookie");
        assert!(
            csrf_cookie.contains("Secure") && csrf_cookie.contains("HttpOnly"),
            "{csrf_cookie}"
        );
        let csrf = csrf_from(&page.into_string().await.unwrap());
        let resp = app
            .client
            .post("/t/acme/login")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf),
                ("email", seed.email()),
                ("password", &seed.password),
            ]))
            .dispatch()
            .await;
        let session = set_cookie(&resp, "kitauth_creator");
        assert!(
            session.contains("Secure") && session.contains("Path=/t/acme"),
            "{session}"
        );
    }

    // ---- OAuth rules of issue 13 ----

    async fn token_call<'c>(
        app: &'c TestApp,
        body: serde_json::Value,
        auth: Option<Header<'static>>,
    ) -> rocket::local::asynchronous::LocalResponse<'c> {
        let mut req = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::JSON)
            .body(body.to_string());
        if let Some(h) = auth {
            req = req.header(h);
        }
        req.dispatch().await
    }

    fn exchange_body(seed: &Seed, code: &str, verifier: Option<&str>) -> serde_json::Value {
        let mut body = serde_json::json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret,
            "grant_type": "authorization_code", "code": code, "redirect_uri": KIT_APPS});
        if let Some(v) = verifier {
            body["code_verifier"] = v.into();
        }
        body
    }

    async fn refresh_with_scope(
        app: &TestApp,
        seed: &Seed,
        token: &str,
        scope: &str,
    ) -> (Status, serde_json::Value) {
        let body = serde_json::json!({"client_id": seed.app.client_id, "grant_type": "refresh_token",
            "refresh_token": token, "scope": scope});
        let resp = token_call(app, body, None).await;
        (resp.status(), json_of(resp).await)
    }

    async fn userinfo_scope(app: &TestApp, access: &str) -> serde_json::Value {
        let me = app
            .client
            .get("/t/acme/oauth/userinfo")
            .header(Header::new("Authorization", format!("Bearer {access}")))
            .dispatch()
            .await;
        assert_eq!(me.status(), Status::Ok);
        json_of(me).await["scope"].clone()
    }

    #[rocket::async_test]
    async fn pkce_downgrade_and_malformed_verifiers_are_refused() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        // A code issued without a challenge, exchanged with a verifier
        // (RFC 9700 §2.1.1), or with a malformed one: refused, nothing written.
        for (done, sent) in [
            verifier,
            "short",
            "has spaces in it but is long enough to pass a length check",
        ]
        .into_iter()
        .enumerate()
        {
            let done = done as i64;
            let code = get_code(&app, &seed).await;
            let resp = token_call(&app, exchange_body(&seed, &code, Some(sent)), None).await;
            assert_eq!(
                error_of(resp).await,
                (Status::BadRequest, "invalid_grant".into()),
                "{sent}"
            );
            assert_eq!(
                (
                    app.count("SELECT count(*) FROM grants"),
                    app.count("SELECT count(*) FROM authorization_codes WHERE used_at IS NOT NULL")
                ),
                (done, done),
                "a refused exchange writes nothing: no grant, the code unused"
            );
            // The same code without a verifier still works: the refusal was the rules'.
            let ok = token_call(&app, exchange_body(&seed, &code, None), None).await;
            assert_eq!(ok.status(), Status::Ok);
        }
        // With a challenge, a malformed verifier is refused too.
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        let pkce = [
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ];
        let code = query_param(&authorize(&app, &seed, &pkce).await, "code").unwrap();
        let resp = token_call(&app, exchange_body(&seed, &code, Some("x")), None).await;
        assert_eq!(
            error_of(resp).await,
            (Status::BadRequest, "invalid_grant".into())
        );
        let resp = token_call(&app, exchange_body(&seed, &code, Some(verifier)), None).await;
        assert_eq!(resp.status(), Status::Ok);
    }

    #[rocket::async_test]
    async fn authorize_checks_the_challenges_own_syntax() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        sign_in(&app, &seed).await;
        // Valid verifier syntax, but no S256 challenge has 44 characters or a `~`.
        for c in [
            "a".repeat(44),
            format!("{}~", "a".repeat(42)),
            "a".repeat(42),
        ] {
            let path = authorize_path(
                &seed,
                &[("code_challenge", &c), ("code_challenge_method", "S256")],
            );
            let resp = app.client.get(&path).dispatch().await;
            assert_eq!(resp.status(), Status::Found, "{c}");
            let location = resp.headers().get_one("Location").unwrap().to_string();
            assert_eq!(
                query_param(&location, "error").as_deref(),
                Some("invalid_request"),
                "{c}"
            );
        }
        let ok = authorize_path(
            &seed,
            &[
                ("code_challenge", &"a".repeat(43)),
                ("code_challenge_method", "S256"),
            ],
        );
        assert_eq!(app.client.get(&ok).dispatch().await.status(), Status::Ok);
    }

    #[rocket::async_test]
    async fn refresh_with_a_narrower_scope_issues_exactly_that_scope() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        let (status, narrow) = refresh_with_scope(&app, &seed, &refresh0, "public").await;
        assert_eq!(status, Status::Ok, "{narrow}");
        assert_eq!(narrow["scope"], "public");
        let access = narrow["access_token"].as_str().unwrap();
        assert_eq!(introspect(&app, &seed, access).await["scope"], "public");
        assert_eq!(userinfo_scope(&app, access).await, "public");
        let refresh1 = narrow["refresh_token"].as_str().unwrap();
        assert_eq!(introspect(&app, &seed, refresh1).await["scope"], "public");
        // The grant keeps the upper bound: a refresh without scope gets it all
        // back (RFC 6749 §6), a wider one is refused and changes nothing.
        let (status, wider) = refresh_with_scope(&app, &seed, refresh1, "public admin").await;
        assert_eq!(
            (status, wider["error"].as_str()),
            (Status::BadRequest, Some("invalid_scope"))
        );
        assert_eq!(introspect(&app, &seed, access).await["active"], true);
        let full = json_of(kit_refresh(&app, &seed, refresh1).await).await;
        assert_eq!(full["scope"], "public write");
        assert_eq!(
            introspect(&app, &seed, full["access_token"].as_str().unwrap()).await["scope"],
            "public write"
        );
        assert_eq!(
            app.count(
                "SELECT count(*) FROM grants WHERE scopes = '{public,write}' AND revoked_at IS NULL"
            ),
            1
        );
    }

    #[rocket::async_test]
    async fn reuse_is_judged_before_the_scope() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        let r1 = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        let r2 = json_of(kit_refresh(&app, &seed, r1["refresh_token"].as_str().unwrap()).await).await;
        // A thief replays the oldest token with a scope that is invalid.
        let (status, body) = refresh_with_scope(&app, &seed, &refresh0, "admin").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (Status::BadRequest, Some("invalid_grant"))
        );
        assert_eq!(
            introspect(&app, &seed, r2["access_token"].as_str().unwrap()).await["active"],
            false,
            "the reuse revoked the grant"
        );
        assert_grants_revoked(&app, "refresh_token_reuse", 1);
    }

    #[rocket::async_test]
    async fn scopes_removed_from_the_app_stop_being_issued() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        // Warm the client copy, so the fast path is the one asked first.
        let r1 = json_of(kit_refresh(&app, &seed, &refresh0).await).await;
        assert_eq!(r1["scope"], "public write");
        diesel::RunQueryDsl::execute(
            diesel::sql_query("UPDATE apps SET allowed_scopes = '{public}'"),
            &mut app.conn(),
        )
        .unwrap();
        let r2 = json_of(kit_refresh(&app, &seed, r1["refresh_token"].as_str().unwrap()).await).await;
        assert_eq!(r2["scope"], "public");
        let access = r2["access_token"].as_str().unwrap();
        assert_eq!(introspect(&app, &seed, access).await["scope"], "public");
        // Asking for the removed scope is asking for more than may be issued.
        let (status, body) =
            refresh_with_scope(&app, &seed, r2["refresh_token"].as_str().unwrap(), "write").await;
        assert_eq!(
            (status, body["error"].as_str()),
            (Status::BadRequest, Some("invalid_scope"))
        );
    }

    #[rocket::async_test]
    async fn basic_parts_are_decoded_whole_and_empty_secrets_are_one_rule() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, refresh0) = installed(&app, &seed).await;
        let refresh =
            |token: &str| serde_json::json!({"grant_type": "refresh_token", "refresh_token": token});
        // An unencoded `&` is part of the secret, so this secret is wrong.
        let wrong = format!("{}&garbage", seed.client_secret);
        let resp = token_call(
            &app,
            refresh(&refresh0),
            Some(basic_auth(&seed.app.client_id, &wrong)),
        )
        .await;
        assert_eq!(
            error_of(resp).await,
            (Status::Unauthorized, "invalid_client".into())
        );
        let wrong = format!("{}=x", seed.client_secret);
        let resp = token_call(
            &app,
            refresh(&refresh0),
            Some(basic_auth(&seed.app.client_id, &wrong)),
        )
        .await;
        assert_eq!(
            error_of(resp).await,
            (Status::Unauthorized, "invalid_client".into())
        );
        // Percent-encoded parts decode.
        let encoded_id: String = seed
            .app
            .client_id
            .chars()
            .map(|c| format!("%{:02X}", c as u32))
            .collect();
        let resp = token_call(
            &app,
            refresh(&refresh0),
            Some(basic_auth(&encoded_id, &seed.client_secret)),
        )
        .await;
        assert_eq!(resp.status(), Status::Ok);
        let refresh1 = json_of(resp).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        // An empty secret is no secret, in Basic as in the body: enough for a
        // refresh of an app that allows one without a secret...
        let resp = token_call(
            &app,
            refresh(&refresh1),
            Some(basic_auth(&seed.app.client_id, "")),
        )
        .await;
        assert_eq!(resp.status(), Status::Ok);
        let refresh2 = json_of(resp).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        let mut body = refresh(&refresh2);
        body["client_id"] = seed.app.client_id.clone().into();
        body["client_secret"] = "".into();
        let resp = token_call(&app, body, None).await;
        assert_eq!(resp.status(), Status::Ok);
        // ... and "authentication is required" for a code exchange, both ways.
        let code = get_code(&app, &seed).await;
        let mut body = exchange_body(&seed, &code, None);
        body["client_secret"] = "".into();
        let resp = token_call(&app, body, None).await;
        let via_body = json_of(resp).await;
        let mut body = exchange_body(&seed, &code, None);
        body.as_object_mut().unwrap().remove("client_secret");
        body.as_object_mut().unwrap().remove("client_id");
        let resp = token_call(&app, body, Some(basic_auth(&seed.app.client_id, ""))).await;
        let via_basic = json_of(resp).await;
        assert_eq!(via_body["error"], "invalid_client");
        assert_eq!(
            via_body["error_description"],
            "client authentication is required"
        );
        assert_eq!(
            via_basic["error_description"],
            via_body["error_description"]
        );
    }

    #[rocket::async_test]
    async fn a_code_of_a_creator_disabled_since_starts_no_grant() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        kitauth::db::models::EndUser::set_disabled(&mut app.conn(), seed.tenant.id, seed.user.id, true)
            .unwrap();
        let (status, error) = error_of(kit_exchange(&app, &seed, &code).await).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
    }

    #[rocket::async_test]
    async fn an_exchange_racing_a_disable_waits_for_it_and_starts_no_grant() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        // A disable in progress (uncommitted) when the exchange arrives.
        let mut admin = app.conn();
        let run = |conn: &mut diesel::PgConnection, sql: &str| {
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), conn).unwrap();
        };
        run(&mut admin, "BEGIN");
        run(&mut admin, "UPDATE end_users SET disabled = true");
        let exchange = kit_exchange(&app, &seed, &code);
        let commit = async {
            rocket::tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            run(&mut admin, "COMMIT");
        };
        let (resp, ()) = rocket::tokio::join!(exchange, commit);
        let (status, error) = error_of(resp).await;
        assert_eq!(
            (status, error.as_str()),
            (Status::BadRequest, "invalid_grant")
        );
        assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
    }

    /// Makes every insert into `grants` fail with SQLSTATE `sqlstate`, the
    /// first `times` times (a sequence counts: it is not rolled back).
    fn fail_grant_inserts(app: &TestApp, sqlstate: &str, times: i64) {
        let mut conn = app.conn();
        for sql in [
            "CREATE SEQUENCE fault_count".to_string(),
            format!(
                "CREATE FUNCTION fault() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
                 IF nextval('fault_count') <= {times} THEN \
                 RAISE EXCEPTION '{}' USING ERRCODE = '{sqlstate}'; END IF; RETURN NEW; END $$",
                if sqlstate == "40P01" {
                    "deadlock detected"
                } else {
                    "could not serialize access"
                }
            ),
            "CREATE TRIGGER fault BEFORE INSERT ON grants FOR EACH ROW EXECUTE FUNCTION fault()".into(),
        ] {
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn).unwrap();
        }
    }

    #[rocket::async_test]
    async fn a_deadlock_is_retried_once_then_answers_503() {
        for sqlstate in ["40P01", "40001"] {
            // The fast statement and the transaction fail once each: the
            // transaction's retry succeeds.
            let app = rules_app(CLIENT_COPIES, |f| f).await;
            let seed = seed_tenant(&app, "acme");
            let code = get_code(&app, &seed).await;
            fail_grant_inserts(&app, sqlstate, 2);
            let resp = kit_exchange(&app, &seed, &code).await;
            assert_eq!(resp.status(), Status::Ok, "{sqlstate}");
            assert_eq!(app.count("SELECT count(*) FROM grants"), 1);

            // Always failing: 503 temporarily_unavailable, never 500, nothing written.
            let app = rules_app(CLIENT_COPIES, |f| f).await;
            let seed = seed_tenant(&app, "acme");
            let code = get_code(&app, &seed).await;
            fail_grant_inserts(&app, sqlstate, 1000);
            let resp = kit_exchange(&app, &seed, &code).await;
            assert_eq!(
                error_of(resp).await,
                (Status::ServiceUnavailable, "temporarily_unavailable".into()),
                "{sqlstate}"
            );
            assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
            assert_eq!(
                app.count("SELECT nextval('fault_count') - 1"),
                3,
                "fast, try, retry"
            );
            assert_eq!(
                app.count("SELECT count(*) FROM authorization_codes WHERE used_at IS NOT NULL"),
                0
            );
        }
    }

    #[rocket::async_test]
    async fn a_statement_past_the_statement_timeout_answers_503() {
        let app = rules_app(CLIENT_COPIES, |f| f.merge(("db_timeout_ms", 1000))).await;
        let seed = seed_tenant(&app, "acme");
        let code = get_code(&app, &seed).await;
        // Something holds the grants table: every statement that needs it waits.
        let mut holder = app.conn();
        let run = |conn: &mut diesel::PgConnection, sql: &str| {
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), conn).unwrap();
        };
        run(&mut holder, "BEGIN");
        run(&mut holder, "LOCK TABLE grants IN ACCESS EXCLUSIVE MODE");
        let started = std::time::Instant::now();
        let exchange = async {
            let resp = kit_exchange(&app, &seed, &code).await;
            let elapsed = started.elapsed();
            (error_of(resp).await, elapsed)
        };
        let release = async {
            rocket::tokio::time::sleep(std::time::Duration::from_secs(8)).await;
            run(&mut holder, "COMMIT");
        };
        let ((answer, elapsed), ()) = rocket::tokio::join!(exchange, release);
        assert_eq!(
            answer,
            (Status::ServiceUnavailable, "temporarily_unavailable".into())
        );
        // 1.5 s per statement (fast attempt, then the rules), not the 8 s lock.
        assert!(elapsed < std::time::Duration::from_secs(6), "{elapsed:?}");
        assert_eq!(app.count("SELECT count(*) FROM grants"), 0);
        // The connections are fine afterwards: the same code now works.
        assert_eq!(kit_exchange(&app, &seed, &code).await.status(), Status::Ok);
    }

    /// Authorize without `redirect_uri` (the app has one registered URI), through
    /// sign-in and consent, posting back exactly the consent form's fields.
    async fn code_without_redirect_uri(app: &TestApp, seed: &Seed) -> String {
        let path = format!(
            "/t/acme/oauth/authorize?{}",
            form(&[
                ("client_id", seed.app.client_id.as_str()),
                ("response_type", "code")
            ])
        );
        let mut html = app
            .client
            .get(&path)
            .dispatch()
            .await
            .into_string()
            .await
            .unwrap();
        if html.contains("name=\"password\"") {
            sign_in(app, seed).await;
            html = app
                .client
                .get(&path)
                .dispatch()
                .await
                .into_string()
                .await
                .unwrap();
        }
        assert!(html.contains("value=\"allow\""), "consent page shows Allow");
        assert!(
            !html.contains("name=\"redirect_uri\""),
            "the consent form does not invent a redirect_uri"
        );
        let resp = app
            .client
            .post("/t/acme/oauth/authorize")
            .header(ContentType::Form)
            .body(form(&[
                ("csrf_token", &csrf_from(&html)),
                ("decision", "allow"),
                ("client_id", &seed.app.client_id),
                ("response_type", "code"),
                ("scope", ""),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Found);
        let location = resp.headers().get_one("Location").unwrap().to_string();
        assert!(location.starts_with(KIT_INSTALL), "{location}");
        query_param(&location, "code").unwrap()
    }

    fn exchange_with(seed: &Seed, code: &str, redirect_uri: Option<&str>) -> serde_json::Value {
        let mut body = exchange_body(seed, code, None);
        match redirect_uri {
            Some(uri) => body["redirect_uri"] = uri.into(),
            None => {
                body.as_object_mut().unwrap().remove("redirect_uri");
            }
        }
        body
    }

    #[rocket::async_test]
    async fn redirect_uri_at_the_token_step_is_required_only_when_authorize_had_one() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        // The one registered URI lets authorize go without redirect_uri.
        diesel::RunQueryDsl::execute(
            diesel::sql_query(format!(
                "UPDATE apps SET redirect_uris = ARRAY['{KIT_INSTALL}']"
            )),
            &mut app.conn(),
        )
        .unwrap();

        // Authorize had none: a token request without one is accepted, on the
        // first call (no client copy yet) and on a later one (with a copy).
        for _ in 0..2 {
            let code = code_without_redirect_uri(&app, &seed).await;
            let resp = token_call(&app, exchange_with(&seed, &code, None), None).await;
            assert_eq!(resp.status(), Status::Ok);
            assert!(json_of(resp).await["access_token"].is_string());
        }
        assert_eq!(app.count("SELECT count(*) FROM grants"), 2);

        // Authorize had none, and the token request sends one: it must still be
        // registered.
        let code = code_without_redirect_uri(&app, &seed).await;
        let resp = token_call(&app, exchange_with(&seed, &code, Some(KIT_APPS)), None).await;
        assert_eq!(
            error_of(resp).await,
            (Status::BadRequest, "invalid_grant".into())
        );
        let resp = token_call(&app, exchange_with(&seed, &code, Some(KIT_INSTALL)), None).await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(app.count("SELECT count(*) FROM grants"), 3);

        // Authorize had one: the token request must carry one. The refusal
        // writes nothing and leaves the code usable.
        let location = authorize(&app, &seed, &[]).await;
        let code = query_param(&location, "code").unwrap();
        let resp = token_call(&app, exchange_with(&seed, &code, None), None).await;
        assert_eq!(
            error_of(resp).await,
            (Status::BadRequest, "invalid_request".into())
        );
        assert_eq!(app.count("SELECT count(*) FROM grants"), 3);
        assert_eq!(
            app.count("SELECT count(*) FROM authorization_codes WHERE used_at IS NULL"),
            1
        );
        let resp = token_call(&app, exchange_with(&seed, &code, Some(KIT_INSTALL)), None).await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(app.count("SELECT count(*) FROM grants"), 4);
    }

    #[rocket::async_test]
    async fn refresh_retry_within_grace_keeps_one_branch_and_other_replay_revokes() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (_, r1) = installed(&app, &seed).await;
        let resp = kit_refresh(&app, &seed, &r1).await;
        assert_eq!(resp.status(), Status::Ok);
        let r2 = json_of(resp).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            app.count("SELECT count(*) FROM grants WHERE last_refreshed_at IS NOT NULL"),
            1
        );
        // Kit lost the answer and retries r1: a fresh pair, r2 dies.
        let resp = kit_refresh(&app, &seed, &r1).await;
        assert_eq!(resp.status(), Status::Ok);
        let r3 = json_of(resp).await["refresh_token"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            app.count(
                "SELECT count(*) FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL"
            ),
            1
        );
        // r3 rotates normally.
        let resp = kit_refresh(&app, &seed, &r3).await;
        assert_eq!(resp.status(), Status::Ok);
        // r2 (revoked) replayed: reuse, the grant dies.
        let resp = kit_refresh(&app, &seed, &r2).await;
        assert_eq!(resp.status(), Status::BadRequest);
        assert_grants_revoked(&app, "refresh_token_reuse", 1);
        assert_eq!(
            app.count("SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL"),
            0
        );
    }

    #[rocket::async_test]
    async fn introspection_authenticates_and_scopes_to_the_app() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let (access, refresh) = installed(&app, &seed).await;
        let ok = introspect(&app, &seed, &access).await;
        assert_eq!(ok["active"], true);
        assert_eq!(ok["username"], seed.email());
        assert_eq!(ok["client_id"], seed.app.client_id);
        assert_eq!(ok["token_type"], "Bearer");
        let rt = introspect(&app, &seed, &refresh).await;
        assert_eq!(rt["active"], true);
        assert_eq!(rt["token_type"], "refresh_token");

        // A second secret works too; a wrong one is refused and audited.
        let mut conn = app.conn();
        let (_, second) =
            kitauth::db::models::ClientSecret::create(&mut conn, seed.tenant.id, seed.app.id).unwrap();
        let other = Seed {
            client_secret: second,
            ..seed.clone()
        };
        assert_eq!(introspect(&app, &other, &access).await["active"], true);
        let resp = app
            .client
            .post("/t/acme/oauth/introspect")
            .header(ContentType::Form)
            .body(form(&[
                ("client_id", &seed.app.client_id),
                ("client_secret", "kcs_wrong"),
                ("token", &access),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Unauthorized);
        assert_eq!(
            app.count("SELECT count(*) FROM audit_events WHERE action = 'client.wrong_secret'"),
            1
        );

        // Another app of the same tenant sees the token as inactive.
        let (app2, secret2) =
            kitauth::cli::create_app(&mut conn, seed.tenant.id, "Other", vec![], vec![]).unwrap();
        let resp = app
            .client
            .post("/t/acme/oauth/introspect")
            .header(ContentType::Form)
            .header(Header::new("Authorization", "Bearer ignored"))
            .body(form(&[
                ("client_id", &app2.client_id),
                ("client_secret", &secret2),
                ("token", &access),
            ]))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
        assert_eq!(json_of(resp).await, serde_json::json!({"active": false}));
    }


    #[rocket::async_test]
    async fn pkce_mismatch_and_expiry_change_no_row() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let location = authorize(
            &app,
            &seed,
            &[
                (
                    "code_challenge",
                    "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                ),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
        let code = query_param(&location, "code").unwrap();
        let exchange = |verifier: &'static str| {
            serde_json::json!({
                "client_id": seed.app.client_id,
                "client_secret": seed.client_secret,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": KIT_APPS,
                "code_verifier": verifier,
            })
            .to_string()
        };
        // Client authentication stamps the secret's last use once a minute.
        introspect(&app, &seed, "not-a-token").await;
        let before = app.snapshot();
        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::JSON)
            .body(exchange("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::BadRequest);
        assert_eq!(before, app.snapshot(), "a wrong verifier changes nothing");
        let resp = app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::JSON)
            .body(exchange(verifier))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);

        // An expired code: refused, nothing written.
        let code2 = get_code(&app, &seed).await;
        {
            use diesel::prelude::*;
            diesel::sql_query("UPDATE authorization_codes SET expires_at = now() - interval '1 second' WHERE used_at IS NULL")
                .execute(&mut app.conn())
                .unwrap();
        }
        let before = app.snapshot();
        let resp = kit_exchange(&app, &seed, &code2).await;
        assert_eq!(resp.status(), Status::BadRequest);
        assert!(json_of(resp).await["error_description"]
            .as_str()
            .unwrap()
            .contains("expired"));
        assert_eq!(before, app.snapshot());
    }

    #[rocket::async_test]
    async fn racing_refreshes_of_one_token_leave_exactly_one_live_branch() {
        let app = rules_app(CLIENT_COPIES, |f| f).await;
        let seed = seed_tenant(&app, "acme");
        for _ in 0..5 {
            let (_, r1) = installed(&app, &seed).await;
            let (a, b) = futures::join!(kit_refresh(&app, &seed, &r1), kit_refresh(&app, &seed, &r1));
            // The second is a retry of the immediate predecessor within the
            // grace window: both succeed, and only one branch stays live.
            assert_eq!(a.status(), Status::Ok);
            assert_eq!(b.status(), Status::Ok);
        }
        assert_eq!(
            app.count("SELECT count(*) FROM grants WHERE revoked_at IS NOT NULL"),
            0
        );
        assert_eq!(
            app.count(
                "SELECT count(*) FROM (SELECT grant_id FROM refresh_tokens WHERE used_at IS NULL AND revoked_at IS NULL GROUP BY grant_id HAVING count(*) = 1) x"
            ),
            5
        );
    }
    };
}

mod with_client_copies {
    use super::*;
    const CLIENT_COPIES: bool = true;
    rule_tests!();
}

mod without_client_copies {
    use super::*;
    const CLIENT_COPIES: bool = false;
    rule_tests!();
}
