"""Each shipped revision renders the same offline SQL as when it shipped.

A shipped revision must never change what it does (fix forward with a new revision), yet most
revisions call shared helpers (``authmodels.revision_ops``): a change to a helper silently changes
every revision that calls it. This test renders each revision offline, the SQL a DBA reviews
before a deploy (``alembic upgrade <previous>:<revision> --sql``, and ``alembic downgrade
<revision>:<previous> --sql``), and compares it with the snapshot committed under
``tests/migrations/offline_sql/``. A difference fails with the diff.

What offline SQL cannot show: the steps that run only online, because they need the data (the
batched backfills computed in Python, the rows a batch moves, catalog-driven loops). Offline they
render as a ``-- ... online only`` comment; the per-revision data tests
(``tests/migrations/test_NNNN_*.py``) and the chain tests are their safety net.

The snapshots are written only on request, never by a test run. After a deliberate change (a
new revision, or a change whose diff has been reviewed and shown to leave every shipped revision
doing what it did), write them with::

    python -m tests.migrations.test_offline_sql --write

and commit the new files with the change.
"""

from __future__ import annotations

import difflib
import sys
from pathlib import Path

import pytest

from authmodels.testing.migrations import MigrationRunner, revision_ids

SNAPSHOTS = Path(__file__).resolve().parent / "offline_sql"
#: Offline rendering needs only the dialect: nothing connects to this URL.
OFFLINE_URL = "postgresql+psycopg://offline@localhost/offline"
WRITE_COMMAND = "python -m tests.migrations.test_offline_sql --write"


def _steps() -> list[tuple[str, str, str]]:
    """(revision, direction, revision range) of every revision, both directions."""
    ids = revision_ids()
    steps = []
    for index, revision in enumerate(ids):
        previous = ids[index - 1] if index else None
        steps.append((revision, "upgrade", f"{previous}:{revision}" if previous else revision))
        steps.append((revision, "downgrade", f"{revision}:{previous or 'base'}"))
    return steps


def _snapshot(revision: str, direction: str) -> Path:
    return SNAPSHOTS / f"{revision}.{direction}.sql"


def _render(revision_range: str, direction: str) -> str:
    runner = MigrationRunner(OFFLINE_URL)
    try:
        return runner.sql(revision_range, downgrade=direction == "downgrade")
    finally:
        runner.dispose()


@pytest.mark.parametrize(
    ("revision", "direction", "revision_range"),
    _steps(),
    ids=[f"{rev}-{direction}" for rev, direction, _ in _steps()],
)
def test_revision_renders_its_snapshot_sql(
    revision: str, direction: str, revision_range: str
) -> None:
    """The offline SQL of one revision and direction equals its committed snapshot."""
    snapshot = _snapshot(revision, direction)
    assert snapshot.is_file(), (
        f"{revision} has no {direction} snapshot ({snapshot.name}); review its offline SQL, "
        f"then write it with `{WRITE_COMMAND}`"
    )
    rendered = _render(revision_range, direction)
    expected = snapshot.read_text()
    diff = "".join(
        difflib.unified_diff(
            expected.splitlines(keepends=True),
            rendered.splitlines(keepends=True),
            fromfile=f"snapshot {snapshot.name}",
            tofile=f"rendered {direction} {revision_range}",
        )
    )
    assert rendered == expected, (
        f"{revision}'s {direction} SQL changed: a shipped revision must keep doing what it did "
        f"(fix forward with a new revision)\n{diff}"
    )


def test_every_snapshot_belongs_to_a_revision() -> None:
    """No snapshot outlives its revision (a renamed revision leaves no stale file behind)."""
    expected = {_snapshot(rev, direction).name for rev, direction, _ in _steps()}
    present = {path.name for path in SNAPSHOTS.glob("*.sql")}
    assert present - expected == set()


def write_snapshots() -> None:
    """Render every revision both ways and write the snapshots (replacing the old ones)."""
    SNAPSHOTS.mkdir(exist_ok=True)
    for stale in SNAPSHOTS.glob("*.sql"):
        stale.unlink()
    for revision, direction, revision_range in _steps():
        _snapshot(revision, direction).write_text(_render(revision_range, direction))


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit(f"usage: {WRITE_COMMAND}")
    write_snapshots()
    print(f"wrote {len(_steps())} snapshots to {SNAPSHOTS}")
