"""The pytest plugin under a key provider: a downstream test run whose environment names the
``file`` provider gets the store's rings as ``authmodels_keys``, and no ring is generated into
its environment."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from authmodels import config
from authmodels.security.keys import load_key_rings
from tests.keys.conftest import Cli, Provider

DOWNSTREAM_TEST = """
import os

from authmodels.config import Settings


def test_the_runs_keys_are_the_providers(authmodels_keys):
    assert "AUTHMODELS_HASH_KEYS" not in os.environ
    assert "AUTHMODELS_ENCRYPTION_KEYS" not in os.environ
    settings = Settings.from_env()
    assert authmodels_keys.hash_keys == settings.require_hash_keys()
    assert authmodels_keys.encryption_keys == settings.require_encryption_keys()
    keys = authmodels_keys
    print("KEY IDS", list(keys.hash_keys.keys), list(keys.encryption_keys.keys))
"""


def test_a_downstream_run_under_a_provider_uses_its_rings(
    file_provider: Provider, cli: Cli, tmp_path: Path
) -> None:
    cli.ok("keys", "kek", "create")
    cli.ok("keys", "create", "hash", "--id", "h1")
    cli.ok("keys", "create", "encryption", "--id", "e1")
    project = tmp_path / "downstream"
    project.mkdir()
    (project / "test_downstream.py").write_text(textwrap.dedent(DOWNSTREAM_TEST))
    ran = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider",
         "--rootdir", str(project), str(project)],
        cwd=project, env=dict(os.environ), capture_output=True, text=True, check=False,
        timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    assert "KEY IDS ['h1'] ['e1']" in ran.stdout
    rings = load_key_rings(file_provider.environ)
    assert rings.hash is not None and config.HASH_KEYS_VAR not in os.environ
