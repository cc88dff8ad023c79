//! One file per table. Functions take the connection first and return
//! `QueryResult`; inserts use separate `New*` structs. Every function that
//! reads tenant data takes the tenant id.

pub mod admin;
pub mod api_key;
pub mod app;
pub mod audit;
pub mod client_secret;
pub mod code;
pub mod dashboard;
pub mod end_user;
pub mod grant;
pub mod invite;
pub mod login;
pub mod paging;
pub mod tenant;
pub mod token;
pub mod token_stats;

pub use admin::{Admin, AdminSession, Membership, Role};
pub use api_key::{ApiKey, ApiScope, NewApiKey};
pub use app::{App, AppKey, AppSettings, NewApp};
pub use audit::{AuditEvent, NewAuditEvent};
pub use client_secret::{ClientSecret, SecretKey};
pub use code::{AuthorizationCode, NewAuthorizationCode};
pub use end_user::{EndUser, EndUserSession};
pub use grant::Grant;
pub use invite::AdminInvite;
pub use login::{Consent, LoginRequest, LoginSession};
pub use tenant::{NewTenant, Tenant};
pub use token::{AccessToken, RefreshToken};
