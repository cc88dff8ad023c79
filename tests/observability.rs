//! `/metrics`: Prometheus text with requests by route and status, token
//! outcomes by error kind, a latency histogram and the pool gauges;
//! protected by a bearer token, or loopback-only without one.

mod common;

use std::net::SocketAddr;

use common::*;
use rocket::http::{ContentType, Header, Status};

fn at(ip: &str) -> SocketAddr {
    format!("{ip}:50000").parse().unwrap()
}

#[rocket::async_test]
async fn metrics_without_a_token_answer_loopback_callers_only() {
    let app = TestApp::new().await;
    let resp = app
        .client
        .get("/metrics")
        .remote(at("127.0.0.1"))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(
        resp.headers().get_one("Content-Type"),
        Some("text/plain; version=0.0.4")
    );
    let resp = app
        .client
        .get("/metrics")
        .remote(at("[::1]"))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    for ip in ["203.0.113.7", "10.0.0.1"] {
        let resp = app.client.get("/metrics").remote(at(ip)).dispatch().await;
        assert_eq!(resp.status(), Status::Forbidden, "{ip}");
        assert!(!resp.into_string().await.unwrap().contains("kitauth_"));
    }
    // A forged proxy header does not make a remote caller local.
    let resp = app
        .client
        .get("/metrics")
        .remote(at("203.0.113.7"))
        .header(Header::new("X-Real-IP", "127.0.0.1"))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Forbidden);
}

#[rocket::async_test]
async fn metrics_with_a_token_require_it_from_everyone() {
    let token = "metrics-token-for-tests-0123456789";
    let app = TestApp::with(|f| f.merge(("metrics_token", token))).await;
    for (ip, auth) in [
        ("127.0.0.1", None),
        ("127.0.0.1", Some("Bearer wrong".to_string())),
        ("203.0.113.7", Some(format!("Basic {token}"))),
        ("203.0.113.7", Some(format!("Bearer {token}x"))),
    ] {
        let mut req = app.client.get("/metrics").remote(at(ip));
        if let Some(a) = &auth {
            req = req.header(Header::new("Authorization", a.clone()));
        }
        let resp = req.dispatch().await;
        assert_eq!(resp.status(), Status::Unauthorized, "{ip} {auth:?}");
        assert!(!resp.into_string().await.unwrap().contains("kitauth_"));
    }
    let resp = app
        .client
        .get("/metrics")
        .remote(at("203.0.113.7"))
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    assert!(resp
        .into_string()
        .await
        .unwrap()
        .contains("kitauth_db_pool_connections"));
}

