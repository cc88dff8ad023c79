-- Foreign keys that keep a row inside its tenant.
--
-- A token referenced tenants (id) and grants (id) separately, so nothing
-- stopped a token of tenant B from pointing at a grant of tenant A; the
-- same held for a grant and its app. A token now references its grant by
-- (grant_id, tenant_id) and a grant its app by (app_id, tenant_id), so the
-- tenant can no longer differ from the parent's. Deleting a tenant still
-- removes everything: tenants -> apps -> grants -> tokens, all ON DELETE
-- CASCADE.
--
-- The token inserts of code exchange and refresh no longer take FOR KEY
-- SHARE on the tenant's row (one row shared by all of a tenant's
-- concurrent writes); the check is on the grant's row, which a refresh
-- already holds FOR UPDATE. Measured with the load benchmark, the effect
-- on the write paths was within run-to-run noise (README, Performance).

ALTER TABLE apps ADD CONSTRAINT apps_id_tenant_key UNIQUE (id, tenant_id);
ALTER TABLE grants ADD CONSTRAINT grants_id_tenant_key UNIQUE (id, tenant_id);

ALTER TABLE grants
    DROP CONSTRAINT grants_tenant_id_fkey,
    DROP CONSTRAINT grants_app_id_fkey,
    ADD CONSTRAINT grants_app_tenant_fkey FOREIGN KEY (app_id, tenant_id)
        REFERENCES apps (id, tenant_id) ON DELETE CASCADE;

ALTER TABLE access_tokens
    DROP CONSTRAINT access_tokens_tenant_id_fkey,
    DROP CONSTRAINT access_tokens_grant_id_fkey,
    ADD CONSTRAINT access_tokens_grant_tenant_fkey FOREIGN KEY (grant_id, tenant_id)
        REFERENCES grants (id, tenant_id) ON DELETE CASCADE;

ALTER TABLE refresh_tokens
    DROP CONSTRAINT refresh_tokens_tenant_id_fkey,
    DROP CONSTRAINT refresh_tokens_grant_id_fkey,
    ADD CONSTRAINT refresh_tokens_grant_tenant_fkey FOREIGN KEY (grant_id, tenant_id)
        REFERENCES grants (id, tenant_id) ON DELETE CASCADE;
