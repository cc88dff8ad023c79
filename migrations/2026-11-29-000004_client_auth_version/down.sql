DROP TRIGGER client_secrets_truncate_auth_version ON client_secrets;
DROP FUNCTION apps_all_new_auth_versions();
DROP TRIGGER client_secrets_auth_version_update ON client_secrets;
DROP TRIGGER client_secrets_auth_version ON client_secrets;
DROP FUNCTION client_secrets_new_app_auth_version();
DROP TRIGGER apps_auth_version ON apps;
DROP FUNCTION apps_new_auth_version();
ALTER TABLE apps DROP COLUMN auth_version;
DROP FUNCTION kitauth_new_auth_version();
