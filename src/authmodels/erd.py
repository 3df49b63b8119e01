"""Entity-relationship diagrams of schema ``auth``, one per area, drawn as SVG from the models.

Every table belongs to one :data:`AREAS` entry (identity and sessions, tokens and DPoP, MFA and
WebAuthn, logs and audit, E2EE and messaging, retention); a table of another area that one of
them references is drawn as a small grey box holding only the referenced key, linked to its
area. The drawing needs no network and no JavaScript: each diagram is plain SVG, laid out here in
two columns of tables facing a channel that carries the reference lines, so that a line never
crosses a table. Text is 12 px monospace at the diagram's natural size, which the documentation
shows unscaled (wider than the page, it scrolls instead of shrinking).

``authmodels erd`` prints them (an HTML page of every area, or one area's SVG) or writes the
documentation pages (``docs/schema/``); a test regenerates the pages and compares, so the
diagrams cannot drift from the models, and a browser test checks the rendered text size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from html import escape
from typing import Any

from sqlalchemy import Column, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import TypeEngine

from authmodels.models.base import REFERENCES


@dataclass(frozen=True)
class Area:
    """A group of tables drawn together.

    Attributes:
        slug: its page's name (``identity`` → ``docs/schema/identity.md``).
        title: its heading.
        summary: one paragraph on what the tables hold.
        tables: its tables, in the order they are placed.
    """

    slug: str
    title: str
    summary: str
    tables: tuple[str, ...]


AREAS: tuple[Area, ...] = (
    Area(
        "identity",
        "Identity and sessions",
        "Users and what hangs off an account: its profile, its login sessions and their audit "
        "trail, the devices it trusts, its password history and its recovery requests.",
        (
            "users",
            "sessions",
            "user_profiles",
            "session_audits",
            "user_devices",
            "password_history",
            "account_recovery",
        ),
    ),
    Area(
        "tokens",
        "Tokens and DPoP",
        "Every token a user or a client presents, stored as a keyed digest: access and refresh "
        "tokens with their rotation lineage and DPoP binding, the DPoP replay store, step-up "
        "tokens, device flows, API keys, reset, verification and magic-link tokens, and the "
        "encrypted tokens of OAuth providers.",
        (
            "refresh_tokens",
            "access_tokens",
            "step_up_tokens",
            "dpop_jtis",
            "device_flows",
            "api_keys",
            "password_reset_tokens",
            "email_verification_tokens",
            "magic_link_tokens",
            "oauth_connections",
        ),
    ),
    Area(
        "mfa",
        "MFA and WebAuthn",
        "Second factors: TOTP enrolments with their hashed backup codes, and WebAuthn "
        "credentials (passkeys and security keys).",
        ("two_factor_auth", "two_factor_backup_codes", "webauthn_credentials"),
    ),
    Area(
        "logs",
        "Logs and audit",
        "What happened, kept for its retention window: the audit log (partitioned by month) and "
        "its archive, login attempts (partitioned by month), security events, application logs, "
        "the delivery logs of e-mail and SMS, and the requests the lifecycle flows limit.",
        (
            "audit_logs",
            "audit_logs_archive",
            "login_attempts",
            "security_events",
            "email_delivery_logs",
            "sms_delivery_logs",
            "flow_requests",
            "app_logs",
        ),
    ),
    Area(
        "e2ee",
        "E2EE and messaging",
        "End-to-end encrypted messaging: conversations and their participants, encrypted "
        "messages, each user's device keys with the audit of their changes, and key exchanges "
        "(an HMAC of the shared secret only).",
        (
            "conversations",
            "device_keys",
            "conversation_participants",
            "messages",
            "device_key_events",
            "key_exchanges",
        ),
    ),
    Area(
        "retention",
        "Retention",
        "What the purge follows and what migrations set aside: one retention policy per table "
        "(revision 0016), and the quarantine of rows a revision could not convert (nothing is "
        "deleted).",
        ("retention_policies", "quarantine"),
    ),
)

FONT = "ui-monospace, 'DejaVu Sans Mono', 'Liberation Mono', Menlo, Consolas, monospace"
FONT_SIZE = 12
CHAR = FONT_SIZE * 0.62  # a monospace character's advance, with some room
ROW = 20
HEADER = 26
PAD = 8
GAP = 28  # between two tables of a column
MARGIN = 12
LANE = 12  # between two reference lines in the channel
COLORS = ("#1565c0", "#c62828", "#2e7d32", "#6a1b9a", "#ef6c00", "#00838f", "#5d4037")

_TOKEN = re.compile(r"[^a-z0-9_]+")


def area_of(metadata: MetaData) -> dict[str, Area]:
    """The area of every table of ``metadata``.

    Raises:
        ValueError: a table is in no area, or in two (a new table needs a place in
            :data:`AREAS`), or an area names a table that does not exist.
    """
    owner: dict[str, Area] = {}
    for area in AREAS:
        for name in area.tables:
            if name in owner:
                raise ValueError(f"table {name} is in two areas: {owner[name].slug}, {area.slug}")
            owner[name] = area
    tables = {table.name for table in metadata.tables.values()}
    missing = sorted(tables - set(owner))
    unknown = sorted(set(owner) - tables)
    if missing or unknown:
        raise ValueError(
            f"authmodels.erd.AREAS does not match the models: tables in no area {missing}, "
            f"areas naming no table {unknown}"
        )
    return owner


# --- what a table shows ----------------------------------------------------------------------


def _type_token(column_type: TypeEngine[object]) -> str:
    try:
        rendered = column_type.compile(dialect=postgresql.dialect())  # type: ignore[no-untyped-call]
    except Exception:  # a type without a PostgreSQL rendering: fall back to its class name
        rendered = type(column_type).__name__
    text = str(rendered).lower().replace("timestamp with time zone", "timestamptz")
    text = _TOKEN.sub("_", text).strip("_") or "unknown"
    return text.removeprefix("auth_")  # the enum types of schema auth


def _unique_columns(table: Table) -> set[str]:
    single: set[str] = set()
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and len(constraint.columns) == 1:
            single.update(c.name for c in constraint.columns)
    for index in table.indexes:
        if index.unique and len(index.expressions) == 1 and len(index.columns) == 1:
            single.update(c.name for c in index.columns)
    return single


@dataclass(frozen=True)
class Reference:
    """A reference from a column to a key: a foreign key, or one kept by triggers (0018)."""

    table: str
    column: str
    target: str
    target_column: str
    checked_by_trigger: bool
    """True for a reference kept by triggers instead of a foreign key (a dashed line)."""


def references(table: Table) -> list[Reference]:
    """Every reference of ``table``'s columns, in column order."""
    found = []
    for column in table.columns:
        for fk in sorted(column.foreign_keys, key=lambda f: f.target_fullname):
            found.append(
                Reference(table.name, column.name, fk.column.table.name, fk.column.name, False)
            )
        if REFERENCES in column.info:
            *_, target, target_column = str(column.info[REFERENCES]).split(".")
            found.append(Reference(table.name, column.name, target, target_column, True))
    return found


