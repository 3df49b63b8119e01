"""The built wheel, installed in a fresh virtualenv, serves a service of its own.

What a new user does, from a wheel and not from the checkout: build it, install it into a new
virtualenv in a temporary folder, create a small service there (its own ``orders`` table with a
foreign key to ``auth.users``, its own Alembic environment made by ``alembic init`` and set up as
docs/integration.md says, with the files that page shows), then run plain ``alembic``
(``revision --depends-on``, ``upgrade``, ``check``, ``history``, ``downgrade``) and ``authmodels
db current/check/upgrade/downgrade`` on the composed database.

Nothing is downloaded: the wheel is built with the build backend installed here
(``--no-build-isolation``), and the new virtualenv installs its dependencies from the local
package indexes pip is configured with (``file://`` URLs; this machine has ``/opt/pypi``). With
no local index configured the test fails, saying so.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import URL

from authmodels.db import create_db_engine, libpq_url
from authmodels.migrations import packaged_head
from authmodels.testing.migrations import revision_ids
from tests.test_docs_samples import fenced_blocks

ROOT = Path(__file__).resolve().parents[1]
INTEGRATION = ROOT / "docs" / "integration.md"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"),
            *("-w", str(out), str(ROOT)),
        ],
        check=True,
    )
    (built,) = out.glob("authmodels-*.whl")
    return built


def _local_indexes() -> tuple[list[str], list[str]]:
    """The ``file://`` package indexes and the find-links folders pip is configured with."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    settings = [line.partition("=") for line in listed]
    values = {key.split(".", 1)[-1]: value.strip("'\"").split() for key, _, value in settings}
    env_links = os.environ.get("PIP_FIND_LINKS", "").split()
    indexes = [
        url
        for key in ("index-url", "extra-index-url")
        for url in values.get(key, [])
        if url.startswith("file://") and Path(url.removeprefix("file://")).is_dir()
    ]
    links = [p for p in [*values.get("find-links", []), *env_links] if Path(p).is_dir()]
    return indexes, sorted(set(links))


@pytest.fixture(scope="module")
def service_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv holding the wheel and its dependencies, installed without a network."""
    indexes, links = _local_indexes()
    if not indexes:
        pytest.fail(
            "the wheel test installs the wheel's dependencies offline, from a local package "
            "index (a file:// extra-index-url in pip's configuration); none is configured here"
        )
    venv = tmp_path_factory.mktemp("service") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {
        **os.environ,
        "PIP_INDEX_URL": indexes[0],
        "PIP_EXTRA_INDEX_URL": " ".join(indexes[1:]),
        "PIP_FIND_LINKS": " ".join(links),
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        env=env,
    )
    return venv


def _docs_files() -> dict[str, str]:
    """The files docs/integration.md writes for its service (``<!-- sample: file PATH -->``)."""
    files = {}
    for block in fenced_blocks(INTEGRATION):
        marker = re.match(r"file\s+(\S+)$", block.marker or "")
        if marker:
            files[marker[1]] = block.code
    return files


class Service:
    """The service's folder and the commands of its virtualenv."""

    def __init__(self, folder: Path, venv: Path, database_url: str) -> None:
        self.folder = folder
        self.bin = venv / "bin"
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "VIRTUAL_ENV", "DATABASE_URL")
        }
        self.env.update(
            PATH=f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            VIRTUAL_ENV=str(venv),
            AUTHMODELS_DATABASE_URL=database_url,
        )

    def run(self, *command: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.bin / command[0]), *command[1:]],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
        )
        if ok:
            assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}{result.stderr}"
        return result


@pytest.fixture
def service(
    service_venv: Path, tmp_path: Path, authmodels_empty_database: URL
) -> Iterator[Service]:
    """The shop of docs/integration.md, set up in a new folder as the page says."""
    shop = Service(tmp_path / "shop-service", service_venv, libpq_url(authmodels_empty_database))
    shop.folder.mkdir()
    shop.run("alembic", "init", "migrations")
    files = _docs_files()
    # the page's [alembic] settings go into the alembic.ini that `alembic init` wrote
    ini = configparser.ConfigParser(interpolation=None)
    ini.read(shop.folder / "alembic.ini")
    documented = configparser.ConfigParser(interpolation=None)
    documented.read_string(files.pop("alembic.ini"))
    ini.remove_option("alembic", "sqlalchemy.url")
    for key, value in documented["alembic"].items():
        ini["alembic"][key] = value
    with (shop.folder / "alembic.ini").open("w") as out:
        ini.write(out)
    revision = files.pop("migrations/versions/s001_orders.py")
    for name in ("shop/__init__.py", "shop/models.py", "migrations/env.py"):
        path = shop.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[name])
    shop.revision_body = revision  # type: ignore[attr-defined]
    yield shop


