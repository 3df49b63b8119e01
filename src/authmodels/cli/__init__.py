"""The ``authmodels`` console script: migrations, the embedded server, keys, retention.

::

    authmodels db upgrade [REVISION] [--sql]    migrate (default: authmodels' head)
    authmodels db downgrade REVISION             e.g. -1, or base
    authmodels db current                        the revisions the database is at, or (none)
    authmodels db check                          at head, and the schema matches the models
    authmodels server init|start|stop|url|status the embedded PostgreSQL (development)
    authmodels keys generate [--id KID]          print a new key ring entry (env provider)
    authmodels keys list|create|rotate|retire    wrapped data keys (file, pkcs11 providers)
    authmodels keys import|rewrap                wrap the env rings; re-wrap under a new KEK
    authmodels keys kek create|retire            key-encryption keys (token, key file)
    authmodels keys reencrypt [--batch-size N]   move every encrypted column to the current key
    authmodels erd [--area AREA] [--output PATH] the schema diagrams (SVG), anywhere
    authmodels purge [--dry-run] [--only NAME]   remove what the retention policies no longer keep
    authmodels partitions ensure|list|plan       monthly partitions of the logs
    authmodels users email-conflicts             live accounts sharing an address (revision 0023)
    authmodels report [--html F] [--fail-on L]   detections and compliance (revision 0030)
    authmodels metrics serve | --once            Prometheus metrics
    authmodels demo                              migrate and run a short example

Global options, before or after the command: ``-v``/``--verbose`` (log, and show the traceback
of an error), ``--url URL``, ``--json`` (one JSON object per line), ``--no-progress``. Without
``--url`` the database is resolved as :func:`authmodels.db.locate_database` does
(``AUTHMODELS_DATABASE_URL``, ``DATABASE_URL``, then the embedded server found upward from the
working directory). An error is one line on standard error naming what to fix (for a database,
the URL and where it came from), with exit status 1; 2 for a command line that is not valid.

Adding commands
---------------
Each command group is a module with a function ``register(commands: CommandSet) -> None``
(:class:`authmodels.cli.common.CommandSet`), listed in :data:`COMMAND_MODULES` below: that tuple
is the one place where another package of authmodels (``authmodels.report``, say) adds its
commands, by adding its module's name. A handler gets a :class:`~authmodels.cli.common.Context`
and returns the exit status; it raises the typed errors of :mod:`authmodels.errors`, which
:func:`main` prints as one line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback
from collections.abc import Sequence

from alembic.util.exc import CommandError
from sqlalchemy.exc import DBAPIError

from authmodels.cli.common import CommandSet, Context, add_global_options
from authmodels.errors import AuthModelsError

#: The modules that register the command groups, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "authmodels.cli.db",
    "authmodels.cli.server",
    "authmodels.cli.keys",
    "authmodels.cli.erd",
    "authmodels.cli.retention",
    "authmodels.cli.users",
    "authmodels.report.cli",
    "authmodels.cli.demo",
)

ENVIRONMENT = """\
environment variables:
  AUTHMODELS_DATABASE_URL            database URL (else DATABASE_URL, else the embedded server)
  DATABASE_URL                       database URL, when AUTHMODELS_DATABASE_URL is unset
  AUTHMODELS_HOME                    folder of the embedded PostgreSQL (default: the nearest
                                     .authmodels/ upward, as git finds .git)
  AUTHMODELS_HASH_KEYS               HMAC key ring of token and code digests (kid:base64,...)
  AUTHMODELS_HASH_KEY_CURRENT        its key for new digests (default: the last)
  AUTHMODELS_ENCRYPTION_KEYS         AES-256-GCM key ring of encrypted columns
  AUTHMODELS_ENCRYPTION_KEY_CURRENT  its key for new values (default: the last)
  AUTHMODELS_PRIVACY_KEYS            HMAC key ring of IP / user-agent hashes (default: hash keys)
  AUTHMODELS_KEY_PROVIDER            env (default), file:/path/to/kek or a pkcs11: URI
  AUTHMODELS_WRAPPED_KEYS            the wrapped data keys of the file and pkcs11 providers
  AUTHMODELS_PKCS11_PIN              the PKCS#11 token's PIN (or pin-source=FILE in the URI)

`authmodels COMMAND --help` describes a command; docs/operations.md has the whole reference."""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``authmodels`` command."""
    parser = argparse.ArgumentParser(
        prog="authmodels",
        description="authmodels: the migrations, keys and maintenance of schema auth.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_global_options(parser, suppress=False)
    commands = CommandSet(
        parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")
    )
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    return parser


def _refuse_unused_options(args: argparse.Namespace) -> None:
    given = {"url": args.url is not None, "json": args.json}
    unused = [f"--{name}" for name, on in given.items() if on and name not in args._uses]
    if unused:
        args._parser.error(f"{' and '.join(unused)} is not used by this command")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``authmodels`` console script; returns the exit status.

    A command line that is not valid (and ``--help``) returns argparse's status (2, or 0)
    instead of leaving the process, so that ``main([...])`` can be called from Python.
    """
    try:
        return _main(argv)
    except SystemExit as leaving:
        return leaving.code if isinstance(leaving.code, int) else 1


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    _refuse_unused_options(args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    context = Context(args)
    try:
        return int(args._handler(context))
    except (AuthModelsError, CommandError, DBAPIError) as exc:
        context.finish()
        if args.verbose:
            traceback.print_exc()
        message = _one_line(exc)
        if args.json:
            context.emit("error", message=message, error=type(exc).__name__)
        print(f"authmodels: {message}", file=sys.stderr)
        return 1
    finally:
        context.finish()


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, DBAPIError):
        from authmodels.db import driver_message

        return f"the database refused: {driver_message(exc)} (-v shows the statement)"
    return " ".join(str(exc).split())


if __name__ == "__main__":
    sys.exit(main())
