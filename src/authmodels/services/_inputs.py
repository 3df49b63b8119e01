"""The checks the flows run on their arguments before any query: one validator per kind of input.

A value the database would refuse must be refused here first, with a typed error naming the
argument, so that no driver error (``DataError``, ``IntegrityError``, ``UnicodeEncodeError``...)
reaches a caller and nothing is half-written:

- PostgreSQL ``text`` cannot hold NUL, and a string with an unpaired surrogate cannot be encoded
  to UTF-8 at all: :func:`text` refuses both, with the length bounds of the column's CHECK.
  Lengths are counted in characters (code points), as ``char_length`` counts them.
- A format that a CHECK constraint enforces is checked with the *same* pattern: the model module
  holds it (``PURPOSE_PATTERN``...) and writes it into its ``CheckConstraint`` as
  ``'^<pattern>$'``; here it is matched whole (:func:`re.fullmatch`, not ``^...$``, whose
  ``$`` would let a trailing newline through that PostgreSQL's refuses).
- ``jsonb`` refuses ``\\u0000`` and unpaired surrogates anywhere in a document, and JSON has no
  NaN: :func:`json_object` serialises strictly and walks every key and value.

Every flow imports this module, and nothing else for its plumbing: a user given as a
:class:`~authmodels.models.User` or as its id becomes an id here (:func:`user_id_of`), so no flow
depends on another flow's module for it.

Presented credentials (tokens, codes, keys, a login e-mail) are not "invalid input" to their
callers but credentials that do not match: :func:`presented` raises the flow's own refusal
(:class:`~authmodels.errors.InvalidTokenError` by default) so the caller answers them as it
answers any wrong credential. Everything else raises
:class:`~authmodels.errors.InvalidInputError`.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from authmodels.email_identity import MAX_EMAIL_LENGTH, normalize_email
from authmodels.errors import AuthModelsError, InvalidInputError, InvalidTokenError
from authmodels.models.dpop import MAX_JKT_LENGTH
from authmodels.models.users import EMAIL_PATTERN, User
from authmodels.security.privacy import normalize_ip

#: Longest token, code or key accepted for a lookup (a ``new_token`` is 43 characters).
MAX_PRESENTED_LENGTH = 512
#: A JWK thumbprint as the flows store it in ``dpop_jkt`` (RFC 7638: base64url, 43 characters
#: for SHA-256; ``auth.dpop_jtis`` bounds it at 128).
JKT_PATTERN = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_JKT_LENGTH}}}")
#: Longest ``User-Agent`` hashed (web servers commonly cap a header line at 8 KiB).
MAX_USER_AGENT_LENGTH = 8192
#: Longest OAuth ``client_id`` stored with a token or a device request.
MAX_CLIENT_ID_LENGTH = 255
#: Longest space-separated ``scope`` stored with a token or a device request.
MAX_SCOPE_LENGTH = 2000


def clean_text_problem(value: str) -> str | None:
    """Why PostgreSQL text cannot hold ``value`` (a NUL, an unpaired surrogate), or None."""
    if "\x00" in value:
        return "contains a NUL character"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired surrogate (not valid Unicode text)"
    return None


def text(
    value: object,
    field: str,
    *,
    max_length: int | None = None,
    min_length: int = 1,
    pattern: re.Pattern[str] | None = None,
    form: str | None = None,
) -> str:
    """``value`` if it is text PostgreSQL stores as given and within the bounds.

    Args:
        value: the argument.
        field: its name, for the message.
        max_length: most characters accepted (a column's CHECK, or the documented limit); None
            when ``pattern`` bounds the length itself.
        min_length: fewest characters accepted (1: not empty; with ``max_length``).
        pattern: the whole value must match it (the pattern of the column's CHECK).
        form: how the accepted form is described in the message (with ``pattern``).

    Raises:
        InvalidInputError: not a ``str``, too short or long, NUL or unpaired surrogate, or
            not of the pattern's form.
    """
    if not isinstance(value, str):
        raise InvalidInputError(
            f"{field} must be a string, not {type(value).__name__}", field=field
        )
    if max_length is not None and not min_length <= len(value) <= max_length:
        bounds = f"at most {max_length}" if min_length <= 0 else f"{min_length} to {max_length}"
        raise InvalidInputError(
            f"{field} must be {bounds} characters long, not {len(value)}", field=field
        )
    problem = clean_text_problem(value)
    if problem is not None:
        raise InvalidInputError(f"{field} {problem}", field=field)
    if pattern is not None and pattern.fullmatch(value) is None:
        raise InvalidInputError(
            f"{field} must be {form or f'of the form {pattern.pattern}'}: {value[:80]!r}",
            field=field,
        )
    return value


def optional_text(value: object, field: str, **bounds: Any) -> str | None:
    """None, or ``value`` checked as :func:`text` (same keyword arguments)."""
    return None if value is None else text(value, field, **bounds)


def texts(
    values: object, field: str, *, max_items: int, max_length: int, **bounds: Any
) -> list[str]:
    """The strings of ``values`` (any iterable but a single string), each checked as
    :func:`text`.

    Raises:
        InvalidInputError: not an iterable of strings, more than ``max_items`` of them, or one
            of them refused by :func:`text`.
    """
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise InvalidInputError(
            f"{field} must be a list of strings, not {type(values).__name__}", field=field
        )
    items = list(values)
    if len(items) > max_items:
        raise InvalidInputError(
            f"{field} has {len(items)} items; at most {max_items} are accepted", field=field
        )
    return [
        text(item, f"{field}[{i}]", max_length=max_length, **bounds) for i, item in enumerate(items)
    ]


def jkt(value: object, field: str = "dpop_jkt") -> str | None:
    """None, or ``value`` if it has the form of a JWK thumbprint (``DPoPProof.jkt``).

    Raises:
        InvalidInputError: otherwise.
    """
    return optional_text(
        value,
        field,
        max_length=MAX_JKT_LENGTH,
        pattern=JKT_PATTERN,
        form="a JWK thumbprint (RFC 7638, base64url): pass the verified proof's jkt",
    )


def ip_address(value: object) -> None:
    """Refuse, before any query, a client address that is not one (None is accepted).

    Raises:
        InvalidIPAddressError: not an IPv4 or IPv6 address (text or an :mod:`ipaddress` object).
    """
    if value is not None:
        normalize_ip(value)  # type: ignore[arg-type]  # it refuses every other type itself


def user_agent(value: object) -> str | None:
    """None, or a ``User-Agent`` value that can be hashed (any text up to 8 KiB of characters).

    Raises:
        InvalidInputError: not text, too long, or not valid Unicode.
    """
    return optional_text(value, "user_agent", min_length=0, max_length=MAX_USER_AGENT_LENGTH)


def presented(
    value: object,
    what: str,
    *,
    error: type[AuthModelsError] = InvalidTokenError,
    max_length: int = MAX_PRESENTED_LENGTH,
    hint: str = "",
) -> str:
    """``value`` if it can be a credential at all (a token, a code, a key); otherwise the flow's
    refusal, before any query runs.

    Args:
        value: the credential as presented.
        what: its name in the message ("session token", "API key"...).
        error: the refusal to raise (the flow's "does not match" error).
        max_length: longest accepted.
        hint: appended to the message (``": sign in again"``).

    Raises:
        InvalidTokenError: (or ``error``) not a non-empty string of at most ``max_length``
            characters that PostgreSQL text can hold.
    """
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= max_length
        or clean_text_problem(value) is not None
    ):
        raise error(f"the {what} is not valid{hint}")
    return value


_EMAIL = re.compile(EMAIL_PATTERN)


def email_address(value: object, field: str = "email") -> str:
    """``value`` normalised (trimmed, lower case), if it is an address an account can have
    (the form ``ck_users_email_format`` checks, at most 320 characters).

    Raises:
        InvalidInputError: otherwise.
    """
    address = normalize_email(text(value, field, max_length=MAX_EMAIL_LENGTH))
    if _EMAIL.fullmatch(address) is None:
        raise InvalidInputError(
            f"{field} is not an e-mail address an account can have (name@example.com): "
            f"{address[:80]!r}",
            field=field,
        )
    return address


def identifier(value: object, field: str) -> uuid.UUID:
    """``value`` if it is a :class:`uuid.UUID` (a row id).

    Raises:
        InvalidInputError: anything else (a string is not parsed: pass ``uuid.UUID(s)``).
    """
    if not isinstance(value, uuid.UUID):
        raise InvalidInputError(
            f"{field} must be a uuid.UUID, not {type(value).__name__}", field=field
        )
    return value


def optional_identifier(value: object, field: str) -> uuid.UUID | None:
    """None, or ``value`` checked as :func:`identifier`."""
    return None if value is None else identifier(value, field)


def row_id(value: object, field: str, model: type) -> uuid.UUID:
    """The id of a row given as a loaded ``model`` object or as its id.

    Raises:
        InvalidInputError: neither, or an object that has no id yet (not flushed).
    """
    if isinstance(value, model):
        found = getattr(value, "id", None)
        if not isinstance(found, uuid.UUID):
            raise InvalidInputError(
                f"{field} has no id yet: add it to the session and flush it first", field=field
            )
        return found
    if isinstance(value, uuid.UUID):
        return value
    raise InvalidInputError(
        f"{field} must be a {model.__name__} or its id (uuid.UUID), not {type(value).__name__}",
        field=field,
    )


def user_id_of(user: User | uuid.UUID, field: str = "user") -> uuid.UUID:
    """The id of a user given as a :class:`~authmodels.models.User` or as its id.

    Raises:
        InvalidInputError: neither, or a :class:`User` that has no id yet (not flushed).
    """
    return row_id(user, field, User)


def integer(value: object, field: str, *, minimum: int, maximum: int) -> int:
    """``value`` if it is an ``int`` (not a ``bool``) within ``[minimum, maximum]``.

    Raises:
        InvalidInputError: otherwise.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(
            f"{field} must be an integer, not {type(value).__name__}", field=field
        )
    if not minimum <= value <= maximum:
        raise InvalidInputError(
            f"{field} must be between {minimum} and {maximum}, not {value}", field=field
        )
    return value


def duration(
    value: object, field: str, *, maximum: timedelta = timedelta(days=3650), zero: bool = False
) -> timedelta:
    """``value`` if it is a positive :class:`~datetime.timedelta` of at most ``maximum``.

    Args:
        value: the argument.
        field: its name.
        maximum: the longest accepted (ten years by default: an interval PostgreSQL and
            ``now() + interval`` always handle).
        zero: accept ``timedelta(0)`` too.

    Raises:
        InvalidInputError: not a timedelta, not positive, or longer than ``maximum``.
    """
    if not isinstance(value, timedelta):
        raise InvalidInputError(
            f"{field} must be a datetime.timedelta, not {type(value).__name__}", field=field
        )
    if not (timedelta(0) <= value if zero else timedelta(0) < value) or value > maximum:
        low = "0" if zero else "above 0"
        raise InvalidInputError(
            f"{field} must be {low} and at most {maximum}, not {value}", field=field
        )
    return value


#: Latest instant accepted by :func:`moment` (``timestamptz`` goes further; a row's times never
#: need to).
LATEST = datetime(9999, 1, 1, tzinfo=UTC)


def moment(value: object, field: str, *, future: bool = False) -> datetime:
    """``value`` if it is a timezone-aware :class:`~datetime.datetime` (in the future, when
    ``future``).

    Raises:
        InvalidInputError: not a datetime, naive, past when it must be future, or beyond
            :data:`LATEST`.
    """
    if not isinstance(value, datetime):
        raise InvalidInputError(
            f"{field} must be a datetime, not {type(value).__name__}", field=field
        )
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInputError(
            f"{field} must be timezone-aware (e.g. datetime.now(UTC)), not naive", field=field
        )
    if future and value <= datetime.now(UTC):
        raise InvalidInputError(f"{field} must be in the future, not {value}", field=field)
    if value >= LATEST:
        raise InvalidInputError(f"{field} must be before {LATEST:%Y-%m-%d}", field=field)
    return value


def optional_moment(value: object, field: str, *, future: bool = False) -> datetime | None:
    """None, or ``value`` checked as :func:`moment`."""
    return None if value is None else moment(value, field, future=future)


def blob(value: object, field: str, *, min_length: int = 1, max_length: int) -> bytes:
    """``value`` as ``bytes`` if it is bytes-like of ``min_length`` to ``max_length`` bytes.

    Raises:
        InvalidInputError: not ``bytes``/``bytearray``/``memoryview``, or the wrong length.
    """
    if not isinstance(value, bytes | bytearray | memoryview):
        raise InvalidInputError(f"{field} must be bytes, not {type(value).__name__}", field=field)
    data = bytes(value)
    if not min_length <= len(data) <= max_length:
        size = f"{min_length}" if min_length == max_length else f"{min_length} to {max_length}"
        raise InvalidInputError(f"{field} must be {size} bytes long, not {len(data)}", field=field)
    return data


#: Largest JSON document accepted by :func:`json_object`, serialised (64 KiB).
MAX_JSON_BYTES = 65536


def json_object(
    value: object,
    field: str,
    *,
    forbidden_keys: Iterable[str] = (),
    max_bytes: int = MAX_JSON_BYTES,
) -> str:
    """``value``, a JSON object (a mapping), serialised as ``jsonb`` will accept it.

    Args:
        value: the mapping.
        field: its name.
        forbidden_keys: top-level keys the column's CHECK refuses.
        max_bytes: largest accepted serialisation.

    Returns:
        The JSON text.

    Raises:
        InvalidInputError: not a mapping with string keys; a value JSON cannot represent (NaN,
            bytes, objects...); a NUL or unpaired surrogate in a key or string; a forbidden
            key; too large or too deeply nested.
    """
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f"{field} must be a JSON object (a dict), not {type(value).__name__}", field=field
        )
    forbidden = sorted(set(forbidden_keys) & {k for k in value if isinstance(k, str)})
    if forbidden:
        raise InvalidInputError(f"{field} must not contain {', '.join(forbidden)}", field=field)
    _check_json(value, field, depth=0)
    try:
        document = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise InvalidInputError(
            f"{field} is not representable as JSON: {exc}", field=field
        ) from None
    if len(document.encode("utf-8")) > max_bytes:
        raise InvalidInputError(f"{field} is larger than {max_bytes} bytes as JSON", field=field)
    return document


#: Deepest nesting :func:`json_object` accepts (``jsonb`` itself stops at a stack limit).
MAX_JSON_DEPTH = 32


def _check_json(value: object, field: str, *, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise InvalidInputError(
            f"{field} is nested more than {MAX_JSON_DEPTH} levels deep", field=field
        )
    if isinstance(value, str):
        problem = clean_text_problem(value)
        if problem is not None:
            raise InvalidInputError(f"a string in {field} {problem}", field=field)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInputError(
                    f"the keys of {field} must be strings, not {type(key).__name__}", field=field
                )
            _check_json(key, field, depth=depth + 1)
            _check_json(item, field, depth=depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_json(item, field, depth=depth + 1)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(f"{field} holds {value}, which JSON cannot represent", field=field)
    elif value is not None and not isinstance(value, bool | int | float):
        raise InvalidInputError(
            f"{field} holds a {type(value).__name__}, which JSON cannot represent", field=field
        )