def _keys(table: Table, column: Column[Any], unique: set[str]) -> str:
    keys = []
    if column.primary_key:
        keys.append("PK")
    if column.foreign_keys or REFERENCES in column.info:
        keys.append("FK")
    if column.name in unique and not column.primary_key:
        keys.append("UK")
    return " ".join(keys)


@dataclass
class _Box:
    name: str
    rows: list[tuple[str, str, str]]  # column, type, keys
    stub_of: Area | None = None  # a table of another area, shown by its referenced keys
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    left_column: bool = True

    @property
    def height(self) -> float:
        return HEADER + ROW * len(self.rows) + PAD / 2

    def row_y(self, column: str) -> float:
        index = next(i for i, row in enumerate(self.rows) if row[0] == column)
        return self.y + HEADER + ROW * index + ROW / 2

    def facing_x(self) -> float:
        """The x of the edge that faces the channel."""
        return self.x + self.width if self.left_column else self.x


@dataclass
class _Layout:
    boxes: dict[str, _Box] = field(default_factory=dict)
    refs: list[Reference] = field(default_factory=list)
    lanes: dict[str, int] = field(default_factory=dict)
    channel_x: float = 0.0
    width: float = 0.0
    height: float = 0.0


def _layout(metadata: MetaData, area: Area) -> _Layout:
    owner = area_of(metadata)
    tables = {table.name: table for table in metadata.tables.values()}
    layout = _Layout()
    for name in area.tables:
        table = tables[name]
        unique = _unique_columns(table)
        layout.boxes[name] = _Box(
            name,
            [(c.name, _type_token(c.type), _keys(table, c, unique)) for c in table.columns],
        )
        layout.refs.extend(references(table))
    stubs: dict[str, set[str]] = {}
    for ref in layout.refs:
        if ref.target not in layout.boxes:
            stubs.setdefault(ref.target, set()).add(ref.target_column)
    for name in sorted(stubs):
        table = tables[name]
        unique = _unique_columns(table)
        layout.boxes[name] = _Box(
            name,
            [
                (c.name, _type_token(c.type), _keys(table, c, unique))
                for c in table.columns
                if c.name in stubs[name]
            ],
            stub_of=owner[name],
        )
    # the referenced tables first (stubs, then the area's own in its order): lines stay short
    targets = [r.target for r in layout.refs]
    order = sorted(
        layout.boxes,
        key=lambda n: (
            layout.boxes[n].stub_of is None,
            -targets.count(n) if n in targets else 1,
            list(layout.boxes).index(n),
        ),
    )
    for index, target in enumerate(dict.fromkeys(t for t in order if t in targets)):
        layout.lanes[target] = index
    heights = [0.0, 0.0]
    placed: list[list[_Box]] = [[], []]
    for name in order:
        box = layout.boxes[name]
        side = 0 if heights[0] <= heights[1] else 1
        box.left_column = side == 0
        box.y = MARGIN + heights[side]
        heights[side] += box.height + GAP
        placed[side].append(box)
    for box in layout.boxes.values():
        name_width = max(len(box.name) + (len(f" ({box.stub_of.slug})") if box.stub_of else 0), 8)
        column_chars = max(len(r[0]) for r in box.rows)
        type_chars = max(len(r[1]) for r in box.rows)
        key_chars = max(len(r[2]) for r in box.rows)
        box.width = round(
            max(name_width, column_chars + 2 + type_chars + 2 + key_chars) * CHAR + 2 * PAD
        )
    left = max((b.width for b in placed[0]), default=0.0)
    right = max((b.width for b in placed[1]), default=0.0)
    channel = 2 * LANE + LANE * max(len(layout.lanes) - 1, 0) + 2 * LANE
    layout.channel_x = MARGIN + left
    for box in placed[0]:
        box.x = MARGIN + left - box.width  # right-aligned on the channel
    for box in placed[1]:
        box.x = MARGIN + left + channel
    layout.width = MARGIN + left + channel + right + MARGIN
    layout.height = MARGIN + max(heights) - GAP + MARGIN
    return layout


