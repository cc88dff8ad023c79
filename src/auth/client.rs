//! Client authentication on the token, revoke and introspect endpoints:
//! `client_secret_basic` or `client_secret_post`. A Bearer header is never
//! client authentication and is ignored.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use diesel::prelude::*;
use diesel::PgConnection;
use rocket::request::{FromRequest, Outcome, Request};

use crate::db::models::client_secret::SecretCheck;
use crate::db::models::{App, AppKey, ClientSecret, NewAuditEvent, SecretKey};
use crate::db::schema::{apps, client_secrets};
use crate::error::{Error, OAuthError};

/// The `Authorization` header, when it carries HTTP Basic credentials.
#[derive(Debug, Clone)]
pub enum BasicAuth {
    Absent,
    Present { client_id: String, secret: String },
    Malformed,
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for BasicAuth {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, Self::Error> {
        Outcome::Success(parse_basic(req.headers().get_one("Authorization")))
    }
}

/// Parses `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
/// Any other scheme (Kit's Bearer) counts as absent.
pub fn parse_basic(header: Option<&str>) -> BasicAuth {
    let Some(header) = header else {
        return BasicAuth::Absent;
    };
    let header = header.trim();
    let Some((scheme, rest)) = header.split_once(' ') else {
        return BasicAuth::Absent;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return BasicAuth::Absent;
    }
    let decoded = match STANDARD.decode(rest.trim()) {
        Ok(d) if d.len() <= 4096 => d,
        _ => return BasicAuth::Malformed,
    };
    let Ok(text) = String::from_utf8(decoded) else {
        return BasicAuth::Malformed;
    };
    let Some((id, secret)) = text.split_once(':') else {
        return BasicAuth::Malformed;
    };
    match (decode_basic_part(id), decode_basic_part(secret)) {
        (Some(client_id), Some(secret)) if !client_id.is_empty() => {
            BasicAuth::Present { client_id, secret }
        }
        _ => BasicAuth::Malformed,
    }
}

/// One part of Basic credentials, decoded as one whole
/// `application/x-www-form-urlencoded` value (RFC 6749 §2.3.1): `+` is a
/// space and `%XX` a byte; nothing else is special, so an unencoded `&` or
/// `=` is part of the value (parsing the part as a form used to cut it
/// there, and a secret with garbage after an `&` authenticated). `None`
/// when the bytes are not UTF-8.
fn decode_basic_part(part: &str) -> Option<String> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// An empty `client_secret` is no secret, from Basic (`id:`) as from the
/// body (`client_secret=`): one rule for both. It authenticates only where
/// no secret is needed (a refresh of an app that allows it) and is
/// otherwise "client authentication is required", never a wrong secret.
fn non_empty(secret: &str) -> Option<String> {
    (!secret.is_empty()).then(|| secret.to_string())
}

/// The client's claimed identity, from Basic auth or the body.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub via_basic: bool,
    /// Set when the caller is over its failure budget (by
    /// `ClientAuthBudget`): a failure then adds to one aggregated audit
    /// event per caller and window of this many seconds, not a row each.
    pub throttled: Option<i64>,
}

impl ClientCredentials {
    /// The credentials from the `Authorization` header (`basic`) or the
    /// body's `client_id` and `client_secret` (`body_id`, `body_secret`).
    pub fn from_parts(
        basic: &BasicAuth,
        body_id: Option<&str>,
        body_secret: Option<&str>,
    ) -> Result<Self, OAuthError> {
        match basic {
            BasicAuth::Malformed => Err(OAuthError::invalid_client(
                "the Authorization header is not valid HTTP Basic",
            )
            .with_basic_challenge()),
            BasicAuth::Present { client_id, secret } => {
                for (field, value) in [("client_id", client_id), ("client_secret", secret)] {
                    crate::input::check(field, value)
                        .map_err(|e| OAuthError::invalid_request(e.description()))?;
                }
                if body_id.is_some_and(|id| id != client_id) {
                    return Err(OAuthError::invalid_request(
                        "client_id in the body differs from the Authorization header",
                    ));
                }
                if body_secret.is_some() {
                    return Err(OAuthError::invalid_request(
                        "use one client authentication method, not both",
                    ));
                }
                Ok(ClientCredentials {
                    client_id: client_id.clone(),
                    client_secret: non_empty(secret),
                    via_basic: true,
                    throttled: None,
                })
            }
            BasicAuth::Absent => {
                let client_id =
                    body_id.ok_or_else(|| OAuthError::invalid_client("client_id is required"))?;
                Ok(ClientCredentials {
                    client_id: client_id.to_string(),
                    client_secret: body_secret.and_then(non_empty),
                    via_basic: false,
                    throttled: None,
                })
            }
        }
    }

