"""``authmodels server``: the embedded PostgreSQL of a project, for development.

The server's folder is found as every command finds it (:func:`authmodels.db.embedded_home`):
``AUTHMODELS_HOME``, else the nearest ``.authmodels/`` upward from the working directory. Only
``init`` creates one where none is found, in the folder it is given; ``start`` (and any command
that needs a database) creates one at the root of a project, never elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from authmodels.cli.common import CommandSet, Context
from authmodels.config import HOME_VAR, Settings
from authmodels.db import HOME_DIR, EmbeddedServer, embedded_home, find_home
from authmodels.errors import EmbeddedServerNotFound


def register(commands: CommandSet) -> None:
    """The ``server`` commands."""
    server = commands.group(
        "server",
        help="the embedded PostgreSQL (development)",
        description=(
            "The embedded PostgreSQL of this project: its folder is AUTHMODELS_HOME, else the\n"
            "nearest .authmodels/ in the working directory or above it (as git finds .git)."
        ),
    )
    init = server.command(
        "init",
        _init,
        help="create .authmodels/ in a folder (default: here) and start its server",
        uses=(),
    )
    init.add_argument("folder", nargs="?", default=".", help="the project's folder (default: .)")
    server.command("start", _start, help="start the server; print its URL", uses=())
    server.command("stop", _stop, help="stop the server", uses=())
    server.command("url", _url, help="print the URL of the running server", uses=())
    server.command("status", _status, help="running or stopped, and where", uses=())


def _existing() -> EmbeddedServer:
    settings = Settings.from_env()
    home = settings.home.expanduser() if settings.home is not None else find_home()
    if home is None:
        raise EmbeddedServerNotFound(
            f"no embedded server: no {HOME_DIR}/ folder in {Path.cwd()} or above it "
            f"(authmodels server init creates one; {HOME_VAR} names another folder)"
        )
    return EmbeddedServer(home, keep_running=True)


def _init(ctx: Context) -> int:
    folder = Path(ctx.args.folder).resolve()
    home = folder / HOME_DIR
    outer = find_home(folder.parent) if folder.parent != folder else None
    server = EmbeddedServer(home, keep_running=True)
    existed = server.pgdata.is_dir()
    ctx.say(server.start().url())
    ctx.note(
        f"{'already initialised' if existed else 'initialised'}: {server.pgdata}"
        + (f" (below it, it is used instead of {outer})" if outer else "")
    )
    return 0


def _start(ctx: Context) -> int:
    server = EmbeddedServer(embedded_home(), keep_running=True)
    ctx.say(server.start().url())
    return 0


def _stop(ctx: Context) -> int:
    server = _existing()
    server.stop()
    ctx.say(f"stopped: {server.pgdata}")
    return 0


def _url(ctx: Context) -> int:
    server = _existing()
    if not server.is_running():
        ctx.say(f"not running: {server.pgdata} (authmodels server start)")
        return 1
    ctx.say(server.url())
    return 0


def _status(ctx: Context) -> int:
    server = _existing()
    running = server.is_running()
    ctx.say(f"{'running' if running else 'stopped'}: {server.pgdata}")
    return 0 if running else 1
