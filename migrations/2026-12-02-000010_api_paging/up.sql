-- Keyset paging of the tenant API: every list walks (created_at, id)
-- newest first inside one tenant; these indexes serve the row comparison
-- `(created_at, id) < (cursor)` without a sort.
CREATE INDEX grants_tenant_keyset_idx ON grants (tenant_id, created_at DESC, id DESC);
CREATE INDEX end_users_tenant_keyset_idx ON end_users (tenant_id, created_at DESC, id DESC);
CREATE INDEX audit_events_tenant_keyset_idx ON audit_events (tenant_id, created_at DESC, id DESC);
