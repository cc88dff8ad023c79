-- The token endpoint keeps a copy of each client too (src/auth/client_cache.rs),
-- and reads more of the app than introspection does: its redirect URIs,
-- scopes, token lifetimes and refresh grace. So the app's auth_version now
-- changes with every column of the app but updated_at (and auth_version
-- itself), a column added later included: a copy whose version still
-- matches is the whole row as the database holds it. A secret's changes
-- keep their triggers (000004). (Triggers that are switched off, as by
-- session_replication_role = replica or pg_restore --disable-triggers, do
-- not renew versions: restart kitauth after such a load.)
DROP TRIGGER apps_auth_version ON apps;

CREATE TRIGGER apps_auth_version
    BEFORE UPDATE ON apps
    FOR EACH ROW
    WHEN ((to_jsonb(OLD) - 'updated_at' - 'auth_version')
          IS DISTINCT FROM
          (to_jsonb(NEW) - 'updated_at' - 'auth_version'))
    EXECUTE FUNCTION apps_new_auth_version();
