//! A tenant's own login service, small but real: an HTTP server on a free
//! loopback port with its own user table and session cookie. kitauth sends
//! the browser to `GET /login?login_challenge=…`; the service signs the
//! user in with its own password (or its session), then calls kitauth's
//! tenant API with a `login` key to accept (or, on Cancel, reject) the
//! challenge, and redirects the browser to the `redirect_to` it answers.
//! This is what a tenant writes; the README's accept handler is the same
//! thing in a few lines.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rocket::form::{Form, FromForm};
use rocket::http::{Cookie, CookieJar, Status};
use rocket::response::content::RawHtml;
use rocket::response::Redirect;
use rocket::{get, post, routes, Responder, State};
use serde_json::{json, Value};

/// One account of the tenant's own product.
#[derive(Clone, Debug)]
pub struct Account {
    pub subject: String,
    pub email: String,
    pub name: String,
    pub password: String,
}

/// What the service was built with and what it saw.
pub struct Service {
    /// kitauth's base URL and the tenant the service belongs to.
    kitauth: String,
    tenant: String,
    /// An API key of scope `login`.
    login_key: String,
    /// The user table: email → account.
    users: HashMap<String, Account>,
    /// Its own sessions: cookie value → subject.
    sessions: Mutex<HashMap<String, String>>,
    /// `remember_for` sent with every accept.
    remember_for: Option<i64>,
    /// Every login request it read (the API's JSON), for the test to check.
    pub seen: Mutex<Vec<Value>>,
    http: reqwest::Client,
}

/// The running service.
pub struct LoginService {
    pub url: String,
    pub state: Arc<Service>,
    _task: tokio::task::JoinHandle<()>,
}

const SESSION: &str = "tenant_session";

