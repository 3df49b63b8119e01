"""The normal form of user-typed codes, shared by the migrations and the services.

An RFC 8628 user code is read off a screen and typed by a person, so the comparison ignores what
a person may add or change: letter case, the dash the code is displayed with, spaces, and
full-width forms of the same characters (RFC 8628 section 6.1). Codes are stored only as keyed
digests of this normal form, so the normalisation must be applied identically when a code is
stored and when it is looked up::

    hasher.digest(normalize_user_code(code))        # to store
    hasher.candidates(normalize_user_code(typed))   # to look up: user_code_hash = ANY(...)
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["normalize_user_code"]

_IGNORED = re.compile(r"[\s\-\u2010-\u2015\u2212]+")


def normalize_user_code(code: str) -> str:
    """The form in which a user code is hashed: NFKC, uppercase, no dashes or whitespace.

    ``"bcdf-ghjk"``, ``"BCDF GHJK"`` and the same code typed in full-width characters all give
    ``"BCDFGHJK"``.

    Args:
        code: the code as displayed or as typed.
    """
    return _IGNORED.sub("", unicodedata.normalize("NFKC", code)).upper()
