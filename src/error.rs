//! Errors: one internal type, and one responder per surface — RFC 6749 JSON
//! for the OAuth endpoints, an HTML page for browsers.

use std::io::Cursor;

use diesel::result::Error as DieselError;
use rocket::http::{ContentType, Header, Status};
use rocket::request::Request;
use rocket::response::{self, Responder, Response};
use rocket_dyn_templates::{context, Template};

/// What can go wrong below the handlers.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the database is unavailable")]
    Unavailable,
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("database error: {0}")]
    Database(DieselError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The error codes of RFC 6749 (§4.1.2.1, §5.2) and RFC 6750 (§3.1) that
/// kitauth answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    UnsupportedGrantType,
    InvalidScope,
    InvalidToken,
    AccessDenied,
    UnsupportedResponseType,
    ServerError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as it appears in an answer's `error` field.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An RFC 6749 §5.2 error response.
#[derive(Debug)]
pub struct OAuthError {
    pub status: Status,
    pub error: ErrorCode,
    pub description: String,
    /// Set when the client tried HTTP Basic authentication.
    pub www_authenticate: Option<String>,
    /// Seconds for a `Retry-After` header (429 answers).
    pub retry_after: Option<u64>,
}

impl OAuthError {
    pub fn new(status: Status, error: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            www_authenticate: None,
            retry_after: None,
        }
    }
    /// `429` after too many failed client authentications: the RFC 6749
    /// `invalid_client` error (the client is refused, not the request
    /// malformed) with `Retry-After`.
    pub fn too_many_failures(wait_secs: u64) -> Self {
        let wait_secs = wait_secs.max(1);
        let mut e = Self::new(
            Status::TooManyRequests,
            ErrorCode::InvalidClient,
            format!("too many failed client authentications; retry after {wait_secs} seconds"),
        );
        e.retry_after = Some(wait_secs);
        e
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, ErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, ErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(Status::Unauthorized, ErrorCode::InvalidClient, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, ErrorCode::UnsupportedGrantType, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, ErrorCode::InvalidScope, d)
    }
    pub fn unavailable() -> Self {
        Self::new(
            Status::ServiceUnavailable,
            ErrorCode::TemporarilyUnavailable,
            "the service is temporarily unavailable, try again shortly",
        )
    }
    pub fn server_error() -> Self {
        Self::new(
            Status::InternalServerError,
            ErrorCode::ServerError,
            "the server could not complete the request",
        )
    }
    /// Whether this is a failed client authentication (`401 invalid_client`):
    /// what the failure budget counts.
    pub fn is_client_auth_failure(&self) -> bool {
        self.error == ErrorCode::InvalidClient && self.status == Status::Unauthorized
    }
    pub fn with_basic_challenge(mut self) -> Self {
        self.www_authenticate = Some("Basic realm=\"kitauth\", charset=\"UTF-8\"".into());
        self
    }
    pub fn body(&self) -> String {
        serde_json::json!({"error": self.error.as_str(), "error_description": self.description})
            .to_string()
    }
}

impl From<Error> for OAuthError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable => OAuthError::unavailable(),
            Error::NotFound => OAuthError::invalid_request("not found"),
            other => {
                tracing::error!(error = %other, "oauth request failed");
                OAuthError::server_error()
            }
        }
    }
}

/// A JSON response with the no-store headers every OAuth answer carries.
pub fn no_store_json(status: Status, body: String) -> Response<'static> {
    Response::build()
        .status(status)
        .header(ContentType::JSON)
        .raw_header("Cache-Control", "no-store")
        .raw_header("Pragma", "no-cache")
        .sized_body(body.len(), Cursor::new(body))
        .finalize()
}

impl<'r> Responder<'r, 'static> for OAuthError {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let mut resp = no_store_json(self.status, self.body());
        if let Some(challenge) = self.www_authenticate {
            resp.set_header(Header::new("WWW-Authenticate", challenge));
        }
        if let Some(secs) = self.retry_after {
            resp.set_header(Header::new("Retry-After", secs.to_string()));
        }
        Ok(resp)
    }
}

/// An HTML error page in the site layout.
#[derive(Debug)]
pub struct PageError {
    pub status: Status,
    pub title: String,
    pub message: String,
    /// A link out of the error: its text and where it goes.
    pub back: Option<(String, String)>,
}

impl PageError {
    pub fn new(status: Status, title: impl Into<String>, message: impl Into<String>) -> Self {
        PageError {
            status,
            title: title.into(),
            message: message.into(),
            back: None,
        }
    }
    /// The page with a link out of the error (`href` is shown as given).
    pub fn with_back(mut self, text: impl Into<String>, href: impl Into<String>) -> Self {
        self.back = Some((text.into(), href.into()));
        self
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(Status::BadRequest, "Invalid request", message)
    }
    pub fn not_found() -> Self {
        Self::new(
            Status::NotFound,
            "Not found",
            "The page you asked for does not exist.",
        )
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(Status::Forbidden, "Forbidden", message)
    }
    pub fn csrf() -> Self {
        Self::forbidden("The form has expired or did not come from this site. Go back, reload the page and try again.")
    }
    pub fn unavailable() -> Self {
        Self::new(
            Status::ServiceUnavailable,
            "Temporarily unavailable",
            "The service cannot reach its database right now. Please try again in a moment.",
        )
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        match e {
            Error::Unavailable => PageError::unavailable(),
            Error::NotFound => PageError::not_found(),
            Error::Conflict(what) => PageError::new(
                Status::Conflict,
                "Already exists",
                format!("That conflicts with an existing record ({what})."),
            ),
            other => {
                tracing::error!(error = %other, "page request failed");
                PageError::new(
                    Status::InternalServerError,
                    "Something went wrong",
                    "The server could not complete the request.",
                )
            }
        }
    }
}

impl<'r> Responder<'r, 'static> for PageError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        // Dashboard errors keep the dashboard's top bar.
        let admin = req.uri().path().as_str().starts_with("/admin");
        let template = Template::render(
            "error",
            context! {
                status: self.status.code,
                title: &self.title,
                message: &self.message,
                admin,
                back: self.back.as_ref().map(|(text, href)| context! { text, href }),
            },
        );
        let mut resp = template.respond_to(req)?;
        resp.set_status(self.status);
        Ok(resp)
    }
}
