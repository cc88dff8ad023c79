DROP TRIGGER apps_auth_version ON apps;

CREATE TRIGGER apps_auth_version
    BEFORE UPDATE ON apps
    FOR EACH ROW
    WHEN ((OLD.id, OLD.tenant_id, OLD.client_id, OLD.disabled, OLD.refresh_without_secret)
          IS DISTINCT FROM
          (NEW.id, NEW.tenant_id, NEW.client_id, NEW.disabled, NEW.refresh_without_secret))
    EXECUTE FUNCTION apps_new_auth_version();
