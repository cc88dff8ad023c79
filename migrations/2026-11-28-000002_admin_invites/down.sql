DROP INDEX IF EXISTS audit_events_tenant_action_idx;
DROP TABLE admin_invites;
