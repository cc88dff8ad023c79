//! The dashboard and Kit's whole flow in a real headless Chromium, driven
//! through chromedriver (WebDriver) with fantoccini. The real server runs
//! in-process on a free loopback port. Without chromium or chromedriver the
//! test fails: it never skips.

mod common;
mod login_service;

use common::free_port;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TestDb, KIT_APPS, KIT_INSTALL};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// chromedriver as a child process, killed when dropped (also on panic).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_until_up(http: &reqwest::Client, url: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(r) = http.get(url).send().await {
            if r.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{what} did not come up at {url}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn screenshots_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).expect("create target/screenshots");
    dir
}

async fn shot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    std::fs::write(screenshots_dir().join(format!("{name}.png")), png).expect("write screenshot");
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .wait()
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} on the page: {e}"))
        .text()
        .await
        .expect("element text")
        .trim()
        .to_string()
}

async fn fill(browser: &Client, css: &str, value: &str) {
    let el = browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"));
    el.clear().await.expect("clear field");
    el.send_keys(value).await.expect("type into field");
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .expect("click");
}

/// Waits until the browser lands on the loopback Kit callback.
async fn on_the_callback(browser: &Client) -> url::Url {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let u = browser.current_url().await.unwrap();
        if u.path() == "/kit-callback" {
            return u;
        }
        assert!(
            Instant::now() < deadline,
            "no redirect to the callback, at {u}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn body_text(browser: &Client) -> String {
    text_of(browser, "body").await
}

/// The browser's console since the last call (chromedriver's log endpoint):
/// every SEVERE entry, which is what Chromium logs for a console error, an
/// invalid `pattern`, a CSP violation or a failed resource.
async fn console_errors(http: &reqwest::Client, log_url: &str) -> Vec<String> {
    let resp: Value = http
        .post(log_url)
        .json(&json!({"type": "browser"}))
        .send()
        .await
        .expect("chromedriver's log endpoint")
        .json()
        .await
        .expect("the browser log as JSON");
    resp["value"]
        .as_array()
        .expect("log entries")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn assert_clean_console(http: &reqwest::Client, log_url: &str, step: &str) {
    let errors = console_errors(http, log_url).await;
    assert!(errors.is_empty(), "console errors at {step}: {errors:?}");
}

fn count(db: &TestDb, sql: &str) -> i64 {
    use diesel::prelude::*;
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query(format!("SELECT ({sql})::bigint AS n"))
        .get_result::<N>(&mut db.conn())
        .expect("count")
        .n
}

/// At a phone's width: nothing scrolls sideways, every `css` element is
/// shown inside the viewport, and the header shows the admin's email.
async fn assert_fits_phone(browser: &Client, css: &str, email: &str) {
    let v = browser
        .execute(
            "const [css, email] = arguments; const d = document.documentElement; \
             const out = []; document.querySelectorAll(css).forEach(el => { const r = el.getBoundingClientRect(); \
               out.push({w: r.width, left: r.left, right: r.right}); }); \
             const wraps = [...document.querySelectorAll('.table-wrap')].map(w => [w.scrollWidth, w.clientWidth]); \
             const who = document.querySelector('.topbar .who'); const wr = who.getBoundingClientRect(); \
             return {scroll: d.scrollWidth, client: d.clientWidth, els: out, wraps, \
               who: who.innerText, whoVisible: wr.width > 0 && wr.right <= d.clientWidth + 1};",
            vec![json!(css), json!(email)],
        )
        .await
        .expect("measure the page");
    let client = v["client"].as_f64().unwrap();
    assert!(
        v["scroll"].as_f64().unwrap() <= client,
        "the page scrolls sideways: {v}"
    );
    for w in v["wraps"].as_array().unwrap() {
        assert!(
            w[0].as_f64() <= w[1].as_f64(),
            "a table scrolls sideways: {v}"
        );
    }
    let els = v["els"].as_array().unwrap();
    assert!(!els.is_empty(), "{css} on the page");
    for e in els {
        assert!(
            e["w"].as_f64().unwrap() > 0.0 && e["right"].as_f64().unwrap() <= client + 1.0,
            "{css} visible without scrolling: {v}"
        );
    }
    assert!(
        v["who"].as_str().unwrap().contains(email) && v["whoVisible"] == true,
        "the header keeps the admin's identity: {v}"
    );
}

async fn introspect(
    http: &reqwest::Client,
    url: &str,
    client_id: &str,
    secret: &str,
    token: &str,
) -> (u16, Value) {
    let resp = http
        .post(url)
        .basic_auth(client_id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("token={token}"))
        .send()
        .await
        .expect("introspection call");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Posts like Kit: a JSON body under a form content type and a Bearer header.
async fn kit_post(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let resp = http
        .post(url)
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("Authorization", "Bearer ")
        .body(body.to_string())
        .send()
        .await
        .expect("Kit's call");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_kit_flow_in_headless_chromium() {
    assert!(
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists(),
        "the browser test needs Debian's chromium and chromium-driver: apt-get install -y chromium chromium-driver"
    );

    // The real server on a free loopback port.
    let db = TestDb::new();
    let base = common::serve(&db, |f| f.merge(("admin_signup", true))).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client");

    // chromedriver on another free port.
    let driver_port = free_port();
    let profile =
        std::env::temp_dir().join(format!("kitauth-chrome-{}", uuid::Uuid::new_v4().simple()));
    let _driver = Driver(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    wait_until_up(
        &http,
        &format!("http://127.0.0.1:{driver_port}/status"),
        "chromedriver",
    )
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let browser = ClientBuilder::native()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{driver_port}"))
        .await
        .expect("a Chromium session through chromedriver");
    browser
        .set_window_size(1280, 800)
        .await
        .expect("window size");

    let session_id = browser
        .session_id()
        .await
        .unwrap()
        .expect("a WebDriver session id");
    let log_url = format!("http://127.0.0.1:{driver_port}/session/{session_id}/se/log");

    // 1. Sign up in the dashboard.
    browser.goto(&format!("{base}/admin/signup")).await.unwrap();
    assert_clean_console(&http, &log_url, "admin sign-up").await;
    fill(&browser, "#email", "dev@acme.example").await;
    fill(&browser, "#password", "a long enough password").await;
    fill(&browser, "#tenant_name", "Acme Plugins").await;
    fill(&browser, "#tenant_slug", "acme").await;
    shot(&browser, "01-signup").await;
    click(&browser, "form button.primary").await;
    browser
        .wait()
        .for_element(Locator::Css("#active-installs"))
        .await
        .expect("tenant home after sign-up");
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .path()
        .ends_with("/admin/t/acme"));

    // 2. Create an app; loopback callback so the final redirect is observable.
    let callback = format!("{base}/kit-callback");
    browser
        .goto(&format!("{base}/admin/t/acme/apps/new"))
        .await
        .unwrap();
    fill(&browser, "#name", "Acme for Kit").await;
    fill(
        &browser,
        "#redirect_uris",
        &format!("{KIT_INSTALL}\n{KIT_APPS}\n{callback}"),
    )
    .await;
    fill(&browser, "#scopes", "public write").await;
    shot(&browser, "02-new-app").await;
    assert_clean_console(&http, &log_url, "new app").await;
    click(&browser, "form button.primary").await;
    let secret = text_of(&browser, "#new-secret").await;
    assert_eq!(count(&db, "SELECT count(*) FROM apps"), 1);
    let reveal_url = browser.current_url().await.unwrap();
    assert!(reveal_url.path().ends_with("/secret"), "PRG: {reveal_url}");
    assert!(
        secret.starts_with("kcs_"),
        "the new secret is shown: {secret}"
    );
    let authorization_url = text_of(&browser, "#kit-authorization_url").await;
    let token_url = text_of(&browser, "#kit-token_url").await;
    let refresh_url = text_of(&browser, "#kit-refresh_token_url").await;
    let revoke_url = text_of(&browser, "#kit-revoke_url").await;
    let client_id = text_of(&browser, "#kit-client_id").await;
    assert_eq!(authorization_url, format!("{base}/t/acme/oauth/authorize"));
    assert_eq!(token_url, format!("{base}/t/acme/oauth/token"));
    assert_eq!(refresh_url, format!("{base}/t/acme/oauth/refresh"));
    assert_eq!(revoke_url, format!("{base}/t/acme/oauth/revoke"));
    assert!(client_id.starts_with("kit_"));
    shot(&browser, "03-app-kit-settings").await;
    assert_clean_console(&http, &log_url, "app created").await;
    // A reload makes no second app and shows the secret no more.
    browser.refresh().await.unwrap();
    let reloaded = body_text(&browser).await;
    assert!(reloaded.contains("already shown"), "{reloaded}");
    assert!(!reloaded.contains(&secret));
    assert_eq!(
        count(&db, "SELECT count(*) FROM apps"),
        1,
        "a reload made no second app"
    );
    let edit = browser
        .find(Locator::Css("a[href$='/edit']"))
        .await
        .expect("edit link")
        .attr("href")
        .await
        .unwrap()
        .expect("href");
    let app_page = format!("{base}{}", edit.trim_end_matches("/edit"));
    let introspect_url = format!("{base}/t/acme/oauth/introspect");

    // 3. Kit's authorize step in the browser: creator sign-up and consent.
    let authorize = format!(
        "{authorization_url}?client_id={client_id}&response_type=code&redirect_uri={}&state=kit-state",
        url::form_urlencoded::byte_serialize(callback.as_bytes()).collect::<String>()
    );
    browser.goto(&authorize).await.unwrap();
    shot(&browser, "04-creator-sign-in").await;
    click(&browser, "a[href*='/signup']").await;
    browser
        .wait()
        .for_element(Locator::Css("form[action='/t/acme/signup']"))
        .await
        .expect("creator sign-up page");
    fill(&browser, "#email", "creator@example.com").await;
    fill(&browser, "#password", "creator password 1").await;
    click(&browser, "form button.primary").await;
    // Sign-up does not sign in (issue 13): it leads back to the sign-in
    // page, which keeps Kit's authorize request, with the neutral notice.
    browser
        .wait()
        .for_element(Locator::Css(
            "form[action='/t/acme/login'] input[name=next][value*='/oauth/authorize']",
        ))
        .await
        .expect("sign-in page after sign-up");
    assert!(body_text(&browser)
        .await
        .contains("If this email was new, your account is ready: sign in to continue."));
    assert_clean_console(&http, &log_url, "sign-in after sign-up").await;
    fill(&browser, "#email", "creator@example.com").await;
    fill(&browser, "#password", "creator password 1").await;
    click(&browser, "form button.primary").await;
    browser
        .wait()
        .for_element(Locator::Css("button[value=allow]"))
        .await
        .expect("consent page");
    assert!(body_text(&browser).await.contains("Acme for Kit"));
    shot(&browser, "05-consent").await;
    click(&browser, "button[value=allow]").await;
    let landed = on_the_callback(&browser).await;
    // The loopback callback is not a page of kitauth: its 404 is the only
    // console entry allowed here.
    let errors = console_errors(&http, &log_url).await;
    assert!(
        errors.iter().all(|e| e.contains("/kit-callback?")),
        "console errors in Kit's authorize flow: {errors:?}"
    );
    let q: std::collections::HashMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(q.get("state").map(String::as_str), Some("kit-state"));
    let code = q.get("code").expect("the redirect carries a code").clone();

    // 4. Token and refresh over HTTP, exactly as Kit sends them.
    let (status, tokens) = kit_post(
        &http,
        &token_url,
        json!({
            "client_id": client_id, "client_secret": secret, "grant_type": "authorization_code",
            "code": code, "redirect_uri": KIT_APPS,
        }),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let refresh1 = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, refreshed) = kit_post(
        &http,
        &refresh_url,
        json!({
            "client_id": client_id, "grant_type": "refresh_token", "refresh_token": refresh1,
        }),
    )
    .await;
    assert_eq!(status, 200, "{refreshed}");
    let access = refreshed["access_token"].as_str().unwrap().to_string();
    let refresh2 = refreshed["refresh_token"].as_str().unwrap().to_string();
    assert!(access.starts_with("kat_") && refresh2.starts_with("krt_"));

    // 5. The install shows in the dashboard.
    browser
        .goto(&format!("{base}/admin/t/acme/installs"))
        .await
        .unwrap();
    let installs = body_text(&browser).await;
    assert!(
        installs.contains("creator@example.com") && installs.contains("active"),
        "{installs}"
    );
    shot(&browser, "06-installs").await;
    browser.goto(&format!("{base}/admin/t/acme")).await.unwrap();
    let home = body_text(&browser).await;
    assert!(home.to_lowercase().contains("active installs"));
    assert_eq!(text_of(&browser, "#active-installs").await, "1");
    shot(&browser, "07-home").await;

    // 6. Rotate the secret with a 1 hour grace: both secrets work. The
    // "no time" confirmation shows only when "no time" is chosen.
    browser.goto(&app_page).await.unwrap();
    let confirm_now = browser.find(Locator::Css("#confirm-now")).await.unwrap();
    assert!(
        !confirm_now.is_displayed().await.unwrap(),
        "hidden for 1 hour"
    );
    browser
        .find(Locator::Css("#grace option[value='0']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert!(
        confirm_now.is_displayed().await.unwrap(),
        "shown for no time"
    );
    let grace = browser
        .find(Locator::Css("#grace option[value='3600']"))
        .await
        .expect("1 hour option");
    grace.click().await.unwrap();
    click(&browser, "form.rotate button.primary").await;
    let secret2 = text_of(&browser, "#new-secret").await;
    assert!(secret2.starts_with("kcs_") && secret2 != secret);
    assert!(body_text(&browser)
        .await
        .contains("keep working for 1 hour"));
    shot(&browser, "08-secret-rotated").await;
    assert_clean_console(&http, &log_url, "secret rotated").await;
    assert_eq!(count(&db, "SELECT count(*) FROM client_secrets"), 2);
    browser.refresh().await.unwrap();
    assert!(body_text(&browser).await.contains("already shown"));
    assert_eq!(
        count(&db, "SELECT count(*) FROM client_secrets"),
        2,
        "a reload rotated nothing"
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM client_secrets WHERE expires_at IS NULL"
        ),
        1,
        "the secret pasted into Kit keeps no expiry"
    );
    for s in [&secret, &secret2] {
        let (status, info) = introspect(&http, &introspect_url, &client_id, s, &access).await;
        assert_eq!(status, 200, "secret {}… works", &s[..8]);
        assert_eq!(info["active"], true);
    }

    // 7. Revoke the install in the dashboard; the token is dead.
    browser
        .goto(&format!("{base}/admin/t/acme/installs"))
        .await
        .unwrap();
    click(&browser, "table.installs a[href*='/installs/']").await;
    browser
        .wait()
        .for_element(Locator::Css("input[name=confirm]"))
        .await
        .expect("grant page");
    assert!(body_text(&browser).await.contains("Token history"));
    shot(&browser, "09-install").await;
    click(&browser, "input[name=confirm]").await;
    click(&browser, "form.danger-zone button.danger").await;
    browser
        .wait()
        .for_element(Locator::Css(".flash-success"))
        .await
        .expect("flash after revoking");
    assert!(body_text(&browser).await.contains("The install is revoked"));
    let (status, info) = introspect(&http, &introspect_url, &client_id, &secret2, &access).await;
    assert_eq!(status, 200);
    assert_eq!(info["active"], false, "the access token is dead");
    let (status, err) = kit_post(
        &http,
        &refresh_url,
        json!({
            "client_id": client_id, "grant_type": "refresh_token", "refresh_token": refresh2,
        }),
    )
    .await;
    assert_eq!(
        (status, err["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // 8. The other main pages.
    for (path, name, expect) in [
        ("/admin/t/acme/apps", "10-apps", "Acme for Kit"),
        ("/admin/t/acme/audit", "11-audit", "grant.revoked"),
        ("/admin/t/acme/members", "12-members", "dev@acme.example"),
        (
            "/admin/t/acme/settings",
            "13-settings",
            "Consent page branding",
        ),
        (
            "/admin/t/acme/creators",
            "14-creators",
            "creator@example.com",
        ),
    ] {
        browser.goto(&format!("{base}{path}")).await.unwrap();
        let text = body_text(&browser).await;
        assert!(text.contains(expect), "{path} shows {expect:?}");
        shot(&browser, name).await;
        assert_clean_console(&http, &log_url, path).await;
    }
    // 9. Delegated sign-in: the tenant's own login page (the test's login
    // service, with its own accounts) signs the creator in.
    let tenant_id = count(&db, "SELECT id FROM tenants WHERE slug = 'acme'");
    let login_key = kitauth::db::models::ApiKey::create(
        &mut db.conn(),
        tenant_id,
        &kitauth::db::models::NewApiKey {
            name: "login service".into(),
            scopes: vec![kitauth::db::models::ApiScope::Login],
            expires_in_days: None,
            created_by: "test".into(),
        },
    )
    .unwrap()
    .1;
    let accounts = vec![login_service::Account {
        subject: "acct_1815".into(),
        email: "ada@acme-product.example".into(),
        name: "Ada Lovelace".into(),
        password: "analytical engine".into(),
    }];
    let service =
        login_service::LoginService::start(&base, "acme", &login_key, accounts, Some(86400)).await;
    browser
        .goto(&format!("{base}/admin/t/acme/settings"))
        .await
        .unwrap();
    click(&browser, "input[name=creator_signin][value=delegated]").await;
    fill(&browser, "#login_url", &service.login_url()).await;
    shot(&browser, "17-settings-delegated").await;
    click(&browser, "#sign-in button.primary").await;
    browser
        .wait()
        .for_element(Locator::Css(".flash-success"))
        .await
        .expect("sign-in saved");
    assert_clean_console(&http, &log_url, "delegated sign-in saved").await;
    // The tenant cache keeps a tenant up to 5 s.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    browser
        .goto(&authorize.replace("kit-state", "kit-state-delegated"))
        .await
        .unwrap();
    browser
        .wait()
        .for_element(Locator::Css("#sign-in"))
        .await
        .expect("the tenant's login page");
    assert!(browser
        .current_url()
        .await
        .unwrap()
        .as_str()
        .starts_with(&format!("{}?login_challenge=klc_", service.login_url())));
    assert_eq!(text_of(&browser, "#app-name").await, "Acme for Kit");
    fill(&browser, "#email", "ada@acme-product.example").await;
    fill(&browser, "#password", "analytical engine").await;
    shot(&browser, "18-tenant-login").await;
    click(&browser, "#sign-in").await;
    browser
        .wait()
        .for_element(Locator::Css("button[value=allow]"))
        .await
        .expect("kitauth's consent page after the tenant's login");
    assert!(body_text(&browser)
        .await
        .contains("Ada Lovelace (acct_1815)"));
    shot(&browser, "19-delegated-consent").await;
    assert_clean_console(&http, &log_url, "delegated consent").await;
    click(&browser, "button[value=allow]").await;
    let landed = on_the_callback(&browser).await;
    let _ = console_errors(&http, &log_url).await; // the callback's own 404
    let q: std::collections::HashMap<String, String> = landed.query_pairs().into_owned().collect();
    assert_eq!(
        q.get("state").map(String::as_str),
        Some("kit-state-delegated")
    );
    let (status, tokens) = kit_post(
        &http,
        &token_url,
        json!({
            "client_id": client_id, "client_secret": secret2, "grant_type": "authorization_code",
            "code": q["code"], "redirect_uri": KIT_APPS,
        }),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let (_, info) = introspect(&http, &introspect_url, &client_id, &secret2, &access).await;
    assert_eq!(info["sub"], "acct_1815", "{info}");
    browser
        .goto(&format!("{base}/admin/t/acme/creators"))
        .await
        .unwrap();
    let creators = body_text(&browser).await;
    assert!(
        creators.contains("acct_1815") && creators.contains("your own accounts are the creators")
    );
    shot(&browser, "20-delegated-creators").await;
    browser
        .goto(&format!("{base}/admin/t/acme/installs"))
        .await
        .unwrap();
    assert!(body_text(&browser).await.contains("acct_1815"));
    shot(&browser, "21-delegated-installs").await;
    assert_clean_console(&http, &log_url, "delegated creators and installs").await;

    browser
        .set_window_size(390, 844)
        .await
        .expect("phone-sized window");
    browser.goto(&app_page).await.unwrap();
    shot(&browser, "15-phone-app").await;
    assert_fits_phone(
        &browser,
        "table.secrets .status, table.secrets button",
        "dev@acme.example",
    )
    .await;
    browser
        .goto(&format!("{base}/admin/t/acme/installs"))
        .await
        .unwrap();
    shot(&browser, "16-phone-installs").await;
    assert_fits_phone(
        &browser,
        "table.installs .status, table.installs a",
        "dev@acme.example",
    )
    .await;
    assert_clean_console(&http, &log_url, "phone pages").await;

    browser.close().await.expect("close the browser");
    let _ = std::fs::remove_dir_all(&profile);
}
