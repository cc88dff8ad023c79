DROP TRIGGER refresh_tokens_scopes ON refresh_tokens;
DROP TRIGGER access_tokens_scopes ON access_tokens;
DROP FUNCTION token_scopes_from_grant();
ALTER TABLE refresh_tokens DROP COLUMN scopes;
ALTER TABLE access_tokens DROP COLUMN scopes;
