//! JSON in and out: the request body guard ([`ApiJson`]), the text check,
//! the `Idempotency-Key` and `If-Match` headers, and [`Answer`].

use std::io::Cursor;

use rocket::data::{Data, FromData, Outcome as DataOutcome, ToByteUnit};
use rocket::http::{ContentType, Header, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::problem::{fail, FieldError, Problem};

/// The largest body the API reads (Rocket's `json` limit, default 16 KiB).
const DEFAULT_LIMIT: u64 = 16 * 1024;

/// A text the database and the pages can hold: no NUL, no control
/// characters. The one check of API text; swap for the central input
/// layer (`input.rs`) when it lands.
pub fn check_text(value: &str) -> Result<(), &'static str> {
    if value.chars().any(char::is_control) {
        Err("must not contain NUL or control characters")
    } else {
        Ok(())
    }
}

/// Every string (and object key) in `v` that `check_text` refuses, by path.
fn text_errors(v: &Value, path: &str, out: &mut Vec<FieldError>) {
    match v {
        Value::String(s) => {
            if let Err(m) = check_text(s) {
                out.push(FieldError {
                    field: path.to_string(),
                    message: m.into(),
                });
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                text_errors(item, &format!("{path}[{i}]"), out);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                let sub = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                if check_text(k).is_err() {
                    out.push(FieldError {
                        field: sub.escape_default().to_string(),
                        message: "a field name must not contain control characters".into(),
                    });
                    continue;
                }
                text_errors(item, &sub, out);
            }
        }
        _ => {}
    }
}

/// The field serde names in a data error ("unknown field `x`", "missing
/// field `y`"), or none.
fn field_of(message: &str) -> String {
    let quoted = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field `"));
    quoted.unwrap_or("").to_string()
}

/// A JSON body of type `T` (declare `#[serde(deny_unknown_fields)]`).
/// Oversized: 413; not JSON: 400; bad text, a wrong type, an unknown or
/// missing field: 422 naming the field. `digest` is the SHA-256 of the
/// body as parsed, for `Idempotency-Key`.
pub struct ApiJson<T> {
    pub value: T,
    pub digest: Vec<u8>,
}

#[rocket::async_trait]
impl<'r, T: DeserializeOwned + Send + 'static> FromData<'r> for ApiJson<T> {
    type Error = ();

    async fn from_data(req: &'r Request<'_>, data: Data<'r>) -> DataOutcome<'r, Self> {
        let limit = req
            .limits()
            .get("json")
            .unwrap_or_else(|| DEFAULT_LIMIT.bytes());
        let bytes = match data.open(limit).into_bytes().await {
            Ok(b) if b.is_complete() => b.into_inner(),
            Ok(_) => {
                let p = Problem::new(
                    Status::PayloadTooLarge,
                    "too-large",
                    "Payload too large",
                    format!("the body must not exceed {limit}"),
                );
                return DataOutcome::Error((fail(req, p), ()));
            }
            Err(_) => {
                return DataOutcome::Error((
                    fail(req, Problem::bad_request("the body could not be read")),
                    (),
                ))
            }
        };
        let v: Value = match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => {
                let p = Problem::bad_request(format!(
                    "the body is not valid JSON (line {}, column {})",
                    e.line(),
                    e.column()
                ));
                return DataOutcome::Error((fail(req, p), ()));
            }
        };
        let mut errors = Vec::new();
        text_errors(&v, "", &mut errors);
        if !errors.is_empty() {
            let mut p = Problem::new(
                Status::UnprocessableEntity,
                "invalid-request",
                "Invalid request",
                "text fields must not contain NUL or control characters",
            );
            p.errors = errors;
            return DataOutcome::Error((fail(req, p), ()));
        }
        let digest = crate::crypto::digest(&v.to_string());
        match serde_json::from_value::<T>(v) {
            Ok(value) => DataOutcome::Success(ApiJson { value, digest }),
            Err(e) => {
                let msg = e.to_string();
                let p = Problem::invalid(field_of(&msg), msg);
                DataOutcome::Error((fail(req, p), ()))
            }
        }
    }
}

/// The `Idempotency-Key` header of a create: 1 to 200 visible ASCII
/// characters, or absent.
pub struct IdempotencyKey(pub Option<String>);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IdempotencyKey {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        match req.headers().get_one("Idempotency-Key") {
            None => Outcome::Success(IdempotencyKey(None)),
            Some(k) if (1..=200).contains(&k.len()) && k.bytes().all(|b| b.is_ascii_graphic()) => {
                Outcome::Success(IdempotencyKey(Some(k.to_string())))
            }
            Some(_) => Outcome::Error((
                fail(
                    req,
                    Problem::new(
                        Status::BadRequest,
                        "bad-request",
                        "Bad request",
                        "Idempotency-Key must be 1 to 200 visible ASCII characters",
                    )
                    .with_field("Idempotency-Key", "1 to 200 visible ASCII characters"),
                ),
                (),
            )),
        }
    }
}

/// The `If-Match` header of an update, or absent (last writer wins).
pub struct IfMatch(pub Option<String>);

impl IfMatch {
    /// 412 unless absent, `*`, or one of the listed tags is `etag`.
    pub fn check(&self, etag: &str) -> Result<(), Problem> {
        match &self.0 {
            None => Ok(()),
            Some(h) if h.trim() == "*" => Ok(()),
            Some(h) if h.split(',').any(|t| t.trim() == etag) => Ok(()),
            Some(_) => Err(Problem::precondition_failed()),
        }
    }
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for IfMatch {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        Outcome::Success(IfMatch(
            req.headers().get_one("If-Match").map(|s| s.to_string()),
        ))
    }
}

/// A JSON answer, with the object's `ETag` when it has one, and
/// `Idempotent-Replayed: true` when it is a stored first answer.
#[derive(Debug)]
pub struct Answer {
    pub status: Status,
    pub body: Value,
    pub etag: Option<String>,
    pub replayed: bool,
}

impl Answer {
    pub fn ok(body: impl Serialize) -> Answer {
        Answer::with(Status::Ok, body)
    }
    pub fn created(body: impl Serialize) -> Answer {
        Answer::with(Status::Created, body)
    }
    pub fn with(status: Status, body: impl Serialize) -> Answer {
        Answer {
            status,
            body: serde_json::to_value(body).unwrap_or(Value::Null),
            etag: None,
            replayed: false,
        }
    }
    pub fn etag(mut self, etag: String) -> Answer {
        self.etag = Some(etag);
        self
    }
}

impl<'r> Responder<'r, 'static> for Answer {
    fn respond_to(self, _: &'r Request<'_>) -> response::Result<'static> {
        let body = self.body.to_string();
        let mut resp = Response::build()
            .status(self.status)
            .header(ContentType::JSON)
            .raw_header("Cache-Control", "no-store")
            .sized_body(body.len(), Cursor::new(body))
            .finalize();
        if let Some(etag) = self.etag {
            resp.set_header(Header::new("ETag", etag));
        }
        if self.replayed {
            resp.set_header(Header::new("Idempotent-Replayed", "true"));
        }
        Ok(resp)
    }
}

pub type ApiResult<T = Answer> = Result<T, Problem>;
