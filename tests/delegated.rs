//! Delegated sign-in (issue 16): the tenant's own login service says who
//! the creator is, through login requests and the tenant API; kitauth keeps
//! consent, codes, tokens and every rule.
//!
//! The first test runs everything for real: kitauth on a loopback port, the
//! tenant's login service (tests/login_service) with its own user table and
//! session cookie calling kitauth's API with a `login` key, and Kit's calls
//! over HTTP. The others drive kitauth in-process, one rule each.

mod common;
mod login_service;

use std::time::Duration;

use common::*;
use kitauth::db::models::{ApiKey, ApiScope, NewApiKey};
use login_service::{Account, LoginService};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::{Client, LocalResponse};
use serde_json::{json, Value};

const LOGIN_URL: &str = "https://login.acme.example/kit/login";
const PUBLIC: &str = "http://kitauth.test";

/// A key as the command line makes it (an operator's: it may do what
/// owners do).
fn make_key(app: &TestApp, tenant_id: i64, scopes: &[ApiScope]) -> String {
    make_key_by(app, tenant_id, scopes, "cli")
}

fn make_key_by(app: &TestApp, tenant_id: i64, scopes: &[ApiScope], by: &str) -> String {
    let new = NewApiKey {
        name: format!("{scopes:?}"),
        scopes: scopes.to_vec(),
        expires_in_days: None,
        created_by: by.into(),
    };
    ApiKey::create(&mut app.conn(), tenant_id, &new).unwrap().1
}

async fn api<'c>(
    client: &'c Client,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> LocalResponse<'c> {
    let mut req = match method {
        "GET" => client.get(path.to_string()),
        "POST" => client.post(path.to_string()),
        "PUT" => client.put(path.to_string()),
        "PATCH" => client.patch(path.to_string()),
        "DELETE" => client.delete(path.to_string()),
        _ => unreachable!(),
    }
    .remote("203.0.113.9:4000".parse().unwrap())
    .header(Header::new("Authorization", format!("Bearer {key}")));
    if let Some(b) = body {
        req = req.header(ContentType::JSON).body(b.to_string());
    }
    req.dispatch().await
}

/// A tenant in delegated sign-in, switched by its own code through the API.
struct Delegated {
    app: TestApp,
    seed: Seed,
    /// Keys of scope `login` and of `read`+`write`.
    login: String,
    admin: String,
}

async fn delegated() -> Delegated {
    delegated_with(|f| f).await
}

async fn delegated_with(
    adjust: impl FnOnce(rocket::figment::Figment) -> rocket::figment::Figment,
) -> Delegated {
    let app = TestApp::with(adjust).await;
    let seed = seed_tenant(&app, "acme");
    let login = make_key(&app, seed.tenant.id, &[ApiScope::Login]);
    let admin = make_key(&app, seed.tenant.id, &[ApiScope::Read, ApiScope::Write]);
    let body = json!({"creator_signin": "delegated", "login_url": LOGIN_URL});
    let status = api(
        &app.client,
        "PUT",
        "/t/acme/api/v1/sign-in",
        &admin,
        Some(body),
    )
    .await
    .status();
    assert_eq!(status, Status::Ok);
    Delegated {
        app,
        seed,
        login,
        admin,
    }
}

impl Delegated {
    /// Another browser: a second client on the same database, with its
    /// own cookies.
    async fn other_browser(&self) -> Client {
        let rocket = kitauth::build(test_figment(&self.app.db)).unwrap();
        Client::tracked(rocket).await.unwrap()
    }

    /// Kit opens authorize in `browser`: the redirect to the login page,
    /// and the challenge on it.
    async fn start(&self, browser: &Client) -> String {
        let path = authorize_path(&self.seed, &[("state", "xyz"), ("scope", "public")]);
        let resp = browser.get(path).dispatch().await;
        assert_eq!(resp.status(), Status::Found);
        let location = resp.headers().get_one("Location").unwrap().to_string();
        assert!(
            location.starts_with(&format!("{LOGIN_URL}?login_challenge=klc_")),
            "{location}"
        );
        query_param(&location, "login_challenge").unwrap()
    }

    async fn accept(&self, challenge: &str, body: Value) -> LocalResponse<'_> {
        let path = format!("/t/acme/api/v1/login-requests/{challenge}/accept");
        api(&self.app.client, "POST", &path, &self.login, Some(body)).await
    }

    async fn accepted(&self, challenge: &str, body: Value) -> String {
        let resp = self.accept(challenge, body).await;
        assert_eq!(resp.status(), Status::Ok);
        let to = json_of(resp).await["redirect_to"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            to.starts_with(&format!(
                "{PUBLIC}/t/acme/oauth/authorize/continue?login_verifier=klv_"
            )),
            "{to}"
        );
        to
    }

    /// How many delegated creators the tenant has.
    fn subjects(&self) -> i64 {
        self.app
            .count("SELECT count(*) FROM end_users WHERE subject IS NOT NULL")
    }

    async fn login_request(&self, challenge: &str) -> Value {
        let path = format!("/t/acme/api/v1/login-requests/{challenge}");
        let resp = api(&self.app.client, "GET", &path, &self.login, None).await;
        assert_eq!(resp.status(), Status::Ok);
        json_of(resp).await
    }

    /// The browser's return to `redirect_to`, through the consent page
    /// (Allow) when there is one: the redirect to Kit.
    async fn back_in(&self, browser: &Client, redirect_to: &str) -> String {
        let resp = follow(browser, redirect_to).await;
        match resp.status() {
            Status::Found => resp.headers().get_one("Location").unwrap().to_string(),
            Status::Ok => allow(browser, resp).await,
            other => panic!("continuation answered {other}"),
        }
    }

    /// One whole install in `browser` for `subject`: the code Kit gets.
    async fn install(&self, browser: &Client, body: Value) -> String {
        let challenge = self.start(browser).await;
        let to = self.accepted(&challenge, body).await;
        let location = self.back_in(browser, &to).await;
        assert!(location.starts_with(KIT_INSTALL), "{location}");
        assert_eq!(query_param(&location, "state").as_deref(), Some("xyz"));
        query_param(&location, "code").expect("a code for Kit")
    }
}

