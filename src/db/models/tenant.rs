use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::tenants;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub signup_allowed: bool,
    pub brand_display_name: Option<String>,
    pub brand_accent_color: Option<String>,
    pub brand_logo_url: Option<String>,
    pub created_at: DateTime<Utc>,
    /// Who signs creators in: `hosted` or `delegated` ([`CreatorSignin`]).
    pub creator_signin: String,
    /// The tenant's login page, in delegated mode.
    pub login_url: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = tenants)]
pub struct NewTenant<'a> {
    pub slug: &'a str,
    pub name: &'a str,
}

/// Tenant slugs: `[a-z0-9-]`, 2 to 40 characters.
pub fn valid_slug(slug: &str) -> bool {
    (2..=40).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Who signs a tenant's creators in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreatorSignin {
    /// kitauth's hosted accounts (the default).
    Hosted,
    /// The tenant's own login service, through login requests.
    Delegated { login_url: String },
}

impl CreatorSignin {
    pub fn mode(&self) -> &'static str {
        match self {
            CreatorSignin::Hosted => "hosted",
            CreatorSignin::Delegated { .. } => "delegated",
        }
    }

    pub fn login_url(&self) -> Option<&str> {
        match self {
            CreatorSignin::Hosted => None,
            CreatorSignin::Delegated { login_url } => Some(login_url),
        }
    }

    /// The one check of a sign-in choice (dashboard, API, command line):
    /// `mode` is `hosted` or `delegated`, and `delegated` needs a login URL
    /// that [`check_login_url`] accepts. On failure, the field and a message.
    pub fn parse(
        mode: &str,
        login_url: Option<&str>,
        allow_private_networks: bool,
    ) -> Result<CreatorSignin, (&'static str, String)> {
        match mode {
            "hosted" => Ok(CreatorSignin::Hosted),
            "delegated" => {
                let url = login_url.map(str::trim).filter(|u| !u.is_empty()).ok_or((
                    "login_url",
                    "delegated sign-in needs the URL of your login page".to_string(),
                ))?;
                check_login_url(url, allow_private_networks).map_err(|e| ("login_url", e))?;
                Ok(CreatorSignin::Delegated {
                    login_url: url.to_string(),
                })
            }
            _ => Err((
                "creator_signin",
                "creator sign-in is either hosted or delegated".into(),
            )),
        }
    }
}

/// A login URL: an absolute `https://` URL without credentials or fragment,
/// at most 2000 characters; `http://` only on a loopback host, and only
/// where the operator allows private networks (`allow_private_networks`).
pub fn check_login_url(url: &str, allow_private_networks: bool) -> Result<(), String> {
    if url.len() > 2000 || url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the login URL must be at most 2000 characters, without spaces".into());
    }
    let parsed = url::Url::parse(url).map_err(|_| "the login URL is not an absolute URL")?;
    let Some(host) = parsed.host() else {
        return Err("the login URL needs a host".into());
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the login URL must not carry a user name or password".into());
    }
    if parsed.fragment().is_some() {
        return Err("the login URL must not have a #fragment".into());
    }
    if parsed.query_pairs().any(|(k, _)| k == "login_challenge") {
        return Err("kitauth adds login_challenge itself: leave it out of the URL".into());
    }
    let loopback = match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    match parsed.scheme() {
        "https" if !loopback || allow_private_networks => Ok(()),
        "http" if loopback && allow_private_networks => Ok(()),
        "http" | "https" if loopback => {
            Err("a loopback login URL needs allow_private_networks on this server".into())
        }
        _ => Err("the login URL must be an https:// address".into()),
    }
}

/// A branding accent colour (tenant settings): `#rgb` or `#rrggbb`.
pub fn valid_color(c: &str) -> bool {
    c.starts_with('#') && matches!(c.len(), 4 | 7) && c[1..].bytes().all(|b| b.is_ascii_hexdigit())
}

impl Tenant {
    pub fn create(conn: &mut PgConnection, new: &NewTenant) -> QueryResult<Tenant> {
        diesel::insert_into(tenants::table)
            .values(new)
            .returning(Tenant::as_returning())
            .get_result(conn)
    }

    pub fn find_by_slug(conn: &mut PgConnection, slug: &str) -> QueryResult<Option<Tenant>> {
        tenants::table
            .filter(tenants::slug.eq(slug))
            .select(Tenant::as_select())
            .first(conn)
            .optional()
    }