fn value_of(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[rocket::async_test]
async fn metrics_count_requests_token_outcomes_latency_and_pool() {
    let app = TestApp::with(|f| f.merge(("client_auth_max_failures", 2))).await;
    let seed = seed_tenant(&app, "acme");
    let code = get_code(&app, &seed).await;
    let resp = kit_exchange(&app, &seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    let access = json_of(resp).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    // Two token lookups (userinfo), for the lookup counters.
    for _ in 0..2 {
        let resp = app
            .client
            .get("/t/acme/oauth/userinfo")
            .header(rocket::http::Header::new(
                "Authorization",
                format!("Bearer {access}"),
            ))
            .dispatch()
            .await;
        assert_eq!(resp.status(), Status::Ok);
    }
    // Failures of three kinds, then a throttled one.
    let post = |body: String| {
        app.client
            .post("/t/acme/oauth/token")
            .remote(at("203.0.113.9"))
            .header(ContentType::Form)
            .body(body)
    };
    assert_eq!(
        post(form(&[("grant_type", "password")]))
            .dispatch()
            .await
            .status(),
        Status::BadRequest
    );
    for _ in 0..2 {
        let resp = post(form(&[
            ("grant_type", "authorization_code"),
            ("client_id", &seed.app.client_id),
            ("client_secret", "kcs_wrong"),
            ("code", &code),
        ]))
        .dispatch()
        .await;
        assert_eq!(resp.status(), Status::Unauthorized);
    }
    let resp = post(form(&[
        ("grant_type", "authorization_code"),
        ("client_id", &seed.app.client_id),
        ("client_secret", "kcs_wrong"),
        ("code", &code),
    ]))
    .dispatch()
    .await;
    assert_eq!(resp.status(), Status::TooManyRequests);
    // A replayed code from Kit.
    assert_eq!(
        kit_exchange(&app, &seed, &code).await.status(),
        Status::BadRequest
    );

    let resp = app
        .client
        .get("/metrics")
        .remote(at("127.0.0.1"))
        .dispatch()
        .await;
    let text = resp.into_string().await.unwrap();
    for (series, want) in [
        (
            r#"kitauth_http_requests_total{method="POST",route="/t/<_>/oauth/token",status="200"}"#,
            1.0,
        ),
        (
            r#"kitauth_http_requests_total{method="POST",route="/t/<_>/oauth/token",status="400"}"#,
            2.0,
        ),
        (
            r#"kitauth_http_requests_total{method="POST",route="/t/<_>/oauth/token",status="401"}"#,
            2.0,
        ),
        (
            r#"kitauth_http_requests_total{method="POST",route="/t/<_>/oauth/token",status="429"}"#,
            1.0,
        ),
        (
            r#"kitauth_http_requests_total{method="POST",route="/t/<_>/oauth/authorize",status="302"}"#,
            1.0,
        ),
        (r#"kitauth_token_requests_total{outcome="issued"}"#, 1.0),
        (
            r#"kitauth_token_requests_total{outcome="invalid_client"}"#,
            2.0,
        ),
        (
            r#"kitauth_token_requests_total{outcome="unsupported_grant_type"}"#,
            1.0,
        ),
        (
            r#"kitauth_token_requests_total{outcome="invalid_grant"}"#,
            1.0,
        ),
        (
            r#"kitauth_token_requests_total{outcome="rate_limited"}"#,
            1.0,
        ),
        (
            r#"kitauth_http_request_duration_seconds_bucket{route="/t/<_>/oauth/token",le="+Inf"}"#,
            6.0,
        ),
        (
            r#"kitauth_http_request_duration_seconds_count{route="/t/<_>/oauth/token"}"#,
            6.0,
        ),
    ] {
        assert_eq!(value_of(&text, series), Some(want), "{series}\n{text}");
    }
    // Buckets are cumulative and end at the count.
    let buckets: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.starts_with(
                r#"kitauth_http_request_duration_seconds_bucket{route="/t/<_>/oauth/token""#,
            )
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    assert_eq!(buckets.len(), 13);
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{buckets:?}");
    assert!(
        value_of(
            &text,
            r#"kitauth_http_request_duration_seconds_sum{route="/t/<_>/oauth/token"}"#
        )
        .unwrap()
            > 0.0
    );
    let idle = value_of(&text, r#"kitauth_db_pool_connections{state="idle"}"#).unwrap();
    let in_use = value_of(&text, r#"kitauth_db_pool_connections{state="in_use"}"#).unwrap();
    assert!(idle >= 1.0 && in_use >= 0.0, "idle {idle}, in use {in_use}");
    // Rocket's test runtime has one worker, which `Db::read` never blocks:
    // every call above went to a blocking thread.
    let blocking = value_of(&text, r#"kitauth_db_calls_total{thread="blocking"}"#).unwrap();
    let inline = value_of(&text, r#"kitauth_db_calls_total{thread="inline"}"#).unwrap();
    assert!(
        blocking >= 6.0 && inline == 0.0,
        "blocking {blocking}, inline {inline}"
    );
    for path in ["introspect", "token"] {
        for result in ["hit", "miss", "stale"] {
            let series =
                format!("kitauth_client_cache_total{{path=\"{path}\",result=\"{result}\"}}");
            assert!(value_of(&text, &series).is_some(), "{series}");
        }
        let series = format!("kitauth_client_cache_entries{{path=\"{path}\"}}");
        assert!(value_of(&text, &series).is_some(), "{series}");
    }
    // The token endpoint above read its client once, then kept a copy.
    assert!(
        value_of(
            &text,
            r#"kitauth_client_cache_total{path="token",result="miss"}"#
        )
        .unwrap()
            >= 1.0
    );
    assert_eq!(
        value_of(&text, r#"kitauth_client_cache_entries{path="token"}"#),
        Some(1.0)
    );
    let statements = value_of(&text, "kitauth_token_lookup_statements_total").unwrap();
    let lookups = value_of(&text, "kitauth_token_lookups_total").unwrap();
    assert_eq!(lookups, 2.0);
    assert!(
        (1.0..=2.0).contains(&statements),
        "{statements} statements for 2 lookups"
    );
    for family in [
        "kitauth_http_requests_total counter",
        "kitauth_http_request_duration_seconds histogram",
        "kitauth_token_requests_total counter",
        "kitauth_db_pool_connections gauge",
        "kitauth_db_calls_total counter",
        "kitauth_client_cache_total counter",
        "kitauth_client_cache_entries gauge",
        "kitauth_token_lookup_statements_total counter",
        "kitauth_token_lookups_total counter",
    ] {
        assert!(text.contains(&format!("# TYPE {family}")), "{family}");
    }
    // No secret in the exposition.
    assert!(!text.contains(&seed.client_secret) && !text.contains(&code));
}
