"""Security primitives: pure functions and small classes, no database access.

=========================  ==============================================================
module                     what it gives
=========================  ==============================================================
``passwords``              Argon2id password hashing (:class:`PasswordHasher`)
``keyring``                the key ring every keyed primitive below shares, the stored header
``hashing``                random tokens and their keyed digests (:class:`TokenHasher`)
``encryption``             AES-256-GCM column encryption (:class:`FieldCipher`)
``privacy``                keyed IP / user-agent hashes (:class:`PrivacyHasher`)
``dpop``                   DPoP proof verification (RFC 9449) and JWK thumbprints
``totp``                   HOTP / TOTP codes, provisioning URIs, backup codes
``e2ee``                   X25519 + HKDF + ChaCha20-Poly1305 helpers for end-to-end encryption
=========================  ==============================================================
"""

from __future__ import annotations

from authmodels.security import e2ee, totp
from authmodels.security.dpop import (
    SUPPORTED_ALGORITHMS,
    DPoPProof,
    access_token_hash,
    jwk_thumbprint,
    normalize_htu,
    sign_proof,
    verify_proof,
)
from authmodels.security.encryption import FieldCipher, aad_for
from authmodels.security.hashing import TokenHasher, mac, new_token
from authmodels.security.passwords import (
    UNUSABLE_PASSWORD,
    PasswordHasher,
    is_usable,
    make_unusable,
)
from authmodels.security.privacy import PrivacyHasher, normalize_ip

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "UNUSABLE_PASSWORD",
    "DPoPProof",
    "FieldCipher",
    "PasswordHasher",
    "PrivacyHasher",
    "TokenHasher",
    "aad_for",
    "access_token_hash",
    "e2ee",
    "is_usable",
    "jwk_thumbprint",
    "mac",
    "make_unusable",
    "new_token",
    "normalize_htu",
    "normalize_ip",
    "sign_proof",
    "totp",
    "verify_proof",
]
