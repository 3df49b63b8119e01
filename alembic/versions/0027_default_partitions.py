"""Default partitions: a row of ``audit_logs`` or ``login_attempts`` is never refused for its month.

Issue "guarantees that hold at head". Each partitioned log gets a sealed DEFAULT partition; the
split (``auth.months_without_partition``, ``prepare_month_partition``, ``copy_month_rows``,
``attach_month_partition``) moves a month's rows out of it under short locks, for
``auth.ensure_monthly_partitions`` and ``authmodels partitions ensure``; the SQL purge also purges
the default partitions.

Downgrade: the default partitions' rows go to their months, then the partitions and functions are
dropped and 0015's ``ensure_monthly_partitions`` and 0020's ``purge_expired_data`` come back; a row
whose month cannot have a partition stops it before anything is dropped. Nothing is lost.

See docs/phases/0027-default-partitions.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op
from sqlalchemy import text

from authmodels.revision_ops import SCHEMA, explicit_transaction, is_offline, refuse, step

revision: str = "0027_default_partitions"
down_revision: str | Sequence[str] | None = "0026_token_shape_checks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("audit_logs", "login_attempts")
#: Rows per copy statement when the downgrade empties a default partition.
BATCH_SIZE = 10_000

MONTH_PARTITION_NAME = r"""
CREATE OR REPLACE FUNCTION auth.month_partition_name(parent regclass, month date) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format('%s_p%s', c.relname, to_char(month, 'YYYYMM')) FROM pg_class c
     WHERE c.oid = parent
$$
"""

SEAL_PARTITION = r"""
CREATE OR REPLACE FUNCTION auth.seal_partition(part regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    policy name;
    grantee text;
BEGIN
    -- A partition is read and written through its parent, whose policies and privileges apply;
    -- reached by its own name it would bypass them. So: row-level security with no policy
    -- (nobody but the owner reads it) and no privilege for any role but the owner (0019).
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', part);
    FOR policy IN SELECT polname FROM pg_policy WHERE polrelid = part LOOP
        EXECUTE format('DROP POLICY %I ON %s', policy, part);
    END LOOP;
    FOR grantee IN
        SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END
          FROM pg_class c, aclexplode(c.relacl) a
         WHERE c.oid = part AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('REVOKE ALL ON %s FROM %s', part, grantee);
    END LOOP;
END
$$
"""

MONTHS_WITHOUT_PARTITION = r"""
CREATE OR REPLACE FUNCTION auth.months_without_partition(
    parent regclass, months_ahead integer DEFAULT 3, from_month date DEFAULT NULL,
    to_month date DEFAULT NULL
) RETURNS SETOF date
LANGUAGE plpgsql STABLE AS $$
DECLARE
    parent_schema text;
    key_column name;
    default_part regclass;
    first_month date;
    last_month date;
    month date;
    rel regclass;
BEGIN
    IF months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must not be negative (got %)', months_ahead;
    END IF;
    SELECT n.nspname, a.attname, nullif(pt.partdefid, 0)::regclass
      INTO parent_schema, key_column, default_part
      FROM pg_partitioned_table pt
      JOIN pg_class c ON c.oid = pt.partrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = parent AND pt.partstrat = 'r';
    IF key_column IS NULL THEN
        RAISE EXCEPTION '% is not a table partitioned by range of a column', parent;
    END IF;
    first_month := date_trunc('month', coalesce(from_month, (now() AT TIME ZONE 'UTC')::date));
    last_month := greatest(
        date_trunc('month', (now() AT TIME ZONE 'UTC')::date)
            + make_interval(months => months_ahead),
        date_trunc('month', to_month),
        first_month);
    FOR month IN EXECUTE format(
        $q$SELECT m::date FROM generate_series(%1$L::date, %2$L::date, interval '1 month') m
           UNION
           SELECT date_trunc('month', %3$I AT TIME ZONE 'UTC')::date FROM %4$s
            WHERE %3$I >= '0001-01-01 00:00+00' AND %3$I < '10000-01-01 00:00+00'
           ORDER BY 1$q$,
        first_month, last_month, key_column,
        -- no default partition: an empty set of the parent's rows
        coalesce(default_part::text, format('ONLY %s', parent)))
    LOOP
        rel := to_regclass(format('%I.%I', parent_schema, auth.month_partition_name(parent, month)));
        IF rel IS NULL OR EXISTS (
            SELECT 1 FROM pg_constraint
             WHERE conrelid = rel AND conname = 'ck_' || auth.month_partition_name(parent, month)
                                                 || '_month'
               AND NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = rel))
        THEN
            RETURN NEXT month;  -- missing, or a split in progress (prepared, not attached)
        ELSIF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = rel) THEN
            RAISE NOTICE '% is a month detached from % and not dropped yet: its rows stay in the '
                         'default partition until `authmodels purge` has dropped it', rel, parent;
        END IF;
    END LOOP;
