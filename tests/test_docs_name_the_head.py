"""The README and docs/ name the chain's real head wherever they show it (a new revision that
forgets to update them fails here, not in a reader's terminal)."""

from __future__ import annotations

import re
from pathlib import Path

from authmodels.migrations import packaged_head

ROOT = Path(__file__).resolve().parents[1]
SHOWN_AS_HEAD = re.compile(
    r"(\d{4}_[a-z0-9_]+)`? (?:\(head\)|is the head today)|from (\d{4}_[a-z0-9_]+) to head: 1 rev"
)
PHASES_RANGE = re.compile(r"one page per revision, 0001 to (\d{4})")


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_every_revision_shown_as_the_head_is_the_head() -> None:
    head = packaged_head()
    shown: dict[str, set[str]] = {}
    for page in _pages():
        for match in SHOWN_AS_HEAD.finditer(page.read_text()):
            named = match.group(1) or match.group(2)
            if match.group(2):  # "from X to head: 1 revision" reaches the one after X
                named = _following(named)
            shown.setdefault(named, set()).add(str(page.relative_to(ROOT)))
    assert shown, "no page shows the head: the pattern no longer matches the docs"
    assert set(shown) == {head}, {name: sorted(pages) for name, pages in shown.items()}


def test_the_phases_range_ends_at_the_head() -> None:
    index = (ROOT / "docs" / "index.md").read_text()
    match = PHASES_RANGE.search(index)
    assert match is not None
    assert match.group(1) == packaged_head()[:4]


def _following(revision: str) -> str:
    """The revision after ``revision`` in the packaged chain (what a one-revision upgrade from
    it reaches)."""
    from alembic.script import ScriptDirectory

    from authmodels.migrations import alembic_config

    script = ScriptDirectory.from_config(alembic_config())
    following = [r.revision for r in script.walk_revisions() if r.down_revision == revision]
    assert len(following) == 1, (revision, following)
    return following[0]
