"""What the catalog says about schema ``auth``: the derivations every invariant starts from.

Nothing here names a table of authmodels: each set is computed from ``pg_class``,
``pg_constraint`` and ``pg_attribute`` of the database at hand, so a table, view or column added
by a later revision is covered the day it appears.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

SCHEMA = "auth"

#: A uuid column with one of these names holds a user's id, foreign key or not (the audit
#: archive keeps user ids without foreign keys, so that they outlive the account).
USER_ID_COLUMN = r"^(user_id|.+_user_id)$"


#: The oid of schema ``:schema``, by name.
SCHEMA_OID = "(SELECT oid FROM pg_namespace WHERE nspname = :schema)"
#: The oid of ``auth.<:table>``, found by name: ``to_regclass`` would need the caller to have
#: USAGE on the schema, which the application role lacks before revision 0006.
RELATION_OID = (
    "(SELECT rel_c.oid FROM pg_class AS rel_c JOIN pg_namespace AS rel_n "
    "ON rel_n.oid = rel_c.relnamespace WHERE rel_n.nspname = :schema AND rel_c.relname = :table)"
)


def ident(name: str) -> str:
    """``name`` quoted as an SQL identifier (names come from the catalog, whatever they are)."""
    return '"' + name.replace('"', '""') + '"'


def sql_name(table: str) -> str:
    """``auth.<table>`` as SQL, quoted."""
    return f"{ident(SCHEMA)}.{ident(table)}"


@dataclass(frozen=True)
class Relation:
    """A table, partition, view or materialized view of schema ``auth``."""

    oid: int
    name: str
    kind: str
    """``pg_class.relkind``: ``r`` table, ``p`` partitioned table, ``v`` view, ``m`` matview."""
    is_partition: bool
    row_security: bool
    options: tuple[str, ...]
    """``pg_class.reloptions`` (``security_invoker=true``, ...)."""
    user_policies: int
    """Policies that apply to every role (``TO PUBLIC``): those that bind the users. Service
    policies (``TO <service role>``) are not counted."""

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.name}"

    @property
    def sql(self) -> str:
        return sql_name(self.name)

    @property
    def security_invoker(self) -> bool:
        """A view with ``security_invoker`` on: it reads its tables with the caller's rights."""
        values = dict(option.split("=", 1) for option in self.options if "=" in option)
        return values.get("security_invoker", "").lower() in {"true", "on", "yes", "1"}


def relations(conn: Connection) -> dict[str, Relation]:
    """Every table, partition, view and materialized view of ``auth``, by name."""
    rows = conn.execute(
        text(
            "SELECT c.oid, c.relname, c.relkind::text, c.relispartition, c.relrowsecurity, "
            "       coalesce(c.reloptions, '{}'), "
            "       (SELECT count(*) FROM pg_policy AS p "
            "         WHERE p.polrelid = c.oid AND p.polroles = '{0}') "
            "  FROM pg_class AS c "
            f" WHERE c.relnamespace = {SCHEMA_OID} "
            "   AND c.relkind IN ('r', 'p', 'v', 'm') "
            " ORDER BY c.relname"
        ),
        {"schema": SCHEMA},
    )
    return {
        name: Relation(oid, name, kind, partition, rls, tuple(options), int(policies))
        for oid, name, kind, partition, rls, options, policies in rows
    }


def per_user_tables(conn: Connection) -> dict[str, str]:
    """The tables of ``auth`` that hold per-user rows, each with the reason it is one.

    The rule: a table (partitions included) holds per-user rows when

    - it is ``auth.users``;
    - or a foreign key of it references a table that holds per-user rows (followed
      transitively: ``messages`` references ``conversations``, which references ``users``);
    - or it has a ``uuid`` column named ``user_id`` or ``<something>_user_id`` (a table that
      keeps user ids without a foreign key, like an archive).
    """
    rows = conn.execute(
        text(
            f"""
            WITH RECURSIVE owned(oid, reason) AS (
                SELECT c.oid, 'it is the users table' COLLATE "default"
                  FROM pg_class AS c
                 WHERE c.relname = 'users'
                   AND c.relnamespace = {SCHEMA_OID}
                UNION
                SELECT c.oid, format('column %s holds a user id', min(a.attname))
                  FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
                 WHERE c.relnamespace = {SCHEMA_OID} AND c.relkind IN ('r', 'p')
                   AND a.attnum > 0 AND NOT a.attisdropped
                   AND a.atttypid = 'uuid'::regtype AND a.attname ~ :user_column
                 GROUP BY c.oid
                UNION
                SELECT f.conrelid,
                       format('foreign key %s references %s', f.conname,
                              f.confrelid::regclass) COLLATE "default"
                  FROM pg_constraint AS f JOIN owned AS o ON f.confrelid = o.oid
                 WHERE f.contype = 'f' AND f.conrelid <> o.oid
            )
            SELECT c.relname, min(o.reason)
              FROM owned AS o JOIN pg_class AS c ON c.oid = o.oid
             WHERE c.relnamespace = {SCHEMA_OID}
             GROUP BY c.relname
             ORDER BY c.relname
            """
        ),
        {"schema": SCHEMA, "user_column": USER_ID_COLUMN},
    )
    return {name: reason for name, reason in rows}