END
$$
"""

PREPARE_MONTH_PARTITION = r"""
CREATE OR REPLACE FUNCTION auth.prepare_month_partition(parent regclass, month date)
RETURNS text
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
DECLARE
    parent_schema text;
    key_column name;
    part text;
    qualified text;
    rel regclass;
BEGIN
    SELECT n.nspname, a.attname INTO parent_schema, key_column
      FROM pg_partitioned_table pt
      JOIN pg_class c ON c.oid = pt.partrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = parent AND pt.partstrat = 'r';
    IF key_column IS NULL THEN
        RAISE EXCEPTION '% is not a table partitioned by range of a column', parent;
    END IF;
    -- one caller at a time per parent (the advisory lock ensure_monthly_partitions takes)
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    month := date_trunc('month', month);
    part := auth.month_partition_name(parent, month);
    qualified := format('%I.%I', parent_schema, part);
    rel := to_regclass(qualified);
    IF rel IS NOT NULL THEN
        IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = rel) THEN
            RETURN NULL;  -- the month has its partition
        END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = rel AND conname = 'ck_' || part || '_month') THEN
            RAISE EXCEPTION '% is a month detached from % and not dropped yet: run '
                            '`authmodels purge` first', rel, parent
                  USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
        RETURN part;  -- a split in progress: it goes on
    END IF;
    -- Foreign keys are left to ATTACH, which clones them (a table with its own would have its
    -- triggers on the referenced table dropped at ATTACH: ACCESS EXCLUSIVE on users).
    EXECUTE format('CREATE TABLE %s (LIKE %s INCLUDING ALL)', qualified, parent);
    -- The month's bounds as a CHECK: ATTACH proves the partition bound from it instead of
    -- scanning the table, and it marks a table being split (dropped once attached).
    EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I CHECK (%I >= %L AND %I < %L)',
                   qualified, 'ck_' || part || '_month',
                   key_column, month::timestamp AT TIME ZONE 'UTC',
                   key_column, (month + interval '1 month')::timestamp AT TIME ZONE 'UTC');
    PERFORM auth.seal_partition(qualified::regclass);
    RETURN part;
END
$$
"""

COPY_MONTH_ROWS = r"""
CREATE OR REPLACE FUNCTION auth.copy_month_rows(
    parent regclass, month date, batch_limit integer DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
DECLARE
    parent_schema text;
    key_column name;
    key_type text;
    id_type text;
    default_part regclass;
    part regclass;
    columns text;
    last_key text;
    last_id text;
    after text := '';
    copied bigint;
BEGIN
    SELECT n.nspname, a.attname, format_type(a.atttypid, a.atttypmod),
           nullif(pt.partdefid, 0)::regclass
      INTO parent_schema, key_column, key_type, default_part
      FROM pg_partitioned_table pt
      JOIN pg_class c ON c.oid = pt.partrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = parent AND pt.partstrat = 'r';
    month := date_trunc('month', month);
    part := to_regclass(format('%I.%I', parent_schema, auth.month_partition_name(parent, month)));
    IF default_part IS NULL OR part IS NULL
       OR EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = part)
       OR NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = part
                         AND conname = 'ck_' || auth.month_partition_name(parent, month)
                                       || '_month') THEN
        RETURN 0;  -- nothing to copy from, or no split in progress
    END IF;
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
           max(format_type(atttypid, atttypmod)) FILTER (WHERE attname = 'id')
      INTO columns, id_type
      FROM pg_attribute WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;
    -- keyset on (key, id), after the last row copied so far: each batch reads its rows only
    EXECUTE format('SELECT %I::text, id::text FROM %s ORDER BY %I DESC, id DESC LIMIT 1',
                   key_column, part, key_column)
       INTO last_key, last_id;
    IF last_key IS NOT NULL THEN
        after := format(' AND (%I, id) > (CAST(%L AS %s), CAST(%L AS %s))',
                        key_column, last_key, key_type, last_id, id_type);
    END IF;
    EXECUTE format(
        'INSERT INTO %1$s (%2$s) SELECT %2$s FROM %3$s WHERE %4$I >= $1 AND %4$I < $2%5$s '
        'ORDER BY %4$I, id LIMIT $3 ON CONFLICT DO NOTHING',
        part, columns, default_part, key_column, after)
    USING month::timestamp AT TIME ZONE 'UTC',
          (month + interval '1 month')::timestamp AT TIME ZONE 'UTC', batch_limit;
    GET DIAGNOSTICS copied = ROW_COUNT;
    IF batch_limit IS NULL OR copied < batch_limit THEN
        -- caught up: statistics for the plans of attach_month_partition
        EXECUTE format('ANALYZE %s', part);
    END IF;
    RETURN copied;
