"""How long the pytest plugin takes to give a test its own database.

Prints, measured in one run on one embedded PostgreSQL:

- the median time to migrate an empty database from base to head (what a per-test database would
  cost without a template);
- the median time to clone the migrated template (``authmodels_fresh_database``), with both of
  PostgreSQL's strategies, FILE_COPY and WAL_LOG (the default);
- the ratio migrate / clone.

The server is tuned as the plugin tunes its temporary embedded server (fsync off); ``--durable``
measures with PostgreSQL's defaults instead.

Usage: ``python benchmarks/bench_test_databases.py [--migrations 3] [--clones 20] [--durable]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

from authmodels.db import EmbeddedServer, libpq_url, sqlalchemy_url
from authmodels.testing.database import TestServer
from authmodels.testing.migrations import MigrationRunner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--migrations", type=int, default=3)
    parser.add_argument("--clones", type=int, default=20)
    parser.add_argument(
        "--durable", dest="tuned", action="store_false", help="keep fsync on (default: off)"
    )
    args = parser.parse_args()

    server = EmbeddedServer(Path(tempfile.mkdtemp(prefix="authmodels-bench-")), delete_on_exit=True)
    admin = sqlalchemy_url(server.url())
    if args.tuned:  # as the pytest plugin configures its temporary server
        TestServer(url=admin, kind="embedded").tune_for_throwaway_data()
    with psycopg.connect(libpq_url(admin), autocommit=True) as conn:

        def create(name: str, template: str | None = None, strategy: str | None = None) -> None:
            stmt = "CREATE DATABASE {}" + (" TEMPLATE {}" if template else "")
            stmt += f" STRATEGY {strategy}" if strategy else ""
            idents = [sql.Identifier(name)] + ([sql.Identifier(template)] if template else [])
            conn.execute(sql.SQL(stmt).format(*idents))

        def drop(name: str) -> None:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))

        migrate_times = []
        for i in range(args.migrations):
            name = f"bench_migrate_{i}"
            create(name)
            runner = MigrationRunner(admin.set(database=name))
            started = time.perf_counter()
            runner.upgrade("head")
            migrate_times.append(time.perf_counter() - started)
            runner.dispose()
            if i:
                drop(name)
        template = "bench_migrate_0"

        clone_times: dict[str, list[float]] = {"FILE_COPY": [], "WAL_LOG": []}
        for strategy, times in clone_times.items():
            for i in range(args.clones):
                name = f"bench_clone_{strategy.lower()}_{i}"
                started = time.perf_counter()
                create(name, template, strategy)
                times.append(time.perf_counter() - started)
                drop(name)

    migrate = statistics.median(migrate_times)
    print(f"migrate base -> head      median {migrate * 1000:8.1f} ms  (n={args.migrations})")
    for strategy, times in clone_times.items():
        clone = statistics.median(times)
        print(
            f"clone template {strategy:<9}  median {clone * 1000:8.1f} ms  (n={args.clones})"
            f"  migrate/clone = {migrate / clone:5.1f}x"
        )
    server.stop()


if __name__ == "__main__":
    main()