impl LoginService {
    /// Starts the service on a free loopback port, for `tenant` on the
    /// kitauth at `kitauth` (its base URL), with these accounts.
    pub async fn start(
        kitauth: &str,
        tenant: &str,
        login_key: &str,
        accounts: Vec<Account>,
        remember_for: Option<i64>,
    ) -> LoginService {
        let port = crate::common::free_port();
        let state = Arc::new(Service {
            kitauth: kitauth.to_string(),
            tenant: tenant.to_string(),
            login_key: login_key.to_string(),
            users: accounts.into_iter().map(|a| (a.email.clone(), a)).collect(),
            sessions: Mutex::new(HashMap::new()),
            remember_for,
            seen: Mutex::new(Vec::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
        });
        let config = rocket::Config {
            address: "127.0.0.1".parse().unwrap(),
            port,
            log_level: rocket::config::LogLevel::Off,
            secret_key: rocket::config::SecretKey::generate().expect("a secret key"),
            shutdown: rocket::config::Shutdown {
                ctrlc: false,
                ..Default::default()
            },
            ..rocket::Config::debug_default()
        };
        let rocket = rocket::custom(config)
            .manage(state.clone())
            .mount("/", routes![login_page, login_submit, healthz]);
        let task = tokio::spawn(async move {
            let _ = rocket.launch().await;
        });
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        for _ in 0..200 {
            if http.get(format!("{url}/healthz")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        LoginService {
            url,
            state,
            _task: task,
        }
    }

    /// The login page kitauth should redirect to.
    pub fn login_url(&self) -> String {
        format!("{}/login", self.url)
    }
}

impl Service {
    fn api(&self, path: &str) -> String {
        format!("{}/t/{}/api/v1/{path}", self.kitauth, self.tenant)
    }

    async fn login_request(&self, challenge: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(self.api(&format!("login-requests/{challenge}")))
            .bearer_auth(&self.login_key)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {}", body["detail"]));
        }
        self.seen.lock().unwrap().push(body.clone());
        Ok(body)
    }

    /// Accepts (or rejects) the challenge; the `redirect_to` kitauth answers.
    async fn decide(&self, challenge: &str, verb: &str, body: Value) -> Result<String, String> {
        let resp = self
            .http
            .post(self.api(&format!("login-requests/{challenge}/{verb}")))
            .bearer_auth(&self.login_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        match body["redirect_to"].as_str() {
            Some(to) if status.is_success() => Ok(to.to_string()),
            _ => Err(format!("{status}: {}", body["detail"])),
        }
    }

    async fn accept(&self, challenge: &str, who: &Account) -> Result<String, String> {
        let mut body = json!({"subject": who.subject, "email": who.email, "name": who.name});
        if let Some(secs) = self.remember_for {
            body["remember_for"] = json!(secs);
        }
        self.decide(challenge, "accept", body).await
    }

    fn account_of_subject(&self, subject: &str) -> Option<Account> {
        self.users.values().find(|a| a.subject == subject).cloned()
    }
}

// A test fixture's answer, made once per request: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Responder)]
enum Answer {
    Page(RawHtml<String>),
    Status((Status, RawHtml<String>)),
    Redirect(Redirect),
}

fn page(title: &str, body: &str) -> RawHtml<String> {
    RawHtml(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"icon\" href=\"data:,\"><title>{title}</title><style>body{{font-family:system-ui,sans-serif;background:#f5f3ff;\
         display:grid;place-items:center;min-height:100vh;margin:0}}main{{background:#fff;\
         padding:2rem;border-radius:12px;box-shadow:0 2px 12px #0002;width:min(24rem,90vw)}}\
         label,input,button{{display:block;width:100%;box-sizing:border-box;margin:.4rem 0}}\
         input{{padding:.6rem}}button{{padding:.6rem;border:0;border-radius:6px;background:#111;\
         color:#fff}}button.cancel{{background:#ddd;color:#111}}</style></head>\
         <body><main>{body}</main></body></html>"
    ))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn form_page(challenge: &str, app_name: &str, error: Option<&str>) -> RawHtml<String> {
    let error = error
        .map(|e| format!("<p role=\"alert\" id=\"error\">{}</p>", escape(e)))
        .unwrap_or_default();
    page(
        "Sign in to Acme",
        &format!(
            "<h1>Sign in to Acme</h1><p>to connect <strong id=\"app-name\">{}</strong> to Kit.</p>{error}\
             <form method=\"post\" action=\"/login\">\
             <input type=\"hidden\" name=\"login_challenge\" value=\"{}\">\
             <label for=\"email\">Email</label><input id=\"email\" name=\"email\" type=\"email\">\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\">\
             <button type=\"submit\" name=\"action\" value=\"sign-in\" id=\"sign-in\">Sign in</button>\
             <button type=\"submit\" name=\"action\" value=\"cancel\" class=\"cancel\" id=\"cancel\">Cancel</button>\
             </form>",
            escape(app_name),
            escape(challenge)
        ),
    )
}

fn failed(e: String) -> Answer {
    Answer::Status((Status::BadGateway, page("Error", &escape(&e))))
}

#[get("/healthz")]
fn healthz() -> &'static str {
    "ok"
}

#[get("/login?<login_challenge>")]
async fn login_page(
    login_challenge: &str,
    cookies: &CookieJar<'_>,
    state: &State<Arc<Service>>,
) -> Answer {
    let request = match state.login_request(login_challenge).await {
        Ok(r) => r,
        Err(e) => return failed(e),
    };
    // Signed in here already, or remembered by kitauth: no form.
    let signed_in = cookies
        .get_private(SESSION)
        .and_then(|c| state.sessions.lock().unwrap().get(c.value()).cloned());
    let known = signed_in.or_else(|| request["remembered_subject"].as_str().map(str::to_string));
    if let Some(account) = known.and_then(|s| state.account_of_subject(&s)) {
        return match state.accept(login_challenge, &account).await {
            Ok(to) => Answer::Redirect(Redirect::to(to)),
            Err(e) => failed(e),
        };
    }
    Answer::Page(form_page(
        login_challenge,
        request["app_name"].as_str().unwrap_or_default(),
        None,
    ))
}

#[derive(FromForm)]
struct LoginForm {
    login_challenge: String,
    email: String,
    password: String,
    action: String,
}

#[post("/login", data = "<form>")]
async fn login_submit(
    form: Form<LoginForm>,
    cookies: &CookieJar<'_>,
    state: &State<Arc<Service>>,
) -> Answer {
    if form.action == "cancel" {
        let body = json!({"error": "access_denied", "error_description": "the user cancelled"});
        return match state.decide(&form.login_challenge, "reject", body).await {
            Ok(to) => Answer::Redirect(Redirect::to(to)),
            Err(e) => failed(e),
        };
    }
    let account = state
        .users
        .get(&form.email)
        .filter(|a| a.password == form.password)
        .cloned();
    let Some(account) = account else {
        return Answer::Status((
            Status::Unauthorized,
            form_page(&form.login_challenge, "", Some("Wrong email or password.")),
        ));
    };
    let session = uuid::Uuid::new_v4().to_string();
    state
        .sessions
        .lock()
        .unwrap()
        .insert(session.clone(), account.subject.clone());
    cookies.add_private(Cookie::build((SESSION, session)).path("/").http_only(true));
    match state.accept(&form.login_challenge, &account).await {
        Ok(to) => Answer::Redirect(Redirect::to(to)),
        Err(e) => failed(e),
    }
}
