//! RFC 9457 problem details: every error of the API, Rocket's own included.

use std::io::Cursor;
use std::sync::Mutex;

use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use serde::Serialize;

use crate::error::Error;

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as a JSON path (`redirect_uris[1]`), or a header name.
    #[schema(example = "name")]
    pub field: String,
    #[schema(example = "the name must have 1 to 200 characters")]
    pub message: String,
}

/// An `application/problem+json` answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    #[schema(example = "https://kitauth.dev/problems/invalid-request")]
    pub kind: String,
    #[schema(example = "Invalid request")]
    pub title: String,
    #[schema(example = 422)]
    pub status: u16,
    #[schema(example = "the body has an invalid field")]
    pub detail: String,
    /// Each invalid field (empty when the problem is not about fields).
    pub errors: Vec<FieldError>,
    #[serde(skip)]
    #[schema(ignore)]
    pub retry_after: Option<u64>,
    #[serde(skip)]
    #[schema(ignore)]
    pub www_authenticate: bool,
}

const BASE: &str = "https://kitauth.dev/problems/";

impl Problem {
    pub fn new(status: Status, kind: &str, title: &str, detail: impl Into<String>) -> Problem {
        Problem {
            kind: format!("{BASE}{kind}"),
            title: title.to_string(),
            status: status.code,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
            www_authenticate: false,
        }
    }
    pub fn with_field(mut self, field: impl Into<String>, message: impl Into<String>) -> Problem {
        self.errors.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
        self
    }
    pub fn bad_request(detail: impl Into<String>) -> Problem {
        Problem::new(Status::BadRequest, "bad-request", "Bad request", detail)
    }
    /// 422: the request is well-formed JSON but a field is invalid.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Problem {
        let message = message.into();
        Problem::new(
            Status::UnprocessableEntity,
            "invalid-request",
            "Invalid request",
            "a field of the request is invalid",
        )
        .with_field(field, message)
    }
    pub fn unauthorized(detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(Status::Unauthorized, "unauthorized", "Unauthorized", detail);
        p.www_authenticate = true;
        p
    }
    pub fn forbidden(detail: impl Into<String>) -> Problem {
        Problem::new(Status::Forbidden, "forbidden", "Forbidden", detail)
    }
    pub fn not_found() -> Problem {
        Problem::new(
            Status::NotFound,
            "not-found",
            "Not found",
            "no such object or endpoint in this tenant",
        )
    }
    pub fn precondition_failed() -> Problem {
        Problem::new(
            Status::PreconditionFailed,
            "precondition-failed",
            "Precondition failed",
            "If-Match does not match the object's current etag; read it again",
        )
        .with_field("If-Match", "does not match the current etag")
    }
    pub fn too_many(wait_secs: u64, detail: impl Into<String>) -> Problem {
        let mut p = Problem::new(
            Status::TooManyRequests,
            "rate-limited",
            "Too many requests",
            detail,
        );
        p.retry_after = Some(wait_secs.max(1));
        p
    }
    pub fn unavailable() -> Problem {
        Problem::new(
            Status::ServiceUnavailable,
            "unavailable",
            "Temporarily unavailable",
            "the service is temporarily unavailable, try again shortly",
        )
    }
    pub fn server_error() -> Problem {
        Problem::new(
            Status::InternalServerError,
            "server-error",
            "Server error",
            "the server could not complete the request",
        )
    }

    /// What Rocket's own errors (no route, a failed guard) answer under the
    /// API, when the guard left no problem of its own.
    pub fn for_status(status: Status) -> Problem {
        match status.code {
            400 => Problem::bad_request("the request could not be read"),
            401 => Problem::unauthorized("a valid API key is required"),
            403 => Problem::forbidden("the API key does not allow this"),
            404 => Problem::not_found(),
            413 => Problem::new(
                status,
                "too-large",
                "Payload too large",
                "the request body is too large",
            ),
            422 => Problem::new(
                status,
                "invalid-request",
                "Invalid request",
                "the request is invalid",
            ),
            503 => Problem::unavailable(),
            500..=599 => Problem::server_error(),
            _ => Problem::new(
                status,
                "error",
                status.reason().unwrap_or("Error"),
                "the request was refused",
            ),
        }
    }
}

impl From<Error> for Problem {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable => Problem::unavailable(),
            Error::NotFound => Problem::not_found(),
            Error::Conflict(what) => Problem::new(
                Status::Conflict,
                "conflict",
                "Conflict",
                format!("that conflicts with an existing record ({what})"),
            ),
            other => {
                tracing::error!(error = %other, "api request failed");
                Problem::server_error()
            }
        }
    }
}

impl From<diesel::result::Error> for Problem {
    fn from(e: diesel::result::Error) -> Self {
        Problem::from(Error::from(e))
    }
}

impl<'r> Responder<'r, 'static> for Problem {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = serde_json::to_string(&self).unwrap_or_default();
        let mut resp = Response::build()
            .status(Status::from_code(self.status).unwrap_or(Status::InternalServerError))
            .header(ContentType::new("application", "problem+json"))
            .raw_header("Cache-Control", "no-store")
            .sized_body(body.len(), Cursor::new(body))
            .finalize();
        if let Some(secs) = self.retry_after {
            resp.set_header(Header::new("Retry-After", secs.to_string()));
        }
        if self.www_authenticate {
            resp.set_header(Header::new("WWW-Authenticate", "Bearer realm=\"kitauth\""));
        }
        Ok(resp)
    }
}

/// Where a failing guard leaves its problem for the catcher: Rocket hands a
/// catcher only the status.
#[derive(Default)]
pub struct ProblemSlot(Mutex<Option<Problem>>);

/// Records `problem` on the request and returns its status, for a guard's
/// `Outcome::Error`.
pub fn fail(req: &Request<'_>, problem: Problem) -> Status {
    let status = Status::from_code(problem.status).unwrap_or(Status::InternalServerError);
    if let Ok(mut slot) = req.local_cache(ProblemSlot::default).0.lock() {
        *slot = Some(problem);
    }
    status
}

/// The catcher's answer: the guard's problem if it left one for this
/// status, else the generic one.
pub fn caught(status: Status, req: &Request<'_>) -> Problem {
    let left = req
        .local_cache(ProblemSlot::default)
        .0
        .lock()
        .ok()
        .and_then(|mut s| s.take());
    match left {
        Some(p) if p.status == status.code => p,
        _ => Problem::for_status(status),
    }
}
