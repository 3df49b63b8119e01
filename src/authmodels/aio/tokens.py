"""The async twin of :mod:`authmodels.services.tokens` (see :mod:`authmodels.aio`)."""

from __future__ import annotations

from authmodels.aio._mirror import mirror
from authmodels.services import tokens as _sync
from authmodels.services.tokens import IssuedAccessToken, IssuedTokens, token_type

__all__ = [
    "IssuedAccessToken",
    "IssuedTokens",
    "check_dpop_proof",
    "issue_access_token",
    "revoke_access_token",
    "token_type",
    "validate_access_token",
]

check_dpop_proof = mirror(_sync.check_dpop_proof)
issue_access_token = mirror(_sync.issue_access_token)
revoke_access_token = mirror(_sync.revoke_access_token)
validate_access_token = mirror(_sync.validate_access_token)
