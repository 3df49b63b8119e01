SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

CREATE TABLE auth.alembic_version (
    version_num VARCHAR(32) NOT NULL, 
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001_baseline

CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT 'user',
    email_verified BOOLEAN NOT NULL DEFAULT false,
    email_verified_at TIMESTAMPTZ,
    two_factor_enabled BOOLEAN NOT NULL DEFAULT false,
    two_factor_secret TEXT,
    -- squawk-ignore prefer-bigint-over-int -- bounded to 0..10 by ck_users_failed_login_attempts_range
    failed_login_attempts INTEGER NOT NULL DEFAULT 0,
    account_locked_until TIMESTAMPTZ,
    last_login_at TIMESTAMPTZ,
    password_changed_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at TIMESTAMPTZ,
    CONSTRAINT pk_users PRIMARY KEY (id),
    CONSTRAINT ck_users_email_format
        CHECK (email ~* '^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$'),
    CONSTRAINT ck_users_failed_login_attempts_range
        CHECK (failed_login_attempts BETWEEN 0 AND 10)
);

CREATE TABLE auth.sessions (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    token_hash TEXT NOT NULL,
    refresh_token_hash TEXT,
    ip_address INET,
    user_agent TEXT,
    device_fingerprint TEXT,
    is_active BOOLEAN NOT NULL DEFAULT true,
    expires_at TIMESTAMPTZ NOT NULL,
    last_activity_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ,
    revoked_reason TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_sessions PRIMARY KEY (id),
    CONSTRAINT fk_sessions_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE
);

CREATE TABLE auth.refresh_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    session_id UUID NOT NULL,
    parent_token_id UUID,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_refresh_tokens PRIMARY KEY (id),
    CONSTRAINT fk_refresh_tokens_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT fk_refresh_tokens_session_id_sessions
        FOREIGN KEY (session_id) REFERENCES auth.sessions (id) ON DELETE CASCADE,
    CONSTRAINT fk_refresh_tokens_parent_token_id_refresh_tokens
        FOREIGN KEY (parent_token_id) REFERENCES auth.refresh_tokens (id) ON DELETE SET NULL
);

CREATE TABLE auth.password_reset_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    used_at TIMESTAMPTZ,
    ip_address INET,
    user_agent TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_password_reset_tokens PRIMARY KEY (id),
    CONSTRAINT fk_password_reset_tokens_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE
);

CREATE TABLE auth.email_verification_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    email TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    verified_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_email_verification_tokens PRIMARY KEY (id),
    CONSTRAINT fk_email_verification_tokens_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE
);

CREATE TABLE auth.audit_logs (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID,
    event_type TEXT NOT NULL,
    event_status TEXT NOT NULL DEFAULT 'success',
    ip_address INET,
    user_agent TEXT,
    details JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_audit_logs PRIMARY KEY (id),
    CONSTRAINT fk_audit_logs_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT ck_audit_logs_event_type_known CHECK (event_type IN (
        'login', 'logout', 'password_change', 'password_reset_request',
        'password_reset_complete', 'email_verification', 'account_locked', 'account_unlocked',
        '2fa_enabled', '2fa_disabled', 'session_revoked'
    )),
    CONSTRAINT ck_audit_logs_event_status_known
        CHECK (event_status IN ('success', 'failure', 'blocked', 'pending'))
);

CREATE TABLE auth.user_profiles (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    email TEXT NOT NULL,
    display_name TEXT,
    avatar_url TEXT,
    bio TEXT,
    locale TEXT,
    timezone TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_user_profiles PRIMARY KEY (id)
);

CREATE TABLE auth.biometric_credentials (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_email TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    -- squawk-ignore prefer-bigint-over-int -- the pre-hardening 32-bit counter; 0003 widens it
    sign_count INTEGER NOT NULL DEFAULT 0,
    device_name TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_used_at TIMESTAMPTZ,
    revoked_at TIMESTAMPTZ,
    CONSTRAINT pk_biometric_credentials PRIMARY KEY (id)
);

CREATE TABLE auth.device_flows (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    device_code TEXT NOT NULL,
    user_code TEXT NOT NULL,
    client_id TEXT NOT NULL,
    scope TEXT,
    status TEXT NOT NULL DEFAULT 'pending',
    user_email TEXT,
    expires_at TIMESTAMPTZ NOT NULL,
    approved_at TIMESTAMPTZ,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_device_flows PRIMARY KEY (id),
    CONSTRAINT ck_device_flows_status_known
        CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'consumed'))
);

