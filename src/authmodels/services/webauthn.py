"""WebAuthn credentials: registrations and authentications verified by py_webauthn, recorded.

py_webauthn (``authmodels[webauthn]``, imported only by this module) verifies the ceremonies;
this module stores what it established:

- :func:`store_registration` keeps a ``VerifiedRegistration``: credential id, COSE public key,
  signature counter, AAGUID (None when the authenticator hides it: all zeros), transports and
  the backup flags (BE from ``credential_device_type``, BS from ``credential_backed_up``). A
  credential id is unique overall: registering it again is refused.
- :func:`record_authentication` applies a ``VerifiedAuthentication`` to its credential: the new
  counter, the backup state, the UV result and the time of use.
- :func:`verify_authentication` does both steps for a raw ``navigator.credentials.get()``
  response: it finds the credential by ``rawId``, has py_webauthn verify the assertion with the
  stored public key, then records it.

**Signature counter** (WebAuthn L3 section 7.2, step 21): when the presented or the stored
counter is non-zero and the presented one is not greater, the authenticator may be cloned.
Both zero is normal for synced passkeys, which do not count, and is accepted. A regression is
written to ``security_events`` (``webauthn.sign_count_regression``, severity ``high``) and then
handled by ``FlowSettings.webauthn_sign_count_policy``:

- ``"reject"`` (default): :class:`~authmodels.errors.SignCountRegressionError` is raised; the
  credential is not touched.
- ``"flag"``: the authentication is accepted. The stored counter never goes down
  (``greatest(stored, new)``), so the clone and the original keep tripping the check.

Either way the event is **committed in a transaction of its own**
(:func:`authmodels.services.durable.durable`): it survives the caller's rollback, and the alert
hook of the flow settings hears of it.

The credential's row is locked (``FOR UPDATE``) while the counter is compared and written, so
two concurrent uses of the same assertion (same counter) cannot both pass the comparison.

py_webauthn compares counters too (and raises before any of this runs). So that the regression
is *recorded* and the policy applies, :func:`verify_authentication` gives it a current count of
0, which disables only that comparison; do the same if you call py_webauthn yourself before
:func:`record_authentication`.

Under row-level security these lookups happen before the user is known: run them on the
service path (:func:`authmodels.rls.service_role`). Nothing is committed in the caller's
transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session
from webauthn import verify_authentication_response
from webauthn.authentication.verify_authentication_response import VerifiedAuthentication
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import AuthenticationCredential, CredentialDeviceType
from webauthn.registration.verify_registration_response import VerifiedRegistration

from authmodels.errors import (
    InvalidInputError,
    InvalidWebAuthnResponse,
    SignCountRegressionError,
    WebAuthnCredentialExists,
    WebAuthnCredentialNotFound,
)
from authmodels.models.enums import SecurityEventSeverity
from authmodels.models.users import User
from authmodels.models.webauthn import (
    MAX_CREDENTIAL_ID_BYTES,
    MAX_SIGN_COUNT,
    WebAuthnCredential,
)
from authmodels.services import _inputs, audit, security_events
from authmodels.services._cooling_off import refuse_during_cooling_off
from authmodels.services._database_errors import database_errors
from authmodels.services.durable import durable
from authmodels.services.settings import settings_for

__all__ = [
    "SIGN_COUNT_REGRESSION_EVENT",
    "record_authentication",
    "store_registration",
    "verify_authentication",
]

#: ``security_events.event_type`` of a signature-counter regression.
SIGN_COUNT_REGRESSION_EVENT = "webauthn.sign_count_regression"
_NIL_AAGUID = uuid.UUID(int=0)
#: Longest COSE public key stored (an RSA-4096 key is about 550 bytes).
MAX_PUBLIC_KEY_BYTES = 4096
#: Longest ``navigator.credentials.get()`` response accepted as JSON text.
MAX_RESPONSE_LENGTH = 65536
#: Longest ``device_name`` a user may give an authenticator.
MAX_DEVICE_NAME_LENGTH = 255
#: Most transports kept for a credential, and the longest name of one.
MAX_TRANSPORTS, MAX_TRANSPORT_LENGTH = 16, 32


def _credential_id(value: object) -> bytes:
    """A credential id as WebAuthn bounds it (section 5.1, ``credentialIdLength``)."""
    if not isinstance(value, bytes) or not 1 <= len(value) <= MAX_CREDENTIAL_ID_BYTES:
        size = len(value) if isinstance(value, bytes) else type(value).__name__
        raise InvalidWebAuthnResponse(
            f"the credential id must be 1 to {MAX_CREDENTIAL_ID_BYTES} bytes (WebAuthn), "
            f"not {size}: the authenticator's response is refused"
        )
    return value


def _sign_count(value: object) -> int:
    """A signature counter: an unsigned 32-bit integer (WebAuthn section 6.1)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SIGN_COUNT:
        raise InvalidWebAuthnResponse(
            f"the signature counter must be an integer from 0 to {MAX_SIGN_COUNT}, not "
            f"{value!r:.40}: the authenticator's response is refused"
        )
    return value