    fn fail(&self, description: &str) -> OAuthError {
        let e = OAuthError::invalid_client(description);
        if self.via_basic {
            e.with_basic_challenge()
        } else {
            e
        }
    }
}

/// Whether a request may omit the client secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretRequirement {
    Required,
    /// Refresh: Kit sends no secret; allowed when the app permits it.
    OptionalIfAppAllows,
}

/// What client authentication reads of an app: the whole row for the token
/// endpoint, which goes on to use it, or just `AppKey` for introspection.
pub trait ClientApp {
    fn id(&self) -> i64;
    fn client_id(&self) -> &str;
    fn disabled(&self) -> bool;
    fn refresh_without_secret(&self) -> bool;
}

macro_rules! client_app {
    ($t:ty) => {
        impl ClientApp for $t {
            fn id(&self) -> i64 {
                self.id
            }
            fn client_id(&self) -> &str {
                &self.client_id
            }
            fn disabled(&self) -> bool {
                self.disabled
            }
            fn refresh_without_secret(&self) -> bool {
                self.refresh_without_secret
            }
        }
    };
}
client_app!(App);
client_app!(AppKey);

/// A borrowed app (introspection's copy of a client) authenticates as is.
impl<T: ClientApp> ClientApp for &T {
    fn id(&self) -> i64 {
        (**self).id()
    }
    fn client_id(&self) -> &str {
        (**self).client_id()
    }
    fn disabled(&self) -> bool {
        (**self).disabled()
    }
    fn refresh_without_secret(&self) -> bool {
        (**self).refresh_without_secret()
    }
}

#[derive(Debug, Clone)]
pub struct AuthenticatedClient<A = App> {
    pub app: A,
    /// The secret that authenticated the request, if one was sent.
    pub secret_id: Option<i64>,
}

/// An app and its unrevoked secrets, as one query returns them.
pub type LoadedClient<A = App> = Option<(A, Vec<SecretKey>)>;

/// Loads the app named `client_id` with its unrevoked secrets in one round
/// trip (a left join: one row per secret).
pub fn load_client(
    conn: &mut PgConnection,
    tenant_id: i64,
    client_id: &str,
) -> QueryResult<LoadedClient> {
    let rows: Vec<(App, Option<SecretKey>)> = apps::table
        .left_join(
            client_secrets::table.on(client_secrets::app_id
                .eq(apps::id)
                .and(client_secrets::revoked_at.is_null())),
        )
        .filter(apps::tenant_id.eq(tenant_id))
        .filter(apps::client_id.eq(client_id))
        .select((App::as_select(), Option::<SecretKey>::as_select()))
        .load(conn)?;
    Ok(collect_client(rows))
}

/// Folds the left-joined rows (one per secret) into the app and its secrets.
pub fn collect_client<A>(rows: Vec<(A, Option<SecretKey>)>) -> LoadedClient<A> {
    let mut rows = rows.into_iter();
    let (app, first) = rows.next()?;
    let secrets = first
        .into_iter()
        .chain(rows.filter_map(|(_, s)| s))
        .collect();
    Some((app, secrets))
}

/// Authenticates a client of `tenant_id`. Failures that matter for security
/// (a wrong secret, a secret used after its grace period) are audited.
pub fn authenticate_client(
    conn: &mut PgConnection,
    tenant_id: i64,
    creds: &ClientCredentials,
    requirement: SecretRequirement,
    ip: Option<String>,
) -> Result<AuthenticatedClient, OAuthError> {
    authenticate_and_load(conn, tenant_id, creds, requirement, ip)?.0
}

/// `authenticate_client`, also returning what it read (the app and its
/// secrets, with the use it stamped, if it did), for a caller that keeps a
/// copy of the client (the token endpoint). The outer error is the
/// database's; the inner result is the authentication's.
pub fn authenticate_and_load(
    conn: &mut PgConnection,
    tenant_id: i64,
    creds: &ClientCredentials,
    requirement: SecretRequirement,
    ip: Option<String>,
) -> Result<(Result<AuthenticatedClient, OAuthError>, LoadedClient), OAuthError> {
    if !crate::db::models::app::looks_like_client_id(&creds.client_id) {
        return Ok((Err(creds.fail("unknown client")), None));
    }
    let mut loaded = load_client(conn, tenant_id, &creds.client_id).map_err(Error::from)?;
    let (result, write) = check_client(
        tenant_id,
        creds,
        requirement,
        ip,
        loaded
            .as_ref()
            .map(|(app, secrets)| (app, secrets.as_slice())),
    );
    let result = result.map(|c| AuthenticatedClient {
        app: c.app.clone(),
        secret_id: c.secret_id,
    });
    if let Some(write) = write {
        write.apply(conn)?;
        // The stamp just written is what the database now holds.
        if let (ClientAuthWrite::Touch(id), Some((_, secrets))) = (&write, loaded.as_mut()) {
            if let Some(secret) = secrets.iter_mut().find(|s| s.id == *id) {
                secret.last_used_at = Some(Utc::now());
            }
        }
    }
    Ok((result, loaded))
}

