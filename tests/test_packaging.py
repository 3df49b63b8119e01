"""The built wheel, installed outside the checkout, carries the revisions and can migrate.

A service that only ``pip install``-s authmodels never sees the repository's ``alembic/`` folder:
``authmodels.migrations.alembic_config`` must find the revisions inside the installed package.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from authmodels.db import libpq_url
from authmodels.testing.migrations import revision_ids

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
    )
    (built,) = out.glob("authmodels-*.whl")
    return built


def test_wheel_ships_every_revision(wheel: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    assert "authmodels/_alembic/env.py" in names
    assert "authmodels/py.typed" in names
    shipped = {
        Path(n).stem
        for n in names
        if n.startswith("authmodels/_alembic/versions/") and n.endswith(".py")
    }
    assert set(revision_ids()) <= shipped


def test_installed_wheel_migrates_a_fresh_database(
    wheel: Path, tmp_path: Path, authmodels_empty_database: URL
) -> None:
    """Install the wheel into a new virtualenv (dependencies borrowed, no download); migrate."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    new_python = env_dir / "bin" / "python"
    new_site = subprocess.run(
        [str(new_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # The wheel itself is unpacked into the new environment; its dependencies (SQLAlchemy,
    # Alembic, psycopg...) are taken from this environment by a path entry, so the test needs no
    # network. A plain path entry does not run this environment's editable-install hook, so the
    # only importable authmodels is the one from the wheel.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            "--target",
            new_site,
            str(wheel),
        ],
        check=True,
    )
    Path(new_site, "zz_borrowed_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(
        """
        import sys
        from alembic import command
        from sqlalchemy import create_engine, text
        import authmodels
        from authmodels.migrations import alembic_config, script_location
        assert "site-packages" in authmodels.__file__, authmodels.__file__
        assert "site-packages" in str(script_location()), script_location()
        url = sys.argv[1]
        command.upgrade(alembic_config(url), "head")
        engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
        with engine.connect() as conn:
            print(conn.execute(text("SELECT version_num FROM auth.alembic_version")).scalar())
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    result = subprocess.run(
        [str(new_python), "-c", script, libpq_url(authmodels_empty_database)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.stdout.strip() == revision_ids()[-1]