CREATE TABLE auth.access_tokens (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    token TEXT NOT NULL,
    user_email TEXT NOT NULL,
    client_id TEXT,
    scope TEXT,
    expires_at TIMESTAMPTZ NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_access_tokens PRIMARY KEY (id)
);

CREATE TABLE auth.app_logs (
    id BIGINT GENERATED BY DEFAULT AS IDENTITY,
    level TEXT NOT NULL DEFAULT 'info',
    logger TEXT NOT NULL DEFAULT 'app',
    message TEXT NOT NULL,
    context JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_app_logs PRIMARY KEY (id),
    CONSTRAINT ck_app_logs_level_known
        CHECK (level IN ('debug', 'info', 'warning', 'error', 'critical'))
);

CREATE TABLE auth.conversations (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    title TEXT,
    created_by UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_conversations PRIMARY KEY (id),
    CONSTRAINT fk_conversations_created_by_users
        FOREIGN KEY (created_by) REFERENCES auth.users (id) ON DELETE SET NULL
);

CREATE TABLE auth.conversation_participants (
    conversation_id UUID NOT NULL,
    user_id UUID NOT NULL,
    joined_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_conversation_participants PRIMARY KEY (conversation_id, user_id),
    CONSTRAINT fk_conversation_participants_conversation_id_conversations
        FOREIGN KEY (conversation_id) REFERENCES auth.conversations (id) ON DELETE CASCADE,
    CONSTRAINT fk_conversation_participants_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE
);

