-- Foreign keys that keep a row inside its tenant without locking the
-- tenant's row on every write.
--
-- A foreign-key check takes FOR KEY SHARE on the parent row. Every token
-- insert referenced tenants (id), so all concurrent code exchanges and
-- refreshes of a tenant locked that one row: each lock is WAL-logged and,
-- with two or more holders, turns the row's xmax into a MultiXact. The
-- tenant's row was the hottest row in the database.
--
-- A token now references its grant by (grant_id, tenant_id): one check,
-- on the grant's row, which the refresh already holds FOR UPDATE; and the
-- tenant can no longer differ from its grant's. A grant references its app
-- by (app_id, tenant_id) likewise. Deleting a tenant still removes
-- everything: tenants -> apps -> grants -> tokens, all ON DELETE CASCADE.

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
