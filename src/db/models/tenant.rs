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
