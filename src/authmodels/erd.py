"""An entity-relationship diagram of schema ``auth``, generated from the models' metadata.

``authmodels erd`` writes it as a Mermaid ``erDiagram`` (rendered by the documentation site) to
``docs/schema/erd.md``; a test regenerates it and compares, so the diagram cannot drift from the
models.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import Column, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from authmodels.models.base import REFERENCES

_TOKEN = re.compile(r"[^a-z0-9_]+")


def _type_token(column_type: TypeEngine[object]) -> str:
    try:
        rendered = column_type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    except Exception:  # a type without a PostgreSQL rendering: fall back to its class name
        rendered = type(column_type).__name__
    text = str(rendered).lower().replace("timestamp with time zone", "timestamptz")
    return _TOKEN.sub("_", text).strip("_") or "unknown"


def _unique_columns(table: Table) -> set[str]:
    single: set[str] = set()
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            single.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.expressions) == 1 and len(index.columns) == 1:
            single.update(c.name for c in index.columns)
    return single


def _references(column: Column[Any]) -> list[tuple[str, str, str]]:
    """(target table, line, label) of each reference of ``column``.

    A foreign key is a solid line; a reference kept by triggers instead (revision 0018,
    ``Column.info["references"]``) is a dashed one, labelled with how it is kept.
    """
    found = [
        (fk.column.table.name, "--", column.name)
        for fk in sorted(column.foreign_keys, key=lambda f: f.target_fullname)
    ]
    if REFERENCES in column.info:
        checked = "trigger" if column.info.get("on_delete") else "not checked"
        target = str(column.info[REFERENCES]).split(".")[-2]
        found.append((target, "..", f"{column.name} ({checked})"))
    return found


def mermaid_erd(metadata: MetaData) -> str:
    """The Mermaid ``erDiagram`` of every table in ``metadata``, in a stable order."""
    tables = sorted(metadata.tables.values(), key=lambda t: t.name)
    lines = ["erDiagram"]
    relations: list[str] = []
    for table in tables:
        unique = _unique_columns(table)
        lines.append(f"    {table.name} {{")
        for column in table.columns:
            keys = []
            if column.primary_key:
                keys.append("PK")
            if _references(column):
                keys.append("FK")
            if column.name in unique and not column.primary_key:
                keys.append("UK")
            suffix = f" {', '.join(keys)}" if keys else ""
            lines.append(f"        {_type_token(column.type)} {column.name}{suffix}")
        lines.append("    }")
        for column in table.columns:
            many = "|o" if column.name in unique or column.primary_key else "}o"
            one = "o|" if column.nullable else "||"
            for target, line, label in _references(column):
                relations.append(f'    {table.name} {many}{line}{one} {target} : "{label}"')
    return "\n".join([*lines, *sorted(relations)]) + "\n"


def erd_markdown(metadata: MetaData) -> str:
    """The documentation page that holds the diagram."""
    return (
        "# Schema diagram\n\n"
        "Every table of schema `auth` at the head of the revision chain, generated from the\n"
        "models by `authmodels erd` (a test fails when this page and the models disagree).\n"
        "`PK` primary key, `FK` foreign key, `UK` unique on its own. A dashed line is a\n"
        "reference to `sessions` kept by triggers instead of a foreign key (revision 0018:\n"
        "`trigger` deletes the row with its session and checks new references, `not checked`\n"
        "keeps a historical id).\n\n"
        "```mermaid\n" + mermaid_erd(metadata) + "```\n"
    )
