DROP INDEX IF EXISTS audit_events_tenant_keyset_idx;
DROP INDEX IF EXISTS end_users_tenant_keyset_idx;
DROP INDEX IF EXISTS grants_tenant_keyset_idx;
