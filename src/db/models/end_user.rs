use chrono::{DateTime, Duration, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::crypto::{self, TokenKind};
use crate::db::models::{Grant, NewAuditEvent};
use crate::db::schema::{end_user_sessions, end_users};

/// How long a creator stays signed in on a tenant's hosted pages.
pub const CREATOR_SESSION_HOURS: i64 = 12;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = end_users)]
pub struct EndUser {
    pub id: i64,
    pub tenant_id: i64,
    /// A hosted account's sign-in email; a subject's email as the tenant
    /// last gave it, if it did.
    pub email: Option<String>,
    /// Hosted accounts only.
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Delegated sign-in: the tenant's own id of this creator (`sub`).
    pub subject: Option<String>,
    /// Delegated sign-in: the name the tenant gave, if any.
    pub name: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = end_user_sessions)]
pub struct EndUserSession {
    pub id: i64,
    pub tenant_id: i64,
    pub end_user_id: i64,
    pub token_digest: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// How a creator is named to an admin (dashboard, messages): a delegated
/// creator by its subject, a hosted one by its email.
pub fn label_of<'a>(subject: Option<&'a str>, email: Option<&'a str>) -> &'a str {
    subject.or(email).unwrap_or_default()
}

/// The `sub` claim of a creator: the tenant's subject when there is one,
/// else kitauth's id.
pub fn sub_of(id: i64, subject: Option<&str>) -> String {
    subject.map_or_else(|| id.to_string(), str::to_string)
}

/// A printable character of a subject or a name: the space, or a character
/// that is neither a control, nor other white space (line and paragraph
/// separators included), nor an invisible format character (zero-width,
/// bidirectional overrides, tags), nor private-use or a non-character.
/// Nothing a consent page or the dashboard shows can hide or reorder text.
pub fn printable(c: char) -> bool {
    c == ' '
        || !(c.is_control()
            || c.is_whitespace()
            || matches!(c,
                '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{FEFF}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{E000}'..='\u{F8FF}'
                | '\u{FDD0}'..='\u{FDEF}'
                | '\u{FFF0}'..='\u{FFFF}'
                | '\u{E0000}'..='\u{E007F}'
                | '\u{F0000}'..='\u{10FFFF}'))
}

/// `min` to `max` printable characters, no space at either end.
fn printable_text(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.chars().count()) && s.chars().all(printable) && s.trim() == s
}

/// A subject (delegated sign-in): 1 to 255 printable characters, no space
/// at either end.
pub fn valid_subject(subject: &str) -> bool {
    printable_text(subject, 1, 255)
}

/// A creator's name (delegated sign-in): 1 to 200 printable characters.
pub fn valid_name(name: &str) -> bool {
    printable_text(name, 1, 200)
}

/// Normalises an email address for storage and look-up.
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// A plausible email address: one `@`, something on both sides, a dot in the domain.
pub fn valid_email(email: &str) -> bool {
    let email = email.trim();
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
        }
        None => false,
    }
}

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 72; // bcrypt's limit

pub fn validate_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(format!(
            "the password must have at least {MIN_PASSWORD_LEN} characters"
        ));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(format!(
            "the password must have at most {MAX_PASSWORD_LEN} bytes"
        ));
    }
    Ok(())
}

