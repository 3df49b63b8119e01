"""A SoftHSM2 token for tests of the ``pkcs11`` key provider (Debian package ``softhsm2``).

:func:`start_softhsm` initialises a fresh token in a folder of its own (its own
``softhsm2.conf`` and token directory), with a random user PIN. The plugin's
``authmodels_softhsm`` fixture makes one per test run and points ``SOFTHSM2_CONF`` at it; a test
that asks for it fails, never skips, when SoftHSM2 is not installed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["MODULE_PATHS", "SoftHsm", "SoftHsmUnavailable", "start_softhsm"]

#: Where distributions install SoftHSM2's PKCS#11 module (``SOFTHSM2_MODULE`` wins).
MODULE_PATHS = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/opt/homebrew/lib/softhsm/libsofthsm2.so",
)


class SoftHsmUnavailable(RuntimeError):
    """SoftHSM2 is not installed, or its token cannot be initialised (the message says which)."""


@dataclass(frozen=True)
class SoftHsm:
    """An initialised SoftHSM2 token.

    Attributes:
        conf: its ``softhsm2.conf`` (``SOFTHSM2_CONF`` must name it before the module is loaded).
        module: the PKCS#11 module.
        token: the token's label.
        pin: the user PIN.
    """

    conf: Path
    module: Path
    token: str
    pin: str = field(repr=False)

    def uri(self, kek: str, **query: str) -> str:
        """The provider URI of the KEK labelled ``kek`` in this token."""
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        return f"pkcs11:token={self.token};object={kek}?module-path={self.module}{extra}"


def _module() -> Path:
    named = os.environ.get("SOFTHSM2_MODULE")
    for candidate in ([named] if named else []) + list(MODULE_PATHS):
        if Path(candidate).is_file():
            return Path(candidate)
    raise SoftHsmUnavailable(
        "SoftHSM2's PKCS#11 module is not installed (apt-get install softhsm2; or set "
        "SOFTHSM2_MODULE to libsofthsm2.so)"
    )


def start_softhsm(folder: Path, *, label: str = "authmodels") -> SoftHsm:
    """Initialise a fresh SoftHSM2 token whose files live in ``folder``.

    Args:
        folder: where its configuration and token files go.
        label: the token's label.

    Raises:
        SoftHsmUnavailable: ``softhsm2-util`` or the module is missing, or initialisation fails.
    """
    util = shutil.which("softhsm2-util")
    if util is None:
        raise SoftHsmUnavailable("softhsm2-util is not on PATH (apt-get install softhsm2)")
    module = _module()
    tokens = folder / "tokens"
    tokens.mkdir(parents=True, exist_ok=True)
    conf = folder / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n"
    )
    pin = secrets.token_hex(8)
    result = subprocess.run(  # noqa: S603 (softhsm2-util found on PATH, fixed arguments)
        [util, "--init-token", "--free", "--label", label, "--pin", pin,
         "--so-pin", secrets.token_hex(8)],
        env={**os.environ, "SOFTHSM2_CONF": str(conf)},
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise SoftHsmUnavailable(f"softhsm2-util --init-token failed: {result.stderr.strip()}")
    return SoftHsm(conf=conf, module=module, token=label, pin=pin)
