//! The tenant home: active installs, token requests over 24 hours and 30
//! days with a small server-rendered SVG chart, and recent audit events.

use rocket::request::FlashMessage;
use rocket::{get, State};
use serde_json::{json, Value};

use super::{when, PageResult, Resp, TenantCtx};
use crate::auth::CsrfToken;
use crate::db::models::token_stats::{self, Day};
use crate::db::models::{dashboard, App, AuditEvent};
use crate::db::Db;
use crate::error::Error;
use crate::stats::TokenStats;

const CHART_W: f64 = 600.0;
const CHART_H: f64 = 120.0;

/// Bars for the chart: per day an "issued" and a "failed" bar, scaled to
/// the busiest day. Coordinates are computed here so the template (and the
/// CSP, which forbids inline styles) only sees numbers and classes.
pub fn chart(days: &[Day]) -> Value {
    let busiest = days
        .iter()
        .map(|d| d.issued.max(d.failed))
        .max()
        .unwrap_or(0);
    // The scale needs a non-zero divisor; the page says "busiest day" only
    // when there is one.
    let max = busiest.max(1) as f64;
    let slot = CHART_W / days.len().max(1) as f64;
    let bar = (slot * 0.38).max(1.0);
    let bars: Vec<Value> = days
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let x = i as f64 * slot + slot * 0.1;
            let hi = (d.issued as f64 / max * CHART_H).round();
            let hf = (d.failed as f64 / max * CHART_H).round();
            json!({
                "label": d.day.format("%b %-d").to_string(),
                "issued": d.issued,
                "failed": d.failed,
                "x_issued": format!("{:.1}", x),
                "x_failed": format!("{:.1}", x + bar),
                "y_issued": format!("{:.1}", CHART_H - hi),
                "y_failed": format!("{:.1}", CHART_H - hf),
                "h_issued": format!("{:.1}", hi),
                "h_failed": format!("{:.1}", hf),
            })
        })
        .collect();
    json!({
        "width": CHART_W,
        "height": CHART_H,
        "bar": format!("{:.1}", bar),
        "bars": bars,
        "max": busiest,
        "empty": busiest == 0,
        "first": days.first().map(|d| d.day.format("%b %-d").to_string()),
        "last": days.last().map(|d| d.day.format("%b %-d").to_string()),
    })
}

#[get("/admin/t/<_>")]
pub async fn home(
    ctx: TenantCtx,
    db: &State<Db>,
    stats: &State<TokenStats>,
    csrf: CsrfToken,
    flash: Option<FlashMessage<'_>>,
) -> PageResult {
    // Show this process's latest counts; a failure only makes them older.
    let _ = stats.flush(db).await;
    let tenant_id = ctx.tenant.id;
    let (active, day, month, days, (events, names), apps) = db
        .run(move |conn| -> Result<_, Error> {
            Ok((
                dashboard::active_installs(conn, tenant_id)?,
                token_stats::totals(conn, tenant_id, 24)?,
                token_stats::totals(conn, tenant_id, 24 * 30)?,
                token_stats::daily(conn, tenant_id, 30)?,
                {
                    let events = AuditEvent::recent(conn, tenant_id, 10)?;
                    let objects = super::audit::objects_of(
                        events
                            .iter()
                            .map(|e| (e.object_type.as_deref(), e.object_id.as_deref())),
                    );
                    let names = dashboard::audit_object_names(conn, tenant_id, &objects)?;
                    (events, names)
                },
                App::list(conn, tenant_id)?,
            ))
        })
        .await?;
    let base = ctx.base();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "actor": e.actor, "action": e.action,
                "object": super::audit::object_view(&base, e.object_type.as_deref(), e.object_id.as_deref(), &e.details, &names),
                "ip": e.ip, "at": when(&e.created_at),
            })
        })
        .collect();
    Ok(Resp::Page(ctx.render(
        "admin/home",
        "home",
        &csrf,
        flash,
        json!({
            "active_installs": active,
            "day": day,
            "month": month,
            "chart": chart(&days),
            "events": events,
            "app_count": apps.len(),
        }),
    )))
}