/// The browser follows kitauth's `redirect_to`.
async fn follow<'c>(browser: &'c Client, redirect_to: &str) -> LocalResponse<'c> {
    let path = redirect_to.strip_prefix(PUBLIC).unwrap_or(redirect_to);
    browser.get(path.to_string()).dispatch().await
}

/// The value of `name="login_verifier"` on a consent page.
fn verifier_of(html: &str) -> String {
    let marker = "name=\"login_verifier\" value=\"";
    let start = html.find(marker).expect("a delegated consent page") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// Allows on the consent page in `resp`; the redirect Location.
async fn allow(browser: &Client, resp: LocalResponse<'_>) -> String {
    decide(browser, resp, "allow").await
}

async fn decide(browser: &Client, resp: LocalResponse<'_>, decision: &str) -> String {
    let html = resp.into_string().await.unwrap();
    assert!(html.contains("value=\"allow\""), "a consent page: {html}");
    let resp = post_consent(browser, &html, decision).await;
    assert_eq!(resp.status(), Status::Found);
    resp.headers().get_one("Location").unwrap().to_string()
}

/// Sends the decision of the consent page `html`.
async fn post_consent<'c>(browser: &'c Client, html: &str, decision: &str) -> LocalResponse<'c> {
    browser
        .post("/t/acme/oauth/authorize/continue")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf_from(html)),
            ("login_verifier", &verifier_of(html)),
            ("decision", decision),
        ]))
        .dispatch()
        .await
}

/// An HTML error page, never a redirect; its text.
async fn error_page(resp: LocalResponse<'_>, status: Status) -> String {
    assert_eq!(resp.status(), status);
    assert!(resp.headers().get_one("Location").is_none());
    assert_eq!(resp.content_type(), Some(ContentType::HTML));
    let html = resp.into_string().await.unwrap();
    assert!(html.contains("Back to Kit"), "a link back: {html}");
    html
}

async fn problem(resp: LocalResponse<'_>, status: Status) -> Value {
    assert_eq!(resp.status(), status);
    assert_eq!(
        resp.content_type().map(|c| c.to_string()).as_deref(),
        Some("application/problem+json")
    );
    json_of(resp).await
}

fn ada() -> Value {
    json!({"subject": "user-8841", "email": "Ada@Example.com", "name": "Ada Creator"})
}

// ---------------------------------------------------------------------------
// End to end, with a real login service.

async fn kit_post(http: &reqwest::Client, url: String, body: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The browser's hops: GET `url` and follow redirects by hand (keeping
/// cookies), until a page or a redirect to Kit. Answers (final URL, status, body).
async fn browse(browser: &reqwest::Client, mut url: String) -> (String, u16, String) {
    for _ in 0..10 {
        let resp = browser.get(&url).send().await.unwrap();
        if resp.status().is_redirection() {
            let next = resp.headers()["location"].to_str().unwrap().to_string();
            let next = reqwest::Url::parse(&url)
                .unwrap()
                .join(&next)
                .unwrap()
                .to_string();
            if next.starts_with("https://app.kit.com/") {
                return (next, resp.status().as_u16(), String::new());
            }
            url = next;
            continue;
        }
        let status = resp.status().as_u16();
        return (url, status, resp.text().await.unwrap());
    }
    panic!("too many redirects");
}

fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("{name} in {html}"))
        + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// POSTs a form as the browser, following redirects by hand.