END
$$
"""

ATTACH_MONTH_PARTITION = r"""
CREATE OR REPLACE FUNCTION auth.attach_month_partition(parent regclass, month date)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    parent_schema text;
    key_column name;
    default_part regclass;
    part text;
    qualified text;
    lower_bound timestamptz;
    upper_bound timestamptz;
    d_columns text;
    n_columns text;
    columns text;
    horizon xid;
    in_default bigint;
    in_copy bigint;
    moved bigint := 0;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    SELECT n.nspname, a.attname, nullif(pt.partdefid, 0)::regclass
      INTO parent_schema, key_column, default_part
      FROM pg_partitioned_table pt
      JOIN pg_class c ON c.oid = pt.partrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]
     WHERE pt.partrelid = parent AND pt.partstrat = 'r';
    IF key_column IS NULL THEN
        RAISE EXCEPTION '% is not a table partitioned by range of a column', parent;
    END IF;
    -- each statement below must see what was committed before it (the carry-over under lock)
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'attach_month_partition needs a READ COMMITTED transaction (this one is %)',
            current_setting('transaction_isolation')
              USING ERRCODE = 'active_sql_transaction';
    END IF;
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    month := date_trunc('month', month);
    qualified := format('%I.%I', parent_schema, auth.month_partition_name(parent, month));
    IF EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass(qualified)) THEN
        RETURN NULL;  -- the month has its partition already
    END IF;
    -- Every lock request of this transaction gives up after half of deadlock_timeout: in a lock
    -- cycle with an application transaction (one that updated users, then writes to the log),
    -- this one gives way and is retried, never the application's.
    PERFORM set_config('lock_timeout', (extract(epoch FROM least(interval '2s',
        current_setting('deadlock_timeout')::interval / 2)) * 1000)::integer || 'ms', true);
    -- The parent first (SHARE UPDATE EXCLUSIVE: its reads and writes go on), then the default
    -- partition: the order DETACH PARTITION takes them in, so a purge dropping a month cannot
    -- deadlock with a split.
    EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', parent);
    part := auth.prepare_month_partition(parent, month);
    lower_bound := month::timestamp AT TIME ZONE 'UTC';
    upper_bound := (month + interval '1 month')::timestamp AT TIME ZONE 'UTC';
    IF default_part IS NOT NULL THEN
        SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum),
               string_agg('d.' || quote_ident(attname), ', ' ORDER BY attnum),
               string_agg('n.' || quote_ident(attname), ', ' ORDER BY attnum)
          INTO columns, d_columns, n_columns
          FROM pg_attribute WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;
        -- 1. No lock that blocks anyone: the copy is made to match the default partition's rows
        -- of the month (a copied row since changed or deleted goes, a missing row is copied).
        -- Whatever was committed before `horizon` (the oldest transaction still running now)
        -- is then in the copy as it is in the default partition.
        horizon := xid(pg_snapshot_xmin(pg_current_snapshot()));
        EXECUTE format(
            'DELETE FROM %1$s n WHERE NOT EXISTS (SELECT 1 FROM %2$s d WHERE d.id = n.id '
            'AND d.%3$I = n.%3$I AND (%4$s) IS NOT DISTINCT FROM (%5$s))',
            qualified, default_part, key_column, d_columns, n_columns);
        EXECUTE format(
            'INSERT INTO %1$s (%4$s) SELECT %4$s FROM %2$s d WHERE %3$I >= $1 AND %3$I < $2 '
            'AND NOT EXISTS (SELECT 1 FROM %1$s n WHERE n.id = d.id AND n.%3$I = d.%3$I)',
            qualified, default_part, key_column, columns)
        USING lower_bound, upper_bound;
        -- 2. Writes to the parent wait until the commit (SHARE ROW EXCLUSIVE; reads go on). An
        -- INSERT routes its row by the partitions it saw when it started: a row routed to the
        -- default partition before the ATTACH below and written after it would be refused
        -- ("violates partition constraint"), so no write may start before this transaction
        -- ends. EXCLUSIVE on the default partition: writes to it by its own name (the purge's
        -- batches) wait too.
        EXECUTE format('LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE', parent);
        EXECUTE format('LOCK TABLE %s IN EXCLUSIVE MODE', default_part);
        -- a row written since the horizon (inserted or updated: its xmin is not older than the
        -- horizon) replaces its copy
        EXECUTE format(
            'DELETE FROM %1$s n USING %2$s d WHERE d.%3$I >= $1 AND d.%3$I < $2 '
            'AND age(d.xmin) <= age($3) AND n.id = d.id AND n.%3$I = d.%3$I',
            qualified, default_part, key_column)
        USING lower_bound, upper_bound, horizon;
        EXECUTE format(
            'INSERT INTO %1$s (%4$s) SELECT %4$s FROM %2$s d WHERE %3$I >= $1 AND %3$I < $2 '
            'AND age(d.xmin) <= age($3)',
            qualified, default_part, key_column, columns)
        USING lower_bound, upper_bound, horizon;
        -- every row of the month is in the copy now; a copy of a row deleted since the horizon
        -- (or moved to another month) is one too many: the counts tell
        EXECUTE format('SELECT count(*) FROM %s WHERE %I >= $1 AND %I < $2',
                       default_part, key_column, key_column)
           INTO in_default USING lower_bound, upper_bound;
        EXECUTE format('SELECT count(*) FROM %s', qualified) INTO in_copy;
        IF in_copy <> in_default THEN
            EXECUTE format(
                'DELETE FROM %1$s n WHERE NOT EXISTS (SELECT 1 FROM %2$s d WHERE d.id = n.id '
                'AND d.%3$I = n.%3$I)', qualified, default_part, key_column);
        END IF;
        EXECUTE format('DELETE FROM %s WHERE %I >= $1 AND %I < $2',
                       default_part, key_column, key_column)
        USING lower_bound, upper_bound;
        GET DIAGNOSTICS moved = ROW_COUNT;
    END IF;
    -- grant_app_role / grant_service_role may have run while the table was not a partition yet
    PERFORM auth.seal_partition(qualified::regclass);
    -- the default partition is scanned (no row of the month is left: ACCESS EXCLUSIVE on it,
    -- reads of it wait), the table is not (its CHECK proves the bound); the parent's foreign
    -- keys are cloned and checked (SHARE ROW EXCLUSIVE on users: its writes wait)
    EXECUTE format('ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%L) TO (%L)',
                   parent, qualified, lower_bound, upper_bound);
    EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', qualified, 'ck_' || part || '_month');
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    RETURN moved;
END
$$
"""

ENSURE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION auth.ensure_monthly_partitions(
    parent regclass, months_ahead integer DEFAULT 3, from_month date DEFAULT NULL,
    to_month date DEFAULT NULL
) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
    months date[];
    month date;
    saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
    IF months_ahead < 0 THEN
        RAISE EXCEPTION 'months_ahead must not be negative (got %)', months_ahead;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_class WHERE oid = parent AND relkind = 'p') THEN
        RAISE EXCEPTION '% is not a partitioned table', parent;
    END IF;
    -- one caller at a time per parent: two would race to create the same month
    PERFORM pg_advisory_xact_lock(parent::oid::bigint);
    -- the parent first, before the default partition is read (see attach_month_partition)
    BEGIN
        PERFORM set_config('lock_timeout', '2s', true);
        EXECUTE format('LOCK TABLE %s IN SHARE UPDATE EXCLUSIVE MODE', parent);
        PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'ensure_monthly_partitions: % is busy (a DETACH or ATTACH); nothing was '
                     'created, call again later', parent;
        RETURN;
    END;
    months := ARRAY(SELECT auth.months_without_partition(parent, months_ahead, from_month,
                                                         to_month));
    -- copies first, while the default partition is not locked; then each month is attached
    FOREACH month IN ARRAY months LOOP
        BEGIN
            PERFORM auth.prepare_month_partition(parent, month);
            PERFORM auth.copy_month_rows(parent, month);
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'ensure_monthly_partitions: %: busy, left for the next call',
                auth.month_partition_name(parent, month);
        END;
    END LOOP;
    FOREACH month IN ARRAY months LOOP
        BEGIN
            IF auth.attach_month_partition(parent, month) IS NOT NULL THEN
                RETURN NEXT auth.month_partition_name(parent, month);
            END IF;
        EXCEPTION WHEN lock_not_available THEN
            RAISE NOTICE 'ensure_monthly_partitions: %: busy, left for the next call (its rows '
                         'stay in the default partition)', auth.month_partition_name(parent, month);
        END;
    END LOOP;
END
$$
"""

