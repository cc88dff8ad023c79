//! The one input layer: what a valid text value is, for every surface.
//!
//! PostgreSQL cannot store a NUL in `text`, and no field of kitauth has a
//! use for other control characters, except the free-text ones where a
//! newline makes sense (the list of redirect URIs). Every value is checked
//! here before any database work:
//! - form and JSON bodies (OAuth endpoints, hosted pages, dashboard) in
//!   `params::Params::insert`, which every body reader uses;
//!   the HTML forms then declare each field with a type of this module
//!   ([`Text`], [`Multiline`], [`Checkbox`], [`Confirm`]), read by
//!   `auth::CsrfForm`;
//! - query strings and path segments of every request, in the
//!   `gate::BadInputGuard` fairing, before routing;
//! - Basic-auth parts, in `ClientCredentials::from_parts`;
//! - the command line's arguments, in `cli`.
//!
//! A refusal is `400 invalid_request` on the OAuth endpoints, a 400 page
//! elsewhere, and one line on the command line. Nothing is written.

use crate::error::PageError;

/// Largest value of a field without its own limit.
pub const DEFAULT_MAX: usize = 2048;

/// What a field may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Longest value, in bytes.
    pub max: usize,
    /// Newlines (and tabs) allowed: a free-text field.
    pub multiline: bool,
}

/// The rule of the field named `field`; unknown fields get the default.
pub fn rule(field: &str) -> Rule {
    let line = |max| Rule {
        max,
        multiline: false,
    };
    match field {
        // One URI per line in the app form.
        "redirect_uris" => Rule {
            max: 8 * 1024,
            multiline: true,
        },
        "email" => line(320),
        "password" | "new_password" => line(1024),
        "name" | "tenant_name" | "brand_display_name" | "q" | "tenant_slug" => line(200),
        "page" | "kind" | "from" | "to" | "role" | "grace" | "decision" | "confirm" => line(100),
        _ => line(DEFAULT_MAX),
    }
}

/// Why a value was refused. Never carries the value itself (it may be a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputError {
    Nul(String),
    Control(String),
    TooLong(String, usize),
}

impl InputError {
    /// The field the refused value was in.
    pub fn field(&self) -> &str {
        match self {
            InputError::Nul(f) | InputError::Control(f) | InputError::TooLong(f, _) => f,
        }
    }
    pub fn description(&self) -> String {
        match self {
            InputError::Nul(f) => format!("the field {f:?} contains a NUL character"),
            InputError::Control(f) => format!("the field {f:?} contains a control character"),
            InputError::TooLong(f, max) => {
                format!("the field {f:?} is longer than {max} bytes")
            }
        }
    }
}

fn field_name(field: &str) -> String {
    field
        .chars()
        .take(40)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Checks `value` against the rule of `field`.
pub fn check(field: &str, value: &str) -> Result<(), InputError> {
    check_with(field, value, rule(field))
}

pub fn check_with(field: &str, value: &str, rule: Rule) -> Result<(), InputError> {
    if value.len() > rule.max {
        return Err(InputError::TooLong(field_name(field), rule.max));
    }
    if value.contains('\0') {
        return Err(InputError::Nul(field_name(field)));
    }
    let allowed = |c: char| rule.multiline && matches!(c, '\n' | '\r' | '\t');
    if value.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(InputError::Control(field_name(field)));
    }
    Ok(())
}

/// A field name: not empty, no control character, bounded.
pub fn check_name(name: &str) -> Result<(), InputError> {
    if name.chars().any(char::is_control) {
        return Err(InputError::Control(field_name(name)));
    }
    if name.len() > 100 {
        return Err(InputError::TooLong(field_name(name), 100));
    }
    Ok(())
}

/// A one-line text field of an HTML form, at most `MAX` bytes, with no NUL
/// or other control character: the form types of the dashboard and the
/// hosted pages declare each field with it, so a handler cannot get a value
/// the input layer has not checked. (The body reader has already checked
/// every field by its name with [`rule`]; each form declares the same
/// maximum.) A missing field is empty, as a blank one is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<const MAX: usize = DEFAULT_MAX>(String);

/// A free-text field: like [`Text`], and newlines and tabs are allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Multiline<const MAX: usize>(String);

