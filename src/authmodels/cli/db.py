"""``authmodels db``: migrate schema ``auth`` with the packaged revisions, on any database.

The commands run on one connection they open themselves and hand to Alembic (nothing resolves
the URL a second time). A database composed with a service's chain (its version table in
schema ``auth`` also holds the service's revisions) is handled as such: the service's revisions
are named and left alone. A downgrade that would remove our first revision under them is
refused before it starts; one that breaks a service's foreign keys otherwise is refused by
PostgreSQL itself, in the revision's transaction, which rolls back.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext, MigrationInfo
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text

from authmodels.cli.common import JSON, URL, CommandSet, Context
from authmodels.errors import MigrationError
from authmodels.migrations import (
    BRANCH_LABEL,
    OFFLINE_URL,
    SCHEMA,
    VERSION_TABLE,
    alembic_config,
    comparison_options,
)


def register(commands: CommandSet) -> None:
    """The ``db`` commands."""
    db = commands.group(
        "db",
        help="migrations of schema auth",
        description=(
            "Migrations of schema auth with the revisions packaged in authmodels. On a database\n"
            "whose version table also holds a service's revisions (its own chain composed with\n"
            "ours), those are named and left alone."
        ),
    )
    up = db.command(
        "upgrade",
        _upgrade,
        help="migrate to a revision (default: authmodels' head)",
        description=(
            "Migrate to REVISION (default: head), one revision per transaction, printing each\n"
            "revision as it is done and the revision reached. With --sql, print the SQL instead\n"
            "(no database is needed: REVISION may be a range, FROM:TO)."
        ),
    )
    up.add_argument("revision", nargs="?", default="head", help="e.g. head, +1, 0005_token_...")
    up.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    _timeouts(up)
    down = db.command(
        "downgrade",
        _downgrade,
        help="migrate back to a revision (-1, base, an id)",
        description="Migrate back to REVISION (-1: one revision back; base: no revision).",
    )
    down.add_argument("revision", nargs="?", default=None, help="e.g. -1, base, 0027_...")
    _timeouts(down)
    db.command(
        "current",
        _current,
        help="the revision the database is at, or (none)",
        description=(
            "The authmodels revision the database is at ((none) when it has none) and whether\n"
            "it is the head; the revisions of other chains in the same version table; -v adds\n"
            "the database, where its URL came from, and each revision's title."
        ),
        uses=(URL, JSON),
    )
    db.command(
        "check",
        _check,
        help="at head, and the schema matches the models (exit 1 when not)",
        uses=(URL, JSON),
    )


def _timeouts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lock-timeout", default=None, help="e.g. 10s (default 5s)")
    parser.add_argument("--statement-timeout", default=None, help="e.g. 2h (default 30min)")


def _attributes(args: argparse.Namespace) -> dict[str, str]:
    return {
        name: value
        for name, value in (
            ("lock_timeout", args.lock_timeout),
            ("statement_timeout", args.statement_timeout),
        )
        if value
    }


# --- where the database is ----------------------------------------------------------------


@dataclass(frozen=True)
class ChainState:
    """The rows of ``auth.alembic_version``, split by chain.

    Attributes:
        ours: authmodels' revisions among them (one, or none).
        others: revisions of another chain composed into the same version table.
        head: the head of the packaged chain.
    """

    ours: tuple[str, ...]
    others: tuple[str, ...]
    head: str

    @property
    def at_head(self) -> bool:
        """The database is at authmodels' head."""
        return self.ours == (self.head,)


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def _known(script: ScriptDirectory) -> set[str]:
    return {rev.revision for rev in script.walk_revisions()}


