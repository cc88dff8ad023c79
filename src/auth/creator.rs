//! The creator's session on one tenant's hosted pages: an opaque token in a
//! cookie scoped to `/t/{tenant}`; only its digest is stored.

use rocket::http::{Cookie, CookieJar, SameSite};

pub const COOKIE: &str = "kitauth_creator";

pub struct CreatorSessionCookie;

impl CreatorSessionCookie {
    pub fn path(slug: &str) -> String {
        format!("/t/{slug}")
    }

    pub fn read(cookies: &CookieJar<'_>) -> Option<String> {
        cookies.get(COOKIE).map(|c| c.value().to_string())
    }

    pub fn set(cookies: &CookieJar<'_>, slug: &str, token: String, secure: bool) {
        let cookie = Cookie::build((COOKIE, token))
            .path(Self::path(slug))
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(rocket::time::Duration::hours(
                crate::db::models::end_user::CREATOR_SESSION_HOURS,
            ))
            .build();
        cookies.add(cookie);
    }

    pub fn clear(cookies: &CookieJar<'_>, slug: &str) {
        cookies.remove(Cookie::build(COOKIE).path(Self::path(slug)).build());
    }
}
