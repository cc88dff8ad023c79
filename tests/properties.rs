//! Property tests through Rocket's local client: arbitrary bytes, content
//! types, field types, lengths and headers on every OAuth endpoint always
//! get a 4xx with an RFC 6749 error body (or, with valid client
//! credentials, the endpoint's normal 200), never a 5xx or a panic.

mod common;

use common::{test_figment, TestDb};
use kitauth::db::models::{NewTenant, Tenant};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use rocket::http::{ContentType, Header, Status};
use rocket::local::blocking::Client;

const RFC6749_ERRORS: &[&str] = &[
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
    "invalid_token",
];

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

struct BlockingSeed {
    client_id: String,
    client_secret: String,
}

fn seed_tenant_blocking(db: &TestDb, slug: &str) -> BlockingSeed {
    let mut conn = db.conn();
    let tenant = Tenant::create(&mut conn, &NewTenant { slug, name: "Acme" }).unwrap();
    let (app, client_secret) = kitauth::cli::create_app(
        &mut conn,
        tenant.id,
        "Acme for Kit",
        vec![],
        vec!["public".into(), "write".into()],
    )
    .unwrap();
    BlockingSeed {
        client_id: app.client_id,
        client_secret,
    }
}

struct Fixture {
    client: Client,
    seed: BlockingSeed,
    _db: TestDb,
}

fn fixture() -> Fixture {
    let db = TestDb::new();
    let figment = test_figment(&db)
        .merge(("client_auth_max_failures", 1_000_000))
        .merge(("client_auth_ip_max_failures", 1_000_000));
    let seed = seed_tenant_blocking(&db, "acme");
    let client = Client::untracked(kitauth::build(figment).unwrap()).unwrap();
    Fixture {
        client,
        seed,
        _db: db,
    }
}

/// A string that is sometimes meaningful to the server and sometimes not.
fn value(seed: &BlockingSeed) -> BoxedStrategy<String> {
    let known = vec![
        seed.client_id.clone(),
        seed.client_secret.clone(),
        "authorization_code".to_string(),
        "refresh_token".to_string(),
        "https://app.kit.com/apps".to_string(),
        "public write".to_string(),
        String::new(),
    ];
    prop_oneof![
        3 => proptest::sample::select(known),
        2 => "(kat_|krt_|kac_|kcs_)[A-Za-z0-9_-]{43}",
        2 => any::<String>(),
        1 => "[a-z]{0,3000}",
        1 => ".{2040,2060}",
    ]
    .boxed()
}

fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => proptest::sample::select(vec![
            "client_id", "client_secret", "grant_type", "code", "redirect_uri",
            "refresh_token", "token", "token_type_hint", "scope", "code_verifier",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

fn json_value(seed: &BlockingSeed) -> BoxedStrategy<serde_json::Value> {
    let leaf = prop_oneof![
        4 => value(seed).prop_map(serde_json::Value::String),
        1 => any::<i64>().prop_map(|n| serde_json::json!(n)),
        1 => any::<f64>().prop_map(|n| serde_json::json!(n)),
        1 => any::<bool>().prop_map(serde_json::Value::Bool),
        1 => Just(serde_json::Value::Null),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(any::<String>(), inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn body(seed: &BlockingSeed) -> BoxedStrategy<Vec<u8>> {
    let json_object =
        proptest::collection::vec((field_name(), json_value(seed)), 0..8).prop_map(|pairs| {
            let mut s = String::from("{");
            for (i, (k, v)) in pairs.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&serde_json::to_string(k).unwrap());
                s.push(':');
                s.push_str(&v.to_string());
            }
            s.push('}');
            s.into_bytes()
        });
    let form = proptest::collection::vec((field_name(), value(seed)), 0..8).prop_map(|pairs| {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            s.append_pair(k, v);
        }
        s.finish().into_bytes()
    });
    prop_oneof![
        3 => json_object,
        3 => form,
        2 => proptest::collection::vec(any::<u8>(), 0..600),
        1 => "[ -~]{0,300}".prop_map(String::into_bytes),
        1 => (16_000usize..17_000).prop_map(|n| vec![b'a'; n]),
    ]
    .boxed()
}

fn content_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(
        proptest::sample::select(vec![
            "application/x-www-form-urlencoded",
            "application/json",
            "application/json; charset=utf-16",
            "text/plain",
            "multipart/form-data; boundary=xyz",
            "application/octet-stream",
            "garbage",
        ])
        .prop_map(str::to_string),
    )
}

fn authorization(seed: &BlockingSeed) -> BoxedStrategy<Option<String>> {
    use base64::Engine;
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    let good = format!(
        "Basic {}",
        b64(format!("{}:{}", seed.client_id, seed.client_secret))
    );
    let id = seed.client_id.clone();
    proptest::option::of(prop_oneof![
        Just(good),
        any::<String>().prop_map(move |s| format!("Basic {}", b64(format!("{id}:{s}")))),
        any::<String>().prop_map(|s| format!("Basic {s}")),
        "Bearer [ -~]{0,80}",
        "[ -~]{0,80}",
    ])
    .boxed()
}

/// The property: no 5xx; a 4xx is RFC 6749 JSON; a 2xx is JSON.
fn check(
    status: Status,
    content_type: Option<ContentType>,
    text: &str,
) -> Result<(), TestCaseError> {
    prop_assert!(status.code < 500, "status {status}: {text}");
    prop_assert!(
        status.code >= 400 || status == Status::Ok,
        "unexpected status {status}: {text}"
    );
    prop_assert_eq!(content_type, Some(ContentType::JSON), "{}", text);
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
    if status.code >= 400 {
        let error = v["error"].as_str().unwrap_or_default();
        prop_assert!(RFC6749_ERRORS.contains(&error), "error {error:?}: {text}");
        prop_assert!(v["error_description"].is_string(), "{}", text);
    }
    Ok(())
}

#[test]
fn post_endpoints_answer_garbage_with_rfc6749_errors() {
    let f = fixture();
    let strategy = (
        proptest::sample::select(vec!["token", "refresh", "revoke", "introspect"]),
        body(&f.seed),
        content_type(),
        authorization(&f.seed),
    );
    TestRunner::new(config(192))
        .run(&strategy, |(endpoint, body, ct, auth)| {
            let mut req = f
                .client
                .post(format!("/t/acme/oauth/{endpoint}"))
                .body(body);
            if let Some(ct) = ct {
                req = req.header(Header::new("Content-Type", ct));
            }
            if let Some(a) = auth {
                req = req.header(Header::new("Authorization", a));
            }
            let resp = req.dispatch();
            let (status, ct) = (resp.status(), resp.content_type());
            let text = resp.into_string().unwrap_or_default();
            check(status, ct, &text)?;
            if status == Status::Ok {
                // Only valid credentials reach a 200, and only where garbage
                // tokens are a silent success (RFC 7009, RFC 7662).
                prop_assert!(endpoint == "revoke" || endpoint == "introspect", "{}", text);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn userinfo_and_metadata_answer_any_header_and_query_without_5xx() {
    let f = fixture();
    let strategy = (authorization(&f.seed), "[ -~]{0,200}");
    TestRunner::new(config(96))
        .run(&strategy, |(auth, query)| {
            let mut req = f.client.get("/t/acme/oauth/userinfo");
            if let Some(a) = auth {
                req = req.header(Header::new("Authorization", a));
            }
            let resp = req.dispatch();
            let (status, ct) = (resp.status(), resp.content_type());
            prop_assert_eq!(status, Status::Unauthorized);
            check(status, ct, &resp.into_string().unwrap_or_default())?;
            let q: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
            let resp = f
                .client
                .get(format!(
                    "/t/acme/.well-known/oauth-authorization-server?x={q}"
                ))
                .dispatch();
            prop_assert_eq!(resp.status(), Status::Ok);
            Ok(())
        })
        .unwrap();
}

#[test]
fn authorize_answers_any_query_without_5xx_or_a_foreign_redirect() {
    let f = fixture();
    let pair = (field_name(), value(&f.seed));
    let strategy = prop_oneof![
        proptest::collection::vec(pair, 0..8).prop_map(|pairs| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                s.append_pair(k, v);
            }
            s.finish()
        }),
        "[!-~]{0,300}",
    ];
    TestRunner::new(config(128))
        .run(&strategy, |query| {
            let with_client = format!("client_id={}&response_type=code&{query}", f.seed.client_id);
            for q in [query.clone(), with_client] {
                let Ok(uri) =
                    rocket::http::uri::Origin::parse_owned(format!("/t/acme/oauth/authorize?{q}"))
                else {
                    continue;
                };
                let resp = f.client.get(uri).dispatch();
                let status = resp.status();
                prop_assert!(status.code < 500, "{status} for {q}");
                if let Some(location) = resp.headers().get_one("Location") {
                    prop_assert!(
                        location.starts_with("https://app.kit.com/apps/install?")
                            || location.starts_with("https://app.kit.com/apps?"),
                        "redirect to {location}"
                    );
                    // An error sent back to a registered redirect_uri: a
                    // redirect without a body, hence without a content type.
                    prop_assert_eq!(status.class(), rocket::http::StatusClass::Redirection);
                } else {
                    prop_assert_eq!(resp.content_type().is_some(), true, "{} for {}", status, q);
                }
            }
            Ok(())
        })
        .unwrap();
}
