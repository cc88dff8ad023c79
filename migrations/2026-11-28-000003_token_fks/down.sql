ALTER TABLE refresh_tokens
    DROP CONSTRAINT refresh_tokens_grant_tenant_fkey,
    ADD CONSTRAINT refresh_tokens_grant_id_fkey FOREIGN KEY (grant_id)
        REFERENCES grants (id) ON DELETE CASCADE,
    ADD CONSTRAINT refresh_tokens_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE;

ALTER TABLE access_tokens
    DROP CONSTRAINT access_tokens_grant_tenant_fkey,
    ADD CONSTRAINT access_tokens_grant_id_fkey FOREIGN KEY (grant_id)
        REFERENCES grants (id) ON DELETE CASCADE,
    ADD CONSTRAINT access_tokens_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE;

ALTER TABLE grants
    DROP CONSTRAINT grants_app_tenant_fkey,
    ADD CONSTRAINT grants_app_id_fkey FOREIGN KEY (app_id)
        REFERENCES apps (id) ON DELETE CASCADE,
    ADD CONSTRAINT grants_tenant_id_fkey FOREIGN KEY (tenant_id)
        REFERENCES tenants (id) ON DELETE CASCADE;

ALTER TABLE grants DROP CONSTRAINT grants_id_tenant_key;
ALTER TABLE apps DROP CONSTRAINT apps_id_tenant_key;
