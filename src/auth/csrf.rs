//! CSRF protection for every form: a random token in a private (encrypted,
//! authenticated) cookie, echoed in a hidden `csrf_token` field and compared
//! in constant time on every POST.

use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::request::{FromRequest, Outcome, Request};

use crate::crypto;

pub const COOKIE: &str = "kitauth_csrf";
pub const FIELD: &str = "csrf_token";

/// The CSRF token for the current visitor; created on first use.
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

impl CsrfToken {
    pub fn value(&self) -> &str {
        &self.0
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for CsrfToken {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        let secure = req
            .rocket()
            .state::<crate::config::AppConfig>()
            .is_some_and(|c| c.secure_cookies);
        Outcome::Success(CsrfToken(token_for(req.cookies(), secure)))
    }
}

/// The visitor's CSRF token, creating the cookie when there is none.
pub fn token_for(cookies: &CookieJar<'_>, secure: bool) -> String {
    if let Some(c) = cookies.get_private(COOKIE) {
        if crypto::looks_like(crypto::TokenKind::Csrf, c.value()) {
            return c.value().to_string();
        }
    }
    let token = crypto::generate(crypto::TokenKind::Csrf).value;
    let cookie = Cookie::build((COOKIE, token.clone()))
        .path("/")
        .http_only(true)
        .secure(secure)
        .same_site(SameSite::Lax)
        .build();
    cookies.add_private(cookie);
    token
}

/// True when the submitted token matches the visitor's cookie.
pub fn verify(cookies: &CookieJar<'_>, submitted: &str) -> bool {
    match cookies.get_private(COOKIE) {
        Some(c) => {
            !submitted.is_empty() && crypto::ct_eq(c.value().as_bytes(), submitted.as_bytes())
        }
        None => false,
    }
}
