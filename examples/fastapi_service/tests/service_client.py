"""What the service's tests do as its clients: sign up and in, make DPoP proofs."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from authmodels.security.dpop import sign_proof

BASE = "https://authservice.test"
PASSWORD = "a long passphrase"


class DPoPKey:
    """A client's DPoP key and the server nonce it was last given."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.nonce: str | None = None

    def proof(self, method: str, path: str, *, access_token: str | None = None) -> str:
        return sign_proof(
            self.key, htm=method, htu=BASE + path, access_token=access_token, nonce=self.nonce
        )

    def remember(self, response: httpx.Response) -> None:
        self.nonce = response.headers.get("DPoP-Nonce", self.nonce)


async def sign_up_and_in(http: httpx.AsyncClient, email: str, **extra: Any) -> dict[str, Any]:
    """Sign up and sign in; the token response."""
    assert (
        await http.post("/signup", json={"email": email, "password": PASSWORD})
    ).status_code == 202
    response = await http.post("/login", json={"email": email, "password": PASSWORD}, **extra)
    assert response.status_code == 200, response.text
    return dict(response.json())
