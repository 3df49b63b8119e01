"""``authmodels report`` and ``authmodels metrics``.

::

    authmodels report [--json] [--html FILE] [--fail-on LEVEL] [--threshold NAME=VALUE ...]
    authmodels metrics serve [--port 9464] [--addr 127.0.0.1]
    authmodels metrics --once [--output FILE]

Both take the global ``--url`` (default: resolved as every command resolves it) and
``--role ROLE`` (``SET ROLE`` to a report role for each transaction). ``report`` prints the
table (or the JSON document), writes the dashboard with ``--html``, and with ``--fail-on
LEVEL`` exits with status 1 when a finding is at least that severe (for cron and CI).
``metrics`` needs the ``metrics`` extra (``pip install 'authmodels[metrics]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import tempfile
import threading
from datetime import timedelta
from pathlib import Path
from types import FrameType

from authmodels.cli.common import JSON, URL, CommandSet, Context
from authmodels.errors import ConfigurationError, InvalidInputError
from authmodels.models.enums import SecurityEventSeverity
from authmodels.report.findings import SEVERITY_ORDER, at_least, worst
from authmodels.report.thresholds import Thresholds

__all__ = ["parse_threshold", "register"]

_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
#: The port of ``authmodels metrics serve`` unless ``--port`` says otherwise.
DEFAULT_PORT = 9464


def register(commands: CommandSet) -> None:
    """The ``report`` and ``metrics`` commands (listed in ``authmodels.cli.COMMAND_MODULES``)."""
    report = commands.command(
        "report",
        _report,
        help="detections and compliance metrics, as a table, JSON or an HTML page",
        uses=(URL, JSON),
    )
    _role_argument(report)
    report.add_argument("--html", metavar="FILE", default=None, help="write the dashboard page")
    report.add_argument(
        "--fail-on",
        choices=[s.value for s in SEVERITY_ORDER],
        default=None,
        metavar="LEVEL",
        help="exit with status 1 when a finding is at least this severe "
        "(low, medium, high, critical)",
    )
    report.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change a window or threshold, e.g. brute_force_failures=50 or "
        "brute_force_window=10m (s, m, h, d); repeat for several",
    )

    metrics = commands.command(
        "metrics", _metrics, help="Prometheus metrics: an HTTP endpoint, or once", uses=(URL,)
    )
    metrics.add_argument("action", nargs="?", choices=["serve"], help="serve over HTTP")
    metrics.add_argument("--once", action="store_true", help="print the metrics once and exit")
    metrics.add_argument(
        "--output",
        metavar="FILE",
        default=None,
        help="with --once: write FILE (atomically) instead of printing",
    )
    metrics.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"serve: the port (default {DEFAULT_PORT}; 0 picks a free one)",
    )
    metrics.add_argument(
        "--addr", default="127.0.0.1", help="serve: the address to listen on (default 127.0.0.1)"
    )
    _role_argument(metrics)


def parse_threshold(assignment: str) -> tuple[str, int | timedelta]:
    """``NAME=VALUE`` of ``--threshold``: a duration (``30s``, ``5m``, ``1h``, ``7d``) for a
    window, an integer for a count.

    Raises:
        InvalidInputError: not ``NAME=VALUE``, an unknown name, or a value of the wrong kind.
    """
    name, sep, raw = assignment.partition("=")
    kinds = Thresholds.field_kinds()
    if not sep or name not in kinds:
        raise InvalidInputError(
            f"--threshold {assignment!r}: expected NAME=VALUE with NAME one of "
            f"{', '.join(sorted(kinds))}",
            field="threshold",
        )
    if kinds[name] == "window":
        match = _DURATION.match(raw)
        if not match:
            raise InvalidInputError(
                f"--threshold {name}: {raw!r} is not a duration such as 30s, 5m, 1h or 7d",
                field=name,
            )
        return name, timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if not raw.isdigit():
        raise InvalidInputError(f"--threshold {name}: {raw!r} is not a whole number", field=name)
    return name, int(raw)


def _role_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--role", default=None, help="SET ROLE to this report role (auth.grant_report_role)"
    )


def _report(ctx: Context) -> int:
    from authmodels.report.html import render_html
    from authmodels.report.queries import collect
    from authmodels.report.text import render_text

    args = ctx.args
    thresholds = Thresholds().with_values(**dict(parse_threshold(a) for a in args.threshold))
    engine = ctx.engine()
    try:
        result = collect(engine, thresholds=thresholds, role=args.role)
    finally:
        engine.dispose()
    if args.html:
        Path(args.html).write_text(render_html(result), encoding="utf-8")
        print(f"wrote {args.html}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print(render_text(result), end="")
    if args.fail_on:
        level = SecurityEventSeverity(args.fail_on)
        failing = [f for f in result.findings if at_least(f.severity, level)]
        if failing:
            top = worst(failing)
            assert top is not None
            print(
                f"authmodels report: {len(failing)} finding(s) at {level.value} or above "
                f"(the most severe: {top.value})",
                file=sys.stderr,
            )
            return 1
    return 0


def _metrics(ctx: Context) -> int:
    args = ctx.args
    if (args.action == "serve") == args.once:
        print("authmodels metrics: give either serve or --once", file=sys.stderr)
        return 2
    if args.output and not args.once:
        print("authmodels metrics: --output goes with --once", file=sys.stderr)
        return 2
    try:
        from prometheus_client import CollectorRegistry, generate_latest, start_http_server
    except ImportError:
        raise ConfigurationError(
            "authmodels metrics needs prometheus_client: pip install 'authmodels[metrics]'"
        ) from None
    from authmodels.report.metrics import SecurityCollector

    engine = ctx.engine(pooled=True)
    registry = CollectorRegistry()
    registry.register(SecurityCollector(engine, role=args.role))
    try:
        if args.once:
            page = generate_latest(registry)
            if args.output:
                _write_atomically(Path(args.output), page)
            else:
                sys.stdout.buffer.write(page)
                sys.stdout.flush()
            return 0
        server, thread = start_http_server(args.port, args.addr, registry)
        stop = threading.Event()

        def _stop(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        print(f"serving http://{args.addr}:{server.server_port}/metrics", flush=True)
        stop.wait()
        server.shutdown()
        thread.join(timeout=5)
        return 0
    finally:
        engine.dispose()


def _write_atomically(path: Path, content: bytes) -> None:
    """Write ``path`` through a temporary file in its folder and a rename, so that a reader
    (node_exporter's textfile collector) never sees half a file."""
    with tempfile.NamedTemporaryFile(dir=path.parent or ".", prefix=f".{path.name}.",
                                     delete=False) as tmp:  # fmt: skip
        tmp.write(content)
    os.chmod(tmp.name, 0o644)  # readable by the collector's user, as a plain file would be
    os.replace(tmp.name, path)