def test_wheel_ships_every_revision_and_the_resource_a_service_names(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "authmodels/_alembic/env.py" in names
    assert "authmodels/py.typed" in names
    shipped = {
        Path(n).stem
        for n in names
        if n.startswith("authmodels/_alembic/versions/") and n.endswith(".py")
    }
    assert set(revision_ids()) <= shipped
    assert not any("__pycache__" in n for n in names)


def test_a_service_composes_the_wheels_chain_with_plain_alembic_and_the_cli(
    service: Service, authmodels_empty_database: URL
) -> None:
    head = packaged_head()
    imported = "import authmodels.migrations as m; print(m.__file__, m.version_locations())"
    where = service.run("python", "-c", imported).stdout
    assert "site-packages" in where and str(ROOT) not in where, where

    # an empty database: nothing applied
    assert service.run("authmodels", "db", "current").stdout.strip() == "(none)"

    # plain alembic runs authmodels' chain (the service has no revision yet)
    service.run("alembic", "upgrade", "heads")
    assert service.run("authmodels", "db", "current").stdout.strip() == f"{head} (head)"

    # the service's first revision, on a new branch that depends on authmodels' first revision
    made = service.run(
        "alembic", "revision", "-m", "orders", "--head", "base", "--branch-label", "shop",
        "--version-path", "migrations/versions", "--depends-on", "authmodels",
        "--rev-id", "s001_orders",
    )  # fmt: skip
    generated = service.folder / "migrations" / "versions" / "s001_orders_orders.py"
    assert generated.is_file(), made.stdout + made.stderr
    source = generated.read_text()
    assert "depends_on: Union[str, Sequence[str], None] = 'authmodels'" in source or re.search(
        r"depends_on.*=\s*['\"]authmodels['\"]", source
    ), source
    generated.write_text(service.revision_body)  # type: ignore[attr-defined]

    upgraded = service.run("alembic", "upgrade", "heads")
    assert "Running upgrade  -> s001_orders" in upgraded.stderr, upgraded.stderr
    engine = create_db_engine(authmodels_empty_database)
    try:
        with engine.connect() as conn:
            versions = set(conn.scalars(text("SELECT version_num FROM auth.alembic_version")))
            assert versions == {head, "s001_orders"}
            assert conn.scalar(text("SELECT to_regclass('public.alembic_version')")) is None
            references = conn.scalar(
                text(
                    "SELECT confrelid::regclass::text FROM pg_constraint "
                    "WHERE conrelid = 'shop.orders'::regclass AND contype = 'f'"
                )
            )
            assert references == "auth.users"
    finally:
        engine.dispose()

    checked = service.run("alembic", "check")
    assert "No new upgrade operations detected" in checked.stdout + checked.stderr
    history = service.run("alembic", "history").stdout
    assert "(authmodels) -> s001_orders (shop) (head)" in history, history
    assert f"-> {head} (authmodels) (head)" in history
    assert "<base> -> 0001_baseline (authmodels)" in history

    # the operator CLI on the composed database: the service's revision is named, left alone
    current = service.run("authmodels", "db", "current").stdout.splitlines()
    assert current == [f"{head} (head)", "other revisions, not authmodels': s001_orders"]
    assert "matches the models" in service.run("authmodels", "db", "check").stdout
    service.run("authmodels", "db", "downgrade", "-1")
    previous = revision_ids()[-2]
    assert service.run("authmodels", "db", "current").stdout.splitlines()[0] == (
        f"{previous} (head is {head})"
    )
    assert service.run("authmodels", "db", "check", ok=False).returncode == 1
    upgraded = service.run("authmodels", "db", "upgrade")
    assert f"1/1  {head}" in upgraded.stdout
    assert upgraded.stdout.splitlines()[-1] == f"now at {head} (head)"
    assert "left alone: s001_orders" in upgraded.stderr

    # below our first revision the service's tables would lose auth.users: refused up front
    refused = service.run("authmodels", "db", "downgrade", "base", ok=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        "authmodels: the version table also holds s001_orders (another chain, which needs "
        "schema auth): downgrade it first with its own Alembic environment; authmodels db "
        "downgrade keeps 0001_baseline"
    ]
    assert service.run("authmodels", "db", "current").stdout.splitlines()[0] == f"{head} (head)"

    # the service's own downgrade, with plain alembic, leaves authmodels' chain in place
    service.run("alembic", "downgrade", "shop@-1")
    assert service.run("authmodels", "db", "current").stdout.strip() == f"{head} (head)"
    engine = create_db_engine(authmodels_empty_database)
    try:
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT to_regclass('shop.orders')")) is None
            assert conn.scalar(text("SELECT to_regclass('auth.users')")) is not None
    finally:
        engine.dispose()
    service.run("alembic", "upgrade", "heads")
    assert "s001_orders" in service.run("authmodels", "db", "current").stdout


def test_a_service_without_the_resource_in_version_locations_fails_in_one_line(
    service: Service,
) -> None:
    ini = (service.folder / "alembic.ini").read_text()
    (service.folder / "alembic.ini").write_text(ini.replace("authmodels:_alembic/versions", ""))
    failed = service.run("alembic", "upgrade", "heads", ok=False)
    assert failed.returncode != 0
    assert "Traceback" not in failed.stderr, failed.stderr
    (line,) = failed.stdout.strip().splitlines()
    assert line.startswith(
        "FAILED: authmodels' revisions are not among this environment's version_locations: "
        "add authmodels:_alembic/versions"
    ), line