CREATE TABLE auth.messages (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL,
    sender_id UUID NOT NULL,
    -- squawk-ignore prefer-bigint-over-int -- seed 003's column as its migration 104 made it
    encryption_version INTEGER NOT NULL DEFAULT 1,
    content_encrypted BYTEA,
    content_nonce BYTEA,
    content TEXT NOT NULL DEFAULT '',
    version_number BIGINT NOT NULL DEFAULT 1,
    sequence_number BIGINT GENERATED BY DEFAULT AS IDENTITY,
    idempotency_key TEXT,
    -- squawk-ignore prefer-bigint-over-int -- reactions to one message stay far below 2^31
    reaction_count INTEGER NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    edited_at TIMESTAMPTZ,
    deleted_at TIMESTAMPTZ,
    recalled_at TIMESTAMPTZ,
    CONSTRAINT pk_messages PRIMARY KEY (id),
    CONSTRAINT fk_messages_conversation_id_conversations
        FOREIGN KEY (conversation_id) REFERENCES auth.conversations (id) ON DELETE CASCADE,
    CONSTRAINT fk_messages_sender_id_users
        FOREIGN KEY (sender_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_messages_version_number_positive CHECK (version_number > 0)
);

CREATE UNIQUE INDEX ix_users_email ON auth.users (email) WHERE deleted_at IS NULL;

CREATE INDEX ix_users_created_at ON auth.users (created_at DESC);

CREATE INDEX ix_users_last_login_at ON auth.users (last_login_at DESC);

CREATE INDEX ix_users_account_locked_until ON auth.users (account_locked_until) WHERE account_locked_until IS NOT NULL;

CREATE INDEX ix_sessions_user_id ON auth.sessions (user_id) WHERE is_active;

CREATE INDEX ix_sessions_token_hash ON auth.sessions (token_hash) WHERE is_active;

CREATE INDEX ix_sessions_expires_at ON auth.sessions (expires_at) WHERE is_active;

CREATE INDEX ix_sessions_last_activity_at ON auth.sessions (last_activity_at DESC);

CREATE INDEX ix_sessions_user_id_is_active_expires_at ON auth.sessions (user_id, is_active, expires_at);

CREATE INDEX ix_password_reset_tokens_user_id ON auth.password_reset_tokens (user_id);

CREATE INDEX ix_password_reset_tokens_token_hash ON auth.password_reset_tokens (token_hash);

CREATE INDEX ix_password_reset_tokens_expires_at ON auth.password_reset_tokens (expires_at);

CREATE INDEX ix_email_verification_tokens_user_id ON auth.email_verification_tokens (user_id);

CREATE INDEX ix_email_verification_tokens_token_hash ON auth.email_verification_tokens (token_hash);

CREATE INDEX ix_audit_logs_user_id_created_at ON auth.audit_logs (user_id, created_at DESC);

CREATE INDEX ix_audit_logs_event_type_created_at ON auth.audit_logs (event_type, created_at DESC);

CREATE INDEX ix_audit_logs_created_at ON auth.audit_logs (created_at DESC);

CREATE INDEX ix_audit_logs_ip_address_created_at ON auth.audit_logs (ip_address, created_at DESC);

CREATE INDEX ix_audit_logs_event_status_event_type ON auth.audit_logs (event_status, event_type);

CREATE INDEX ix_refresh_tokens_token_hash ON auth.refresh_tokens (token_hash) WHERE used_at IS NULL AND revoked_at IS NULL;

CREATE INDEX ix_refresh_tokens_session_id ON auth.refresh_tokens (session_id);

CREATE INDEX ix_refresh_tokens_expires_at ON auth.refresh_tokens (expires_at);

CREATE UNIQUE INDEX ix_user_profiles_email ON auth.user_profiles (email);

CREATE INDEX ix_biometric_credentials_user_email ON auth.biometric_credentials (user_email);

CREATE INDEX ix_biometric_credentials_credential_id ON auth.biometric_credentials (credential_id);

CREATE UNIQUE INDEX ix_device_flows_device_code ON auth.device_flows (device_code);

CREATE UNIQUE INDEX ix_device_flows_user_code ON auth.device_flows (user_code);

CREATE UNIQUE INDEX ix_access_tokens_token ON auth.access_tokens (token);

CREATE INDEX ix_access_tokens_user_email ON auth.access_tokens (user_email);

CREATE INDEX ix_app_logs_created_at ON auth.app_logs (created_at);

CREATE INDEX ix_conversations_created_by ON auth.conversations (created_by);

CREATE INDEX ix_conversation_participants_user_id ON auth.conversation_participants (user_id);

CREATE INDEX idx_messages_conversation_id ON auth.messages (conversation_id);

CREATE INDEX idx_messages_sender_id ON auth.messages (sender_id);

CREATE UNIQUE INDEX idx_messages_idempotency_key ON auth.messages (idempotency_key);

CREATE INDEX idx_messages_conversation_created ON auth.messages (conversation_id, created_at DESC);

CREATE INDEX idx_messages_content_fulltext ON auth.messages USING gin (to_tsvector('simple'::regconfig, content));

CREATE FUNCTION auth.update_updated_at_column() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;

CREATE TRIGGER update_users_updated_at
    BEFORE UPDATE ON auth.users
    FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column();

CREATE FUNCTION auth.cleanup_expired_sessions() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    affected integer;
BEGIN
    UPDATE auth.sessions
       SET is_active = false
     WHERE is_active AND expires_at < now();
    GET DIAGNOSTICS affected = ROW_COUNT;
    RETURN affected;
END;
$$;

CREATE FUNCTION auth.cleanup_expired_tokens() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    affected integer;
    total integer := 0;
BEGIN
    DELETE FROM auth.password_reset_tokens
     WHERE expires_at < now() - interval '7 days'
        OR used_at < now() - interval '7 days';
    GET DIAGNOSTICS affected = ROW_COUNT;
    total := total + affected;

    DELETE FROM auth.email_verification_tokens
     WHERE expires_at < now() - interval '7 days'
        OR verified_at < now() - interval '7 days';
    GET DIAGNOSTICS affected = ROW_COUNT;
    total := total + affected;

    DELETE FROM auth.refresh_tokens
     WHERE expires_at < now() - interval '30 days'
        OR used_at < now() - interval '30 days'
        OR revoked_at < now() - interval '30 days';
    GET DIAGNOSTICS affected = ROW_COUNT;
    RETURN total + affected;
END;
$$;

CREATE VIEW auth.active_sessions AS
SELECT s.id AS session_id,
       s.user_id,
       u.email,
       s.ip_address,
       s.user_agent,
       s.device_fingerprint,
       s.created_at,
       s.last_activity_at,
       s.expires_at
  FROM auth.sessions s
  JOIN auth.users u ON u.id = s.user_id
 WHERE s.is_active
   AND s.expires_at > now()
   AND u.deleted_at IS NULL;

CREATE VIEW auth.user_security_status AS
SELECT u.id AS user_id,
       u.email,
       u.failed_login_attempts,
       u.account_locked_until,
       coalesce(u.account_locked_until > now(), false) AS is_locked,
       u.two_factor_enabled,
       u.email_verified,
       u.last_login_at,
       u.password_changed_at,
       (SELECT count(*) FROM auth.sessions s
         WHERE s.user_id = u.id AND s.is_active AND s.expires_at > now()) AS active_session_count,
       (SELECT max(a.created_at) FROM auth.audit_logs a
         WHERE a.user_id = u.id) AS last_security_event_at
  FROM auth.users u
 WHERE u.deleted_at IS NULL;

INSERT INTO auth.alembic_version (version_num) VALUES ('0001_baseline') RETURNING auth.alembic_version.version_num;

COMMIT;

