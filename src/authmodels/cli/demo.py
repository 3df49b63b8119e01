"""``authmodels demo``: migrate a database and run a short example of the library."""

from __future__ import annotations

from authmodels.cli.common import URL, CommandSet, Context


def register(commands: CommandSet) -> None:
    """The ``demo`` command."""
    commands.command(
        "demo",
        _demo,
        help="migrate and run a short example of the library (rolled back)",
        uses=(URL,),
    )


def _demo(ctx: Context) -> int:
    from authmodels.demo import run

    return run(ctx.location().url)