def _flags(verified: VerifiedRegistration | VerifiedAuthentication) -> None:
    for name in ("user_verified", "credential_backed_up"):
        if not isinstance(getattr(verified, name), bool):
            raise InvalidWebAuthnResponse(f"the {name} flag of the response is not a boolean")


def _load(db: Session, row_id: uuid.UUID) -> WebAuthnCredential:
    return db.execute(
        select(WebAuthnCredential)
        .where(WebAuthnCredential.id == row_id)
        .execution_options(populate_existing=True)
    ).scalar_one()


_INSERT = text(
    """
    INSERT INTO auth.webauthn_credentials
           (user_id, credential_id, cose_public_key, sign_count, aaguid, transports,
            backup_eligible, backup_state, last_uv_result, device_name)
    VALUES (:user_id, :credential_id, :cose_public_key, :sign_count, :aaguid, :transports,
            :backup_eligible, :backup_state, :user_verified, :device_name)
    ON CONFLICT (credential_id) DO NOTHING
    RETURNING id
    """
)


@database_errors
def store_registration(
    db: Session,
    user: User | uuid.UUID,
    verified: VerifiedRegistration,
    *,
    transports: Iterable[str] = (),
    device_name: str | None = None,
) -> WebAuthnCredential:
    """Store a credential py_webauthn's ``verify_registration_response`` accepted.

    Args:
        db: the session (nothing is committed).
        user: the owner (or id).
        verified: py_webauthn's result.
        transports: the ``response.transports`` the browser reported.
        device_name: a name the user gave the authenticator.

    Returns:
        The credential's row.

    Raises:
        WebAuthnCredentialExists: the credential id is already registered (nothing is written).
        RecoveryCoolingOffError: the account was recovered recently (its event is committed).
        InvalidWebAuthnResponse: the result carries values WebAuthn does not allow: a credential
            id of 0 or more than 1023 bytes, a counter outside 32 bits, a malformed AAGUID, an
            empty or over-long (4 KiB) public key.
        InvalidInputError: ``verified`` is not a ``VerifiedRegistration``, ``user`` not a user
            or an id, ``transports`` not a list of at most 16 names of at most 32 characters,
            ``device_name`` not text of 1 to 255 characters.
    """
    if not isinstance(verified, VerifiedRegistration):
        raise InvalidInputError(
            "verified must be the VerifiedRegistration of verify_registration_response",
            field="verified",
        )
    user_id = _inputs.user_id_of(user)
    _credential_id(verified.credential_id)
    _sign_count(verified.sign_count)
    _flags(verified)
    if (
        not isinstance(verified.credential_public_key, bytes)
        or not 0 < len(verified.credential_public_key) <= MAX_PUBLIC_KEY_BYTES
    ):
        raise InvalidWebAuthnResponse(
            f"the credential public key must be 1 to {MAX_PUBLIC_KEY_BYTES} bytes of COSE"
        )
    try:
        aaguid = uuid.UUID(verified.aaguid) if verified.aaguid else _NIL_AAGUID
    except (TypeError, ValueError, AttributeError):
        raise InvalidWebAuthnResponse(
            f"the AAGUID {verified.aaguid!r:.60} is not a UUID: the response is refused"
        ) from None
    transports = _inputs.texts(
        transports, "transports", max_items=MAX_TRANSPORTS, max_length=MAX_TRANSPORT_LENGTH
    )
    _inputs.optional_text(device_name, "device_name", max_length=MAX_DEVICE_NAME_LENGTH)
    refuse_during_cooling_off(db, user_id, "the passkeys")
    row_id = db.execute(
        _INSERT,
        {
            "user_id": user_id,
            "credential_id": verified.credential_id,
            "cose_public_key": verified.credential_public_key,
            "sign_count": verified.sign_count,
            "aaguid": None if aaguid == _NIL_AAGUID else aaguid,
            "transports": sorted(set(transports)),
            "backup_eligible": verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            "backup_state": verified.credential_backed_up,
            "user_verified": verified.user_verified,
            "device_name": device_name,
        },
    ).scalar_one_or_none()
    if row_id is None:
        raise WebAuthnCredentialExists(
            "this authenticator's credential is already registered: use it to sign in"
        )
    audit.record(
        db,
        "sensitive_action",
        user_id=user_id,
        action="webauthn.register",
        details={"credential": str(row_id), "synced": verified.credential_backed_up},
    )
    return _load(db, row_id)


