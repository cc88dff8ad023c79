-- A version number for what client authentication reads of an app: its
-- client_id, disabled and refresh_without_secret, and its secrets. The
-- introspection hot path keeps a copy of each app's key and secrets in
-- memory and, in the same query (the same snapshot) that reads the token,
-- reads the app's auth_version: the copy is used only while the number is
-- the one it was read with, else the app and its secrets are read again.
--
-- The triggers bump the number in the transaction that makes the change, so
-- every writer (the dashboard, the CLI, an operator's SQL) invalidates the
-- copies at its commit: a revoked secret or a disabled app is refused by
-- the next request, as before. A secret's last_used_at (stamped at most once
-- a minute on use) does not count.

ALTER TABLE apps ADD COLUMN auth_version BIGINT NOT NULL DEFAULT 0;

CREATE FUNCTION apps_bump_auth_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.tenant_id, NEW.client_id, NEW.disabled, NEW.refresh_without_secret)
        IS DISTINCT FROM
       (OLD.tenant_id, OLD.client_id, OLD.disabled, OLD.refresh_without_secret)
    THEN
        NEW.auth_version := OLD.auth_version + 1;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER apps_auth_version
    BEFORE UPDATE ON apps
    FOR EACH ROW EXECUTE FUNCTION apps_bump_auth_version();

CREATE FUNCTION client_secrets_bump_app_auth_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE apps SET auth_version = auth_version + 1 WHERE id = OLD.app_id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        UPDATE apps SET auth_version = auth_version + 1
        WHERE id = NEW.app_id AND (TG_OP = 'INSERT' OR NEW.app_id <> OLD.app_id);
    END IF;
    RETURN NULL;
END
$$;

-- Every change to a secret except its last_used_at stamp.
CREATE TRIGGER client_secrets_auth_version
    AFTER INSERT OR DELETE OR UPDATE OF app_id, secret_digest, expires_at, revoked_at
    ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION client_secrets_bump_app_auth_version();

CREATE FUNCTION apps_bump_all_auth_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE apps SET auth_version = auth_version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER client_secrets_truncate_auth_version
    AFTER TRUNCATE ON client_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION apps_bump_all_auth_versions();
