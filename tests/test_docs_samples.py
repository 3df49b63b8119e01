"""Every Python code sample in docs/ runs, page by page, against a real PostgreSQL.

Each fenced ``python`` block of a page is extracted and executed, in the order of the page, in one
namespace per page (as in a doctest session, a block sees the names the blocks before it defined).
While a page runs:

- ``AUTHMODELS_DATABASE_URL`` names a database migrated to head (the plugin's
  ``authmodels_fresh_database``: a clone of the run's template, dropped afterwards), so samples
  can commit, open several connections, create roles, or downgrade and upgrade it;
- the working directory is an empty temporary folder, also on ``sys.path``;
- the key rings are the test run's (``AUTHMODELS_HASH_KEYS``, ``AUTHMODELS_ENCRYPTION_KEYS``).

A block that raises fails the page's test, naming the page, the block and its line. Afterwards the
environment variables, the imported modules of the folder and the database roles the page created
are put back as they were.

An HTML comment on the line before a fence changes what happens to the block:

- ``<!-- sample: skip (reason) -->``: not run (the reason is required and shown on the page's
  source). Kept for the few blocks that cannot run here, e.g. an ``env.py`` fragment.
- ``<!-- sample: file PATH -->``: not run but written to ``PATH`` in the working folder, for later
  blocks to use (a module, an Alembic ``env.py``, a revision, a test file). It may precede a
  block in another language too (an ``ini`` file).

Blocks in other languages (``bash``, ``sql``, ``ini``, ``toml``, ``text``) are not executed: they
are shell commands, SQL for a database console and configuration files, shown to be read and
typed; their effects are shown by the Python samples where it matters.

README.md's samples run as a page too, beside those of ``docs/``.
"""

from __future__ import annotations

import linecache
import os
import re
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from psycopg import sql
from sqlalchemy.engine import URL

from authmodels.db import libpq_url
from authmodels.testing.database import TestServer

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

_FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
_MARKER = re.compile(r"^\s*<!--\s*sample:\s*(?P<body>.*?)\s*-->\s*$")
_SKIP = re.compile(r"^skip\s+\((?P<reason>.*\S.*)\)$")
_FILE = re.compile(r"^file\s+(?P<path>[\w./-]+)$")
#: Info strings that would be Python under another name: refused, so no sample escapes the tests.
_PYTHON_ALIASES = {"py", "python3", "py3", "pycon", "pyi", "python-repl"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a page."""

    page: str
    number: int
    """1-based position among the page's ``python`` blocks."""
    line: int
    """Line of the opening fence (1-based)."""
    language: str
    code: str
    marker: str | None
    """The ``sample:`` marker before the fence, if any."""

    @property
    def label(self) -> str:
        return f"{self.page}, python block {self.number} (line {self.line})"


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of a Markdown page, with the marker written before it."""
    return blocks_of(page.read_text(encoding="utf-8"), page.relative_to(ROOT).as_posix())


def blocks_of(markdown: str, name: str) -> list[Block]:
    """Every fenced code block of ``markdown`` (the page ``name``), fences indented or not."""
    lines = markdown.splitlines()
    blocks: list[Block] = []
    python_count = 0
    i = 0
    while i < len(lines):
        opening = _FENCE_OPEN.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, ticks = opening["indent"], opening["ticks"]
        language = opening["info"].lstrip(".{").rstrip("}").lower()
        previous = next((lines[k] for k in range(i - 1, -1, -1) if lines[k].strip()), "")
        marker = _MARKER.match(previous)
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not _closes(lines[j], ticks):
            line = lines[j]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            j += 1
        if language == "python":
            python_count += 1
        blocks.append(
            Block(
                page=name,
                number=python_count if language == "python" else 0,
                line=i + 1,
                language=language,
                code="\n".join(body) + "\n",
                marker=marker["body"] if marker else None,
            )
        )
        i = j + 1
    return blocks


def _closes(line: str, ticks: str) -> bool:
    fence = line.strip()
    return bool(fence) and set(fence) == {ticks[0]} and len(fence) >= len(ticks)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def _python_blocks(page: Path) -> list[Block]:
    return [b for b in fenced_blocks(page) if b.language == "python"]


def _sample_blocks(page: Path) -> list[Block]:
    """The page's python blocks and the blocks of any language written to a file, in order."""
    return [
        b
        for b in fenced_blocks(page)
        if b.language == "python" or _FILE.match(b.marker or "") is not None
    ]


def _pages_with_samples() -> list[str]:
    return [
        page.relative_to(ROOT).as_posix()
        for page in _pages()
        if any(not (b.marker or "").startswith("skip") for b in _python_blocks(page))
    ]


# --- the page's surroundings, put back afterwards --------------------------------------------


@pytest.fixture
def sample_environment(
    authmodels_fresh_database: URL, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """The environment a page's samples run in (see the module docstring); restored after."""
    saved_environ = dict(os.environ)
    saved_modules = set(sys.modules)
    monkeypatch.setenv(
        "AUTHMODELS_DATABASE_URL", authmodels_fresh_database.render_as_string(hide_password=False)
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        yield tmp_path
    finally:
        os.environ.clear()
        os.environ.update(saved_environ)
        for name in set(sys.modules) - saved_modules:
            origin = getattr(sys.modules[name], "__file__", None) or ""
            if origin.startswith(str(tmp_path)):
                del sys.modules[name]


@pytest.fixture
def created_roles_dropped(
    authmodels_test_server: TestServer, authmodels_fresh_database: URL
) -> Iterator[None]:
    """Drop the roles a page creates (roles belong to the server, not to the database)."""

    def roles() -> set[str]:
        with authmodels_test_server.admin_connection() as conn:
            return {row[0] for row in conn.execute("SELECT rolname FROM pg_roles")}

    before = roles()
    yield
    new = roles() - before
    if not new:
        return
    import psycopg

    with psycopg.connect(libpq_url(authmodels_fresh_database), autocommit=True) as conn:
        for role in sorted(new):
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with authmodels_test_server.admin_connection() as conn:
        for role in sorted(new):
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def run_blocks(blocks: list[Block], folder: Path) -> None:
    """Run (or write) the page's python blocks in order; fail naming the first that raises."""
    namespace: dict[str, object] = {"__name__": "__docs_sample__"}
    for block in blocks:
        marker = block.marker or ""
        if marker.startswith("skip"):
            continue
        written = _FILE.match(marker)
        if written:
            target = folder / written["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(block.code, encoding="utf-8")
            continue
        filename = f"<{block.label}>"
        # Tracebacks show the sample's own lines.
        linecache.cache[filename] = (len(block.code), None, block.code.splitlines(True), filename)
        failure = None
        try:
            exec(compile(block.code, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 (our own docs)
        except Exception:
            failure = traceback.format_exc()
        finally:
            linecache.cache.pop(filename, None)
        if failure is not None:
            pytest.fail(f"{block.label} raised:\n\n{failure}", pytrace=False)


def test_the_docs_have_samples_to_run() -> None:
    """Guards the parametrized test below: no page found would silently run nothing."""
    assert len(_pages_with_samples()) >= 3


@pytest.mark.parametrize("page", _pages_with_samples())
def test_page_samples_run(page: str, sample_environment: Path, created_roles_dropped: None) -> None:
    """The page's Python samples run in order on a migrated database; their asserts hold."""
    run_blocks(_sample_blocks(ROOT / page), sample_environment)


# --- the markers themselves ---------------------------------------------------------------


def test_every_marker_is_understood_and_every_skip_says_why() -> None:
    problems = []
    for page in _pages():
        for block in fenced_blocks(page):
            if block.marker is None:
                continue
            where = f"{block.page} line {block.line}"
            if _FILE.match(block.marker):
                continue
            if block.language != "python":
                problems.append(f"{where}: a skip marker before a {block.language!r} block")
            elif not _SKIP.match(block.marker):
                problems.append(
                    f"{where}: unknown marker {block.marker!r} (use 'skip (reason)' or 'file PATH')"
                )
    assert problems == []


def test_python_is_always_fenced_as_python() -> None:
    """A block fenced ``py`` or ``python3`` would be highlighted as Python and never run."""
    aliased = [
        f"{block.page} line {block.line}: ```{block.language}"
        for page in _pages()
        for block in fenced_blocks(page)
        if block.language in _PYTHON_ALIASES
    ]
    assert aliased == [], "fence Python samples as ```python so that they run"


def test_the_sample_extractor_sees_blocks_markers_and_indented_fences() -> None:
    page = (
        "# t\n\n```python\na = 1\n```\n\n<!-- sample: skip (an env.py fragment) -->\n"
        "```python\nraise SystemExit\n```\n\n```bash\nls\n```\n\n"
        "!!! note\n    <!-- sample: file pkg/m.py -->\n    ```python\n    X = 2\n    ```\n"
    )
    blocks = blocks_of(page, "docs/t.md")
    assert [(b.language, b.number, b.line, b.marker, b.code) for b in blocks] == [
        ("python", 1, 3, None, "a = 1\n"),
        ("python", 2, 8, "skip (an env.py fragment)", "raise SystemExit\n"),
        ("bash", 0, 12, None, "ls\n"),
        ("python", 3, 18, "file pkg/m.py", "X = 2\n"),
    ]