_LOCK_CREDENTIAL = text(
    """
    SELECT id, user_id, sign_count FROM auth.webauthn_credentials
     WHERE credential_id = :credential_id AND revoked_at IS NULL
       AND (CAST(:user_id AS uuid) IS NULL OR user_id = :user_id)
       FOR UPDATE
    """
)
_RECORD_USE = text(
    """
    UPDATE auth.webauthn_credentials
       SET sign_count = greatest(sign_count, :new_sign_count), backup_state = :backup_state,
           last_uv_result = :user_verified, last_used_at = now()
     WHERE id = :id
    """
)


@database_errors
def record_authentication(
    db: Session, verified: VerifiedAuthentication, *, user: User | uuid.UUID | None = None
) -> WebAuthnCredential:
    """Record a successful assertion on its credential (see the module docstring).

    Args:
        db: the session.
        verified: py_webauthn's result.
        user: when given, the credential must be this user's.

    Returns:
        The credential's row, updated.

    Raises:
        WebAuthnCredentialNotFound: no live credential has this id (for this user).
        SignCountRegressionError: the counter regressed and the policy is ``"reject"`` (the
            security event is committed on its own; the credential is unchanged).
        InvalidWebAuthnResponse: the result carries a credential id of 0 or more than 1023
            bytes or a counter outside 32 bits (nothing is read or written).
        InvalidInputError: ``verified`` is not a ``VerifiedAuthentication``, or ``user`` not a
            user or an id.
    """
    if not isinstance(verified, VerifiedAuthentication):
        raise InvalidInputError(
            "verified must be the VerifiedAuthentication of verify_authentication_response",
            field="verified",
        )
    _credential_id(verified.credential_id)
    _sign_count(verified.new_sign_count)
    _flags(verified)
    owner = None if user is None else _inputs.user_id_of(user)
    settings = settings_for(db)
    found = db.execute(
        _LOCK_CREDENTIAL,
        {
            "credential_id": verified.credential_id,
            "user_id": owner,
        },
    ).first()
    if found is None:
        raise WebAuthnCredentialNotFound(
            "this authenticator is not registered (or was revoked): register it first"
        )
    stored, presented = found.sign_count, verified.new_sign_count
    if (stored or presented) and presented <= stored:
        policy = settings.webauthn_sign_count_policy
        with durable(db) as side:  # the event outlives the refusal, and a caller's rollback
            security_events.record(
                side,
                SIGN_COUNT_REGRESSION_EVENT,
                SecurityEventSeverity.HIGH,
                user_id=found.user_id,
                details={
                    "credential": str(found.id),
                    "stored_sign_count": stored,
                    "presented_sign_count": presented,
                    "policy": policy,
                },
            )
        if policy == "reject":
            raise SignCountRegressionError(
                f"the authenticator's signature counter went from {stored} to {presented}: it "
                "may have been cloned; the sign-in is refused and the event recorded"
            )
    db.execute(
        _RECORD_USE,
        {
            "id": found.id,
            "new_sign_count": presented,
            "backup_state": verified.credential_backed_up,
            "user_verified": verified.user_verified,
        },
    )
    return _load(db, found.id)


