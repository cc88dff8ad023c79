// Hand-maintained to match migrations/; `diesel print-schema` produces the same.

diesel::table! {
    tenants (id) {
        id -> Int8,
        slug -> Text,
        name -> Text,
        signup_allowed -> Bool,
        brand_display_name -> Nullable<Text>,
        brand_accent_color -> Nullable<Text>,
        brand_logo_url -> Nullable<Text>,
        created_at -> Timestamptz,
        creator_signin -> Text,
        login_url -> Nullable<Text>,
    }
}

diesel::table! {
    admins (id) {
        id -> Int8,
        email -> Text,
        password_hash -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    memberships (tenant_id, admin_id) {
        tenant_id -> Int8,
        admin_id -> Int8,
        role -> Text,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    admin_sessions (id) {
        id -> Int8,
        admin_id -> Int8,
        token_digest -> Bytea,
        created_at -> Timestamptz,
        last_seen_at -> Timestamptz,
        expires_at -> Timestamptz,
        ip -> Nullable<Text>,
    }
}

diesel::table! {
    apps (id) {
        id -> Int8,
        tenant_id -> Int8,
        name -> Text,
        client_id -> Text,
        redirect_uris -> Array<Text>,
        allowed_scopes -> Array<Text>,
        access_token_ttl_secs -> Int4,
        refresh_token_ttl_secs -> Int4,
        refresh_grace_secs -> Int4,
        refresh_without_secret -> Bool,
        disabled -> Bool,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        auth_version -> Int8,
        skip_consent -> Bool,
    }
}

diesel::table! {
    client_secrets (id) {
        id -> Int8,
        tenant_id -> Int8,
        app_id -> Int8,
        secret_digest -> Bytea,
        hint -> Text,
        created_at -> Timestamptz,
        expires_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        last_used_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    end_users (id) {
        id -> Int8,
        tenant_id -> Int8,
        email -> Nullable<Text>,
        password_hash -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamptz,
        subject -> Nullable<Text>,
        name -> Nullable<Text>,
    }
}

diesel::table! {
    end_user_sessions (id) {
        id -> Int8,
        tenant_id -> Int8,
        end_user_id -> Int8,
        token_digest -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    grants (id) {
        id -> Int8,
        tenant_id -> Int8,
        app_id -> Int8,
        end_user_id -> Int8,
        scopes -> Array<Text>,
        created_at -> Timestamptz,
        last_refreshed_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        revoked_reason -> Nullable<Text>,
    }
}

diesel::table! {
    authorization_codes (id) {
        id -> Int8,
        tenant_id -> Int8,
        app_id -> Int8,
        end_user_id -> Int8,
        code_digest -> Bytea,
        redirect_uri -> Text,
        scopes -> Array<Text>,
        code_challenge -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        grant_id -> Nullable<Int8>,
    }
}

diesel::table! {
    access_tokens (id) {
        id -> Int8,
        tenant_id -> Int8,
        grant_id -> Int8,
        token_digest -> Bytea,
        hint -> Text,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        revoked_at -> Nullable<Timestamptz>,
        scopes -> Array<Text>,
    }
}

diesel::table! {
    refresh_tokens (id) {
        id -> Int8,
        tenant_id -> Int8,
        grant_id -> Int8,
        token_digest -> Bytea,
        hint -> Text,
        parent_id -> Nullable<Int8>,
        access_token_id -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        scopes -> Array<Text>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> Int8,
        tenant_id -> Nullable<Int8>,
        actor -> Text,
        action -> Text,
        object_type -> Nullable<Text>,
        object_id -> Nullable<Text>,
        ip -> Nullable<Text>,
        details -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    token_stats (app_id, bucket) {
        app_id -> Int8,
        tenant_id -> Int8,
        bucket -> Timestamptz,
        issued -> Int8,
        failed -> Int8,
    }
}

diesel::table! {
    admin_invites (id) {
        id -> Int8,
        tenant_id -> Int8,
        email -> Text,
        role -> Text,
        token_digest -> Bytea,
        invited_by -> Nullable<Int8>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        accepted_by -> Nullable<Int8>,
        revoked_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    api_keys (id) {
        id -> Int8,
        tenant_id -> Int8,
        name -> Text,
        key_digest -> Bytea,
        hint -> Text,
        scopes -> Array<Text>,
        expires_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        last_used_at -> Nullable<Timestamptz>,
        revoked_at -> Nullable<Timestamptz>,
        created_by -> Text,
    }
}

diesel::table! {
    api_idempotency (tenant_id, idem_key) {
        tenant_id -> Int8,
        idem_key -> Text,
        request_digest -> Bytea,
        status -> Nullable<Int4>,
        response -> Nullable<Jsonb>,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    login_requests (id) {
        id -> Int8,
        tenant_id -> Int8,
        app_id -> Int8,
        challenge_digest -> Bytea,
        browser_digest -> Bytea,
        redirect_uri -> Text,
        redirect_uri_sent -> Bool,
        scopes -> Array<Text>,
        state -> Nullable<Text>,
        code_challenge -> Nullable<Text>,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
        accepted_at -> Nullable<Timestamptz>,
        end_user_id -> Nullable<Int8>,
        remember_for_secs -> Nullable<Int4>,
        verifier_digest -> Nullable<Bytea>,
        rejected_at -> Nullable<Timestamptz>,
        reject_error -> Nullable<Text>,
        reject_description -> Nullable<Text>,
        completed_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    login_sessions (id) {
        id -> Int8,
        tenant_id -> Int8,
        end_user_id -> Int8,
        browser_digest -> Bytea,
        created_at -> Timestamptz,
        expires_at -> Timestamptz,
    }
}

diesel::table! {
    consents (app_id, end_user_id) {
        tenant_id -> Int8,
        app_id -> Int8,
        end_user_id -> Int8,
        scopes -> Array<Text>,
        granted_at -> Timestamptz,
    }
}

diesel::joinable!(memberships -> tenants (tenant_id));
diesel::joinable!(memberships -> admins (admin_id));
diesel::joinable!(admin_sessions -> admins (admin_id));
diesel::joinable!(apps -> tenants (tenant_id));
diesel::joinable!(client_secrets -> apps (app_id));
diesel::joinable!(end_users -> tenants (tenant_id));
diesel::joinable!(end_user_sessions -> end_users (end_user_id));
diesel::joinable!(grants -> apps (app_id));
diesel::joinable!(grants -> end_users (end_user_id));
diesel::joinable!(access_tokens -> grants (grant_id));
diesel::joinable!(refresh_tokens -> grants (grant_id));
diesel::joinable!(authorization_codes -> apps (app_id));
diesel::joinable!(audit_events -> tenants (tenant_id));
diesel::joinable!(token_stats -> apps (app_id));
diesel::joinable!(admin_invites -> tenants (tenant_id));
diesel::joinable!(login_requests -> apps (app_id));
diesel::joinable!(login_sessions -> end_users (end_user_id));
diesel::joinable!(consents -> apps (app_id));

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    admins,
    memberships,
    admin_sessions,
    apps,
    client_secrets,
    end_users,
    end_user_sessions,
    grants,
    authorization_codes,
    access_tokens,
    refresh_tokens,
    audit_events,
    token_stats,
    admin_invites,
    login_requests,
    login_sessions,
    consents,
);