PURGE_FUNCTION = r"""
CREATE OR REPLACE FUNCTION auth.purge_expired_data(batch_limit integer DEFAULT 10000)
RETURNS TABLE (table_name text, deleted bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    p auth.retention_policies;
    cutoff timestamptz;
    condition text;
    columns text;
    target regclass;
    part regclass;
    n bigint;
    from_default jsonb := '{}';
    saved_lock_timeout text := current_setting('lock_timeout');
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
        cutoff := now() - p.keep_for;
        -- the parameter's name is spelt in two pieces: op.execute would take it for a bind
        condition := replace(p.expired, ':' || 'cutoff', '$1');
        IF p.archive_to IS NULL THEN
            -- the keys as an array: each row is reached through its key, never by a
            -- join that could scan the whole table for every batch
            EXECUTE format(
                'DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I FROM %2$s '
                'WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED))',
                p.key_column, target, condition)
            USING cutoff, batch_limit;
        ELSE
            SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum)
              INTO columns FROM pg_attribute
             WHERE attrelid = p.table_name::regclass AND attnum > 0 AND NOT attisdropped;
            EXECUTE format(
                'WITH moved AS (DELETE FROM %2$s t WHERE t.%1$I = ANY(ARRAY(SELECT %1$I '
                'FROM %2$s WHERE %3$s LIMIT $2 FOR UPDATE SKIP LOCKED)) RETURNING t.*) '
                'INSERT INTO %4$s (%5$s, archived_at) SELECT %5$s, now() FROM moved',
                p.key_column, target, condition, p.archive_to, columns)
            USING cutoff, batch_limit;
        END IF;
        GET DIAGNOSTICS n = ROW_COUNT;
        IF p.partitioned THEN
            from_default := from_default || jsonb_build_object(p.name, n);
        ELSE
            table_name := p.name;
            deleted := n;
            RETURN NEXT;
        END IF;
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
                    deleted := deleted + n;
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
$$
"""

