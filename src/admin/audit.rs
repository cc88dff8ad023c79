//! The audit log: every dashboard action and every OAuth security event,
//! with actor, IP, time and object; filtered by kind and date; paginated.

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
    let (rows, actions) = db
        .run(move |conn| -> Result<_, Error> {
            Ok((
                dashboard::audit(conn, tenant_id, &f, PER_PAGE, (page - 1) * PER_PAGE)?,
                dashboard::audit_actions(conn, tenant_id)?,
            ))
        })
        .await?;
    let total = rows.first().map_or(0, |r| r.total);
    let events: Vec<Value> = rows
        .iter()
        .map(|e| {
            json!({
                "actor": e.actor, "action": e.action, "object_type": e.object_type,
                "object_id": e.object_id, "ip": e.ip, "at": when(&e.created_at),
                "details": if e.details == "{}" { None } else { Some(&e.details) },
                "security": SECURITY_EVENTS.contains(&e.action.as_str()),
            })
        })
        .collect();
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
            "kind": kind,
            "from": from_s,
            "to": to_s,
            "pager": pager(&path, &query, page, total),
            "search_path": path,
        }),
    )))
}
