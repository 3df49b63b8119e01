SET lock_timeout = '5s';

SET statement_timeout = '30min';

CREATE SCHEMA IF NOT EXISTS auth;

BEGIN;

-- Running downgrade 0027_default_partitions -> 0026_token_shape_checks

-- the rows of auth.audit_logs_default move to their month partitions, batch by batch (online only); what is left moves here;

LOCK TABLE auth.audit_logs IN ACCESS EXCLUSIVE MODE;

SELECT count(*) FROM auth.ensure_monthly_partitions('auth.audit_logs', 0);

DROP TABLE auth.audit_logs_default;

-- the rows of auth.login_attempts_default move to their month partitions, batch by batch (online only); what is left moves here;

LOCK TABLE auth.login_attempts IN ACCESS EXCLUSIVE MODE;

SELECT count(*) FROM auth.ensure_monthly_partitions('auth.login_attempts', 0);

DROP TABLE auth.login_attempts_default;

CREATE OR REPLACE FUNCTION auth.ensure_monthly_partitions(
    parent regclass, months_ahead integer DEFAULT 3, from_month date DEFAULT NULL,
    to_month date DEFAULT NULL
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    parent_schema text;
    parent_name text;
    month_start date;
    last_month date;
    part text;
BEGIN
    IF months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must not be negative (got %)', months_ahead;
    END IF;
    SELECT n.nspname, c.relname INTO parent_schema, parent_name
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = parent AND c.relkind = 'p';
    IF parent_name IS NULL THEN
        RAISE EXCEPTION '% is not a partitioned table', parent;
    END IF;
    -- one caller at a time per parent: two would race to create the same month
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    month_start := date_trunc('month', coalesce(from_month, (now() AT TIME ZONE 'UTC')::date));
    last_month := greatest(
        date_trunc('month', (now() AT TIME ZONE 'UTC')::date)
            + make_interval(months => months_ahead),
        date_trunc('month', to_month),
        month_start);
    WHILE month_start <= last_month LOOP
        part := format('%s_p%s', parent_name, to_char(month_start, 'YYYYMM'));
        IF to_regclass(format('%I.%I', parent_schema, part)) IS NULL THEN
            EXECUTE format(
                'CREATE TABLE %I.%I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                parent_schema, part, parent,
                month_start::timestamp AT TIME ZONE 'UTC',
                (month_start + interval '1 month')::timestamp AT TIME ZONE 'UTC');
            -- Policies apply to queries through the parent only; a partition read directly
            -- would bypass them. RLS enabled with no policy: nobody but the owner reads it.
            EXECUTE format('ALTER TABLE %I.%I ENABLE ROW LEVEL SECURITY', parent_schema, part);
            RETURN NEXT part;
        END IF;
        month_start := month_start + interval '1 month';
    END LOOP;
END
$$;

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

DROP FUNCTION auth.attach_month_partition(regclass, date);

DROP FUNCTION auth.copy_month_rows(regclass, date, integer);

DROP FUNCTION auth.prepare_month_partition(regclass, date);

DROP FUNCTION auth.months_without_partition(regclass, integer, date, date);

DROP FUNCTION auth.seal_partition(regclass);

DROP FUNCTION auth.month_partition_name(regclass, date);

UPDATE auth.alembic_version SET version_num='0026_token_shape_checks' WHERE auth.alembic_version.version_num = '0027_default_partitions';

COMMIT;

