"""Every revision's SQL passes squawk, the linter for PostgreSQL migrations.

Squawk knows which statements take locks that block reads or writes on a busy table (a plain
CREATE INDEX, a NOT NULL added in one step, a column type rewrite...). Each revision is rendered
offline (``alembic upgrade prev:rev --sql``, what a DBA reviews before a deploy) and linted on its
own. A rule waived for one statement carries a ``-- squawk-ignore <rule>`` comment right before it,
with the reason; rules waived for the whole project are listed with their reasons in
``.squawk.toml``.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from authmodels.testing.migrations import MigrationRunner, revision_ids

ROOT = Path(__file__).resolve().parents[2]


def _squawk() -> str:
    found = shutil.which("squawk") or str(Path(sys.executable).parent / "squawk")
    if not Path(found).exists():
        pytest.fail("squawk is not installed: pip install -e '.[dev]' (squawk-cli)")
    return found


@pytest.mark.parametrize("revision", revision_ids())
def test_revision_sql_passes_squawk(revision: str, tmp_path: Path) -> None:
    ids = revision_ids()
    index = ids.index(revision)
    start = ids[index - 1] if index else None
    runner = MigrationRunner("postgresql+psycopg://squawk@localhost/offline")
    try:
        rendered = runner.sql(f"{start}:{revision}" if start else revision)
    finally:
        runner.dispose()
    # Alembic's own version table (created once, empty, before the first revision) is not part of
    # any revision; its VARCHAR(32) column is Alembic's choice, so it is not linted.
    rendered = re.sub(
        r"CREATE TABLE auth\.alembic_version \(.*?\);\n", "", rendered, count=1, flags=re.DOTALL
    )
    sql_file = tmp_path / f"{revision}.sql"
    sql_file.write_text(rendered)
    result = subprocess.run(
        [_squawk(), "--config", str(ROOT / ".squawk.toml"), "--reporter", "json", str(sql_file)],
        capture_output=True,
        text=True,
        check=False,
    )
    violations = json.loads(result.stdout or "[]")
    assert violations == [], "\n".join(
        f"{v.get('rule_name')}: line {v.get('line')}: {v.get('message')}" for v in violations
    )
