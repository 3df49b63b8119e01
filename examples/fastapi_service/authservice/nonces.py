"""Server-issued DPoP nonces (RFC 9449 section 8): stateless, keyed, short-lived.

A nonce is ``<window>.<MAC of the window>``; one is accepted during its window and the next, so
each lives between one and two lifetimes. A proof must carry one (a proof made in advance
cannot be used later); one without, or with an old one, is answered ``use_dpop_nonce`` with a
fresh nonce in the ``DPoP-Nonce`` header, and the client signs a new proof with it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta


class Nonces:
    """Make and recognise the server's DPoP nonces.

    Args:
        key: the MAC key.
        lifetime: the length of a window.
    """

    def __init__(self, key: bytes, lifetime: timedelta) -> None:
        self._key = key
        self._step = max(1, int(lifetime.total_seconds()))

    def current(self) -> str:
        """The nonce to hand out now."""
        return self._make(int(time.time()) // self._step)

    def expected_for(self, proof: str) -> str:
        """The nonce ``proof`` must carry: its own when it is one of ours and still accepted,
        else the current one (so that the check refuses it with ``use_dpop_nonce``).

        The proof's ``nonce`` claim is read unverified here; ``tokens.check_dpop_proof`` then
        verifies the signature and compares the claim with what this returns.
        """
        claimed = _unverified_nonce(proof)
        if claimed is not None:
            window, _, _ = claimed.partition(".")
            now = int(time.time()) // self._step
            recent = window.isdigit() and int(window) in (now, now - 1)
            if recent and hmac.compare_digest(claimed, self._make(int(window))):
                return claimed
        return self.current()

    def _make(self, window: int) -> str:
        mac = hmac.new(self._key, str(window).encode(), hashlib.sha256).digest()
        return f"{window}.{base64.urlsafe_b64encode(mac[:16]).rstrip(b'=').decode()}"


def _unverified_nonce(proof: str) -> str | None:
    parts = proof.split(".")
    if len(parts) != 3 or len(proof) > 8192:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except ValueError:
        return None
    nonce = claims.get("nonce") if isinstance(claims, dict) else None
    return nonce if isinstance(nonce, str) and len(nonce) <= 100 else None
