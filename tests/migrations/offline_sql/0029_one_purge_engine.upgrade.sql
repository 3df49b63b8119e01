SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running upgrade 0028_owner_maintenance -> 0029_one_purge_engine

CREATE OR REPLACE FUNCTION auth.purge_batch(
    target regclass, key_column text, expired text, cutoff timestamptz, batch_limit integer,
    archive_to regclass DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    condition text;
    columns text;
    n bigint;
BEGIN
    -- the parameter's name is spelt in two pieces: op.execute would take it for a bind
    condition := replace(expired, ':' || 'cutoff', '$1');
    IF archive_to IS NULL THEN
        -- the keys as an array: each row is reached through its key, never by a
        -- join that could scan the whole table for every batch
        EXECUTE format(
            'DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I FROM %2$s '
            'WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED))',
            key_column, target, condition)
        USING cutoff, batch_limit;
    ELSE
        -- by name: the archive's columns need not be in the table's order
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
          INTO columns FROM pg_catalog.pg_attribute
         WHERE attrelid = target AND attnum > 0 AND NOT attisdropped;
        EXECUTE format(
            'WITH moved AS (DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I '
            'FROM %2$s WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING t.*) '
            'INSERT INTO %4$s (%5$s, archived_at) SELECT %5$s, now() FROM moved',
            key_column, target, condition, archive_to, columns)
        USING cutoff, batch_limit;
    END IF;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION auth.drop_month_partition(
    parent regclass, part regclass, archive_to regclass DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    columns text;
    n bigint;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    -- The month is copied to the archive under a SHARE lock on that partition only (writes to
    -- that month wait; the parent and its other months go on), then detached and dropped: the
    -- ACCESS EXCLUSIVE locks of DETACH and DROP cover catalog changes, and are released when
    -- the caller commits.
    BEGIN
        PERFORM set_config('lock_timeout', '2s', true);
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', part);
        IF archive_to IS NOT NULL THEN
            -- by name: the archive's columns need not be in the table's order
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
              INTO columns FROM pg_catalog.pg_attribute
             WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;
            EXECUTE format('INSERT INTO %s (%s, archived_at) SELECT %s, now() FROM %s',
                           archive_to, columns, columns, part);
        END IF;
        EXECUTE format('SELECT count(*) FROM %s', part) INTO n;
        EXECUTE format('ALTER TABLE %s DETACH PARTITION %s', parent, part);
        EXECUTE format('DROP TABLE %s', part);
    EXCEPTION WHEN lock_not_available THEN
        n := NULL;  -- busy: the caller says so, and the month waits for the next run
    END;
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    RETURN n;
END
$$;

REVOKE EXECUTE ON FUNCTION auth.purge_batch(regclass, text, text, timestamptz, integer, regclass) FROM PUBLIC;

REVOKE EXECUTE ON FUNCTION auth.drop_month_partition(regclass, regclass, regclass) FROM PUBLIC;

CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p auth.retention_policies;
    target regclass;
    part regclass;
    n bigint;
    from_default jsonb := '{}';
BEGIN
    -- 1. row policies, and the rows of the partitioned tables that sit in their default
    -- partition: one batch each (row locks of the batch only)
    FOR p IN SELECT * FROM auth.retention_policies ORDER BY position, name LOOP
        IF p.partitioned THEN
            target := (SELECT nullif(partdefid, 0)::regclass FROM pg_partitioned_table
                        WHERE partrelid = p.table_name::regclass);
            CONTINUE WHEN target IS NULL;
        ELSE
            target := p.table_name::regclass;
        END IF;
        n := auth.purge_batch(target, p.key_column, p.expired, now() - p.keep_for, batch_limit,
                              p.archive_to::regclass);
        IF p.partitioned THEN
            from_default := from_default || jsonb_build_object(p.name, n);
        ELSE
            table_name := p.name;
            deleted := n;
            RETURN NEXT;
        END IF;
    END LOOP;

    -- 2. partitioned policies, last, archived ones first: at most one month per table per call
    FOR p IN SELECT * FROM auth.retention_policies WHERE partitioned
              ORDER BY archive_to IS NULL, position, name LOOP
        table_name := p.name;
        deleted := coalesce((from_default ->> p.name)::bigint, 0);
        IF NOT pg_try_advisory_xact_lock(hashtext('authmodels.drop_months:' || p.table_name)) THEN
            RAISE NOTICE 'purge_expired_data: another session is dropping months of %; '
                         'left to it', p.table_name;
        ELSIF EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = p.table_name::regclass
                                                  AND inhdetachpending) THEN
            RAISE NOTICE 'purge_expired_data: a detach of a month of % was interrupted; finish '
                         'it with `authmodels purge` (or ALTER TABLE ... DETACH PARTITION ... '
                         'FINALIZE, outside a transaction)', p.table_name;
        ELSE
            -- the default partition's bound is DEFAULT: it has no upper bound to match
            SELECT c.oid::regclass INTO part FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = p.table_name::regclass
               AND (regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                 'TO \(''([^'']+)''\)'))[1]::timestamptz <= now() - p.keep_for
             ORDER BY c.relname LIMIT 1;
            IF part IS NOT NULL THEN
                n := auth.drop_month_partition(p.table_name::regclass, part,
                                               p.archive_to::regclass);
                IF n IS NULL THEN
                    RAISE NOTICE 'purge_expired_data: % is busy; its month % waits for the next '
                                 'run', p.table_name, part;
                ELSE
                    deleted := deleted + n;
                END IF;
            END IF;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$$;

UPDATE auth.alembic_version SET version_num='0029_one_purge_engine' WHERE auth.alembic_version.version_num = '0028_owner_maintenance';

COMMIT;

