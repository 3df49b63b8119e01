"""Invariants of the whole revision chain, on a real PostgreSQL.

pytest-alembic's built-in tests are imported here (its own collector does not work under
pytest 9); each says why its invariant matters:

- ``test_single_head_revision``: two heads mean two deployers would migrate to different schemas.
- ``test_upgrade``: every revision applies, in order, to an empty database.
- ``test_model_definitions_match_ddl``: the models describe the schema at head (an autogenerate
  run finds nothing to do), so ORM code and migrations cannot drift apart.
- ``test_up_down_consistency``: every downgrade runs after the full upgrade, back to base.

The stairway test below adds what those miss: each revision's downgrade undoes exactly that
revision, so ``alembic downgrade -1`` followed by ``alembic upgrade +1`` works at every step.
"""

from __future__ import annotations

from pytest_alembic.tests import (  # noqa: F401  (collected by pytest)
    test_model_definitions_match_ddl,
    test_single_head_revision,
    test_up_down_consistency,
    test_upgrade,
)
from sqlalchemy import text

from authmodels.testing.migrations import MigrationRunner, revision_ids
from tests.migrations.migration_helpers import schema_objects


def test_stairway_every_revision_downgrades_and_upgrades_again(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    """Upgrade to each revision, downgrade one step (schema as before), upgrade again."""
    runner = authmodels_migration_runner
    revisions = revision_ids()
    assert revisions, "the chain has no revision"
    for revision in revisions:
        before = schema_objects(runner, with_columns=True) if runner.current() is not None else None
        runner.upgrade(revision)
        assert runner.current() == revision
        after = schema_objects(runner, with_columns=True)
        runner.downgrade("-1")
        if before is not None:
            assert schema_objects(runner, with_columns=True) == before, (
                f"downgrade of {revision} left changes"
            )
        runner.upgrade(revision)
        assert schema_objects(runner, with_columns=True) == after, (
            f"re-running {revision} gave another schema"
        )


def test_full_downgrade_leaves_only_the_version_table(
    authmodels_migration_runner: MigrationRunner,
) -> None:
    """base → head → base leaves schema auth with nothing in it but Alembic's version table."""
    runner = authmodels_migration_runner
    runner.upgrade("head")
    runner.downgrade("base")
    leftovers = runner.execute(
        "SELECT relname FROM pg_class WHERE relnamespace = 'auth'::regnamespace "
        "AND relkind IN ('r', 'v', 'm', 'p', 'S') ORDER BY 1"
    )
    assert [r[0] for r in leftovers] == ["alembic_version"]
    functions = runner.execute(
        "SELECT proname FROM pg_proc WHERE pronamespace = 'auth'::regnamespace"
    )
    assert functions == []


def test_head_is_reachable_through_the_packaged_config(authmodels_engine) -> None:  # type: ignore[no-untyped-def]
    """The plugin's template database is at the chain's head revision."""
    with authmodels_engine.connect() as conn:
        current = conn.execute(text("SELECT version_num FROM auth.alembic_version")).scalar()
    assert current == revision_ids()[-1]