@dataclass(frozen=True)
class Column:
    """A column of a table or view of ``auth``."""

    table: str
    name: str
    type: str
    """``format_type`` of the column (``bytea``, ``inet``, ``text``, ...)."""
    base_type: str
    """The type under any domain or array (``inet`` for a domain over ``inet[]``)."""
    relkind: str

    @property
    def qualified(self) -> str:
        return f"{SCHEMA}.{self.table}.{self.name}"


def columns(conn: Connection, *, partitions: bool = False) -> list[Column]:
    """The columns of every table and view of ``auth`` (partitions only if asked)."""
    rows = conn.execute(
        text(
            f"""
            WITH RECURSIVE attribute AS (
                SELECT c.relname, a.attname, a.attnum, a.atttypid, a.atttypmod, c.relkind
                  FROM pg_attribute AS a JOIN pg_class AS c ON c.oid = a.attrelid
                 WHERE c.relnamespace = {SCHEMA_OID}
                   AND c.relkind IN ('r', 'p', 'v', 'm')
                   AND (:partitions OR NOT c.relispartition)
                   AND a.attnum > 0 AND NOT a.attisdropped
            ), unwrapped(relname, attnum, type_oid, depth) AS (
                SELECT relname, attnum, atttypid, 0 FROM attribute
                UNION ALL
                SELECT u.relname, u.attnum,
                       CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END,
                       u.depth + 1
                  FROM unwrapped AS u JOIN pg_type AS t ON t.oid = u.type_oid
                 WHERE t.typtype = 'd' OR (t.typcategory = 'A' AND t.typelem <> 0)
            )
            SELECT a.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                   (SELECT format_type(u.type_oid, NULL) FROM unwrapped AS u
                     WHERE u.relname = a.relname AND u.attnum = a.attnum
                     ORDER BY u.depth DESC LIMIT 1),
                   a.relkind::text
              FROM attribute AS a
             ORDER BY a.relname, a.attnum
            """
        ),
        {"schema": SCHEMA, "partitions": partitions},
    )
    return [Column(*row) for row in rows]


@dataclass(frozen=True)
class CheckConstraint:
    """A CHECK constraint of a table of ``auth``."""

    table: str
    name: str
    definition: str
    validated: bool
    columns: tuple[str, ...]


def check_constraints(conn: Connection) -> list[CheckConstraint]:
    """The CHECK constraints of the tables of ``auth`` (partitions left out: they inherit)."""
    rows = conn.execute(
        text(
            "SELECT c.relname, k.conname, pg_get_constraintdef(k.oid), k.convalidated, "
            "       ARRAY(SELECT a.attname FROM pg_attribute AS a "
            "              WHERE a.attrelid = k.conrelid AND a.attnum = ANY(k.conkey)) "
            "  FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid "
            f" WHERE c.relnamespace = {SCHEMA_OID} AND NOT c.relispartition "
            "   AND k.contype = 'c' "
            " ORDER BY c.relname, k.conname"
        ),
        {"schema": SCHEMA},
    )
    return [
        CheckConstraint(table, name, definition, validated, tuple(cols))
        for table, name, definition, validated, cols in rows
    ]


def primary_key(conn: Connection, table: str) -> list[str]:
    """The primary-key columns of ``auth.<table>``, in key order (empty when it has none)."""
    return list(
        conn.scalars(
            text(
                "SELECT a.attname FROM pg_index AS i "
                "  CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) "
                "  JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
                f" WHERE i.indrelid = {RELATION_OID} AND i.indisprimary ORDER BY k.n"
            ),
            {"schema": SCHEMA, "table": table},
        )
    )


def user_reference_columns(conn: Connection, table: str) -> list[str]:
    """The columns of ``auth.<table>`` that name a user: a foreign key to ``auth.users``, or a
    uuid column named ``user_id`` / ``*_user_id``."""
    return list(
        conn.scalars(
            text(
                "SELECT a.attname FROM pg_attribute AS a "
                "  JOIN pg_class AS a_rel ON a_rel.oid = a.attrelid "
                f" WHERE a.attrelid = {RELATION_OID} AND a.attnum > 0 AND NOT a.attisdropped "
                "   AND a.atttypid = 'uuid'::regtype "
                "   AND (a.attname ~ :user_column OR EXISTS ( "
                "        SELECT 1 FROM pg_constraint AS f "
                "         WHERE f.conrelid = a.attrelid AND f.contype = 'f' "
                "           AND f.conkey = ARRAY[a.attnum] AND f.confrelid = ( "
                "               SELECT u.oid FROM pg_class AS u "
                "                WHERE u.relname = 'users' "
                "                  AND u.relnamespace = a_rel.relnamespace))) "
                " ORDER BY a.attnum"
            ),
            {"schema": SCHEMA, "table": table, "user_column": USER_ID_COLUMN},
        )
    )
