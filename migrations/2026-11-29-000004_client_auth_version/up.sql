-- A version for what client authentication reads of an app: its id,
-- tenant, client_id, disabled and refresh_without_secret, and its secrets'
-- id, app, digest, expiry and revocation (the columns of AppKey and
-- SecretKey but last_used_at). Introspection keeps a copy of each app's key
-- and secrets in memory and, in the same statement (the same snapshot)
-- that reads the token, reads the app's auth_version: the copy is used only
-- while the version is the one it was read with, else the app and its
-- secrets are read again (src/auth/client_cache.rs).
--
-- The triggers change the version in the transaction that makes the
-- change, so every writer (the dashboard, the CLI, an operator's SQL)
-- invalidates the copies at its commit: a revoked secret or a disabled app
-- is refused by the next request, as before. A secret's last_used_at
-- (stamped at most once a minute on use) does not count.
--
-- A new version is a random 63-bit number, not a counter, so that no other
-- state of the database can carry a number a copy was read with: not an app
-- id reused after a restore or TRUNCATE ... RESTART IDENTITY, nor a
-- failover to a replica that lost the commits a copy had seen.

CREATE FUNCTION kitauth_new_auth_version() RETURNS bigint
LANGUAGE sql VOLATILE AS $$ SELECT floor(random() * 9.2e18)::bigint $$;

ALTER TABLE apps ADD COLUMN auth_version BIGINT NOT NULL DEFAULT kitauth_new_auth_version();

CREATE FUNCTION apps_new_auth_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.auth_version := kitauth_new_auth_version();
    RETURN NEW;
END
$$;

CREATE TRIGGER apps_auth_version
    BEFORE UPDATE ON apps
    FOR EACH ROW
    WHEN ((OLD.id, OLD.tenant_id, OLD.client_id, OLD.disabled, OLD.refresh_without_secret)
          IS DISTINCT FROM
          (NEW.id, NEW.tenant_id, NEW.client_id, NEW.disabled, NEW.refresh_without_secret))
    EXECUTE FUNCTION apps_new_auth_version();

-- Lock order: the secret's row, then its app's. Code that changes a secret
-- of an app that may be deleted at the same time locks the app first
-- (ClientSecret::rotate and ::revoke), as the delete's cascade does.
CREATE FUNCTION client_secrets_new_app_auth_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE apps SET auth_version = kitauth_new_auth_version() WHERE id = OLD.app_id;
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.app_id <> OLD.app_id) THEN
        UPDATE apps SET auth_version = kitauth_new_auth_version() WHERE id = NEW.app_id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER client_secrets_auth_version
    AFTER INSERT OR DELETE ON client_secrets
    FOR EACH ROW EXECUTE FUNCTION client_secrets_new_app_auth_version();

CREATE TRIGGER client_secrets_auth_version_update
    AFTER UPDATE ON client_secrets
    FOR EACH ROW
    WHEN ((OLD.id, OLD.app_id, OLD.secret_digest, OLD.expires_at, OLD.revoked_at)
          IS DISTINCT FROM
          (NEW.id, NEW.app_id, NEW.secret_digest, NEW.expires_at, NEW.revoked_at))
    EXECUTE FUNCTION client_secrets_new_app_auth_version();

CREATE FUNCTION apps_all_new_auth_versions() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE apps SET auth_version = kitauth_new_auth_version();
    RETURN NULL;
END
$$;

CREATE TRIGGER client_secrets_truncate_auth_version
    AFTER TRUNCATE ON client_secrets
    FOR EACH STATEMENT EXECUTE FUNCTION apps_all_new_auth_versions();
