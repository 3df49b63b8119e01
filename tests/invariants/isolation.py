"""Row isolation between users, probed as the application's login role.

Two disjoint *worlds* are seeded as the owner (:mod:`tests.invariants.seeds`): user A with a
peer, user B with a peer, and for each, rows in every per-user table. Which rows belong to which
world is then read back from the database, not from the seed list: a row belongs to a world when
one of its columns holds an id of that world (a user id, or the primary key of a row already
found to belong to it: a message's conversation, a refresh token's session) and none of the
other world's. Trigger-made rows count too.

The probes run on a connection of the login role with ``auth.uid()`` = A, each statement in its
own savepoint (rolled back, whatever happens), and report what A could do to B's rows.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from authmodels import rls
from tests.invariants.catalog import (
    RELATION_OID,
    SCHEMA,
    Relation,
    ident,
    per_user_tables,
    primary_key,
    relations,
    sql_name,
    user_reference_columns,
)
from tests.invariants.seeds import World

#: SQLSTATE of a refusal by privileges or by a row-level security policy (42501).
INSUFFICIENT_PRIVILEGE = "42501"


def probed_tables(conn: Connection) -> list[str]:
    """The per-user tables probed one by one: partitions are reached through their parent."""
    rels = relations(conn)
    return [t for t in per_user_tables(conn) if not rels[t].is_partition]


def world_rows(
    conn: Connection, tables: list[str], world: World, other: World
) -> dict[str, list[dict[str, Any]]]:
    """The rows of ``world`` in each of ``tables`` (as JSON objects), read as the owner."""
    ids = set(world.user_ids)
    found: dict[str, list[dict[str, Any]]] = {}
    keys = {t: primary_key(conn, t) for t in tables}
    while True:  # until no new id is found: rows may belong through a row found in this pass
        grown = False
        for table in tables:
            rows = list(
                conn.scalars(
                    text(
                        f"SELECT to_jsonb(t) FROM {sql_name(table)} AS t "
                        " WHERE EXISTS (SELECT 1 FROM jsonb_each_text(to_jsonb(t)) AS v "
                        "                WHERE v.value = ANY(:own)) "
                        "   AND NOT EXISTS (SELECT 1 FROM jsonb_each_text(to_jsonb(t)) AS v "
                        "                    WHERE v.value = ANY(:other))"
                    ),
                    {"own": sorted(ids), "other": sorted(other.user_ids)},
                )
            )
            found[table] = rows
            for row in rows:
                for key in keys[table]:
                    value = str(row.get(key))
                    if _is_uuid(value) and value not in ids:
                        ids.add(value)
                        grown = True
        if not grown:
            return found


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def tables_without_rows_of(rows: dict[str, list[dict[str, Any]]], world: World) -> list[str]:
    """Per-user tables where no row of ``world`` was seeded: the probes would prove nothing."""
    return [
        f"{SCHEMA}.{table} holds per-user rows but has no seeded row of user {world.label}: "
        "its isolation is not tested; add its entry to SEEDS in tests/invariants/seeds.py"
        for table, found in rows.items()
        if not found
    ]


@dataclass(frozen=True)
class Outcome:
    """What one probe did: the rows it returned or touched, or the error that stopped it."""

    rows: int
    sqlstate: str | None = None
    error: str | None = None

    @property
    def refused(self) -> bool:
        return self.sqlstate == INSUFFICIENT_PRIVILEGE


def attempt(conn: Connection, statement: str, params: dict[str, Any]) -> Outcome:
    """Run ``statement`` in a savepoint that is always rolled back; what it did."""
    savepoint = conn.begin_nested()
    try:
        result = conn.execute(text(statement), params)
        rows = int(result.scalar() or 0) if result.returns_rows else result.rowcount
    except DBAPIError as exc:
        savepoint.rollback()
        orig = exc.orig
        return Outcome(
            0, getattr(orig, "sqlstate", None), str(orig).splitlines()[0] if orig else str(exc)
        )
    savepoint.rollback()  # a probe never changes anything, even one that should have failed
    return Outcome(rows)


def other_users_rows_reachable(
    app: Connection,
    owner: Connection,
    a: World,
    b_rows: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """As the login role with ``auth.uid()`` = A, no row of B can be read, changed or added.

    For each table with rows of B: a ``SELECT`` of them by primary key returns none; an
    ``UPDATE`` (``SET col = col``) and a ``DELETE`` of them touch none or are refused; an
    ``INSERT`` of a copy of one of them with a new primary key (built from the row's JSON with
    ``jsonb_populate_record``) is refused with SQLSTATE 42501: by a privilege, or by a policy's
    ``WITH CHECK``, which PostgreSQL applies after ``BEFORE`` triggers and before constraints,
    unique indexes and foreign keys, so any other error means the policies let the row through.
    """
    violations = []
    rls.set_current_user(app, a.user)
    for table, rows in b_rows.items():
        if not rows:
            continue
        where, key_columns = _key_match(owner, table)
        params = {"rows": json.dumps(rows)}
        target = f"{SCHEMA}.{table}"
        read = attempt(app, f"SELECT count(*) FROM {sql_name(table)} AS t WHERE {where}", params)
        if read.rows:
            violations.append(f"A reads {read.rows} of B's {len(rows)} rows of {target}")
        elif read.sqlstate and not read.refused:
            violations.append(f"reading B's rows of {target} failed unexpectedly: {read.error}")
        column = ident(key_columns[0] if key_columns else _columns(owner, table)[0])
        for verb, statement in (
            ("updates", f"UPDATE {sql_name(table)} AS t SET {column} = t.{column} WHERE {where}"),
            ("deletes", f"DELETE FROM {sql_name(table)} AS t WHERE {where}"),
        ):
            outcome = attempt(app, statement, params)
            if outcome.rows:
                violations.append(f"A {verb} {outcome.rows} of B's rows of {target}")
            elif outcome.sqlstate and not outcome.refused:
                violations.append(f"A {verb[:-1]}ing B's rows of {target}: {outcome.error}")
        insert = _insert_copy(owner, table)
        added = attempt(app, insert, {"row": json.dumps(_with_new_key(owner, table, rows[0]))})
        if not added.sqlstate:
            violations.append(
                f"A inserts into {target} a copy of B's row (user B's id kept): no policy "
                "or privilege refuses it"
            )
        elif not added.refused:
            violations.append(
                f"A's insert into {target} of a copy of B's row was not refused by a privilege "
                f"or policy (SQLSTATE 42501) but failed later, with {added.sqlstate}: "
                f"{added.error}"
            )
    return violations


#: Columns through which a user may name someone else in a row of their own, with the reason.
OTHER_PARTY = {
    "conversation_participants.user_id": "a conversation's creator adds its members",
    "key_exchanges.peer_id": "the other party of a key exchange the user starts",
    "device_key_events.peer_id": "the other party of a key exchange that failed",
    "audit_logs.target_user_id": "the user an audited action was done to",
}


def rows_naming_another_user_writable(
    app: Connection,
    owner: Connection,
    a: World,
    b: World,
    a_rows: dict[str, list[dict[str, Any]]],
) -> list[str]:
    """As A, a row of A's that names B in a user column is refused (SQLSTATE 42501).

    For each per-user table where A may add a row (a copy of one of A's rows with a new primary
    key is accepted), and each column naming a user (a foreign key to ``auth.users``, or
    ``user_id`` / ``*_user_id``): the same copy with B's id in that column must be refused. A
    user cannot file a row as someone else (its owner, sender, initiator or actor), except
    through the columns of :data:`OTHER_PARTY`, which name the other party of what the user does.
    """
    violations = []
    rls.set_current_user(app, a.user)
    for table, rows in a_rows.items():
        insert = _insert_copy(owner, table)
        accepted = [
            copy
            for copy in (_with_new_key(owner, table, row) for row in rows)
            if not attempt(app, insert, {"row": json.dumps(copy)}).sqlstate
        ]
        if not accepted:
            continue  # A cannot add a row here at all: nothing to forge
        for column in user_reference_columns(owner, table):
            if f"{table}.{column}" in OTHER_PARTY:
                continue
            row = {**accepted[0], column: str(b.user)}
            added = attempt(app, insert, {"row": json.dumps(row)})
            target = f"{SCHEMA}.{table}.{column}"
            if not added.sqlstate:
                violations.append(
                    f"A writes a row of {SCHEMA}.{table} naming user B in {column}: no policy "
                    f"or privilege refuses it (if {target} names the other party of what the "
                    "user does, list it in OTHER_PARTY with the reason)"
                )
            elif not added.refused:
                violations.append(
                    f"A's row of {SCHEMA}.{table} naming user B in {column} was not refused "
                    f"by a privilege or policy (SQLSTATE 42501) but failed later, with "
                    f"{added.sqlstate}: {added.error}"
                )
    return violations


def own_rows_hidden(
    app: Connection, owner: Connection, a: World, a_rows: dict[str, list[dict[str, Any]]]
) -> list[str]:
    """As A, A's own rows are visible: without this the isolation probes could pass vacuously
    (a role that reads nothing at all also reads nothing of B's)."""
    violations = []
    rls.set_current_user(app, a.user)
    for table, rows in a_rows.items():
        if not rows:
            continue
        where, _ = _key_match(owner, table)
        seen = attempt(
            app,
            f"SELECT count(*) FROM {sql_name(table)} AS t WHERE {where}",
            {"rows": json.dumps(rows)},
        )
        if not seen.rows:
            violations.append(
                f"A reads none of their own {len(rows)} rows of {SCHEMA}.{table}"
                + (f" ({seen.error})" if seen.error else "")
                + ": the isolation probes of this table prove nothing"
            )
    return violations


def rows_visible_without_a_user(app: Connection) -> list[str]:
    """With no user named, no row of any table with row-level security, nor of any view."""
    violations = []
    rls.set_current_user(app, None)
    for rel in relations(app).values():
        if not (rel.row_security or rel.kind in ("v", "m")):
            continue
        seen = attempt(app, f"SELECT count(*) FROM {rel.sql}", {})
        if seen.rows:
            violations.append(
                f"{rel.qualified} shows {seen.rows} rows to the application role with no user "
                f"named (auth.uid() NULL){_kind(rel)}"
            )
        elif seen.sqlstate and not seen.refused:
            violations.append(f"reading {rel.qualified} with no user failed: {seen.error}")
    return violations


#: SQLSTATE of "cannot update view": a view that is not updatable refuses every write.
VIEW_NOT_UPDATABLE = "55000"


def views_showing_other_users(app: Connection, a: World, b: World) -> list[str]:
    """As A, no row of any view of ``auth`` contains B's id or e-mail (the row serialised), and
    none can be updated or deleted through the view (simple views are updatable)."""
    violations = []
    rls.set_current_user(app, a.user)
    params = {"needles": sorted(b.user_ids | set(b.emails))}
    naming_b = (
        "EXISTS (SELECT 1 FROM unnest(CAST(:needles AS text[])) AS n "
        "         WHERE strpos(to_jsonb(v)::text, n) > 0)"
    )
    for rel in relations(app).values():
        if rel.kind not in ("v", "m"):
            continue
        seen = attempt(app, f"SELECT count(*) FROM {rel.sql} AS v WHERE {naming_b}", params)
        if seen.rows:
            violations.append(
                f"{rel.qualified} shows user A {seen.rows} rows naming user B (id or e-mail)"
                f"{_kind(rel)}"
            )
        elif seen.sqlstate and not seen.refused:
            violations.append(f"reading {rel.qualified} as A failed: {seen.error}")
        first = ident(_columns(app, rel.name)[0])
        for verb, statement in (
            ("updates", f"UPDATE {rel.sql} AS v SET {first} = v.{first} WHERE {naming_b}"),
            ("deletes", f"DELETE FROM {rel.sql} AS v WHERE {naming_b}"),
        ):
            outcome = attempt(app, statement, params)
            if outcome.rows:
                violations.append(
                    f"A {verb} {outcome.rows} rows naming user B through {rel.qualified}"
                    f"{_kind(rel)}"
                )
            elif outcome.sqlstate not in (None, INSUFFICIENT_PRIVILEGE, VIEW_NOT_UPDATABLE):
                violations.append(f"A {verb[:-1]}ing through {rel.qualified}: {outcome.error}")
    return violations


def _kind(rel: Relation) -> str:
    if rel.kind == "v" and not rel.security_invoker:
        return ": the view runs with its owner's rights, past the policies"
    if rel.kind == "m":
        return ": a materialized view stores its owner's view of the rows"
    return ""


def _columns(conn: Connection, table: str) -> list[str]:
    """Columns an INSERT may name: not generated, not identity."""
    return list(
        conn.scalars(
            text(
                f"SELECT attname FROM pg_attribute WHERE attrelid = {RELATION_OID} "
                "AND attnum > 0 AND NOT attisdropped AND attgenerated = '' "
                "AND attidentity = '' ORDER BY attnum"
            ),
            {"schema": SCHEMA, "table": table},
        )
    )


def _key_match(conn: Connection, table: str) -> tuple[str, list[str]]:
    """A WHERE clause matching the rows of ``:rows`` (a JSON array) by primary key."""
    key = primary_key(conn, table)
    records = f"jsonb_populate_recordset(NULL::{sql_name(table)}, CAST(:rows AS jsonb)) AS r"
    if not key:
        return f"to_jsonb(t) IN (SELECT to_jsonb(r) FROM {records})", key
    left = ", ".join(f"t.{ident(c)}" for c in key)
    right = ", ".join(f"r.{ident(c)}" for c in key)
    return f"({left}) IN (SELECT {right} FROM {records})", key


def _insert_copy(conn: Connection, table: str) -> str:
    names = ", ".join(ident(c) for c in _columns(conn, table))
    return (
        f"INSERT INTO {sql_name(table)} ({names}) SELECT {names} "
        f"FROM jsonb_populate_record(NULL::{sql_name(table)}, CAST(:row AS jsonb))"
    )


def _with_new_key(conn: Connection, table: str, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with a new value in each uuid key column that no foreign key constrains (the
    row's own id): a copy that is a new row, still owned by the same user."""
    surrogate = set(
        conn.scalars(
            text(
                "SELECT a.attname FROM pg_index AS i "
                "  JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
                f" WHERE i.indrelid = {RELATION_OID} AND i.indisprimary "
                "   AND a.atttypid = 'uuid'::regtype "
                "   AND NOT EXISTS (SELECT 1 FROM pg_constraint AS f "
                "                    WHERE f.conrelid = i.indrelid AND f.contype = 'f' "
                "                      AND a.attnum = ANY(f.conkey))"
            ),
            {"schema": SCHEMA, "table": table},
        )
    )
    return {k: (str(uuid.uuid4()) if k in surrogate else v) for k, v in row.items()}