    pub fn find(conn: &mut PgConnection, id: i64) -> QueryResult<Tenant> {
        tenants::table
            .find(id)
            .select(Tenant::as_select())
            .first(conn)
    }

    /// Who signs this tenant's creators in.
    pub fn signin(&self) -> CreatorSignin {
        match (self.creator_signin.as_str(), &self.login_url) {
            ("delegated", Some(url)) => CreatorSignin::Delegated {
                login_url: url.clone(),
            },
            _ => CreatorSignin::Hosted,
        }
    }

    /// Sets who signs creators in (dashboard, API and command line), the
    /// login URL checked by [`check_login_url`] first, audited in the same
    /// transaction.
    pub fn set_signin(
        conn: &mut PgConnection,
        id: i64,
        signin: &CreatorSignin,
        audit: crate::db::models::NewAuditEvent,
    ) -> QueryResult<Tenant> {
        conn.transaction(|conn| {
            let (mode, url) = match signin {
                CreatorSignin::Hosted => ("hosted", None),
                CreatorSignin::Delegated { login_url } => ("delegated", Some(login_url.as_str())),
            };
            let t = diesel::update(tenants::table.find(id))
                .set((tenants::creator_signin.eq(mode), tenants::login_url.eq(url)))
                .returning(Tenant::as_returning())
                .get_result(conn)?;
            if *signin == CreatorSignin::Hosted {
                crate::db::models::LoginRequest::end_delegation(conn, id)?;
            }
            audit
                .merge_details(serde_json::json!({"creator_signin": mode, "login_url": url}))
                .insert(conn)?;
            Ok(t)
        })
    }

    /// The name shown to creators on the hosted pages.
    pub fn display_name(&self) -> &str {
        self.brand_display_name
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.name)
    }
}

/// The settings an owner edits on the tenant settings page.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = tenants, treat_none_as_null = true)]
pub struct TenantSettings {
    pub name: String,
    pub signup_allowed: bool,
    pub brand_display_name: Option<String>,
    pub brand_accent_color: Option<String>,
    pub brand_logo_url: Option<String>,
}

impl Tenant {
    pub fn update_settings(
        conn: &mut PgConnection,
        id: i64,
        settings: &TenantSettings,
    ) -> QueryResult<Tenant> {
        diesel::update(tenants::table.find(id))
            .set(settings)
            .returning(Tenant::as_returning())
            .get_result(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_urls_are_https_or_allowed_loopback_http() {
        for ok in [
            "https://example.com/login",
            "https://example.com/kit/login?source=kit",
        ] {
            assert!(check_login_url(ok, false).is_ok(), "{ok}");
        }
        for private_only in [
            "http://127.0.0.1:4000/login",
            "http://localhost/login",
            "http://[::1]/login",
            "https://127.0.0.1/login",
        ] {
            assert!(
                check_login_url(private_only, false).is_err(),
                "{private_only}"
            );
            assert!(
                check_login_url(private_only, true).is_ok(),
                "{private_only}"
            );
        }
        for bad in [
            "",
            "/login",
            "http://example.com/login",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://example.com/#x",
            "https://example.com/?login_challenge=1",
            "javascript:alert(1)",
            "https://exa mple.com/",
        ] {
            assert!(check_login_url(bad, true).is_err(), "{bad}");
        }
        assert_eq!(
            CreatorSignin::parse("delegated", None, true).unwrap_err().0,
            "login_url"
        );
        assert_eq!(
            CreatorSignin::parse("sso", None, true).unwrap_err().0,
            "creator_signin"
        );
        assert_eq!(
            CreatorSignin::parse("hosted", Some("junk"), true).unwrap(),
            CreatorSignin::Hosted
        );
    }

    #[test]
    fn accent_colours_are_short_or_long_hex() {
        for ok in ["#46e", "#4f46e5", "#ABCDEF"] {
            assert!(valid_color(ok), "{ok}");
        }
        for bad in [
            "",
            "#",
            "4f46e5",
            "#4f46e",
            "#ggg",
            "#4f46e5ff",
            "red",
            "#é12",
        ] {
            assert!(!valid_color(bad), "{bad}");
        }
    }
}
