-- Tenant API keys (`kak_`): only the SHA-256 digest of a key is stored.
CREATE TABLE api_keys (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_digest BYTEA NOT NULL UNIQUE,
    hint TEXT NOT NULL,
    scopes TEXT[] NOT NULL CHECK (cardinality(scopes) > 0 AND scopes <@ ARRAY['read', 'write', 'login']),
    expires_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_by TEXT NOT NULL
);
CREATE INDEX api_keys_tenant_idx ON api_keys (tenant_id, created_at DESC);

-- Idempotency-Key of the API's creates: the first answer, kept 24 hours.
-- One-time secrets in an answer are never stored (the replay says so).
CREATE TABLE api_idempotency (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    idem_key TEXT NOT NULL,
    request_digest BYTEA NOT NULL,
    status INTEGER,
    response JSONB,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, idem_key)
);
CREATE INDEX api_idempotency_created_idx ON api_idempotency (created_at);
