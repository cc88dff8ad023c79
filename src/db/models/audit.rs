use chrono::{DateTime, Utc};
use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::audit_events;

#[derive(Debug, Clone, Queryable, Selectable, Identifiable, Serialize)]
#[diesel(table_name = audit_events)]
pub struct AuditEvent {
    pub id: i64,
    pub tenant_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// An audit record. `details` must never hold a secret, token or password.
#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = audit_events)]
pub struct NewAuditEvent {
    pub tenant_id: Option<i64>,
    pub actor: String,
    pub action: String,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub ip: Option<String>,
    pub details: serde_json::Value,
}

impl NewAuditEvent {
    pub fn new(tenant_id: i64, actor: impl Into<String>, action: &str) -> Self {
        NewAuditEvent {
            tenant_id: Some(tenant_id),
            actor: actor.into(),
            action: action.to_string(),
            object_type: None,
            object_id: None,
            ip: None,
            details: serde_json::json!({}),
        }
    }
    pub fn object(mut self, kind: &str, id: impl ToString) -> Self {
        self.object_type = Some(kind.to_string());
        self.object_id = Some(id.to_string());
        self
    }
    pub fn ip(mut self, ip: Option<String>) -> Self {
        self.ip = ip;
        self
    }
    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
    /// Adds this event to the `client.auth_throttled` event of the same
    /// tenant, actor and IP within the last `window_secs`, counting it in
    /// `details.count`; starts one (count 1) when there is none. One
    /// statement each way; the (tenant_id, action, created_at) index finds
    /// the row.
    pub fn add_to_window(&self, conn: &mut PgConnection, window_secs: i64) -> QueryResult<()> {
        use diesel::dsl::sql;
        use diesel::sql_types::Jsonb;
        const ACTION: &str = "client.auth_throttled";
        let since = Utc::now() - chrono::Duration::seconds(window_secs.max(1));
        let latest: Option<i64> = audit_events::table
            .filter(audit_events::tenant_id.eq(self.tenant_id))
            .filter(audit_events::action.eq(ACTION))
            .filter(audit_events::created_at.gt(since))
            .filter(audit_events::actor.eq(&self.actor))
            .filter(audit_events::ip.is_not_distinct_from(&self.ip))
            .order(audit_events::created_at.desc())
            .select(audit_events::id)
            .first(conn)
            .optional()?;
        match latest {
            Some(id) => {
                diesel::update(audit_events::table.find(id))
                    .filter(audit_events::tenant_id.eq(self.tenant_id))
                    .set(audit_events::details.eq(sql::<Jsonb>(
                        "jsonb_set(details, '{count}', to_jsonb(coalesce((details->>'count')::int8, 0) + 1))",
                    )))
                    .execute(conn)?;
            }
            None => {
                let mut event = self.clone();
                event.action = ACTION.to_string();
                event.insert(conn)?;
            }
        }
        Ok(())
    }

    pub fn action(mut self, action: &str) -> Self {
        self.action = action.to_string();
        self
    }
    /// Adds the keys of `more` (an object) to the details the caller set.
    pub fn merge_details(mut self, more: serde_json::Value) -> Self {
        match (&mut self.details, more) {
            (serde_json::Value::Object(mine), serde_json::Value::Object(more)) => {
                mine.extend(more);
            }
            (_, more) => self.details = more,
        }
        self
    }
    pub fn insert(&self, conn: &mut PgConnection) -> QueryResult<usize> {
        diesel::insert_into(audit_events::table)
            .values(self)
            .execute(conn)
    }
}

impl AuditEvent {
    pub fn recent(
        conn: &mut PgConnection,
        tenant_id: i64,
        limit: i64,
    ) -> QueryResult<Vec<AuditEvent>> {
        audit_events::table
            .filter(audit_events::tenant_id.eq(tenant_id))
            .order((audit_events::created_at.desc(), audit_events::id.desc()))
            .limit(limit)
            .select(AuditEvent::as_select())
            .load(conn)
    }
}
