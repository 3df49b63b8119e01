"""``authmodels erd``: the schema diagrams, written anywhere."""

from __future__ import annotations

from pathlib import Path

from authmodels.cli.common import CommandSet, Context


def register(commands: CommandSet) -> None:
    """The ``erd`` command."""
    erd = commands.command("erd", _erd, help="write the schema diagram of schema auth", uses=())
    erd.add_argument("--output", default="-", help="file, or - for stdout (default)")


def _erd(ctx: Context) -> int:
    from authmodels.erd import erd_markdown
    from authmodels.models import metadata

    page = erd_markdown(metadata)
    if ctx.args.output == "-":
        print(page, end="")
    else:
        Path(ctx.args.output).write_text(page)
        ctx.note(f"wrote {ctx.args.output}")
    return 0
