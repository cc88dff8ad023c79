-- Single-use invitations to join a tenant's dashboard. Only the digest of
-- the link's token is stored.
CREATE TABLE admin_invites (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    email TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'viewer')),
    token_digest BYTEA NOT NULL UNIQUE,
    invited_by BIGINT REFERENCES admins (id) ON DELETE SET NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    accepted_at TIMESTAMPTZ,
    accepted_by BIGINT REFERENCES admins (id) ON DELETE SET NULL,
    revoked_at TIMESTAMPTZ
);
CREATE INDEX admin_invites_tenant_idx ON admin_invites (tenant_id, created_at DESC);
CREATE INDEX audit_events_tenant_action_idx ON audit_events (tenant_id, action, created_at DESC);