# --- drawing ---------------------------------------------------------------------------------


def _text(x: float, y: float, content: str, **attributes: str) -> str:
    extra = "".join(f' {key.replace("_", "-")}="{value}"' for key, value in attributes.items())
    return f'<text x="{x:g}" y="{y:g}"{extra}>{escape(content)}</text>'


def _draw_box(box: _Box, link: str | None) -> list[str]:
    stub = box.stub_of is not None
    out = [
        f'<g class="erd-table" data-table="{box.name}">',
        f'<rect x="{box.x:g}" y="{box.y:g}" width="{box.width:g}" height="{box.height:g}" '
        f'rx="4" fill="#ffffff" stroke="{"#9e9e9e" if stub else "#37474f"}" stroke-width="1"'
        + (' stroke-dasharray="4 3"' if stub else "")
        + "/>",
        f'<rect x="{box.x:g}" y="{box.y:g}" width="{box.width:g}" height="{HEADER}" rx="4" '
        f'fill="{"#eeeeee" if stub else "#e3eaf3"}"/>',
    ]
    title = box.name + (f" ({box.stub_of.slug})" if box.stub_of else "")
    heading = _text(box.x + PAD, box.y + HEADER / 2 + 4, title, font_weight="bold")
    if link and box.stub_of is not None:
        heading = f'<a href="{escape(link)}">{heading}</a>'
    out.append(heading)
    type_x = box.x + PAD + (max(len(r[0]) for r in box.rows) + 2) * CHAR
    for index, (name, type_, keys) in enumerate(box.rows):
        baseline = box.y + HEADER + ROW * index + ROW / 2 + 4
        if index % 2:
            out.append(
                f'<rect x="{box.x + 1:g}" y="{box.y + HEADER + ROW * index:g}" '
                f'width="{box.width - 2:g}" height="{ROW}" fill="#f7f9fb"/>'
            )
        out.append(_text(box.x + PAD, baseline, name, fill="#1a1a1a"))
        out.append(_text(type_x, baseline, type_, fill="#5f6b76"))
        if keys:
            out.append(
                _text(
                    box.x + box.width - PAD,
                    baseline,
                    keys,
                    text_anchor="end",
                    font_weight="bold",
                    fill="#37474f",
                )
            )
    out.append("</g>")
    return out


