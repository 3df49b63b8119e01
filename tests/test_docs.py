"""The documentation stays true to the code."""

from __future__ import annotations

from pathlib import Path

from authmodels.erd import erd_markdown
from authmodels.models import metadata

ROOT = Path(__file__).resolve().parents[1]


def test_schema_diagram_matches_the_models() -> None:
    """docs/schema/erd.md is what `authmodels erd` generates from the models today."""
    committed = (ROOT / "docs" / "schema" / "erd.md").read_text()
    assert committed == erd_markdown(metadata), (
        "docs/schema/erd.md is out of date: run `authmodels erd` and commit the result"
    )


def test_schema_diagram_has_every_table_and_relation() -> None:
    page = erd_markdown(metadata)
    for table in metadata.tables.values():
        assert f"    {table.name} {{" in page
        for fk in table.foreign_keys:
            assert f"{table.name} " in page and f" {fk.column.table.name} : " in page