def chain_state(conn: Connection, script: ScriptDirectory) -> ChainState:
    """Where the database connected to is, in authmodels' chain and in others."""
    context = MigrationContext.configure(
        conn, opts={"version_table": VERSION_TABLE, "version_table_schema": SCHEMA}
    )
    applied = context.get_current_heads()
    if conn.in_transaction():
        conn.rollback()
    known = _known(script)
    head = script.get_current_head()
    assert head is not None
    return ChainState(
        ours=tuple(r for r in applied if r in known),
        others=tuple(sorted(r for r in applied if r not in known)),
        head=head,
    )


def _refuse_unrecorded_schema(conn: Connection, state: ChainState) -> None:
    """Stop before 0001 runs on a schema ``auth`` some other environment migrated."""
    if state.ours:
        return
    users = conn.execute(text("SELECT to_regclass('auth.users')")).scalar()
    if users is None:
        return
    elsewhere = conn.execute(
        text(
            "SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = :t AND c.relkind = 'r' AND n.nspname <> :s ORDER BY 1"
        ),
        {"t": VERSION_TABLE, "s": SCHEMA},
    ).scalars()
    found = [f"{schema}.{VERSION_TABLE}" for schema in elsewhere]
    hint = (
        f"; a version table exists in {', '.join(found)}: the environment that migrated it "
        "keeps its version table outside schema auth (call "
        "authmodels.migrations.run_environment in its env.py), and its revisions cannot be read"
        if found
        else ""
    )
    raise MigrationError(
        f"schema auth holds tables, but {SCHEMA}.{VERSION_TABLE} records no authmodels "
        f"revision{hint}"
    )


def _refuse_removing_the_base_under_another_chain(
    script: ScriptDirectory, direction: str, planned: Sequence[str], state: ChainState
) -> None:
    """A service's chain needs at least our first revision (``auth.users``): keep it.

    Its revisions are not ours to read, so which of ours they depend on is unknown; a
    downgrade that removes the first one would undo every revision before failing on the
    service's foreign keys, so it is refused before anything runs.
    """
    first = script.get_revision(BRANCH_LABEL)
    if direction != "downgrade" or not state.others or first is None:
        return
    if first.revision in planned:
        raise MigrationError(
            f"the version table also holds {', '.join(state.others)} (another chain, which "
            f"needs schema auth): downgrade it first with its own Alembic environment; "
            f"authmodels db downgrade keeps {first.revision}"
        )


def _describe(state: ChainState) -> str:
    if not state.ours:
        return "(none)"
    if state.at_head:
        return f"{state.ours[0]} (head)"
    return f"{', '.join(state.ours)} (head is {state.head})"


# --- commands -------------------------------------------------------------------------------


def _current(ctx: Context) -> int:
    script = _script()
    location = ctx.location()
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            state = chain_state(conn, script)
    finally:
        engine.dispose()
    ctx.emit(
        "current",
        database=location.shown,
        source=location.source,
        revisions=list(state.ours),
        head=state.head,
        at_head=state.at_head,
        other_revisions=list(state.others),
    )
    if ctx.verbose:
        ctx.say(f"database: {location.shown} (from {location.source})")
    ctx.say(_describe(state))
    if ctx.verbose:
        for rev_id in state.ours:
            ctx.say(f"  {rev_id}: {_title(script, rev_id)}")
    if state.others:
        ctx.say(f"other revisions, not authmodels': {', '.join(state.others)}")
    return 0


def _title(script: ScriptDirectory, rev_id: str) -> str:
    revision = script.get_revision(rev_id)
    return (revision.doc or "").splitlines()[0] if revision is not None else ""


def _check(ctx: Context) -> int:
    from authmodels.models import Base

    script = _script()
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            state = chain_state(conn, script)
            diffs = (
                compare_metadata(
                    MigrationContext.configure(conn, opts=comparison_options()), Base.metadata
                )
                if state.at_head
                else []
            )
            conn.rollback()
    finally:
        engine.dispose()
    ctx.emit(
        "check",
        at_head=state.at_head,
        revisions=list(state.ours),
        head=state.head,
        differences=[str(d) for d in diffs],
        other_revisions=list(state.others),
    )
    if not state.at_head:
        ctx.say(f"not at head: the database is at {_describe(state)} (authmodels db upgrade)")
        return 1
    if diffs:
        ctx.say(f"at head, but the schema differs from the models in {len(diffs)} place(s):")
        for diff in diffs:
            ctx.say(f"  {diff}")
        return 1
    ctx.say(f"database is at head ({state.head}) and matches the models")
    return 0