impl EndUser {
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        email: &str,
        password_hash: &str,
    ) -> QueryResult<EndUser> {
        diesel::insert_into(end_users::table)
            .values((
                end_users::tenant_id.eq(tenant_id),
                end_users::email.eq(normalize_email(email)),
                end_users::password_hash.eq(password_hash),
            ))
            .returning(EndUser::as_returning())
            .get_result(conn)
    }

    /// Creates the creator unless the tenant has one with this email already;
    /// `None` then, and nothing is written. One statement, so two racing
    /// sign-ups of one email can't both fail or both write.
    pub fn create_if_new(
        conn: &mut PgConnection,
        tenant_id: i64,
        email: &str,
        password_hash: &str,
    ) -> QueryResult<Option<EndUser>> {
        diesel::insert_into(end_users::table)
            .values((
                end_users::tenant_id.eq(tenant_id),
                end_users::email.eq(normalize_email(email)),
                end_users::password_hash.eq(password_hash),
            ))
            .on_conflict((end_users::tenant_id, end_users::email))
            .filter_target(end_users::subject.is_null())
            .do_nothing()
            .returning(EndUser::as_returning())
            .get_result(conn)
            .optional()
    }

    pub fn find_by_email(
        conn: &mut PgConnection,
        tenant_id: i64,
        email: &str,
    ) -> QueryResult<Option<EndUser>> {
        end_users::table
            .filter(end_users::tenant_id.eq(tenant_id))
            .filter(end_users::subject.is_null())
            .filter(end_users::email.eq(normalize_email(email)))
            .select(EndUser::as_select())
            .first(conn)
            .optional()
    }

    /// The tenant's creator of this subject, made or updated with the email
    /// and name given (delegated sign-in). One statement, so two racing
    /// accepts of one subject make one creator.
    pub fn upsert_subject(
        conn: &mut PgConnection,
        tenant_id: i64,
        subject: &str,
        email: Option<&str>,
        name: Option<&str>,
    ) -> QueryResult<EndUser> {
        let email = email.map(normalize_email);
        diesel::insert_into(end_users::table)
            .values((
                end_users::tenant_id.eq(tenant_id),
                end_users::subject.eq(subject),
                end_users::email.eq(&email),
                end_users::name.eq(name),
            ))
            .on_conflict((end_users::tenant_id, end_users::subject))
            .filter_target(end_users::subject.is_not_null())
            .do_update()
            .set((end_users::email.eq(&email), end_users::name.eq(name)))
            .returning(EndUser::as_returning())
            .get_result(conn)
    }

    /// The tenant's creator of this subject, if any.
    pub fn find_by_subject(
        conn: &mut PgConnection,
        tenant_id: i64,
        subject: &str,
    ) -> QueryResult<Option<EndUser>> {
        end_users::table
            .filter(end_users::tenant_id.eq(tenant_id))
            .filter(end_users::subject.eq(subject))
            .select(EndUser::as_select())
            .first(conn)
            .optional()
    }

    /// What identifies the creator to an admin: the subject of a delegated
    /// creator, the email of a hosted one.
    pub fn label(&self) -> &str {
        label_of(self.subject.as_deref(), self.email.as_deref())
    }

    /// The `sub` of this creator's tokens: the tenant's subject in delegated
    /// sign-in, kitauth's id for a hosted account.
    pub fn sub(&self) -> String {
        sub_of(self.id, self.subject.as_deref())
    }

    pub fn find(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<Option<EndUser>> {
        end_users::table
            .filter(end_users::tenant_id.eq(tenant_id))
            .filter(end_users::id.eq(id))
            .select(EndUser::as_select())
            .first(conn)
            .optional()
    }
}

impl EndUserSession {
    /// Starts a session; returns the cookie value (only its digest is stored).
    pub fn create(
        conn: &mut PgConnection,
        tenant_id: i64,
        end_user_id: i64,
    ) -> QueryResult<String> {
        let token = crypto::generate(TokenKind::CreatorSession);
        diesel::insert_into(end_user_sessions::table)
            .values((
                end_user_sessions::tenant_id.eq(tenant_id),
                end_user_sessions::end_user_id.eq(end_user_id),
                end_user_sessions::token_digest.eq(&token.digest),
                end_user_sessions::expires_at
                    .eq(Utc::now() + Duration::hours(CREATOR_SESSION_HOURS)),
            ))
            .execute(conn)?;
        Ok(token.value)
    }

    /// The signed-in, enabled creator a session cookie belongs to, in this tenant.
    pub fn authenticate(
        conn: &mut PgConnection,
        tenant_id: i64,
        token: &str,
    ) -> QueryResult<Option<EndUser>> {
        if !crypto::looks_like(TokenKind::CreatorSession, token) {
            return Ok(None);
        }
        end_user_sessions::table
            .inner_join(end_users::table)
            .filter(end_user_sessions::token_digest.eq(crypto::digest(token)))
            .filter(end_user_sessions::tenant_id.eq(tenant_id))
            .filter(end_users::tenant_id.eq(tenant_id))
            .filter(end_user_sessions::expires_at.gt(diesel::dsl::now))
            .filter(end_users::disabled.eq(false))
            .select(EndUser::as_select())
            .first(conn)
            .optional()
    }

    pub fn delete(conn: &mut PgConnection, tenant_id: i64, token: &str) -> QueryResult<usize> {
        diesel::delete(
            end_user_sessions::table
                .filter(end_user_sessions::tenant_id.eq(tenant_id))
                .filter(end_user_sessions::token_digest.eq(crypto::digest(token))),
        )
        .execute(conn)
    }
}

impl EndUser {
    /// Disables or re-enables a creator. Disabling also ends their hosted
    /// sessions; the caller revokes their grants in the same transaction.
    pub fn set_disabled(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        disabled: bool,
    ) -> QueryResult<usize> {
        let n = diesel::update(
            end_users::table
                .filter(end_users::tenant_id.eq(tenant_id))
                .filter(end_users::id.eq(id)),
        )
        .set(end_users::disabled.eq(disabled))
        .execute(conn)?;
        if disabled {
            Self::end_sessions(conn, tenant_id, id)?;
        }
        Ok(n)
    }

