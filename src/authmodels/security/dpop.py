"""DPoP proofs (RFC 9449): verification, JWK thumbprints (RFC 7638) and a signing helper.

:func:`verify_proof` performs the checks of RFC 9449 section 4.3 in this order, each failure
raising its own :class:`~authmodels.errors.DPoPError` subclass:

1. the proof is a well-formed JWS compact serialization of a JSON object
   (:class:`~authmodels.errors.DPoPMalformedError`);
2. ``typ`` is ``dpop+jwt`` (:class:`~authmodels.errors.DPoPInvalidTypeError`);
3. ``alg`` is an asymmetric algorithm this module supports and the caller accepts
   (:class:`~authmodels.errors.DPoPAlgorithmError`);
4. ``jwk`` is present, is a public key only, and fits ``alg``
   (:class:`~authmodels.errors.DPoPKeyError`);
5. the signature verifies with that key (:class:`~authmodels.errors.DPoPSignatureError`);
6. the claims ``jti``, ``htm``, ``htu`` and ``iat`` are present
   (:class:`~authmodels.errors.DPoPMalformedError`);
7. ``htm`` is the request method (:class:`~authmodels.errors.DPoPMethodMismatch`);
8. ``htu`` is the request URI, ignoring query and fragment
   (:class:`~authmodels.errors.DPoPUrlMismatch`);
9. ``iat`` is within ``[now - max_age, now + leeway]`` (:class:`~authmodels.errors.DPoPTimeError`);
10. with an access token, ``ath`` is its hash (:class:`~authmodels.errors.DPoPAccessTokenMismatch`);
11. with a server nonce, ``nonce`` equals it (:class:`~authmodels.errors.DPoPNonceError`).

Replay detection (``jti`` seen before) and binding checks (``jkt`` against the token's
``cnf.jkt``) need storage and belong to the caller: the returned :class:`DPoPProof` carries
``jti`` and ``jkt`` for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import secrets
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeAlias
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from joserfc import jws
from joserfc.errors import (
    BadSignatureError,
    DecodeError,
    ExceededSizeError,
    InvalidHeaderValueError,
    InvalidKeyCurveError,
    InvalidKeyLengthError,
    JoseError,
    KeyParameterError,
    UnsupportedAlgorithmError,
)
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

from authmodels.errors import (
    DPoPAccessTokenMismatch,
    DPoPAlgorithmError,
    DPoPInvalidTypeError,
    DPoPKeyError,
    DPoPMalformedError,
    DPoPMethodMismatch,
    DPoPNonceError,
    DPoPSignatureError,
    DPoPTimeError,
    DPoPUrlMismatch,
)

__all__ = [
    "DPOP_TYP",
    "SUPPORTED_ALGORITHMS",
    "DPoPProof",
    "access_token_hash",
    "jwk_thumbprint",
    "normalize_htu",
    "sign_proof",
    "verify_proof",
]

#: The JOSE ``typ`` of a DPoP proof.
DPOP_TYP = "dpop+jwt"
#: The asymmetric JWS algorithms accepted for proofs.
SUPPORTED_ALGORITHMS: frozenset[str] = frozenset(
    {"ES256", "ES384", "ES512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "EdDSA"}
)
#: Longest proof accepted, in characters (a proof with a 4096-bit RSA key is about 1.6 KB).
MAX_PROOF_LENGTH = 8192
#: Smallest RSA modulus accepted, in bits.
MIN_RSA_BITS = 2048

#: Members that hold private (or symmetric) key material in a JWK (RFC 7518 section 6).
_PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
#: Required members per key type, in lexicographic order (RFC 7638 section 3.2).
_REQUIRED_MEMBERS: dict[str, tuple[str, ...]] = {
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
    "RSA": ("e", "kty", "n"),
}
#: Key type and curve each algorithm needs (None: any curve of the list, or no curve).
_ALG_KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
}
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_PCT_ENCODED = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _DPoPRegistry(JWSRegistry):
    """A joserfc registry that allows exactly the DPoP algorithms, without warnings.

    joserfc warns on every use of ``EdDSA`` (deprecated by RFC 9864 in favour of ``Ed25519``);
    RFC 9449 deployments still use ``EdDSA``, and the algorithm list is our policy, so the
    registry returns the algorithm without the warning. Headers carry a whole public key, so
    the header size limit is raised from joserfc's 512 bytes.
    """

    max_header_length = 4096
    max_payload_length = 4096

    def get_alg(self, name: str) -> Any:
        if name not in SUPPORTED_ALGORITHMS or name not in self.algorithms:
            raise UnsupportedAlgorithmError(f"Algorithm of '{name}' is not supported")
        return self.algorithms[name]


_REGISTRY = _DPoPRegistry(algorithms=sorted(SUPPORTED_ALGORITHMS), strict_check_header=False)


@dataclass(frozen=True)
class DPoPProof:
    """A verified DPoP proof.

    Attributes:
        jkt: the RFC 7638 SHA-256 thumbprint of the proof's public key (compare it with the
            ``cnf.jkt`` of a bound token; store it when binding a new token).
        jti: the proof's unique id (keep it for replay detection until ``iat + max_age``).
        htm: the HTTP method the proof was made for.
        htu: the URI the proof was made for, as written in the proof.
        iat: when the proof was made (aware, UTC).
        jwk: the public key from the header (only its required members).
        nonce: the proof's ``nonce`` claim, if any.
    """

    jkt: str
    jti: str
    htm: str
    htu: str
    iat: datetime
    jwk: dict[str, Any] = field(hash=False)
    nonce: str | None


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(segment: str) -> bytes:
    """Strict base64url without padding; raises ValueError."""
    if not _B64URL.fullmatch(segment) or len(segment) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def access_token_hash(access_token: str) -> str:
    """The ``ath`` of an access token: base64url(SHA-256(ASCII of the token)), unpadded.

    Raises:
        ValueError: the token is not ASCII (access tokens are token68 text).
    """
    return _b64url(hashlib.sha256(access_token.encode("ascii")).digest())


def _public_members(jwk: Mapping[str, Any]) -> dict[str, str]:
    """The required members of a JWK (RFC 7638), checked to be present and strings."""
    kty = jwk.get("kty")
    if not isinstance(kty, str) or kty not in _REQUIRED_MEMBERS:
        raise DPoPKeyError(f"the JWK has key type {kty!r}; supported types are EC, OKP and RSA")
    members: dict[str, str] = {}
    for name in _REQUIRED_MEMBERS[kty]:
        value = jwk.get(name)
        if not isinstance(value, str) or not value:
            raise DPoPKeyError(f"the {kty} JWK lacks its {name!r} member (or it is not a string)")
        members[name] = value
    return members


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RFC 7638 SHA-256 thumbprint of a JWK, base64url without padding.

    The hash input is the JSON object of the key type's required members in lexicographic
    order, without whitespace: ``e,kty,n`` (RSA), ``crv,kty,x,y`` (EC), ``crv,kty,x`` (OKP).
    Other members (``kid``, ``alg``, private members...) do not change the thumbprint.

    Raises:
        DPoPKeyError: the key type is not RSA, EC or OKP, or a required member is missing.
    """
    members = _public_members(jwk)
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return _b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def normalize_htu(url: str) -> str:
    """The form of an HTTP URI that DPoP compares: ``scheme://host[:port]/path``.

    Query and fragment are removed; scheme and host are lower-cased; the default port (80
    for http, 443 for https) is dropped; an empty path becomes ``/``; percent-encodings get
    upper-case hex and unreserved characters are decoded; ``.`` and ``..`` segments are
    resolved (RFC 3986 sections 6.2.2 and 6.2.3).

    Raises:
        ValueError: the value is not an absolute http(s) URI with a host and no user info.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"{url[:80]!r} is not a valid URI: {exc}") from None
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in _DEFAULT_PORTS or not host:
        raise ValueError(f"{url[:80]!r} is not an absolute http or https URI")
    if "@" in parts.netloc:
        raise ValueError(f"{url[:80]!r} carries user info, which a request URI never has")
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = _PCT_ENCODED.sub(_normalize_pct, parts.path)
    return f"{scheme}://{netloc}{_remove_dot_segments(path) or '/'}"


def _normalize_pct(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else f"%{match.group(1).upper()}"


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4 for an absolute path (one starting with ``/``)."""
    segments = path.split("/")
    out: list[str] = []
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment in (".", ".."):
            if segment == ".." and len(out) > 1:
                out.pop()
            if last:
                out.append("")
            continue
        out.append(segment)
    return "/".join(out)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate member {key!r}")
        result[key] = value
    return result


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(
            _b64url_decode(segment).decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (ValueError, UnicodeDecodeError, binascii.Error) as exc:
        raise DPoPMalformedError(
            f"the DPoP proof's {what} is not base64url-encoded JSON: {exc}"
        ) from None
    if not isinstance(value, dict):
        raise DPoPMalformedError(f"the DPoP proof's {what} is not a JSON object")
    return value


def _parse(proof: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Step 1: split and decode the compact serialization."""
    if not isinstance(proof, str):
        raise DPoPMalformedError(f"a DPoP proof is a string, not {type(proof).__name__}")
    if len(proof) > MAX_PROOF_LENGTH:
        raise DPoPMalformedError(
            f"the DPoP proof is {len(proof)} characters; the limit is {MAX_PROOF_LENGTH}"
        )
    segments = proof.split(".")
    if len(segments) != 3 or not segments[0] or not segments[1]:
        raise DPoPMalformedError(
            "the DPoP proof is not a JWS compact serialization (header, payload and signature "
            "in base64url, separated by dots)"
        )
    header = _json_object(segments[0], "header")
    claims = _json_object(segments[1], "payload")
    # An empty signature is well-formed JWS (alg "none"); step 3 refuses that algorithm.
    if segments[2] and not _B64URL.fullmatch(segments[2]):
        raise DPoPMalformedError("the DPoP proof's signature is not base64url")
    if "crit" in header or "b64" in header:
        raise DPoPMalformedError(
            "the DPoP proof uses a critical JWS extension ('crit' or 'b64'), which DPoP does "
            "not allow"
        )
    return header, claims


def _check_key(alg: str, jwk: Any) -> tuple[dict[str, str], RSAKey | ECKey | OKPKey]:
    """Step 4: the ``jwk`` header is a public key of the type ``alg`` needs."""
    if jwk is None:
        raise DPoPKeyError("the DPoP proof has no 'jwk' header: it must carry its public key")
    if not isinstance(jwk, dict):
        raise DPoPKeyError("the DPoP proof's 'jwk' header is not a JSON object")
    private = [name for name in _PRIVATE_MEMBERS if name in jwk]
    if private:
        raise DPoPKeyError(
            f"the DPoP proof's 'jwk' header contains private key material ({', '.join(private)}): "
            "a proof must carry the public key only"
        )
    members = _public_members(jwk)
    kty, curves = _ALG_KEYS[alg]
    if members["kty"] != kty or (curves is not None and members["crv"] not in curves):
        wanted = f"{kty} key" if curves is None else f"{kty} key on {' or '.join(curves)}"
        actual = members["kty"] + (f" on {members['crv']}" if "crv" in members else "")
        raise DPoPKeyError(f"alg {alg} needs an {wanted}; the proof's jwk is {actual}")
    try:
        if kty == "RSA":
            bits = int.from_bytes(_b64url_decode(members["n"]), "big").bit_length()
            if bits < MIN_RSA_BITS:
                raise DPoPKeyError(
                    f"the proof's RSA key has {bits} bits; at least {MIN_RSA_BITS} are required"
                )
            key: RSAKey | ECKey | OKPKey = RSAKey.import_key(dict(members))
        elif kty == "EC":
            key = ECKey.import_key(dict(members))
        else:
            key = OKPKey.import_key(dict(members))
    except (JoseError, ValueError, TypeError) as exc:
        raise DPoPKeyError(f"the DPoP proof's jwk is not a valid {kty} public key: {exc}") from None
    return members, key


def verify_proof(
    proof: str,
    *,
    htm: str,
    htu: str,
    now: datetime | None = None,
    max_age: timedelta = timedelta(seconds=300),
    leeway: timedelta = timedelta(seconds=30),
    access_token: str | None = None,
    nonce: str | None = None,
    algorithms: Collection[str] = SUPPORTED_ALGORITHMS,
) -> DPoPProof:
    """Verify a DPoP proof against the request it came with (RFC 9449 section 4.3).

    Args:
        proof: the value of the request's single ``DPoP`` header.
        htm: the request's HTTP method, e.g. ``"POST"`` (compared exactly).
        htu: the request's URI; query and fragment are ignored on both sides, and both are
            normalized with :func:`normalize_htu`.
        now: the current time (aware); ``datetime.now(UTC)`` when None.
        max_age: oldest accepted ``iat``, before ``now``.
        leeway: latest accepted ``iat``, after ``now`` (clock skew).
        access_token: the access token presented with the proof, if any; the proof's ``ath``
            must then be its hash.
        nonce: the nonce the server gave the client (``DPoP-Nonce``), if it requires one.
        algorithms: the algorithms accepted by local policy (a subset of
            :data:`SUPPORTED_ALGORITHMS`).

    Returns:
        The verified proof; check its ``jti`` for replay and its ``jkt`` for binding.

    Raises:
        DPoPMalformedError: not a well-formed JWS, or a required claim is missing.
        DPoPInvalidTypeError: ``typ`` is not ``dpop+jwt``.
        DPoPAlgorithmError: ``alg`` is ``none``, symmetric, unsupported or not accepted.
        DPoPKeyError: ``jwk`` missing, private, malformed or not fit for ``alg``.
        DPoPSignatureError: the signature does not verify with ``jwk``.
        DPoPMethodMismatch: ``htm`` differs.
        DPoPUrlMismatch: ``htu`` differs (or is not an http(s) URI).
        DPoPTimeError: ``iat`` is too old or in the future.
        DPoPAccessTokenMismatch: ``ath`` is missing or wrong while an access token was given.
        DPoPNonceError: ``nonce`` is missing or wrong while a nonce was given.
        ValueError: the arguments themselves are invalid (naive ``now``, bad ``htu``...).
    """
    unknown = set(algorithms) - SUPPORTED_ALGORITHMS
    if unknown:
        raise ValueError(
            f"verify_proof: unsupported algorithms {sorted(unknown)}; choose from "
            f"{sorted(SUPPORTED_ALGORITHMS)}"
        )
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("verify_proof: now must be a timezone-aware datetime")
    expected_htu = normalize_htu(htu)

    # 1. well-formed JWS compact serialization
    header, claims = _parse(proof)

    # 2. typ
    typ = header.get("typ")
    if typ != DPOP_TYP:
        raise DPoPInvalidTypeError(f"the DPoP proof's typ is {typ!r}; it must be {DPOP_TYP!r}")

    # 3. alg
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise DPoPAlgorithmError("the DPoP proof has no 'alg' header")
    if alg.lower() == "none" or alg.upper().startswith("HS"):
        raise DPoPAlgorithmError(
            f"the DPoP proof uses alg {alg!r}: DPoP requires an asymmetric signature "
            "(none and HMAC algorithms are refused)"
        )
    if alg not in SUPPORTED_ALGORITHMS or alg not in algorithms:
        raise DPoPAlgorithmError(
            f"the DPoP proof uses alg {alg!r}, which is not accepted; use one of "
            f"{', '.join(sorted(algorithms))}"
        )

    # 4. jwk: present, public, fit for alg
    members, key = _check_key(alg, header.get("jwk"))

    # 5. signature
    try:
        jws.deserialize_compact(proof, key, registry=_REGISTRY)
    except BadSignatureError:
        raise DPoPSignatureError(
            "the DPoP proof's signature does not verify with the key in its jwk header"
        ) from None
    except (KeyParameterError, InvalidKeyCurveError, InvalidKeyLengthError) as exc:
        raise DPoPKeyError(f"the DPoP proof's jwk cannot verify {alg}: {exc}") from None
    except (DecodeError, ExceededSizeError, InvalidHeaderValueError) as exc:
        raise DPoPMalformedError(f"the DPoP proof is not a well-formed JWS: {exc}") from None
    except JoseError as exc:
        raise DPoPSignatureError(f"the DPoP proof could not be verified: {exc}") from None

    # 6. required claims
    missing = [name for name in ("jti", "htm", "htu", "iat") if name not in claims]
    if missing:
        raise DPoPMalformedError(f"the DPoP proof lacks the claims {', '.join(missing)}")
    jti, proof_htm, proof_htu, iat = claims["jti"], claims["htm"], claims["htu"], claims["iat"]
    for name, value in (("jti", jti), ("htm", proof_htm), ("htu", proof_htu)):
        if not isinstance(value, str) or not value:
            raise DPoPMalformedError(f"the DPoP proof's {name} claim is not a non-empty string")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise DPoPMalformedError("the DPoP proof's iat claim is not a number of seconds")

    # 7. htm
    if proof_htm != htm:
        raise DPoPMethodMismatch(f"the DPoP proof is for method {proof_htm!r}, not {htm!r}")

    # 8. htu
    try:
        matches = normalize_htu(proof_htu) == expected_htu
    except ValueError:
        matches = False
    if not matches:
        raise DPoPUrlMismatch(
            f"the DPoP proof is for {proof_htu[:200]!r}, not {expected_htu!r} (query and "
            "fragment ignored)"
        )

    # 9. iat window
    now_ts = now.timestamp()
    if iat < now_ts - max_age.total_seconds():
        raise DPoPTimeError(
            f"the DPoP proof was made {now_ts - iat:.0f} s ago; proofs are accepted for "
            f"{max_age.total_seconds():.0f} s: make a new proof for each request"
        )
    if iat > now_ts + leeway.total_seconds():
        raise DPoPTimeError(
            f"the DPoP proof's iat is {iat - now_ts:.0f} s in the future (leeway "
            f"{leeway.total_seconds():.0f} s): check the client's clock"
        )

    # 10. ath
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str):
            raise DPoPAccessTokenMismatch(
                "the DPoP proof has no ath claim, but it came with an access token"
            )
        try:
            expected_ath = access_token_hash(access_token)
        except UnicodeEncodeError:
            raise DPoPAccessTokenMismatch("the access token is not ASCII text") from None
        if not hmac.compare_digest(ath.encode("utf-8"), expected_ath.encode("ascii")):
            raise DPoPAccessTokenMismatch(
                "the DPoP proof's ath is not the hash of the access token it came with"
            )

    # 11. nonce
    proof_nonce = claims.get("nonce")
    if nonce is not None:
        if not isinstance(proof_nonce, str):
            raise DPoPNonceError("the server requires a DPoP nonce and the proof has none")
        if not hmac.compare_digest(proof_nonce.encode("utf-8"), nonce.encode("utf-8")):
            raise DPoPNonceError("the DPoP proof's nonce is not the one the server provided")

    return DPoPProof(
        jkt=jwk_thumbprint(members),
        jti=jti,
        htm=proof_htm,
        htu=proof_htu,
        iat=datetime.fromtimestamp(iat, UTC),
        jwk=dict(members),
        nonce=proof_nonce if isinstance(proof_nonce, str) else None,
    )


_PrivateKeyInput: TypeAlias = (
    RSAKey
    | ECKey
    | OKPKey
    | Mapping[str, Any]
    | rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | ed448.Ed448PrivateKey
)


def _signing_key(private_key: _PrivateKeyInput) -> RSAKey | ECKey | OKPKey:
    key: RSAKey | ECKey | OKPKey
    try:
        if isinstance(private_key, RSAKey | ECKey | OKPKey):
            key = private_key
        elif isinstance(private_key, rsa.RSAPrivateKey):
            key = RSAKey.import_key(private_key)
        elif isinstance(private_key, ec.EllipticCurvePrivateKey):
            key = ECKey.import_key(private_key)
        elif isinstance(private_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
            key = OKPKey.import_key(private_key)
        elif isinstance(private_key, Mapping):
            kty = private_key.get("kty")
            classes: dict[str, type[RSAKey] | type[ECKey] | type[OKPKey]] = {
                "RSA": RSAKey,
                "EC": ECKey,
                "OKP": OKPKey,
            }
            if kty not in classes:
                raise DPoPKeyError(f"sign_proof: unsupported JWK key type {kty!r}")
            key = classes[kty].import_key(dict(private_key))
        else:
            raise DPoPKeyError(f"sign_proof: unsupported key object {type(private_key).__name__}")
    except (JoseError, ValueError, TypeError) as exc:
        raise DPoPKeyError(f"sign_proof: the key cannot be imported: {exc}") from None
    if not key.is_private:
        raise DPoPKeyError("sign_proof needs the private key (the JWK has no 'd' member)")
    return key


def _default_alg(key: RSAKey | ECKey | OKPKey) -> str:
    if isinstance(key, RSAKey):
        return "RS256"
    if isinstance(key, ECKey):
        curves = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}
        if key.curve_name in curves:
            return curves[key.curve_name]
        raise DPoPKeyError(f"sign_proof: EC curve {key.curve_name} is not usable for DPoP")
    if key.curve_name in ("Ed25519", "Ed448"):
        return "EdDSA"
    raise DPoPKeyError(f"sign_proof: OKP curve {key.curve_name} cannot sign")


def sign_proof(
    private_jwk_or_key: _PrivateKeyInput,
    *,
    htm: str,
    htu: str,
    iat: datetime | int | None = None,
    jti: str | None = None,
    access_token: str | None = None,
    nonce: str | None = None,
    alg: str | None = None,
) -> str:
    """Make a DPoP proof (a helper for clients and tests).

    Args:
        private_jwk_or_key: the client's private key: a private JWK (dict), a joserfc key, or a
            cryptography RSA, EC (P-256/384/521) or Ed25519/Ed448 private key.
        htm: the HTTP method of the request.
        htu: the request URI (query and fragment are removed).
        iat: the creation time; now when None.
        jti: the unique id; 128 random bits when None.
        access_token: the access token sent with the request; adds its ``ath``.
        nonce: the server's ``DPoP-Nonce``; adds the ``nonce`` claim.
        alg: the JWS algorithm; by default ES256/384/512 for EC keys by curve, RS256 for RSA,
            EdDSA for Ed25519/Ed448.

    Returns:
        The proof, in JWS compact serialization.

    Raises:
        DPoPKeyError: the key is not a usable private key.
        DPoPAlgorithmError: ``alg`` is not a supported algorithm or does not fit the key.
    """
    key = _signing_key(private_jwk_or_key)
    algorithm = alg or _default_alg(key)
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise DPoPAlgorithmError(
            f"sign_proof: alg {algorithm!r} is not one of {', '.join(sorted(SUPPORTED_ALGORITHMS))}"
        )
    public = {
        name: value
        for name, value in key.as_dict(private=False).items()
        if name in _REQUIRED_MEMBERS[key.key_type]
    }
    if isinstance(iat, datetime):
        issued = int(iat.timestamp())
    elif iat is None:
        issued = int(datetime.now(UTC).timestamp())
    else:
        issued = int(iat)
    claims: dict[str, Any] = {
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu.split("#", 1)[0].split("?", 1)[0],
        "iat": issued,
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    if nonce is not None:
        claims["nonce"] = nonce
    header = {"typ": DPOP_TYP, "alg": algorithm, "jwk": public}
    payload = json.dumps(claims, separators=(",", ":"))
    try:
        return jws.serialize_compact(header, payload, key, registry=_REGISTRY)
    except JoseError as exc:
        raise DPoPAlgorithmError(f"sign_proof: cannot sign with alg {algorithm}: {exc}") from None
