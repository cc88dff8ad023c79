//! Redaction and request logs: the whole Kit flow, failures included, with
//! every log captured at TRACE (kitauth's tracing events, and Rocket's own
//! `log` output bridged into tracing at its most verbose level). No token,
//! code, secret, session id or password — nor any 12-character piece of
//! one — may appear; every request is logged with id, method, route,
//! status and duration.
//!
//! One test in this binary: the subscriber is process-global.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::*;
use rocket::http::{ContentType, Header, Status};
use serde_json::json;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Buffer {
    type Writer = Buffer;
    fn make_writer(&'a self) -> Buffer {
        self.clone()
    }
}

#[rocket::async_test]
async fn no_secret_reaches_the_logs_and_every_request_is_logged() {
    let logs = Buffer::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .json()
        .try_init()
        .expect("the only subscriber in this test binary");

    let app = TestApp::with(|f| f.merge(("log_level", "debug"))).await;
    let seed = seed_tenant(&app, "acme");
    let mut secrets: Vec<String> = vec![seed.client_secret.clone(), seed.password.clone()];

    // A creator signs up (a new password), signs out, fails, signs in.
    let page = app.client.get("/t/acme/signup").dispatch().await;
    let csrf = csrf_from(&page.into_string().await.unwrap());
    secrets.push(csrf.clone());
    let new_password = "sign-up password 9f3k2";
    secrets.push(new_password.to_string());
    let resp = app
        .client
        .post("/t/acme/signup")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("email", "new@acme.example"),
            ("password", new_password),
        ]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::SeeOther);
    secrets.push(
        resp.cookies()
            .get(kitauth::auth::creator::COOKIE)
            .unwrap()
            .value()
            .to_string(),
    );
    app.client
        .post("/t/acme/logout")
        .header(ContentType::Form)
        .body(form(&[("csrf_token", &csrf)]))
        .dispatch()
        .await;
    let wrong = "wrong password 7c1b2q";
    secrets.push(wrong.to_string());
    let resp = app
        .client
        .post("/t/acme/login")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("email", &seed.user.email),
            ("password", wrong),
        ]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Unauthorized);

    // Install: authorize, exchange (after a wrong secret and a bad redirect).
    let code = get_code(&app, &seed).await;
    secrets.push(code.clone());
    secrets.push(
        app.client
            .cookies()
            .get(kitauth::auth::creator::COOKIE)
            .unwrap()
            .value()
            .to_string(),
    );
    let wrong_secret = format!("kcs_{}", "Zq8".repeat(14));
    secrets.push(wrong_secret.clone());
    let resp = app
        .client
        .post("/t/acme/oauth/token")
        .header(ContentType::Form)
        .body(
            json!({"client_id": seed.app.client_id, "client_secret": wrong_secret,
            "grant_type": "authorization_code", "code": code, "redirect_uri": KIT_APPS})
            .to_string(),
        )
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Unauthorized);
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    let tokens = json_of(resp).await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    secrets.extend([access.clone(), refresh.clone()]);

    // Use, refresh, replay outside the grace rules, revoke.
    assert_eq!(introspect(&app, &seed, &access).await["active"], true);
    let resp = app
        .client
        .get("/t/acme/oauth/userinfo")
        .header(Header::new("Authorization", format!("Bearer {access}")))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::Ok);
    let rotated = json_of(resp).await;
    let access2 = rotated["access_token"].as_str().unwrap().to_string();
    let refresh2 = rotated["refresh_token"].as_str().unwrap().to_string();
    secrets.extend([access2.clone(), refresh2.clone()]);
    let resp = kit_refresh(&app, &seed, &refresh2).await;
    let third = json_of(resp).await;
    secrets.push(third["access_token"].as_str().unwrap().to_string());
    secrets.push(third["refresh_token"].as_str().unwrap().to_string());
    // refresh (the grandparent) replayed: reuse detected, grant revoked.
    let resp = kit_refresh(&app, &seed, &refresh).await;
    assert_eq!(resp.status(), Status::BadRequest);
    // A replayed code.
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::BadRequest);

    // A second install, revoked as Kit does on uninstall.
    let code2 = get_code(&app, &seed).await;
    secrets.push(code2.clone());
    let tokens2 = json_of(kit_exchange(&app, &seed, &code2).await).await;
    let access3 = tokens2["access_token"].as_str().unwrap().to_string();
    secrets.push(access3.clone());
    secrets.push(tokens2["refresh_token"].as_str().unwrap().to_string());
    let resp = app
        .client
        .post("/t/acme/oauth/revoke")
        .header(ContentType::Form)
        .header(Header::new("Authorization", format!("Bearer {access3}")))
        .body(json!({"client_id": seed.app.client_id, "client_secret": seed.client_secret, "token": access3}).to_string())
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    // Garbage carrying a secret: a malformed body and a bad Basic header.
    let resp = app
        .client
        .post("/t/acme/oauth/token")
        .body(format!("{{\"client_secret\": \"{}\", ", seed.client_secret))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::BadRequest);
    let resp = app
        .client
        .post("/t/acme/oauth/introspect")
        .header(Header::new(
            "Authorization",
            format!("Basic {}", seed.client_secret),
        ))
        .body(form(&[("token", &access)]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Unauthorized);
    // Metrics and a janitor pass log too.
    let db = app
        .client
        .rocket()
        .state::<kitauth::db::Db>()
        .unwrap()
        .clone();
    kitauth::janitor::run_once(
        &db,
        kitauth::janitor::Retention {
            tokens: chrono::Duration::zero(),
            audit: chrono::Duration::days(1),
        },
    )
    .await
    .unwrap();

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.len() > 1000,
        "the logs were captured: {} bytes",
        text.len()
    );
    assert!(
        text.contains("\"target\":\"rocket") || text.contains("\"target\":\"_\""),
        "Rocket's own output was captured too"
    );
    for secret in &secrets {
        let chars: Vec<char> = secret.chars().collect();
        for window in chars.windows(12) {
            let piece: String = window.iter().collect();
            assert!(
                !text.contains(&piece),
                "a 12-character piece {piece:?} of a secret appears in the logs"
            );
        }
    }

    // Structured request logs: one per request, with id, method, route,
    // status and duration.
    let requests: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "request")
        .collect();
    assert!(requests.len() >= 20, "{} request lines", requests.len());
    let mut ids = std::collections::HashSet::new();
    for r in &requests {
        let f = &r["fields"];
        assert!(
            f["request_id"].as_str().is_some_and(|s| s.len() >= 8),
            "{r}"
        );
        assert!(
            ids.insert(f["request_id"].as_str().unwrap().to_string()),
            "unique ids"
        );
        assert!(f["method"].as_str().is_some(), "{r}");
        assert!(f["route"].as_str().is_some_and(|s| !s.contains('?')), "{r}");
        assert!(f["status"].as_u64().is_some(), "{r}");
        assert!(f["duration_ms"].as_f64().is_some(), "{r}");
    }
    assert!(requests
        .iter()
        .any(|r| r["fields"]["route"] == "/t/<_>/oauth/token"
            && r["fields"]["method"] == "POST"
            && r["fields"]["status"] == 200));
    assert!(requests.iter().any(|r| r["fields"]["status"] == 401));
}
