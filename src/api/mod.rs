//! The tenant API under `/t/{t}/api/v1/`: API keys (`kak_`), JSON in and
//! out, RFC 9457 problem details for every error, an OpenAPI 3.1 document
//! generated from these handlers (utoipa).
//!
//! # Adding a resource
//! 1. A file `src/api/<resource>.rs` with its handlers. Each handler takes
//!    the guard of its scope — [`auth::ReadKey`] for a GET, [`auth::WriteKey`]
//!    for a change, [`auth::LoginKey`] for the sign-in calls — which
//!    authenticates the key, binds it to the path's tenant, applies the
//!    rate limits and stamps its use. Use `key.tenant_id()` in every query.
//! 2. Bodies: [`body::ApiJson<T>`] with `#[serde(deny_unknown_fields)]`
//!    (size limit, text check, 400/422 naming the field). Creates take
//!    [`body::IdempotencyKey`] and run in [`idempotency::once`]; updates
//!    take [`body::IfMatch`] and call `check(&etag)` inside their
//!    transaction, after locking the row. Return [`body::ApiResult`]:
//!    `Answer::ok(..)`/`Answer::created(..)`, or a [`problem::Problem`].
//! 3. Call the model/flow functions the dashboard calls; write the audit
//!    record with `key.audit(action, object_type, id, details)` in the same
//!    transaction as the change.
//! 4. Put `#[utoipa::path(...)]` on each handler (tag, `security(("api_key"
//!    = ["read"]))`, the responses with `ref_errors!`-style problem
//!    answers), add the handler to [`routes`] and to `paths(...)` of
//!    [`ApiDoc`], and its types to `components(schemas(...))`.
//!
//! Ids are strings; times are RFC 3339 UTC (chrono's serde format).

pub mod api_keys;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod body;
pub mod creators;
pub mod idempotency;
pub mod installs;
pub mod login_requests;
pub mod problem;

use rocket::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

pub use auth::{ApiLimits, Caller, LoginKey, ReadKey, WriteKey};
pub use body::{Answer, ApiJson, ApiResult, IdempotencyKey, IfMatch};
pub use problem::Problem;

/// The query string of a list as its typed filter `T` (a struct deriving
/// `FromForm`), read exactly as Rocket reads `?<name>` parameters (decoded,
/// lenient, the first of repeated names). A request guard rather than
/// `?<filter..>`, so the OpenAPI document keeps its own parameter list.
pub struct QueryFilter<T>(pub T);

#[rocket::async_trait]
impl<'r, T> rocket::request::FromRequest<'r> for QueryFilter<T>
where
    T: for<'a> rocket::form::FromForm<'a> + Send + 'static,
{
    type Error = ();

    async fn from_request(
        req: &'r rocket::Request<'_>,
    ) -> rocket::request::Outcome<Self, Self::Error> {
        match rocket::form::Form::<T>::parse_iter(req.query_fields()) {
            Ok(filter) => rocket::request::Outcome::Success(QueryFilter(filter)),
            Err(_) => {
                rocket::request::Outcome::Error((rocket::http::Status::UnprocessableEntity, ()))
            }
        }
    }
}

/// The prefix of every API path.
pub const PREFIX: &str = "/t/<t>/api/v1";

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![
        openapi_json,
        apps::list,
        apps::get,
        apps::create,
        apps::update,
        apps::disable,
        apps::enable,
        apps::delete,
        apps::list_secrets,
        apps::rotate_secret,
        apps::revoke_secret,
        api_keys::list,
        api_keys::revoke,
        installs::list,
        installs::get,
        installs::revoke,
        installs::revoke_app,
        installs::revoke_creator,
        creators::list,
        creators::get,
        creators::create,
        creators::disable,
        creators::enable,
        audit::list,
        login_requests::get,
        login_requests::accept,
        login_requests::reject,
        login_requests::revoke_sessions,
        login_requests::signin_get,
        login_requests::signin_put,
    ]
}

/// True for `/t/{t}/api/...`: answered in problem details, errors included.
pub fn is_api_path(path: &str) -> bool {
    let mut segs = path.trim_start_matches('/').split('/');
    segs.next() == Some("t") && segs.next().is_some() && segs.next() == Some("api")
}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("kak_ API key; scopes read, write, login")
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kitauth tenant API",
        description = "Everything the dashboard does, for a tenant's own code. Authenticate with `Authorization: Bearer kak_…`. Scopes: `read` (every GET), `write` (every change), `login` (delegated sign-in only). Errors are RFC 9457 problem details.",
        version = "1"
    ),
    paths(
        openapi_json,
        apps::list,
        apps::get,
        apps::create,
        apps::update,
        apps::disable,
        apps::enable,
        apps::delete,
        apps::list_secrets,
        apps::rotate_secret,
        apps::revoke_secret,
        api_keys::list,
        api_keys::revoke,
        installs::list,
        installs::get,
        installs::revoke,
        installs::revoke_app,
        installs::revoke_creator,
        creators::list,
        creators::get,
        creators::create,
        creators::disable,
        creators::enable,
        audit::list,
        login_requests::get,
        login_requests::accept,
        login_requests::reject,
        login_requests::revoke_sessions,
        login_requests::signin_get,
        login_requests::signin_put,
    ),
    components(schemas(
        problem::Problem,
        problem::FieldError,
        crate::config::KitField,
        crate::config::KitPanel,
        installs::InstallView,
        installs::InstallList,
        installs::InstallDetail,
        installs::TokenView,
        installs::Revoked,
        creators::CreatorView,
        creators::CreatorList,
        creators::CreateCreator,
        audit::AuditEventView,
        audit::AuditEventList,
        login_requests::LoginRequestView,
        login_requests::AcceptLogin,
        login_requests::RejectLogin,
        login_requests::RedirectTo,
        login_requests::SessionsRevoked,
        login_requests::SignIn,
    )),
    modifiers(&Security)
)]
pub struct ApiDoc;

/// The OpenAPI 3.1 document (served and printed by `kitauth openapi`).
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The OpenAPI document of the API. Public (no key): it describes only the
/// API's shape, the same for every tenant.
#[utoipa::path(
    tag = "meta",
    params(("t" = String, Path, description = "tenant slug")),
    responses((status = 200, description = "the OpenAPI 3.1 document", content_type = "application/json"))
)]
#[get("/t/<t>/api/v1/openapi.json")]
pub fn openapi_json(t: &str) -> Answer {
    let _ = t;
    Answer::ok(openapi())
}