async fn submit(
    browser: &reqwest::Client,
    url: &str,
    pairs: &[(&str, &str)],
) -> (String, u16, String) {
    let resp = browser
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(form(pairs))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_redirection(),
        "{url} answered {}",
        resp.status()
    );
    let next = resp.headers()["location"].to_str().unwrap().to_string();
    let next = reqwest::Url::parse(url)
        .unwrap()
        .join(&next)
        .unwrap()
        .to_string();
    if next.starts_with("https://app.kit.com/") {
        return (next, 302, String::new());
    }
    browse(browser, next).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kit_installs_refreshes_and_uninstalls_through_a_real_login_service() {
    let db = TestDb::new();
    let base = serve(&db, |f| f).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut conn = db.conn();
    let seed = seed_in(&mut conn, "acme");
    let (tenant, kit_app, secret) = (seed.tenant, seed.app, seed.client_secret);
    let new_key = |scopes: Vec<ApiScope>| NewApiKey {
        name: "login service".into(),
        scopes,
        expires_in_days: None,
        created_by: "cli".into(),
    };
    let login_key = ApiKey::create(&mut conn, tenant.id, &new_key(vec![ApiScope::Login]))
        .unwrap()
        .1;
    let admin_key = ApiKey::create(
        &mut conn,
        tenant.id,
        &new_key(vec![ApiScope::Read, ApiScope::Write]),
    )
    .unwrap()
    .1;
    let accounts = vec![Account {
        subject: "acct_42".into(),
        email: "ada@acme-product.example".into(),
        name: "Ada Lovelace".into(),
        password: "analytical engine".into(),
    }];
    let service = LoginService::start(&base, "acme", &login_key, accounts, None).await;

    // The tenant's code switches to delegated sign-in with its login page.
    let resp = http
        .put(format!("{base}/t/acme/api/v1/sign-in"))
        .bearer_auth(&admin_key)
        .json(&json!({"creator_signin": "delegated", "login_url": service.login_url()}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Kit sends the creator's browser to authorize.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .unwrap();
    let authorize = format!(
        "{base}/t/acme/oauth/authorize?client_id={}&response_type=code&redirect_uri={KIT_INSTALL}&state=kit-state-1",
        kit_app.client_id
    );
    let (url, status, html) = browse(&browser, authorize.clone()).await;
    assert_eq!(status, 200);
    assert!(
        url.starts_with(&format!("{}?login_challenge=klc_", service.login_url())),
        "{url}"
    );
    assert!(
        html.contains("Acme for Kit"),
        "the login page names the app"
    );
    let seen = service.state.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["client_id"], kit_app.client_id.as_str());
    assert_eq!(seen["scopes"], json!(["public", "write"]));
    assert_eq!(seen["status"], "pending");
    assert_eq!(seen["remembered_subject"], Value::Null);

    // The creator signs in with the tenant's own account; the service
    // accepts, and kitauth shows its consent page.
    let challenge = field(&html, "login_challenge");
    let (url, status, html) = submit(
        &browser,
        &service.login_url(),
        &[
            ("login_challenge", &challenge),
            ("email", "ada@acme-product.example"),
            ("password", "analytical engine"),
            ("action", "sign-in"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{html}");
    assert!(
        url.starts_with(&format!("{base}/t/acme/oauth/authorize/continue")),
        "{url}"
    );
    assert!(
        html.contains("Ada Lovelace (acct_42)"),
        "consent names the account: {html}"
    );
    let (kit, _, _) = submit(
        &browser,
        &format!("{base}/t/acme/oauth/authorize/continue"),
        &[
            ("csrf_token", &field(&html, "csrf_token")),
            ("login_verifier", &field(&html, "login_verifier")),
            ("decision", "allow"),
        ],
    )
    .await;
    assert!(kit.starts_with(KIT_INSTALL), "{kit}");
    assert_eq!(query_param(&kit, "state").as_deref(), Some("kit-state-1"));
    let code = query_param(&kit, "code").unwrap();

    // Kit exchanges the code, introspection and userinfo say who it is.
    let (status, tokens) = kit_post(
        &http,
        format!("{base}/t/acme/oauth/token"),
        json!({"client_id": kit_app.client_id, "client_secret": secret, "grant_type": "authorization_code", "code": code, "redirect_uri": KIT_APPS}),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let introspect = |token: String| {
        let http = http.clone();
        let (id, secret, base) = (kit_app.client_id.clone(), secret.clone(), base.clone());
        async move {
            http.post(format!("{base}/t/acme/oauth/introspect"))
                .basic_auth(id, Some(secret))
                .form(&[("token", token)])
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let info = introspect(tokens["access_token"].as_str().unwrap().to_string()).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["sub"], "acct_42");
    assert_eq!(info["email"], "ada@acme-product.example");
    assert_eq!(info["name"], "Ada Lovelace");
    let me: Value = http
        .get(format!("{base}/t/acme/oauth/userinfo"))
        .bearer_auth(tokens["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["sub"], "acct_42");
    assert_eq!(me["name"], "Ada Lovelace");

    // The tenant sees the install by its subject.
    let installs: Value = http
        .get(format!("{base}/t/acme/api/v1/installs?subject=acct_42"))
        .bearer_auth(&admin_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(installs["items"].as_array().unwrap().len(), 1);
    assert_eq!(installs["items"][0]["creator_subject"], "acct_42");

    // Kit refreshes without the secret: the same subject.
    let (status, refreshed) = kit_post(
        &http,
        format!("{base}/t/acme/oauth/refresh"),
        json!({"client_id": kit_app.client_id, "grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}),
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_string();
    assert_eq!(introspect(access.clone()).await["sub"], "acct_42");

    // A second install in the same browser: the service's own session
    // signs the user in without a form, and kitauth remembers the consent.
    let (kit, _, _) = browse(&browser, authorize.replace("kit-state-1", "kit-state-2")).await;
    assert!(
        kit.starts_with(KIT_INSTALL),
        "no form, no consent page: {kit}"
    );
    assert_eq!(query_param(&kit, "state").as_deref(), Some("kit-state-2"));

    // Kit uninstalls: the install is gone.
    let (status, _) = kit_post(
        &http,
        format!("{base}/t/acme/oauth/revoke"),
        json!({"client_id": kit_app.client_id, "client_secret": secret, "token": access}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(introspect(access).await["active"], false);
}

// ---------------------------------------------------------------------------
// One rule each, in-process.

#[rocket::async_test]
async fn introspection_and_userinfo_carry_the_subject_and_refresh_keeps_it() {
    let d = delegated().await;
    let code = d.install(&d.app.client, ada()).await;
    let resp = kit_exchange(&d.app, &d.seed, &code).await;
    assert_eq!(resp.status(), Status::Ok);
    let t = tokens_of(resp).await;
    let info = introspect(&d.app, &d.seed, &t.access_token).await;
    assert_eq!(info["sub"], "user-8841");
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["name"], "Ada Creator");
    assert_eq!(info["username"], "ada@example.com");
    let resp = kit_refresh(&d.app, &d.seed, &t.refresh_token).await;
    assert_eq!(resp.status(), Status::Ok);
    let t2 = tokens_of(resp).await;
    let me = d
        .app
        .client
        .get("/t/acme/oauth/userinfo")
        .header(Header::new(
            "Authorization",
            format!("Bearer {}", t2.access_token),
        ))
        .dispatch()
        .await;
    let me = json_of(me).await;
    assert_eq!(me["sub"], "user-8841");
    assert_eq!(me["email"], "ada@example.com");
    // One creator for the subject, no password; one accept audited.
    assert_eq!(
        d.app.count(
            "SELECT count(*) FROM end_users WHERE subject = 'user-8841' AND password_hash IS NULL"
        ),
        1
    );
    assert_eq!(
        d.app.count("SELECT count(*) FROM audit_events WHERE action = 'login.accepted' AND details->>'subject' = 'user-8841'"),
        1
    );
    // A subject without email: username falls back to the subject.
    let code = d.install(&d.app.client, json!({"subject": "user-2"})).await;
    let t = tokens_of(kit_exchange(&d.app, &d.seed, &code).await).await;
    let info = introspect(&d.app, &d.seed, &t.access_token).await;
    assert_eq!(info["sub"], "user-2");
    assert_eq!(info["username"], "user-2");
    assert!(
        info.get("email").is_none() && info.get("name").is_none(),
        "{info}"
    );
}

#[rocket::async_test]
async fn a_reject_ends_with_the_oauth_error_redirect_and_state() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let path = format!("/t/acme/api/v1/login-requests/{challenge}/reject");
    let body = json!({"error": "access_denied", "error_description": "the user cancelled"});
    let resp = api(&d.app.client, "POST", &path, &d.login, Some(body)).await;
    assert_eq!(resp.status(), Status::Ok);
    let to = json_of(resp).await["redirect_to"]
        .as_str()
        .unwrap()
        .to_string();
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Found);
    let location = resp.headers().get_one("Location").unwrap();
    assert!(location.starts_with(KIT_INSTALL), "{location}");
    assert_eq!(
        query_param(location, "error").as_deref(),
        Some("access_denied")
    );
    assert_eq!(
        query_param(location, "error_description").as_deref(),
        Some("the user cancelled")
    );
    assert_eq!(query_param(location, "state").as_deref(), Some("xyz"));
    assert!(query_param(location, "code").is_none());
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'login.rejected'"),
        1
    );
    assert_eq!(d.app.count("SELECT count(*) FROM authorization_codes"), 0);
    // A rejected request cannot be accepted, nor rejected twice.
    problem(d.accept(&challenge, ada()).await, Status::Conflict).await;
    // Only OAuth's error codes, and a description of its character set.
    let challenge = d.start(&d.app.client).await;
    let path = format!("/t/acme/api/v1/login-requests/{challenge}/reject");
    for bad in [
        json!({"error": "nope"}),
        json!({"error": "access_denied", "error_description": "say \"hi\""}),
        json!({"error": "access_denied", "error_description": "x".repeat(501)}),
    ] {
        let p = problem(
            api(&d.app.client, "POST", &path, &d.login, Some(bad)).await,
            Status::UnprocessableEntity,
        )
        .await;
        assert!(p["errors"][0]["field"].is_string(), "{p}");
    }
}

#[rocket::async_test]
async fn an_expired_challenge_cannot_be_accepted_nor_completed() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    diesel_exec(
        &d.app,
        "UPDATE login_requests SET expires_at = now() - interval '1 second'",
    );
    let p = problem(d.accept(&challenge, ada()).await, Status::Gone).await;
    assert!(p["detail"].as_str().unwrap().contains("10 minutes"));
    // Accepted in time, but back too late: an error page, no redirect.
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    diesel_exec(
        &d.app,
        "UPDATE login_requests SET expires_at = now() - interval '1 second'",
    );
    let html = error_page(follow(&d.app.client, &to).await, Status::Gone).await;
    assert!(html.contains("expired"), "{html}");
    assert_eq!(d.app.count("SELECT count(*) FROM authorization_codes"), 0);
    // The janitor purges expired requests.
    let report = kitauth::janitor::purge(
        &mut d.app.conn(),
        kitauth::janitor::Retention::from_config(
            &kitauth::config::extract(&test_figment(&d.app.db)).unwrap(),
        ),
        chrono::Utc::now(),
        kitauth::janitor::BATCH,
    )
    .unwrap();
    assert_eq!(report.login_requests, 2);
    assert_eq!(d.app.count("SELECT count(*) FROM login_requests"), 0);
}

fn diesel_exec(app: &TestApp, sql: &str) {
    use diesel::RunQueryDsl;
    diesel::sql_query(sql).execute(&mut app.conn()).unwrap();
}

#[rocket::async_test]
async fn a_replayed_challenge_gets_an_error_page_and_no_second_code() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    let consent = follow(&d.app.client, &to).await;
    assert_eq!(consent.status(), Status::Ok);
    let html = consent.into_string().await.unwrap();
    // The decision completes it...
    let resp = post_consent(&d.app.client, &html, "allow").await;
    assert_eq!(resp.status(), Status::Found);
    // ...once: the same return link, the same form, the same accept.
    error_page(follow(&d.app.client, &to).await, Status::Conflict).await;
    error_page(
        post_consent(&d.app.client, &html, "allow").await,
        Status::Conflict,
    )
    .await;
    problem(d.accept(&challenge, ada()).await, Status::Conflict).await;
    assert_eq!(d.app.count("SELECT count(*) FROM authorization_codes"), 1);
    // Unknown and malformed verifiers: the same kind of page.
    for bad in [
        "/t/acme/oauth/authorize/continue",
        "/t/acme/oauth/authorize/continue?login_verifier=klv_nope",
        "/t/acme/oauth/authorize/continue?login_verifier=klv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        error_page(d.app.client.get(bad).dispatch().await, Status::BadRequest).await;
    }
}

#[rocket::async_test]
async fn a_challenge_completed_in_another_browser_is_refused() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    let other = d.other_browser().await;
    let html = error_page(follow(&other, &to).await, Status::Forbidden).await;
    assert!(html.contains("another browser"), "{html}");
    // A forged binding cookie of the right shape is no better.
    let forged = other
        .get(to.strip_prefix(PUBLIC).unwrap().to_string())
        .cookie(rocket::http::Cookie::new(
            "kitauth_browser",
            "kbr_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ))
        .dispatch()
        .await;
    error_page(forged, Status::Forbidden).await;
    // The browser that started it still finishes it.
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Ok);
    let location = allow(&d.app.client, resp).await;
    assert!(query_param(&location, "code").is_some());
}

#[rocket::async_test]
async fn a_skip_consent_app_goes_straight_to_kit_and_the_change_is_audited() {
    let d = delegated().await;
    let path = format!("/t/acme/api/v1/apps/{}", d.seed.app.id);
    let resp = api(
        &d.app.client,
        "PATCH",
        &path,
        &d.admin,
        Some(json!({"skip_consent": true})),
    )
    .await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(json_of(resp).await["skip_consent"], true);
    assert_eq!(
        d.app.count("SELECT count(*) FROM audit_events WHERE action = 'app.skip_consent_changed' AND details->>'skip_consent' = 'true'"),
        1
    );
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Found, "no consent page");
    let location = resp.headers().get_one("Location").unwrap();
    assert!(query_param(location, "code").is_some());
    // Unchanged, nothing more is audited.
    api(
        &d.app.client,
        "PATCH",
        &path,
        &d.admin,
        Some(json!({"skip_consent": true})),
    )
    .await;
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'app.skip_consent_changed'"),
        1
    );
}

#[rocket::async_test]
async fn a_remembered_consent_skips_the_page_for_the_same_scopes_only() {
    let d = delegated().await;
    d.install(&d.app.client, ada()).await; // consent page, Allow
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Found, "consented before: no page");
    // Another subject in the same browser has not consented.
    let challenge = d.start(&d.app.client).await;
    let to = d
        .accepted(&challenge, json!({"subject": "someone-else"}))
        .await;
    assert_eq!(follow(&d.app.client, &to).await.status(), Status::Ok);
    // More scopes than consented to: the page again.
    let path = authorize_path(&d.seed, &[("state", "xyz"), ("scope", "public write")]);
    let resp = d.app.client.get(path).dispatch().await;
    let challenge = query_param(
        resp.headers().get_one("Location").unwrap(),
        "login_challenge",
    )
    .unwrap();
    let to = d.accepted(&challenge, ada()).await;
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Ok, "a new scope needs consent");
    // Denying it sends access_denied to Kit.
    let location = decide(&d.app.client, resp, "deny").await;
    assert_eq!(
        query_param(&location, "error").as_deref(),
        Some("access_denied")
    );
}

#[rocket::async_test]
async fn a_remembered_login_is_known_until_the_tenant_revokes_it() {
    let d = delegated().await;
    let mut body = ada();
    body["remember_for"] = json!(90 * 86400); // asks 90 days, gets 30
    d.install(&d.app.client, body).await;
    assert_eq!(
        d.app.count("SELECT count(*) FROM login_sessions WHERE expires_at BETWEEN now() + interval '29 days' AND now() + interval '30 days 1 minute'"),
        1
    );
    let challenge = d.start(&d.app.client).await;
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        "user-8841"
    );
    // Another browser is not remembered.
    let other = d.other_browser().await;
    let challenge = d.start(&other).await;
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        Value::Null
    );
    // The tenant ends the subject's sessions: forgotten.
    let resp = api(
        &d.app.client,
        "DELETE",
        "/t/acme/api/v1/subjects/user-8841/sessions",
        &d.login,
        None,
    )
    .await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(json_of(resp).await["revoked"], 1);
    let challenge = d.start(&d.app.client).await;
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        Value::Null
    );
    problem(
        api(
            &d.app.client,
            "DELETE",
            "/t/acme/api/v1/subjects/nobody/sessions",
            &d.login,
            None,
        )
        .await,
        Status::NotFound,
    )
    .await;
    // Remembered again, then all the subject's installs revoked: forgotten too.
    let mut body = ada();
    body["remember_for"] = json!(3600);
    d.install(&d.app.client, body).await;
    let creator = d
        .app
        .count("SELECT id FROM end_users WHERE subject = 'user-8841'");
    let path = format!("/t/acme/api/v1/creators/{creator}/installs/revoke");
    let resp = api(&d.app.client, "POST", &path, &d.admin, None).await;
    assert_eq!(
        resp.status(),
        Status::Ok,
        "{}",
        resp.into_string().await.unwrap()
    );
    let challenge = d.start(&d.app.client).await;
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        Value::Null
    );
    assert_eq!(d.app.count("SELECT count(*) FROM consents"), 0);
}