macro_rules! text_field {
    ($ty:ident, $multiline:expr) => {
        impl<const MAX: usize> $ty<MAX> {
            /// The value as sent (empty when the field was missing).
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The value, `None` when empty: a blank field counts as a
            /// missing one.
            pub fn get(&self) -> Option<&str> {
                Some(self.0.as_str()).filter(|v| !v.is_empty())
            }
            /// The value without surrounding whitespace.
            pub fn trimmed(&self) -> String {
                self.0.trim().to_string()
            }
        }

        #[rocket::async_trait]
        impl<'v, const MAX: usize> rocket::form::FromFormField<'v> for $ty<MAX> {
            fn from_value(field: rocket::form::ValueField<'v>) -> rocket::form::Result<'v, Self> {
                let rule = Rule {
                    max: MAX,
                    multiline: $multiline,
                };
                check_with(field.name.source().as_str(), field.value, rule)
                    .map_err(|e| rocket::form::Error::validation(e.description()))?;
                Ok($ty(field.value.to_string()))
            }

            fn default() -> Option<Self> {
                Some($ty(String::new()))
            }
        }
    };
}

text_field!(Text, false);
text_field!(Multiline, true);

/// A checkbox: ticked when the browser sends its default value `on`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkbox(pub bool);

/// The confirmation checkbox of a destructive action (`value="yes"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Confirm(pub bool);

impl Confirm {
    /// Refuses (400, nothing changed) unless the box was ticked.
    pub fn require(self, what: &str) -> Result<(), PageError> {
        if self.0 {
            Ok(())
        } else {
            Err(PageError::bad_request(format!(
                "Nothing was changed: tick the confirmation box to {what}."
            )))
        }
    }
}

macro_rules! checkbox_field {
    ($ty:ident, $on:literal) => {
        #[rocket::async_trait]
        impl<'v> rocket::form::FromFormField<'v> for $ty {
            fn from_value(field: rocket::form::ValueField<'v>) -> rocket::form::Result<'v, Self> {
                check(field.name.source().as_str(), field.value)
                    .map_err(|e| rocket::form::Error::validation(e.description()))?;
                Ok($ty(field.value == $on))
            }

            fn default() -> Option<Self> {
                Some($ty(false))
            }
        }
    };
}

checkbox_field!(Checkbox, "on");
checkbox_field!(Confirm, "yes");

/// Decodes one `application/x-www-form-urlencoded` component as leniently
/// as any parser downstream might: a bad escape stays literal, invalid
/// UTF-8 becomes U+FFFD. So a NUL cannot hide behind a malformed neighbour.
fn decode_component(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(hex) => {
                    out.push(hex);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Checks every parameter of a raw query string and every segment of a
/// path. Malformed escapes are left to the route to refuse.
pub fn check_uri(path: &str, query: Option<&str>) -> Result<(), InputError> {
    for segment in path.split('/') {
        check_with(
            "path",
            &decode_component(&segment.replace('+', "%2B")),
            rule("path"),
        )?;
    }
    for pair in query.unwrap_or("").split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode_component(k);
        check_name(&key)?;
        check(&key, &decode_component(v))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_and_control_characters_are_refused_newlines_only_in_free_text() {
        assert!(check("email", "a@b.example").is_ok());
        assert_eq!(
            check("email", "a\0@b"),
            Err(InputError::Nul("email".into()))
        );
        assert_eq!(
            check("name", "a\nb"),
            Err(InputError::Control("name".into()))
        );
        assert_eq!(
            check("name", "a\u{1b}b"),
            Err(InputError::Control("name".into()))
        );
        assert!(check("redirect_uris", "https://a.example\r\nhttps://b.example").is_ok());
        assert!(check("redirect_uris", "https://a.example\0").is_err());
        assert!(check("email", &"a".repeat(321)).is_err());
        assert!(check("state", &"a".repeat(2048)).is_ok());
        assert!(check("state", &"a".repeat(2049)).is_err());
    }

    #[test]
    fn uris_are_checked_after_decoding() {
        assert!(check_uri("/t/acme/oauth/authorize", Some("state=a%20b&x=1")).is_ok());
        assert!(check_uri("/t/acme/oauth/authorize", Some("state=a%00b")).is_err());
        assert!(check_uri("/t/acme/oauth/authorize", Some("st%00ate=1")).is_err());
        assert!(check_uri("/admin/t/a%00b/apps", None).is_err());
        assert!(check_uri("/admin/t/acme/apps", Some("q=%ff")).is_ok());
        assert!(check_uri("/admin/t/acme/apps", Some("q=%C8%12%00%C2")).is_err());
        assert!(check_uri("/admin/t/acme/apps", Some("q=%zz%00")).is_err());
        assert!(check_uri("/admin/login", Some("next=%2Fadmin%0A")).is_err());
    }
}
