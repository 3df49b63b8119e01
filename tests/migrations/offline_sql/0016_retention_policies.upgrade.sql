SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0015_partitioned_logs -> 0016_retention_policies

CREATE TABLE IF NOT EXISTS auth.retention_policies (
            name TEXT NOT NULL,
            table_name TEXT NOT NULL,
            expired TEXT NOT NULL,
            keep_for INTERVAL NOT NULL,
            key_column TEXT NOT NULL DEFAULT 'id',
            archive_to TEXT,
            partitioned BOOLEAN NOT NULL DEFAULT false,
            -- squawk-ignore prefer-bigint-over-smallint -- an ordering of a dozen policies
            position SMALLINT NOT NULL DEFAULT 100,
            updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
            CONSTRAINT pk_retention_policies PRIMARY KEY (name),
            CONSTRAINT ck_retention_policies_keep_for_not_negative
                CHECK (keep_for >= interval '0'),
            CONSTRAINT ck_retention_policies_expired_uses_cutoff
                CHECK (strpos(expired, ':' || 'cutoff') > 0)
        );

-- squawk-ignore prefer-robust-stmts -- the table is new (created just above, empty)
ALTER TABLE auth.retention_policies ENABLE ROW LEVEL SECURITY;

CREATE TRIGGER update_retention_policies_updated_at BEFORE UPDATE ON auth.retention_policies FOR EACH ROW EXECUTE FUNCTION auth.update_updated_at_column();

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('device_flows', 'auth.device_flows', 'retention_expires_at < :cutoff', make_interval(secs=>0.0), NULL, false, 10, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('step_up_tokens', 'auth.step_up_tokens', 'least(expires_at, used_at) < :cutoff', make_interval(secs=>86400.0), NULL, false, 15, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('dpop_jtis', 'auth.dpop_jtis', 'expires_at < :cutoff', make_interval(secs=>0.0), NULL, false, 16, 'ctid');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('access_tokens', 'auth.access_tokens', 'least(expires_at, revoked_at) < :cutoff', make_interval(secs=>604800.0), NULL, false, 20, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('refresh_tokens', 'auth.refresh_tokens', 'least(expires_at, used_at, revoked_at) < :cutoff', make_interval(secs=>2592000.0), NULL, false, 30, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('sessions', 'auth.sessions', 'least(expires_at, revoked_at) < :cutoff', make_interval(secs=>2592000.0), NULL, false, 40, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('password_reset_tokens', 'auth.password_reset_tokens', 'least(expires_at, used_at) < :cutoff', make_interval(secs=>604800.0), NULL, false, 50, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('email_verification_tokens', 'auth.email_verification_tokens', 'least(expires_at, verified_at) < :cutoff', make_interval(secs=>604800.0), NULL, false, 60, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('app_logs', 'auth.app_logs', 'created_at < :cutoff', make_interval(secs=>7776000.0), NULL, false, 70, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('audit_logs', 'auth.audit_logs', 'created_at < :cutoff', make_interval(secs=>7776000.0), 'auth.audit_logs_archive', true, 80, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('audit_logs_archive', 'auth.audit_logs_archive', 'archived_at < :cutoff', make_interval(secs=>63072000.0), NULL, false, 85, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('login_attempts', 'auth.login_attempts', 'created_at < :cutoff', make_interval(secs=>7776000.0), NULL, true, 90, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('security_events', 'auth.security_events', 'created_at < :cutoff', make_interval(secs=>31536000.0), NULL, false, 100, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('email_delivery_logs', 'auth.email_delivery_logs', 'created_at < :cutoff', make_interval(secs=>7776000.0), NULL, false, 110, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('sms_delivery_logs', 'auth.sms_delivery_logs', 'created_at < :cutoff', make_interval(secs=>7776000.0), NULL, false, 120, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('session_audits', 'auth.session_audits', 'created_at < :cutoff', make_interval(secs=>7776000.0), NULL, false, 130, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('account_recovery', 'auth.account_recovery', 'least(expires_at, completed_at) < :cutoff', make_interval(secs=>2592000.0), NULL, false, 140, 'id');

INSERT INTO auth.retention_policies (name, table_name, expired, keep_for, archive_to, partitioned, position, key_column) VALUES ('two_factor_backup_codes', 'auth.two_factor_backup_codes', 'used_at < :cutoff', make_interval(secs=>2592000.0), NULL, false, 150, 'id');

CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p auth.retention_policies;
    cutoff timestamptz;
    condition text;
    columns text;
    month record;
    n bigint;
BEGIN
    FOR p IN SELECT * FROM auth.retention_policies ORDER BY position, name LOOP
        cutoff := now() - p.keep_for;
        table_name := p.name;
        deleted := 0;
        IF p.partitioned THEN
            FOR month IN
                SELECT c.oid::regclass AS part FROM pg_inherits i
                  JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = p.table_name::regclass
                   AND (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                     'TO \(''([^'']+)''\)'))[1]::timestamptz <= cutoff
            LOOP
                BEGIN
                    SET LOCAL lock_timeout = '2s';
                    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', p.table_name, month.part);
                    IF p.archive_to IS NOT NULL THEN
                        -- by name: the archive's columns need not be in the table's order
                        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                          INTO columns FROM pg_attribute
                         WHERE attrelid = p.table_name::regclass AND attnum > 0
                           AND NOT attisdropped;
                        EXECUTE format('INSERT INTO %s (%s, archived_at) SELECT %s, now() FROM %s',
                                       p.archive_to, columns, columns, month.part);
                    END IF;
                    EXECUTE format('SELECT count(*) FROM %s', month.part) INTO n;
                    EXECUTE format('DROP TABLE %s', month.part);
                    deleted := deleted + n;
                EXCEPTION WHEN lock_not_available THEN
                    RAISE NOTICE 'purge_expired_data: % is busy; its month % waits for the next run',
                        p.table_name, month.part;
                END;
            END LOOP;
        ELSE
            -- the parameter's name is spelt in two pieces: op.execute would take it for a bind
            condition := replace(p.expired, ':' || 'cutoff', '$1');
            IF p.archive_to IS NULL THEN
                -- the keys as an array: each row is reached through its key, never by a
                -- join that could scan the whole table for every batch
                EXECUTE format(
                    'DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I FROM %2$s '
                    'WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED))',
                    p.key_column, p.table_name, condition)
                USING cutoff, batch_limit;
            ELSE
                SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                  INTO columns FROM pg_attribute
                 WHERE attrelid = p.table_name::regclass AND attnum > 0 AND NOT attisdropped;
                EXECUTE format(
                    'WITH moved AS (DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I '
                    'FROM %2$s WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING t.*) '
                    'INSERT INTO %4$s (%5$s, archived_at) SELECT %5$s, now() FROM moved',
                    p.key_column, p.table_name, condition, p.archive_to, columns)
                USING cutoff, batch_limit;
            END IF;
            GET DIAGNOSTICS deleted = ROW_COUNT;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_access_tokens_retention ON auth.access_tokens (least(expires_at, revoked_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_refresh_tokens_retention ON auth.refresh_tokens (least(expires_at, used_at, revoked_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_sessions_retention ON auth.sessions (least(expires_at, revoked_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_password_reset_tokens_retention ON auth.password_reset_tokens (least(expires_at, used_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_email_verification_tokens_retention ON auth.email_verification_tokens (least(expires_at, verified_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_step_up_tokens_retention ON auth.step_up_tokens (least(expires_at, used_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_session_audits_created_at ON auth.session_audits (created_at);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_account_recovery_retention ON auth.account_recovery (least(expires_at, completed_at));

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_two_factor_backup_codes_used_at ON auth.two_factor_backup_codes (used_at);

BEGIN;

COMMIT;

CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_audit_logs_archive_archived_at ON auth.audit_logs_archive (archived_at);

BEGIN;

UPDATE auth.alembic_version SET version_num='0016_retention_policies' WHERE auth.alembic_version.version_num = '0015_partitioned_logs';

COMMIT;