#[rocket::async_test]
async fn the_login_calls_need_a_login_key_of_this_tenant() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let get = format!("/t/acme/api/v1/login-requests/{challenge}");
    let accept = format!("{get}/accept");
    // Wrong scope: 403, whatever else the key may do.
    for (method, path, body) in [
        ("GET", get.as_str(), None),
        ("POST", accept.as_str(), Some(ada())),
        ("DELETE", "/t/acme/api/v1/subjects/user-8841/sessions", None),
    ] {
        problem(
            api(&d.app.client, method, path, &d.admin, body).await,
            Status::Forbidden,
        )
        .await;
    }
    // A login key does nothing else.
    problem(
        api(
            &d.app.client,
            "GET",
            "/t/acme/api/v1/installs",
            &d.login,
            None,
        )
        .await,
        Status::Forbidden,
    )
    .await;
    // Another tenant's key on this tenant's path: 401.
    let beta = seed_tenant(&d.app, "beta");
    let beta_login = make_key(&d.app, beta.tenant.id, &[ApiScope::Login]);
    problem(
        api(&d.app.client, "GET", &get, &beta_login, None).await,
        Status::Unauthorized,
    )
    .await;
    problem(
        api(&d.app.client, "POST", &accept, &beta_login, Some(ada())).await,
        Status::Unauthorized,
    )
    .await;
    // This tenant's challenge through another tenant's path and key: unknown there.
    let beta_path = format!("/t/beta/api/v1/login-requests/{challenge}");
    problem(
        api(&d.app.client, "GET", &beta_path, &beta_login, None).await,
        Status::NotFound,
    )
    .await;
    problem(
        api(
            &d.app.client,
            "POST",
            &format!("{beta_path}/accept"),
            &beta_login,
            Some(ada()),
        )
        .await,
        Status::NotFound,
    )
    .await;
    // And a verifier of acme's, returned under beta: unknown there.
    let to = d.accepted(&challenge, ada()).await;
    let under_beta = to.replace("/t/acme/", "/t/beta/");
    error_page(follow(&d.app.client, &under_beta).await, Status::BadRequest).await;
    assert_eq!(d.subjects(), 1);
}

