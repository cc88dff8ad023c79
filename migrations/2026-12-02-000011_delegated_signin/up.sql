-- Delegated sign-in (issue 16): the tenant's own login service says who a
-- creator is; kitauth keeps everything OAuth.

-- Per tenant: who signs creators in. `delegated` needs the login URL.
ALTER TABLE tenants
    ADD COLUMN creator_signin TEXT NOT NULL DEFAULT 'hosted'
        CHECK (creator_signin IN ('hosted', 'delegated')),
    ADD COLUMN login_url TEXT CHECK (login_url IS NULL OR length(login_url) BETWEEN 1 AND 2000),
    ADD CONSTRAINT tenants_delegated_needs_login_url
        CHECK (creator_signin = 'hosted' OR login_url IS NOT NULL);

-- Per app: no consent page (first-party apps that ask in their own product).
ALTER TABLE apps ADD COLUMN skip_consent BOOLEAN NOT NULL DEFAULT FALSE;

-- A creator is a hosted account (email and password, no subject) or a
-- tenant's subject (the tenant's own id; email and name as the tenant last
-- gave them, no password). Grants, codes and every rule keep pointing at
-- end_users, whichever kind it is.
ALTER TABLE end_users
    ADD COLUMN subject TEXT CHECK (subject IS NULL OR length(subject) BETWEEN 1 AND 255),
    ADD COLUMN name TEXT CHECK (name IS NULL OR length(name) BETWEEN 1 AND 200),
    ALTER COLUMN email DROP NOT NULL,
    ALTER COLUMN password_hash DROP NOT NULL,
    ADD CONSTRAINT end_users_one_kind CHECK (
        (subject IS NULL AND email IS NOT NULL AND password_hash IS NOT NULL)
        OR (subject IS NOT NULL AND password_hash IS NULL)
    );
ALTER TABLE end_users DROP CONSTRAINT end_users_tenant_id_email_key;
CREATE UNIQUE INDEX end_users_hosted_email_key ON end_users (tenant_id, email) WHERE subject IS NULL;
CREATE UNIQUE INDEX end_users_subject_key ON end_users (tenant_id, subject) WHERE subject IS NOT NULL;

-- A login request: an authorization request waiting for the tenant's login
-- service. Only digests of the challenge, the verifier (issued on accept)
-- and the browser-binding cookie are stored; everything needed to resume
-- the authorization request is here. Whom the browser is remembered as is
-- read when the login service asks (login_sessions), never copied here.
CREATE TABLE login_requests (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    challenge_digest BYTEA NOT NULL UNIQUE,
    browser_digest BYTEA NOT NULL,
    redirect_uri TEXT NOT NULL,
    redirect_uri_sent BOOLEAN NOT NULL,
    scopes TEXT[] NOT NULL,
    state TEXT,
    code_challenge TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    -- Accepted: who the login service says this is.
    accepted_at TIMESTAMPTZ,
    end_user_id BIGINT REFERENCES end_users (id) ON DELETE CASCADE,
    remember_for_secs INTEGER CHECK (remember_for_secs IS NULL OR remember_for_secs >= 0),
    verifier_digest BYTEA UNIQUE,
    -- Rejected: the OAuth error to send back to Kit.
    rejected_at TIMESTAMPTZ,
    reject_error TEXT,
    reject_description TEXT,
    -- Completed in the browser that started it (the verifier is spent).
    completed_at TIMESTAMPTZ,
    CHECK (accepted_at IS NULL OR rejected_at IS NULL),
    CHECK (accepted_at IS NULL OR (end_user_id IS NOT NULL AND verifier_digest IS NOT NULL)),
    CHECK (rejected_at IS NULL OR (reject_error IS NOT NULL AND verifier_digest IS NOT NULL))
);
CREATE INDEX login_requests_tenant_expires_idx ON login_requests (tenant_id, expires_at);
CREATE INDEX login_requests_expires_idx ON login_requests (expires_at);
CREATE INDEX login_requests_end_user_idx ON login_requests (end_user_id);

-- A remembered login: this browser (the digest of its binding cookie) is
-- this subject on this tenant until expires_at (at most 30 days).
CREATE TABLE login_sessions (
    id BIGSERIAL PRIMARY KEY,
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    end_user_id BIGINT NOT NULL REFERENCES end_users (id) ON DELETE CASCADE,
    browser_digest BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, browser_digest)
);
CREATE INDEX login_sessions_end_user_idx ON login_sessions (end_user_id);
CREATE INDEX login_sessions_expires_idx ON login_sessions (expires_at);

-- A remembered consent: this creator allowed this app these scopes.
CREATE TABLE consents (
    tenant_id BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    app_id BIGINT NOT NULL REFERENCES apps (id) ON DELETE CASCADE,
    end_user_id BIGINT NOT NULL REFERENCES end_users (id) ON DELETE CASCADE,
    scopes TEXT[] NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (app_id, end_user_id)
);
CREATE INDEX consents_end_user_idx ON consents (end_user_id);
