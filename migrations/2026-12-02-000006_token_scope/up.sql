-- Each token carries its own scope (RFC 6749 §6: a refresh may narrow it);
-- the grant keeps the upper bound. Existing tokens get their grant's scope.
-- A row inserted without a scope (older tooling, hand-written fixtures)
-- takes its grant's, through a trigger that only fires when none is given;
-- kitauth's own statements always name it.

ALTER TABLE access_tokens ADD COLUMN scopes TEXT[];
ALTER TABLE refresh_tokens ADD COLUMN scopes TEXT[];

UPDATE access_tokens t SET scopes = g.scopes FROM grants g WHERE g.id = t.grant_id;
UPDATE refresh_tokens t SET scopes = g.scopes FROM grants g WHERE g.id = t.grant_id;

CREATE FUNCTION token_scopes_from_grant() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT scopes INTO NEW.scopes FROM grants WHERE id = NEW.grant_id;
    RETURN NEW;
END
$$;

CREATE TRIGGER access_tokens_scopes BEFORE INSERT ON access_tokens
    FOR EACH ROW WHEN (NEW.scopes IS NULL) EXECUTE FUNCTION token_scopes_from_grant();
CREATE TRIGGER refresh_tokens_scopes BEFORE INSERT ON refresh_tokens
    FOR EACH ROW WHEN (NEW.scopes IS NULL) EXECUTE FUNCTION token_scopes_from_grant();

ALTER TABLE access_tokens ALTER COLUMN scopes SET NOT NULL;
ALTER TABLE refresh_tokens ALTER COLUMN scopes SET NOT NULL;