#[rocket::async_test]
async fn an_accept_is_checked_field_by_field() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    for (body, field) in [
        (json!({"subject": ""}), "subject"),
        (json!({"subject": "x".repeat(256)}), "subject"),
        (json!({"subject": "tab\there"}), "subject"),
        (json!({"subject": " padded"}), "subject"),
        (json!({"subject": "ok", "email": "not-an-email"}), "email"),
        (json!({"subject": "ok", "name": ""}), "name"),
        (json!({"subject": "ok", "remember_for": -1}), "remember_for"),
        (json!({"subject": "ok", "admin": true}), "admin"),
        (json!({"email": "a@b.example"}), "subject"),
    ] {
        let p = problem(
            d.accept(&challenge, body.clone()).await,
            Status::UnprocessableEntity,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{body}: {p}");
    }
    // 255 printable characters, any script, are a subject.
    let long = "é".repeat(255);
    assert_eq!(
        d.accept(&challenge, json!({"subject": long}))
            .await
            .status(),
        Status::Ok
    );
    problem(
        d.accept("klc_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", ada())
            .await,
        Status::NotFound,
    )
    .await;
    problem(d.accept("garbage", ada()).await, Status::NotFound).await;
    assert_eq!(d.subjects(), 1);
}

#[rocket::async_test]
async fn of_twenty_concurrent_accepts_exactly_one_wins() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let calls = (0..20).map(|i| {
        let body = json!({"subject": format!("racer-{i}")});
        d.accept(&challenge, body)
    });
    let answers = futures::future::join_all(calls).await;
    let statuses: Vec<Status> = answers.iter().map(|r| r.status()).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Ok).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == Status::Conflict).count(),
        19,
        "{statuses:?}"
    );
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM end_users WHERE subject LIKE 'racer-%'"),
        1
    );
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'login.accepted'"),
        1
    );
    let winner = d.app.count(
        "SELECT count(*) FROM login_requests l JOIN end_users e ON e.id = l.end_user_id WHERE e.subject LIKE 'racer-%'",
    );
    assert_eq!(winner, 1);
}

