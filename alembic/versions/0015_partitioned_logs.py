"""Partitioned logs: ``audit_logs`` and ``login_attempts`` become monthly range partitions.

Seed 004's scalability notes. Each table is rebuilt while in use (a twin partitioned by month of
``created_at``, a mirror trigger, a batched copy, a short swap), with a primary key of ``(id,
created_at)``; ``auth.ensure_monthly_partitions()`` creates the months.

Downgrade: each table is folded back into one unpartitioned table the same way. Nothing is lost.

See docs/phases/0015-partitioned-logs.md.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from alembic import op
from sqlalchemy import Connection, text

from authmodels.revision_ops import is_offline, step

revision: str = "0015_partitioned_logs"
down_revision: str | Sequence[str] | None = "0014_dpop_replay"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("authmodels.migrations")

TABLES = ("audit_logs", "login_attempts")
PARTITION_KEY = "created_at"
BATCH_SIZE = 10_000
MONTHS_AHEAD = 3

ENSURE_FUNCTION = r"""
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


def _q(bind: Connection, sql: str, **params: object) -> list[tuple[object, ...]]:
    return [tuple(r) for r in bind.execute(text(sql), params).all()]


def _rebuild(table: str, *, partitioned: bool) -> None:
    """Rebuild ``auth.<table>`` as a partitioned (or plain) table, online (see module doc)."""
    original = f"auth.{table}"
    twin_name = f"{table}_rebuild"
    twin = f"auth.{twin_name}"
    if is_offline():
        op.execute(
            f"-- rebuild of {original} as a {'partitioned' if partitioned else 'plain'} "
            "table runs online only (it copies the rows in batches)"
        )
        return
    bind = op.get_bind()

    # 1. the twin, with everything the original has, under temporary names
    with step():
        # leftovers of an interrupted run
        op.execute(f"DROP TRIGGER IF EXISTS mirror_{table} ON {original}")
        op.execute(f"DROP TABLE IF EXISTS {twin}")
        partition_clause = f" PARTITION BY RANGE ({PARTITION_KEY})" if partitioned else ""
        op.execute(
            f"CREATE TABLE {twin} (LIKE {original} INCLUDING DEFAULTS INCLUDING CONSTRAINTS "
            f"INCLUDING STORAGE INCLUDING COMMENTS){partition_clause}"
        )
        key = f"(id, {PARTITION_KEY})" if partitioned else "(id)"
        op.execute(f"ALTER TABLE {twin} ADD CONSTRAINT tmp_pk_{table} PRIMARY KEY {key}")
        for name, definition in _q(
            bind,
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f'",
            t=original,
        ):
            op.execute(f"ALTER TABLE {twin} ADD CONSTRAINT tmp_{name} {definition}")
        for name, definition in _q(
            bind,
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i "
            "JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary",
            t=original,
        ):
            twin_def = str(definition).replace(" ON ONLY ", " ON ", 1)
            twin_def = twin_def.replace(f"INDEX {name} ON ", f"INDEX tmp_{name} ON ", 1)
            twin_def = twin_def.replace(f" ON {original} ", f" ON {twin} ", 1)
            op.execute(twin_def)
        rls, force = _q(
            bind,
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
            "WHERE oid = CAST(:t AS regclass)",
            t=original,
        )[0]
        if rls:
            op.execute(f"ALTER TABLE {twin} ENABLE ROW LEVEL SECURITY")
        if force:
            op.execute(f"ALTER TABLE {twin} FORCE ROW LEVEL SECURITY")
        for name, permissive, cmd, roles, qual, check in _q(
            bind,
            "SELECT policyname, permissive, cmd, roles, qual, with_check FROM pg_policies "
            "WHERE schemaname = 'auth' AND tablename = :t",
            t=table,
        ):
            role_list = ", ".join(str(r) for r in roles)  # type: ignore[attr-defined]
            op.execute(
                f"CREATE POLICY {name} ON {twin} AS {permissive} FOR {cmd} TO {role_list}"
                + (f" USING ({qual})" if qual else "")
                + (f" WITH CHECK ({check})" if check else "")
            )
        for grantee, privilege in _q(
            bind,
            "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
            "WHERE table_schema = 'auth' AND table_name = :t "
            "AND grantee <> (SELECT tableowner FROM pg_tables "
            "WHERE schemaname = 'auth' AND tablename = :t)",
            t=table,
        ):
            op.execute(f'GRANT {privilege} ON {twin} TO "{grantee}"')
        for (definition,) in _q(
            bind,
            "SELECT pg_get_triggerdef(oid) FROM pg_trigger "
            "WHERE tgrelid = CAST(:t AS regclass) AND NOT tgisinternal",
            t=original,
        ):
            op.execute(str(definition).replace(f" ON {original} ", f" ON {twin} ", 1))
        if partitioned:
            first, last = bind.execute(
                text(
                    f"SELECT min({PARTITION_KEY} AT TIME ZONE 'UTC')::date, "
                    f"max({PARTITION_KEY} AT TIME ZONE 'UTC')::date FROM {original}"
                )
            ).one()
            bind.execute(
                text("SELECT auth.ensure_monthly_partitions(CAST(:t AS regclass), :n, :f, :l)"),
                {"t": twin, "n": MONTHS_AHEAD, "f": first, "l": last},
            ).all()

    # 2. mirror every change made to the original from now on
    with step():
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION auth.mirror_{table}() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP IN ('UPDATE', 'DELETE') THEN
                    DELETE FROM {twin}
                     WHERE id = OLD.id AND {PARTITION_KEY} = OLD.{PARTITION_KEY};
                END IF;
                IF TG_OP IN ('INSERT', 'UPDATE') THEN
                    INSERT INTO {twin} SELECT NEW.* ON CONFLICT DO NOTHING;
                END IF;
                RETURN NULL;
            END
            $$
            """
        )
        op.execute(
            f"CREATE TRIGGER mirror_{table} AFTER INSERT OR UPDATE OR DELETE ON {original} "
            f"FOR EACH ROW EXECUTE FUNCTION auth.mirror_{table}()"
        )

    # 3. copy the existing rows in batches
    total = bind.execute(text(f"SELECT count(*) FROM {original}")).scalar() or 0
    id_type = bind.execute(
        text(
            "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
            "WHERE attrelid = CAST(:t AS regclass) AND attname = 'id'"
        ),
        {"t": original},
    ).scalar()
    copied = 0
    after: object = None
    with op.get_context().autocommit_block():
        while True:  # each batch is one statement, committed on its own
            row = bind.execute(
                text(
                    f"WITH batch AS (SELECT * FROM {original} "
                    f"WHERE CAST(:after AS {id_type}) IS NULL OR id > CAST(:after AS {id_type}) "
                    # FOR SHARE: a concurrent UPDATE or DELETE of a row being copied waits for
                    # the batch to commit, so the mirror trigger then sees (and replaces or
                    # removes) its copy; unlocked, it could not see the uncommitted copy, and the
                    # change was lost (tests/migrations/test_0015_partitioned_logs.py)
                    f"ORDER BY id LIMIT :n FOR SHARE), "
                    f"moved AS (INSERT INTO {twin} SELECT * FROM batch ON CONFLICT DO NOTHING) "
                    f"SELECT (SELECT id FROM batch ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM batch)"
                ),
                {"after": after, "n": BATCH_SIZE},
            ).one()
            last, count = row
            if not count:
                break
            after, copied = last, copied + int(count)
            log.info("%s: %d of ~%d rows copied", original, copied, total)

    # 4. the swap, in one short transaction
    views = _q(
        bind,
        "SELECT DISTINCT v.oid::regclass::text, pg_get_viewdef(v.oid) FROM pg_depend d "
        "JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class "
        "WHERE d.refobjid = CAST(:t AS regclass) AND v.oid <> CAST(:t AS regclass)",
        t=original,
    )
    with step():
        op.execute(f"LOCK TABLE {original} IN ACCESS EXCLUSIVE MODE")
        op.execute(f"DROP TRIGGER mirror_{table} ON {original}")
        op.execute(f"DROP FUNCTION auth.mirror_{table}()")
        counts = bind.execute(
            text(f"SELECT (SELECT count(*) FROM {original}), (SELECT count(*) FROM {twin})")
        ).one()
        if counts[0] != counts[1]:
            raise RuntimeError(
                f"{original} holds {counts[0]} rows but its rebuild {counts[1]}: nothing was "
                "swapped; run the upgrade again"
            )
        old_name = f"{table}_old"
        op.execute(f"ALTER TABLE {original} RENAME TO {old_name}")
        for (name,) in _q(
            bind,
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND contype IN ('p', 'f')",
            t=f"auth.{old_name}",
        ):
            op.execute(f"ALTER TABLE auth.{old_name} RENAME CONSTRAINT {name} TO old_{name}")
        for (name,) in _q(
            bind,
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass) AND NOT i.indisprimary",
            t=f"auth.{old_name}",
        ):
            op.execute(f"ALTER INDEX auth.{name} RENAME TO old_{name}")
        op.execute(f"ALTER TABLE {twin} RENAME TO {table}")
        for (name,) in _q(
            bind,
            "SELECT conname FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
            "AND conname LIKE 'tmp\\_%'",
            t=original,
        ):
            op.execute(f"ALTER TABLE {original} RENAME CONSTRAINT {name} TO {str(name)[4:]}")
        for (name,) in _q(
            bind,
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = CAST(:t AS regclass) AND c.relname LIKE 'tmp\\_%' "
            "AND NOT i.indisprimary",
            t=original,
        ):
            op.execute(f"ALTER INDEX auth.{name} RENAME TO {str(name)[4:]}")
        if partitioned:
            for (part,) in _q(
                bind,
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:t AS regclass)",
                t=original,
            ):
                op.execute(
                    f"ALTER TABLE auth.{part} RENAME TO {str(part).replace(twin_name, table, 1)}"
                )
        for view, definition in views:
            op.execute(f"CREATE OR REPLACE VIEW {view} AS {definition}")

    # 5. the original goes
    with step():
        op.execute(f"DROP TABLE auth.{table}_old")


def upgrade() -> None:
    op.execute(ENSURE_FUNCTION)
    for table in TABLES:
        _rebuild(table, partitioned=True)


def downgrade() -> None:
    for table in TABLES:
        _rebuild(table, partitioned=False)
    op.execute("DROP FUNCTION auth.ensure_monthly_partitions(regclass, integer, date, date)")
