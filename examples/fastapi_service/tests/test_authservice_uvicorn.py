"""The README's commands, run as written, then the service under uvicorn driven over real HTTP.

The commands come from the README's ``<!-- example: run -->`` block (so the README stays true):
all but ``pip install`` (this environment has it), in a new embedded server's folder
(``AUTHMODELS_HOME``) with no database configured -- the embedded default -- and uvicorn on a
free local port instead of 8000.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

HERE = Path(__file__).resolve().parents[1]
README = HERE / "README.md"
ROOT = HERE.parents[1]
PASSWORD = "a long passphrase"


def readme_commands() -> list[str]:
    """The commands of the README's ``<!-- example: run -->`` block."""
    text = README.read_text()
    block = re.search(r"<!-- example: run -->\s*```bash\n(.*?)```", text, re.S)
    assert block is not None, "README.md lost its <!-- example: run --> block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[str]:
    """The README's commands in bash, ending in uvicorn; the service's base URL."""
    commands = readme_commands()
    assert commands[0].startswith("pip install") and commands[-1].startswith("uvicorn ")
    port = free_port()
    serve = commands[-1].replace("--port 8000", f"--port {port} --host 127.0.0.1")
    script = "\n".join(["set -euo pipefail", *commands[1:-1], f"exec {serve}"])
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("AUTHMODELS_DATABASE_URL", "DATABASE_URL") and not k.startswith("AUTHSERVICE_")
    }
    env["AUTHMODELS_HOME"] = str(tmp_path / "embedded")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    log = tmp_path / "service.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            ["bash", "-c", script], cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, f"the service stopped:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the service did not answer:\n{log.read_text()}"
            try:
                httpx.get(f"{base}/me", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        subprocess.run(  # the embedded server, if uvicorn's exit did not stop it
            [sys.executable, "-m", "authmodels.cli", "server", "stop"],
            env=env,
            capture_output=True,
            check=False,
        )


@pytest.mark.slow
def test_the_readme_runs_the_service_on_the_embedded_default(service: str) -> None:
    credentials = {"email": "ada@example.com", "password": PASSWORD}
    with httpx.Client(base_url=service, timeout=30) as http:
        assert http.post("/signup", json=credentials).status_code == 202
        signed_in = http.post("/login", json=credentials)
        assert signed_in.status_code == 200, signed_in.text
        assert "HttpOnly" in signed_in.headers["set-cookie"]
        tokens = signed_in.json()
        me = http.get("/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
        assert me.status_code == 200 and me.json()["email"] == "ada@example.com"
        assert len(me.json()["sessions"]) == 1

        grant = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
        rotated = http.post("/token", data=grant)
        assert rotated.status_code == 200 and rotated.json()["token_type"] == "Bearer"
        bearer = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
        assert http.post("/logout", headers=bearer).status_code == 204
        after = http.get("/me", headers=bearer)
        assert after.status_code == 401
        assert 'error="invalid_token"' in after.headers["WWW-Authenticate"]