@database_errors
def verify_authentication(
    db: Session,
    credential: dict[str, Any] | str,
    *,
    expected_challenge: bytes,
    expected_rp_id: str,
    expected_origin: str | Sequence[str],
    require_user_verification: bool = False,
    user: User | uuid.UUID | None = None,
) -> WebAuthnCredential:
    """Verify a ``navigator.credentials.get()`` response with py_webauthn and record it.

    Args:
        db: the session.
        credential: the response, as JSON text or parsed.
        expected_challenge: the challenge the server issued for this ceremony.
        expected_rp_id: the relying party id.
        expected_origin: the accepted origin(s).
        require_user_verification: refuse assertions without the UV flag.
        user: when given, the credential must be this user's.

    Returns:
        The credential's row, updated.

    Raises:
        WebAuthnCredentialNotFound: the ``rawId`` is not a live credential.
        SignCountRegressionError: as :func:`record_authentication`.
        InvalidWebAuthnResponse: the response is not a WebAuthn credential's JSON (checked
            before the database), or py_webauthn refused the assertion (signature, challenge,
            origin, RP id, flags).
        InvalidInputError: ``expected_challenge``, ``expected_rp_id`` or ``expected_origin``
            (the server's own values) is not of its type and bounds, or ``user`` is not a user
            or an id.
    """
    _inputs.blob(expected_challenge, "expected_challenge", max_length=1024)
    _inputs.text(expected_rp_id, "expected_rp_id", max_length=253)
    origins = (
        _inputs.text(expected_origin, "expected_origin", max_length=2048)
        if isinstance(expected_origin, str)
        else _inputs.texts(expected_origin, "expected_origin", max_items=64, max_length=2048)
    )
    owner = None if user is None else _inputs.user_id_of(user)
    parsed = _parse_response(credential)
    raw_id = _credential_id(parsed.raw_id)
    stored = db.execute(
        select(WebAuthnCredential.cose_public_key).where(
            WebAuthnCredential.credential_id == raw_id,
            WebAuthnCredential.revoked_at.is_(None),
        )
    ).scalar_one_or_none()
    if stored is None:
        raise WebAuthnCredentialNotFound(
            "this authenticator is not registered (or was revoked): register it first"
        )
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=bytes(expected_challenge),
            expected_rp_id=expected_rp_id,
            expected_origin=origins,
            credential_public_key=stored,
            credential_current_sign_count=0,  # compared by record_authentication, which records it
            require_user_verification=bool(require_user_verification),
        )
    except WebAuthnException as exc:
        raise InvalidWebAuthnResponse(f"the authenticator's response was refused: {exc}") from None
    return record_authentication(db, verified, user=owner)


def _parse_response(credential: object) -> AuthenticationCredential:
    """The parsed ``navigator.credentials.get()`` response, or the refusal of a malformed one."""
    if isinstance(credential, str) and len(credential) > MAX_RESPONSE_LENGTH:
        raise InvalidWebAuthnResponse(
            f"the authenticator's response is longer than {MAX_RESPONSE_LENGTH} characters"
        )
    if not isinstance(credential, str | dict):
        raise InvalidWebAuthnResponse(
            "the authenticator's response must be the JSON of a PublicKeyCredential (text or "
            f"dict), not {type(credential).__name__}"
        )
    try:
        return parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError, AttributeError, RecursionError) as exc:
        # ValueError covers json's JSONDecodeError and binascii.Error (bad base64url)
        raise InvalidWebAuthnResponse(
            f"the authenticator's response is not a WebAuthn credential: {exc}"
        ) from None
