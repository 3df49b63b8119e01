"""DPoP (RFC 9449): published examples, real proofs from keys made here, one typed error per check.

Malformed proofs that joserfc would refuse to produce (alg none, HS256) are assembled by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey, RSAKey

from authmodels.errors import (
    DPoPAccessTokenMismatch,
    DPoPAlgorithmError,
    DPoPError,
    DPoPInvalidTypeError,
    DPoPKeyError,
    DPoPMalformedError,
    DPoPMethodMismatch,
    DPoPNonceError,
    DPoPSignatureError,
    DPoPTimeError,
    DPoPUrlMismatch,
)
from authmodels.security import jwk_thumbprint, normalize_htu, sign_proof, verify_proof
from authmodels.security.dpop import access_token_hash

# RFC 9449 Figure 2 (= Figure 5): a proof for POST https://server.example.com/token at iat
# 1562262616, signed with the EC key of Figure 4. Section 6.1 / Figure 8 give that key's jkt.
RFC9449_FIGURE_2 = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj"
    "oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia"
    "WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg"
    "4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"
)
# RFC 9449 Figure 13: GET https://resource.example.org/protectedresource with an access token.
RFC9449_FIGURE_13 = (
    "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik"
    "VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR"
    "nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE"
    "QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIj"
    "oiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0Z"
    "WRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNF"
    "c05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9.2oW9RP35yRqzhrtNP86L-Ey71E"
    "OptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA"
)
RFC9449_ACCESS_TOKEN = "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
RFC9449_EC_JWK = {
    "kty": "EC",
    "x": "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
    "y": "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA",
    "crv": "P-256",
}
RFC9449_JKT = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"

# RFC 7638 section 3.1
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
    "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2"
    "QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6W"
    "eZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}

URL = "https://api.example.com/v1/things"
NOW = datetime(2030, 6, 1, 12, 0, 0, tzinfo=UTC)
EC_KEY = ECKey.generate_key("P-256")
RSA_KEY = RSAKey.generate_key(2048)
ED_KEY = OKPKey.generate_key("Ed25519")


def _b64(data: bytes | dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode() if isinstance(data, dict) else data
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"jti": "j1", "htm": "GET", "htu": URL, "iat": int(NOW.timestamp())}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(header: dict[str, Any], claims: dict[str, Any], key: Any = EC_KEY) -> str:
    """A proof with an arbitrary header, really signed by joserfc."""
    return jws.serialize_compact(header, json.dumps(claims), key, algorithms=[header["alg"]])


def _header(key: Any = EC_KEY, **overrides: Any) -> dict[str, Any]:
    header: dict[str, Any] = {"typ": "dpop+jwt", "alg": "ES256", "jwk": key.as_dict(private=False)}
    header.update(overrides)
    return {k: v for k, v in header.items() if v is not None}


def _verify(proof: str, **kwargs: Any) -> Any:
    kwargs.setdefault("htm", "GET")
    kwargs.setdefault("htu", URL)
    kwargs.setdefault("now", NOW)
    return verify_proof(proof, **kwargs)


# --- published vectors ---------------------------------------------------------------------------


def test_rfc7638_thumbprint() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rfc9449_example_key_thumbprint() -> None:
    assert jwk_thumbprint(RFC9449_EC_JWK) == RFC9449_JKT


def test_rfc9449_figure_2_proof_verifies() -> None:
    proof = verify_proof(
        RFC9449_FIGURE_2,
        htm="POST",
        htu="https://server.example.com/token",
        now=datetime.fromtimestamp(1562262616, UTC),
    )
    assert proof.jkt == RFC9449_JKT
    assert (proof.jti, proof.htm, proof.htu) == (
        "-BwC3ESc6acc2lTc",
        "POST",
        "https://server.example.com/token",
    )
    assert proof.iat == datetime.fromtimestamp(1562262616, UTC)
    assert proof.nonce is None
    with pytest.raises(DPoPTimeError):
        verify_proof(
            RFC9449_FIGURE_2,
            htm="POST",
            htu="https://server.example.com/token",
            now=datetime.fromtimestamp(1562262616 + 301, UTC),
        )


def test_rfc9449_figure_13_proof_with_access_token() -> None:
    assert access_token_hash(RFC9449_ACCESS_TOKEN) == "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
    kwargs: dict[str, Any] = {
        "htm": "GET",
        "htu": "https://resource.example.org/protectedresource?page=2",
        "now": datetime.fromtimestamp(1562262620, UTC),
    }
    proof = verify_proof(RFC9449_FIGURE_13, access_token=RFC9449_ACCESS_TOKEN, **kwargs)
    assert proof.jkt == RFC9449_JKT
    with pytest.raises(DPoPAccessTokenMismatch):
        verify_proof(RFC9449_FIGURE_13, access_token=RFC9449_ACCESS_TOKEN + "x", **kwargs)


# --- real proofs from keys generated here --------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "alg"),
    [(EC_KEY, "ES256"), (RSA_KEY, "RS256"), (RSA_KEY, "PS256"), (ED_KEY, "EdDSA")],
)
def test_real_proofs_verify_with_the_right_jkt(key: Any, alg: str) -> None:
    proof = sign_proof(key, htm="GET", htu=URL + "?q=1#frag", iat=NOW, alg=alg)
    header = json.loads(base64.urlsafe_b64decode(proof.split(".")[0] + "=="))
    assert header["alg"] == alg and header["typ"] == "dpop+jwt"
    result = _verify(proof)
    assert result.jkt == key.thumbprint() == jwk_thumbprint(key.as_dict(private=False))
    assert result.htu == URL  # sign_proof drops query and fragment


def test_cryptography_keys_and_jwk_dicts_sign() -> None:
    for key in (
        ec.generate_private_key(ec.SECP384R1()),
        ed25519.Ed25519PrivateKey.generate(),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    ):
        assert _verify(sign_proof(key, htm="GET", htu=URL, iat=NOW)).jwk
    jwk = EC_KEY.as_dict(private=True)
    assert _verify(sign_proof(jwk, htm="GET", htu=URL, iat=NOW)).jkt == EC_KEY.thumbprint()
    with pytest.raises(DPoPKeyError, match="private"):
        sign_proof(EC_KEY.as_dict(private=False), htm="GET", htu=URL)


def test_access_token_and_nonce_round_trip() -> None:
    proof = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW, access_token="at-1", nonce="n-1")
    result = _verify(proof, access_token="at-1", nonce="n-1")
    assert result.nonce == "n-1"


# --- one typed error per check -------------------------------------------------------------------


@pytest.mark.parametrize(
    "proof",
    [
        "",
        "abc",
        "a.b",
        "a.b.c.d",
        ".eyJ9.sig",
        "!!!.eyJ9.sig",
        f"{_b64(b'not json')}.{_b64({})}.sig",
        f"{_b64(b'[1]')}.{_b64({})}.sig",
        f"{_b64({'typ': 'dpop+jwt'})}.{_b64(b'[]')}.sig",
        _b64(b'{"a":1,"a":2}') + "." + _b64({}) + ".sig",  # duplicate member
        f"{_b64({'typ': 'dpop+jwt'})}.{_b64({})}.s!g",
        "x" * 9000,
    ],
)
def test_malformed(proof: str) -> None:
    with pytest.raises(DPoPMalformedError):
        _verify(proof)


def test_critical_extension_is_malformed() -> None:
    header = _header(b64=False, crit=["b64"])
    proof = f"{_b64(header)}.{_b64(_claims())}.c2ln"
    with pytest.raises(DPoPMalformedError, match="crit"):
        _verify(proof)


def test_oversized_or_mistyped_header_members_are_malformed() -> None:
    padded = f"{_b64(_header(x5u='https://k.example/' + 'a' * 3500))}.{_b64(_claims())}.c2ln"
    with pytest.raises(DPoPMalformedError, match="well-formed"):
        _verify(padded)
    mistyped = f"{_b64(_header(kid=5))}.{_b64(_claims())}.c2ln"
    with pytest.raises(DPoPMalformedError, match="well-formed"):
        _verify(mistyped)


@pytest.mark.parametrize("typ", ["jwt", "JWT", "DPoP+JWT", None])
def test_wrong_typ(typ: str | None) -> None:
    proof = _signed(_header(typ=typ), _claims())  # typ=None: no typ header at all
    with pytest.raises(DPoPInvalidTypeError):
        _verify(proof)


def test_alg_none() -> None:
    header = _header(alg="none")
    proof = f"{_b64(header)}.{_b64(_claims())}."
    with pytest.raises(DPoPAlgorithmError, match="asymmetric"):
        _verify(proof)


def test_alg_hs256() -> None:
    header = _header(alg="HS256")
    signing_input = f"{_b64(header)}.{_b64(_claims())}"
    secret = b"k" * 32
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    proof = f"{signing_input}.{_b64(signature)}"
    with pytest.raises(DPoPAlgorithmError, match="asymmetric"):
        _verify(proof)


def test_unsupported_or_not_accepted_alg() -> None:
    proof = f"{_b64(_header(alg='ES256K'))}.{_b64(_claims())}.c2ln"
    with pytest.raises(DPoPAlgorithmError, match="not accepted"):
        _verify(proof)
    good = sign_proof(RSA_KEY, htm="GET", htu=URL, iat=NOW, alg="RS256")
    with pytest.raises(DPoPAlgorithmError, match="not accepted"):
        _verify(good, algorithms={"ES256", "PS256"})
    with pytest.raises(ValueError, match="unsupported"):
        _verify(good, algorithms={"HS256"})


def test_private_key_in_jwk_header() -> None:
    proof = _signed(_header(jwk=EC_KEY.as_dict(private=True)), _claims())
    with pytest.raises(DPoPKeyError, match="private key material"):
        _verify(proof)


def test_missing_or_unfit_jwk() -> None:
    with pytest.raises(DPoPKeyError, match="no 'jwk'"):
        _verify(_signed(_header(jwk=None), _claims()))
    with pytest.raises(DPoPKeyError, match="needs an EC key on P-256"):
        _verify(_signed(_header(jwk=RSA_KEY.as_dict(private=False)), _claims()))
    with pytest.raises(DPoPKeyError, match="key type"):
        _verify(_signed(_header(jwk={"kty": "oct"}), _claims()))
    with pytest.warns(SecurityWarning):
        small = RSAKey.import_key(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505
    with pytest.raises(DPoPKeyError, match="1024 bits"):
        _verify(sign_proof(small, htm="GET", htu=URL, iat=NOW))
    off_curve = {**RFC9449_EC_JWK, "y": RFC9449_EC_JWK["x"]}
    with pytest.raises(DPoPKeyError, match="not a valid EC public key"):
        _verify(_signed(_header(jwk=off_curve), _claims()))


def test_bad_signature() -> None:
    proof = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW)
    header, payload, signature = proof.split(".")
    other = sign_proof(ECKey.generate_key("P-256"), htm="GET", htu=URL, iat=NOW)
    for forged in (
        f"{header}.{payload}.{other.split('.')[2]}",  # someone else's signature
        f"{header}.{_b64(_claims(htm='POST'))}.{signature}",  # altered claims
        f"{header}.{payload}.",  # no signature at all
    ):
        with pytest.raises(DPoPSignatureError):
            _verify(forged)
    # A proof signed by one key but carrying another key's jwk.
    swapped = _signed(_header(jwk=ECKey.generate_key("P-256").as_dict(private=False)), _claims())
    with pytest.raises(DPoPSignatureError):
        _verify(swapped)


@pytest.mark.parametrize("missing", ["jti", "htm", "htu", "iat"])
def test_missing_claims(missing: str) -> None:
    proof = _signed(_header(), _claims(**{missing: None}))
    with pytest.raises(DPoPMalformedError, match=missing):
        _verify(proof)


def test_non_numeric_iat() -> None:
    with pytest.raises(DPoPMalformedError, match="iat"):
        _verify(_signed(_header(), _claims(iat="1562262616")))


def test_wrong_htm() -> None:
    with pytest.raises(DPoPMethodMismatch):
        _verify(sign_proof(EC_KEY, htm="POST", htu=URL, iat=NOW))
    with pytest.raises(DPoPMethodMismatch):
        _verify(sign_proof(EC_KEY, htm="get", htu=URL, iat=NOW))


@pytest.mark.parametrize(
    "proof_htu",
    [
        "https://api.example.com/v1/other",
        "https://api.example.com/v1/things/",
        "http://api.example.com/v1/things",
        "https://evil.example.com/v1/things",
        "https://api.example.com:8443/v1/things",
        "not a url",
    ],
)
def test_wrong_htu(proof_htu: str) -> None:
    with pytest.raises(DPoPUrlMismatch):
        _verify(_signed(_header(), _claims(htu=proof_htu)))


@pytest.mark.parametrize(
    "proof_htu",
    [
        "https://API.Example.COM/v1/things",
        "HTTPS://api.example.com:443/v1/things?x=1#y",
        "https://api.example.com/v1/./x/../things",
        "https://api.example.com/v1/%74hings",
    ],
)
def test_equivalent_htu_accepted(proof_htu: str) -> None:
    assert _verify(_signed(_header(), _claims(htu=proof_htu))).htu == proof_htu


def test_normalize_htu() -> None:
    assert normalize_htu("HTTP://Example.com") == "http://example.com/"
    assert normalize_htu("http://example.com:80/a?b#c") == "http://example.com/a"
    assert normalize_htu("https://[2001:DB8::1]:8443/%7euser/%2f") == (
        "https://[2001:db8::1]:8443/~user/%2F"
    )
    with pytest.raises(ValueError):
        normalize_htu("ftp://example.com/")
    with pytest.raises(ValueError):
        normalize_htu("https://user@example.com/")


def test_stale_and_future_iat() -> None:
    stale = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW - timedelta(seconds=301))
    with pytest.raises(DPoPTimeError, match="ago"):
        _verify(stale)
    assert _verify(stale, max_age=timedelta(seconds=600)).jti
    future = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW + timedelta(seconds=31))
    with pytest.raises(DPoPTimeError, match="future"):
        _verify(future)
    assert _verify(future, leeway=timedelta(seconds=60)).jti
    edge = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW + timedelta(seconds=30))
    assert _verify(edge).jti


def test_ath_wrong_or_missing() -> None:
    with pytest.raises(DPoPAccessTokenMismatch, match="not the hash"):
        _verify(sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW, access_token="a"), access_token="b")
    with pytest.raises(DPoPAccessTokenMismatch, match="no ath"):
        _verify(sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW), access_token="b")


def test_nonce_missing_or_wrong() -> None:
    with pytest.raises(DPoPNonceError, match="has none"):
        _verify(sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW), nonce="n-1")
    with pytest.raises(DPoPNonceError, match="not the one"):
        _verify(sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW, nonce="n-0"), nonce="n-1")


def test_errors_are_distinct_classes_and_share_a_base() -> None:
    classes = {
        DPoPMalformedError,
        DPoPInvalidTypeError,
        DPoPAlgorithmError,
        DPoPKeyError,
        DPoPSignatureError,
        DPoPMethodMismatch,
        DPoPUrlMismatch,
        DPoPTimeError,
        DPoPAccessTokenMismatch,
        DPoPNonceError,
    }
    assert len(classes) == 10 and all(issubclass(c, DPoPError) for c in classes)


def test_thumbprint_errors_and_member_selection() -> None:
    with pytest.raises(DPoPKeyError):
        jwk_thumbprint({"kty": "oct", "k": "AAAA"})
    with pytest.raises(DPoPKeyError, match="'y'"):
        jwk_thumbprint({"kty": "EC", "crv": "P-256", "x": "AAAA"})
    okp = ED_KEY.as_dict(private=True)
    assert jwk_thumbprint(okp) == jwk_thumbprint({"crv": okp["crv"], "kty": "OKP", "x": okp["x"]})


def test_naive_now_is_refused() -> None:
    proof = sign_proof(EC_KEY, htm="GET", htu=URL, iat=NOW)
    with pytest.raises(ValueError, match="timezone"):
        _verify(proof, now=NOW.replace(tzinfo=None))
