"""Fixtures of the key-provider tests: a key file provider, a PKCS#11 provider on the run's
SoftHSM2 token (a KEK label of its own per test), the environment they run in, and a search for
key material in whatever a test captured."""

from __future__ import annotations

import base64
import contextlib
import io
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from authmodels import config
from authmodels.cli import main
from authmodels.security.keys import forget_loaded_keys
from authmodels.testing.softhsm import SoftHsm


@dataclass
class Provider:
    """A configured provider: its environment (also set in ``os.environ`` for the test)."""

    environ: dict[str, str]
    store: Path
    monkeypatch: pytest.MonkeyPatch

    def set(self, name: str, value: str) -> None:
        """Change a variable of the provider's environment (and ``os.environ``)."""
        self.environ[name] = value
        self.monkeypatch.setenv(name, value)


@pytest.fixture(autouse=True)
def _unwrapped_keys_forgotten() -> Iterator[None]:
    """Each test unwraps its own keys, and leaves none in the process's cache."""
    forget_loaded_keys()
    yield
    forget_loaded_keys()


def _configure(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]) -> None:
    for name in config.RING_VARS:  # the plugin's env rings: refused beside another provider
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def file_provider(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Provider:
    """The ``file`` provider: a KEK file (not created yet) and a store in ``tmp_path``."""
    environ = {
        config.KEY_PROVIDER_VAR: f"file:{tmp_path / 'kek'}",
        config.WRAPPED_KEYS_VAR: str(tmp_path / "wrapped-keys.json"),
    }
    _configure(monkeypatch, environ)
    return Provider(environ, tmp_path / "wrapped-keys.json", monkeypatch)


@pytest.fixture
def kek_label() -> str:
    """A KEK label no other test of the run uses (the token is the run's)."""
    return f"kek-{secrets.token_hex(4)}"


@pytest.fixture
def hsm_provider(
    authmodels_softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kek_label: str
) -> Provider:
    """The ``pkcs11`` provider on the run's SoftHSM2 token: KEK ``kek_label`` (not created yet),
    the PIN in ``AUTHMODELS_PKCS11_PIN``, a store in ``tmp_path``."""
    environ = {
        config.KEY_PROVIDER_VAR: authmodels_softhsm.uri(kek_label),
        config.WRAPPED_KEYS_VAR: str(tmp_path / "wrapped-keys.json"),
        config.PKCS11_PIN_VAR: authmodels_softhsm.pin,
    }
    _configure(monkeypatch, environ)
    return Provider(environ, tmp_path / "wrapped-keys.json", monkeypatch)


class Cli:
    """Runs ``authmodels`` in this process and keeps everything it printed."""

    def __init__(self) -> None:
        self.printed: list[str] = []

    def __call__(self, *argv: str) -> tuple[int, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(list(argv))
        self.printed += [out.getvalue(), err.getvalue()]
        return status, out.getvalue() + err.getvalue()

    def ok(self, *argv: str) -> str:
        """The output of a command that must succeed."""
        status, output = self(*argv)
        assert status == 0, output
        return output


@pytest.fixture
def cli() -> Cli:
    return Cli()


def encodings(secret: bytes) -> list[str]:
    """The forms a key could leak in: raw, hex (both cases), base64 (standard, URL-safe, with
    and without padding), and a 16-byte prefix of each."""
    forms = [
        secret.decode("latin-1"),
        secret.hex(),
        secret.hex().upper(),
        base64.b64encode(secret).decode(),
        base64.urlsafe_b64encode(secret).decode(),
        base64.b64encode(secret).decode().rstrip("="),
        base64.urlsafe_b64encode(secret).decode().rstrip("="),
        repr(secret),
    ]
    prefix = secret[:16]
    forms += [prefix.hex(), base64.b64encode(prefix).decode()[:20], repr(prefix)[2:-1]]
    return forms


def assert_no_key_material(secrets_: Iterable[bytes], texts: Iterable[str]) -> int:
    """No text holds any of ``secrets_`` in any of its :func:`encodings`; returns how many
    characters were searched (so that a test can show it searched something)."""
    haystack = "\n".join(texts)
    for secret in secrets_:
        for form in encodings(secret):
            assert form not in haystack, f"key material ({len(secret)}-byte key) was found"
    return len(haystack)
