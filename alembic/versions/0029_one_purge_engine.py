"""One purge engine: the batch and the month drop in SQL functions both purge paths run.

Adds ``auth.purge_batch(...)`` (one batch of expired rows: picked ``FOR UPDATE SKIP LOCKED``,
archived when the policy archives, deleted, in one statement) and ``auth.drop_month_partition(...)``
(one expired month: copied to the archive under a ``SHARE`` lock, detached and dropped under a 2 s
``lock_timeout``; NULL when busy), both ``SECURITY INVOKER`` and closed to ``PUBLIC``.
``auth.purge_expired_data()`` is re-created to call them, with the same signature, results, order
and notices; ``authmodels purge`` (``authmodels.retention``, ``authmodels.partitions``) calls them
too.

Downgrade: 0027's ``purge_expired_data`` comes back and the two functions are dropped; nothing is
lost (a library that needs them refuses to purge until the upgrade runs again).

See docs/phases/0029-one-purge-engine.md.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0029_one_purge_engine"
down_revision: str | Sequence[str] | None = "0028_owner_maintenance"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: The one batch statement of both purge paths. No pinned search_path: it runs with its caller's
#: rights and path (a policy's condition is resolved as the caller would resolve it).
PURGE_BATCH_FUNCTION = r"""
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
$$
"""

#: The one month drop of both purge paths (a month attached to a table with a default partition).
DROP_MONTH_FUNCTION = r"""
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
$$
"""

#: pg_cron's path: per call, one batch of every row policy and of every default partition, then
#: at most one month per partitioned table.
PURGE_FUNCTION = r"""
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
$$
"""

#: The functions this revision adds, closed to ``PUBLIC`` like the rest of the owner's
#: maintenance (0028).
NEW_FUNCTIONS = (
    "auth.purge_batch(regclass, text, text, timestamptz, integer, regclass)",
    "auth.drop_month_partition(regclass, regclass, regclass)",
)

#: 0027's function, put back by the downgrade (a revision keeps its own copy).
PURGE_FUNCTION_0027 = r"""
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


def upgrade() -> None:
    op.execute(PURGE_BATCH_FUNCTION)
    op.execute(DROP_MONTH_FUNCTION)
    for function in NEW_FUNCTIONS:
        op.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
    op.execute(PURGE_FUNCTION)


def downgrade() -> None:
    op.execute(PURGE_FUNCTION_0027)
    for function in NEW_FUNCTIONS:
        op.execute(
            "-- squawk-ignore ban-drop-function -- added by this revision; the function put "
            f"back above no longer calls it\nDROP FUNCTION IF EXISTS {function}"
        )
