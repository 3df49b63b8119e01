SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0019_owner_only_writes -> 0020_purge_function_locks

CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p auth.retention_policies;
    cutoff timestamptz;
    condition text;
    columns text;
    part regclass;
    n bigint;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    -- 1. row policies: one batch each (row locks of the batch only)
    FOR p IN SELECT * FROM auth.retention_policies WHERE NOT partitioned
              ORDER BY position, name LOOP
        cutoff := now() - p.keep_for;
        table_name := p.name;
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
        RETURN NEXT;
    END LOOP;

    -- 2. partitioned policies, last, archived ones first: at most one month per table per call.
    -- The month is copied to the archive under a SHARE lock on that partition only (writes to
    -- that month wait; the parent and its other months go on), then detached and dropped: the
    -- ACCESS EXCLUSIVE locks of DETACH and DROP cover catalog changes, and are released when
    -- the caller commits, right after this function returns.
    FOR p IN SELECT * FROM auth.retention_policies WHERE partitioned
              ORDER BY archive_to IS NULL, position, name LOOP
        cutoff := now() - p.keep_for;
        table_name := p.name;
        deleted := 0;
        IF NOT pg_try_advisory_xact_lock(hashtext('authmodels.drop_months:' || p.table_name)) THEN
            RAISE NOTICE 'purge_expired_data: another session is dropping months of %; '
                         'left to it', p.table_name;
        ELSIF EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = p.table_name::regclass
                                                  AND inhdetachpending) THEN
            RAISE NOTICE 'purge_expired_data: a detach of a month of % was interrupted; finish '
                         'it with `authmodels purge` (or ALTER TABLE ... DETACH PARTITION ... '
                         'FINALIZE, outside a transaction)', p.table_name;
        ELSE
            SELECT c.oid::regclass INTO part FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = p.table_name::regclass
               AND (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz <= cutoff
             ORDER BY c.relname LIMIT 1;
            IF part IS NOT NULL THEN
                BEGIN
                    PERFORM set_config('lock_timeout', '2s', true);
                    EXECUTE format('LOCK TABLE %s IN SHARE MODE', part);
                    IF p.archive_to IS NOT NULL THEN
                        -- by name: the archive's columns need not be in the table's order
                        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
                          INTO columns FROM pg_attribute
                         WHERE attrelid = p.table_name::regclass AND attnum > 0
                           AND NOT attisdropped;
                        EXECUTE format('INSERT INTO %s (%s, archived_at) SELECT %s, now() FROM %s',
                                       p.archive_to, columns, columns, part);
                    END IF;
                    EXECUTE format('SELECT count(*) FROM %s', part) INTO n;
                    EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', p.table_name, part);
                    EXECUTE format('DROP TABLE %s', part);
                    deleted := n;
                EXCEPTION WHEN lock_not_available THEN
                    RAISE NOTICE 'purge_expired_data: % is busy; its month % waits for the next '
                                 'run', p.table_name, part;
                END;
                PERFORM set_config('lock_timeout', saved_lock_timeout, true);
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

UPDATE auth.alembic_version SET version_num='0020_purge_function_locks' WHERE auth.alembic_version.version_num = '0019_owner_only_writes';

COMMIT;