#[rocket::async_test]
async fn pending_login_requests_are_bounded_per_tenant() {
    let d = delegated_with(|f| f.merge(("max_pending_login_requests", 3))).await;
    for _ in 0..3 {
        d.start(&d.app.client).await;
    }
    let path = authorize_path(&d.seed, &[("state", "xyz")]);
    let resp = d.app.client.get(path.clone()).dispatch().await;
    error_page(resp, Status::ServiceUnavailable).await;
    // An expired request frees a place.
    diesel_exec(&d.app, "UPDATE login_requests SET expires_at = now() - interval '1 second' WHERE id = (SELECT min(id) FROM login_requests)");
    assert_eq!(
        d.app.client.get(path).dispatch().await.status(),
        Status::Found
    );
}

#[rocket::async_test]
async fn the_sign_in_choice_is_checked_and_hosted_pages_step_aside() {
    let d = delegated().await;
    for (body, field) in [
        (json!({"creator_signin": "delegated"}), "login_url"),
        (
            json!({"creator_signin": "delegated", "login_url": "http://login.example/"}),
            "login_url",
        ),
        (
            json!({"creator_signin": "delegated", "login_url": "https://u:p@login.example/"}),
            "login_url",
        ),
        (json!({"creator_signin": "sso"}), "creator_signin"),
    ] {
        let p = problem(
            api(
                &d.app.client,
                "PUT",
                "/t/acme/api/v1/sign-in",
                &d.admin,
                Some(body),
            )
            .await,
            Status::UnprocessableEntity,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field);
    }
    let resp = api(
        &d.app.client,
        "GET",
        "/t/acme/api/v1/sign-in",
        &d.admin,
        None,
    )
    .await;
    assert_eq!(
        json_of(resp).await,
        json!({"creator_signin": "delegated", "login_url": LOGIN_URL})
    );
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM audit_events WHERE action = 'tenant.signin_changed'"),
        1
    );
    // The hosted account pages say where creators sign in instead.
    let html = error_page(
        d.app.client.get("/t/acme/login").dispatch().await,
        Status::NotFound,
    )
    .await;
    assert!(html.contains("own site"), "{html}");
    error_page(
        d.app.client.get("/t/acme/signup").dispatch().await,
        Status::NotFound,
    )
    .await;
    // The release profile's rule: loopback http only with private networks allowed.
    let strict = TestApp::with(|f| f.merge(("allow_private_networks", false))).await;
    let s = seed_tenant(&strict, "acme");
    let key = make_key(&strict, s.tenant.id, &[ApiScope::Write]);
    let body = json!({"creator_signin": "delegated", "login_url": "http://127.0.0.1:9/login"});
    problem(
        api(
            &strict.client,
            "PUT",
            "/t/acme/api/v1/sign-in",
            &key,
            Some(body.clone()),
        )
        .await,
        Status::UnprocessableEntity,
    )
    .await;
    assert_eq!(
        api(
            &d.app.client,
            "PUT",
            "/t/acme/api/v1/sign-in",
            &d.admin,
            Some(body)
        )
        .await
        .status(),
        Status::Ok
    );
}

#[rocket::async_test]
async fn one_address_cannot_fill_the_tenants_pending_requests() {
    let d = delegated_with(|f| f.merge(("login_requests_per_ip", 3))).await;
    let path = authorize_path(&d.seed, &[("state", "xyz")]);
    let from = |ip: &str| {
        d.app
            .client
            .get(path.clone())
            .remote(format!("{ip}:5000").parse().unwrap())
    };
    for _ in 0..3 {
        assert_eq!(
            from("198.51.100.7").dispatch().await.status(),
            Status::Found
        );
    }
    let resp = from("198.51.100.7").dispatch().await;
    assert!(resp.headers().get_one("Retry-After").is_some());
    error_page(resp, Status::TooManyRequests).await;
    assert_eq!(d.app.count("SELECT count(*) FROM login_requests"), 3);
    // Another address is not held up.
    assert_eq!(
        from("198.51.100.8").dispatch().await.status(),
        Status::Found
    );
}

#[rocket::async_test]
async fn revoking_a_subject_reaches_the_requests_already_in_flight() {
    let d = delegated().await;
    let mut body = ada();
    body["remember_for"] = json!(3600);
    d.install(&d.app.client, body.clone()).await;
    // Remembered when the request starts, forgotten by the time the login
    // service asks: the answer is read when asked.
    let challenge = d.start(&d.app.client).await;
    let sessions = "/t/acme/api/v1/subjects/user-8841/sessions";
    assert_eq!(
        api(&d.app.client, "DELETE", sessions, &d.login, None)
            .await
            .status(),
        Status::Ok
    );
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        Value::Null
    );
    // Accepted with remember_for, revoked before the browser is back: the
    // install completes, and nothing is remembered.
    let to = d.accepted(&challenge, body.clone()).await;
    assert_eq!(
        api(&d.app.client, "DELETE", sessions, &d.login, None)
            .await
            .status(),
        Status::Ok
    );
    let resp = follow(&d.app.client, &to).await;
    assert_eq!(resp.status(), Status::Found, "consented before");
    assert_eq!(d.app.count("SELECT count(*) FROM login_sessions"), 0);
    // All installs revoked while a request is on its way back: no code.
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, body).await;
    let creator = d
        .app
        .count("SELECT id FROM end_users WHERE subject = 'user-8841'");
    let revoke = format!("/t/acme/api/v1/creators/{creator}/installs/revoke");
    assert_eq!(
        api(&d.app.client, "POST", &revoke, &d.admin, None)
            .await
            .status(),
        Status::Ok
    );
    let codes = d.app.count("SELECT count(*) FROM authorization_codes");
    error_page(follow(&d.app.client, &to).await, Status::Gone).await;
    assert_eq!(
        d.app.count("SELECT count(*) FROM authorization_codes"),
        codes
    );
}

