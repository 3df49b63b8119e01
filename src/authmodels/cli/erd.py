"""``authmodels erd``: the schema diagrams, written anywhere (stdout or a given path)."""

from __future__ import annotations

from pathlib import Path

from authmodels.cli.common import CommandSet, Context


def register(commands: CommandSet) -> None:
    """The ``erd`` command."""
    from authmodels.erd import AREAS

    erd = commands.command(
        "erd",
        _erd,
        help="the schema diagrams of schema auth (SVG), one per area",
        description=(
            "The diagrams of schema auth, drawn from the models (no database needed):\n"
            "  authmodels erd > schema.html                 every area, one HTML page\n"
            "  authmodels erd --area tokens > tokens.svg    one area, as SVG\n"
            "  authmodels erd --docs docs/schema            the documentation pages"
        ),
        uses=(),
    )
    erd.add_argument(
        "--area", choices=[area.slug for area in AREAS], help="one area, as an SVG document"
    )
    erd.add_argument("--output", default="-", metavar="FILE", help="file (default: stdout)")
    erd.add_argument("--docs", metavar="FOLDER", help="write the documentation pages there")


def _erd(ctx: Context) -> int:
    from authmodels import erd
    from authmodels.models import metadata

    args = ctx.args
    if args.docs:
        folder = Path(args.docs)
        folder.mkdir(parents=True, exist_ok=True)
        for name, page in erd.pages(metadata).items():
            (folder / name).write_text(page)
        ctx.note(f"wrote {len(erd.AREAS) + 1} pages to {folder}")
        return 0
    if args.area:
        (area,) = [a for a in erd.AREAS if a.slug == args.area]
        document = erd.svg(metadata, area)
    else:
        document = erd.html(metadata)
    if args.output == "-":
        print(document, end="")
    else:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(document)
        ctx.note(f"wrote {args.output}")
    return 0
