"""What every command of the ``authmodels`` console script shares.

- :class:`CommandSet`: where a command group declares its commands (:mod:`authmodels.cli` says
  how a module is listed);
- the global options, accepted before or after the command: ``-v``/``--verbose``, ``--url``,
  ``--json``, ``--no-progress``; a command refuses one it has no use for;
- :class:`Context`: what a command's handler gets: its arguments, the database (resolved once,
  with where the URL came from), output as lines or as JSON, a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, pool

from authmodels.cli.progress import Progress, progress_wanted
from authmodels.db import DatabaseLocation, locate_database, open_engine

#: The global options, by destination; a command declares those it uses (``uses=``).
URL, JSON = "url", "json"

Handler = Callable[["Context"], int]


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command accepts before or after its name.

    Below the top level their default is ``SUPPRESS``, so that an option given before the
    command is not reset by the subcommand's own default.
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    options = parser.add_argument_group("global options (before or after the command)")
    options.add_argument(
        "-v", "--verbose", action="store_true", default=default(False),
        help="log what happens; show the traceback of an error",
    )  # fmt: skip
    options.add_argument(
        "--url", default=default(None), metavar="URL",
        help="database URL (default: AUTHMODELS_DATABASE_URL, DATABASE_URL, the embedded server)",
    )  # fmt: skip
    options.add_argument(
        "--json", action="store_true", default=default(False),
        help="print JSON (one object per line) instead of text",
    )  # fmt: skip
    options.add_argument(
        "--no-progress", action="store_true", default=default(False),
        help="no progress bar (one is drawn only on a terminal anyway)",
    )  # fmt: skip


class CommandSet:
    """The subcommands of one parser; a command group module fills one in ``register``."""

    def __init__(self, subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
        self._subparsers = subparsers

    def group(self, name: str, *, help: str, description: str | None = None) -> CommandSet:
        """A group of commands (``authmodels db ...``), itself a :class:`CommandSet`."""
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_global_options(parser, suppress=True)
        parser.set_defaults(_group_parser=parser)
        return CommandSet(
            parser.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)
        )

    def command(
        self,
        name: str,
        handler: Handler,
        *,
        help: str,
        description: str | None = None,
        uses: Iterable[str] = (URL, JSON),
    ) -> argparse.ArgumentParser:
        """Declare a command; returns its parser, for the command's own arguments.

        Args:
            name: the command's name.
            handler: called with the :class:`Context`; returns the exit status.
            help: one line for the list of commands.
            description: the command's ``--help`` text (default: ``help``).
            uses: the global options the command has a use for (``URL``, ``JSON``); given
                another, it stops with an error instead of ignoring it.
        """
        parser = self._subparsers.add_parser(
            name,
            help=help,
            description=description or help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_global_options(parser, suppress=True)
        parser.set_defaults(_handler=handler, _uses=frozenset(uses), _parser=parser)
        return parser


@dataclass
class Context:
    """What a command's handler works with.

    Attributes:
        args: the parsed arguments (global options included).
    """

    args: argparse.Namespace
    _location: DatabaseLocation | None = field(default=None, repr=False)
    _progress: list[Progress] = field(default_factory=list, repr=False)

    @property
    def json(self) -> bool:
        """``--json`` was given."""
        return bool(self.args.json)

    @property
    def verbose(self) -> bool:
        """``-v`` was given."""
        return bool(self.args.verbose)

    # --- the database ---------------------------------------------------------------------

    def location(self) -> DatabaseLocation:
        """The database: ``--url``, else the environment, else the embedded server."""
        if self._location is None:
            self._location = locate_database(self.args.url, source="--url")
        return self._location

    def engine(self, *, pooled: bool = False) -> Engine:
        """An engine on :meth:`location` that has connected once.

        Args:
            pooled: keep connections for reuse (commands that run many short transactions).
        """
        return open_engine(self.location(), **({} if pooled else {"poolclass": pool.NullPool}))

    # --- output ---------------------------------------------------------------------------

    def say(self, text: str = "") -> None:
        """A line of result on standard output (text mode only)."""
        if not self.json:
            self._clear_progress()
            print(text, flush=True)

    def note(self, text: str) -> None:
        """A line about the run on standard error (text mode only)."""
        if not self.json:
            self._clear_progress()
            print(text, file=sys.stderr, flush=True)

    def emit(self, event: str, **fields: Any) -> None:
        """One JSON object on a line of standard output (``--json`` only)."""
        if self.json:
            print(json.dumps({"event": event, **fields}, default=str), flush=True)

    def progress(self, label: str, total: int | None) -> Progress:
        """A progress bar, drawn only on a terminal without ``--json``/``--no-progress``."""
        bar = Progress(
            label,
            total,
            enabled=progress_wanted(json_output=self.json, disabled=self.args.no_progress),
        )
        self._progress.append(bar)
        return bar

    def _clear_progress(self) -> None:
        for bar in self._progress:
            bar.clear()

    def finish(self) -> None:
        """Erase any progress bar left (at the end of the command)."""
        self._clear_progress()