def _upgrade(ctx: Context) -> int:
    args = ctx.args
    if args.sql:
        cfg = alembic_config(args.url or OFFLINE_URL)
        cfg.attributes.update(_attributes(args))
        command.upgrade(cfg, args.revision, sql=True)
        return 0
    return _migrate(ctx, "upgrade", args.revision)


def _downgrade(ctx: Context) -> int:
    if not ctx.args.revision:
        ctx.args._parser.error("authmodels db downgrade needs a revision (e.g. -1 or base)")
    return _migrate(ctx, "downgrade", ctx.args.revision)


def _migrate(ctx: Context, direction: str, target: str) -> int:
    script = _script()
    location = ctx.location()
    engine = ctx.engine()
    try:
        with engine.connect() as conn:
            state = chain_state(conn, script)
            if direction == "upgrade":
                _refuse_unrecorded_schema(conn, state)
                conn.rollback()
            planned = _plan(script, direction, target, state.ours)
            _refuse_removing_the_base_under_another_chain(script, direction, planned, state)
            ctx.emit(
                "start",
                database=location.shown,
                source=location.source,
                direction=direction,
                target=target,
                current=list(state.ours),
                revisions=planned,
                other_revisions=list(state.others),
            )
            ctx.note(
                f"{'migrating' if direction == 'upgrade' else 'downgrading'} "
                f"{location.shown} (from {location.source}) from {_describe(state)} to "
                f"{target}: {len(planned)} revision(s)"
                + (f"; left alone: {', '.join(state.others)}" if state.others else "")
            )
            bar = ctx.progress(direction, len(planned))
            done: list[str] = []
            started = [time.monotonic()]

            def applied(*, step: MigrationInfo, **_: Any) -> None:
                rev_id = step.up_revision_id or ""  # the revision upgraded, or downgraded
                seconds = time.monotonic() - started[0]
                started[0] = time.monotonic()
                done.append(rev_id)
                ctx.emit(
                    "revision",
                    direction=direction,
                    revision=rev_id,
                    index=len(done),
                    total=len(planned),
                    seconds=round(seconds, 3),
                )
                ctx.say(f"  {len(done):>3}/{len(planned)}  {rev_id:<36} {seconds:7.1f} s")
                following = planned[len(done)] if len(done) < len(planned) else ""
                bar.update(len(done), following)

            bar.update(0, planned[0] if planned else "")
            cfg = alembic_config(connection=conn)
            cfg.attributes.update(
                _attributes(ctx.args), on_version_apply=applied, ignore_other_revisions=True
            )
            (command.upgrade if direction == "upgrade" else command.downgrade)(cfg, target)
            if conn.in_transaction():
                conn.commit()
            after = chain_state(conn, script)
    finally:
        engine.dispose()
    ctx.emit(
        "done",
        revisions=list(after.ours),
        head=after.head,
        at_head=after.at_head,
        other_revisions=list(after.others),
    )
    ctx.say(f"now at {_describe(after)}")
    return 0


def _plan(script: ScriptDirectory, direction: str, target: str, ours: Sequence[str]) -> list[str]:
    """The ids of the revisions the command will run, in order."""
    current: Any = tuple(ours)  # Alembic takes the version table's rows as a tuple (typed str)
    if direction == "upgrade":
        steps = reversed(list(script.iterate_revisions(target, current, implicit_base=True)))
    else:
        steps = iter(script.iterate_revisions(current, target, select_for_downgrade=True))
    return [revision.revision for revision in steps]