#[rocket::async_test]
async fn leaving_delegated_mode_ends_its_requests_and_remembered_logins() {
    let d = delegated().await;
    let mut body = ada();
    body["remember_for"] = json!(3600);
    d.install(&d.app.client, body.clone()).await;
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, body).await;
    let hosted = json!({"creator_signin": "hosted"});
    let resp = api(
        &d.app.client,
        "PUT",
        "/t/acme/api/v1/sign-in",
        &d.admin,
        Some(hosted),
    )
    .await;
    assert_eq!(resp.status(), Status::Ok);
    error_page(follow(&d.app.client, &to).await, Status::Gone).await;
    assert_eq!(d.app.count("SELECT count(*) FROM login_sessions"), 0);
    assert_eq!(
        d.app.count(
            "SELECT count(*) FROM login_requests WHERE completed_at IS NULL AND expires_at > now()"
        ),
        0
    );
}

#[rocket::async_test]
async fn a_remembered_login_gets_a_new_binding_cookie() {
    let d = delegated().await;
    let challenge = d.start(&d.app.client).await;
    let before = d
        .app
        .client
        .cookies()
        .get("kitauth_browser")
        .unwrap()
        .value()
        .to_string();
    let mut body = ada();
    body["remember_for"] = json!(3600);
    let to = d.accepted(&challenge, body).await;
    let resp = follow(&d.app.client, &to).await;
    allow(&d.app.client, resp).await;
    let after = d
        .app
        .client
        .cookies()
        .get("kitauth_browser")
        .unwrap()
        .value()
        .to_string();
    assert_ne!(
        before, after,
        "the value known before the sign-in is not the remembered one"
    );
    // The old value (planted in another browser, say) is nobody.
    let other = d.other_browser().await;
    let resp = other
        .get(authorize_path(
            &d.seed,
            &[("state", "xyz"), ("scope", "public")],
        ))
        .cookie(rocket::http::Cookie::new("kitauth_browser", before))
        .dispatch()
        .await;
    let challenge = query_param(
        resp.headers().get_one("Location").unwrap(),
        "login_challenge",
    )
    .unwrap();
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        Value::Null
    );
    // The new one is the subject.
    let challenge = d.start(&d.app.client).await;
    assert_eq!(
        d.login_request(&challenge).await["remembered_subject"],
        "user-8841"
    );
}

#[rocket::async_test]
async fn a_disabled_creator_cannot_be_accepted_and_hidden_characters_are_refused() {
    let d = delegated().await;
    d.install(&d.app.client, ada()).await;
    // Accepted, then the creator is disabled before the browser is back:
    // no consent page, no code.
    let in_flight = d.start(&d.app.client).await;
    let to = d.accepted(&in_flight, ada()).await;
    let creator = d
        .app
        .count("SELECT id FROM end_users WHERE subject = 'user-8841'");
    let path = format!("/t/acme/api/v1/creators/{creator}/disable");
    assert_eq!(
        api(&d.app.client, "POST", &path, &d.admin, None)
            .await
            .status(),
        Status::Ok
    );
    let codes = d.app.count("SELECT count(*) FROM authorization_codes");
    error_page(follow(&d.app.client, &to).await, Status::Gone).await;
    assert_eq!(
        d.app.count("SELECT count(*) FROM authorization_codes"),
        codes
    );
    let challenge = d.start(&d.app.client).await;
    let mut renamed = ada();
    renamed["name"] = json!("Someone Else");
    let p = problem(d.accept(&challenge, renamed).await, Status::Conflict).await;
    assert!(
        p["type"].as_str().unwrap().ends_with("creator-disabled"),
        "{p}"
    );
    assert_eq!(
        d.app
            .count("SELECT count(*) FROM end_users WHERE name = 'Ada Creator'"),
        1,
        "nothing written"
    );
    assert_eq!(d.login_request(&challenge).await["status"], "pending");
    for (body, field) in [
        (json!({"subject": "user\u{200B}1"}), "subject"),
        (json!({"subject": "user\u{202E}1"}), "subject"),
        (json!({"subject": "a\u{2028}b"}), "subject"),
        (
            json!({"subject": "ok", "name": "Ada\u{202E}rotaerC"}),
            "name",
        ),
        (json!({"subject": "ok", "name": "\u{E000}"}), "name"),
    ] {
        let p = problem(
            d.accept(&challenge, body.clone()).await,
            Status::UnprocessableEntity,
        )
        .await;
        assert_eq!(p["errors"][0]["field"], field, "{body}");
    }
}

#[rocket::async_test]
async fn an_uninstall_forgets_the_consent() {
    let d = delegated().await;
    let code = d.install(&d.app.client, ada()).await;
    let t = tokens_of(kit_exchange(&d.app, &d.seed, &code).await).await;
    let resp = d
        .app
        .client
        .post("/t/acme/oauth/revoke")
        .header(ContentType::Form)
        .body(json!({"client_id": d.seed.app.client_id, "client_secret": d.seed.client_secret, "token": t.access_token}).to_string())
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Ok);
    assert_eq!(d.app.count("SELECT count(*) FROM consents"), 0);
    let challenge = d.start(&d.app.client).await;
    let to = d.accepted(&challenge, ada()).await;
    assert_eq!(
        follow(&d.app.client, &to).await.status(),
        Status::Ok,
        "asked again"
    );
}

#[rocket::async_test]
async fn only_an_owners_key_chooses_who_signs_creators_in() {
    use kitauth::db::models::{Admin, Membership, Role};
    let d = delegated().await;
    let mut conn = d.app.conn();
    let hash = kitauth::crypto::hash_password("admin password 1", 4).unwrap();
    for (email, role) in [
        ("owner@acme.example", Role::Owner),
        ("admin@acme.example", Role::Admin),
    ] {
        let admin = Admin::create(&mut conn, email, &hash).unwrap();
        Membership::add(&mut conn, d.seed.tenant.id, admin.id, role).unwrap();
    }
    let body = json!({"creator_signin": "hosted"});
    for (by, status) in [
        ("admin:admin@acme.example", Status::Forbidden),
        ("admin:nobody@acme.example", Status::Forbidden),
        ("admin:owner@acme.example", Status::Ok),
    ] {
        let key = make_key_by(
            &d.app,
            d.seed.tenant.id,
            &[ApiScope::Read, ApiScope::Write],
            by,
        );
        let resp = api(
            &d.app.client,
            "PUT",
            "/t/acme/api/v1/sign-in",
            &key,
            Some(body.clone()),
        )
        .await;
        assert_eq!(resp.status(), status, "{by}");
    }
}