#: The functions this revision adds (the downgrade drops them), in an order they can be dropped.
NEW_FUNCTIONS = (
    "auth.attach_month_partition(regclass, date)",
    "auth.copy_month_rows(regclass, date, integer)",
    "auth.prepare_month_partition(regclass, date)",
    "auth.months_without_partition(regclass, integer, date, date)",
    "auth.seal_partition(regclass)",
    "auth.month_partition_name(regclass, date)",
)

#: 0015's function, put back by the downgrade (a revision keeps its own copy: 0015 may not change).
ENSURE_FUNCTION_0015 = r"""
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
$$
"""

#: 0020's function, put back by the downgrade.
PURGE_FUNCTION_0020 = r"""
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
$$
"""


def _finalize_pending_detaches(table: str) -> None:
    """Finish a ``DETACH ... CONCURRENTLY`` an interrupted purge left pending on ``table``.

    While pending, the month's rows are refused even with a default partition. The detached
    month stays a table of its own, which the next ``authmodels purge`` archives and drops.
    """
    if is_offline():
        op.execute(f"-- a month of {SCHEMA}.{table} left detach pending is finalized (online only)")
        return
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        pending = bind.execute(
            text(
                "SELECT inhrelid::regclass::text FROM pg_inherits "
                "WHERE inhparent = CAST(:t AS regclass) AND inhdetachpending"
            ),
            {"t": f"{SCHEMA}.{table}"},
        ).scalars()
        for month in list(pending):
            op.execute(f"ALTER TABLE {SCHEMA}.{table} DETACH PARTITION {month} FINALIZE")


