SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0012_message_encryption -> 0013_device_keys

DO $$
        BEGIN
            CREATE TYPE auth.device_key_event_type AS ENUM
                ('registered', 'rotated', 'deleted', 'exchange_failed');
        EXCEPTION WHEN duplicate_object THEN NULL;  -- a re-run after a failure
        END;
        $$;

CREATE TABLE IF NOT EXISTS auth.device_keys (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    user_id UUID NOT NULL,
    device_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    private_key_encrypted BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_device_keys PRIMARY KEY (id),
    CONSTRAINT fk_device_keys_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT uq_device_keys_user_id_device_id UNIQUE (user_id, device_id),
    CONSTRAINT ck_device_keys_device_id_length CHECK (char_length(device_id) BETWEEN 1 AND 255),
    CONSTRAINT ck_device_keys_public_key_x25519 CHECK (
        CASE WHEN public_key ~ '^[A-Za-z0-9+/]{43}=$'
             THEN octet_length(decode(public_key, 'base64')) = 32
             ELSE false END
    ),
    CONSTRAINT ck_device_keys_private_key_encrypted_envelope
        CHECK (auth.is_field_envelope(private_key_encrypted))
);

CREATE TABLE IF NOT EXISTS auth.key_exchanges (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    conversation_id UUID NOT NULL,
    initiator_id UUID NOT NULL,
    peer_id UUID NOT NULL,
    shared_secret_hash BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_key_exchanges PRIMARY KEY (id),
    CONSTRAINT fk_key_exchanges_conversation_id_conversations
        FOREIGN KEY (conversation_id) REFERENCES auth.conversations (id) ON DELETE CASCADE,
    CONSTRAINT fk_key_exchanges_initiator_id_users
        FOREIGN KEY (initiator_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT fk_key_exchanges_peer_id_users
        FOREIGN KEY (peer_id) REFERENCES auth.users (id) ON DELETE CASCADE,
    CONSTRAINT ck_key_exchanges_shared_secret_hash_hmac_sha256
        CHECK (octet_length(shared_secret_hash) = 32),
    CONSTRAINT ck_key_exchanges_initiator_is_not_peer CHECK (initiator_id <> peer_id)
);

CREATE INDEX IF NOT EXISTS ix_key_exchanges_conversation_id_created_at ON auth.key_exchanges (conversation_id, created_at DESC);

CREATE INDEX IF NOT EXISTS ix_key_exchanges_initiator_id ON auth.key_exchanges (initiator_id);

CREATE INDEX IF NOT EXISTS ix_key_exchanges_peer_id ON auth.key_exchanges (peer_id);

CREATE TABLE IF NOT EXISTS auth.device_key_events (
    id UUID NOT NULL DEFAULT gen_random_uuid(),
    event_type auth.device_key_event_type NOT NULL,
    device_key_id UUID,
    user_id UUID,
    device_id TEXT,
    old_public_key_fingerprint BYTEA,
    new_public_key_fingerprint BYTEA,
    actor_user_id UUID,
    conversation_id UUID,
    peer_id UUID,
    reason TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pk_device_key_events PRIMARY KEY (id),
    CONSTRAINT fk_device_key_events_user_id_users
        FOREIGN KEY (user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT fk_device_key_events_actor_user_id_users
        FOREIGN KEY (actor_user_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT fk_device_key_events_conversation_id_conversations
        FOREIGN KEY (conversation_id) REFERENCES auth.conversations (id) ON DELETE SET NULL,
    CONSTRAINT fk_device_key_events_peer_id_users
        FOREIGN KEY (peer_id) REFERENCES auth.users (id) ON DELETE SET NULL,
    CONSTRAINT ck_device_key_events_old_public_key_fingerprint_sha256
        CHECK (octet_length(old_public_key_fingerprint) = 32),
    CONSTRAINT ck_device_key_events_new_public_key_fingerprint_sha256
        CHECK (octet_length(new_public_key_fingerprint) = 32),
    CONSTRAINT ck_device_key_events_reason_length CHECK (char_length(reason) BETWEEN 1 AND 500),
    CONSTRAINT ck_device_key_events_shape CHECK (
        CASE event_type
            WHEN 'registered' THEN new_public_key_fingerprint IS NOT NULL
                               AND old_public_key_fingerprint IS NULL
            WHEN 'rotated' THEN new_public_key_fingerprint IS NOT NULL
                            AND old_public_key_fingerprint IS NOT NULL
                            AND new_public_key_fingerprint <> old_public_key_fingerprint
            WHEN 'deleted' THEN old_public_key_fingerprint IS NOT NULL
                            AND new_public_key_fingerprint IS NULL
            WHEN 'exchange_failed' THEN reason IS NOT NULL
        END
    )
);

CREATE INDEX IF NOT EXISTS ix_device_key_events_user_id_created_at ON auth.device_key_events (user_id, created_at DESC);

CREATE INDEX IF NOT EXISTS ix_device_key_events_device_key_id_created_at ON auth.device_key_events (device_key_id, created_at);

CREATE INDEX IF NOT EXISTS ix_device_key_events_event_type_created_at ON auth.device_key_events (event_type, created_at DESC);

CREATE INDEX IF NOT EXISTS ix_device_key_events_actor_user_id ON auth.device_key_events (actor_user_id) WHERE actor_user_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS ix_device_key_events_conversation_id ON auth.device_key_events (conversation_id) WHERE conversation_id IS NOT NULL;

CREATE INDEX IF NOT EXISTS ix_device_key_events_peer_id ON auth.device_key_events (peer_id) WHERE peer_id IS NOT NULL;

CREATE OR REPLACE FUNCTION auth.device_key_fingerprint(public_key text) RETURNS bytea
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- SHA-256 of the raw 32-byte X25519 key behind its base64 text
    SELECT sha256(decode(public_key, 'base64'))
$$;

CREATE OR REPLACE FUNCTION auth.update_device_keys_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('authmodels.keep_updated_at', true), '') <> 'on' THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE TRIGGER trg_device_keys_updated_at
    BEFORE UPDATE ON auth.device_keys
    FOR EACH ROW EXECUTE FUNCTION auth.update_device_keys_updated_at();

CREATE OR REPLACE FUNCTION auth.record_device_key_event() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    reason text := nullif(current_setting('authmodels.device_key_change_reason', true), '');
    actor uuid;
    owner uuid;
BEGIN
    -- The current user of the transaction, if that account exists (it may be the one being
    -- deleted); NULL for the system and the service path.
    SELECT id INTO actor FROM auth.users WHERE id = auth.uid();
    IF TG_OP = 'INSERT' THEN
        INSERT INTO auth.device_key_events
               (event_type, device_key_id, user_id, device_id, new_public_key_fingerprint,
                actor_user_id, reason)
        VALUES ('registered', NEW.id, NEW.user_id, NEW.device_id,
                auth.device_key_fingerprint(NEW.public_key), actor, reason);
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        INSERT INTO auth.device_key_events
               (event_type, device_key_id, user_id, device_id, old_public_key_fingerprint,
                new_public_key_fingerprint, actor_user_id, reason)
        VALUES ('rotated', NEW.id, NEW.user_id, NEW.device_id,
                auth.device_key_fingerprint(OLD.public_key),
                auth.device_key_fingerprint(NEW.public_key), actor, reason);
        RETURN NULL;
    END IF;
    -- DELETE: when the account itself is being deleted, the key goes with it and the event
    -- cannot reference the account any more.
    SELECT id INTO owner FROM auth.users WHERE id = OLD.user_id;
    INSERT INTO auth.device_key_events
           (event_type, device_key_id, user_id, device_id, old_public_key_fingerprint,
            actor_user_id, reason)
    VALUES ('deleted', OLD.id, owner, OLD.device_id,
            auth.device_key_fingerprint(OLD.public_key), actor,
            coalesce(reason, CASE WHEN owner IS NULL THEN 'account deleted' END));
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER trg_device_keys_registered
    AFTER INSERT ON auth.device_keys
    FOR EACH ROW EXECUTE FUNCTION auth.record_device_key_event();

CREATE OR REPLACE TRIGGER trg_device_keys_rotated
    AFTER UPDATE OF public_key ON auth.device_keys
    FOR EACH ROW WHEN (OLD.public_key IS DISTINCT FROM NEW.public_key)
    EXECUTE FUNCTION auth.record_device_key_event();

CREATE OR REPLACE TRIGGER trg_device_keys_deleted
    AFTER DELETE ON auth.device_keys
    FOR EACH ROW EXECUTE FUNCTION auth.record_device_key_event();

CREATE OR REPLACE FUNCTION auth.get_device_key_stats()
RETURNS TABLE (
    total_device_keys bigint,
    users_with_device_keys bigint,
    average_devices_per_user numeric,
    keys_rotated_last_30_days bigint,
    key_exchanges_last_30_days bigint,
    failed_exchanges_last_30_days bigint
)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT (SELECT count(*) FROM auth.device_keys),
           (SELECT count(DISTINCT user_id) FROM auth.device_keys),
           (SELECT round(count(*)::numeric / nullif(count(DISTINCT user_id), 0), 2)
              FROM auth.device_keys),
           (SELECT count(*) FROM auth.device_key_events
             WHERE event_type = 'rotated' AND created_at > now() - interval '30 days'),
           (SELECT count(*) FROM auth.key_exchanges
             WHERE created_at > now() - interval '30 days'),
           (SELECT count(*) FROM auth.device_key_events
             WHERE event_type = 'exchange_failed' AND created_at > now() - interval '30 days')
$$;

CREATE OR REPLACE FUNCTION auth.get_peer_public_keys(peer uuid)
RETURNS TABLE (device_id text, public_key text, updated_at timestamptz)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    -- A peer's public keys, for a caller who shares a conversation with the peer.
    SELECT k.device_id, k.public_key, k.updated_at
      FROM auth.device_keys AS k
     WHERE k.user_id = peer
       AND EXISTS (
           SELECT 1
             FROM auth.conversation_participants AS mine
             JOIN auth.conversation_participants AS theirs
               ON theirs.conversation_id = mine.conversation_id
            WHERE mine.user_id = auth.uid() AND theirs.user_id = peer
       )
     ORDER BY k.device_id
$$;

COMMIT;

BEGIN;

-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it is a no-op, so a re-run is safe
ALTER TABLE auth.device_keys ENABLE ROW LEVEL SECURITY;

-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it is a no-op, so a re-run is safe
ALTER TABLE auth.key_exchanges ENABLE ROW LEVEL SECURITY;

-- squawk-ignore prefer-robust-stmts -- enabling row-level security on a table that has it is a no-op, so a re-run is safe
ALTER TABLE auth.device_key_events ENABLE ROW LEVEL SECURITY;

DROP POLICY IF EXISTS device_keys_owner ON auth.device_keys;

CREATE POLICY device_keys_owner ON auth.device_keys AS PERMISSIVE FOR ALL USING (user_id = (SELECT auth.uid())) WITH CHECK (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS key_exchanges_party_read ON auth.key_exchanges;

CREATE POLICY key_exchanges_party_read ON auth.key_exchanges AS PERMISSIVE FOR SELECT USING (initiator_id = (SELECT auth.uid()) OR peer_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS key_exchanges_initiator_insert ON auth.key_exchanges;

CREATE POLICY key_exchanges_initiator_insert ON auth.key_exchanges AS PERMISSIVE FOR INSERT WITH CHECK (initiator_id = (SELECT auth.uid()) AND auth.is_conversation_member(conversation_id));

DROP POLICY IF EXISTS device_key_events_owner_read ON auth.device_key_events;

CREATE POLICY device_key_events_owner_read ON auth.device_key_events AS PERMISSIVE FOR SELECT USING (user_id = (SELECT auth.uid()));

DROP POLICY IF EXISTS device_key_events_owner_report_failure ON auth.device_key_events;

CREATE POLICY device_key_events_owner_report_failure ON auth.device_key_events AS PERMISSIVE FOR INSERT WITH CHECK (user_id = (SELECT auth.uid()) AND event_type = 'exchange_failed');

COMMIT;

BEGIN;

UPDATE auth.alembic_version SET version_num='0013_device_keys' WHERE auth.alembic_version.version_num = '0012_message_encryption';

COMMIT;