/// A write that client authentication asks for: recording a secret's use
/// (at most once a minute), or auditing a failure.
#[derive(Debug)]
pub enum ClientAuthWrite {
    Touch(i64),
    Audit(NewAuditEvent),
    /// A failure of a caller over budget: adds one to the count of the
    /// caller's `client.auth_throttled` event of the current window (the
    /// seconds given), or starts one.
    Throttled(NewAuditEvent, i64),
}

impl ClientAuthWrite {
    /// For log lines: what was to be written (never a secret).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientAuthWrite::Touch(_) => "client_secret.last_used_at",
            ClientAuthWrite::Audit(_) | ClientAuthWrite::Throttled(..) => "audit_event",
        }
    }

    pub fn apply(&self, conn: &mut PgConnection) -> Result<(), Error> {
        match self {
            ClientAuthWrite::Touch(id) => ClientSecret::touch(conn, *id).map(drop),
            ClientAuthWrite::Audit(event) => event.insert(conn).map(drop),
            ClientAuthWrite::Throttled(event, window) => event.add_to_window(conn, *window),
        }
        .map_err(Error::from)
    }
}

/// The decision half of `authenticate_client`, for callers that fetched the
/// app and its secrets in a larger query of their own (introspection).
/// Writes nothing: the write it asks for, if any, is the caller's to make
/// before answering.
pub fn check_client<A: ClientApp>(
    tenant_id: i64,
    creds: &ClientCredentials,
    requirement: SecretRequirement,
    ip: Option<String>,
    loaded: Option<(A, &[SecretKey])>,
) -> (
    Result<AuthenticatedClient<A>, OAuthError>,
    Option<ClientAuthWrite>,
) {
    if creds.client_id.len() > 200 {
        return (Err(creds.fail("unknown client")), None);
    }
    let Some((app, secrets)) = loaded else {
        return (Err(creds.fail("unknown client")), None);
    };
    if app.disabled() {
        return (Err(creds.fail("the client is disabled")), None);
    }
    let Some(secret) = creds.client_secret.as_deref() else {
        return match requirement {
            SecretRequirement::OptionalIfAppAllows if app.refresh_without_secret() => (
                Ok(AuthenticatedClient {
                    app,
                    secret_id: None,
                }),
                None,
            ),
            _ => (Err(creds.fail("client authentication is required")), None),
        };
    };
    let now = Utc::now();
    let audit = |action: &str, object: (&str, i64)| {
        let event = NewAuditEvent::new(tenant_id, format!("client:{}", app.client_id()), action)
            .ip(ip.clone());
        match creds.throttled {
            // Over budget: one event per caller and window, with the count.
            Some(window) => ClientAuthWrite::Throttled(
                event
                    .object("app", app.id())
                    .details(serde_json::json!({"count": 1, "last": action})),
                window,
            ),
            None => ClientAuthWrite::Audit(event.object(object.0, object.1)),
        }
    };
    match SecretKey::check(secrets, secret, now) {
        SecretCheck::Valid(id) => {
            // `touch` writes at most once a minute; skip its round trip when
            // the row just read says it would change nothing.
            let needs_touch = secrets
                .iter()
                .find(|s| s.id == id)
                .map_or(true, |s| s.stamp_due(now));
            (
                Ok(AuthenticatedClient {
                    app,
                    secret_id: Some(id),
                }),
                needs_touch.then_some(ClientAuthWrite::Touch(id)),
            )
        }
        SecretCheck::Expired(id) => {
            let event = audit("client_secret.used_after_grace", ("client_secret", id));
            (
                Err(creds.fail("the client secret has expired")),
                Some(event),
            )
        }
        SecretCheck::Invalid => {
            let event = audit("client.wrong_secret", ("app", app.id()));
            (Err(creds.fail("client authentication failed")), Some(event))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn app(disabled: bool, refresh_without_secret: bool) -> AppKey {
        AppKey {
            id: 3,
            client_id: "kit_abc".into(),
            refresh_without_secret,
            disabled,
            auth_version: 1,
        }
    }

    fn secret(id: i64, value: &str, expired: bool, stamped: bool) -> SecretKey {
        let now = Utc::now();
        SecretKey {
            id,
            secret_digest: crate::crypto::digest(value),
            expires_at: expired.then(|| now - chrono::Duration::minutes(1)),
            revoked_at: None,
            last_used_at: stamped.then_some(now),
        }
    }

    fn creds(secret: Option<&str>, via_basic: bool) -> ClientCredentials {
        ClientCredentials {
            client_id: "kit_abc".into(),
            client_secret: secret.map(str::to_string),
            via_basic,
            throttled: None,
        }
    }

    fn check(
        creds: &ClientCredentials,
        requirement: SecretRequirement,
        app: Option<&AppKey>,
        secrets: &[SecretKey],
    ) -> (Result<Option<i64>, OAuthError>, Option<ClientAuthWrite>) {
        let (result, write) = check_client(1, creds, requirement, None, app.map(|a| (a, secrets)));
        (result.map(|c| c.secret_id), write)
    }

    #[test]
    fn a_valid_secret_authenticates_and_asks_for_a_stamp_only_when_due() {
        let required = SecretRequirement::Required;
        let a = app(false, false);
        let fresh = [secret(1, "kcs_good", false, false)];
        let (result, write) = check(&creds(Some("kcs_good"), false), required, Some(&a), &fresh);
        assert_eq!(result.unwrap(), Some(1));
        assert!(matches!(write, Some(ClientAuthWrite::Touch(1))));
        let stamped = [secret(1, "kcs_good", false, true)];
        let (result, write) = check(
            &creds(Some("kcs_good"), false),
            required,
            Some(&a),
            &stamped,
        );
        assert_eq!(result.unwrap(), Some(1));
        assert!(write.is_none(), "stamped within the minute");
    }

    #[test]
    fn refusals_are_invalid_client_and_security_failures_are_audited() {
        let required = SecretRequirement::Required;
        let a = app(false, false);
        let secrets = [
            secret(1, "kcs_good", false, true),
            secret(2, "kcs_old", true, true),
        ];
        // (app, presented secret, description, audited action)
        type Case<'a> = (
            Option<&'a AppKey>,
            Option<&'a str>,
            &'a str,
            Option<&'a str>,
        );
        let cases: [Case; 5] = [
            (None, Some("kcs_good"), "unknown client", None),
            (
                Some(&a),
                Some("kcs_wrong"),
                "client authentication failed",
                Some("client.wrong_secret"),
            ),
            (
                Some(&a),
                Some("kcs_old"),
                "the client secret has expired",
                Some("client_secret.used_after_grace"),
            ),
            (Some(&a), None, "client authentication is required", None),
            (
                Some(&app(true, false)),
                Some("kcs_good"),
                "the client is disabled",
                None,
            ),
        ];
        for (app, presented, description, audited) in cases {
            let (result, write) = check(&creds(presented, true), required, app, &secrets);
            let e = result.unwrap_err();
            assert_eq!(
                (e.error, e.status, e.description.as_str()),
                (
                    ErrorCode::InvalidClient,
                    rocket::http::Status::Unauthorized,
                    description
                )
            );
            assert!(e.www_authenticate.is_some(), "Basic gets its challenge");
            let action = match write {
                Some(ClientAuthWrite::Audit(event)) => Some(event.action.clone()),
                None => None,
                Some(other) => panic!("{other:?}"),
            };
            assert_eq!(action.as_deref(), audited, "{description}");
        }
    }

    #[test]
    fn a_refresh_without_a_secret_passes_only_where_the_app_allows_it() {
        let optional = SecretRequirement::OptionalIfAppAllows;
        let (result, _) = check(&creds(None, false), optional, Some(&app(false, true)), &[]);
        assert_eq!(result.unwrap(), None);
        let (result, _) = check(&creds(None, false), optional, Some(&app(false, false)), &[]);
        assert_eq!(
            result.unwrap_err().description,
            "client authentication is required"
        );
    }

    #[test]
    fn a_caller_over_budget_adds_to_one_aggregated_event() {
        let mut c = creds(Some("kcs_wrong"), false);
        c.throttled = Some(300);
        let a = app(false, false);
        let (_, write) = check(&c, SecretRequirement::Required, Some(&a), &[]);
        assert!(matches!(write, Some(ClientAuthWrite::Throttled(_, 300))));
    }
}
