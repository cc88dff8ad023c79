//! Request guards: tenant, creator session, client credentials, CSRF
//! (and the CSRF-checked form reader), and the pages guards refuse with.

pub mod client;
pub mod client_cache;
pub mod creator;
pub mod csrf;
pub mod refusal;
pub mod resolver;
pub mod tenant;

pub use client::{authenticate_client, AuthenticatedClient, ClientCredentials, SecretRequirement};
pub use client_cache::ClientCache;
pub use creator::CreatorSessionCookie;
pub use csrf::{CsrfForm, CsrfToken};
pub use tenant::{CurrentTenant, TenantCache};

use rocket::request::Request;

/// The caller's IP address as a string, for audit records and throttling.
pub fn client_ip(req: &Request<'_>) -> Option<String> {
    req.client_ip().map(|ip| ip.to_string())
}

/// The caller's IP address (Rocket's `ip_header` decides whether a proxy's
/// `X-Real-IP` is trusted).
#[derive(Debug, Clone)]
pub struct ClientIp(pub Option<String>);

#[rocket::async_trait]
impl<'r> rocket::request::FromRequest<'r> for ClientIp {
    type Error = std::convert::Infallible;

    async fn from_request(req: &'r Request<'_>) -> rocket::request::Outcome<Self, Self::Error> {
        rocket::request::Outcome::Success(ClientIp(client_ip(req)))
    }
}
