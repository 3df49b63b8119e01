"""Looking a presented token up by its keyed digest, for both digest schemes and every key.

Revision 0005 stores seed 004's legacy tokens as ``HMAC(key, sha256(raw).hexdigest())``
(``digest_scheme = 2``) and new ones as ``HMAC(key, raw)`` (``digest_scheme = 1``). A lookup
builds the candidates of both schemes under every key of the ring and finds the row in one
indexed ``token_hash = ANY(:candidates)`` query.

The scheme must match the candidate that matched. Without that check, anyone holding a copy of
the *pre-upgrade* database (which stored ``sha256(raw).hexdigest()``) could present the hex
string itself as a token: its scheme-1 candidate ``HMAC(key, hex)`` is exactly the scheme-2
digest stored for the real token. Before the upgrade that string was worthless (the server
hashed it again); the condition :func:`scheme_matches` keeps it worthless.
"""

from __future__ import annotations

import hashlib

from authmodels.errors import InvalidTokenError
from authmodels.models.tokens import DIGEST_SCHEME_LEGACY_SHA256_HEX, DIGEST_SCHEME_RAW
from authmodels.security.hashing import TokenHasher


def scheme_matches(table: str) -> str:
    """SQL condition: ``table``'s token is one of ``:candidates`` *and* its stored
    ``digest_scheme`` is the scheme of the candidate that matched (``:raw_candidates`` are the
    scheme-1 ones). Both bind parameters come from :func:`lookup_params`.

    Args:
        table: the table name or alias the condition is about.
    """
    return (
        f"{table}.token_hash = ANY(:candidates) AND {table}.digest_scheme = CASE WHEN "
        f"{table}.token_hash = ANY(:raw_candidates) THEN {DIGEST_SCHEME_RAW} "
        f"ELSE {DIGEST_SCHEME_LEGACY_SHA256_HEX} END"
    )


def lookup_params(hasher: TokenHasher, raw: str) -> dict[str, list[bytes]]:
    """The bind parameters of :func:`scheme_matches` for the presented token ``raw``."""
    raw_candidates = hasher.candidates(raw)
    legacy = hasher.candidates(hashlib.sha256(raw.encode("utf-8")).hexdigest())
    return {"candidates": [*raw_candidates, *legacy], "raw_candidates": raw_candidates}


#: Longest token accepted for a lookup (tokens made by ``new_token`` are 43 characters).
MAX_PRESENTED_LENGTH = 512


def check_presented(raw: object, what: str) -> str:
    """``raw`` if it can be a token at all; otherwise an error, before any query runs.

    Raises:
        InvalidTokenError: not a non-empty string of at most 512 encodable characters.
    """
    if not isinstance(raw, str) or not raw or len(raw) > MAX_PRESENTED_LENGTH:
        raise InvalidTokenError(f"the {what} is not a token this server issued")
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidTokenError(f"the {what} is not a token this server issued") from None
    return raw
