//! The audit log: every dashboard action and every OAuth security event,
//! with actor, IP, time and object; filtered by kind and date; paginated.

use std::collections::HashMap;

use chrono::NaiveDate;
use rocket::{get, State};
use serde_json::{json, Value};

use super::{encode_query, page_number, pager, when, PageResult, Resp, TenantCtx, PER_PAGE};
use crate::auth::CsrfToken;
use crate::db::models::dashboard::{self, AuditFilter};
use crate::db::Db;
use crate::error::{Error, PageError};

/// The OAuth security events, offered first in the filter.
pub const SECURITY_EVENTS: [&str; 4] = [
    "code.replayed",
    "refresh.reuse_detected",
    "client.wrong_secret",
    "client_secret.used_after_grace",
];

/// The kinds the filter offers as prefixes (each matches `prefix.*`).
pub const KIND_PREFIXES: [&str; 10] = [
    "app",
    "authorize",
    "client",
    "client_secret",
    "code",
    "creator",
    "grant",
    "member",
    "refresh",
    "tenant",
];

/// An audit object as the pages show it: a readable name and, while the
/// object exists, a link to its page.
pub fn object_view(
    base: &str,
    object_type: Option<&str>,
    object_id: Option<&str>,
    details: &Value,
    names: &HashMap<(String, i64), String>,
) -> Value {
    let (Some(kind), Some(raw_id)) = (object_type, object_id) else {
        return Value::Null;
    };
    let id = raw_id.parse::<i64>().ok();
    let name = id.and_then(|id| names.get(&(kind.to_string(), id)).cloned());
    let detail = |key: &str| details.get(key).and_then(Value::as_str).map(str::to_string);
    let (label, href) = match kind {
        "app" => match name {
            Some(n) => (format!("app {n}"), Some(format!("{base}/apps/{raw_id}"))),
            None => (
                format!("app {} (deleted)", detail("name").unwrap_or_default()),
                None,
            ),
        },
        "end_user" => match name {
            Some(n) => (
                format!("creator {n}"),
                Some(format!("{base}/creators/{raw_id}")),
            ),
            None => ("a creator who is gone".to_string(), None),
        },
        "grant" => match name {
            Some(n) => (
                format!("install of {n}"),
                Some(format!("{base}/installs/{raw_id}")),
            ),
            None => ("an install that is gone".to_string(), None),
        },
        "client_secret" => {
            let app = details.get("app_id").and_then(Value::as_i64);
            match name {
                Some(n) => (
                    format!("secret {n}"),
                    app.map(|a| format!("{base}/apps/{a}")),
                ),
                None => ("a secret of an app that is gone".to_string(), None),
            }
        }
        "admin" => match name {
            Some(n) => (format!("member {n}"), Some(format!("{base}/members"))),
            None => (
                format!("former member {}", detail("email").unwrap_or_default()),
                None,
            ),
        },
        "invite" => (
            format!(
                "invitation for {}",
                name.or_else(|| detail("email")).unwrap_or_default()
            ),
            Some(format!("{base}/members")),
        ),
        "tenant" => (
            "workspace settings".to_string(),
            Some(format!("{base}/settings")),
        ),
        other => (other.replace('_', " "), None),
    };
    json!({"label": label.trim(), "href": href})
}

/// Audit details as a sentence-like line: `name: Acme; scopes: public, write`.
pub fn details_text(details: &Value) -> Option<String> {
    fn value_text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Bool(true) => "yes".into(),
            Value::Bool(false) => "no".into(),
            Value::Null => "none".into(),
            Value::Array(items) => items.iter().map(value_text).collect::<Vec<_>>().join(", "),
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| format!("{} {}", k.replace('_', " "), value_text(v)))
                .collect::<Vec<_>>()
                .join(", "),
            Value::Number(n) => n.to_string(),
        }
    }
    match details {
        Value::Object(m) if m.is_empty() => None,
        Value::Object(m) => Some(
            m.iter()
                .map(|(k, v)| format!("{}: {}", k.replace('_', " "), value_text(v)))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        Value::Null => None,
        other => Some(value_text(other)),
    }
}

/// The ids to name for a list of audit rows.
pub fn objects_of<'a>(
    rows: impl Iterator<Item = (Option<&'a str>, Option<&'a str>)>,
) -> Vec<(String, i64)> {
    rows.filter_map(|(t, id)| Some((t?.to_string(), id?.parse::<i64>().ok()?)))
        .collect()
}

fn parse_date(raw: Option<&str>, label: &str) -> Result<Option<NaiveDate>, PageError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(s) => NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(Some)
            .map_err(|_| {
                PageError::bad_request(format!("The {label} date must look like 2026-01-31."))
            }),
    }
}

#[get("/admin/t/<_>/audit?<kind>&<from>&<to>&<page>")]
pub async fn list(
    ctx: TenantCtx,
    db: &State<Db>,
    csrf: CsrfToken,
    kind: Option<&str>,
    from: Option<&str>,
    to: Option<&str>,
    page: Option<i64>,
) -> PageResult {
    let kind = kind
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| k.chars().take(100).collect::<String>());
    let filter = AuditFilter {
        kind: kind.clone(),
        from: parse_date(from, "from")?,
        to: parse_date(to, "to")?,
    };
    let page = page_number(page);
    let tenant_id = ctx.tenant.id;
    let f = filter.clone();
    let (rows, actions, names) = db
        .run(move |conn| -> Result<_, Error> {
            let rows = dashboard::audit(conn, tenant_id, &f, PER_PAGE, (page - 1) * PER_PAGE)?;
            let objects = objects_of(
                rows.iter()
                    .map(|r| (r.object_type.as_deref(), r.object_id.as_deref())),
            );
            let names = dashboard::audit_object_names(conn, tenant_id, &objects)?;
            Ok((rows, dashboard::audit_actions(conn, tenant_id)?, names))
        })
        .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let base = ctx.base();
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            let details: Value = serde_json::from_str(&e.details).unwrap_or(Value::Null);
            json!({
                "actor": e.actor, "action": e.action,
                "object": object_view(&base, e.object_type.as_deref(), e.object_id.as_deref(), &details, &names),
                "ip": e.ip, "at": when(&e.created_at),
                "details": details_text(&details),
                "security": SECURITY_EVENTS.contains(&e.action.as_str()),
            })
        })
        .collect();
    let prefixes: Vec<&str> = KIND_PREFIXES.to_vec();
    let mut kinds: Vec<String> = SECURITY_EVENTS.iter().map(|s| s.to_string()).collect();
    for a in actions {
        if !kinds.contains(&a) {
            kinds.push(a);
        }
    }
    let from_s = filter.from.map(|d| d.to_string());
    let to_s = filter.to.map(|d| d.to_string());
    let path = format!("{}/audit", ctx.base());
    let query = encode_query(&[
        ("kind", kind.as_deref()),
        ("from", from_s.as_deref()),
        ("to", to_s.as_deref()),
    ]);
    Ok(Resp::Page(ctx.render(
        "admin/audit",
        "audit",
        &csrf,
        None,
        json!({
            "events": events,
            "kinds": kinds,
            "prefixes": prefixes,
            "kind": kind,
            "from": from_s,
            "to": to_s,
            "pager": pager(&path, &query, page, total),
            "search_path": path,
        }),
    )))
}
