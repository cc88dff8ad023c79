DROP TRIGGER client_secrets_truncate_auth_version ON client_secrets;
DROP FUNCTION apps_bump_all_auth_versions();
DROP TRIGGER client_secrets_auth_version ON client_secrets;
DROP FUNCTION client_secrets_bump_app_auth_version();
DROP TRIGGER apps_auth_version ON apps;
DROP FUNCTION apps_bump_auth_version();
ALTER TABLE apps DROP COLUMN auth_version;
