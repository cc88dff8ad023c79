DROP TABLE consents;
DROP TABLE login_sessions;
DROP TABLE login_requests;
DELETE FROM end_users WHERE subject IS NOT NULL;
DROP INDEX end_users_subject_key;
DROP INDEX end_users_hosted_email_key;
ALTER TABLE end_users
    DROP CONSTRAINT end_users_one_kind,
    ALTER COLUMN password_hash SET NOT NULL,
    ALTER COLUMN email SET NOT NULL,
    DROP COLUMN name,
    DROP COLUMN subject,
    ADD CONSTRAINT end_users_tenant_id_email_key UNIQUE (tenant_id, email);
ALTER TABLE apps DROP COLUMN skip_consent;
ALTER TABLE tenants
    DROP CONSTRAINT tenants_delegated_needs_login_url,
    DROP COLUMN login_url,
    DROP COLUMN creator_signin;
