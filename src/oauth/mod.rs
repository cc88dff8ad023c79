//! The Kit-facing surface: authorize, token/refresh, revoke, introspect,
//! userinfo and metadata, per tenant under `/t/{tenant}`.

pub mod authorize;
pub mod ctx;
pub mod fast;
pub mod introspect;
pub mod login;
pub mod request;
pub mod rules;
pub mod token;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        authorize::authorize_get,
        authorize::authorize_post,
        authorize::login_get,
        authorize::login_post,
        authorize::logout,
        authorize::signup_get,
        authorize::signup_post,
        authorize::brand_css,
        login::continue_get,
        login::continue_post,
        token::token,
        token::refresh,
        token::revoke,
        introspect::introspect,
        introspect::userinfo,
        introspect::metadata,
    ]
}

/// Paths answered in RFC 6749 JSON rather than HTML, errors included.
pub fn is_api_path(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    if segs.next() != Some("t") {
        return false;
    }
    let _tenant = segs.next();
    match (segs.next(), segs.next()) {
        (Some("oauth"), Some(endpoint)) => endpoint != "authorize",
        (Some(".well-known"), _) => true,
        _ => false,
    }
}