#[rocket::async_test]
async fn a_delegated_authorize_is_validated_as_always_and_pkce_goes_through() {
    let d = delegated().await;
    let base = |extra: &[(&str, &str)]| authorize_path(&d.seed, extra);
    // Untrustworthy client or redirect URI: a page; a bad scope or PKCE: the
    // error redirect. No login request either way.
    let unknown = "/t/acme/oauth/authorize?client_id=kit_nobody&response_type=code";
    assert_eq!(
        d.app.client.get(unknown).dispatch().await.status(),
        Status::BadRequest
    );
    let bad_redirect = base(&[]).replace("apps%2Finstall", "evil");
    assert_eq!(
        d.app.client.get(bad_redirect).dispatch().await.status(),
        Status::BadRequest
    );
    for extra in [
        vec![("scope", "admin"), ("state", "s")],
        vec![
            ("code_challenge", "short"),
            ("code_challenge_method", "S256"),
            ("state", "s"),
        ],
    ] {
        let resp = d.app.client.get(base(&extra)).dispatch().await;
        assert_eq!(resp.status(), Status::Found);
        let location = resp.headers().get_one("Location").unwrap();
        assert!(location.starts_with(KIT_INSTALL), "{location}");
        assert!(query_param(location, "error").is_some(), "{location}");
    }
    assert_eq!(d.app.count("SELECT count(*) FROM login_requests"), 0);
    // PKCE is kept in the login request and checked at the token step: a
    // wrong verifier is refused, the right one gets the tokens.
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = kitauth::crypto::pkce_s256(verifier);
    for (sent, ok) in [
        ("wrong-verifier-wrong-verifier-wrong-verifier-1", false),
        (verifier, true),
    ] {
        let path = base(&[
            ("state", "xyz"),
            ("scope", "public"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ]);
        let resp = d.app.client.get(path).dispatch().await;
        let login_challenge = query_param(
            resp.headers().get_one("Location").unwrap(),
            "login_challenge",
        )
        .unwrap();
        let to = d.accepted(&login_challenge, ada()).await;
        let location = d.back_in(&d.app.client, &to).await;
        let body = json!({
            "client_id": d.seed.app.client_id, "client_secret": d.seed.client_secret,
            "grant_type": "authorization_code", "redirect_uri": KIT_APPS,
            "code": query_param(&location, "code").unwrap(), "code_verifier": sent,
        });
        let resp = d
            .app
            .client
            .post("/t/acme/oauth/token")
            .header(ContentType::Form)
            .body(body.to_string())
            .dispatch()
            .await;
        if ok {
            assert_eq!(resp.status(), Status::Ok);
            assert!(tokens_of(resp).await.access_token.starts_with("kat_"));
        } else {
            assert_eq!(json_of(resp).await["error"], "invalid_grant");
        }
    }
}

#[rocket::async_test]
async fn the_binding_cookie_is_the_tenants_http_only_lax_and_secure_in_release() {
    for secure in [false, true] {
        let d = delegated_with(|f| f.merge(("secure_cookies", secure))).await;
        let resp = d
            .app
            .client
            .get(authorize_path(&d.seed, &[("state", "xyz")]))
            .dispatch()
            .await;
        let cookie = set_cookie(&resp, "kitauth_browser");
        assert!(cookie.starts_with("kitauth_browser=kbr_"), "{cookie}");
        for part in [
            "Path=/t/acme",
            "HttpOnly",
            "SameSite=Lax",
            "Max-Age=2592000",
        ] {
            assert!(cookie.contains(part), "{part} in {cookie}");
        }
        assert_eq!(cookie.contains("Secure"), secure, "{cookie}");
    }
}

#[rocket::async_test]
async fn skip_consent_applies_to_hosted_sign_in_too_and_delegated_mode_takes_no_hosted_consent() {
    let app = TestApp::new().await;
    let seed = seed_tenant(&app, "acme");
    let admin = make_key(&app, seed.tenant.id, &[ApiScope::Read, ApiScope::Write]);
    let path = format!("/t/acme/api/v1/apps/{}", seed.app.id);
    let resp = api(
        &app.client,
        "PATCH",
        &path,
        &admin,
        Some(json!({"skip_consent": true})),
    )
    .await;
    assert_eq!(resp.status(), Status::Ok);
    sign_in(&app, &seed).await;
    let resp = app
        .client
        .get(authorize_path(&seed, &[("state", "xyz")]))
        .dispatch()
        .await;
    assert_eq!(resp.status(), Status::Found, "no consent page");
    assert!(query_param(resp.headers().get_one("Location").unwrap(), "code").is_some());
    // In delegated mode, the hosted consent form decides nothing: back to
    // authorize, which starts a login request.
    let body = json!({"creator_signin": "delegated", "login_url": LOGIN_URL});
    api(
        &app.client,
        "PUT",
        "/t/acme/api/v1/sign-in",
        &admin,
        Some(body),
    )
    .await;
    let fresh = Client::tracked(kitauth::build(test_figment(&app.db)).unwrap())
        .await
        .unwrap();
    let csrf = csrf_of_client(&fresh).await;
    let resp = fresh
        .post("/t/acme/oauth/authorize")
        .header(ContentType::Form)
        .body(form(&[
            ("csrf_token", &csrf),
            ("decision", "allow"),
            ("client_id", &seed.app.client_id),
            ("response_type", "code"),
            ("redirect_uri", KIT_INSTALL),
        ]))
        .dispatch()
        .await;
    let status = resp.status();
    let location = resp
        .headers()
        .get_one("Location")
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        status,
        Status::SeeOther,
        "{}",
        resp.into_string().await.unwrap_or_default()
    );
    assert!(
        location.starts_with("/t/acme/oauth/authorize?"),
        "{location}"
    );
    assert_eq!(app.count("SELECT count(*) FROM authorization_codes"), 1);
}

/// A CSRF token of `client`'s own cookie (from any page with a form).
async fn csrf_of_client(client: &Client) -> String {
    let page = client
        .get("/t/acme/oauth/authorize?client_id=x")
        .dispatch()
        .await;
    let _ = page.into_string().await;
    let page = client.get("/admin/login").dispatch().await;
    csrf_from(&page.into_string().await.unwrap())
}
