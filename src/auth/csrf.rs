//! CSRF protection for every form: a random token in a private (encrypted,
//! authenticated) cookie, echoed in a hidden `csrf_token` field and compared
//! in constant time on every POST.
//!
//! Every HTML form (dashboard and hosted pages) is read by the
//! [`CsrfForm`] data guard: a handler gets its typed form only after the
//! body passed the input layer and the token matched, and never checks
//! anything itself.

use rocket::data::{self, Data, FromData};
use rocket::form::{Form, FromForm, ValueField};
use rocket::http::{Cookie, CookieJar, SameSite};
use rocket::request::{FromRequest, Outcome, Request};

use super::refusal::{self, Refusal};
use crate::crypto;
use crate::error::PageError;
use crate::params::{parse_body, read_body};

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

/// The visitor's CSRF token, creating the cookie when there is none (once
/// per request: a token this request created already is reused).
pub fn token_for(cookies: &CookieJar<'_>, secure: bool) -> String {
    if let Some(c) = cookies.get_private(COOKIE) {
        if crypto::looks_like(crypto::TokenKind::Csrf, c.value()) {
            return c.value().to_string();
        }
    }
    // A cookie added by this request is pending, not yet in the jar
    // (`get_pending` also answers the sent cookie, which is no new one).
    let sent = cookies.get(COOKIE).map(|c| c.value().to_string());
    if let Some(c) = cookies.get_pending(COOKIE) {
        if Some(c.value()) != sent.as_deref()
            && crypto::looks_like(crypto::TokenKind::Csrf, c.value())
        {
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

/// A form body whose CSRF token matched the visitor's cookie, as the typed
/// form `T` (fields of [`crate::input`]'s types).
///
/// The body is read as every body is (at most 16 KiB, JSON or
/// form-urlencoded, each field once and through the input layer), then the
/// token is compared in constant time, then `T` is built by Rocket's form
/// machinery (lenient: unknown fields such as `csrf_token` are ignored,
/// missing ones are empty). An unreadable body is a 400 page, a missing or
/// wrong token the 403 page of [`PageError::csrf`], before anything is
/// changed.
#[derive(Debug)]
pub struct CsrfForm<T>(pub T);

impl<T> std::ops::Deref for CsrfForm<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> CsrfForm<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

#[rocket::async_trait]
impl<'r, T> FromData<'r> for CsrfForm<T>
where
    T: for<'a> FromForm<'a> + Send + 'static,
{
    type Error = ();

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> data::Outcome<'r, Self> {
        match read_form(req, data).await {
            Ok(form) => data::Outcome::Success(CsrfForm(form)),
            Err(page) => data::Outcome::Error((refusal::refuse(req, Refusal::Page(page)), ())),
        }
    }
}

/// The form of a button that only needs its CSRF token (sign-out, enable).
#[derive(Debug, Default)]
pub struct NoFields;

#[rocket::async_trait]
impl<'v> FromForm<'v> for NoFields {
    type Context = ();

    fn init(_: rocket::form::Options) {}
    fn push_value(_: &mut (), _: ValueField<'v>) {}
    async fn push_data(_: &mut (), _: rocket::form::DataField<'v, '_>) {}
    fn finalize(_: ()) -> rocket::form::Result<'v, Self> {
        Ok(NoFields)
    }
}

async fn read_form<T>(req: &Request<'_>, data: Data<'_>) -> Result<T, PageError>
where
    T: for<'a> FromForm<'a>,
{
    // The dashboard's pages have always said which form failed; the hosted
    // pages show the reason alone.
    let admin = req.uri().path().as_str().starts_with("/admin");
    let unreadable = |why: String| {
        PageError::bad_request(if admin {
            format!("The form could not be read: {why}.")
        } else {
            why
        })
    };
    let bytes = read_body(data)
        .await
        .map_err(|e| unreadable(e.description()))?;
    let params = parse_body(&bytes).map_err(|e| unreadable(e.description()))?;
    if !verify(req.cookies(), params.get(FIELD).unwrap_or("")) {
        return Err(PageError::csrf());
    }
    let fields = fields(&bytes);
    Form::<T>::parse_iter(
        fields
            .iter()
            .map(|(k, v)| ValueField::from((k.as_str(), v.as_str()))),
    )
    .map_err(|errors| {
        let why = errors
            .iter()
            .next()
            .map(|e| e.kind.to_string())
            .unwrap_or_else(|| "a field is invalid".into());
        unreadable(why)
    })
}

/// The decoded fields of a body `parse_body` accepted (so every escape is
/// valid UTF-8 and every field appears once), in order. Names that Rocket
/// would read as nested (`a.b`, `a[b]`) are left out: a form field is only
/// ever its exact name, as `Params::get` read it.
fn fields(bytes: &[u8]) -> Vec<(String, String)> {
    plain_fields(bytes)
        .into_iter()
        .filter(|(name, _)| !name.contains(['.', '[', ']']))
        .collect()
}

fn plain_fields(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_start_matches(|c: char| c.is_ascii_whitespace() || c == '\u{feff}');
    if text.starts_with('{') {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).unwrap_or_default();
        return object
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                _ => None,
            })
            .collect();
    }
    form_urlencoded::parse(text.trim_end().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::fields;

    #[test]
    fn fields_decode_forms_and_json_objects_alike() {
        let form = fields(b"a=1+2&b=%C3%A9&&c=x%3Dy\n");
        assert_eq!(
            form,
            vec![
                ("a".to_string(), "1 2".to_string()),
                ("b".to_string(), "é".to_string()),
                ("c".to_string(), "x=y".to_string()),
            ]
        );
        let json = fields(br#" {"a":"1","n":null}"#);
        assert_eq!(json, vec![("a".to_string(), "1".to_string())]);
        assert!(fields(b"confirm.x=yes&confirm%5B%5D=yes").is_empty());
    }
}