def _create_default_partition(table: str) -> None:
    default = f"{SCHEMA}.{table}_default"
    op.execute(f"CREATE TABLE IF NOT EXISTS {default} (LIKE {SCHEMA}.{table} INCLUDING ALL)")
    op.execute(f"SELECT auth.seal_partition('{default}')")
    op.execute(f"ALTER TABLE {SCHEMA}.{table} ATTACH PARTITION {default} DEFAULT")


def _empty_default_partition(table: str) -> None:
    """Move every row of ``<table>_default`` to its month partition, then drop the default.

    Each month: the split table is prepared and filled in batches (each its own transaction:
    the rows stay visible in the default partition meanwhile), then attached in one short
    transaction. Last, one transaction locks the parent, moves what arrived since, checks that
    the default partition is empty and drops it.
    """
    parent = f"{SCHEMA}.{table}"
    default = f"{parent}_default"
    if is_offline():
        op.execute(
            f"-- the rows of {default} move to their month partitions, batch by batch (online "
            "only); what is left moves here"
        )
        op.execute(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE")
        op.execute(f"SELECT count(*) FROM auth.ensure_monthly_partitions('{parent}', 0)")
        op.execute(f"DROP TABLE {default}")
        return
    with op.get_context().autocommit_block():
        bind = op.get_bind()
        months = bind.execute(
            text("SELECT auth.months_without_partition(CAST(:t AS regclass), 0)"), {"t": parent}
        ).scalars()
        for month in list(months):
            params = {"t": parent, "m": month, "n": BATCH_SIZE}
            with explicit_transaction(bind):
                bind.execute(
                    text("SELECT auth.prepare_month_partition(CAST(:t AS regclass), :m)"), params
                )
            while True:
                with explicit_transaction(bind):
                    copied = bind.execute(
                        text("SELECT auth.copy_month_rows(CAST(:t AS regclass), :m, :n)"), params
                    ).scalar_one()
                if copied < BATCH_SIZE:
                    break
            with explicit_transaction(bind):
                bind.execute(
                    text("SELECT auth.attach_month_partition(CAST(:t AS regclass), :m)"), params
                )
    with step():
        bind = op.get_bind()
        op.execute(f"LOCK TABLE {parent} IN ACCESS EXCLUSIVE MODE")
        bind.execute(
            text("SELECT count(*) FROM auth.ensure_monthly_partitions(CAST(:t AS regclass), 0)"),
            {"t": parent},
        )
        left = bind.execute(text(f"SELECT count(*) FROM {default}")).scalar_one()
        if left:
            refuse(
                f"{default} still holds {left} rows that no month partition can take (a "
                f"timestamp outside the years 1 to 9999, or the month of a detached partition "
                f"not yet dropped: run `authmodels purge` first): move or delete them, then "
                f"downgrade again. Nothing was dropped."
            )
        op.execute(f"DROP TABLE {default}")


def upgrade() -> None:
    for table in TABLES:
        _finalize_pending_detaches(table)
    for function in (
        MONTH_PARTITION_NAME,
        SEAL_PARTITION,
        MONTHS_WITHOUT_PARTITION,
        PREPARE_MONTH_PARTITION,
        COPY_MONTH_ROWS,
        ATTACH_MONTH_PARTITION,
        ENSURE_FUNCTION,
        PURGE_FUNCTION,
    ):
        op.execute(function)
    for table in TABLES:
        _create_default_partition(table)


def downgrade() -> None:
    for table in TABLES:
        _empty_default_partition(table)
    op.execute(ENSURE_FUNCTION_0015)
    op.execute(PURGE_FUNCTION_0020)
    for function in NEW_FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
