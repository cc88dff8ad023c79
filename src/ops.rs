//! Operations endpoints: liveness, readiness, metrics.

use diesel::prelude::*;
use rocket::http::{ContentType, Status};
use rocket::request::{FromRequest, Outcome, Request};
use rocket::{get, State};

use crate::auth::ClientCache;
use crate::config::AppConfig;
use crate::crypto;
use crate::db::batch::Batcher;
use crate::db::models::App;
use crate::db::Db;
use crate::error::Error;
use crate::metrics::ClientStates;
use crate::metrics::Metrics;
use crate::oauth::introspect::AccessTokenLookups;

#[get("/healthz")]
pub fn healthz() -> &'static str {
    "ok\n"
}

#[get("/readyz")]
pub async fn readyz(db: &State<Db>) -> (Status, &'static str) {
    let ok = db
        .run(|conn| {
            diesel::sql_query("SELECT 1")
                .execute(conn)
                .map_err(Error::from)
        })
        .await
        .is_ok();
    if ok {
        (Status::Ok, "ready\n")
    } else {
        (
            Status::ServiceUnavailable,
            "not ready: database unreachable\n",
        )
    }
}

/// Allowed to read `/metrics`: the configured bearer token, or with no token
/// configured, a caller on the loopback interface.
pub struct MetricsAccess;

#[rocket::async_trait]
impl<'r> FromRequest<'r> for MetricsAccess {
    type Error = ();

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ()> {
        let Some(config) = req.rocket().state::<AppConfig>() else {
            return Outcome::Error((Status::InternalServerError, ()));
        };
        match config.metrics_token.as_deref().filter(|t| !t.is_empty()) {
            Some(expected) => {
                let presented = req
                    .headers()
                    .get_one("Authorization")
                    .and_then(|h| h.strip_prefix("Bearer "))
                    .unwrap_or("");
                if crypto::ct_eq(&crypto::digest(presented), &crypto::digest(expected)) {
                    Outcome::Success(MetricsAccess)
                } else {
                    Outcome::Error((Status::Unauthorized, ()))
                }
            }
            None => match req.remote().map(|r| r.ip()) {
                Some(ip) if ip.is_loopback() => Outcome::Success(MetricsAccess),
                _ => Outcome::Error((Status::Forbidden, ())),
            },
        }
    }
}

#[get("/metrics")]
pub fn metrics(
    _access: MetricsAccess,
    metrics: &State<Metrics>,
    db: &State<Db>,
    clients: &State<ClientCache>,
    token_clients: &State<ClientCache<App>>,
    lookups: &State<Batcher<AccessTokenLookups>>,
) -> (ContentType, String) {
    let states = ClientStates {
        introspect: clients,
        token: token_clients,
        lookups: lookups.stats(),
    };
    (
        ContentType::new("text", "plain").with_params(("version", "0.0.4")),
        metrics.render(db, &states),
    )
}

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![healthz, readyz, metrics]
}