    pub fn set_password(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        password_hash: &str,
    ) -> QueryResult<usize> {
        // Hosted accounts only: a subject has no password here.
        let n = diesel::update(
            end_users::table
                .filter(end_users::tenant_id.eq(tenant_id))
                .filter(end_users::id.eq(id))
                .filter(end_users::subject.is_null()),
        )
        .set(end_users::password_hash.eq(password_hash))
        .execute(conn)?;
        Self::end_sessions(conn, tenant_id, id)?;
        Ok(n)
    }

    /// Ends the creator's hosted sessions and remembered logins.
    fn end_sessions(conn: &mut PgConnection, tenant_id: i64, id: i64) -> QueryResult<usize> {
        crate::db::models::login::LoginSession::end_all(conn, tenant_id, id)?;
        diesel::delete(
            end_user_sessions::table
                .filter(end_user_sessions::tenant_id.eq(tenant_id))
                .filter(end_user_sessions::end_user_id.eq(id)),
        )
        .execute(conn)
    }
}

/// Why a new creator cannot be made, naming the field.
#[derive(Debug)]
pub enum CreateCreatorError {
    Invalid {
        field: &'static str,
        message: String,
    },
    EmailTaken,
    Db(diesel::result::Error),
}

/// The checks of a new creator's email and password, shared by the
/// dashboard, the API and the command line.
pub fn check_new_creator(email: &str, password: &str) -> Result<(), CreateCreatorError> {
    if !valid_email(email) {
        return Err(CreateCreatorError::Invalid {
            field: "email",
            message: "enter a valid email address".into(),
        });
    }
    validate_password(password).map_err(|message| CreateCreatorError::Invalid {
        field: "password",
        message,
    })
}

/// The change flows of creators, shared by the dashboard, the API and the
/// command line; one transaction each, with its audit row (`audit` carries
/// the caller; the flow names the action and the object).
impl EndUser {
    /// Creates a creator from an already checked email and a password hash.
    pub fn create_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        email: &str,
        password_hash: &str,
        audit: NewAuditEvent,
    ) -> Result<EndUser, CreateCreatorError> {
        let r = conn.transaction(|conn| {
            let user = EndUser::create(conn, tenant_id, email, password_hash)?;
            audit
                .action("creator.created")
                .object("end_user", user.id)
                .merge_details(serde_json::json!({"email": user.email}))
                .insert(conn)?;
            Ok::<_, diesel::result::Error>(user)
        });
        r.map_err(|e| match e {
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::UniqueViolation,
                _,
            ) => CreateCreatorError::EmailTaken,
            other => CreateCreatorError::Db(other),
        })
    }

    /// Disables a creator, ends their sessions and revokes their installs.
    /// `None` when the tenant has no such creator; else the installs revoked.
    pub fn disable_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        audit: NewAuditEvent,
    ) -> QueryResult<Option<usize>> {
        conn.transaction(|conn| {
            if EndUser::set_disabled(conn, tenant_id, id, true)? == 0 {
                return Ok(None);
            }
            let n = Grant::revoke_all_for_end_user(conn, tenant_id, id, "creator_disabled")?;
            audit
                .action("creator.disabled")
                .object("end_user", id)
                .merge_details(serde_json::json!({"grants_revoked": n}))
                .insert(conn)?;
            Ok(Some(n))
        })
    }

    /// Lets a disabled creator sign in again. `false` when there is no such creator.
    pub fn enable_audited(
        conn: &mut PgConnection,
        tenant_id: i64,
        id: i64,
        audit: NewAuditEvent,
    ) -> QueryResult<bool> {
        conn.transaction(|conn| {
            if EndUser::set_disabled(conn, tenant_id, id, false)? == 0 {
                return Ok(false);
            }
            audit
                .action("creator.enabled")
                .object("end_user", id)
                .insert(conn)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_and_names_are_printable_text_without_hidden_characters() {
        for ok in [
            "u-42",
            "acct_1815",
            "Ada Lovelace",
            "é",
            "用户 7",
            "a@b.example",
        ] {
            assert!(valid_subject(ok) && valid_name(ok), "{ok}");
        }
        assert!(valid_subject(&"x".repeat(255)) && !valid_subject(&"x".repeat(256)));
        assert!(valid_name(&"x".repeat(200)) && !valid_name(&"x".repeat(201)));
        for bad in [
            "",
            " lead",
            "trail ",
            "tab\there",
            "line\nbreak",
            "nul\0",
            "zero\u{200B}width",
            "bidi\u{202E}override",
            "bom\u{FEFF}",
            "soft\u{00AD}hyphen",
            "sep\u{2028}line",
            "nbsp\u{00A0}space",
            "private\u{E000}use",
            "tag\u{E0041}",
            "non\u{FFFF}char",
        ] {
            assert!(!valid_subject(bad), "{bad:?}");
        }
        assert_eq!(sub_of(17, None), "17");
        assert_eq!(sub_of(17, Some("acct_17")), "acct_17");
    }
}
