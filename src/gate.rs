//! The input layer's gate before routing: a request whose query string or
//! path holds a value [`crate::input`] does not accept is answered here, in
//! its surface's format (OAuth JSON, RFC 9457 problem, HTML page), before
//! any route, guard or database call sees it. It lives beside the surfaces
//! it answers for, so the input layer itself imports none of them.

use rocket::fairing::{Fairing, Info, Kind};
use rocket::http::uri::Origin;
use rocket::http::Method;
use rocket::{get, Data, Request};

use crate::error::{OAuthError, PageError};
use crate::input::check_uri;

/// Where a refused request is routed, and why it was refused.
const BAD_INPUT_PATH: &str = "/_kitauth/bad-input";

struct Refused {
    description: String,
    field: String,
    surface: Surface,
}

/// Which format a refusal answers in.
#[derive(Clone, Copy)]
enum Surface {
    /// RFC 6749 JSON (the OAuth endpoints).
    OAuth,
    /// RFC 9457 problem details (the tenant API).
    Api,
    /// An HTML page.
    Page,
}

/// Refuses, before routing, any request whose query string or path holds a
/// value the input layer does not accept: the request is rerouted to one
/// handler that answers 400 in the surface's format, so no route, guard or
/// database call sees it.
pub struct BadInputGuard;

#[rocket::async_trait]
impl Fairing for BadInputGuard {
    fn info(&self) -> Info {
        Info {
            name: "input layer (query strings and paths)",
            kind: Kind::Request,
        }
    }

    async fn on_request(&self, req: &mut Request<'_>, _: &mut Data<'_>) {
        let path = req.uri().path().as_str().to_string();
        let query = req.uri().query().map(|q| q.as_str().to_string());
        let Err(e) = check_uri(&path, query.as_deref()) else {
            return;
        };
        let surface = if crate::api::is_api_path(&path) {
            Surface::Api
        } else if crate::oauth::is_api_path(&path) {
            Surface::OAuth
        } else {
            Surface::Page
        };
        req.local_cache(|| {
            Some(Refused {
                description: e.description(),
                field: e.field().to_string(),
                surface,
            })
        });
        req.set_method(Method::Get);
        if let Ok(origin) = Origin::parse(BAD_INPUT_PATH) {
            req.set_uri(origin);
        }
    }
}

#[derive(rocket::Responder)]
pub enum Refusal {
    OAuth(OAuthError),
    Api(crate::api::problem::Problem),
    Page(PageError),
}

#[get("/_kitauth/bad-input")]
pub fn bad_input(req_refused: RefusedGuard) -> Refusal {
    match req_refused.0 {
        Some((description, _, Surface::OAuth)) => {
            Refusal::OAuth(OAuthError::invalid_request(description))
        }
        // On the tenant API, a path that the input layer refuses names no
        // object (404, documented on every operation with an id); a refused
        // query parameter is an invalid field (422 naming it), as the
        // handlers' own parameter checks answer.
        Some((_, field, Surface::Api)) if field == "path" => {
            Refusal::Api(crate::api::problem::Problem::not_found())
        }
        Some((description, field, Surface::Api)) => {
            Refusal::Api(crate::api::problem::Problem::invalid(field, description))
        }
        Some((description, _, Surface::Page)) => Refusal::Page(PageError::bad_request(format!(
            "The request was refused: {description}."
        ))),
        None => Refusal::Page(PageError::not_found()),
    }
}

/// What the fairing recorded, if anything (a direct request finds nothing).
pub struct RefusedGuard(Option<(String, String, Surface)>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for RefusedGuard {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        let found: &Option<Refused> = req.local_cache(|| None);
        rocket::request::Outcome::Success(RefusedGuard(
            found
                .as_ref()
                .map(|r| (r.description.clone(), r.field.clone(), r.surface)),
        ))
    }
}

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![bad_input]
}
