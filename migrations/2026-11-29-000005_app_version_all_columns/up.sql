-- The token endpoint keeps a copy of each client too (src/auth/client_cache.rs),
-- and reads more of the app than introspection does: its redirect URIs,
-- scopes, token lifetimes and refresh grace. So the app's auth_version now
-- changes with every column of the app but updated_at (and auth_version
-- itself): a copy whose version still matches is the whole row as the
-- database holds it. A secret's changes keep their triggers (000004).
DROP TRIGGER apps_auth_version ON apps;

CREATE TRIGGER apps_auth_version
    BEFORE UPDATE ON apps
    FOR EACH ROW
    WHEN ((OLD.id, OLD.tenant_id, OLD.name, OLD.client_id, OLD.redirect_uris,
           OLD.allowed_scopes, OLD.access_token_ttl_secs, OLD.refresh_token_ttl_secs,
           OLD.refresh_grace_secs, OLD.refresh_without_secret, OLD.disabled,
           OLD.created_at)
          IS DISTINCT FROM
          (NEW.id, NEW.tenant_id, NEW.name, NEW.client_id, NEW.redirect_uris,
           NEW.allowed_scopes, NEW.access_token_ttl_secs, NEW.refresh_token_ttl_secs,
           NEW.refresh_grace_secs, NEW.refresh_without_secret, NEW.disabled,
           NEW.created_at))
    EXECUTE FUNCTION apps_new_auth_version();
