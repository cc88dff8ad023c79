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
use std::time::{Duration, Instant};

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
    // Sign-up does not sign in (issue 13): the creator signs in next.
    let resp = app
        .client
        .post("/t/acme/login")
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
            ("email", seed.email()),
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

/// The real binary, at every log filter an operator may set: invite links,
/// Bearer and Basic headers, session and CSRF cookies, codes in query
/// strings never reach stderr, while the lines that carried them do.
#[test]
fn the_binary_redacts_credentials_at_every_log_setting() {
    use std::io::Read;
    use std::net::TcpStream;
    use std::process::Command;

    let piece = |p: &str| {
        format!(
            "{p}{}",
            "Qx7v".repeat(11).chars().take(43).collect::<String>()
        )
    };
    let invite = piece("kin_");
    let bearer = piece("kat_");
    let session = piece("kas_");
    let code = piece("kac_");
    let csrf_cookie = "csrfCookieValue9Zk2mQ";
    let basic = "YmFzaWN1c2VyOmJhc2ljc2VjcmV0dmFsdWU=";
    let secrets = [
        invite.as_str(),
        bearer.as_str(),
        session.as_str(),
        code.as_str(),
        csrf_cookie,
        basic,
    ];
    let settings: Vec<Vec<(&str, &str)>> = vec![
        vec![("KITAUTH_LOG", "error")],
        vec![("KITAUTH_LOG", "warn")],
        vec![("KITAUTH_LOG", "info")],
        vec![("KITAUTH_LOG", "debug")],
        vec![("KITAUTH_LOG", "trace")],
        vec![("KITAUTH_LOG", "trace"), ("KITAUTH_LOG_FORMAT", "json")],
        vec![("RUST_LOG", "trace")],
        vec![
            ("RUST_LOG", "trace"),
            ("KITAUTH_LOG", "trace"),
            ("ROCKET_LOG_LEVEL", "debug"),
        ],
        vec![("ROCKET_LOG_LEVEL", "debug")],
        vec![("ROCKET_LOG_LEVEL", "normal"), ("KITAUTH_LOG", "debug")],
    ];
    let db = TestDb::new();
    for env in settings {
        let (mut child, addr) = spawn_server(&db, &env);
        let send = |raw: String| -> Option<String> {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
            s.write_all(raw.as_bytes()).ok()?;
            let mut out = String::new();
            s.read_to_string(&mut out).ok()?;
            Some(out)
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !send("GET /healthz HTTP/1.1\r\nHost: l\r\nConnection: close\r\n\r\n".into())
            .is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        {
            assert!(Instant::now() < deadline, "the server came up ({env:?})");
            std::thread::sleep(Duration::from_millis(100));
        }
        let cookies = format!("Cookie: kitauth_admin={session}; kitauth_csrf={csrf_cookie}\r\n");
        for raw in [
            format!("GET /admin/invite/{invite} HTTP/1.1\r\nHost: l\r\n{cookies}Connection: close\r\n\r\n"),
            format!("GET /t/acme/oauth/userinfo HTTP/1.1\r\nHost: l\r\nAuthorization: Bearer {bearer}\r\nConnection: close\r\n\r\n"),
            format!("POST /t/acme/oauth/introspect HTTP/1.1\r\nHost: l\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 7\r\nConnection: close\r\n\r\ntoken=x"),
            format!("GET /t/acme/oauth/authorize?client_id=kit_x&code={code} HTTP/1.1\r\nHost: l\r\n{cookies}Connection: close\r\n\r\n"),
        ] {
            assert!(send(raw).is_some(), "answered ({env:?})");
        }
        // SIGTERM: a graceful exit flushes the log writer.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        let _ = child.wait();
        assert_no_piece_of(&err, secrets.iter().copied(), &env);
        // Where Rocket logs request lines, they are there, redacted.
        if env.contains(&("KITAUTH_LOG", "trace")) {
            assert!(
                err.contains("/admin/invite/kin_[redacted]"),
                "{env:?}:\n{err}"
            );
        }
    }
}

/// A raw HTTP/1.1 client for the binary: one request per connection, and
/// the cookies that the server sets are kept and sent back.
struct RawClient {
    addr: std::net::SocketAddr,
    cookies: std::collections::BTreeMap<String, String>,
}

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl RawClient {
    /// A client of the server at `addr`, once it accepts connections.
    fn once_up(addr: std::net::SocketAddr) -> RawClient {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the server came up at {addr}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        RawClient {
            addr,
            cookies: Default::default(),
        }
    }
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl RawClient {
    fn send(&mut self, method: &str, path: &str, extra: &str, body: &str) -> RawResponse {
        use std::io::Read;
        let cookie = if self.cookies.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            format!("Cookie: {}\r\n", pairs.join("; "))
        };
        let raw = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{cookie}{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let mut s = std::net::TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(raw.as_bytes()).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        for (k, v) in &headers {
            if k.eq_ignore_ascii_case("set-cookie") {
                let pair = v.split(';').next().unwrap_or("");
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        RawResponse {
            status,
            headers,
            body: body.to_string(),
        }
    }
}

fn cli(db: &TestDb, args: &[&str], stdin: &str) -> String {
    let out = kitauth(Some(db), args, stdin, &[]);
    assert!(out.status.success(), "kitauth {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A whole Kit install against the real binary, with hyper and Rocket at
/// their most verbose: the session cookie the sign-in sets, the code in
/// the consent's `Location` header, the access and refresh tokens in the
/// token answer and the client secret Kit sends never reach stderr.
#[test]
fn a_real_kit_install_at_trace_leaves_no_cookie_code_or_token_in_the_log() {
    use std::process::Command;
    let db = TestDb::new();
    let (client_id, client_secret) = tenant_and_app(&db);
    let password = "a-long-creator-password";
    cli(
        &db,
        &[
            "user",
            "create",
            "--tenant",
            "acme",
            "--email",
            "c@example.com",
            "--password-stdin",
        ],
        password,
    );
    let settings: [&[(&str, &str)]; 2] = [
        &[("KITAUTH_LOG", "trace")],
        &[("RUST_LOG", "trace"), ("ROCKET_LOG_LEVEL", "debug")],
    ];
    for env in settings {
        let (mut child, addr) = spawn_server(&db, env);
        let mut c = RawClient::once_up(addr);
        let form_ct = "Content-Type: application/x-www-form-urlencoded\r\n";
        let authorize = format!(
            "/t/acme/oauth/authorize?{}",
            form(&[
                ("client_id", &client_id),
                ("response_type", "code"),
                ("redirect_uri", KIT_INSTALL),
                ("state", "s1"),
            ])
        );
        // Sign in: the creator session arrives in a Set-Cookie header.
        let login = c.send("GET", "/t/acme/login", "", "");
        assert_eq!(login.status, 200, "{env:?}");
        let signed_in = c.send(
            "POST",
            "/t/acme/login",
            form_ct,
            &form(&[
                ("csrf_token", &csrf_from(&login.body)),
                ("email", "c@example.com"),
                ("password", password),
                ("next", &authorize),
            ]),
        );
        assert_eq!(signed_in.status, 303, "{env:?}: {}", signed_in.body);
        // Consent: the code arrives in the Location header.
        let consent = c.send("GET", &authorize, "", "");
        assert!(consent.body.contains("value=\"allow\""), "{env:?}");
        let allowed = c.send(
            "POST",
            "/t/acme/oauth/authorize",
            form_ct,
            &form(&[
                ("csrf_token", &csrf_from(&consent.body)),
                ("decision", "allow"),
                ("client_id", &client_id),
                ("response_type", "code"),
                ("redirect_uri", KIT_INSTALL),
                ("state", "s1"),
            ]),
        );
        assert_eq!(allowed.status, 302, "{env:?}");
        let location = allowed.header("Location").unwrap().to_string();
        let code = query_param(&location, "code").unwrap();
        // Kit's exchange: JSON under a form content type; the tokens come
        // back in the body.
        let token = c.send(
            "POST",
            "/t/acme/oauth/token",
            form_ct,
            &json!({
                "client_id": client_id, "client_secret": client_secret,
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": KIT_APPS,
            })
            .to_string(),
        );
        assert_eq!(token.status, 200, "{env:?}: {}", token.body);
        let tokens: serde_json::Value = serde_json::from_str(&token.body).unwrap();
        let access = tokens["access_token"].as_str().unwrap().to_string();
        let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
        let me = c.send(
            "GET",
            "/t/acme/oauth/userinfo",
            &format!("Authorization: Bearer {access}\r\n"),
            "",
        );
        assert_eq!(me.status, 200, "{env:?}");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let mut err = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
        let _ = child.wait();
        let mut secrets = vec![code, access, refresh, client_secret.clone()];
        secrets.extend(c.cookies.values().filter(|v| v.len() >= 16).cloned());
        assert_no_piece_of(&err, secrets.iter().map(|s| s.as_str()), &env);
        // At kitauth's trace filter, the lines that carried them are there,
        // redacted (`RUST_LOG` is not kitauth's filter; it lets nothing out).
        if env.contains(&("KITAUTH_LOG", "trace")) {
            assert!(err.contains("[redacted]"), "{env:?}:\n{err}");
            assert!(
                err.to_ascii_lowercase().contains("location"),
                "the Location header was logged, redacted ({env:?}):\n{err}"
            );
        }
    }
}

/// Delegated sign-in through the real binary at trace: the login
/// challenge (in the API's path and the Location to the login page), the
/// verifier (in `redirect_to` and the consent form), the browser-binding
/// cookie and the login key never reach stderr.
#[test]
fn a_delegated_sign_in_at_trace_leaves_no_challenge_verifier_or_binding_in_the_log() {
    let db = TestDb::new();
    let (client_id, _) = tenant_and_app(&db);
    let out = cli(
        &db,
        &[
            "tenant",
            "sign-in",
            "--tenant",
            "acme",
            "--mode",
            "delegated",
            "--login-url",
            "https://login.acme.example/kit",
        ],
        "",
    );
    assert!(out.contains("https://login.acme.example/kit"), "{out}");
    let key: serde_json::Value = serde_json::from_str(&cli(
        &db,
        &[
            "api-key", "create", "--tenant", "acme", "--name", "login", "--scope", "login",
            "--json",
        ],
        "",
    ))
    .unwrap();
    let key = key["key"].as_str().unwrap().to_string();
    let env = [("KITAUTH_LOG", "trace"), ("ROCKET_LOG_LEVEL", "debug")];
    let (mut child, addr) = spawn_server(&db, &env);
    let mut c = RawClient::once_up(addr);
    let authorize = format!(
        "/t/acme/oauth/authorize?{}",
        form(&[
            ("client_id", &client_id),
            ("response_type", "code"),
            ("redirect_uri", KIT_INSTALL),
            ("state", "s1"),
        ])
    );
    let start = c.send("GET", &authorize, "", "");
    assert_eq!(start.status, 302);
    let challenge = query_param(start.header("Location").unwrap(), "login_challenge").unwrap();
    let accepted = c.send(
        "POST",
        &format!("/t/acme/api/v1/login-requests/{challenge}/accept"),
        &format!("Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"),
        &json!({"subject": "user-1", "remember_for": 600}).to_string(),
    );
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let to: serde_json::Value = serde_json::from_str(&accepted.body).unwrap();
    let to = to["redirect_to"].as_str().unwrap().to_string();
    let verifier = query_param(&to, "login_verifier").unwrap();
    let path = &to[to.find("/t/acme/").unwrap()..];
    let consent = c.send("GET", path, "", "");
    assert_eq!(consent.status, 200, "{}", consent.body);
    let allowed = c.send(
        "POST",
        "/t/acme/oauth/authorize/continue",
        "Content-Type: application/x-www-form-urlencoded\r\n",
        &form(&[
            ("csrf_token", &csrf_from(&consent.body)),
            ("login_verifier", &verifier),
            ("decision", "allow"),
        ]),
    );
    assert_eq!(allowed.status, 302, "{}", allowed.body);
    let code = query_param(allowed.header("Location").unwrap(), "code").unwrap();
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    assert!(
        c.cookies.contains_key("kitauth_browser"),
        "the binding cookie was set"
    );
    let mut secrets = vec![challenge, verifier, key, code];
    secrets.extend(c.cookies.values().filter(|v| v.len() >= 16).cloned());
    assert_no_piece_of(&err, secrets.iter().map(|s| s.as_str()), &env);
    assert!(
        err.contains("login-requests/klc_[redacted]"),
        "the path was logged, redacted:\n{err}"
    );
}

/// Tenant `acme` and its app, made with the command line: the app's
/// client id and secret.
fn tenant_and_app(db: &TestDb) -> (String, String) {
    cli(
        db,
        &["tenant", "create", "--slug", "acme", "--name", "Acme"],
        "",
    );
    let app: serde_json::Value = serde_json::from_str(&cli(
        db,
        &[
            "app",
            "create",
            "--tenant",
            "acme",
            "--name",
            "Acme for Kit",
            "--json",
        ],
        "",
    ))
    .unwrap();
    let field = |k: &str| app[k].as_str().unwrap().to_string();
    (field("client_id"), field("client_secret"))
}

/// No 12-character piece of any secret appears in the captured log.
fn assert_no_piece_of<'a>(
    err: &str,
    secrets: impl Iterator<Item = &'a str>,
    env: &dyn std::fmt::Debug,
) {
    for secret in secrets {
        let chars: Vec<char> = secret.chars().collect();
        for w in chars.windows(12) {
            let p: String = w.iter().collect();
            assert!(
                !err.contains(&p),
                "{p:?} of a credential in the log at {env:?}:\n{err}"
            );
        }
    }
}

/// The real binary on a free loopback port, with only `env`'s log settings
/// (the caller's own are removed) and stderr captured.
fn spawn_server(db: &TestDb, env: &[(&str, &str)]) -> (std::process::Child, std::net::SocketAddr) {
    use std::process::{Command, Stdio};
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kitauth"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("KITAUTH_LOG")
        .env_remove("RUST_LOG")
        .env_remove("ROCKET_LOG_LEVEL")
        .env_remove("ROCKET_PROFILE")
        .env("DATABASE_URL", &db.url)
        .env("ROCKET_PORT", port.to_string())
        .env("ROCKET_ADDRESS", "127.0.0.1")
        .env("ROCKET_BCRYPT_COST", "4")
        .env("ROCKET_JANITOR_INTERVAL_SECS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    (cmd.spawn().unwrap(), addr)
}