def _draw_reference(layout: _Layout, ref: Reference) -> list[str]:
    child, target = layout.boxes[ref.table], layout.boxes[ref.target]
    color = COLORS[layout.lanes[ref.target] % len(COLORS)]
    lane_x = layout.channel_x + 2 * LANE + LANE * layout.lanes[ref.target]
    x1, y1 = child.facing_x(), child.row_y(ref.column)
    x2, y2 = target.facing_x(), target.row_y(ref.target_column)
    # the arrow points into the target through its facing edge; its base lies in the channel
    base = x2 + 7 if target.left_column else x2 - 7
    arrow = f"M{x2:g},{y2:g} L{base:g},{y2 - 4:g} L{base:g},{y2 + 4:g} Z"
    dash = ' stroke-dasharray="5 4"' if ref.checked_by_trigger else ""
    return [
        f'<g class="erd-reference" data-from="{ref.table}.{ref.column}" '
        f'data-to="{ref.target}.{ref.target_column}">',
        f'<path d="M{x1:g},{y1:g} H{lane_x:g} V{y2:g} H{x2:g}" fill="none" stroke="{color}" '
        f'stroke-width="1.5"{dash}/>',
        f'<circle cx="{x1:g}" cy="{y1:g}" r="3" fill="{color}"/>',
        f'<path d="{arrow}" fill="{color}"/>',
        "</g>",
    ]


def svg(metadata: MetaData, area: Area, *, link: dict[str, str] | None = None) -> str:
    """The diagram of ``area`` as an SVG document (no scripts, no external resources).

    Args:
        metadata: the models' metadata.
        area: one of :data:`AREAS`.
        link: where each area's diagram is, by slug, for the boxes of other areas' tables.
    """
    layout = _layout(metadata, area)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{layout.width:g}" '
        f'height="{layout.height:g}" viewBox="0 0 {layout.width:g} {layout.height:g}" '
        f'role="img" aria-label="{escape(area.title)}: tables of schema auth" '
        f'font-family="{FONT}" font-size="{FONT_SIZE}" style="max-width:none">',
        f"<title>{escape(area.title)}</title>",
    ]
    for box in layout.boxes.values():
        target = (link or {}).get(box.stub_of.slug) if box.stub_of else None
        parts.extend(_draw_box(box, target))
    for ref in layout.refs:
        parts.extend(_draw_reference(layout, ref))
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# --- pages -----------------------------------------------------------------------------------

LEGEND = (
    "Each box is a table; its rows are its columns and their types (`PK` primary key, `FK` "
    "reference, `UK` unique on its own). A line runs from a referencing column (the dot) to "
    "the key it references (the arrow); a dashed line is a reference to `sessions` kept by "
    "triggers instead of a foreign key (revision 0018). A grey box is a table of another area, "
    "shown by the key that is referenced; its title links to its area."
)


def _page(metadata: MetaData, area: Area) -> str:
    links = {other.slug: f"../{other.slug}/" for other in AREAS}
    tables = ", ".join(f"`{name}`" for name in area.tables)
    return (
        "---\nhide:\n  - toc\n---\n\n"
        f"# {area.title}\n\n"
        f"{area.summary} Tables: {tables}.\n\n"
        f'<div class="erd" style="overflow-x: auto">\n'
        f"{svg(metadata, area, link=links)}"
        "</div>\n\n"
        f"{LEGEND} Generated from the models by `authmodels erd`; "
        "[all the areas](index.md).\n"
    )


def _index(metadata: MetaData) -> str:
    rows = "\n".join(
        f"| [{area.title}]({area.slug}.md) | {', '.join(f'`{t}`' for t in area.tables)} |"
        for area in AREAS
    )
    return (
        "# Schema diagrams\n\n"
        "Every table of schema `auth` at the head of the revision chain, one diagram per area, "
        "generated from the models by `authmodels erd --docs docs/schema` (a test fails when "
        "these pages and the models disagree). The diagrams are SVG drawn at their natural "
        "size: no network and no script is needed to read them.\n\n"
        "| area | tables |\n| --- | --- |\n" + rows + "\n\n" + LEGEND + "\n"
    )


def pages(metadata: MetaData) -> dict[str, str]:
    """The documentation pages: ``index.md`` and one page per area, by file name."""
    area_of(metadata)
    return {"index.md": _index(metadata)} | {
        f"{area.slug}.md": _page(metadata, area) for area in AREAS
    }


def html(metadata: MetaData) -> str:
    """Every area's diagram on one standalone HTML page (``authmodels erd``)."""
    area_of(metadata)
    links = {area.slug: f"#{area.slug}" for area in AREAS}
    sections = "\n".join(
        f'<section id="{area.slug}"><h2>{escape(area.title)}</h2>\n'
        f"<p>{escape(area.summary)}</p>\n{svg(metadata, area, link=links)}</section>"
        for area in AREAS
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<title>authmodels: schema auth</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:none}"
        "section{margin-bottom:3em}</style></head><body>\n"
        "<h1>Schema auth</h1>\n"
        f"<p>{escape(LEGEND.replace('`', ''))}</p>\n{sections}\n</body></html>\n"
    )
